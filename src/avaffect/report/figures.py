"""Figures of the workflow report: validation predictions against labels over time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from avaffect.core.tables import atomic_write
from avaffect.corpus.metrics import valid_va
from avaffect.corpus.tasks import EXPR_CLASSES, EXPR_INVALID, VA_DIMENSIONS
from avaffect.media.timeline import frame_times

FIGURE_DPI = 100
FIGURE_FORMAT = "png"
TIME_LABEL = "time (s)"
VA_FIGURE_INCHES = (12.0, 5.0)
EXPR_FIGURE_INCHES = (12.0, 2.8)
VA_LIMITS = (-1.05, 1.05)
LABEL_COLOR = "black"
PREDICTION_COLOR = "tab:orange"
CLASS_COLORS = ("#bdbdbd", "#d62728", "#8c564b", "#9467bd", "#2ca02c", "#1f77b4", "#ff7f0e", "#17becf")
"""Neutral grey, then one distinct colour per expression, in EXPR_CLASSES order."""
INVALID_COLOR = "white"
INVALID_NAME = f"invalid ({EXPR_INVALID})"
STRIP_ROWS = ("label", "prediction")


def on_frame_grid(frames: np.ndarray, values: np.ndarray, fill: float) -> np.ndarray:
    """`values` (one row per frame of `frames`, 1-based) laid on frames 1..max(frames); absent frames take `fill`."""
    frames = np.asarray(frames)
    values = np.asarray(values)
    if len(frames) != len(values):
        raise ValueError(f"{len(frames)} frame numbers for {len(values)} rows of values")
    if len(frames) == 0 or frames.min() < 1:
        raise ValueError("frame numbers must be 1-based and at least one frame is needed")
    grid = np.full((int(frames.max()), *values.shape[1:]), fill, dtype=np.result_type(values.dtype, type(fill)))
    grid[frames - 1] = values
    return grid


def va_figure(title: str, frames: np.ndarray, fps: float, predicted: np.ndarray, labels: np.ndarray) -> Figure:
    """Valence and arousal over time, prediction against label, one panel each.

    `predicted` and `labels` are (n, 2) in VA_DIMENSIONS order for the 1-based `frames`; invalid labels
    (NaN or -5) and frames without a row are gaps in the lines, not values.
    """
    predicted = on_frame_grid(frames, np.asarray(predicted, dtype=np.float64), np.nan)
    labels = np.asarray(labels, dtype=np.float64)
    labels = on_frame_grid(frames, np.where(valid_va(labels), labels, np.nan), np.nan)
    times = frame_times(len(labels), fps)
    figure = Figure(figsize=VA_FIGURE_INCHES, layout="constrained")
    axes = figure.subplots(len(VA_DIMENSIONS), 1, sharex=True)
    for j, (ax, dimension) in enumerate(zip(axes, VA_DIMENSIONS, strict=True)):
        # The label is drawn over the prediction so that its gaps stay visible.
        ax.plot(times, labels[:, j], color=LABEL_COLOR, linewidth=1.5, label="label", zorder=3)
        ax.plot(times, predicted[:, j], color=PREDICTION_COLOR, linewidth=1.0, label="prediction", zorder=2)
        ax.set_ylim(*VA_LIMITS)
        ax.set_ylabel(dimension)
        ax.axhline(0.0, color="grey", linewidth=0.5)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper right", ncols=2)
    axes[-1].set_xlabel(TIME_LABEL)
    figure.suptitle(title)
    return figure


def expr_figure(title: str, frames: np.ndarray, fps: float, predicted: np.ndarray, labels: np.ndarray) -> Figure:
    """Expression over time as a strip: the label class above the predicted class, one colour per class.

    `predicted` and `labels` are class indices for the 1-based `frames`; a label of -1 (and a frame
    without a row) is drawn as invalid.
    """
    predicted = on_frame_grid(frames, np.asarray(predicted, dtype=np.int64), EXPR_INVALID)
    labels = on_frame_grid(frames, np.asarray(labels, dtype=np.int64), EXPR_INVALID)
    for name, values in (("predicted", predicted), ("labels", labels)):
        if ((values < EXPR_INVALID) | (values >= len(EXPR_CLASSES))).any():
            raise ValueError(f"{name} must be classes 0..{len(EXPR_CLASSES) - 1} or {EXPR_INVALID}")
    # Colour index 0 is invalid, 1 + k is class k.
    strip = np.stack([labels, predicted]) - EXPR_INVALID
    colors = ListedColormap([INVALID_COLOR, *CLASS_COLORS])
    end = frame_times(len(labels) + 1, fps)[-1]
    figure = Figure(figsize=EXPR_FIGURE_INCHES, layout="constrained")
    ax = figure.subplots()
    ax.imshow(strip, cmap=colors, vmin=-0.5, vmax=len(EXPR_CLASSES) + 0.5, aspect="auto", interpolation="nearest",
              extent=(0.0, end, len(STRIP_ROWS) - 0.5, -0.5))
    ax.set_yticks(range(len(STRIP_ROWS)), STRIP_ROWS)
    ax.set_xlabel(TIME_LABEL)
    handles = [Patch(facecolor=c, edgecolor="grey", label=n) for c, n in zip(CLASS_COLORS, EXPR_CLASSES, strict=True)]
    handles.append(Patch(facecolor=INVALID_COLOR, edgecolor="grey", label=INVALID_NAME))
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize="small", frameon=False)
    figure.suptitle(title)
    return figure


def save_figure(figure: Figure, path: Path) -> None:
    atomic_write(path, lambda tmp: figure.savefig(tmp, format=FIGURE_FORMAT, dpi=FIGURE_DPI))
