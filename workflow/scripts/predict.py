"""Label-rate predictions of one model for the videos of one split."""

from pathlib import Path

import torch

from avaffect.corpus import PREDICTION_COLUMNS
from avaffect.faces import resolve_device
from avaffect.logs import job_logger
from avaffect.tables import write_parquet
from avaffect.training import load_checkpoint, predict, prediction_table, video_sequences

log = job_logger(snakemake.log[0], "predict")
task = snakemake.wildcards.task
device = resolve_device(snakemake.params.device)
checkpoint = torch.load(snakemake.input.checkpoint, map_location="cpu", weights_only=True)
model, normalizer = load_checkpoint(checkpoint, device)
sequences = []
for video, path in zip(snakemake.params.videos, snakemake.input.embeddings, strict=True):
    found = video_sequences(Path(path), video, snakemake.params.modality)
    log.info("%s: %d steps with an embedding", video, sum(int(s.present.sum()) for s in found))
    sequences += found
outputs = predict(model, normalizer, task, sequences, checkpoint["window"], checkpoint["hop"], device)
table = prediction_table(sequences, outputs, list(PREDICTION_COLUMNS[task]))
write_parquet(table, Path(snakemake.output[0]))
