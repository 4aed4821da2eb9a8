"""Fetch one model file of resources/manifest.yaml from its mirror or URL, checked against its sha256."""

from pathlib import Path

from avaffect.logs import job_logger
from avaffect.resources import Resource, fetch, mirror_folder, sha256_of

log = job_logger(snakemake.log[0], "fetch_resource")
resource = Resource(**snakemake.params.resource)
origin = fetch(resource, Path(snakemake.output[0]), mirror_folder(snakemake.params.mirror))
if resource.pinned:
    log.info("%s: from %s, sha256 %s (%s)", snakemake.output[0], origin, resource.sha256, resource.license)
else:
    log.warning("%s: from %s, sha256 %s: not checked, the manifest has no pin for %s; pin it in "
                "resources/manifest.yaml once you trust this copy", snakemake.output[0], origin,
                sha256_of(Path(snakemake.output[0])), resource.key)
