"""Shipped real series, loaders for user files, and time-ordered splits.

Real series that load offline (copied from the statsmodels 0.15.0 wheel, all public domain;
sources and licences in each loader's docstring and in ``datasets/README.md``):

- :func:`load_sunspots`   yearly mean sunspot number, 1700-2008 (309 rows)
- :func:`load_co2`        weekly Mauna Loa CO2, 1958-2001 (2284 rows, 59 missing weeks)
- :func:`load_nile`       annual Nile flow at Aswan, 1871-1970 (100 rows)
- :func:`load_elnino`     monthly Nino 1+2 sea surface temperature, 1950-2010 (732 rows)
- :func:`load_macrodata`  12 US macroeconomic quarterly series, 1959Q1-2009Q3 (203 rows)
- :func:`list_datasets`, :func:`load_dataset` (by name), :func:`dataset_provenance`

Files the user supplies: :func:`load_csv` (ETT-style CSV with a ``date`` column) and
:func:`ett_splits` / :func:`ett_borders` (the Informer 12/4/4-month borders).

Splits: :func:`simulate_splits` (one simulated trajectory of a ``tsrnn.systems`` system cut
into train / validation / test), :func:`train_test_split_series` (any series, in time
order), both returning a :class:`SeriesSplit` standardised with the training statistics and
able to ``inverse_transform`` forecasts back to original units.
"""

from tsrnn.datasets.files import ett_borders, ett_splits, load_csv
from tsrnn.datasets.oscillator import mass_spring_damper
from tsrnn.datasets.real import (
    dataset_provenance,
    list_datasets,
    load_co2,
    load_dataset,
    load_elnino,
    load_macrodata,
    load_nile,
    load_sunspots,
)
from tsrnn.datasets.splits import SeriesSplit, simulate_splits, train_test_split_series

__all__ = [
    "SeriesSplit",
    "dataset_provenance",
    "ett_borders",
    "ett_splits",
    "list_datasets",
    "load_co2",
    "load_csv",
    "load_dataset",
    "load_elnino",
    "load_macrodata",
    "load_nile",
    "load_sunspots",
    "mass_spring_damper",
    "simulate_splits",
    "train_test_split_series",
]
