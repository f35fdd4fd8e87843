"""tsrnn.ops: kernels (linear scans) with a pure-torch reference beside every fast path."""

from .scan import linear_scan
from .scan2d import scan2d

__all__ = ["linear_scan", "scan2d"]
