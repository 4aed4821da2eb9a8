"""Keep the window length whose model scored best on validation, and its predictions."""

import shutil
from pathlib import Path

from avaffect.core.logs import job_logger
from avaffect.core.tables import atomic_write, read_json, write_json
from avaffect.corpus.metrics import PRIMARY_METRIC
from avaffect.models.selection import best_window

log = job_logger(snakemake.log[0], "select_window")
task = snakemake.wildcards.task
metric = PRIMARY_METRIC[task]
validation = {w: read_json(f)["validation"] for w, f in zip(snakemake.params.windows, snakemake.input.metrics,
                                                              strict=True)}
best, scores = best_window(validation, task, f"model {snakemake.wildcards.model}, task {task}")
log.info("validation %s per window (s): %s; keeping %s s", metric, scores, best)
index = snakemake.params.windows.index(best)
for split in ("validation", "test"):
    source = snakemake.input[split][index]
    atomic_write(Path(snakemake.output[split]), lambda tmp, source=source: shutil.copyfile(source, tmp))
write_json({"metric": metric, "scores": scores, "window_s": float(best)}, Path(snakemake.output.selection))
