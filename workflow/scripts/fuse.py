"""Fuse one system's models with its method, chosen by grouped cross-validation over the validation videos."""

from pathlib import Path

from avaffect.core.logs import job_logger
from avaffect.core.tables import read_json, read_parquet, write_json, write_parquet
from avaffect.corpus.layout import probes_by_sample
from avaffect.corpus.tasks import PREDICTION_COLUMNS
from avaffect.fusion.selection import (
    DEFAULT_FOLDS,
    apply_fitted_fusion,
    compare_fusions,
    filled_table,
    frame_labels,
    read_fitted_fusion,
    write_fitted_fusion,
)

log = job_logger(snakemake.log[0], "fuse")
p = snakemake.params
task, system, method = snakemake.wildcards.task, snakemake.wildcards.system, p.method
columns = list(PREDICTION_COLUMNS[task])
validation = [read_parquet(f) for f in snakemake.input.validation]
test = [read_parquet(f) for f in snakemake.input.test]
probes = probes_by_sample(list(validation[0]["video"].unique()),
                          {Path(f).stem: read_json(f) for f in snakemake.input.probes})
labels = frame_labels(validation[0], task, "validation", Path(p.corpus), probes, log.warning)
s = p.fusion  # only the settings of the system's method ("none" has none)
fitted, report = compare_fusions(validation, labels, task, columns, p.models, [method], s.get("draws", 1),
                                 s.get("seed", 0), s.get("folds", DEFAULT_FOLDS),
                                 search_max_rows=s.get("search_max_rows"), rf_max_rows=s.get("rf_max_rows"),
                                 rf_max_samples=s.get("rf_max_samples"), tree_grid=s.get("rf_trees"),
                                 n_jobs=snakemake.threads)
fusion = fitted[method]
for name, scores in report["validation"].items():
    log.info("validation %s: %s", name, scores)
log.info("system %s (%s of %s): out-of-fold %s; in-sample %s", system, method, p.models,
         fusion.report["out_of_fold"], fusion.report["in_sample"])
# The validation table holds out-of-fold predictions: each video fused by parameters chosen without it.
fused_validation, _ = filled_table(validation[0], fusion.out_of_fold, columns, report["prior"])
# The test set is fused by the fusion as stored, read back: what a model bundle applies (avaffect.app.bundle).
write_fitted_fusion(fusion, report["prior"], Path(snakemake.output.fusion))
stored, prior = read_fitted_fusion(Path(snakemake.output.fusion))
fused_test, filled_test = apply_fitted_fusion(test, stored, columns, prior)
if filled_test:
    log.warning("%d test frames had no prediction from any model; filled with the validation prior", filled_test)
report |= {"system": system, "method": method, "models": p.models, "filled_test_frames": filled_test}
parameters = {"system": system, "models": p.models, "method": method, "n_trees": fusion.n_trees,
              "weights": None if fusion.weights is None else fusion.weights.tolist()}
write_json(parameters, Path(snakemake.output.parameters))
write_json(report, Path(snakemake.output.metrics))
write_parquet(fused_validation, Path(snakemake.output.validation))
write_parquet(fused_test, Path(snakemake.output.test))
