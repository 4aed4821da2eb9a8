"""One video's probe (frame count by decoding, frame rate, size, audio stream) and its first audio stream as a
mono wav at the configured rate; an empty wav when the video has none."""

from pathlib import Path

from avaffect.core.logs import job_logger
from avaffect.core.tables import write_json
from avaffect.media.ingest import ingest_video

log = job_logger(snakemake.log[0], "ingest_video")
probe = ingest_video(Path(snakemake.input.video), snakemake.params.sample_rate, Path(snakemake.output.audio),
                     log.warning, log.info)
write_json(probe, Path(snakemake.output.probe))
