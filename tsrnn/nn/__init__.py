"""Plain torch modules, batch-first (B, L, C), usable in any training loop."""

from .plrnn import ALRNN, PLRNN, ShallowPLRNN
from .readout import NextStepPredictor

__all__ = ["ALRNN", "PLRNN", "NextStepPredictor", "ShallowPLRNN"]
