"""Fetch one model file of resources/manifest.yaml from its mirror or URL, checked against its sha256."""

from pathlib import Path

from avaffect.logs import job_logger
from avaffect.resources import Resource, fetch, mirror_folder

log = job_logger(snakemake.log[0], "fetch_resource")
resource = Resource(**snakemake.params.resource)
origin = fetch(resource, Path(snakemake.output[0]), mirror_folder(snakemake.params.mirror))
log.info("%s: from %s, sha256 %s (%s)", snakemake.output[0], origin, resource.sha256, resource.license)
