"""MediaPipe face mesh on the tracked face of every frame: key landmarks and mouth opening."""

from pathlib import Path

from avaffect.faces import boxes_from_table, on_tracked_faces
from avaffect.landmarks import FaceMesh, landmarks_table
from avaffect.logs import job_logger
from avaffect.media import iter_frames
from avaffect.tables import read_json, read_parquet, write_parquet

log = job_logger(snakemake.log[0], "face_landmarks")
faces = read_parquet(snakemake.input.faces)
boxes = boxes_from_table(faces)
fps = read_json(snakemake.input.probe)["fps"]
mesh = FaceMesh(snakemake.params.crop_margin)
points = dict(on_tracked_faces(iter_frames(Path(snakemake.input.video), boxes), boxes, mesh.key_points))
table = landmarks_table(faces["frame"].tolist(), points, fps)
log.info("face mesh on %d of %d tracked faces", int(table["has_landmarks"].sum()), len(boxes))
write_parquet(table, Path(snakemake.output[0]))
