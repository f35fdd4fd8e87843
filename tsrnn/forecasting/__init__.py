"""Forecasting estimators with ``fit(y, X=None)`` and ``predict(n_steps, context=None, X=None)``.

All share :class:`~tsrnn.forecasting.base.BaseForecaster` (validation, scaling, device,
seeding, save/load) and, when trained by gradient descent,
:class:`~tsrnn.forecasting.base.NeuralForecaster` (the training loop).

- :class:`GRUForecaster`, :class:`LSTMForecaster`: the baselines;
- :class:`CfCForecaster`, :class:`LTCForecaster` (continuous time) and :class:`LEMForecaster`,
  :class:`HiPPOForecaster`, :class:`LSSLForecaster` (long memory) also take irregular
  timestamps, ``fit(y, X, times=...)`` and ``predict(n_steps, context, X, times=...)``;
- :class:`ChimeraForecaster` (2-D state space, direct multi-horizon head),
  :class:`WARPForecaster` (weight-space linear RNN);
- :func:`closed_loop_scorer`: closed-loop scoring for scikit-learn's ``GridSearchCV`` with
  ``TimeSeriesSplit`` (:mod:`tsrnn.forecasting.model_selection`).

The reservoirs (:mod:`tsrnn.reservoir`) and the reconstruction models (:mod:`tsrnn.dsr`)
are estimators of the same kind.
"""

from .base import BaseForecaster, NeuralForecaster
from .chimera import ChimeraForecaster
from .continuous import CfCForecaster, LTCForecaster
from .memory import HiPPOForecaster, LEMForecaster, LSSLForecaster
from .model_selection import closed_loop_scorer
from .rnn import GRUForecaster, LSTMForecaster
from .warp import WARPForecaster

__all__ = [
    "BaseForecaster",
    "CfCForecaster",
    "ChimeraForecaster",
    "GRUForecaster",
    "HiPPOForecaster",
    "LEMForecaster",
    "LSSLForecaster",
    "LSTMForecaster",
    "LTCForecaster",
    "NeuralForecaster",
    "WARPForecaster",
    "closed_loop_scorer",
]
