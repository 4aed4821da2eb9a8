"""Time snakemake's DAG build and no-op rerun for an Aff-Wild2-size corpus (dry-run only).

    .venv/bin/python benchmarks/dag_scale.py [--profile PATH] [--overlay YAML] [--repeats 3] [--keep DIR] [--out PATH]

In a temporary copy of the workflow, the scale profile (594 samples from `../shared/data/
affwild2_scale_profile.csv`) becomes a placeholder corpus (avaffect.corpus.scale: real layout and sample names,
empty media), run with config/affwild2.yaml (the paper's window sweep and detectors), an overlay that
points corpus.root at it, and --overlay if given (say, `separation: {method: spleeter}`, which adds a
Spleeter job per video). Timed, each --repeats times (median and min reported):

- `snakemake -n`: parse, config validation, corpus scan and the full DAG (every job to run);
- `snakemake -n` of one video's probe: the same start-up with a one-job DAG, to tell the machine's speed of the
  moment (on a shared virtual machine it drifts by up to a factor of two over hours) from the cost of the full DAG;
- `snakemake -n` of a trivial Snakefile with the same rules, the same jobs per rule and the same edges and
  nothing else (no config, validation or corpus scan): Snakemake's own cost for this DAG; the workflow's DAG
  build may take at most 1.5 times it;
- `snakemake -n --profile profiles/slurm`: the same with the SLURM profile's per-video groups, and the
  number of SLURM jobs it would submit;
- the no-op rerun: every output the dry run lists is created empty and `snakemake --touch` dates them in
  DAG order; then `snakemake --cores 2` checks every output against its inputs and finds nothing to do.

The target is < 10 s for the DAG build. Times are wall-clock and CPU (user + system) seconds and include
Python start-up; on a shared machine the CPU seconds are the steadier figure.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from avaffect.corpus.scale import read_scale_profile, write_placeholder_corpus
from avaffect.tools.workdir import copy_workflow, planned_job_list, planned_jobs, same_shape_snakefile

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PROFILE = REPO.parent / "shared" / "data" / "affwild2_scale_profile.csv"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
CONFIGS = ["config/config.yaml", "config/affwild2.yaml", "scale.yaml"]
TARGET_DAG_S = 10.0
TARGET_TO_SAME_SHAPE = 1.5
"""The DAG build may take at most this many times the dry run of a trivial Snakefile with the same rules, jobs
and edges (same_shape_snakefile): what Snakemake costs per job anyway is not the workflow's to save."""


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(workdir: Path, configs: list[str], *args: str) -> tuple[tuple[float, float], str]:
    """Wall and CPU seconds and stdout+stderr of one snakemake call; a failure is an error with its output.

    CPU time (user + system of snakemake and what it starts) is what a busy shared machine disturbs least.
    """
    start, cpu_start = time.perf_counter(), children_cpu_s()
    config_args = ["--configfile", *configs] if configs else []
    result = subprocess.run([*SNAKEMAKE, *config_args, *args], cwd=workdir, capture_output=True, text=True)
    seconds = (time.perf_counter() - start, children_cpu_s() - cpu_start)
    if result.returncode != 0:
        raise RuntimeError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return seconds, result.stdout + result.stderr


def job_counts(output: str) -> dict[str, int]:
    jobs = planned_jobs(output)
    if not jobs:
        raise RuntimeError(f"no job stats in snakemake output:\n{output[-2000:]}")
    return jobs


def slurm_submissions(output: str, grouped_rules: set[str]) -> int:
    """SLURM jobs a dry run with the SLURM profile would submit: one per group job, one per other job with
    an action (the target rule `all` has none and is not submitted)."""
    jobs = job_counts(output)
    groups = len(re.findall(r"Group job \S+ \(jobs in", output, re.MULTILINE))
    return groups + sum(n for rule, n in jobs.items() if rule not in grouped_rules and rule != "all")


def timed(workdir: Path, configs: list[str], repeats: int, *args: str) -> tuple[list[tuple[float, float]], str]:
    runs = [run(workdir, configs, *args) for _ in range(repeats)]
    seconds = [s for s, _ in runs]
    print(f"snakemake {' '.join(args)}: " + ", ".join(f"{wall:.2f} s wall / {cpu:.2f} s CPU" for wall, cpu in seconds),
          file=sys.stderr)
    return seconds, runs[-1][1]


def directory_rules(workdir: Path) -> set[str]:
    """The rules whose output is a `directory(...)`: the dry run prints such outputs like files."""
    found = set()
    for smk in (workdir / "rules").glob("*.smk"):
        for name, body in re.findall(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", smk.read_text(), re.MULTILINE | re.DOTALL):
            output = re.search(r"^    output:\n(.*?)(?=^    \w)", body, re.MULTILINE | re.DOTALL)
            if output and "directory(" in output.group(1):
                found.add(name)
    return found


def create_outputs(workdir: Path, dry_run_output: str) -> int:
    """Create, empty, every output that the dry run lists (a folder for a directory output); how many."""
    folders = directory_rules(workdir)
    paths = {path: job.rule in folders for job in planned_job_list(dry_run_output) for path in job.outputs}
    for path, is_folder in paths.items():
        if is_folder:
            (workdir / path).mkdir(parents=True, exist_ok=True)
        else:
            (workdir / path).parent.mkdir(parents=True, exist_ok=True)
            (workdir / path).touch()
    return len(paths)


def write_same_shape_workflow(dry_run_output: str, folder: Path) -> Path:
    """The trivial Snakefile with the DAG's rules, jobs and edges (same_shape_snakefile), ready to dry-run."""
    text, shape, sources = same_shape_snakefile(planned_job_list(dry_run_output))
    folder.mkdir(parents=True)
    (folder / "Snakefile").write_text(text)
    (folder / "shape.json").write_text(json.dumps(shape))
    for source in sources:
        (folder / source).parent.mkdir(parents=True, exist_ok=True)
        (folder / source).touch()
    return folder


def summary(seconds: list[tuple[float, float]]) -> dict[str, object]:
    walls, cpus = [wall for wall, _ in seconds], [cpu for _, cpu in seconds]
    return {"wall_median_s": round(statistics.median(walls), 2), "wall_min_s": round(min(walls), 2),
            "cpu_median_s": round(statistics.median(cpus), 2), "runs_wall_s": [round(s, 2) for s in walls],
            "runs_cpu_s": [round(s, 2) for s in cpus]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", type=Path, default=DEFAULT_PROFILE, help="the scale profile CSV")
    parser.add_argument("--overlay", type=Path, help="a config file applied last")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="build the workdir here and keep it (default: a temp folder)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()

    rows = read_scale_profile(args.profile)
    slurm_profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    with tempfile.TemporaryDirectory(prefix="avaffect-dag-scale-") as scratch:
        workdir = copy_workflow(REPO, args.keep or Path(scratch))
        shutil.copytree(REPO / "profiles" / "slurm", workdir / "profiles" / "slurm")
        videos = write_placeholder_corpus(rows, workdir / "corpus")
        overlay = {"corpus": {"root": "corpus", "demo": False, "demo_test_labels": "unused"}}
        (workdir / "scale.yaml").write_text(yaml.safe_dump(overlay))
        configs = list(CONFIGS)
        if args.overlay:
            shutil.copyfile(args.overlay, workdir / "overlay.yaml")
            configs.append("overlay.yaml")

        dag_s, dag_out = timed(workdir, configs, args.repeats, "-n")
        one_job_s, _ = timed(workdir, configs, args.repeats, "-n", f"results/probe/{videos[0]}.json")
        grouped_s, grouped_out = timed(workdir, configs, args.repeats, "-n", "--profile", "profiles/slurm")
        shape_dir = write_same_shape_workflow(dag_out, Path(scratch) / "same-shape")
        same_shape_s, same_shape_out = timed(shape_dir, [], args.repeats, "-n", "--cores", "1")
        if job_counts(same_shape_out) != job_counts(dag_out):
            raise RuntimeError("the same-shape Snakefile plans other jobs than the workflow")
        outputs = create_outputs(workdir, dag_out)
        touch_s, _ = run(workdir, configs, "--touch", "--cores", "2")
        noop_s, noop_out = timed(workdir, configs, args.repeats, "--cores", "2")
        if "Nothing to be done" not in noop_out:
            raise RuntimeError(f"the rerun after --touch was not a no-op:\n{noop_out[-3000:]}")

    results = {
        "overlay": str(args.overlay) if args.overlay else None,
        "samples": len(rows), "videos": len(videos), "jobs": sum(job_counts(dag_out).values()),
        "jobs_per_rule": job_counts(dag_out),
        "slurm_jobs_with_groups": slurm_submissions(grouped_out, set(slurm_profile["groups"])),
        "dag_build": summary(dag_s), "one_job_dry_run": summary(one_job_s),
        "dag_build_slurm_profile": summary(grouped_s), "same_shape_dag_build": summary(same_shape_s),
        "dag_build_to_same_shape": round(statistics.median(wall for wall, _ in dag_s)
                                         / statistics.median(wall for wall, _ in same_shape_s), 2),
        "target_to_same_shape": TARGET_TO_SAME_SHAPE,
        "outputs": outputs, "touch_all": summary([touch_s]), "noop_rerun": summary(noop_s),
        "target_dag_s": TARGET_DAG_S,
        "dag_within_target": statistics.median(wall for wall, _ in dag_s) < TARGET_DAG_S,
    }
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
