"""What `avaffect predict` writes for a video: the frame table as CSV and Parquet, a timeline figure, a summary,
and optionally the video with the face box and the current predictions drawn on each frame."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from avaffect.audio.vad import segments
from avaffect.core.files import atomic_write
from avaffect.core.progress import Progress, counted
from avaffect.core.tables import write_parquet
from avaffect.corpus.tasks import EXPR_CLASSES, VA_DIMENSIONS
from avaffect.media.video import MediaError, iter_frames
from avaffect.report.figures import CLASS_COLORS, TIME_LABEL, VA_LIMITS, save_figure

from .frames import PROBABILITY_COLUMNS

TIMELINE_INCHES = (12.0, 6.0)
TIMELINE_HEIGHTS = (3, 2, 0.6)
"""Heights of the figure's rows: valence and arousal, class probabilities, the predicted class."""
VA_COLORS = {"valence": "tab:orange", "arousal": "tab:purple"}
NO_FACE_COLOR, VOICED_COLOR = "0.85", "tab:cyan"
SHADE_ALPHA = 0.35
NO_CLASS_COLOR = "white"
OVERLAY_CODECS = ("libx264", "h264", "mpeg4")
"""Encoders tried for the overlay video, best first: the first this FFmpeg build has."""
OVERLAY_PIXELS = "yuv420p"
FPS_DENOMINATOR_LIMIT = 1001 * 100
"""Frame rates as fractions with denominators up to this: 29.97 is 30000/1001."""
BOX_COLOR = (0, 255, 0)
TEXT_COLOR, TEXT_SHADOW = (255, 255, 255), (0, 0, 0)
TEXT_SCALE_PER_PX = 1 / 600
"""OpenCV font scale per pixel of the frame's height, so the text reads the same at any size."""
TEXT_LINE_SPACING = 1.6


def write_tables(table: pd.DataFrame, folder: Path, stem: str) -> list[Path]:
    """`<stem>.csv` and `<stem>.parquet` in `folder`."""
    csv, parquet = folder / f"{stem}.csv", folder / f"{stem}.parquet"
    atomic_write(csv, lambda tmp: table.to_csv(tmp, index=False))
    write_parquet(table, parquet)
    return [csv, parquet]


def shade_runs(axes, times: np.ndarray, flags: np.ndarray, step: float, **style) -> None:
    """Shade the time spans of the runs of True in `flags` (one per frame)."""
    for start, end in segments(flags):
        axes.axvspan(times[start], times[end - 1] + step, linewidth=0, **style)


def timeline_figure(title: str, table: pd.DataFrame, fps: float) -> Figure:
    """Valence and arousal over time, the class probabilities stacked, and the predicted class as a strip;
    frames without the face shaded grey, voiced frames marked along the top."""
    times = table["time_s"].to_numpy()
    step = 1 / fps
    figure = Figure(figsize=TIMELINE_INCHES, layout="constrained")
    va_axes, probability_axes, class_axes = figure.subplots(3, 1, sharex=True,
                                                            gridspec_kw={"height_ratios": TIMELINE_HEIGHTS})
    no_face = ~table["has_face"].to_numpy(bool)
    for axes in (va_axes, probability_axes):
        shade_runs(axes, times, no_face, step, color=NO_FACE_COLOR, alpha=SHADE_ALPHA)
    shade_runs(va_axes, times, table["voiced"].to_numpy(bool), step, color=VOICED_COLOR, alpha=SHADE_ALPHA,
               ymin=0.95)
    for name in VA_DIMENSIONS:
        va_axes.plot(times, table[name], color=VA_COLORS[name], label=name)
    if table[list(VA_DIMENSIONS)].isna().all().all():
        va_axes.text(0.5, 0.5, "this predictor gives no valence or arousal", transform=va_axes.transAxes,
                     ha="center", va="center")
    va_axes.set_ylim(*VA_LIMITS)
    va_axes.set_ylabel("valence / arousal")
    va_axes.legend(handles=[*va_axes.get_lines(), Patch(color=VOICED_COLOR, alpha=SHADE_ALPHA, label="voiced"),
                            Patch(color=NO_FACE_COLOR, alpha=SHADE_ALPHA, label="no face")],
                   loc="upper right", fontsize="small", ncols=4)
    probabilities = np.nan_to_num(table[list(PROBABILITY_COLUMNS)].to_numpy(float).T)
    probability_axes.stackplot(times, probabilities, colors=CLASS_COLORS, step="post")
    probability_axes.set_ylim(0, 1)
    probability_axes.set_ylabel("class probability")
    classes = np.array([EXPR_CLASSES.index(name) if name else len(EXPR_CLASSES) for name in table["expression"]])
    class_axes.imshow(classes[None], aspect="auto", interpolation="nearest", vmin=0, vmax=len(EXPR_CLASSES),
                      cmap=ListedColormap([*CLASS_COLORS, NO_CLASS_COLOR]),
                      extent=(times[0], times[-1] + step, 0, 1) if len(times) else None)
    class_axes.set_yticks([])
    class_axes.set_ylabel("class", rotation=0, ha="right", va="center")
    class_axes.set_xlabel(TIME_LABEL)
    figure.legend(handles=[Patch(color=color, label=name) for name, color in zip(EXPR_CLASSES, CLASS_COLORS,
                                                                                 strict=True)],
                  loc="outside lower center", ncols=len(EXPR_CLASSES), fontsize="small")
    figure.suptitle(title)
    return figure


def write_figure(table: pd.DataFrame, fps: float, title: str, path: Path) -> None:
    save_figure(timeline_figure(title, table, fps), path)


def mean_or_none(values: pd.Series) -> float | None:
    return None if values.isna().all() else float(values.mean())


def summary(table: pd.DataFrame, fps: float, predictor: dict) -> dict:
    """A video's predictions in a few numbers: how long, how much of it shows the face and is voiced, the mean
    valence and arousal and each class's share of the frames with a prediction."""
    predicted = table["expression"] != ""
    shares = table.loc[predicted, "expression"].value_counts(normalize=True)
    return {"duration_s": len(table) / fps, "frames": len(table), "fps": fps,
            "face_share": float(table["has_face"].mean()) if len(table) else 0.0,
            "voiced_share": float(table["voiced"].mean()) if len(table) else 0.0,
            "predicted_frames": int(predicted.sum()),
            **{f"mean_{name}": mean_or_none(table[name]) for name in VA_DIMENSIONS},
            "class_shares": {name: float(shares.get(name, 0.0)) for name in EXPR_CLASSES},
            "predictor": predictor}


def overlay_codec() -> str:
    available = av.codecs_available
    for codec in OVERLAY_CODECS:
        if codec in available:
            return codec
    raise MediaError(f"this FFmpeg build has none of the encoders {', '.join(OVERLAY_CODECS)} for the overlay video")


def frame_caption(row) -> list[str]:
    """The lines drawn on a frame: valence and arousal where given, the class and its probability."""
    lines = [f"{name} {getattr(row, name):+.2f}" for name in VA_DIMENSIONS if np.isfinite(getattr(row, name))]
    if row.expression:
        lines.append(f"{row.expression} {getattr(row, f'p_{row.expression}'):.2f}")
    return lines or ["no face"]


def draw_predictions(image: np.ndarray, row, box) -> np.ndarray:
    """The RGB frame with the face box and the frame's predictions drawn on it."""
    import cv2

    height = image.shape[0]
    scale = height * TEXT_SCALE_PER_PX
    thickness = max(1, round(2 * scale))
    drawn = np.ascontiguousarray(image)
    if box.has_face:
        cv2.rectangle(drawn, (round(box.x0), round(box.y0)), (round(box.x1), round(box.y1)), BOX_COLOR, thickness)
    line_px = round(cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][1] * TEXT_LINE_SPACING)
    for i, line in enumerate(frame_caption(row), start=1):
        origin = (line_px // 2, i * line_px)
        cv2.putText(drawn, line, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, TEXT_SHADOW, thickness + 2, cv2.LINE_AA)
        cv2.putText(drawn, line, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, TEXT_COLOR, thickness, cv2.LINE_AA)
    return drawn


def write_overlay(video: Path, table: pd.DataFrame, boxes: pd.DataFrame, fps: float, path: Path,
                  progress: Progress) -> str:
    """The video, upright, with each frame's face box and predictions drawn (no audio); returns the encoder
    used. A frame of odd width or height loses its last column or row (4:2:0 video needs even sizes)."""
    if len(boxes) != len(table) or not (boxes["frame"].to_numpy() == table["frame"].to_numpy()).all():
        raise ValueError(f"{video}: face boxes for {len(boxes)} frames, predictions for {len(table)}; they must "
                         "have the same frames")
    codec = overlay_codec()
    rows = zip(table.itertuples(index=False), boxes.itertuples(index=False), strict=True)

    def encode(tmp: Path) -> None:
        with av.open(str(tmp), "w", format="mp4") as container:
            stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(FPS_DENOMINATOR_LIMIT))
            stream.pix_fmt = OVERLAY_PIXELS
            for number, image in counted(iter_frames(video), progress):
                row, box = next(rows)
                even = image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2]
                if number == 1:  # the encoder opens on the first frame, at its size
                    stream.height, stream.width = even.shape[:2]
                frame = av.VideoFrame.from_ndarray(draw_predictions(even, row, box), format="rgb24")
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))

    atomic_write(path, encode)
    return codec
