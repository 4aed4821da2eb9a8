"""256-d embedding and head outputs of the fine-tuned static backbone on the tracked face, per sampled frame."""

from pathlib import Path

import torch

from avaffect.core.checkpoints import read_checkpoint
from avaffect.core.devices import resolve_device
from avaffect.core.logs import job_logger
from avaffect.core.progress import Progress, counted
from avaffect.core.tables import HEAD_COLUMN_PREFIX, read_json, read_parquet, write_embeddings
from avaffect.face.backbones import HEAD_OUTPUTS, crop_embedder, embed_frames, embedding_rows, face_crop, load_static
from avaffect.face.boxes import on_tracked_faces
from avaffect.face.engines import resolve_engine
from avaffect.face.tracking import boxes_from_table
from avaffect.media.timeline import sample_frames
from avaffect.media.video import iter_frames, read_ahead

log = job_logger(snakemake.log[0], "face_embeddings_static")
p = snakemake.params
torch.set_num_threads(snakemake.threads)
device = resolve_device(p.device)
model, prep = load_static(read_checkpoint(Path(snakemake.input.checkpoint)), device)
probe = read_json(snakemake.input.probe)
frames = sample_frames(probe["n_frames"], probe["fps"], p.rate_hz)
boxes = {f: box for f, box in boxes_from_table(read_parquet(snakemake.input.faces)).items() if f in set(frames)}
decoded = counted(read_ahead(iter_frames(Path(snakemake.input.video), boxes), p.batch_size),
                  Progress("static embeddings", "frame", len(boxes), log.info, snakemake.config["progress_s"]))
crops = on_tracked_faces(decoded, boxes,
                         lambda image, box: face_crop(image, box, p.crop_margin_px, prep.size))
found = embed_frames(crop_embedder(model, prep, device, p.engine), crops, p.batch_size)
names = HEAD_OUTPUTS[model.config.task]
matrix, outputs, present = embedding_rows(frames, found, model.config.embedding_dim, len(names))
log.info("%d sampled frames, %d with a face (%s %s on %s, %s)", len(frames), int(present.sum()),
         model.config.backbone, model.config.task, device, resolve_engine(p.engine, device))
columns = {"frame": frames, "time_s": (frames - 1) / probe["fps"]}
columns |= {f"{HEAD_COLUMN_PREFIX}{name}": outputs[:, i] for i, name in enumerate(names)}
write_embeddings(columns, matrix, present, Path(snakemake.output[0]))
