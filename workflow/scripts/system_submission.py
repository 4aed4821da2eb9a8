"""The ABAW submission file of one system and task, written only after it validates."""

from pathlib import Path

from avaffect.core.logs import job_logger
from avaffect.core.tables import read_json, read_parquet
from avaffect.corpus.layout import probes_by_sample
from avaffect.fusion.submission import expected_rows, follow_rows, read_sample_rows, submission_table, write_submission

log = job_logger(snakemake.log[0], "system_submission")
task = snakemake.wildcards.task
probes = probes_by_sample(snakemake.params.samples, {Path(f).stem: read_json(f) for f in snakemake.input.probes})
frame_counts = {sample: probe["n_frames"] for sample, probe in probes.items()}
table = submission_table(read_parquet(snakemake.input.fused), task)
if snakemake.input.get("sample"):
    rows = read_sample_rows(Path(snakemake.input.sample))
    table = follow_rows(table, rows, snakemake.input.sample)
    log.info("rows follow the organisers' sample file %s", snakemake.input.sample)
else:
    rows = expected_rows(frame_counts)
write_submission(Path(snakemake.output[0]), table, task, rows)
log.info("%s: system %s, %d rows for %d test samples", snakemake.output[0], snakemake.wildcards.system, len(rows),
         len(frame_counts))
