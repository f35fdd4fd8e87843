"""Reservoir computing: echo state networks and their readouts.

- :class:`ESN`: leaky tanh reservoir with a ridge readout, closed-loop forecasting
- :class:`NVAR`: next-generation reservoir computing (delays and their monomials)
- building blocks: :class:`LeakyReservoir` (torch module), :mod:`~tsrnn.reservoir.matrices`
  (weights with an exact spectral radius), :mod:`~tsrnn.reservoir.readout` (streaming
  ridge regression in float64, RLS, LMS)
"""

from .deep import DeepResESN, DeepResidualReservoir, ResidualMemoryReservoir, ResRMN
from .esn import ESN
from .nvar import NVAR
from .readout import LMSReadout, RidgeAccumulator, RLSReadout
from .reservoir import LeakyReservoir

__all__ = ["ESN", "NVAR", "DeepResESN", "DeepResidualReservoir", "LMSReadout", "LeakyReservoir",
           "RLSReadout", "ResRMN", "ResidualMemoryReservoir", "RidgeAccumulator"]
