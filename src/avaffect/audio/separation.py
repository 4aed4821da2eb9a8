"""Vocal separation around a source-separation model (Spleeter 2stems): chunking, resampling, joining, and
the checks that the model's checkpoint is really there.

Everything here runs in the main environment and in the Spleeter environment (numpy < 2, TensorFlow): it
needs only numpy, scipy and the library's file helpers, never the model itself, which comes in as a
function from a stereo waveform at the model's rate to the separated vocals.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Callable
from math import ceil, gcd
from pathlib import Path

import numpy as np

from avaffect.core.files import atomic_write
from avaffect.core.resources import sha256_of

SPLEETER_CHECKPOINT_FILES = ("checkpoint", "model.data-00000-of-00001", "model.index", "model.meta")
"""A TensorFlow checkpoint as Spleeter's release tarballs hold it: the `checkpoint` index names prefix
`model`, whose variables, index and graph are the other three files."""
CHECKPOINT_PREFIX = "model"
DIGESTS_FILE = "SHA256SUMS"
"""Written beside the unpacked checkpoint: each file's sha256 as unpacked from the verified tarball."""

Separate = Callable[[np.ndarray], np.ndarray]
"""A model: stereo float32 samples (n, 2) at the model's rate in, the vocals (n, 2) out."""


class SeparationError(RuntimeError):
    """A checkpoint or separation result that cannot be used; the message names the file and what is wrong."""


def resample(samples: np.ndarray, from_rate: int, to_rate: int, length: int | None = None) -> np.ndarray:
    """Polyphase resampling along axis 0, cut or zero-padded to `length` samples (default: the duration's
    length at `to_rate`, rounded up), so that a round trip returns exactly as many samples as it took."""
    # Imported here: scipy.signal takes seconds to import, and every Snakemake start imports this module.
    from scipy.signal import resample_poly

    common = gcd(from_rate, to_rate)
    up, down = to_rate // common, from_rate // common
    if length is None:
        length = ceil(len(samples) * up / down)
    if len(samples) == 0:
        return np.zeros((length, *samples.shape[1:]), dtype=np.float32)
    out = resample_poly(samples, up, down, axis=0).astype(np.float32) if up != down else samples.astype(np.float32)
    if len(out) >= length:
        return out[:length]
    return np.concatenate([out, np.zeros((length - len(out), *out.shape[1:]), dtype=np.float32)])


def chunk_spans(n_samples: int, chunk: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) spans of at most `chunk + overlap` samples, starting every `chunk` samples; each span
    but the first shares its first `overlap` samples with the previous one, and the last ends at n_samples."""
    if not 0 <= overlap < chunk:
        raise ValueError(f"overlap must be non-negative and shorter than the chunk, got {overlap} and {chunk}")
    count = max(1, ceil(max(n_samples - overlap, 0) / chunk))
    return [(k * chunk, min(k * chunk + chunk + overlap, n_samples)) for k in range(count)]


def join_chunks(pieces: list[np.ndarray], spans: list[tuple[int, int]], overlap: int) -> np.ndarray:
    """The pieces laid at their spans (as chunk_spans makes them), cross-faded linearly where neighbours
    overlap (the weights sum to one there), so that pieces that agree join into exactly the same samples."""
    out = np.zeros((spans[-1][1], *pieces[0].shape[1:]), dtype=np.float32)
    fade_in = (np.arange(overlap, dtype=np.float32) + 0.5) / max(overlap, 1)
    for index, (piece, (start, end)) in enumerate(zip(pieces, spans, strict=True)):
        if len(piece) != end - start:
            raise ValueError(f"piece {index} has {len(piece)} samples for span [{start}, {end})")
        weight = np.ones(end - start, dtype=np.float32)
        if overlap and index > 0:
            weight[:overlap] = fade_in
        if overlap and index < len(spans) - 1:
            weight[-overlap:] = fade_in[::-1]
        out[start:end] += piece * weight.reshape(-1, *([1] * (piece.ndim - 1)))
    return out


def separate_vocals(samples: np.ndarray, rate: int, separate: Separate, model_rate: int, chunk_s: float,
                    overlap_s: float) -> np.ndarray:
    """Mono vocals at `rate`, as many samples as `samples` (mono at `rate`): chunk by chunk, each resampled
    to `model_rate` and given to the model as two identical channels, its vocals averaged to mono and
    resampled back, and the chunks cross-faded over `overlap_s`. Memory holds one chunk at the model's
    rate, so any length works."""
    if len(samples) == 0:
        return np.zeros(0, dtype=np.float32)
    overlap = round(overlap_s * rate)
    spans = chunk_spans(len(samples), round(chunk_s * rate), overlap)
    pieces = []
    for start, end in spans:
        stereo = np.repeat(resample(samples[start:end], rate, model_rate)[:, None], 2, axis=1)
        vocals = np.asarray(separate(stereo), dtype=np.float32)
        if vocals.shape != stereo.shape:
            raise SeparationError(f"the model returned vocals of shape {vocals.shape} for input of shape "
                                  f"{stereo.shape} (samples {start}:{end} at {rate} Hz)")
        pieces.append(resample(vocals.mean(axis=1), model_rate, rate, length=end - start))
    return join_chunks(pieces, spans, overlap)


def _checkpoint_members(archive: tarfile.TarFile, path: Path) -> dict[str, tarfile.TarInfo]:
    members: dict[str, tarfile.TarInfo] = {}
    for member in archive.getmembers():
        name = Path(member.name).name
        if name in SPLEETER_CHECKPOINT_FILES and member.isfile():
            if name in members:
                raise SeparationError(f"{path}: holds {name} twice ({members[name].name}, {member.name})")
            members[name] = member
    missing = [name for name in SPLEETER_CHECKPOINT_FILES if name not in members]
    if missing:
        raise SeparationError(f"{path}: not a Spleeter checkpoint archive, it lacks {', '.join(missing)}")
    return members


def unpack_checkpoint(archive_path: Path, model_dir: Path) -> dict[str, str]:
    """Extract the checkpoint files of a Spleeter release tarball into `model_dir` (nothing else, whatever
    the archive's folders) and write their sha256 to DIGESTS_FILE there, last. Returns the digests."""
    archive_path, model_dir = Path(archive_path), Path(model_dir)
    try:
        with tarfile.open(archive_path) as archive:
            members = _checkpoint_members(archive, archive_path)
            model_dir.mkdir(parents=True, exist_ok=True)
            for name, member in members.items():
                source = archive.extractfile(member)
                atomic_write(model_dir / name, lambda tmp, source=source: tmp.write_bytes(source.read()))
    except (tarfile.TarError, EOFError, OSError) as err:
        raise SeparationError(f"{archive_path}: not a readable tar archive ({err})") from err
    digests = {name: sha256_of(model_dir / name) for name in SPLEETER_CHECKPOINT_FILES}
    atomic_write(model_dir / DIGESTS_FILE,
                 lambda tmp: tmp.write_text("".join(f"{digest}  {name}\n" for name, digest in digests.items())))
    return digests


def checkpoint_prefix(model_dir: Path) -> Path:
    """The prefix that the `checkpoint` index file names; TensorFlow falls back to random weights when it
    points anywhere but at the files beside it, so only `model` (or its absolute path) is accepted."""
    model_dir = Path(model_dir)
    text = (model_dir / "checkpoint").read_text(errors="replace")
    match = re.search(r'^model_checkpoint_path:\s*"([^"]*)"', text, re.MULTILINE)
    if match is None:
        raise SeparationError(f"{model_dir / 'checkpoint'}: names no model_checkpoint_path")
    named = Path(match.group(1))
    if named not in (Path(CHECKPOINT_PREFIX), (model_dir / CHECKPOINT_PREFIX).absolute()):
        raise SeparationError(f"{model_dir / 'checkpoint'}: names checkpoint '{named}', not "
                              f"'{CHECKPOINT_PREFIX}' beside it in {model_dir}")
    return model_dir / CHECKPOINT_PREFIX


def verify_checkpoint(model_dir: Path) -> Path:
    """The checkpoint prefix in `model_dir` once every checkpoint file is present and has the sha256 taken
    when it was unpacked; otherwise a SeparationError naming the folder and the missing or changed file.
    Spleeter itself would separate with random weights from an empty or partial folder."""
    model_dir = Path(model_dir)
    refusal = "; Spleeter would separate with random weights, so nothing was separated"
    digests_path = model_dir / DIGESTS_FILE
    if not digests_path.is_file():
        raise SeparationError(f"{model_dir}: {DIGESTS_FILE} missing, so the checkpoint cannot be checked (unpack "
                              f"it with rule unpack_spleeter_model){refusal}")
    expected = dict(reversed(line.split(maxsplit=1)) for line in digests_path.read_text().splitlines() if line)
    for name in SPLEETER_CHECKPOINT_FILES:
        path = model_dir / name
        if not path.is_file() or path.stat().st_size == 0:
            raise SeparationError(f"{model_dir}: checkpoint file {name} is missing or empty{refusal}")
        if name not in expected:
            raise SeparationError(f"{digests_path}: lists no sha256 for {name}{refusal}")
        found = sha256_of(path)
        if found != expected[name]:
            raise SeparationError(f"{path}: sha256 {found} is not {expected[name]}, the one unpacked from the "
                                  f"checked release (corrupt or replaced){refusal}")
    return checkpoint_prefix(model_dir)
