"""Simulators of dynamical systems: flows, maps, a delay equation and a PDE.

Every system takes its parameters as keywords with canonical defaults and offers ``dim``,
``default_dt``, ``lyapunov_reference`` and ``simulate(n_steps, dt=None, x0=None,
transient=0, seed=None, noise=0.0)``. Flows also give ``rhs`` and ``jacobian``; maps give
``step`` and ``jacobian``. Integration runs in torch, batched, on the CPU or a GPU.

>>> from tsrnn.systems import Lorenz63
>>> lorenz = Lorenz63()
>>> lorenz.dim, lorenz.default_dt, lorenz.lyapunov_reference
(3, 0.01, (0.9056, 0.0, -14.5723))
>>> lorenz.simulate(1000, transient=500, seed=0).shape
(1000, 3)
"""

from __future__ import annotations

from .base import ComponentFlow, DynamicalSystem, Flow, Map
from .delay import MackeyGlass
from .flows import (
    Chen,
    Chua,
    DoubleScroll,
    Duffing,
    FitzHughNagumo,
    KuramotoOscillators,
    Lorenz63,
    Lorenz96,
    Rossler,
    Thomas,
    VanDerPol,
)
from .maps import Henon, Ikeda, Logistic
from .pde import KuramotoSivashinsky

SYSTEMS: dict[str, type[DynamicalSystem]] = {
    cls.__name__.lower(): cls
    for cls in (Lorenz63, Rossler, Lorenz96, Chen, Chua, DoubleScroll, Duffing,
                FitzHughNagumo, KuramotoOscillators, Thomas, VanDerPol, Henon, Ikeda, Logistic)
}
SYSTEMS["kuramotosivashinsky"] = KuramotoSivashinsky
SYSTEMS["mackeyglass"] = MackeyGlass


def get_system(name: str, **params) -> DynamicalSystem:
    """Build a system by (case-insensitive) class name, e.g. ``get_system("lorenz96", n=20)``."""
    key = name.lower().replace("_", "").replace("-", "")
    if key not in SYSTEMS:
        raise ValueError(f"unknown system {name!r}; expected one of {sorted(SYSTEMS)}")
    return SYSTEMS[key](**params)


__all__ = [
    "SYSTEMS",
    "Chen",
    "Chua",
    "ComponentFlow",
    "DoubleScroll",
    "Duffing",
    "DynamicalSystem",
    "FitzHughNagumo",
    "Flow",
    "Henon",
    "Ikeda",
    "KuramotoOscillators",
    "KuramotoSivashinsky",
    "Logistic",
    "Lorenz63",
    "Lorenz96",
    "MackeyGlass",
    "Map",
    "Rossler",
    "Thomas",
    "VanDerPol",
    "get_system",
]
