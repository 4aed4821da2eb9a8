"""Frame-level predictions: linear interpolation to every frame, then Hamming smoothing."""

from pathlib import Path

from avaffect.core.logs import job_logger
from avaffect.core.tables import read_json, read_parquet, write_parquet
from avaffect.corpus.layout import probes_by_sample
from avaffect.corpus.tasks import PREDICTION_COLUMNS
from avaffect.fusion.postprocess import frame_level

log = job_logger(snakemake.log[0], "smooth_predictions")
raw = read_parquet(snakemake.input.predictions)
samples = snakemake.params.samples
probes = probes_by_sample(samples, {Path(f).stem: read_json(f) for f in snakemake.input.probes})
columns = list(PREDICTION_COLUMNS[snakemake.wildcards.task])
table = frame_level(raw, samples, probes, columns, snakemake.params.smoothing)
for sample in samples:
    if sample not in set(raw["video"]):
        log.warning("%s: no predictions from this model; its frames stay empty for fusion to fill", sample)
write_parquet(table, Path(snakemake.output[0]))
