"""Dirichlet-weighted fusion of the models, weights chosen on the validation set."""

from pathlib import Path

from avaffect.corpus import PREDICTION_COLUMNS
from avaffect.fusion import apply_fusion, choose_fusion, frame_labels
from avaffect.logs import job_logger
from avaffect.tables import read_json, read_parquet, write_json, write_parquet

log = job_logger(snakemake.log[0], "fuse")
p = snakemake.params
task = snakemake.wildcards.task
columns = list(PREDICTION_COLUMNS[task])
validation = [read_parquet(f) for f in snakemake.input.validation]
test = [read_parquet(f) for f in snakemake.input.test]
probes = {Path(f).stem: read_json(f) for f in snakemake.input.probes}
labels = frame_labels(validation[0], task, "validation", Path(p.corpus), probes, log.warning)
weights, report = choose_fusion(validation, labels, task, columns, p.models, p.draws, p.seed)
for name, scores in report["validation"].items():
    log.info("validation %s: %s", name, scores)
fused_validation, filled_validation = apply_fusion(validation, weights, columns, report["prior"])
fused_test, filled_test = apply_fusion(test, weights, columns, report["prior"])
if filled_test:
    log.warning("%d test frames had no prediction from any model; filled with the validation prior",
                filled_test)
report["filled_frames"] = {"validation": filled_validation, "test": filled_test}
write_json({"models": p.models, "weights": weights.tolist()}, Path(snakemake.output.weights))
write_json(report, Path(snakemake.output.metrics))
write_parquet(fused_validation, Path(snakemake.output.validation))
write_parquet(fused_test, Path(snakemake.output.test))
