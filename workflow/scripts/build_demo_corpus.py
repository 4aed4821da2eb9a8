"""Build the offline demo corpus (see avaffect.corpus.demo)."""

from pathlib import Path

from avaffect.core.logs import job_logger
from avaffect.corpus.demo import build_demo_corpus

log = job_logger(snakemake.log[0], "build_demo_corpus")
build_demo_corpus(Path(snakemake.params.root), Path(snakemake.params.test_labels))
log.info("demo corpus at %s, test labels at %s", snakemake.params.root, snakemake.params.test_labels)
