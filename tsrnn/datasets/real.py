"""Real series shipped with tsrnn, loaded offline from the installed package.

Every series is a small CSV under ``tsrnn/datasets/data/``, copied from the data files of the
statsmodels 0.15.0 wheel (statsmodels itself is not needed) by
``datasets/build_real_series.py``; ``datasets/README.md`` and ``data/provenance.json`` record
the exact wheel, member paths and SHA-256 sums. All five series are public domain (each
dataset's own ``COPYRIGHT`` note in statsmodels says so; statsmodels' code is BSD-3-Clause).

=========  =====  =============================  =========  ===============================
name       rows   columns                        index      original source
=========  =====  =============================  =========  ===============================
sunspots   309    sunspot_number                 yearly     NOAA NGDC, 1700-2008
co2        2284   co2 (59 NaN)                   weekly     Scripps / CDIAC Mauna Loa
nile       100    volume                         yearly     Cobb (1978), Aswan 1871-1970
elnino     732    sst                            monthly    NOAA CPC, ERSST.V3B Nino 1+2
macrodata  203    realgdp, ..., realint (12)     quarterly  FRED and BLS, 1959Q1-2009Q3
=========  =====  =============================  =========  ===============================

Regular yearly, monthly and quarterly series are indexed by a ``pandas.PeriodIndex`` (a
value describes a whole period, e.g. a yearly mean); the weekly co2 series by a
``DatetimeIndex`` of the Saturdays that end each week. ``df.to_timestamp()`` turns a
PeriodIndex into timestamps where needed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import pandas as pd

from tsrnn._validation import check_option

_DATA_PACKAGE = "tsrnn.datasets"


def _open_data_file(filename: str):
    """Open ``tsrnn/datasets/data/<filename>`` in binary mode, wherever the package is installed."""
    # importlib.resources also works from zip imports and wheels, unlike paths built on __file__
    return resources.files(_DATA_PACKAGE).joinpath("data").joinpath(filename).open("rb")


def _read_data_csv(filename: str, time_column: str) -> pd.DataFrame:
    with _open_data_file(filename) as handle:
        # the time column stays text: each loader parses it into the right kind of index
        return pd.read_csv(handle, dtype={time_column: str})


def _period_indexed(table: pd.DataFrame, time_column: str, freq: str) -> pd.DataFrame:
    """Index ``table`` by the periods in ``time_column`` and check that none is missing."""
    index = pd.PeriodIndex([pd.Period(value, freq=freq) for value in table[time_column]],
                           name=time_column)
    expected = pd.period_range(start=index[0], periods=len(index), freq=freq)
    if not index.equals(expected):  # a damaged data file, not a user error
        raise RuntimeError(f"shipped data for {time_column!r} is not a regular {freq} series")
    frame = table.drop(columns=[time_column]).astype(float)
    frame.index = index
    return frame


def load_sunspots() -> pd.DataFrame:
    """Yearly mean sunspot numbers, 1700-2008.

    Returns
    -------
    pandas.DataFrame
        Shape (309, 1), column ``sunspot_number`` (float), indexed by a yearly
        ``PeriodIndex`` named ``year`` (1700 ... 2008, no gaps).

    Notes
    -----
    Source: National Geophysical Data Center (NOAA NGDC),
    http://www.ngdc.noaa.gov/stp/solar/solarda3.html, as shipped by statsmodels 0.15.0
    (``statsmodels/datasets/sunspots/sunspots.csv``, column ``SUNACTIVITY``). These are the
    original (version 1) Wolf/Zurich numbers, from before the 2015 SILSO recalibration:
    today's version 2 series is roughly these values divided by 0.6.

    Licence: public domain (statsmodels' note: "This data is public domain.").

    Examples
    --------
    >>> df = load_sunspots()
    >>> float(df["sunspot_number"].max()), str(df["sunspot_number"].idxmax())
    (190.2, '1957')
    """
    return _period_indexed(_read_data_csv("sunspots.csv", "year"), "year", "Y")


def load_co2(fill: str | None = None) -> pd.DataFrame:
    """Weekly atmospheric CO2 concentration at Mauna Loa, March 1958 - December 2001.

    Parameters
    ----------
    fill : {None, "interpolate"}, default None
        ``None`` keeps the 59 weeks without a measurement as NaN (most of them in 1958-1964;
        the first and last weeks have values). ``"interpolate"`` fills them linearly in time.

    Returns
    -------
    pandas.DataFrame
        Shape (2284, 1), column ``co2`` in ppmv (float), indexed by a ``DatetimeIndex``
        named ``date`` with frequency ``W-SAT`` (each week labelled by its Saturday,
        1958-03-29 ... 2001-12-29, no missing dates). With ``fill=None`` the column holds 59
        NaN; estimators that reject NaN need ``fill="interpolate"`` or ``dropna()``.

    Notes
    -----
    Source: Keeling, C.D. and T.P. Whorf (2004), "Atmospheric CO2 concentrations derived
    from flask air samples at sites in the SIO network", in Trends: A Compendium of Data on
    Global Change, CDIAC, Oak Ridge National Laboratory; weekly averages of continuous air
    samples at Mauna Loa Observatory, Hawaii. Shipped by statsmodels 0.15.0
    (``statsmodels/datasets/co2/co2.csv``).

    Licence: public domain (statsmodels' note: "This is public domain.").
    """
    check_option(fill, "fill", (None, "interpolate"))
    table = _read_data_csv("co2.csv", "date")
    # the constructor checks that the dates really are consecutive Saturdays
    index = pd.DatetimeIndex(pd.to_datetime(table["date"], format="%Y-%m-%d"), freq="W-SAT",
                             name="date")
    frame = table.drop(columns=["date"]).astype(float)
    frame.index = index
    if fill == "interpolate":
        frame = frame.interpolate(method="time")
    return frame


def load_nile() -> pd.DataFrame:
    """Annual flow of the Nile at Aswan, 1871-1970.

    Returns
    -------
    pandas.DataFrame
        Shape (100, 1), column ``volume``: the annual discharge in 10^8 m^3 (float), indexed
        by a yearly ``PeriodIndex`` named ``year`` (1871 ... 1970, no gaps).

    Notes
    -----
    The classic change-point series (the mean drops near 1898). Source: Cobb, G. W. (1978),
    "The problem of the Nile: conditional solution to a changepoint problem", Biometrika
    65(2), 243-251 (also R's ``datasets::Nile``). Shipped by statsmodels 0.15.0
    (``statsmodels/datasets/nile/nile.csv``).

    Licence: public domain (statsmodels' note: "This is public domain.").
    """
    return _period_indexed(_read_data_csv("nile.csv", "year"), "year", "Y")


def load_elnino() -> pd.DataFrame:
    """Monthly mean sea surface temperature in the Nino 1+2 region, 1950-2010.

    Returns
    -------
    pandas.DataFrame
        Shape (732, 1), column ``sst`` in degrees Celsius (float), indexed by a monthly
        ``PeriodIndex`` named ``month`` (1950-01 ... 2010-12, no gaps).

    Notes
    -----
    The Pacific between 0-10 degrees South and 90-80 degrees West. Source: NOAA National
    Weather Service, Climate Prediction Center, ERSST.V3B, Nino 1+2 index
    (http://www.cpc.ncep.noaa.gov/data/indices/). Shipped by statsmodels 0.15.0
    (``statsmodels/datasets/elnino/elnino.csv``: one row per year with twelve month
    columns, reshaped here into one monthly series).

    Licence: public domain (statsmodels' note: "This data is in the public domain.").
    """
    return _period_indexed(_read_data_csv("elnino.csv", "month"), "month", "M")


def load_macrodata() -> pd.DataFrame:
    """US macroeconomic quarterly series, 1959Q1-2009Q3 (twelve variates).

    Returns
    -------
    pandas.DataFrame
        Shape (203, 12), indexed by a quarterly ``PeriodIndex`` named ``quarter``
        (1959Q1 ... 2009Q3, no gaps), float columns:

        - ``realgdp``, ``realcons``, ``realinv``, ``realgovt``, ``realdpi``: real GDP,
          personal consumption, gross private domestic investment, federal consumption and
          investment, disposable personal income (billions of chained 2005 US$, seasonally
          adjusted annual rate)
        - ``cpi``: consumer price index, end of quarter (1982-84 = 100)
        - ``m1``: M1 money stock, end of quarter (billions of US$)
        - ``tbilrate``: 3-month treasury bill rate, quarterly average of monthly values (%)
        - ``unemp``: unemployment rate (%), seasonally adjusted
        - ``pop``: population, end of quarter (millions)
        - ``infl``: inflation, 400 ln(cpi_t / cpi_{t-1}) (% per year)
        - ``realint``: real interest rate, ``tbilrate - infl``

    Notes
    -----
    ``infl`` and ``realint`` need the previous quarter, so their 1959Q1 values are 0.0
    placeholders in the source (kept as shipped); drop the first row when using them.

    Source: compiled by Skipper Seabold from FRED, Federal Reserve Bank of St. Louis
    (accessed 2009-12-15), the unemployment rate from the Bureau of Labor Statistics.
    Shipped by statsmodels 0.15.0 (``statsmodels/datasets/macrodata/macrodata.csv``).

    Licence: public domain (statsmodels' note: "This is public domain.").
    """
    return _period_indexed(_read_data_csv("macrodata.csv", "quarter"), "quarter", "Q")


@dataclass(frozen=True)
class _DatasetEntry:
    loader: Callable[..., pd.DataFrame]
    description: str


_REGISTRY: dict[str, _DatasetEntry] = {
    "sunspots": _DatasetEntry(
        load_sunspots, "yearly mean sunspot number, 1700-2008 (309 rows, NOAA NGDC)"),
    "co2": _DatasetEntry(
        load_co2, "weekly Mauna Loa CO2 in ppmv, 1958-2001 (2284 rows, 59 missing weeks)"),
    "nile": _DatasetEntry(
        load_nile, "annual Nile flow at Aswan in 10^8 m^3, 1871-1970 (100 rows)"),
    "elnino": _DatasetEntry(
        load_elnino, "monthly Nino 1+2 sea surface temperature in C, 1950-2010 (732 rows)"),
    "macrodata": _DatasetEntry(
        load_macrodata, "12 US macroeconomic quarterly series, 1959Q1-2009Q3 (203 rows)"),
}


def list_datasets() -> dict[str, str]:
    """Names of the shipped real series, each with a one-line description.

    Returns
    -------
    dict
        ``{name: description}`` in a fixed order; every name is accepted by
        :func:`load_dataset`.
    """
    return {name: entry.description for name, entry in _REGISTRY.items()}


def load_dataset(name: str, **options: Any) -> pd.DataFrame:
    """Load a shipped real series by name.

    Parameters
    ----------
    name : str
        One of the keys of :func:`list_datasets` (``"sunspots"``, ``"co2"``, ``"nile"``,
        ``"elnino"``, ``"macrodata"``).
    **options
        Passed to the loader, e.g. ``load_dataset("co2", fill="interpolate")``.

    Returns
    -------
    pandas.DataFrame
        What ``load_<name>()`` returns.

    Raises
    ------
    ValueError
        For an unknown name; the message lists the known ones.
    """
    name = _dataset_name(name)
    return _REGISTRY[name].loader(**options)


def _dataset_name(name: Any) -> str:
    """The registered name, matched without regard to case (as system names are)."""
    if isinstance(name, str):
        by_case = {key.lower(): key for key in _REGISTRY}
        name = by_case.get(name.lower(), name)
    check_option(name, "dataset name", tuple(_REGISTRY))
    return name


def dataset_provenance(name: str) -> dict[str, Any]:
    """Where a shipped series comes from: the record written by ``build_real_series.py``.

    Parameters
    ----------
    name : str
        One of the keys of :func:`list_datasets`.

    Returns
    -------
    dict
        ``file``, ``rows``, ``columns``, ``sha256`` (of the shipped CSV), ``source_member``
        (the path inside the statsmodels wheel) and its ``source_member_sha256``,
        ``licence_note``, ``title`` and ``original_source``, plus ``source_package``,
        ``source_version`` and ``wheel`` (the wheel's file name).
    """
    name = _dataset_name(name)
    with _open_data_file("provenance.json") as handle:
        record = json.load(handle)
    entry = dict(record["datasets"][name])
    entry.update({key: record[key] for key in ("source_package", "source_version", "wheel")})
    return entry
