"""Time the demo workflow end to end (cold, then a no-op rerun) and report peak memory.

    .venv/bin/python benchmarks/demo_end_to_end.py [--cores 2] [--out benchmarks/out/demo.json]

Runs in a fresh temporary folder, so it never touches ./results. Peak memory is the largest resident set
of any single process (snakemake or one of its jobs); per-rule figures come from the rules' `benchmark:`
files.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from avaffect.tools.workdir import copy_workflow

REPO = Path(__file__).resolve().parents[1]


def run(workdir: Path, cores: int) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(cores), "--quiet", "all"], cwd=workdir,
                   check=True)
    return time.perf_counter() - start


def per_rule(workdir: Path) -> pd.DataFrame:
    rows = []
    for tsv in (workdir / "results" / "benchmarks").rglob("*.tsv"):
        rule = tsv.relative_to(workdir / "results" / "benchmarks").parts[0].removesuffix(".tsv")
        bench = pd.read_csv(tsv, sep="\t")
        rows.append({"rule": rule, "seconds": float(bench["s"].iloc[0]), "max_rss_mb": float(bench["max_rss"].iloc[0])})
    table = pd.DataFrame(rows).groupby("rule").agg(jobs=("seconds", "size"), total_s=("seconds", "sum"),
                                                  max_rss_mb=("max_rss_mb", "max"))
    return table.sort_values("total_s", ascending=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "demo_end_to_end.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="avaffect-bench-") as tmp:
        workdir = Path(tmp)
        copy_workflow(REPO, workdir)
        cold = run(workdir, args.cores)
        noop = run(workdir, args.cores)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        rules = per_rule(workdir)
    result = {"cores": args.cores, "cold_s": round(cold, 1), "noop_rerun_s": round(noop, 1),
              "peak_rss_mb": round(peak_mb, 1), "rules": rules.round(2).reset_index().to_dict("records")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"cold run {cold:.1f} s, no-op rerun {noop:.1f} s, peak process memory {peak_mb:.0f} MB "
          f"({args.cores} cores)")
    print(rules.round(2).to_string())


if __name__ == "__main__":
    main()
