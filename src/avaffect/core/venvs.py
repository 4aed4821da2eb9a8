"""Virtual environments built from a conda environment file's pip pins, for rules whose packages cannot
share the main environment (Spleeter: TensorFlow 2.12, numpy < 2) when the workflow runs without conda.

The conda file stays the one place where the pins are written: `--use-conda` builds it, and the venv rule
installs its `pip:` list with the Python that runs Snakemake, which must be the version the file names.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from avaffect.core.files import atomic_write

READY_FILE = "pins.txt"
"""Written into the venv once every pin is installed: the rule's output, so a half-built venv never counts."""


class VenvError(RuntimeError):
    """An environment file or venv that cannot be used; the message names the file and what is wrong."""


def _dependencies(env_file: Path) -> list:
    env = yaml.safe_load(Path(env_file).read_text()) or {}
    return env.get("dependencies") or []


def pip_pins(env_file: Path) -> list[str]:
    """The `pip:` list of a conda environment file; every entry must be an exact `name==version` pin."""
    lists = [entry["pip"] for entry in _dependencies(env_file) if isinstance(entry, dict) and "pip" in entry]
    if len(lists) != 1:
        raise VenvError(f"{env_file}: expected one `pip:` list of dependencies, found {len(lists)}")
    loose = [pin for pin in lists[0] if "==" not in pin]
    if loose:
        raise VenvError(f"{env_file}: pins must be exact (name==version), not {', '.join(loose)}")
    return list(lists[0])


def python_version(env_file: Path) -> str:
    """The `python=X.Y` that a conda environment file asks for."""
    named = [str(entry).split("=", 1)[1] for entry in _dependencies(env_file)
             if isinstance(entry, str) and entry.startswith("python=")]
    if len(named) != 1:
        raise VenvError(f"{env_file}: expected one python=X.Y dependency, found {len(named)}")
    return named[0]


def venv_python(venv: Path) -> Path:
    return Path(venv) / "bin" / "python"


def build_venv(venv: Path, pins: list[str], version: str, env_file: str, log: Path,
               run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> None:
    """A fresh venv at `venv` with exactly `pins` installed, made with this Python (which must be `version`),
    and READY_FILE written last. pip's output goes to `log`."""
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if running != version:
        raise VenvError(f"{env_file} asks for Python {version}, but Snakemake runs on Python {running}, "
                                f"which would build {venv}; run Snakemake from a Python {version} environment or "
                                f"use --use-conda")
    with open(log, "a") as output:
        for command in ([sys.executable, "-m", "venv", "--clear", str(venv)],
                        [str(venv_python(venv)), "-m", "pip", "install", "--no-input", *pins]):
            if run(command, stdout=output, stderr=subprocess.STDOUT).returncode != 0:
                raise VenvError(f"{venv}: `{' '.join(command[:6])} ...` failed (see {log}); the pins come "
                                        f"from {env_file}")
    atomic_write(Path(venv) / READY_FILE, lambda tmp: tmp.write_text("".join(f"{pin}\n" for pin in pins)))
