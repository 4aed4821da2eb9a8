"""Fetch one model file of resources/manifest.yaml from its mirror or URL, checked against its sha256."""

from pathlib import Path

from avaffect.core.logs import job_logger
from avaffect.core.resources import UNPINNED, Resource, fetch, mirror_folder, sha256_of

log = job_logger(snakemake.log[0], "fetch_resource")
resource = Resource(**snakemake.params.resource)
accept_unpinned = snakemake.params.accept_unpinned
origin = fetch(resource, Path(snakemake.output[0]), mirror_folder(snakemake.params.mirror),
               accept_unpinned=accept_unpinned)
if resource.sha256 is UNPINNED:
    log.warning("%s: from %s, NOT CHECKED: the manifest pins no sha256 for '%s' and config "
                "resources.accept_unpinned accepts it; its sha256 is %s, pin it in resources/manifest.yaml",
                snakemake.output[0], origin, resource.key, sha256_of(Path(snakemake.output[0])))
else:
    log.info("%s: from %s, sha256 %s (%s)", snakemake.output[0], origin, resource.sha256, resource.license)
