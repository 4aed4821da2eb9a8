"""Build the offline demo corpus (see avaffect.demo)."""

from pathlib import Path

from avaffect.demo import build_demo_corpus
from avaffect.logs import job_logger

log = job_logger(snakemake.log[0], "build_demo_corpus")
build_demo_corpus(Path(snakemake.params.root), Path(snakemake.params.test_labels))
log.info("demo corpus at %s, test labels at %s", snakemake.params.root, snakemake.params.test_labels)
