"""Train one end-to-end audio model (PDEM's top layers and a head) for one task and window length on the
labelled voiced windows of the training videos; keep the best epoch on validation."""

from pathlib import Path

import pandas as pd
import torch

from avaffect.audio.pdem import build_pdem, load_pdem_weights, top_layers
from avaffect.audio.vad import segments_seconds
from avaffect.core.checkpoints import write_checkpoint
from avaffect.core.devices import resolve_device
from avaffect.core.logs import job_logger
from avaffect.core.resources import Resource, verify
from avaffect.core.tables import atomic_write, read_json, read_parquet, write_json
from avaffect.corpus.layout import video_of
from avaffect.media.wav import read_wav
from avaffect.models.pdem_finetune import (
    AudioWindows,
    EndToEndSettings,
    checkpoint_of,
    end_to_end_model,
    head_config,
    labelled_windows,
    recording_windows,
    train_end_to_end,
)
from avaffect.models.sequences import sample_labels
from avaffect.models.training import audio_architecture

log = job_logger(snakemake.log[0], "train_end_to_end")
p = snakemake.params
spec, family = p.model, p.family
task, window_s = snakemake.wildcards.task, float(snakemake.wildcards.window)
torch.set_num_threads(snakemake.threads)
for name, entry in p.weights.items():
    verify(Resource(**entry), Path(snakemake.input[name]), accept_unpinned=entry["key"] in p.accept_unpinned)
backbone, extractor = build_pdem(Path(snakemake.input.config).parent)
top_layers(backbone, spec["finetune_layers"])  # a layer count the backbone lacks fails before any audio is read
load_pdem_weights(backbone, Path(snakemake.input.weights))
device = resolve_device(p.device)
if device == "cpu":
    log.warning("no GPU: training the last %d PDEM layers on the CPU is slow (hours to days on a full corpus; "
                "config device)", spec["finetune_layers"])
audio = {Path(f).stem: Path(f) for f in snakemake.input.audio}
vad = {Path(f).stem: Path(f) for f in snakemake.input.vad}
probes = {Path(f).stem: read_json(f) for f in snakemake.input.probes}
recordings: dict[str, tuple] = {}
sets = {}
for split, samples in p.samples.items():
    windows = AudioWindows([], [], [])
    for sample in samples:
        video = video_of(sample)
        probe = probes[video]
        if video not in recordings:
            recordings[video] = read_wav(audio[video])
        waveform, rate = recordings[video]
        voiced = segments_seconds(read_parquet(vad[sample]), probe["fps"])
        labels = sample_labels(Path(p.corpus), task, split, sample, probe["n_frames"], log.warning)
        found = recording_windows(waveform, rate, voiced, probe["n_frames"], probe["fps"], p.rate_hz, window_s,
                                  p.step_s)
        windows += labelled_windows(task, found, labels, probe["fps"], p.expr_label_s)
    sets[split] = windows
    log.info("%s: %d labelled voiced windows from %d samples", split, len(windows), len(samples))
e2e = family["end_to_end"]
if spec["family"] == "linear":
    architecture = {"dropout": e2e["dropout"]}
else:
    architecture = audio_architecture(family["audio_model"] | {"dropout": e2e["dropout"]}, task, p.expr_label_s,
                                      p.rate_hz)
settings = EndToEndSettings.from_config(spec["finetune_layers"], e2e, spec["loss"],
                                        family["audio_model"]["label_smoothing"], family.get("augmentation"))
model = end_to_end_model(backbone, head_config(spec["family"], task, backbone.config.hidden_size, architecture),
                         settings.layers, p.rate_hz, extractor.sampling_rate, settings.seed)
log.info("training %s on the last %d of %d PDEM layers for %s on %s", spec["family"], settings.layers,
         backbone.config.num_hidden_layers, task, device)
result = train_end_to_end(model, extractor, task, sets["train"], sets["validation"], settings, device, log.info)
checkpoint = checkpoint_of(model, task, window_s, p.step_s) | {
    "family": spec["family"], "modality": spec["modality"], "epoch": result["epoch"],
    "scores": {k: float(v) for k, v in result["scores"].items()}}
write_checkpoint(checkpoint, Path(snakemake.output.checkpoint))
write_json({"task": task, "model": snakemake.wildcards.model, "family": spec["family"], "window_s": window_s,
            "finetune_layers": settings.layers, "best_epoch": result["epoch"], "validation": checkpoint["scores"],
            "device": device, "train_windows": len(sets["train"]), "validation_windows": len(sets["validation"])},
           Path(snakemake.output.metrics))
atomic_write(Path(snakemake.output.history),
             lambda tmp: pd.DataFrame(result["history"]).to_csv(tmp, sep="\t", index=False))
