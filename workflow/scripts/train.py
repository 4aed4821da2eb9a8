"""Train one temporal model for one task; keep the epoch with the best validation score."""

from pathlib import Path

import pandas as pd
import torch

from avaffect.faces import resolve_device
from avaffect.logs import job_logger
from avaffect.tables import read_json, write_json
from avaffect.training import TrainSettings, labelled_sequences, train

log = job_logger(snakemake.log[0], "train")
p = snakemake.params
task, corpus = snakemake.wildcards.task, Path(p.corpus)
torch.set_num_threads(snakemake.threads)
embeddings = {Path(f).stem: Path(f) for f in snakemake.input.embeddings}
probes = {Path(f).stem: read_json(f) for f in snakemake.input.probes}
sets = {split: labelled_sequences(names, task, split, corpus, p.modality, embeddings, probes, log.warning)
        for split, names in p.samples.items()}
for split, sequences in sets.items():
    if not sequences:
        raise ValueError(f"model {snakemake.wildcards.model}, task {task}: no {split} embeddings to train on")
    log.info("%s: %d sequences, %d steps", split, len(sequences), sum(len(s.frames) for s in sequences))
t = p.training
settings = TrainSettings(
    window=round(t["window_s"] * p.rate_hz), hop=round(t["hop_s"] * p.rate_hz), epochs=t["epochs"],
    batch_size=t["batch_size"], learning_rate=t["learning_rate"], weight_decay=t["weight_decay"],
    patience=t["patience"], seed=t["seed"],
)
device = resolve_device(p.device)
log.info("training on %s", device)
checkpoint, history = train(task, sets["train"], sets["validation"], p.transformer, settings, device, log.info)
checkpoint["modality"] = p.modality
torch.save(checkpoint, snakemake.output.checkpoint)
write_json({"task": task, "model": snakemake.wildcards.model, "best_epoch": checkpoint["epoch"],
            "validation": checkpoint["scores"], "device": device}, Path(snakemake.output.metrics))
pd.DataFrame(history).to_csv(snakemake.output.history, sep="\t", index=False)
