"""Tests of tsrnn/datasets/real.py: the shipped real series load offline with known values.

Expected values were read from the statsmodels 0.15.0 source CSVs (see datasets/README.md).
"""

from __future__ import annotations

import hashlib
import socket
from importlib import resources

import numpy as np
import pandas as pd
import pytest

from tsrnn.datasets import (
    dataset_provenance,
    list_datasets,
    load_co2,
    load_dataset,
    load_elnino,
    load_macrodata,
    load_nile,
    load_sunspots,
)

MACRO_COLUMNS = ["realgdp", "realcons", "realinv", "realgovt", "realdpi", "cpi", "m1",
                 "tbilrate", "unemp", "pop", "infl", "realint"]

# name: (loader, shape, index class, freqstr, index name, first label, last label,
#        first row, last row, columns)
EXPECTED = {
    "sunspots": (load_sunspots, (309, 1), pd.PeriodIndex, "Y-DEC", "year", "1700", "2008",
                 [5.0], [2.9], ["sunspot_number"]),
    "co2": (load_co2, (2284, 1), pd.DatetimeIndex, "W-SAT", "date", "1958-03-29", "2001-12-29",
            [316.1], [371.5], ["co2"]),
    "nile": (load_nile, (100, 1), pd.PeriodIndex, "Y-DEC", "year", "1871", "1970",
             [1120.0], [740.0], ["volume"]),
    "elnino": (load_elnino, (732, 1), pd.PeriodIndex, "M", "month", "1950-01", "2010-12",
               [23.11], [22.07], ["sst"]),
    "macrodata": (load_macrodata, (203, 12), pd.PeriodIndex, "Q-DEC", "quarter", "1959Q1",
                  "2009Q3",
                  [2710.349, 1707.4, 286.898, 470.045, 1886.9, 28.98, 139.7, 2.82, 5.8,
                   177.146, 0.0, 0.0],
                  [12990.341, 9256.0, 1486.398, 1044.088, 10040.6, 216.385, 1673.9, 0.12,
                   9.6, 308.013, 3.56, -3.44],
                  MACRO_COLUMNS),
}


@pytest.fixture
def no_network(monkeypatch):
    """Make any attempt to open a socket fail, so a loader that downloads would error."""
    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_loader_has_documented_shape_index_and_end_values(name, no_network):
    loader, shape, index_class, freqstr, index_name, first, last, first_row, last_row, \
        columns = EXPECTED[name]
    df = loader()
    assert isinstance(df, pd.DataFrame)
    assert df.shape == shape
    assert list(df.columns) == columns
    assert isinstance(df.index, index_class)
    assert df.index.freqstr == freqstr
    assert df.index.name == index_name
    assert str(df.index[0]).startswith(first) and str(df.index[-1]).startswith(last)
    assert df.index.is_monotonic_increasing and df.index.is_unique
    assert all(dtype == np.float64 for dtype in df.dtypes)
    np.testing.assert_array_equal(df.iloc[0].to_numpy(), first_row)
    np.testing.assert_array_equal(df.iloc[-1].to_numpy(), last_row)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_regular_series_have_no_missing_periods(name):
    df = load_dataset(name)
    expected = (pd.period_range(df.index[0], periods=len(df), freq=df.index.freq)
                if isinstance(df.index, pd.PeriodIndex)
                else pd.date_range(df.index[0], periods=len(df), freq=df.index.freq))
    assert df.index.equals(expected)


def test_load_dataset_dispatches_to_the_named_loader():
    assert set(list_datasets()) == set(EXPECTED)
    for name, (loader, *_rest) in EXPECTED.items():
        pd.testing.assert_frame_equal(load_dataset(name), loader())
    pd.testing.assert_frame_equal(load_dataset("co2", fill="interpolate"),
                                  load_co2(fill="interpolate"))


def test_list_datasets_gives_one_line_descriptions():
    for name, description in list_datasets().items():
        assert isinstance(description, str) and description and "\n" not in description, name


def test_load_dataset_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match=r"unknown dataset name 'ETTh1'.*'sunspots'.*'macrodata'"):
        load_dataset("ETTh1")


def test_sunspots_maximum_is_1957():
    df = load_sunspots()
    assert df["sunspot_number"].max() == 190.2
    assert df["sunspot_number"].idxmax() == pd.Period("1957", freq="Y")


def test_nile_mean_and_change_point_years():
    volume = load_nile()["volume"]
    assert volume.mean() == pytest.approx(919.35)
    # the classic drop after 1898: the later mean is clearly lower than the earlier one
    assert volume[:"1898"].mean() > volume["1899":].mean() + 200


def test_co2_keeps_missing_weeks_as_nan_unless_interpolated():
    raw = load_co2()
    assert int(raw["co2"].isna().sum()) == 59
    assert np.isnan(raw.loc["1958-05-10", "co2"])
    filled = load_co2(fill="interpolate")
    assert not filled["co2"].isna().any()
    # one missing week between 316.9 and 317.5: linear in time gives the midpoint
    assert filled.loc["1958-05-10", "co2"] == pytest.approx(317.2)
    observed = raw["co2"].notna()
    np.testing.assert_array_equal(filled["co2"][observed], raw["co2"][observed])
    with pytest.raises(ValueError, match="unknown fill 'zero'"):
        load_co2(fill="zero")


def test_elnino_months_follow_the_calendar():
    sst = load_elnino()["sst"]
    # the source has one row per year with twelve month columns: Feb 1950 must follow Jan 1950
    assert sst[pd.Period("1950-02", freq="M")] == 24.2
    assert sst[pd.Period("1951-01", freq="M")] == 24.19
    assert sst[pd.Period("1997-12", freq="M")] == 27.08  # the 1997-98 El Nino


def test_macrodata_columns_are_consistent_with_their_definitions():
    df = load_macrodata()
    later = df.iloc[1:]  # infl and realint are 0.0 placeholders in 1959Q1
    inflation = 400 * np.log(df["cpi"] / df["cpi"].shift(1)).iloc[1:]
    # the source rounds to two decimals, hence the 0.006 and 0.011 tolerances
    assert np.max(np.abs(inflation - later["infl"])) < 0.006
    assert np.max(np.abs(later["tbilrate"] - later["infl"] - later["realint"])) < 0.011


def test_shipped_files_match_their_provenance_record():
    data = resources.files("tsrnn.datasets").joinpath("data")
    total_bytes = 0
    for name in EXPECTED:
        record = dataset_provenance(name)
        content = data.joinpath(record["file"]).read_bytes()
        total_bytes += len(content)
        assert hashlib.sha256(content).hexdigest() == record["sha256"], name
        assert record["rows"] == len(load_dataset(name))
        assert "public domain" in record["licence_note"].lower()
        assert record["source_package"] == "statsmodels"
        assert record["source_version"] == "0.15.0"
        assert record["source_member"] == f"statsmodels/datasets/{name}/{name}.csv"
    assert total_bytes < 1_000_000


def test_every_loader_docstring_states_source_and_licence():
    for loader, *_rest in EXPECTED.values():
        doc = loader.__doc__
        assert "Source:" in doc and "Licence: public domain" in doc, loader.__name__
