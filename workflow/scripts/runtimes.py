"""Wall-clock time and memory per rule from every benchmark file of the workflow, as a table and a chart."""

from pathlib import Path

from avaffect.core.logs import job_logger
from avaffect.core.tables import atomic_write
from avaffect.report.figures import save_figure
from avaffect.report.runtimes import read_benchmark, runtime_figure, runtime_table

log = job_logger(snakemake.log[0], "runtimes")
root = Path(snakemake.params.benchmarks)
files = sorted(root.rglob("*.tsv"))
table = runtime_table({f: read_benchmark(f) for f in files}, root)
log.info("%d benchmark files under %s\n%s", len(files), root, table.to_string(index=False))
atomic_write(Path(snakemake.output.table), lambda tmp: table.to_csv(tmp, index=False, float_format="%.3f"))
save_figure(runtime_figure(table), Path(snakemake.output.figure))
