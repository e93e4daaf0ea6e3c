"""intsim/data.py: CSV parsing, chronological split, windows, normalisation, baselines, metrics."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from intsim import data as D
from intsim.errors import DataError

REPO = Path(__file__).resolve().parent.parent
DAPHNET = REPO / "data" / "daphnet_S06R02E0.csv.gz"

CSV_TEXT = """timestamp,a,label,b,is_anomaly
2024-01-01 00:00,1.5,x,-2,0
2024-01-01 00:01,2.5,y,1e3,0

2024-01-01 00:02, 3.5 ,z,4,1
"""


def write(path: Path, text: str) -> Path:
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------ parsing
@pytest.mark.parametrize("name", ["s.csv", "s.csv.gz"])
def test_default_columns_are_the_numeric_ones(tmp_path, name):
    """timestamp / is_anomaly are excluded, a text column is skipped, blank lines and
    spaces around numbers are ignored; .gz reads the same as plain text."""
    values, names = D.load_csv(write(tmp_path / name, CSV_TEXT))
    assert names == ["a", "b"]
    assert values.dtype == np.float64
    np.testing.assert_array_equal(values, [[1.5, -2.0], [2.5, 1000.0], [3.5, 4.0]])


def test_explicit_columns_keep_the_given_order(tmp_path):
    path = write(tmp_path / "s.csv", CSV_TEXT)
    values, names = D.load_csv(path, ["b", "is_anomaly", "a"])
    assert names == ["b", "is_anomaly", "a"]
    np.testing.assert_array_equal(values[:, 0], [-2, 1000, 4])
    np.testing.assert_array_equal(values[:, 1], [0, 0, 1])
    # A comma-separated string means the same.
    np.testing.assert_array_equal(D.load_csv(path, " b, is_anomaly ,a")[0], values)


def test_shipped_data_file():
    values, names = D.load_csv(DAPHNET)
    assert values.shape == (7040, 9)
    assert names[:3] == ["ankle_horiz_fwd", "ankle_vert", "ankle_horiz_lateral"]
    assert np.all(np.isfinite(values))


@pytest.mark.parametrize(
    "text, columns, match",
    [
        ("a,b\n1,2\n,3\n", None, r"column 'a', line 3: non-numeric value ''"),  # missing value
        ("a,b\n1,2\n3,x7\n", None, r"column 'b', line 3: non-numeric value 'x7'"),
        ("a,b\n1,2\nnan,3\n", None, r"column 'a', line 3: value 'nan' is not finite"),
        ("a,b\nNaN,2\nNaN,3\n", ["a"], r"column 'a', line 2: value 'NaN' is not finite"),  # NaN-only column
        ("a,b\n1,2\n3,-inf\n", None, r"column 'b', line 3: value '-inf' is not finite"),
        ("a,b\n1,2\n3\n", None, r"line 3: 1 fields, header has 2"),
        ("a,b\n1,2\n", ["c"], r"unknown column\(s\) 'c' \(available: a, b\)"),
        ("a,b\n1,2\n", ["a", "a"], r"listed twice"),
        ("a,b\n1,2\n", [], r"empty column list"),
        ("a,a\n1,2\n", None, r"duplicate column name\(s\) in header: a"),
        ("", None, r"file is empty"),
        ("a,b\n", None, r"no data rows after the header"),
        ("timestamp,name\n0,x\n", None, r"no numeric columns found"),
    ],
)
def test_bad_csv_is_one_clear_error(tmp_path, text, columns, match):
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(DataError, match=match) as info:
        D.load_csv(path, columns)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_text_in_first_row_excludes_the_column_by_default(tmp_path):
    """Documented rule: a column is numeric when its FIRST data row parses; asking for it
    explicitly then reports the non-numeric cell instead of dropping it."""
    path = write(tmp_path / "s.csv", "a,b\n1,-\n2,3\n")
    assert D.load_csv(path)[1] == ["a"]
    with pytest.raises(DataError, match=r"column 'b', line 2: non-numeric value '-'"):
        D.load_csv(path, ["b"])


def test_missing_file_short_file_and_binary(tmp_path):
    with pytest.raises(DataError, match="data file not found"):
        D.load_csv(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="2 data rows, need at least 5"):
        D.load_csv(write(tmp_path / "s.csv", "a\n1\n2\n"), min_rows=5)
    (tmp_path / "bin.csv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read CSV"):
        D.load_csv(tmp_path / "bin.csv.gz")


# ------------------------------------------------------------------- split
@pytest.mark.parametrize("n, sizes", [(7040, (4928, 704, 1408)), (10, (7, 1, 2)), (99, (69, 9, 21))])
def test_chronological_split_sizes_and_order(n, sizes):
    values = np.arange(n, dtype=np.float64)[:, None] * [1.0, -1.0]
    parts = D.chronological_split(values)
    assert tuple(len(parts[k]) for k in D.SPLITS) == sizes
    # Contiguous blocks in time order that cover every row exactly once.
    np.testing.assert_array_equal(np.concatenate([parts[k] for k in D.SPLITS]), values)


@pytest.mark.parametrize("fractions", [(0.5, 0.5), (0.7, 0.2, 0.2), (1.2, -0.1, -0.1)])
def test_split_rejects_bad_fractions(fractions):
    with pytest.raises(DataError, match="split fractions"):
        D.chronological_split(np.zeros((10, 1)), fractions)


# ------------------------------------------------------------------ windows
@pytest.mark.parametrize("rows, lookback, horizon, stride", [(40, 8, 3, 1), (40, 8, 3, 5), (11, 8, 3, 2)])
def test_window_counts_and_contents(rows, lookback, horizon, stride):
    values = np.arange(rows * 3, dtype=np.float64).reshape(rows, 3)
    X, Y = D.make_windows(values, lookback, horizon, stride)
    b = (rows - lookback - horizon) // stride + 1
    assert b == D.n_windows(rows, lookback, horizon, stride)
    assert X.shape == (b, 3, lookback) and Y.shape == (b, 3, horizon)
    for w in range(b):
        start = w * stride
        np.testing.assert_array_equal(X[w], values[start : start + lookback].T)
        np.testing.assert_array_equal(Y[w], values[start + lookback : start + lookback + horizon].T)
    assert X.flags.c_contiguous and Y.flags.c_contiguous


def test_too_few_rows_for_a_window():
    assert D.n_windows(10, 8, 3) == 0
    with pytest.raises(DataError, match="fewer than one window"):
        D.make_windows(np.zeros((10, 2)), 8, 3)
    with pytest.raises(DataError, match="lookback must be a positive integer"):
        D.make_windows(np.zeros((10, 2)), 0, 3)
    with pytest.raises(DataError, match="2-D"):
        D.make_windows(np.zeros(10), 4, 1)


def test_load_splits_windows_each_split_on_its_own(tmp_path):
    n = 200
    t = np.arange(n)
    path = write(tmp_path / "s.csv", "t,a,b\n" + "".join(f"{i},{i},{-2 * i}\n" for i in t))
    s = D.load_splits(path, ["a", "b"], lookback=10, horizon=4, train_stride=3)
    assert s["columns"] == ["a", "b"]
    assert [len(s["series"][k]) for k in D.SPLITS] == [140, 20, 40]
    assert len(s["train"][0]) == (140 - 14) // 3 + 1
    assert len(s["val"][0]) == 20 - 14 + 1 and len(s["test"][0]) == 40 - 14 + 1
    # No window straddles a split: the last train target is a train row, val starts at row 140.
    assert s["train"][1][-1, 0, -1] < 140
    assert s["val"][0][0, 0, 0] == 140 and s["val"][1][-1, 0, -1] == 159
    assert s["test"][0][0, 1, 0] == -2 * 160


def test_load_splits_on_the_shipped_data_matches_the_training_record():
    s = D.load_splits(DAPHNET, lookback=64, horizon=16)
    assert [len(s[k][0]) for k in D.SPLITS] == [4849, 625, 1329]


def test_load_splits_names_the_split_too_short(tmp_path):
    path = write(tmp_path / "s.csv", "a\n" + "".join(f"{i}\n" for i in range(60)))
    with pytest.raises(DataError, match=r"val split has 6 rows, fewer than one window"):
        D.load_splits(path, lookback=8, horizon=4)


# ------------------------------------------------------------ normalisation
def test_normalisation_round_trip_and_train_statistics():
    rng = np.random.default_rng(0)
    series = rng.normal([5.0, -300.0, 0.0], [2.0, 50.0, 1e-3], size=(500, 3))
    stats = D.fit_normalization(series)
    z = D.normalize(series, stats)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=0), 1, rtol=1e-12)
    np.testing.assert_allclose(D.denormalize(z, stats), series, rtol=1e-12, atol=1e-12)
    # Windows [B, C, L]: the channel axis is 1.
    X, _ = D.make_windows(series, 16, 4)
    np.testing.assert_allclose(D.normalize(X, stats), D.make_windows(z, 16, 4)[0], atol=1e-12)
    np.testing.assert_allclose(D.denormalize(D.normalize(X, stats), stats), X, rtol=1e-12, atol=1e-9)


def test_constant_channel_uses_the_std_floor():
    stats = D.fit_normalization(np.full((10, 2), 7.0))
    assert stats["std"] == [D.STD_FLOOR, D.STD_FLOOR] and stats["mean"] == [7.0, 7.0]
    assert np.all(D.normalize(np.full((3, 2), 7.0), stats) == 0)


def test_normalisation_channel_mismatch():
    stats = D.fit_normalization(np.zeros((4, 3)))
    with pytest.raises(DataError, match="normalisation has 3 channels, data has 2"):
        D.normalize(np.zeros((5, 2, 8)), stats)
    with pytest.raises(DataError, match="non-empty"):
        D.fit_normalization(np.zeros((0, 3)))


# ---------------------------------------------------------------- baselines
def test_repeat_last_is_exact():
    X = np.random.default_rng(1).standard_normal((5, 3, 8))
    P = D.repeat_last(X, 4)
    assert P.shape == (5, 3, 4)
    for h in range(4):
        np.testing.assert_array_equal(P[:, :, h], X[:, :, -1])


def _ar2_series(n: int) -> np.ndarray:
    """Three channels of noiseless AR(2) + offset: x_t = a x_{t-1} + b x_{t-2} + c.

    Every future value is then an exact linear function of the last two values plus
    a constant, so the per-channel least-squares forecaster must recover it.
    """
    params = [(1.6, -0.8, 0.3), (0.5, 0.3, -1.0), (1.9, -0.95, 0.05)]
    x = np.zeros((n, len(params)))
    x[:2] = [[1.0, 2.0, -1.0], [0.5, -1.0, 2.0]]
    for t in range(2, n):
        for c, (a, b, k) in enumerate(params):
            x[t, c] = a * x[t - 1, c] + b * x[t - 2, c] + k
    return x


def test_linear_forecaster_recovers_a_linear_process():
    series = _ar2_series(300)
    parts = D.chronological_split(series)
    fit = D.LinearForecaster().fit(*D.make_windows(parts["train"], 12, 5))
    assert fit.coef.shape == (3, 12, 5) and fit.intercept.shape == (3, 5)
    X, Y = D.make_windows(parts["test"], 12, 5)
    np.testing.assert_allclose(fit.predict(X), Y, atol=1e-8 * np.abs(Y).max())
    assert D.mse(fit.predict(X), Y) < 1e-12 * D.mse(D.repeat_last(X, 5), Y)


def test_linear_forecaster_is_per_channel():
    """Channel c's forecast depends on channel c's past only."""
    rng = np.random.default_rng(2)
    X, Y = rng.standard_normal((200, 2, 6)), rng.standard_normal((200, 2, 3))
    fit = D.LinearForecaster().fit(X, Y)
    X2 = X.copy()
    X2[:, 1] += 10.0
    np.testing.assert_array_equal(fit.predict(X2)[:, 0], fit.predict(X)[:, 0])


def test_linear_forecaster_ridge_shrinks_and_errors():
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((100, 1, 6)), rng.standard_normal((100, 1, 2))
    plain, ridge = D.LinearForecaster().fit(X, Y), D.LinearForecaster(ridge=100.0).fit(X, Y)
    assert np.linalg.norm(ridge.coef) < np.linalg.norm(plain.coef)
    with pytest.raises(DataError, match="before fit"):
        D.LinearForecaster().predict(X)
    with pytest.raises(DataError, match=r"expected \[B, 1, 6\]"):
        plain.predict(np.zeros((2, 1, 5)))
    with pytest.raises(DataError, match="X \\[B, C, L\\] and Y \\[B, C, H\\] expected"):
        D.LinearForecaster().fit(X, Y[:50])


def test_metrics():
    pred, target = np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[1.0, 0.0], [6.0, 4.0]])
    assert D.mse(pred, target) == pytest.approx((0 + 4 + 9 + 0) / 4)
    assert D.mae(pred, target) == pytest.approx((0 + 2 + 3 + 0) / 4)
