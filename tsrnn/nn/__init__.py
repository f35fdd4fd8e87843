"""Plain torch modules, batch-first (B, L, C), usable in any training loop."""

from .cfc import CfC
from .ltc import LTC
from .plrnn import ALRNN, PLRNN, ShallowPLRNN
from .readout import NextStepPredictor

__all__ = [
    "ALRNN",
    "LTC",
    "PLRNN",
    "CfC",
    "NextStepPredictor",
    "ShallowPLRNN",
]
