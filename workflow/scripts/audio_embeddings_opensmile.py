"""openSMILE descriptors (extractors egemaps and compare) at the label rate inside windows laid on the voiced
segments: of the sample's audio, or (rule audio_embeddings_opensmile_augmented) of each of its augmented copies,
one output per copy."""

from pathlib import Path

import numpy as np

from avaffect.audio.augment import waveforms_to_embed
from avaffect.audio.opensmile_features import FEATURE_SETS, descriptor_extractor, opensmile_window_embeddings
from avaffect.audio.vad import segments_seconds
from avaffect.core.logs import job_logger
from avaffect.core.tables import read_json, read_parquet, write_embeddings
from avaffect.media.timeline import audio_window_grid
from avaffect.media.wav import read_wav

log = job_logger(snakemake.log[0], "audio_embeddings_opensmile")
p = snakemake.params
extractor = snakemake.wildcards.extractor
smile = descriptor_extractor(extractor)
probe = read_json(snakemake.input.probe)
samples, rate = read_wav(Path(snakemake.input.audio))
if len(samples) == 0:
    log.warning("%s: empty audio, no windows", snakemake.input.audio)
voiced = segments_seconds(read_parquet(snakemake.input.vad), probe["fps"])
duration = min(len(samples) / rate, probe["n_frames"] / probe["fps"])
windows, columns = audio_window_grid(voiced, duration, probe["n_frames"], probe["fps"], p.rate_hz,
                                     p.audio["window_s"], p.audio["step_s"])
copies = waveforms_to_embed(samples, p.get("augmentation"), snakemake.wildcards.sample)
for (copy, waveform), output in zip(copies, snakemake.output, strict=True):
    matrix = opensmile_window_embeddings(smile, waveform, rate, windows, p.rate_hz)
    log.info("%s%d voiced segments, %d windows, %d steps (%s: %d descriptors, mean and standard deviation)",
             "" if copy is None else f"augmented copy {copy}: ", len(voiced), len(windows), len(matrix),
             FEATURE_SETS[extractor], len(smile.feature_names))
    write_embeddings(columns, matrix, np.isfinite(matrix).all(axis=1), Path(output))
