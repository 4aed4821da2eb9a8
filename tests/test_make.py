"""What a newcomer types, in that order: `make demo` in a fresh copy of the workflow, then the report command that
it prints. test_workflow.py's end-to-end tests share this run (its `demo_run` is `made_demo(...).workdir`), so the
suite makes the demo once."""

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO

from avaffect.tools.workdir import copy_workflow

pytestmark = pytest.mark.workflow

VENV = Path(sys.prefix)
"""The venv running the tests (the checkout's .venv): `make` in the copy uses it as it is."""


@dataclass(frozen=True)
class MadeDemo:
    workdir: Path
    returncode: int
    stdout: str
    stderr: str


_MADE: list[MadeDemo] = []


def made_demo(tmp_path_factory: pytest.TempPathFactory) -> MadeDemo:
    """`make demo` in a fresh copy of the workflow, once per test session (failed or not)."""
    if not _MADE:
        assert (VENV / "bin" / "snakemake").is_file(), f"the tests must run in the project's venv, not {VENV}"
        workdir = copy_workflow(REPO, tmp_path_factory.mktemp("make_demo"))
        for name in ("Makefile", "pyproject.toml"):
            shutil.copy(REPO / name, workdir / name)
        # `-o install`: the copy's pyproject.toml is newer than the venv, which must not be rebuilt or reinstalled
        # from the copy. An outer `make test` must not pass its own flags and variables down.
        env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
        result = subprocess.run(["make", "-o", "install", "demo", f"VENV={VENV}", f"PYTHON={sys.executable}"],
                                cwd=workdir, env=env, capture_output=True, text=True)
        _MADE.append(MadeDemo(workdir, result.returncode, result.stdout, result.stderr))
    made = _MADE[0]
    if made.returncode != 0:
        raise AssertionError(f"make demo failed in {made.workdir}:\n{made.stdout[-4000:]}\n{made.stderr[-4000:]}")
    return made


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> MadeDemo:
    return made_demo(tmp_path_factory)


def test_make_demo_names_its_results_and_the_report_command_writes_the_report(made):
    summary = made.stdout.rpartition("The demo is done")[2]
    results = ["results/submission_va.txt", "results/submission_expr.txt", "results/metrics/validation.csv"]
    for path in [*results, "results/report/", "results/report.html"]:
        assert path in summary, (path, made.stdout[-2000:])
    for path in results:
        assert (made.workdir / path).is_file(), path
    assert not (made.workdir / "results" / "report.html").exists()
    assert "pip install" not in made.stdout and "-m venv" not in made.stdout  # the venv was reused as it is

    command = summary.strip().splitlines()[-1].strip()
    assert command == f"{VENV}/bin/snakemake --report results/report.html"
    report = subprocess.run(shlex.split(command), cwd=made.workdir, capture_output=True, text=True)
    assert report.returncode == 0, report.stderr[-4000:]
    html = (made.workdir / "results" / "report.html").read_text()
    assert "results/metrics/validation.csv" in html
    figures = sorted((made.workdir / "results" / "report" / "validation").glob("*/*.png"))
    assert {figure.parent.name for figure in figures} == {"va", "expr"}
    for figure in figures:
        assert str(figure.relative_to(made.workdir)) in html
