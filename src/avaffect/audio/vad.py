"""Voice activity per frame: the target face's inner-lip opening with hysteresis, Silero VAD on the audio,
or both; voiced segments."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy.ndimage import median_filter


def hysteresis(signal: np.ndarray, on: float, off: float) -> np.ndarray:
    """True from a sample above `on` until the first sample below `off`; NaN (no face) is always False."""
    active = np.zeros(len(signal), dtype=bool)
    state = False
    for i, value in enumerate(signal):
        if np.isnan(value):
            state = False
        elif state:
            state = value >= off
        else:
            state = value > on
        active[i] = state
    return active


def segments(flags: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) index pairs, end exclusive, of the runs of True."""
    padded = np.concatenate([[False], flags.astype(bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(s), int(e)) for s, e in zip(edges[::2], edges[1::2], strict=True)]


def close_gaps(flags: np.ndarray, max_gap: int, keep_false: np.ndarray) -> np.ndarray:
    """Fill False runs of at most `max_gap` samples between two True runs, except where `keep_false`."""
    out = flags.copy()
    runs = segments(flags)
    for (_, end), (start, _) in zip(runs[:-1], runs[1:], strict=True):
        if start - end <= max_gap and not keep_false[end:start].any():
            out[end:start] = True
    return out


def drop_short(flags: np.ndarray, min_length: int) -> np.ndarray:
    out = flags.copy()
    for start, end in segments(flags):
        if end - start < min_length:
            out[start:end] = False
    return out


def mouth_vad(opening: np.ndarray, fps: float, baseline_percentile: float, on_delta: float, off_delta: float,
              smooth_s: float, min_gap_s: float, min_segment_s: float) -> np.ndarray:
    """Per-frame speaking flags from the mouth opening (NaN where the target face is not seen).

    Thresholds are relative to the video's own closed-mouth baseline (a low percentile of the opening),
    because resting lip gaps differ between people and camera angles.
    """
    speaking = np.zeros(len(opening), dtype=bool)
    seen = ~np.isnan(opening)
    if not seen.any():
        return speaking
    baseline = np.percentile(opening[seen], baseline_percentile)
    width = max(1, int(round(smooth_s * fps)) | 1)
    smoothed = np.full(len(opening), np.nan)
    smoothed[seen] = median_filter(opening[seen], size=width, mode="nearest")
    speaking = hysteresis(smoothed, baseline + on_delta, baseline + off_delta)
    speaking = close_gaps(speaking, int(round(min_gap_s * fps)), keep_false=~seen)
    return drop_short(speaking, max(1, int(round(min_segment_s * fps))))


def vad_table(frames: np.ndarray, fps: float, speaking: np.ndarray, evidence: dict[str, np.ndarray]
              ) -> pd.DataFrame:
    """One row per frame: the evidence columns (mouth opening, per-source flags), the speaking flag, and
    the voiced segment the frame belongs to (-1: none)."""
    segment = np.full(len(frames), -1, np.int64)
    for i, (start, end) in enumerate(segments(speaking)):
        segment[start:end] = i
    return pd.DataFrame({"frame": frames, "time_s": (frames - 1) / fps, **evidence, "speaking": speaking,
                         "segment": segment})


def segments_seconds(table: pd.DataFrame, fps: float) -> list[tuple[float, float]]:
    """(start, end) seconds of each voiced segment of a vad table; a segment ends where its last frame ends."""
    voiced = table[table["segment"] >= 0].groupby("segment")["frame"].agg(["min", "max"])
    return [((lo - 1) / fps, hi / fps) for lo, hi in zip(voiced["min"], voiced["max"], strict=True)]


VAD_METHODS = ("mouth", "voice", "both")
"""mouth: the target face's lips; voice: Silero VAD on the audio; both: frames where both agree (the target
person speaks, rather than another speaker or music)."""
SILERO_RATES = (8000, 16000)


class VoiceActivity:
    """Silero VAD (the model ships inside the silero-vad wheel), loaded once and reused for every file."""

    def __init__(self) -> None:
        from silero_vad import load_silero_vad

        self._model = load_silero_vad()

    def speech_seconds(self, samples: np.ndarray, sample_rate: int, threshold: float, min_speech_s: float,
                       min_silence_s: float, pad_s: float) -> list[tuple[float, float]]:
        """(start, end) seconds of the speech in a mono signal."""
        import torch
        from silero_vad import get_speech_timestamps

        if sample_rate not in SILERO_RATES:
            raise ValueError(f"Silero VAD needs audio at {' or '.join(map(str, SILERO_RATES))} Hz, got "
                             f"{sample_rate} Hz (config audio.sample_rate)")
        if len(samples) == 0:
            return []
        stamps = get_speech_timestamps(
            torch.from_numpy(np.ascontiguousarray(samples, np.float32)), self._model, threshold=threshold,
            sampling_rate=sample_rate, min_speech_duration_ms=round(1000 * min_speech_s),
            min_silence_duration_ms=round(1000 * min_silence_s), speech_pad_ms=round(1000 * pad_s),
        )
        return [(s["start"] / sample_rate, s["end"] / sample_rate) for s in stamps]


def frames_in_segments(frames: np.ndarray, fps: float, segments_s: list[tuple[float, float]]) -> np.ndarray:
    """Whether the centre of each 1-based frame lies inside one of the (start, end) second segments."""
    centres = (np.asarray(frames, float) - 0.5) / fps
    inside = np.zeros(len(centres), dtype=bool)
    for start, end in segments_s:
        inside |= (centres >= start) & (centres < end)
    return inside


def combine(method: str, mouth: np.ndarray | None, voice: np.ndarray | None) -> np.ndarray:
    """The speaking flag of a VAD method from the mouth and voice flags it needs."""
    if method not in VAD_METHODS:
        raise ValueError(f"unknown vad method '{method}' (expected one of {', '.join(VAD_METHODS)})")
    if method == "mouth":
        return mouth
    if method == "voice":
        return voice
    return mouth & voice


def voice_activity_table(probe: dict, vad: dict, landmarks: pd.DataFrame | None,
                         audio: tuple[np.ndarray, int] | None, report: Callable[[str], None]) -> pd.DataFrame:
    """The vad table (vad_table) of one sample by the method of `vad` (config section vad): the mouth from its
    landmarks table, the voice from its (samples, rate) audio, whichever the method reads (None: not read).
    What each source found is reported through `report`."""
    settings = dict(vad)
    method, voice_settings = settings.pop("method"), settings.pop("voice")
    fps = probe["fps"]
    frames = np.arange(1, probe["n_frames"] + 1)
    evidence, mouth, voice = {}, None, None
    if landmarks is not None:
        opening = landmarks.set_index("frame")["mouth_open"].reindex(frames).to_numpy(float)
        mouth = mouth_vad(opening, fps, **settings)
        evidence |= {"mouth_open": opening, "mouth_speaking": mouth}
        report(f"mouth: {100 * mouth.mean():.1f}% of frames voiced ({100 * np.isnan(opening).mean():.1f}% "
               "without the face)")
    if audio is not None:
        samples, rate = audio
        speech = VoiceActivity().speech_seconds(samples, rate, **voice_settings)
        voice = frames_in_segments(frames, fps, speech)
        evidence["voice_speaking"] = voice
        report(f"voice (Silero): {len(speech)} speech segments, {100 * voice.mean():.1f}% of frames voiced")
    speaking = combine(method, mouth, voice)
    table = vad_table(frames, fps, speaking, evidence)
    report(f"vad {method}: {table['segment'].max() + 1} voiced segments, {100 * speaking.mean():.1f}% of frames "
           "voiced")
    return table
