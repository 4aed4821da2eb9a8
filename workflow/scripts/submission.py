"""The ABAW submission file of one task, written only after it validates."""

from pathlib import Path

from avaffect.corpus import video_of
from avaffect.logs import job_logger
from avaffect.submission import expected_rows, submission_table, write_submission
from avaffect.tables import read_json, read_parquet

log = job_logger(snakemake.log[0], "submission")
task = snakemake.wildcards.task
probes = {Path(f).stem: read_json(f) for f in snakemake.input.probes}
frame_counts = {sample: probes[video_of(sample)]["n_frames"] for sample in snakemake.params.samples}
rows = expected_rows(frame_counts)
table = submission_table(read_parquet(snakemake.input.fused), task)
write_submission(Path(snakemake.output[0]), table, task, rows)
log.info("%s: %d rows for %d test videos", snakemake.output[0], len(rows), len(frame_counts))
