"""Landmark descriptor of the tracked face at the label rate, one row per sampled frame."""

from pathlib import Path

from avaffect.core.logs import job_logger
from avaffect.core.tables import read_json, read_parquet, write_embeddings
from avaffect.face.descriptor import landmark_embeddings

log = job_logger(snakemake.log[0], "face_embeddings")
columns, matrix, present = landmark_embeddings(read_parquet(snakemake.input.landmarks),
                                               read_json(snakemake.input.probe), snakemake.params.rate_hz)
log.info("%d sampled frames, %d with a face", len(matrix), int(present.sum()))
write_embeddings(columns, matrix, present, Path(snakemake.output[0]))
