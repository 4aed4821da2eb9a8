"""Build a venv from a conda environment file's pip pins (for runs without --use-conda)."""

from pathlib import Path

from avaffect.core.logs import job_logger
from avaffect.core.venvs import build_venv

log = job_logger(snakemake.log[0], "build_venv")
venv = Path(snakemake.params.venv)
log.info("%s: installing %d pins of %s with pip", venv, len(snakemake.params.pins), snakemake.params.env_file)
build_venv(venv, list(snakemake.params.pins), snakemake.params.python, str(snakemake.params.env_file),
           Path(snakemake.log[0]))
log.info("%s: ready", venv)
