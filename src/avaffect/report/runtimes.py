"""Run time and memory per rule, from the benchmark files of the workflow's jobs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

RUNTIME_FIGURE_WIDTH = 9.0
RUNTIME_BAR_INCHES = 0.35
"""Height per rule of the runtime chart."""
RUNTIME_MIN_INCHES = 3.0
RUNTIME_BAR_WIDTH = 0.4
"""Each of the two bars of a rule, as a share of the space between rules."""
BENCHMARK_SECONDS = "s"
BENCHMARK_RSS = "max_rss"
RUNTIME_COLUMNS = ("rule", "jobs", "total_s", "max_s", "mean_s", "max_rss_mb")


def read_benchmark(path: Path) -> pd.DataFrame:
    """A benchmark file of Snakemake (tab-separated, one row per repeat); the error names the file."""
    try:
        table = pd.read_csv(path, sep="\t")
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read benchmark file ({err})") from err
    missing = {BENCHMARK_SECONDS, BENCHMARK_RSS} - set(table.columns)
    if missing:
        raise ValueError(f"{path}: not a Snakemake benchmark file (no column {sorted(missing)})")
    return table


def benchmark_rule(path: Path, root: Path) -> str:
    """The rule a benchmark file belongs to: `<root>/<rule>/...` or `<root>/<rule>.tsv`."""
    first = Path(path).relative_to(root).parts[0]
    return first.removesuffix(".tsv")


def runtime_table(benchmarks: Mapping[Path, pd.DataFrame], root: Path) -> pd.DataFrame:
    """Per rule: jobs, total, longest and mean wall-clock seconds, largest resident memory (MB), from the
    read_benchmark tables of the files under `root`; the rules that took longest first."""
    if not benchmarks:
        return pd.DataFrame(columns=list(RUNTIME_COLUMNS))
    rows = pd.concat([table[[BENCHMARK_SECONDS, BENCHMARK_RSS]].assign(rule=benchmark_rule(path, root))
                      for path, table in benchmarks.items()], ignore_index=True)
    rows[BENCHMARK_RSS] = pd.to_numeric(rows[BENCHMARK_RSS], errors="coerce")  # "-" where it was not measured
    grouped = rows.groupby("rule")
    table = pd.DataFrame({
        "jobs": grouped.size(),
        "total_s": grouped[BENCHMARK_SECONDS].sum(),
        "max_s": grouped[BENCHMARK_SECONDS].max(),
        "mean_s": grouped[BENCHMARK_SECONDS].mean(),
        "max_rss_mb": grouped[BENCHMARK_RSS].max(),
    }).reset_index()
    return table.sort_values(["total_s", "rule"], ascending=[False, True], ignore_index=True)


def runtime_figure(table: pd.DataFrame) -> Figure:
    """Horizontal bars of total and longest-job seconds per rule (a runtime_table)."""
    height = max(RUNTIME_MIN_INCHES, RUNTIME_BAR_INCHES * len(table))
    figure = Figure(figsize=(RUNTIME_FIGURE_WIDTH, height), layout="constrained")
    ax = figure.subplots()
    positions = np.arange(len(table))
    ax.barh(positions - RUNTIME_BAR_WIDTH / 2, table["total_s"], height=RUNTIME_BAR_WIDTH, label="total over jobs")
    ax.barh(positions + RUNTIME_BAR_WIDTH / 2, table["max_s"], height=RUNTIME_BAR_WIDTH, label="longest job")
    ax.set_yticks(positions, table["rule"])
    ax.invert_yaxis()
    ax.set_xlabel("wall-clock seconds")
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("Runtime per rule (Snakemake benchmark files)")
    return figure
