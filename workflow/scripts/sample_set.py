"""List the files that the model jobs of one task, split and embedding extractor read."""

from pathlib import Path

from avaffect.core.logs import job_logger
from avaffect.core.tables import write_json
from avaffect.corpus.sample_sets import sample_set

log = job_logger(snakemake.log[0], "sample_set")
w = snakemake.wildcards
found = sample_set(w.task, w.split, snakemake.params.samples, snakemake.input.embeddings, snakemake.input.probes,
                   snakemake.input.augmented)
log.info("%s %s %s/%s: %d samples, %d probes, %d augmented copies", w.task, w.split, w.modality, w.extractor,
         len(found.samples), len(found.probes), len(found.augmented))
write_json(found.to_dict(), Path(snakemake.output[0]))
