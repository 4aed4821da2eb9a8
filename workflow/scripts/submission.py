"""The task's submission file: the chosen system's (fusion.submit), and which one it is, with its score."""

import shutil
from pathlib import Path

from avaffect.core.logs import job_logger
from avaffect.core.tables import atomic_write, read_json, write_json
from avaffect.corpus.metrics import PRIMARY_METRIC, best_reported_fusion

log = job_logger(snakemake.log[0], "submission")
task, systems = snakemake.wildcards.task, snakemake.params.systems
metric = PRIMARY_METRIC[task]
reports = {system: read_json(f) for system, f in zip(systems, snakemake.input.metrics, strict=True)}
fusions = {system: report["fusion"][report["method"]] for system, report in reports.items()}
chosen = best_reported_fusion(fusions, task)
scores = {system: fusion["out_of_fold"][metric] for system, fusion in fusions.items()}
log.info("out-of-fold validation %s per system: %s; submitting %s", metric, scores, chosen)
source = snakemake.input.submissions[systems.index(chosen)]
atomic_write(Path(snakemake.output.submission), lambda tmp: shutil.copyfile(source, tmp))
write_json({"system": chosen, "method": reports[chosen]["method"], "models": reports[chosen]["models"],
            "metric": metric, "out_of_fold": scores[chosen], "candidates": scores, "file": source},
           Path(snakemake.output.choice))
