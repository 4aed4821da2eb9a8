"""separation.method none: the vocals are the audio, unchanged (Spleeter's rule is separate_vocals_spleeter.py)."""

import shutil
from pathlib import Path

from avaffect.files import atomic_write
from avaffect.logs import job_logger

log = job_logger(snakemake.log[0], "separate_vocals")
log.info("separation.method none: %s passed through unchanged", snakemake.input[0])
atomic_write(Path(snakemake.output[0]), lambda tmp: shutil.copyfile(snakemake.input[0], tmp))
