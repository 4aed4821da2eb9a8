"""One table of every model's and every system's validation scores, both tasks."""

from pathlib import Path

from avaffect.core.logs import job_logger
from avaffect.core.tables import atomic_write, read_json
from avaffect.fusion.selection import metrics_table

log = job_logger(snakemake.log[0], "metrics_table")
table = metrics_table([read_json(f) for f in snakemake.input], [Path(f).parts[-3] for f in snakemake.input])
log.info("\n%s", table.to_string(index=False))
atomic_write(Path(snakemake.output[0]), lambda tmp: table.to_csv(tmp, index=False))
