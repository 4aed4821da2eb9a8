"""Label-rate predictions of one model for the videos of one split."""

from pathlib import Path

import pandas as pd
import torch

from avaffect.corpus import PREDICTION_COLUMNS
from avaffect.faces import resolve_device
from avaffect.logs import job_logger
from avaffect.tables import write_parquet
from avaffect.training import load_checkpoint, predict, video_sequences

log = job_logger(snakemake.log[0], "predict")
task = snakemake.wildcards.task
device = resolve_device(snakemake.params.device)
checkpoint = torch.load(snakemake.input.checkpoint, map_location="cpu", weights_only=True)
model, normalizer = load_checkpoint(checkpoint, device)
columns = list(PREDICTION_COLUMNS[task])
parts = []
for video, path in zip(snakemake.params.videos, snakemake.input.embeddings, strict=True):
    sequences = video_sequences(Path(path), video, snakemake.params.modality)
    outputs = predict(model, normalizer, task, sequences, checkpoint["window"], checkpoint["hop"], device)
    for seq, out in zip(sequences, outputs, strict=True):
        keep = seq.present
        part = pd.DataFrame(out[keep], columns=columns)
        part.insert(0, "time_s", seq.times[keep])
        part.insert(0, "frame", seq.frames[keep])
        part.insert(0, "video", video)
        parts.append(part)
    log.info("%s: %d predicted steps", video, sum(int(s.present.sum()) for s in sequences))
empty = pd.DataFrame({"video": pd.Series(dtype=str), "frame": pd.Series(dtype="int64"),
                      "time_s": pd.Series(dtype=float)} | {c: pd.Series(dtype=float) for c in columns})
write_parquet(pd.concat([empty, *parts], ignore_index=True), Path(snakemake.output[0]))
