"""A video's probe and its audio as the workflow's stages read them (rule ingest_video, a bundle's predictor)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from avaffect.core.tables import atomic_write
from avaffect.media.video import probe_video
from avaffect.media.wav import extract_audio, write_wav


def ingest_video(video: Path, sample_rate: int, audio: Path, warn: Callable[[str], None],
                 info: Callable[[str], None]) -> dict:
    """Probe `video` (frame count by decoding, frame rate, size, audio stream) and write its first audio stream
    to `audio` as a mono 16-bit wav at `sample_rate` (empty when it has none); returns the probe as a dict.
    What the later stages should know (a container's wrong frame count, a variable rate) goes to `warn`."""
    probe = probe_video(Path(video))
    if probe.container_frames and probe.container_frames != probe.n_frames:
        warn(f"{probe.path}: container says {probe.container_frames} frames, {probe.n_frames} decoded; using the "
             "decoded count")
    if probe.variable_frame_rate:
        warn(f"{probe.path}: variable frame rate; frame k is taken at (k - 1) / {probe.fps:.3f} s (the average "
             "rate), so audio windows line up with frames only approximately")
    info(f"{probe}")
    samples = extract_audio(Path(video), sample_rate)
    if samples is None:
        warn(f"{video}: no audio stream; writing an empty wav, audio models will have no windows for it")
        samples = np.zeros(0, np.float32)
    info(f"{len(samples)} samples at {sample_rate} Hz ({len(samples) / sample_rate:.2f} s)")
    atomic_write(Path(audio), lambda tmp: write_wav(tmp, samples, sample_rate))
    return probe.to_dict()
