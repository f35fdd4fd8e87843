"""Forecasting estimators with ``fit(y, X=None)`` and ``predict(n_steps, context=None, X=None)``.

All share :class:`~tsrnn.forecasting.base.BaseForecaster` (validation, scaling, device,
seeding, save/load) and, when trained by gradient descent,
:class:`~tsrnn.forecasting.base.NeuralForecaster` (the training loop).
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
