import json

import numpy as np
import pytest

from avaffect.corpus.annotations import AnnotationError, align_to_frames, read_annotation
from avaffect.corpus.layout import (
    CorpusError,
    annotation_path,
    challenge_test_list,
    probes_by_sample,
    scan_corpus,
    side_of,
    video_of,
)
from avaffect.corpus.sample_sets import SampleSetError, read_sample_set, sample_set


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_va_annotation_marks_invalid_frames(tmp_path):
    f = tmp_path / "v.txt"
    write(f, "valence,arousal\n0.5,-0.25\n-5,-5\n1,1\n")
    labels = read_annotation(f, "va")
    assert labels.shape == (3, 2)
    assert np.isnan(labels[1]).all() and labels[0].tolist() == [0.5, -0.25]


def test_expr_annotation(tmp_path):
    f = tmp_path / "e.txt"
    write(f, "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n0\n7\n-1\n")
    assert read_annotation(f, "expr").tolist() == [0, 7, -1]


@pytest.mark.parametrize(
    ("task", "text", "message"),
    [
        ("va", "arousal,valence\n0,0\n", "first line"),
        ("va", "valence,arousal\n0.1;0.2\n", "line 2"),
        ("va", "valence,arousal\n0,0\n1.5,0\n", "line 3"),
        ("expr", "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n0\n8\n", "line 3"),
        ("expr", "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n", "no label lines"),
    ],
)
def test_bad_annotations_name_file_and_line(tmp_path, task, text, message):
    f = tmp_path / "bad.txt"
    write(f, text)
    with pytest.raises(AnnotationError, match=message) as err:
        read_annotation(f, task)
    assert "bad.txt" in str(err.value)


def test_alignment_never_shifts():
    labels = np.array([0, 1, 2, 3])
    assert align_to_frames(labels, 3).tolist() == [0, 1, 2]
    assert align_to_frames(labels, 6).tolist() == [0, 1, 2, 3, -1, -1]
    va = np.array([[0.1, 0.2]])
    assert np.isnan(align_to_frames(va, 2)[1]).all()


def test_scan_corpus_and_two_person_names(tmp_path):
    for split, name in (("train", "a"), ("train", "b_left"), ("train", "b_right"), ("validation", "c")):
        write(annotation_path(tmp_path, "va", split, name), "valence,arousal\n0,0\n")
    write(challenge_test_list(tmp_path, "va"), "d\n\n")
    for video in "abcd":
        write(tmp_path / "videos" / f"{video}.mp4", "x")
    manifest = scan_corpus(tmp_path, ("va",))
    assert manifest.samples["va"]["train"] == ["a", "b_left", "b_right"]
    assert manifest.samples["va"]["validation"] == ["c"] and manifest.samples["va"]["test"] == ["d"]
    assert sorted(manifest.videos) == ["a", "b", "c", "d"]
    assert video_of("b_left") == "b" and manifest.split_of("va", "d") == "test"
    assert [side_of(s) for s in ("a", "b_left", "b_right")] == [None, "left", "right"]
    probes = probes_by_sample(["a", "b_left", "b_right"], {"a": {"n_frames": 3}, "b": {"n_frames": 5}})
    assert {s: p["n_frames"] for s, p in probes.items()} == {"a": 3, "b_left": 5, "b_right": 5}


def test_scan_corpus_names_missing_video(tmp_path):
    write(annotation_path(tmp_path, "va", "train", "a"), "valence,arousal\n0,0\n")
    write(annotation_path(tmp_path, "va", "validation", "c"), "valence,arousal\n0,0\n")
    write(challenge_test_list(tmp_path, "va"), "")
    write(tmp_path / "videos" / "a.mp4", "x")
    with pytest.raises(CorpusError, match="'c'"):
        scan_corpus(tmp_path, ("va",))


def test_a_sample_set_round_trips_with_its_augmented_copies_by_copy_number(tmp_path):
    found = sample_set("va", "train", ["b_left", "a"], ["emb/b_left.parquet", "emb/a.parquet"],
                       ["probe/a.json", "probe/b.json"],
                       ["emb/augmented/1/a.parquet", "emb/augmented/2/a.parquet", "emb/augmented/1/b_left.parquet"])
    assert found.samples == ("b_left", "a")
    assert found.embeddings == {"b_left": "emb/b_left.parquet", "a": "emb/a.parquet"}
    assert found.probes == {"a": "probe/a.json", "b": "probe/b.json"}
    assert found.augmented == {"1": {"a": "emb/augmented/1/a.parquet", "b_left": "emb/augmented/1/b_left.parquet"},
                               "2": {"a": "emb/augmented/2/a.parquet"}}
    path = tmp_path / "set.json"
    path.write_text(json.dumps(found.to_dict(), sort_keys=True))
    assert read_sample_set(path) == found


def test_a_sample_set_needs_one_embedding_per_sample(tmp_path):
    with pytest.raises(SampleSetError, match="va validation: 2 samples but 1 embedding files"):
        sample_set("va", "validation", ["a", "b"], ["emb/a.parquet"], [], [])
    path = tmp_path / "set.json"
    data = sample_set("va", "validation", ["a"], ["emb/a.parquet"], [], []).to_dict()
    path.write_text(json.dumps(data | {"samples": ["a", "b"]}))
    with pytest.raises(SampleSetError, match=f"{path}: samples without an embedding file: b"):
        read_sample_set(path)
    path.write_text("{")
    with pytest.raises(SampleSetError, match=f"{path}: not a readable sample set"):
        read_sample_set(path)
