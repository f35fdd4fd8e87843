"""Plain torch modules, batch-first (B, L, C), usable in any training loop."""

from .cfc import CfC
from .chimera import Chimera
from .hippo import HiPPORNN
from .lem import LEM
from .lssl import LSSL
from .ltc import LTC
from .plrnn import ALRNN, PLRNN, ShallowPLRNN
from .readout import NextStepPredictor
from .warp import WARP

__all__ = [
    "ALRNN",
    "LEM",
    "LSSL",
    "LTC",
    "PLRNN",
    "WARP",
    "CfC",
    "Chimera",
    "HiPPORNN",
    "NextStepPredictor",
    "ShallowPLRNN",
]
