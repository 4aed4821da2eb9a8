"""MediaPipe face mesh on the tracked face of every frame: key landmarks and mouth opening."""

from pathlib import Path

from avaffect.core.logs import job_logger
from avaffect.core.progress import Progress, counted
from avaffect.core.tables import read_json, read_parquet, write_parquet
from avaffect.face.boxes import on_tracked_faces
from avaffect.face.landmarks import FaceMesh, landmarks_table
from avaffect.face.tracking import boxes_from_table
from avaffect.media.video import iter_frames

log = job_logger(snakemake.log[0], "face_landmarks")
faces = read_parquet(snakemake.input.faces)
boxes = boxes_from_table(faces)
fps = read_json(snakemake.input.probe)["fps"]
mesh = FaceMesh(snakemake.params.crop_margin)
frames = counted(iter_frames(Path(snakemake.input.video), boxes),
                 Progress("face mesh", "frame", len(boxes), log.info, snakemake.config["progress_s"]))
points = dict(on_tracked_faces(frames, boxes, mesh.key_points))
table = landmarks_table(faces["frame"].tolist(), points, fps)
log.info("face mesh on %d of %d tracked faces", int(table["has_landmarks"].sum()), len(boxes))
write_parquet(table, Path(snakemake.output[0]))
