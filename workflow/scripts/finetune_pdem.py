"""Fine-tune the last layers of the PDEM backbone on labelled voiced windows; save the best epoch's backbone."""

from pathlib import Path

import pandas as pd
import torch

from avaffect.audio.pdem import build_pdem, load_pdem_weights, save_pdem_weights, top_layers
from avaffect.audio.vad import segments_seconds
from avaffect.core.devices import resolve_device
from avaffect.core.logs import job_logger
from avaffect.core.resources import Resource, verify
from avaffect.core.tables import atomic_write, read_json, read_parquet, write_json
from avaffect.corpus.layout import video_of
from avaffect.media.wav import read_wav
from avaffect.models.pdem_finetune import FinetuneSettings, LabelledWindows, finetune_pdem, labelled_windows
from avaffect.models.sequences import sample_labels

log = job_logger(snakemake.log[0], "finetune_pdem")
p = snakemake.params
task = p.finetune["task"]
torch.set_num_threads(snakemake.threads)
for name, entry in p.weights.items():
    verify(Resource(**entry), Path(snakemake.input[name]), accept_unpinned=entry["key"] in p.accept_unpinned)
model, extractor = build_pdem(Path(snakemake.input.config).parent)
top_layers(model, p.layers)  # a layer count the backbone lacks fails before any audio is read
load_pdem_weights(model, Path(snakemake.input.weights))
device = resolve_device(p.device)
if device == "cpu":
    log.warning("no GPU: fine-tuning the last %d PDEM layers on the CPU is slow (hours to days on a full corpus; "
                "config device)", p.layers)
audio = {Path(f).stem: Path(f) for f in snakemake.input.audio}
vad = {Path(f).stem: Path(f) for f in snakemake.input.vad}
probes = {Path(f).stem: read_json(f) for f in snakemake.input.probes}
recordings: dict[str, tuple] = {}
sets = {}
for split, samples in p.samples.items():
    windows = LabelledWindows([], [])
    for sample in samples:
        video = video_of(sample)
        probe = probes[video]
        if video not in recordings:
            recordings[video] = read_wav(audio[video])
        waveform, rate = recordings[video]
        voiced = segments_seconds(read_parquet(vad[sample]), probe["fps"])
        labels = sample_labels(Path(p.corpus), task, split, sample, probe["n_frames"], log.warning)
        windows += labelled_windows(task, waveform, rate, voiced, labels, probe["fps"], p.rate_hz,
                                    p.audio["window_s"], p.audio["step_s"], p.expr_label_s)
    sets[split] = windows
    log.info("%s: %d labelled voiced windows from %d samples", split, len(windows), len(samples))
settings = FinetuneSettings.from_config(p.layers, p.finetune, p.augmentation)
log.info("fine-tuning the last %d of %d PDEM layers for %s on %s", p.layers, model.config.num_hidden_layers, task,
         device)
result = finetune_pdem(model, extractor, task, sets["train"], sets["validation"], settings, p.rate_hz, device,
                       log.info)
save_pdem_weights(model, Path(snakemake.output.weights),
                  {"finetune_layers": str(p.layers), "task": task, "epoch": str(result["epoch"])})
write_json({"task": task, "finetune_layers": p.layers, "best_epoch": result["epoch"], "validation": result["scores"],
            "device": device, "train_windows": len(sets["train"]), "validation_windows": len(sets["validation"])},
           Path(snakemake.output.metrics))
atomic_write(Path(snakemake.output.history),
             lambda tmp: pd.DataFrame(result["history"]).to_csv(tmp, sep="\t", index=False))
