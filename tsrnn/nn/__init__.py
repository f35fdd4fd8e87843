"""Plain torch modules, batch-first (B, L, C), usable in any training loop."""

from .readout import NextStepPredictor

__all__ = ["NextStepPredictor"]
