"""tsrnn: recurrent models, reservoirs and dynamical-systems reconstruction on PyTorch.

Subpackages (imported on first use, so ``import tsrnn`` stays cheap):

- :mod:`tsrnn.systems`      simulators of flows, maps, delay and partial differential equations
- :mod:`tsrnn.analysis`     Lyapunov spectra, Kaplan-Yorke dimension, fixed points and cycles
- :mod:`tsrnn.metrics`      measures that compare a generated series with a true one
- :mod:`tsrnn.forecasting`  the estimator base and the forecasters
- :mod:`tsrnn.reservoir`    reservoir computing
- :mod:`tsrnn.dsr`          dynamical-systems reconstruction (PLRNN family)
- :mod:`tsrnn.nn`           plain torch modules
- :mod:`tsrnn.ops`          kernels (linear scans)
- :mod:`tsrnn.datasets`     shipped real series, loaders and splits
"""

import importlib as _importlib
from typing import Any as _Any

__version__ = "0.1.0"

_SUBPACKAGES = (
    "analysis",
    "datasets",
    "dsr",
    "forecasting",
    "metrics",
    "nn",
    "ops",
    "reservoir",
    "systems",
)

__all__ = [*_SUBPACKAGES, "__version__"]


def __getattr__(name: str) -> _Any:
    if name in _SUBPACKAGES:
        return _importlib.import_module(f"tsrnn.{name}")
    raise AttributeError(f"module 'tsrnn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)  # the subpackages, not this module's own helpers
