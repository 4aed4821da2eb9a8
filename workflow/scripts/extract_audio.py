"""16 kHz mono wav of a video's first audio stream; an empty wav when the video has none."""

from pathlib import Path

import numpy as np

from avaffect.logs import job_logger
from avaffect.media import extract_audio, write_wav
from avaffect.tables import atomic_write

log = job_logger(snakemake.log[0], "extract_audio")
rate = snakemake.params.sample_rate
samples = extract_audio(Path(snakemake.input.video), rate)
if samples is None:
    log.warning("%s: no audio stream; writing an empty wav, audio models will have no windows for it",
                snakemake.input.video)
    samples = np.zeros(0, np.float32)
log.info("%d samples at %d Hz (%.2f s)", len(samples), rate, len(samples) / rate)
atomic_write(Path(snakemake.output[0]), lambda tmp: write_wav(tmp, samples, rate))
