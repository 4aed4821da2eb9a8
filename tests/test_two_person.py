"""Two-person videos (Aff-Wild2's `<video>_left` / `<video>_right` annotations of one video file): the video is
probed and its audio extracted once; each side gets its own person-level chain, and the tracker follows the
person on that side. The video is a still of ../shared/media/photos/two_people.jpg."""

import json
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import yaml
from conftest import REPO

from avaffect.core.tables import read_parquet
from avaffect.corpus.annotations import HEADERS
from avaffect.corpus.layout import TASK_DIRS, annotation_path, challenge_test_list
from avaffect.tools.workdir import copy_workflow, planned_jobs

pytestmark = pytest.mark.workflow
FRAMES, FPS = 10, 5
VIDEO = "pair"
SIDES = ("left", "right")


def write_still_video(path: Path, image: np.ndarray) -> None:
    height, width = (d - d % 2 for d in image.shape[:2])
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for _ in range(FRAMES):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image[:height, :width], format="rgb24")))
        container.mux(stream.encode(None))


def write_corpus(root: Path, image: np.ndarray) -> None:
    (root / "videos").mkdir(parents=True)
    write_still_video(root / "videos" / f"{VIDEO}.mp4", image)
    for task in TASK_DIRS:
        line = "0.1,0.2" if task == "va" else "0"
        for side in SIDES:
            path = annotation_path(root, task, "train", f"{VIDEO}_{side}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join([HEADERS[task], *[line] * FRAMES]) + "\n")
        annotation_path(root, task, "validation", "x").parent.mkdir(parents=True)
        challenge_test_list(root, task).write_text("")


@pytest.fixture(scope="module")
def two_person_run(shared, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("two_person")
    image = cv2.cvtColor(cv2.imread(str(shared / "media" / "photos" / "two_people.jpg")), cv2.COLOR_BGR2RGB)
    write_corpus(tmp / "corpus", image)
    workdir = copy_workflow(REPO, tmp / "work")
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    config["corpus"] = {"root": str(tmp / "corpus"), "demo": False, "demo_test_labels": "unused"}
    (workdir / "user.yaml").write_text(yaml.safe_dump(config))
    snakemake = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile=user.yaml"]
    planned = subprocess.run([*snakemake, "-n", *[f"results/embeddings/face/landmarks/{VIDEO}_{side}.parquet"
                                                for side in SIDES]], cwd=workdir, capture_output=True, text=True)
    assert planned.returncode == 0, planned.stdout[-3000:] + planned.stderr[-3000:]
    (workdir / "planned.json").write_text(json.dumps(planned_jobs(planned.stdout)))
    ran = subprocess.run([*snakemake, *[f"results/faces/{VIDEO}_{side}.parquet" for side in SIDES]], cwd=workdir,
                         capture_output=True, text=True)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    return workdir


def test_the_video_is_probed_once_and_each_side_has_its_own_chain(two_person_run):
    jobs = json.loads((two_person_run / "planned.json").read_text())
    assert jobs["ingest_video"] == 1
    assert jobs["detect_faces"] == jobs["face_landmarks"] == jobs["face_embeddings"] == 2


def test_each_side_tracks_the_person_on_that_side(two_person_run):
    width = json.loads((two_person_run / "results" / "probe" / f"{VIDEO}.json").read_text())["width"]
    centres = {}
    for side in SIDES:
        faces = read_parquet(two_person_run / "results" / "faces" / f"{VIDEO}_{side}.parquet")
        assert len(faces) == FRAMES and faces["has_face"].all(), side
        assert (faces["n_faces"] == 2).all(), side
        centres[side] = ((faces["x1"] + faces["x2"]) / 2).to_numpy()
    assert (centres["left"] < width / 2).all() and (centres["right"] > width / 2).all()
