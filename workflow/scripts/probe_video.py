"""Frame count (by decoding), frame rate, size and audio stream of one video."""

from pathlib import Path

from avaffect.logs import job_logger
from avaffect.media import probe_video
from avaffect.tables import write_json

log = job_logger(snakemake.log[0], "probe_video")
info = probe_video(Path(snakemake.input.video))
if info.container_frames and info.container_frames != info.n_frames:
    log.warning("%s: container says %d frames, %d decoded; using the decoded count",
                info.path, info.container_frames, info.n_frames)
if info.variable_frame_rate:
    log.warning("%s: variable frame rate; frame k is taken at (k - 1) / %.3f s (the average rate), so audio "
                "windows line up with frames only approximately", info.path, info.fps)
if not info.has_audio:
    log.warning("%s: no audio stream", info.path)
log.info("%s", info)
write_json(info.to_dict(), Path(snakemake.output[0]))
