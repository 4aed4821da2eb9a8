"""Time late fusion at Aff-Wild2 scale on simulated predictions, and report peak memory.

    .venv/bin/python benchmarks/fusion_scale.py [--profile PATH] [--out PATH] [--draws N] [--search-max-rows N]
                                                [--rf-max-rows N] [--rf-max-samples F]

The profile (split, n_frames, fps, two_person_half; one row per video) gives every video's length and frame
rate. For each video a hidden signal is drawn at the 5 fps label rate (VA: a slow random walk; EXPR: a
sticky Markov chain of classes), and three models predict it with their own noise and gaps; frame labels
are the hidden signal at frame times, with some stretches unannotated. Everything is seeded.

Timed stages: interpolation of every model's label-rate predictions to every frame of every video plus
Hamming smoothing (avaffect.fusion.postprocess); DWF (n_draws Dirichlet draws) and RF stacking, each chosen by
grouped 5-fold over the validation videos and refit on all of them (avaffect.fusion.selection.fit_fusion); both
applied to the test videos; the VA and EXPR submission files written (avaffect.fusion.submission) from the fusion
with the better out-of-fold score. Simulation time is reported apart and is not in the total.

Settings not given on the command line are the workflow's own defaults, read from config/config.yaml
(postprocess.hamming_s, max_gap_s; fusion.draws, folds, search_max_rows, rf_max_rows, rf_max_samples, seed): weights are
searched on search_max_rows validation frames and each forest is fit on rf_max_rows, evenly spaced in time,
each tree drawing rf_max_samples of them; every out-of-fold score covers all validation frames, as in the
workflow (a forest's in-sample score covers the frames it was fit on). Each stage's CPU time (all threads) is
reported beside its wall time: on a machine shared with others it says more. RF stacking grows up to 400 trees
(fusion.rf_trees; the grid stops at an OOB plateau, see fusion.forest.fit_forest) for each fold and the final fit,
--jobs forests at a time on --jobs threads each; interpolation and smoothing do --jobs videos at a time.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy.signal import lfilter

from avaffect.corpus.tasks import EXPR_CLASSES, EXPR_INVALID, VA_DIMENSIONS
from avaffect.fusion.postprocess import hamming_smooth, hamming_window_frames, interpolate_to_frames
from avaffect.fusion.selection import best_fusion, filled_table, fit_fusion, label_prior
from avaffect.fusion.submission import expected_rows, submission_table, write_submission
from avaffect.media.timeline import frame_times

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PROFILE = REPO.parent / "shared" / "data" / "affwild2_scale_profile.csv"
CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
SPLIT_NAMES = {"Train_Set": "train", "Validation_Set": "validation", "Test_Set": "test"}
LABEL_FPS = 5.0
HAMMING_S = CONFIG["postprocess"]["hamming_s"]
MAX_GAP_S = CONFIG["postprocess"]["max_gap_s"]
FUSION = CONFIG["fusion"]
N_MODELS = 3
SEED = FUSION["seed"]
TARGET_TOTAL_S = 30.0
TARGET_PEAK_MB = 4096.0

# The hidden signal and the models. VA: AR(1) walk squashed into [-1, 1]; EXPR: classes held ~3 s.
VA_AR = 0.98
EXPR_MEAN_HOLD_S = 3.0
EXPR_PRIOR = np.array([0.30, 0.06, 0.04, 0.03, 0.20, 0.10, 0.10, 0.17])
NOISE_AR = 0.8  # model errors are correlated over ~1 s at the label rate
VA_NOISE_SD = (0.15, 0.25, 0.40)
VA_GAIN = (0.9, 0.8, 0.6)
EXPR_STRENGTH = (2.0, 1.5, 1.0)  # logit of the true class above noise of sd 1
MISSING_VIDEO_RATE = 0.02  # a model has no prediction at all for the video (no face found, say)
GAP_RATE = 0.3  # share of videos where a model misses one stretch of label-rate samples
UNANNOTATED_RATE = 0.3  # share of videos with one unannotated stretch of frames
STRETCH_MAX = 0.1  # longest missing or unannotated stretch, as a share of the video


def video_names(profile: pd.DataFrame) -> list[str]:
    """Names like 'validation_012' ('_left' for the half of a two-person video), unique in the profile."""
    names, counts = [], {}
    for split, half in zip(profile["split"], profile["two_person_half"], strict=True):
        short = SPLIT_NAMES[split]
        counts[short] = counts.get(short, 0) + 1
        names.append(f"{short}_{counts[short]:03d}" + ("_left" if half else ""))
    return names


def ar_noise(rng: np.random.Generator, n: int, columns: int, ar: float) -> np.ndarray:
    """(n, columns) AR(1) noise with unit variance."""
    return lfilter([np.sqrt(1 - ar**2)], [1, -ar], rng.standard_normal((n, columns)), axis=0)


def stretch(rng: np.random.Generator, n: int) -> slice:
    length = int(rng.integers(1, max(2, int(STRETCH_MAX * n))))
    start = int(rng.integers(0, max(1, n - length)))
    return slice(start, start + length)


def simulate_video(rng: np.random.Generator, n_frames: int, fps: float) -> dict:
    """Label-rate times and model predictions (NaN where missing) and frame labels of one video."""
    n_samples = int(np.ceil(n_frames / fps * LABEL_FPS)) + 1
    times = np.arange(n_samples) / LABEL_FPS
    walk = np.tanh(1.2 * lfilter([np.sqrt(1 - VA_AR**2)], [1, -VA_AR], rng.standard_normal((n_samples, 2)), axis=0))
    holds = rng.geometric(1 / (EXPR_MEAN_HOLD_S * LABEL_FPS), n_samples)
    classes = np.repeat(rng.choice(len(EXPR_CLASSES), n_samples, p=EXPR_PRIOR), holds)[:n_samples]
    va_models, expr_models = [], []
    for m in range(N_MODELS):
        va = np.clip(VA_GAIN[m] * walk + VA_NOISE_SD[m] * ar_noise(rng, n_samples, 2, NOISE_AR), -1, 1)
        logits = EXPR_STRENGTH[m] * np.eye(len(EXPR_CLASSES))[classes] + ar_noise(rng, n_samples, 8, NOISE_AR)
        expr = np.exp(logits - logits.max(axis=1, keepdims=True))
        expr /= expr.sum(axis=1, keepdims=True)
        if rng.random() < MISSING_VIDEO_RATE:
            va[:], expr[:] = np.nan, np.nan
        elif rng.random() < GAP_RATE:
            gap = stretch(rng, n_samples)
            va[gap], expr[gap] = np.nan, np.nan
        va_models.append(va)
        expr_models.append(expr)
    at_frame = frame_times(n_frames, fps)
    va_labels = np.stack([np.interp(at_frame, times, walk[:, j]) for j in range(2)], axis=1)
    expr_labels = classes[np.minimum(np.round(at_frame * LABEL_FPS).astype(np.int64), n_samples - 1)]
    if rng.random() < UNANNOTATED_RATE:
        hole = stretch(rng, n_frames)
        va_labels[hole], expr_labels[hole] = np.nan, EXPR_INVALID
    return {"times": times, "va": va_models, "expr": expr_models, "va_labels": va_labels, "expr_labels": expr_labels}


def simulate(profile: pd.DataFrame, names: list[str]) -> dict[str, dict]:
    rng = np.random.default_rng(SEED)
    return {name: simulate_video(rng, int(n), float(fps))
            for name, n, fps in zip(names, profile["n_frames"], profile["fps"], strict=True)}


def to_frames(profile: pd.DataFrame, names: list[str], videos: dict[str, dict], jobs: int
              ) -> dict[str, dict[str, np.ndarray]]:
    """Every model's predictions on every frame (interpolated, then Hamming-smoothed), for both tasks.

    Validation and test predictions are kept as (M, N, d) arrays; training videos are computed as the
    workflow does and dropped, since fusion never reads them. `jobs` videos are done at a time, as the
    workflow runs its jobs side by side (threads: numpy and scipy release the GIL in their loops).
    """
    splits = profile["split"].map(SPLIT_NAMES)
    n_frames = profile["n_frames"].astype(int)
    starts = n_frames.groupby(splits).cumsum() - n_frames  # where each video begins in its split's arrays
    widths = {"va": len(VA_DIMENSIONS), "expr": len(EXPR_CLASSES)}
    # Each video's frames are written in place: stacking and concatenating them would copy every value twice.
    kept = {split: {task: np.empty((N_MODELS, int(n_frames[splits == split].sum()), d)) for task, d in widths.items()}
            for split in ("validation", "test")}

    def smooth_video(i: int) -> None:
        n, fps, split = int(n_frames.iloc[i]), float(profile["fps"].iloc[i]), splits.iloc[i]
        at_frame = frame_times(n, fps)
        window = hamming_window_frames(HAMMING_S, fps)
        video = videos[names[i]]
        for task in widths:
            for m, values in enumerate(video[task]):
                smoothed = hamming_smooth(interpolate_to_frames(video["times"], values, at_frame, MAX_GAP_S), window)
                if split in kept:
                    kept[split][task][m, starts.iloc[i]:starts.iloc[i] + n] = smoothed

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(smooth_video, range(len(names))))
    return kept


def split_arrays(profile: pd.DataFrame, names: list[str], videos: dict[str, dict], split: str) -> dict:
    """Frame labels, video ids and frame numbers of one split, in profile order."""
    rows = [i for i, s in enumerate(profile["split"]) if SPLIT_NAMES[s] == split]
    counts = {names[i]: int(profile["n_frames"].iloc[i]) for i in rows}
    return {"counts": counts,
            "groups": np.repeat(list(counts), list(counts.values())),
            "frames": np.concatenate([np.arange(1, n + 1) for n in counts.values()]),
            "va": np.concatenate([videos[names[i]]["va_labels"] for i in rows]),
            "expr": np.concatenate([videos[names[i]]["expr_labels"] for i in rows])}


def timed(stages: dict[str, float], name: str, action: Callable, cpu: dict[str, float]):
    """Run `action`, keeping its wall time in `stages` and the CPU time of all the process's threads in `cpu`
    (which, on a machine shared with others, says more than the wall time)."""
    start, start_cpu = time.perf_counter(), time.process_time()
    result = action()
    stages[name] = round(time.perf_counter() - start, 2)
    cpu[name] = round(time.process_time() - start_cpu, 2)
    print(f"{name}: {stages[name]:.2f} s ({cpu[name]:.2f} s CPU)", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", type=Path, default=DEFAULT_PROFILE)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "fusion_scale.json")
    parser.add_argument("--draws", type=int, default=FUSION["draws"])
    parser.add_argument("--search-max-rows", type=int, default=FUSION["search_max_rows"],
                        help="frames the weights are searched on, evenly spaced (fit_fusion's search_max_rows)")
    parser.add_argument("--rf-max-rows", type=int, default=FUSION["rf_max_rows"],
                        help="frames each forest is fit on, evenly spaced (fit_fusion's rf_max_rows)")
    parser.add_argument("--rf-max-samples", type=float, default=FUSION["rf_max_samples"],
                        help="share of those frames each tree's bootstrap draws (fit_fusion's rf_max_samples)")
    parser.add_argument("--folds", type=int, default=FUSION["folds"])
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    profile = pd.read_csv(args.profile)
    names = video_names(profile)
    stages: dict[str, float] = {}
    cpu: dict[str, float] = {}
    start = time.perf_counter()
    videos = simulate(profile, names)
    simulate_s = round(time.perf_counter() - start, 2)
    print(f"simulate (not timed): {simulate_s:.2f} s for {len(names)} videos, {int(profile['n_frames'].sum())} frames",
          flush=True)
    validation = split_arrays(profile, names, videos, "validation")
    test = split_arrays(profile, names, videos, "test")
    frames = timed(stages, "interpolate_smooth", lambda: to_frames(profile, names, videos, args.jobs), cpu)
    videos.clear()  # label-rate predictions are not needed any more
    fitted, scores = {}, {}
    for task in ("va", "expr"):
        for method in ("dwf", "rf"):
            fitted[task, method] = timed(stages, f"fit_{method}_{task}", lambda task=task, method=method: fit_fusion(
                method, frames["validation"][task], validation[task], validation["groups"], task, args.draws, SEED,
                args.folds, search_max_rows=args.search_max_rows, rf_max_rows=args.rf_max_rows,
                rf_max_samples=args.rf_max_samples, tree_grid=FUSION["rf_trees"], n_jobs=args.jobs),
                cpu)
            scores[f"{task}_{method}"] = fitted[task, method].report
    fused = timed(stages, "apply_test", lambda: {key: fit.apply(frames["test"][key[0]]) for key, fit in fitted.items()},
                  cpu)
    chosen = {task: best_fusion({m: fitted[task, m] for m in ("dwf", "rf")}, task) for task in ("va", "expr")}

    def write_both(folder: Path) -> None:
        rows = expected_rows(test["counts"])
        frames_of_test = pd.DataFrame({"video": test["groups"], "frame": test["frames"]})
        for task in ("va", "expr"):
            columns = list(VA_DIMENSIONS) if task == "va" else list(EXPR_CLASSES)
            # Frames that no model predicts take the validation prior, as the workflow does.
            table, _ = filled_table(frames_of_test, fused[task, chosen[task]], columns,
                                    label_prior(task, validation[task]))
            write_submission(folder / f"{task}.txt", submission_table(table, task), task, rows)

    with tempfile.TemporaryDirectory(prefix="avaffect-fusion-") as tmp:
        timed(stages, "write_submissions", lambda: write_both(Path(tmp)), cpu)
    total = round(sum(stages.values()), 2)
    peak_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result = {
        "profile": str(args.profile), "videos": len(names), "frames": int(profile["n_frames"].sum()),
        "validation_frames": int(len(validation["groups"])), "test_frames": int(len(test["groups"])),
        "settings": {"draws": args.draws, "folds": args.folds, "search_max_rows": args.search_max_rows,
                     "rf_max_rows": args.rf_max_rows, "rf_max_samples": args.rf_max_samples, "jobs": args.jobs,
                     "models": N_MODELS, "label_fps": LABEL_FPS, "hamming_s": HAMMING_S,
                     "max_gap_s": MAX_GAP_S},
        "simulate_s": simulate_s, "stages_s": stages, "total_s": total, "stages_cpu_s": cpu,
        "total_cpu_s": round(sum(cpu.values()), 2), "peak_rss_mb": peak_mb,
        "targets": {"total_s": TARGET_TOTAL_S, "peak_rss_mb": TARGET_PEAK_MB,
                    "total_met": total < TARGET_TOTAL_S, "memory_met": peak_mb < TARGET_PEAK_MB},
        "selected": chosen, "fusion_reports": scores,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"total {total:.1f} s (target < {TARGET_TOTAL_S:g} s), peak memory {peak_mb:.0f} MB "
          f"(target < {TARGET_PEAK_MB:g} MB), {len(names)} videos, {result['frames']} frames; {sys.executable}")
    for key, report in scores.items():
        extra = f"n_trees {report['n_trees']}" if "n_trees" in report else f"weights {np.round(report['weights'], 3)}"
        print(f"{key}: out-of-fold {report['out_of_fold']}, in-sample {report['in_sample']}, {extra}".replace("\n", ""))


if __name__ == "__main__":
    main()
