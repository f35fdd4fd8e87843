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

import difflib

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


#: Other names users type (dysts's and the literature's) for systems of :data:`SYSTEMS`.
ALIASES: dict[str, str] = {
    "lorenz": "lorenz63", "roessler": "rossler", "ks": "kuramotosivashinsky",
    "mackey": "mackeyglass", "fhn": "fitzhughnagumo", "henonmap": "henon",
    "logisticmap": "logistic", "ikedamap": "ikeda",
}


def get_system(name: str, **params) -> DynamicalSystem:
    """Build a system by (case-insensitive) class name or a common alias (:data:`ALIASES`,
    e.g. "lorenz", "ks"), e.g. ``get_system("lorenz96", n=20)``."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a system's name (a string), got "
                        f"{type(name).__name__}; see tsrnn.systems.SYSTEMS")
    key = name.lower().replace("_", "").replace("-", "").replace(" ", "")
    key = ALIASES.get(key, key)
    if key not in SYSTEMS:
        close = difflib.get_close_matches(key, [*SYSTEMS, *ALIASES], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown system {name!r}{hint}; expected one of {sorted(SYSTEMS)}")
    return SYSTEMS[key](**params)


__all__ = [
    "ALIASES",
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
