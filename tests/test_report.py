import numpy as np
import pandas as pd
import pytest

from avaffect.corpus.tasks import EXPR_CLASSES, VA_INVALID
from avaffect.report.figures import (
    INVALID_NAME,
    STRIP_ROWS,
    TIME_LABEL,
    expr_figure,
    on_frame_grid,
    save_figure,
    va_figure,
)
from avaffect.report.runtimes import read_benchmark, runtime_figure, runtime_table

FPS = 5.0


def lines_by_label(ax) -> dict[str, np.ndarray]:
    return {line.get_label(): np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()
            if not line.get_label().startswith("_")}


def test_va_figure_has_label_and_prediction_per_dimension_and_invalid_labels_are_gaps():
    frames = np.arange(1, 7)
    predicted = np.column_stack([np.linspace(-0.5, 0.5, 6), np.linspace(0.5, -0.5, 6)])
    labels = np.column_stack([np.full(6, 0.2), np.full(6, -0.3)])
    labels[2, 0] = VA_INVALID  # valence only: arousal of that frame stays a value
    labels[4] = np.nan  # read_annotation's invalid frame
    figure = va_figure("demo01", frames, FPS, predicted, labels)
    axes = figure.axes
    assert [ax.get_ylabel() for ax in axes] == ["valence", "arousal"]
    assert axes[-1].get_xlabel() == TIME_LABEL
    assert [t.get_text() for t in axes[0].get_legend().get_texts()] == ["label", "prediction"]
    assert figure.get_suptitle() == "demo01"
    for j, ax in enumerate(axes):
        lines = lines_by_label(ax)
        np.testing.assert_allclose(lines["prediction"], predicted[:, j])
        expected = labels[:, j].copy()
        expected[expected == VA_INVALID] = np.nan
        np.testing.assert_array_equal(lines["label"], expected)
        np.testing.assert_allclose(ax.get_lines()[0].get_xdata(), (frames - 1) / FPS)
    assert np.isnan(lines_by_label(axes[0])["label"][[2, 4]]).all()
    assert lines_by_label(axes[1])["label"][2] == pytest.approx(-0.3)
    assert not (lines_by_label(axes[0])["label"] == VA_INVALID).any()


def test_va_figure_leaves_frames_without_a_row_empty():
    figure = va_figure("x", np.array([1, 2, 5]), FPS, np.full((3, 2), 0.1), np.full((3, 2), 0.2))
    lines = lines_by_label(figure.axes[0])
    assert len(lines["prediction"]) == 5
    assert np.isnan(lines["prediction"][[2, 3]]).all() and np.isnan(lines["label"][[2, 3]]).all()


def test_expr_figure_strips_the_label_above_the_prediction_and_shows_invalid_frames():
    labels = np.array([0, 4, -1, -1, 6, 7])
    predicted = np.array([0, 4, 4, 1, 5, 7])
    figure = expr_figure("demo02", np.arange(1, 7), FPS, predicted, labels)
    ax = figure.axes[0]
    strip = np.asarray(ax.get_images()[0].get_array())
    # Colour index 0 is invalid, 1 + k is class k.
    np.testing.assert_array_equal(strip, np.stack([labels + 1, predicted + 1]))
    assert [t.get_text() for t in ax.get_yticklabels()] == list(STRIP_ROWS)
    assert ax.get_xlabel() == TIME_LABEL
    assert ax.get_images()[0].get_extent()[:2] == [0.0, 6 / FPS]
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    assert legend == [*EXPR_CLASSES, INVALID_NAME]
    image = ax.get_images()[0]
    colours = image.cmap(image.norm(strip))
    assert (colours[0, 2] == colours[0, 3]).all() and not (colours[0, 2] == colours[1, 2]).all()


def test_expr_figure_refuses_classes_out_of_range():
    with pytest.raises(ValueError, match="predicted"):
        expr_figure("x", np.arange(1, 3), FPS, np.array([0, len(EXPR_CLASSES)]), np.array([0, 1]))


def test_on_frame_grid_refuses_zero_based_frames():
    with pytest.raises(ValueError, match="1-based"):
        on_frame_grid(np.array([0, 1]), np.array([1.0, 2.0]), np.nan)


def write_benchmark(path, seconds, rss):
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{s}\t0:00:01\t{r}\t1\t1\t1\t0\t0\t0\t{s}\n" for s, r in zip(seconds, rss, strict=True))
    path.write_text("s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n" + rows)
    return path


def test_runtime_table_sums_the_jobs_of_each_rule_longest_first(tmp_path):
    root = tmp_path / "benchmarks"
    paths = [write_benchmark(root / "fuse" / "va" / "sys2.tsv", [3.0], [100.0]),
             write_benchmark(root / "fuse" / "expr" / "sys4.tsv", [5.0], [250.0]),
             write_benchmark(root / "ingest_video" / "demo01.tsv", [0.5], ["-"]),
             write_benchmark(root / "metrics_table.tsv", [1.0, 2.0], [40.0, 60.0])]
    table = runtime_table({p: read_benchmark(p) for p in paths}, root)
    assert table["rule"].tolist() == ["fuse", "metrics_table", "ingest_video"]
    fuse = table.iloc[0]
    assert (fuse["jobs"], fuse["total_s"], fuse["max_s"], fuse["mean_s"], fuse["max_rss_mb"]) == (2, 8.0, 5.0, 4.0, 250)
    assert table.iloc[1]["jobs"] == 2 and table.iloc[1]["max_s"] == 2.0
    assert np.isnan(table.iloc[2]["max_rss_mb"])


def test_read_benchmark_names_a_file_that_is_not_one(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_text("a\tb\n1\t2\n")
    with pytest.raises(ValueError, match="x.tsv"):
        read_benchmark(path)


def test_runtime_figure_has_two_bars_per_rule_and_saves_as_png(tmp_path):
    table = pd.DataFrame({"rule": ["train", "fuse"], "jobs": [4, 2], "total_s": [40.0, 8.0], "max_s": [12.0, 5.0],
                          "mean_s": [10.0, 4.0], "max_rss_mb": [900.0, 250.0]})
    figure = runtime_figure(table)
    ax = figure.axes[0]
    assert [p.get_width() for p in ax.patches] == [40.0, 8.0, 12.0, 5.0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["train", "fuse"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["total over jobs", "longest job"]
    path = tmp_path / "runtimes.png"
    save_figure(figure, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
