"""Time Spleeter vocal separation (the separate_vocals rule's script) and its peak memory on audio of any length.

    .venv/bin/python benchmarks/spleeter_separation.py --venv .snakemake/venvs/spleeter \
        --model-dir resources/spleeter/2stems [--seconds 120] [--chunk-s 1620] [--overlap-s 1.0] [--out PATH]

The audio is the shared clip's soundtrack (16 kHz mono, as extract_audio writes it) repeated to `--seconds`.
The script runs as a child process with the venv's Python, so ru_maxrss of the children is its peak resident
memory. `--model-dir` is an unpacked checkpoint (rule unpack_spleeter_model): the real 2stems weights, or the
untrained one of tests/spleeter_untrained_checkpoint.py, which costs the same.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from avaffect.media.wav import extract_audio, write_wav

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AVAFFECT_SHARED", REPO.parent / "shared"))
RATE = 16000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", type=Path, required=True)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--chunk-s", type=float, default=1620.0)
    parser.add_argument("--overlap-s", type=float, default=1.0)
    parser.add_argument("--video", type=Path, default=SHARED / "media" / "videos" / "short_hamilton_clip.mp4")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    soundtrack = extract_audio(args.video, RATE)
    samples = np.resize(soundtrack, round(args.seconds * RATE))
    with tempfile.TemporaryDirectory() as folder:
        audio, vocals = Path(folder) / "audio.wav", Path(folder) / "vocals.wav"
        write_wav(audio, samples, RATE)
        started = time.monotonic()
        subprocess.run([args.venv / "bin" / "python", REPO / "workflow" / "scripts" / "separate_vocals_spleeter.py",
                        audio, args.model_dir.absolute(), vocals, "--log", Path(folder) / "log",
                        "--chunk-s", str(args.chunk_s), "--overlap-s", str(args.overlap_s)],
                       check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
        wall = time.monotonic() - started
    report = {"audio_s": args.seconds, "chunk_s": args.chunk_s, "overlap_s": args.overlap_s, "wall_s": round(wall, 1),
              "realtime_factor": round(args.seconds / wall, 2),
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)}
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
