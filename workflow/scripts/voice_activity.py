"""Per-frame speaking flags (mouth, voice or both, config vad.method) and voiced segments."""

from pathlib import Path

from avaffect.audio.vad import voice_activity_table
from avaffect.core.logs import job_logger
from avaffect.core.tables import read_json, read_parquet, write_parquet
from avaffect.media.wav import read_wav

log = job_logger(snakemake.log[0], "voice_activity")
landmarks = read_parquet(snakemake.input.landmarks) if hasattr(snakemake.input, "landmarks") else None
audio = read_wav(Path(snakemake.input.audio)) if hasattr(snakemake.input, "audio") else None
table = voice_activity_table(read_json(snakemake.input.probe), snakemake.params.vad, landmarks, audio, log.info)
write_parquet(table, Path(snakemake.output[0]))
