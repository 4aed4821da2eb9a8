"""Per-frame speaking flags of the target face from its mouth opening, and voiced segments."""

from pathlib import Path

from avaffect.logs import job_logger
from avaffect.tables import read_json, read_parquet, write_parquet
from avaffect.vad import mouth_vad, vad_table

log = job_logger(snakemake.log[0], "mouth_vad")
landmarks = read_parquet(snakemake.input.landmarks)
fps = read_json(snakemake.input.probe)["fps"]
opening = landmarks["mouth_open"].to_numpy(float)
speaking = mouth_vad(opening, fps, **snakemake.params.vad)
table = vad_table(landmarks["frame"].to_numpy(), fps, opening, speaking)
log.info("%d voiced segments, %.1f%% of frames voiced", table["segment"].max() + 1, 100 * speaking.mean())
write_parquet(table, Path(snakemake.output[0]))
