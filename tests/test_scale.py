import json
import subprocess
import sys
from pathlib import Path

import pytest

from avaffect.corpus.layout import scan_corpus
from avaffect.corpus.scale import ProfileRow, read_scale_profile, sample_names, write_placeholder_corpus
from avaffect.tools.workdir import planned_job_list, planned_jobs, same_shape_snakefile

PROFILE = """split,n_frames,fps,two_person_half
Train_Set,100,30.0,0
Train_Set,200,25.0,1
Train_Set,200,25.0,1
Train_Set,300,30.0,1
Validation_Set,50,30.0,0
Test_Set,80,6.0,0
Test_Set,90,29.97,0
"""


def test_profile_rows_and_two_person_pairs(tmp_path):
    path = tmp_path / "profile.csv"
    path.write_text(PROFILE)
    rows = read_scale_profile(path)
    assert rows[0] == ProfileRow("train", 100, 30.0, False)
    assert [r.split for r in rows] == ["train"] * 4 + ["validation", "test", "test"]
    # equal consecutive halves share a video; a lone half is a one-sided two-person sample
    assert sample_names(rows) == ["train_001", "train_002_left", "train_002_right", "train_003_left",
                                  "validation_001", "test_001", "test_002"]


def test_placeholder_corpus_scans_like_the_real_one(tmp_path):
    path = tmp_path / "profile.csv"
    path.write_text(PROFILE)
    videos = write_placeholder_corpus(read_scale_profile(path), tmp_path / "corpus")
    manifest = scan_corpus(tmp_path / "corpus")
    assert sorted(manifest.videos) == videos
    assert len(videos) == 6
    for task in ("va", "expr"):
        assert manifest.samples[task]["train"] == ["train_001", "train_002_left", "train_002_right",
                                                   "train_003_left"]
        assert manifest.samples[task]["validation"] == ["validation_001"]
        assert manifest.samples[task]["test"] == ["test_001", "test_002"]


def test_a_bad_profile_row_names_the_file_and_line(tmp_path):
    path = tmp_path / "profile.csv"
    path.write_text("split,n_frames,fps,two_person_half\nDev_Set,10,30.0,0\n")
    with pytest.raises(ValueError, match=r"profile\.csv, line 2"):
        read_scale_profile(path)
    path.write_text("split,frames\nTrain_Set,10\n")
    with pytest.raises(ValueError, match="columns"):
        read_scale_profile(path)


def dry_run(folder: Path) -> str:
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1"], cwd=folder,
                            capture_output=True, text=True, check=True)
    return result.stdout


def test_the_same_shape_snakefile_plans_the_same_jobs_and_edges(tmp_path):
    real = tmp_path / "real"
    (real / "data").mkdir(parents=True)
    for name in ("a", "b", "c"):
        (real / "data" / f"{name}.txt").write_text(name)
    (real / "Snakefile").write_text(
        'NAMES = ["a", "b", "c"]\n\n'
        'rule all:\n    input:\n        "merged.txt",\n\n'
        'rule merge:\n    input:\n        expand("upper/{name}.txt", name=NAMES),\n    output:\n        "merged.txt",\n'
        '    shell:\n        "cat {input} > {output}"\n\n'
        'rule upper:\n    input:\n        "data/{name}.txt",\n    output:\n        "upper/{name}.txt",\n'
        '    shell:\n        "tr a-z A-Z < {input} > {output}"\n')
    listing = dry_run(real)
    jobs = planned_job_list(listing)
    assert sorted(job.rule for job in jobs) == ["all", "merge", "upper", "upper", "upper"]
    assert {job.inputs for job in jobs if job.rule == "upper"} == {(f"data/{n}.txt",) for n in "abc"}

    text, shape, sources = same_shape_snakefile(jobs)
    shaped = tmp_path / "shaped"
    shaped.mkdir()
    (shaped / "Snakefile").write_text(text)
    (shaped / "shape.json").write_text(json.dumps(shape))
    for source in sources:
        (shaped / source).parent.mkdir(parents=True, exist_ok=True)
        (shaped / source).touch()
    assert len(sources) == 3
    shaped_jobs = planned_job_list(dry_run(shaped))
    assert planned_jobs(dry_run(shaped)) == planned_jobs(listing)
    merge = next(job for job in shaped_jobs if job.rule == "merge")
    assert len(merge.inputs) == 3 and all(path.startswith("jobs/upper/") for path in merge.inputs)
