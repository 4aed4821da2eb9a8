"""PDEM embeddings at the label rate inside windows laid on the voiced segments: of the sample's audio, or
(rule audio_embeddings_pdem_augmented) of each of its augmented copies, one output per copy."""

from pathlib import Path

import numpy as np
import torch

from avaffect.audio.augment import waveforms_to_embed
from avaffect.audio.pdem import build_pdem, load_pdem_weights, pdem_window_embeddings
from avaffect.audio.vad import segments_seconds
from avaffect.core.devices import resolve_device
from avaffect.core.logs import job_logger
from avaffect.core.progress import Progress
from avaffect.core.resources import Resource, verify
from avaffect.core.tables import read_json, read_parquet, write_embeddings
from avaffect.media.timeline import audio_window_grid
from avaffect.media.wav import read_wav

log = job_logger(snakemake.log[0], "audio_embeddings_pdem")
p = snakemake.params
torch.set_num_threads(snakemake.threads)
for name, entry in p.weights.items():
    verify(Resource(**entry), Path(snakemake.input[name]), accept_unpinned=entry["key"] in p.accept_unpinned)
model, extractor = build_pdem(Path(snakemake.input.config).parent)
load_pdem_weights(model, Path(snakemake.input.weights))
probe = read_json(snakemake.input.probe)
samples, rate = read_wav(Path(snakemake.input.audio))
voiced = segments_seconds(read_parquet(snakemake.input.vad), probe["fps"])
duration = min(len(samples) / rate, probe["n_frames"] / probe["fps"])
windows, columns = audio_window_grid(voiced, duration, probe["n_frames"], probe["fps"], p.rate_hz,
                                     p.audio["window_s"], p.audio["step_s"])
device = resolve_device(p.device)
copies = waveforms_to_embed(samples, p.get("augmentation"), snakemake.wildcards.sample)
for (copy, waveform), output in zip(copies, snakemake.output, strict=True):
    progress = Progress("PDEM" if copy is None else f"PDEM, augmented copy {copy}", "window", len(windows), log.info,
                        snakemake.config["progress_s"])
    matrix = pdem_window_embeddings(model, extractor, waveform, rate, windows, p.rate_hz, p.pdem["batch_size"],
                                    device, progress.advance)
    log.info("%s%d voiced segments, %d windows, %d steps (PDEM on %s)",
             "" if copy is None else f"augmented copy {copy}: ", len(voiced), len(windows), len(matrix), device)
    write_embeddings(columns, matrix, ~np.isnan(matrix).any(axis=1), Path(output))
