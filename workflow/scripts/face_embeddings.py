"""Landmark descriptor of the tracked face at the label rate, one row per sampled frame."""

from pathlib import Path

import numpy as np

from avaffect.core.logs import job_logger
from avaffect.core.tables import read_json, read_parquet, write_embeddings
from avaffect.face.descriptor import FACE_DESCRIPTOR, face_descriptor
from avaffect.face.landmarks import points_from_table
from avaffect.media.timeline import sample_frames

log = job_logger(snakemake.log[0], "face_embeddings")
probe = read_json(snakemake.input.probe)
landmarks = read_parquet(snakemake.input.landmarks).set_index("frame")
frames = sample_frames(probe["n_frames"], probe["fps"], snakemake.params.rate_hz)
sampled = landmarks.reindex(frames)
points = points_from_table(sampled.reset_index())
present = ~np.isnan(points).any(axis=(1, 2))
matrix = np.zeros((len(frames), len(FACE_DESCRIPTOR)), np.float32)
matrix[present] = face_descriptor(points[present], probe["width"], probe["height"])
log.info("%d sampled frames, %d with a face", len(frames), int(present.sum()))
write_embeddings({"frame": frames, "time_s": (frames - 1) / probe["fps"]}, matrix, present,
                 Path(snakemake.output[0]))
