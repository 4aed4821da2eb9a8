"""One figure per validation video of a task: the submitted system's out-of-fold prediction against the labels."""

from pathlib import Path

from avaffect.core.logs import job_logger
from avaffect.core.tables import read_json, read_parquet
from avaffect.corpus.layout import probes_by_sample
from avaffect.corpus.tasks import PREDICTION_COLUMNS
from avaffect.fusion.selection import frame_labels
from avaffect.fusion.submission import predicted_classes
from avaffect.report.figures import FIGURE_FORMAT, expr_figure, save_figure, va_figure

log = job_logger(snakemake.log[0], "validation_figures")
task = snakemake.wildcards.task
choice = read_json(snakemake.input.choice)
system = choice["system"]
fused_path = snakemake.input.fused[snakemake.params.systems.index(system)]
fused = read_parquet(fused_path)
samples = snakemake.params.samples
probes = probes_by_sample(samples, {Path(f).stem: read_json(f) for f in snakemake.input.probes})
folder = Path(snakemake.output[0])
folder.mkdir(parents=True, exist_ok=True)
for video in samples:
    rows = fused[fused["video"] == video]
    if rows.empty:
        raise ValueError(f"{fused_path}: no rows for validation video '{video}'")
    fps = probes[video]["fps"]
    labels = frame_labels(rows, task, "validation", Path(snakemake.params.corpus), probes, log.warning)
    title = f"{video}: {task.upper()} validation, system {system} ({choice['method']}, out-of-fold) against the labels"
    if task == "va":
        figure = va_figure(title, rows["frame"].to_numpy(), fps, rows[list(PREDICTION_COLUMNS[task])], labels)
    else:
        figure = expr_figure(title, rows["frame"].to_numpy(), fps, predicted_classes(rows), labels)
    save_figure(figure, folder / f"{video}.{FIGURE_FORMAT}")
log.info("%s: %d figures of system %s", folder, len(samples), system)
