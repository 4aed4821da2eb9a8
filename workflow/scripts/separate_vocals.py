"""Vocal separation; method `none` passes the audio through unchanged."""

import shutil
from pathlib import Path

from avaffect.logs import job_logger
from avaffect.tables import atomic_write

log = job_logger(snakemake.log[0], "separate_vocals")
method = snakemake.params.method
if method != "none":
    raise ValueError(f"separation.method '{method}' is not available in this version")
log.info("separation.method none: %s passed through unchanged", snakemake.input[0])
atomic_write(Path(snakemake.output[0]), lambda tmp: shutil.copyfile(snakemake.input[0], tmp))
