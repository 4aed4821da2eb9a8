import pytest

from avaffect.corpus.layout import scan_corpus
from avaffect.corpus.scale import ProfileRow, read_scale_profile, sample_names, write_placeholder_corpus

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
