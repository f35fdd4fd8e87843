"""Analysis of dynamical systems and trained models: Lyapunov spectra and dimensions,
fixed points and cycles.

Everything here takes a simulator, a fitted estimator or a torch module through one small
protocol, :class:`DiscreteMap` (a step function with its tangent map or Jacobian).

The Hénon map's spectrum (literature: 0.419, -1.623) and Kaplan-Yorke dimension (1.26):

>>> from tsrnn.systems import Henon
>>> from tsrnn.analysis import kaplan_yorke_dimension, lyapunov_spectrum
>>> spectrum = lyapunov_spectrum(Henon(), n_steps=2000)
>>> spectrum.round(2)
array([ 0.42, -1.62])
>>> round(kaplan_yorke_dimension(spectrum), 2)
1.26
"""

from .._protocol import DiscreteMap
from .fixed_points import Cycle, FixedPoint, find_cycles, fixed_points
from .lyapunov import as_discrete_map, kaplan_yorke_dimension, lyapunov_spectrum
from .plots import plot_attractor, plot_power_spectra, plot_symbolic_sequence
from .scyfi import PiecewiseLinearCycle, PiecewiseLinearFixedPoint, SCYFIResult, scyfi

__all__ = [
    "Cycle",
    "DiscreteMap",
    "FixedPoint",
    "PiecewiseLinearCycle",
    "PiecewiseLinearFixedPoint",
    "SCYFIResult",
    "as_discrete_map",
    "find_cycles",
    "fixed_points",
    "kaplan_yorke_dimension",
    "lyapunov_spectrum",
    "plot_attractor",
    "plot_power_spectra",
    "plot_symbolic_sequence",
    "scyfi",
]
