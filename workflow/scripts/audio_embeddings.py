"""Log-mel statistics at the label rate inside windows laid on the voiced segments: of the sample's audio, or
(rule audio_embeddings_augmented) of each of its augmented copies, one output per copy."""

from pathlib import Path

import numpy as np

from avaffect.audio.augment import waveforms_to_embed
from avaffect.audio.logmel import audio_window_embeddings
from avaffect.audio.vad import segments_seconds
from avaffect.core.logs import job_logger
from avaffect.core.tables import read_json, read_parquet, write_embeddings
from avaffect.media.wav import read_wav

log = job_logger(snakemake.log[0], "audio_embeddings")
probe = read_json(snakemake.input.probe)
samples, rate = read_wav(Path(snakemake.input.audio))
if len(samples) == 0:
    log.warning("%s: empty audio, no windows", snakemake.input.audio)
vad = read_parquet(snakemake.input.vad)
voiced = segments_seconds(vad, probe["fps"])
copies = waveforms_to_embed(samples, snakemake.params.get("augmentation"), snakemake.wildcards.sample)
for (copy, waveform), output in zip(copies, snakemake.output, strict=True):
    columns, matrix = audio_window_embeddings(waveform, rate, voiced, probe["n_frames"], probe["fps"],
                                              snakemake.params.rate_hz, **snakemake.params.audio)
    log.info("%s%d voiced segments, %d windows, %d steps", "" if copy is None else f"augmented copy {copy}: ",
             len(voiced), len(set(columns["window"])), len(matrix))
    write_embeddings(columns, matrix, np.ones(len(matrix), bool), Path(output))
