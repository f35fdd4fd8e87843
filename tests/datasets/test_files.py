"""Tests of tsrnn/datasets/files.py: reading user CSV files (ETT layout) and the ETT borders."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tsrnn.datasets import ett_borders, ett_splits, load_csv

ETT_COLUMNS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]


def _ett_frame(n_rows: int, freq: str = "h", seed: int = 0) -> pd.DataFrame:
    """An ETT-like table: a ``date`` column of strings and seven numeric columns."""
    rng = np.random.default_rng(seed)
    stamps = pd.date_range("2016-07-01 00:00:00", periods=n_rows, freq=freq)
    table = pd.DataFrame(rng.normal(10.0, 3.0, size=(n_rows, 7)).round(3), columns=ETT_COLUMNS)
    table.insert(0, "date", stamps.strftime("%Y-%m-%d %H:%M:%S"))
    return table


def _write(tmp_path, text: str, name: str = "data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_csv_round_trips_an_ett_file(tmp_path):
    table = _ett_frame(48)
    path = tmp_path / "ETTh1.csv"
    table.to_csv(path, index=False)
    df = load_csv(path)
    assert list(df.columns) == ETT_COLUMNS
    assert isinstance(df.index, pd.DatetimeIndex) and df.index.name == "date"
    assert df.index[0] == pd.Timestamp("2016-07-01 00:00:00")
    assert df.index.freq == pd.tseries.frequencies.to_offset("h")  # inferred: regular file
    np.testing.assert_array_equal(df.to_numpy(), table[ETT_COLUMNS].to_numpy())
    assert (df.dtypes == np.float64).all()


def test_load_csv_selects_columns_in_the_given_order(tmp_path):
    path = tmp_path / "ETTm1.csv"
    _ett_frame(10, freq="15min").to_csv(path, index=False)
    df = load_csv(path, columns=["OT", "HUFL"], freq="15min")
    assert list(df.columns) == ["OT", "HUFL"]
    assert df.index.freq == pd.tseries.frequencies.to_offset("15min")


def test_load_csv_sorts_by_time_and_keeps_empty_cells_as_nan(tmp_path):
    path = _write(tmp_path, "date,a,b\n"
                            "2020-01-01 02:00:00,3,30\n"
                            "2020-01-01 00:00:00,1,\n"
                            "2020-01-01 01:00:00,2,20\n")
    df = load_csv(path, freq="infer")
    np.testing.assert_array_equal(df["a"].to_numpy(), [1.0, 2.0, 3.0])
    assert np.isnan(df["b"].iloc[0]) and df["b"].iloc[2] == 30.0
    assert df.index.freqstr == "h"


def test_load_csv_without_date_parsing_keeps_raw_time_values(tmp_path):
    path = _write(tmp_path, "step,x\n2,0.2\n0,0.0\n1,0.1\n")
    df = load_csv(path, time_column="step", parse_dates=False)
    assert list(df.index) == [0, 1, 2] and df.index.name == "step"
    np.testing.assert_array_equal(df["x"].to_numpy(), [0.0, 0.1, 0.2])


def test_load_csv_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such file.*absent\.csv"):
        load_csv(tmp_path / "absent.csv")


def test_load_csv_missing_time_column_lists_columns(tmp_path):
    path = _write(tmp_path, "time,a\n2020-01-01,1\n")
    with pytest.raises(ValueError, match=r"time column 'date' not found.*columns present: time, a"):
        load_csv(path)


def test_load_csv_missing_requested_column(tmp_path):
    path = _write(tmp_path, "date,a\n2020-01-01,1\n")
    with pytest.raises(ValueError, match=r"columns \['OT'\] not found"):
        load_csv(path, columns=["a", "OT"])


def test_load_csv_names_non_numeric_columns_and_first_bad_value(tmp_path):
    path = _write(tmp_path, "date,HUFL,OT,HULL\n"
                            "2020-01-01 00:00:00,1,2,3\n"
                            "2020-01-01 01:00:00,1,n/a?,3\n"
                            "2020-01-01 02:00:00,1,2,x\n")
    with pytest.raises(ValueError, match=r"non-numeric columns.*'OT' \(line 3: 'n/a\?'\); "
                                         r"'HULL' \(line 4: 'x'\)"):
        load_csv(path)


def test_load_csv_rejects_duplicate_timestamps(tmp_path):
    path = _write(tmp_path, "date,a\n"
                            "2020-01-01 01:00:00,1\n"
                            "2020-01-01 00:00:00,2\n"
                            "2020-01-01 01:00:00,3\n")
    with pytest.raises(ValueError, match=r"1 duplicate time stamps.*2020-01-01 01:00:00"):
        load_csv(path)


def test_load_csv_rejects_unparseable_dates(tmp_path):
    path = _write(tmp_path, "date,a\n2020-01-01 00:00:00,1\nyesterday,2\n")
    with pytest.raises(ValueError, match="could not be parsed as dates"):
        load_csv(path)


def test_load_csv_frequency_check_names_the_gap(tmp_path):
    path = _write(tmp_path, "date,a\n"
                            "2020-01-01 00:00:00,1\n"
                            "2020-01-01 01:00:00,2\n"
                            "2020-01-01 03:00:00,3\n"
                            "2020-01-01 04:00:00,4\n")
    assert load_csv(path).index.freq is None  # no check asked: loads, without a frequency
    with pytest.raises(ValueError, match=r"not regular.*01:00:00 is followed by 2020-01-01 03:00"):
        load_csv(path, freq="infer")
    with pytest.raises(ValueError, match=r"does not follow freq 'h'.*expected 2020-01-01 02:00"):
        load_csv(path, freq="h")
    with pytest.raises(ValueError, match="freq needs a time column parsed as dates"):
        load_csv(path, freq="h", parse_dates=False)


def test_ett_borders_follow_the_informer_convention():
    # Informer data_loader.py: border2s = [12*30*24, 16*30*24, 20*30*24] (x4 for 15 minutes)
    assert ett_borders("hour") == {"train": (0, 8640), "validation": (8640, 11520),
                                   "test": (11520, 14400)}
    assert ett_borders("minute") == {"train": (0, 34560), "validation": (34560, 46080),
                                     "test": (46080, 57600)}
    with pytest.raises(ValueError, match="unknown kind 'day'"):
        ett_borders("day")


def _hourly(n_rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    index = pd.date_range("2016-07-01", periods=n_rows, freq="h", name="date")
    return pd.DataFrame(rng.normal(5.0, 2.0, size=(n_rows, 3)), index=index,
                        columns=["HUFL", "MUFL", "OT"])


def test_ett_splits_hour_blocks_and_unused_tail():
    df = _hourly(17420)  # the length of ETTh1
    split = ett_splits(df, kind="hour")
    assert split.sizes == (8640, 2880, 2880) and split.starts == (0, 8640, 11520)
    pd.testing.assert_frame_equal(split.train, df.iloc[:8640])
    pd.testing.assert_frame_equal(split.validation, df.iloc[8640:11520])
    pd.testing.assert_frame_equal(split.test, df.iloc[11520:14400])
    assert not split.standardized


def test_ett_splits_lookback_and_train_standardisation():
    df = _hourly(14400)
    split = ett_splits(df, kind="hour", lookback=96, standardize=True)
    assert split.starts == (0, 8544, 11424) and split.sizes == (8640, 2976, 2976)
    np.testing.assert_allclose(split.mean, df.iloc[:8640].mean().to_numpy())
    np.testing.assert_allclose(split.std, df.iloc[:8640].std(ddof=0).to_numpy())
    np.testing.assert_allclose(split.train.mean().to_numpy(), 0.0, atol=1e-12)
    pd.testing.assert_frame_equal(split.inverse_transform(split.test), df.iloc[11424:14400])


def test_ett_splits_minute_needs_57600_rows_and_a_15_minute_step():
    rng = np.random.default_rng(2)
    index = pd.date_range("2016-07-01", periods=57600, freq="15min")
    df = pd.DataFrame(rng.normal(size=(57600, 1)), index=index, columns=["OT"])
    split = ett_splits(df, kind="minute")
    assert split.sizes == (34560, 11520, 11520)
    with pytest.raises(ValueError, match=r"kind='hour' expects a time step of 0 days 01:00:00.*"
                                         "kind='minute' fits"):
        ett_splits(df, kind="hour")
    too_short = "ETT minute splits need at least 57600 rows, df has 14400"
    with pytest.raises(ValueError, match=too_short):
        ett_splits(_hourly(14400).set_axis(index[:14400]), kind="minute")


def test_a_numeric_time_column_stays_numbers(tmp_path):
    # pandas' to_datetime read 0, 1, 2 as nanoseconds after 1970 (silently), and seconds
    # 0.0, 0.5, 1.0 as a misleading "duplicate time stamps".
    (tmp_path / "steps.csv").write_text("t,x\n0,1.0\n1,2.0\n2,3.0\n")
    (tmp_path / "seconds.csv").write_text("t,x\n0.0,1.0\n0.5,2.0\n1.0,3.0\n")
    assert load_csv(tmp_path / "steps.csv", time_column="t").index.tolist() == [0, 1, 2]
    frame = load_csv(tmp_path / "seconds.csv", time_column="t")
    assert frame.index.tolist() == [0.0, 0.5, 1.0] and frame["x"].tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="freq needs dates"):
        load_csv(tmp_path / "steps.csv", time_column="t", freq="D")
