"""Sequential references for the scans in :mod:`tsrnn.ops`.

Plain Python loops over time built from differentiable torch operations, so that autograd
gives their gradients with no hand-written backward. They are slow and exist to check the
fast paths against (tests run them in float64 or complex128).

    forward  (reverse=False):  h_t = a_t * h_{t-1} + b_t,   t = 0, ..., L-1,   h_{-1} = h0
    reverse  (reverse=True):   h_t = a_t * h_{t+1} + b_t,   t = L-1, ..., 0,   h_L    = h0
"""

from __future__ import annotations

import torch


def linear_scan_reference(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None,
                          reverse: bool = False) -> torch.Tensor:
    """The linear recurrence one step at a time (no checks, no fused backward).

    Shapes: ``a``, ``b`` (B, L, D) (``a`` may broadcast against ``b``); ``h0`` (B, D) or None
    (zeros). Returns h (B, L, D) in the promoted dtype of the inputs.
    """
    a = a.expand_as(b) if a.shape != b.shape else a
    state = torch.zeros_like(b[:, 0]) if h0 is None else h0
    steps = range(b.shape[1] - 1, -1, -1) if reverse else range(b.shape[1])
    outputs: list[torch.Tensor] = [None] * b.shape[1]  # type: ignore[list-item]
    for t in steps:
        state = a[:, t] * state + b[:, t]
        outputs[t] = state
    return torch.stack(outputs, dim=1)
