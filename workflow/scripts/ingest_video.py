"""One video's probe (frame count by decoding, frame rate, size, audio stream) and its first audio stream as a
mono wav at the configured rate; an empty wav when the video has none."""

from pathlib import Path

import numpy as np

from avaffect.core.logs import job_logger
from avaffect.core.tables import atomic_write, write_json
from avaffect.media.video import probe_video
from avaffect.media.wav import extract_audio, write_wav

log = job_logger(snakemake.log[0], "ingest_video")
video = Path(snakemake.input.video)
info = probe_video(video)
if info.container_frames and info.container_frames != info.n_frames:
    log.warning("%s: container says %d frames, %d decoded; using the decoded count",
                info.path, info.container_frames, info.n_frames)
if info.variable_frame_rate:
    log.warning("%s: variable frame rate; frame k is taken at (k - 1) / %.3f s (the average rate), so audio "
                "windows line up with frames only approximately", info.path, info.fps)
log.info("%s", info)

rate = snakemake.params.sample_rate
samples = extract_audio(video, rate)
if samples is None:
    log.warning("%s: no audio stream; writing an empty wav, audio models will have no windows for it", video)
    samples = np.zeros(0, np.float32)
log.info("%d samples at %d Hz (%.2f s)", len(samples), rate, len(samples) / rate)
atomic_write(Path(snakemake.output.audio), lambda tmp: write_wav(tmp, samples, rate))
write_json(info.to_dict(), Path(snakemake.output.probe))
