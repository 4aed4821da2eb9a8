"""Train one model of one family for one task and window length; keep the best on validation."""

from pathlib import Path

import pandas as pd
import torch

from avaffect.core.checkpoints import write_checkpoint
from avaffect.core.devices import resolve_device
from avaffect.core.logs import job_logger
from avaffect.core.tables import atomic_write, read_json, write_json
from avaffect.corpus.sample_sets import read_sample_set
from avaffect.models.extractors import model_inputs
from avaffect.models.functionals import KelmSettings, train_kelm
from avaffect.models.sequences import labelled_sequences, require_labelled_steps
from avaffect.models.training import TrainSettings, audio_architecture, train

log = job_logger(snakemake.log[0], "train")
p = snakemake.params
task, window_s = snakemake.wildcards.task, float(snakemake.wildcards.window)
spec = p.model
what = f"model {snakemake.wildcards.model}, task {task}, window {window_s:g} s"
torch.set_num_threads(snakemake.threads)
inputs = {split: read_sample_set(Path(snakemake.input[split])) for split in ("train", "validation")}
probes = {video: read_json(f) for found in inputs.values() for video, f in found.probes.items()}
sets = {}
for split, found in inputs.items():
    # Augmented copies carry the labels of their samples and only ever join the training split.
    embeddings = {sample: Path(f) for sample, f in found.embeddings.items()}
    augmented = {copy: {sample: Path(f) for sample, f in files.items()} for copy, files in found.augmented.items()}
    log.info("%s: %d samples, %d augmented copies, inputs: %s", split, len(found.samples), len(found.augmented),
             model_inputs(spec))
    sets[split] = labelled_sequences(list(found.samples), task, split, Path(p.corpus), spec["modality"],
                                     embeddings, augmented, probes, log.warning, p.expr_label_s, model_inputs(spec))
for split, sequences in sets.items():
    labelled = require_labelled_steps(task, split, sequences, what)
    log.info("%s: %d sequences, %d steps, %d labelled", split, len(sequences), sum(len(s.frames) for s in sequences),
             labelled)
device = resolve_device(p.device)
history = []
if spec["family"] == "kelm":
    k = p.family["kelm"]
    settings = KelmSettings(window_s=window_s, kernel=k["kernel"], Cs=tuple(k["Cs"]), weighted=k["weighted"],
                            folds=k["folds"], normalization=spec["normalization"])
    checkpoint = train_kelm(task, sets["train"], sets["validation"], settings, log.info, what=what)
    history = [{"C": float(c), "cross_validation_score": v} for c, v in checkpoint["cv_scores"].items()]
    device = "cpu"
else:
    t = p.family["training"]
    audio = p.family.get("audio_model")
    settings = TrainSettings(
        window=round(window_s * p.rate_hz), hop=round(t["hop_s"] * p.rate_hz), epochs=t["epochs"],
        batch_size=t["batch_size"], learning_rate=t["learning_rate"], weight_decay=t["weight_decay"],
        patience=t["patience"], seed=t["seed"], normalization=spec["normalization"], loss=spec["loss"],
        label_smoothing=audio["label_smoothing"] if audio else 0.0,
    )
    if spec["family"] in ("audio_gru", "audio_transformer"):
        architecture = audio_architecture(audio, task, p.expr_label_s, p.rate_hz)
    else:
        architecture = dict(p.family["transformer"])
    if "tcn" in p.family:
        architecture |= {"tcn_kernel": p.family["tcn"]["kernel"], "tcn_dilations": tuple(p.family["tcn"]["dilations"])}
    architecture["output"] = spec["output"]  # in the checkpoint's config, so predict rebuilds the same head
    log.info("training %s (%s output) on %s", spec["family"], spec["output"], device)
    checkpoint, history = train(task, sets["train"], sets["validation"], spec["family"], architecture, settings,
                                device, log.info, what=what)
checkpoint["modality"] = spec["modality"]
checkpoint["inputs"] = model_inputs(spec)  # predict reads the same features
write_checkpoint(checkpoint, Path(snakemake.output.checkpoint))
write_json({"task": task, "model": snakemake.wildcards.model, "family": spec["family"], "window_s": window_s,
            "best_epoch": checkpoint.get("epoch"), "validation": checkpoint["scores"], "device": device},
           Path(snakemake.output.metrics))
atomic_write(Path(snakemake.output.history),
             lambda tmp: pd.DataFrame(history).to_csv(tmp, sep="\t", index=False))
