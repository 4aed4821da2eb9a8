"""Unpack the checked Spleeter 2stems release tarball and record each checkpoint file's sha256."""

from pathlib import Path

from avaffect.audio.separation import unpack_checkpoint
from avaffect.core.logs import job_logger

log = job_logger(snakemake.log[0], "unpack_spleeter_model")
digests = unpack_checkpoint(Path(snakemake.input[0]), Path(snakemake.params.model_dir))
for name, digest in digests.items():
    log.info("%s/%s: sha256 %s (from %s)", snakemake.params.model_dir, name, digest, snakemake.input[0])
