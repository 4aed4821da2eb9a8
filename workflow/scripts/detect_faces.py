"""Detect faces in every frame and keep the sample's person across frames (a side of a two-person video)."""

from pathlib import Path

from avaffect.core.logs import job_logger
from avaffect.core.progress import Progress, counted
from avaffect.core.resources import Resource, verify
from avaffect.core.tables import read_json, write_parquet
from avaffect.corpus.layout import side_of
from avaffect.face.detectors import build_detector, tracked_faces
from avaffect.media.video import iter_frames, read_ahead

log = job_logger(snakemake.log[0], "detect_faces")
p = snakemake.params
probe = read_json(snakemake.input.probe)
fps, side = probe["fps"], side_of(snakemake.wildcards.sample)
weights = {name: verify(Resource(**entry), Path(snakemake.input[name]),
                        accept_unpinned=entry["key"] in p.accept_unpinned) for name, entry in p.weights.items()}
detector = build_detector(p.detector, p.settings, p.device, weights, p.pythons, p.engine)
frames = counted(read_ahead(iter_frames(Path(snakemake.input.video)), p.batch_size),
                 Progress("face detection", "frame", probe["n_frames"], log.info, snakemake.config["progress_s"]))
table = tracked_faces(frames, detector, p.batch_size, p.tracking, fps, probe["width"], side)
seen = int(table["has_face"].sum())
log.info("%s: tracked %s face in %d of %d frames (%s)", snakemake.input.video, f"the {side}" if side else "a", seen,
         len(table), detector.name)
if seen == 0:
    log.warning("%s: no face found in any frame; face models will have no embeddings for it",
                snakemake.input.video)
write_parquet(table, Path(snakemake.output[0]))
