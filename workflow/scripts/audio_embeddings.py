"""Log-mel statistics at the label rate inside windows laid on the voiced segments."""

from pathlib import Path

import numpy as np

from avaffect.augment import augmented_copy
from avaffect.features import audio_window_embeddings
from avaffect.logs import job_logger
from avaffect.media import read_wav
from avaffect.tables import read_json, read_parquet, write_embeddings
from avaffect.vad import segments_seconds

log = job_logger(snakemake.log[0], "audio_embeddings")
probe = read_json(snakemake.input.probe)
samples, rate = read_wav(Path(snakemake.input.audio))
if augmentation := snakemake.params.get("augmentation"):
    samples = augmented_copy(samples, augmentation, int(snakemake.wildcards.copy_number), snakemake.wildcards.sample)
    log.info("augmented copy %s of %s", snakemake.wildcards.copy_number, snakemake.wildcards.sample)
vad = read_parquet(snakemake.input.vad)
voiced = segments_seconds(vad, probe["fps"])
columns, matrix = audio_window_embeddings(samples, rate, voiced, probe["n_frames"], probe["fps"],
                                          snakemake.params.rate_hz, **snakemake.params.audio)
log.info("%d voiced segments, %d windows, %d steps", len(voiced), len(set(columns["window"])), len(matrix))
if len(samples) == 0:
    log.warning("%s: empty audio, no windows", snakemake.input.audio)
write_embeddings(columns, matrix, np.ones(len(matrix), bool), Path(snakemake.output[0]))
