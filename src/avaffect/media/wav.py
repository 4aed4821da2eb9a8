"""Audio: a video's soundtrack as mono PCM at one rate, and 16-bit wav files."""

from __future__ import annotations

import wave
from pathlib import Path

import av
import numpy as np

from avaffect.media.video import MediaError, open_container

PCM16_SCALE = 32768.0


def extract_audio(video: Path, sample_rate: int) -> np.ndarray | None:
    """Mono float32 samples of the first audio stream at `sample_rate`, or None when there is none."""
    with open_container(video) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
        except av.error.FFmpegError as err:
            raise MediaError(f"{video}: audio stream is corrupt ({err})") from err
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    return samples.astype(np.float32) / PCM16_SCALE


def write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM mono wav."""
    pcm = np.clip(np.round(samples * PCM16_SCALE), -PCM16_SCALE, PCM16_SCALE - 1).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples and the sample rate of a 16-bit PCM wav."""
    try:
        with wave.open(str(path), "rb") as src:
            if src.getsampwidth() != 2:
                raise MediaError(f"{path}: expected 16-bit PCM, got {8 * src.getsampwidth()}-bit")
            rate, channels = src.getframerate(), src.getnchannels()
            data = np.frombuffer(src.readframes(src.getnframes()), dtype="<i2")
    except (wave.Error, EOFError) as err:
        raise MediaError(f"{path}: not a readable wav file ({err})") from err
    samples = data.reshape(-1, channels).mean(axis=1) if channels > 1 else data
    return samples.astype(np.float32) / PCM16_SCALE, rate
