"""A runnable copy of the workflow in another folder, for tests and benchmarks that must not touch ./results."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
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


@dataclass(frozen=True)
class PlannedJob:
    """One job as `snakemake -n` prints it."""

    rule: str
    jobid: int
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


_JOB_BLOCK = re.compile(r"^(?:local)?rule (\w+):\n((?:    .*\n?)*)", re.MULTILINE)
_JOB_FIELD = re.compile(r"^    (\w+): (.*)$", re.MULTILINE)


def planned_job_list(dry_run_output: str) -> list[PlannedJob]:
    """Every job of a `snakemake -n` listing, with its input and output files."""
    jobs = []
    for rule, block in _JOB_BLOCK.findall(dry_run_output):
        fields = dict(_JOB_FIELD.findall(block))
        if "jobid" not in fields:
            continue
        jobs.append(PlannedJob(rule, int(fields["jobid"]), _file_list(fields.get("input", "")),
                               _file_list(fields.get("output", ""))))
    return jobs


def _file_list(field: str) -> tuple[str, ...]:
    return tuple(path.strip() for path in field.split(",") if path.strip())


def same_shape_snakefile(jobs: list[PlannedJob]) -> tuple[str, dict, list[str]]:
    """A trivial Snakefile with the rules, jobs per rule and dependency edges of `jobs`, and nothing else: no
    config, no validation, no corpus scan. Each rule's job is one wildcard value, its inputs a lookup; what no job
    makes becomes a source file. Returns the Snakefile's text, the lookup it reads (`shape.json`) and the source
    files to create. Timing its dry run beside the real one tells the workflow's own cost from Snakemake's."""
    producer = {path: job for job in jobs for path in job.outputs}
    sources = sorted({path for job in jobs for path in job.inputs if path not in producer})
    source_names = {path: f"sources/{n}" for n, path in enumerate(sources)}

    def shaped(path: str) -> str:
        job = producer.get(path)
        return f"jobs/{job.rule}/{job.jobid}" if job else source_names[path]

    target = max(jobs, key=lambda job: job.jobid if job.rule == "all" else -1)
    inputs = {job.rule: {} for job in jobs}
    for job in jobs:
        inputs[job.rule][str(job.jobid)] = sorted({shaped(path) for path in job.inputs})
    rules = [f'rule all:\n    input:\n        SHAPE["all"]["{target.jobid}"],\n']
    rules += [f'rule {rule}:\n    input:\n        lambda w: SHAPE["{rule}"][w.job],\n    output:\n'
              f'        "jobs/{rule}/{{job}}",\n    shell:\n        "touch {{output}}"\n'
              for rule in inputs if rule != "all"]
    text = 'import json\n\nSHAPE = json.load(open("shape.json"))\n\n\n' + "\n\n".join(rules)
    return text, inputs, list(source_names.values())
