"""A runnable copy of the workflow in another folder, for tests and benchmarks that must not touch ./results."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

WORKFLOW_FILES = ("Snakefile", "rules", "workflow", "config", "envs", "resources/manifest.yaml", "src")
"""What snakemake reads of a checkout; resources/ travels without the model files fetched into it, src/ so
that environments which do not install the library (conda, the Spleeter venv) import the copy's."""


def copy_workflow(repo: Path, destination: Path) -> Path:
    """Copy the workflow files of the checkout `repo` into `destination` (created if needed)."""
    destination = Path(destination)
    for name in WORKFLOW_FILES:
        source, target = Path(repo) / name, destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(source, target)
    return destination


def planned_jobs(dry_run_output: str) -> dict[str, int]:
    """Jobs per rule from the `Job stats` table that `snakemake -n` prints (without the `total` row)."""
    if "Job stats:" not in dry_run_output:
        return {}
    table = dry_run_output.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}
