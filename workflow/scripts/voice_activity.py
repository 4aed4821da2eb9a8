"""Per-frame speaking flags (mouth, voice or both, config vad.method) and voiced segments."""

from pathlib import Path

import numpy as np

from avaffect.audio.vad import VoiceActivity, combine, frames_in_segments, mouth_vad, vad_table
from avaffect.core.logs import job_logger
from avaffect.core.tables import read_json, read_parquet, write_parquet
from avaffect.media.wav import read_wav

log = job_logger(snakemake.log[0], "voice_activity")
settings = dict(snakemake.params.vad)
method, voice_settings = settings.pop("method"), settings.pop("voice")
probe = read_json(snakemake.input.probe)
fps = probe["fps"]
frames = np.arange(1, probe["n_frames"] + 1)
evidence, mouth, voice = {}, None, None
if hasattr(snakemake.input, "landmarks"):
    landmarks = read_parquet(snakemake.input.landmarks).set_index("frame")["mouth_open"]
    opening = landmarks.reindex(frames).to_numpy(float)
    mouth = mouth_vad(opening, fps, **settings)
    evidence |= {"mouth_open": opening, "mouth_speaking": mouth}
    log.info("mouth: %.1f%% of frames voiced (%.1f%% without the face)", 100 * mouth.mean(),
             100 * np.isnan(opening).mean())
if hasattr(snakemake.input, "audio"):
    samples, rate = read_wav(Path(snakemake.input.audio))
    speech = VoiceActivity().speech_seconds(samples, rate, **voice_settings)
    voice = frames_in_segments(frames, fps, speech)
    evidence["voice_speaking"] = voice
    log.info("voice (Silero): %d speech segments, %.1f%% of frames voiced", len(speech), 100 * voice.mean())
speaking = combine(method, mouth, voice)
table = vad_table(frames, fps, speaking, evidence)
log.info("vad %s: %d voiced segments, %.1f%% of frames voiced", method, table["segment"].max() + 1,
         100 * speaking.mean())
write_parquet(table, Path(snakemake.output[0]))
