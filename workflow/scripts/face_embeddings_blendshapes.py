"""The Face Landmarker's 52 blendshape scores of the tracked face, per sampled frame (training-free)."""

from pathlib import Path

import numpy as np

from avaffect.core.logs import job_logger
from avaffect.core.progress import Progress, counted
from avaffect.core.resources import Resource, verify
from avaffect.core.tables import read_json, read_parquet, write_embeddings
from avaffect.face.boxes import on_tracked_faces
from avaffect.face.landmarks import N_BLENDSHAPES, FaceBlendshapes
from avaffect.face.tracking import boxes_from_table
from avaffect.media.timeline import sample_frames
from avaffect.media.video import iter_frames

log = job_logger(snakemake.log[0], "face_embeddings_blendshapes")
p = snakemake.params
task_file = verify(Resource(**p.resource), Path(snakemake.input.task_file))
landmarker = FaceBlendshapes(task_file, p.blendshapes["crop_margin"], p.blendshapes["min_confidence"])
probe = read_json(snakemake.input.probe)
frames = sample_frames(probe["n_frames"], probe["fps"], p.rate_hz)
boxes = {f: box for f, box in boxes_from_table(read_parquet(snakemake.input.faces)).items() if f in set(frames)}
decoded = counted(iter_frames(Path(snakemake.input.video), boxes),
                  Progress("blendshapes", "frame", len(boxes), log.info, snakemake.config["progress_s"]))
found = {f: s for f, s in on_tracked_faces(decoded, boxes, landmarker.scores) if s is not None}
matrix = np.zeros((len(frames), N_BLENDSHAPES), np.float32)
present = np.array([int(f) in found for f in frames], bool)
for i in np.flatnonzero(present):
    matrix[i] = found[int(frames[i])]
log.info("%d sampled frames, %d tracked faces, %d with blendshapes", len(frames), len(boxes), int(present.sum()))
write_embeddings({"frame": frames, "time_s": (frames - 1) / probe["fps"]}, matrix, present,
                 Path(snakemake.output[0]))
