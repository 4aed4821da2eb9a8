import numpy as np
import pytest

from avaffect.app.frames import FRAME_COLUMNS, frame_table


def test_frame_table_columns_argmax_and_missing_rows():
    probabilities = np.full((3, 8), np.nan)
    probabilities[0] = np.eye(8)[4]
    probabilities[2] = np.eye(8)[0] * 0.6 + 0.05
    table = frame_table(10.0, np.array([0.1, np.nan, -0.2]), np.zeros(3), probabilities,
                        np.array([True, False, True]), np.zeros(3, bool))
    assert tuple(table.columns) == FRAME_COLUMNS
    assert list(table["expression"]) == ["Happiness", "", "Neutral"]
    assert table["time_s"].tolist() == [0.0, 0.1, 0.2]


def test_frame_table_refuses_arrays_of_another_length():
    with pytest.raises(ValueError, match="valence has 2 values for 3 frames"):
        frame_table(10.0, np.zeros(2), np.zeros(3), np.zeros((3, 8)), np.ones(3, bool), np.ones(3, bool))
