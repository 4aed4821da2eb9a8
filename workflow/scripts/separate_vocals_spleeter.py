"""Vocal separation with Spleeter 2stems; runs with the Spleeter environment's Python (TensorFlow, numpy < 2),
so it is called from a shell command, not through Snakemake's `script:`."""

import argparse
import os
from pathlib import Path

from avaffect.audio.separation import separate_vocals, verify_checkpoint
from avaffect.core.files import atomic_write
from avaffect.core.logs import job_logger
from avaffect.media.wav import read_wav, write_wav

MODEL = "2stems"
parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("audio", type=Path, help="mono 16-bit wav")
parser.add_argument("model_dir", type=Path, help="the unpacked 2stems checkpoint (rule unpack_spleeter_model)")
parser.add_argument("output", type=Path, help="the vocals, mono 16-bit wav at the input's rate")
parser.add_argument("--log", type=Path, required=True)
parser.add_argument("--chunk-s", type=float, required=True)
parser.add_argument("--overlap-s", type=float, required=True)
args = parser.parse_args()

log = job_logger(args.log, "separate_vocals")
model_dir = args.model_dir.absolute()
if model_dir.name != MODEL:
    raise SystemExit(f"{model_dir}: Spleeter loads the {MODEL} model only from a folder named {MODEL}")
checkpoint = verify_checkpoint(model_dir)
log.info("%s: checkpoint files match %s", checkpoint, model_dir / "SHA256SUMS")
samples, rate = read_wav(args.audio)
if len(samples) == 0:
    log.info("%s has no samples (the video has no audio): the vocals are empty too", args.audio)
    vocals = samples
else:
    # Spleeter finds its model as $MODEL_PATH/2stems, and reads the variable when it is imported.
    os.environ["MODEL_PATH"] = str(model_dir.parent)
    # TensorFlow's start-up notices (no CUDA, no TensorRT, CPU instructions) would bury the job's warnings.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from spleeter.separator import Separator
    from spleeter.utils.configuration import load_configuration

    separator = Separator(f"spleeter:{MODEL}", multiprocess=False)
    model_rate = load_configuration(f"spleeter:{MODEL}")["sample_rate"]
    log.info("%s: %d samples at %d Hz, separated at %d Hz in chunks of %g s (%g s overlap)", args.audio,
             len(samples), rate, model_rate, args.chunk_s, args.overlap_s)
    vocals = separate_vocals(samples, rate, lambda stereo: separator.separate(stereo)["vocals"], model_rate,
                             args.chunk_s, args.overlap_s)
atomic_write(args.output, lambda tmp: write_wav(tmp, vocals, rate))
log.info("%s: %d samples at %d Hz", args.output, len(vocals), rate)
