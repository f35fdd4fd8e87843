"""Analysis of dynamical systems and trained models: Lyapunov spectra and dimensions.

Everything here takes a simulator, a fitted estimator or a torch module through one small
protocol, :class:`DiscreteMap` (a step function with its tangent map or Jacobian).
"""

from .._protocol import DiscreteMap
from .lyapunov import as_discrete_map, kaplan_yorke_dimension, lyapunov_spectrum

__all__ = ["DiscreteMap", "as_discrete_map", "kaplan_yorke_dimension", "lyapunov_spectrum"]
