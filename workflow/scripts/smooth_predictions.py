"""Frame-level predictions: linear interpolation to every frame (not across long gaps), then smoothing."""

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
table = frame_level(raw, samples, probes, columns, snakemake.params.smoothing, max_gap_s=snakemake.params.max_gap_s)
predicted = set(raw["video"])
missing = table[columns].isna().any(axis=1).groupby(table["video"]).sum()
for sample in samples:
    if sample not in predicted:
        log.warning("%s: no predictions from this model; its frames stay empty for fusion to fill", sample)
    elif missing[sample]:
        log.info("%s: %d of %d frames lie in stretches without a prediction longer than postprocess.max_gap_s; "
                 "left empty for fusion", sample, missing[sample], probes[sample]["n_frames"])
write_parquet(table, Path(snakemake.output[0]))
