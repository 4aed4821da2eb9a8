"""Frame-level predictions: linear interpolation to every frame, then Hamming smoothing."""

from pathlib import Path

from avaffect.corpus import PREDICTION_COLUMNS, probes_by_sample
from avaffect.logs import job_logger
from avaffect.postprocess import frame_level
from avaffect.tables import read_json, read_parquet, write_parquet

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
