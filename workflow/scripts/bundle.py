"""The model bundle: per task the submitted system's fitted fusion and its models' checkpoints at their chosen
windows, the detectors' and extractors' weights they read, the resolved config; an archive of it beside."""

from pathlib import Path

from avaffect.app.bundle import write_archive, write_bundle
from avaffect.core.logs import job_logger
from avaffect.core.tables import read_json

log = job_logger(snakemake.log[0], "bundle")
p = snakemake.params
files, tasks, models, extractors = {}, {}, {}, set()
for task, choice_file in zip(p.tasks, snakemake.input.choices, strict=True):
    choice = read_json(choice_file)
    system = choice["system"]
    fusion = f"fusion/{task}/fusion.safetensors"
    files[fusion] = p.files["fusion"].format(task=task, system=system)
    files[f"fusion/{task}/parameters.json"] = p.files["parameters"].format(task=task, system=system)
    tasks[task] = {"system": system, "method": choice["method"], "models": choice["models"], "fusion": fusion,
                   "metric": choice["metric"], "out_of_fold": choice["out_of_fold"]}
    models[task] = {}
    for model in choice["models"]:
        selection = p.files["selection"].format(model=model, task=task)
        window_s = read_json(selection)["window_s"]
        checkpoint = f"models/{model}/{task}/checkpoint.pt"
        files[checkpoint] = p.files["checkpoint"].format(model=model, task=task, window=f"{window_s:g}")
        files[f"models/{model}/{task}/selected.json"] = selection
        models[task][model] = {"checkpoint": checkpoint, "window_s": window_s}
        extractors.add(snakemake.config["models"][model]["extractor"])
    log.info("%s: system %s (%s) of models %s", task, system, choice["method"], choice["models"])
weights = {}
for name in p.detectors:
    weights[name] = f"resources/{Path(snakemake.input[name]).name}"
    files[weights[name]] = snakemake.input[name]
extractor_weights = {}
for name in sorted(extractors & set(p.extractor_weights)):
    extractor_weights[name] = f"extractors/{name}/{Path(snakemake.input[name]).name}"
    files[extractor_weights[name]] = snakemake.input[name]
info = {"tasks": tasks, "models": models, "detector_weights": weights, "extractor_weights": extractor_weights}
bundle = Path(snakemake.output.manifest).parent
write_bundle(bundle, {name: Path(source) for name, source in files.items()}, info, snakemake.config)
write_archive(bundle, Path(snakemake.output.archive))
log.info("%d files in %s, archived as %s", len(files), bundle, snakemake.output.archive)
