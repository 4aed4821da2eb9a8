"""Label-rate predictions of one end-to-end audio model for the samples of one split: on the windows its
training laid, one row per step of each window, as rule predict writes them."""

from pathlib import Path

import numpy as np
import torch

from avaffect.audio.pdem import build_pdem, load_pdem_weights
from avaffect.audio.vad import segments_seconds
from avaffect.core.checkpoints import read_checkpoint
from avaffect.core.devices import resolve_device
from avaffect.core.logs import job_logger
from avaffect.core.resources import Resource, verify
from avaffect.core.tables import read_json, read_parquet, write_parquet
from avaffect.corpus.layout import video_of
from avaffect.corpus.tasks import PREDICTION_COLUMNS
from avaffect.media.wav import read_wav
from avaffect.models.pdem_finetune import load_end_to_end, predict_windows, recording_windows
from avaffect.models.sequences import StepSequence, prediction_table, require_finite_predictions

log = job_logger(snakemake.log[0], "predict_end_to_end")
p = snakemake.params
task = snakemake.wildcards.task
what = f"model {snakemake.wildcards.model}, task {task}, window {snakemake.wildcards.window} s"
torch.set_num_threads(snakemake.threads)
for name, entry in p.weights.items():
    verify(Resource(**entry), Path(snakemake.input[name]), accept_unpinned=entry["key"] in p.accept_unpinned)
checkpoint = read_checkpoint(Path(snakemake.input.checkpoint))
backbone, extractor = build_pdem(Path(snakemake.input.config).parent)
load_pdem_weights(backbone, Path(snakemake.input.weights))
model = load_end_to_end(checkpoint, backbone)
device = resolve_device(p.device)
audio = {Path(f).stem: Path(f) for f in snakemake.input.audio}
vad = {Path(f).stem: Path(f) for f in snakemake.input.vad}
probes = {Path(f).stem: read_json(f) for f in snakemake.input.probes}
sequences, outputs = [], []
for sample in p.samples:
    probe = probes[video_of(sample)]
    waveform, rate = read_wav(audio[video_of(sample)])
    voiced = segments_seconds(read_parquet(vad[sample]), probe["fps"])
    windows = recording_windows(waveform, rate, voiced, probe["n_frames"], probe["fps"], checkpoint["rate_hz"],
                                checkpoint["window_s"], checkpoint["step_s"])
    found = predict_windows(model, extractor, task, windows, p.batch_size, device)
    for frames, times, output in zip(windows.frames, windows.times, found, strict=True):
        require_finite_predictions(what, output, np.full(len(output), sample), times)
        # Every step of a window has audio: no step lacks its input, as a face step can.
        sequences.append(StepSequence(sample, frames, times, np.zeros((len(frames), 0), np.float32)))
        outputs.append(output)
    log.info("%s: %d voiced windows, %d steps", sample, len(windows), sum(len(t) for t in windows.times))
write_parquet(prediction_table(sequences, outputs, list(PREDICTION_COLUMNS[task])), Path(snakemake.output[0]))
