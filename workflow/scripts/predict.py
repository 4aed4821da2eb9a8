"""Label-rate predictions of one model for the samples of one split."""

from pathlib import Path

from avaffect.core.checkpoints import read_checkpoint
from avaffect.core.logs import job_logger
from avaffect.core.tables import write_parquet
from avaffect.corpus.sample_sets import read_sample_set
from avaffect.models.extractors import DEFAULT_INPUTS
from avaffect.models.prediction import checkpoint_predictions
from avaffect.models.sequences import video_sequences

log = job_logger(snakemake.log[0], "predict")
task = snakemake.wildcards.task
what = f"model {snakemake.wildcards.model}, task {task}, window {snakemake.wildcards.window} s"
checkpoint = read_checkpoint(Path(snakemake.input.checkpoint))
# What the model was trained on; checkpoints from before `inputs` existed read the embedding.
features = checkpoint.get("inputs", DEFAULT_INPUTS)
sequences = []
inputs = read_sample_set(Path(snakemake.input.samples))
for sample in inputs.samples:
    found = video_sequences(Path(inputs.embeddings[sample]), sample, snakemake.params.modality, inputs=features)
    log.info("%s: %d steps with an embedding", sample, sum(int(s.present.sum()) for s in found))
    sequences += found
table = checkpoint_predictions(checkpoint, sequences, task, snakemake.params.device, what=what)
write_parquet(table, Path(snakemake.output[0]))
