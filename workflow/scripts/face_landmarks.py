"""MediaPipe face mesh on the tracked face of every frame: key landmarks and mouth opening."""

from pathlib import Path

from avaffect.core.logs import job_logger
from avaffect.core.tables import read_json, read_parquet, write_parquet
from avaffect.face.landmarks import tracked_landmarks

log = job_logger(snakemake.log[0], "face_landmarks")
faces = read_parquet(snakemake.input.faces)
fps = read_json(snakemake.input.probe)["fps"]
table = tracked_landmarks(Path(snakemake.input.video), faces, fps, snakemake.params.crop_margin, log.info,
                          snakemake.config["progress_s"])
log.info("face mesh on %d of %d tracked faces", int(table["has_landmarks"].sum()), int(faces["has_face"].sum()))
write_parquet(table, Path(snakemake.output[0]))
