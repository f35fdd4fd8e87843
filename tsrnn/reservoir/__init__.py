"""Reservoir computing: echo state networks and their readouts.

- :class:`ESN`: leaky tanh reservoir with a ridge readout, closed-loop forecasting
- :class:`NVAR`: next-generation reservoir computing (delays and their monomials)
- :class:`DeepResESN`, :class:`ResRMN`: residual reservoirs (deep residual ESN, residual
  reservoir memory network) as forecasters; their reservoirs :class:`DeepResidualReservoir`
  and :class:`ResidualMemoryReservoir` are torch modules (:mod:`~tsrnn.reservoir.deep`)
- building blocks: :class:`LeakyReservoir` (torch module), :mod:`~tsrnn.reservoir.matrices`
  (weights with an exact spectral radius), :mod:`~tsrnn.reservoir.readout` (streaming
  ridge regression in float64 :class:`RidgeAccumulator`, :class:`RLSReadout`,
  :class:`LMSReadout`)

An echo state network of 300 units fitted to 50 time units of Lorenz-63 forecasts the next
ten in closed loop; its forecast stays valid for about 7.7 Lyapunov times here (a chaotic
forecast, so the last digits depend on round-off: the check below is coarse):

>>> from tsrnn.metrics import valid_prediction_time
>>> from tsrnn.reservoir import ESN
>>> from tsrnn.systems import Lorenz63
>>> y = Lorenz63().simulate(6000, transient=500, seed=0)
>>> model = ESN(n_units=300, random_state=0).fit(y[:5000])
>>> forecast = model.predict(1000)
>>> forecast.shape
(1000, 3)
>>> valid_prediction_time(y[5000:], forecast, dt=0.01, lyapunov_exponent=0.9056) > 3
True
"""

from .deep import DeepResESN, DeepResidualReservoir, ResidualMemoryReservoir, ResRMN
from .esn import ESN
from .nvar import NVAR
from .readout import LMSReadout, RidgeAccumulator, RLSReadout
from .reservoir import LeakyReservoir

__all__ = ["ESN", "NVAR", "DeepResESN", "DeepResidualReservoir", "LMSReadout", "LeakyReservoir",
           "RLSReadout", "ResRMN", "ResidualMemoryReservoir", "RidgeAccumulator"]
