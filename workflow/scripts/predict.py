"""Label-rate predictions of one model for the samples of one split."""

from pathlib import Path

from avaffect.core.checkpoints import read_checkpoint
from avaffect.core.devices import resolve_device
from avaffect.core.logs import job_logger
from avaffect.core.tables import write_parquet
from avaffect.corpus.sample_sets import read_sample_set
from avaffect.corpus.tasks import PREDICTION_COLUMNS
from avaffect.models.extractors import DEFAULT_INPUTS
from avaffect.models.functionals import predict_kelm
from avaffect.models.sequences import prediction_table, video_sequences
from avaffect.models.training import load_checkpoint, predict

log = job_logger(snakemake.log[0], "predict")
task = snakemake.wildcards.task
columns = list(PREDICTION_COLUMNS[task])
what = f"model {snakemake.wildcards.model}, task {task}, window {snakemake.wildcards.window} s"
checkpoint = read_checkpoint(Path(snakemake.input.checkpoint))
# What the model was trained on; checkpoints from before `inputs` existed read the embedding.
features = checkpoint.get("inputs", DEFAULT_INPUTS)
sequences = []
inputs = read_sample_set(Path(snakemake.input.samples))
for sample in inputs.samples:
    found = video_sequences(Path(inputs.embeddings[sample]), sample, snakemake.params.modality,
                            inputs=features)
    log.info("%s: %d steps with an embedding", sample, sum(int(s.present.sum()) for s in found))
    sequences += found
if checkpoint.get("family") == "kelm":
    table = predict_kelm(checkpoint, sequences, columns, what=what)
else:
    device = resolve_device(snakemake.params.device)
    model, normalizer = load_checkpoint(checkpoint, device)
    outputs = predict(model, normalizer, task, sequences, checkpoint["window"], checkpoint["hop"], device,
                      what=what)
    table = prediction_table(sequences, outputs, columns)
write_parquet(table, Path(snakemake.output[0]))
