"""CUDA graphs for loops of small steps.

Simulating a batch of a low-dimensional system launches dozens of tiny kernels per step, so
on a GPU the time goes to launching them, not to arithmetic. Capturing a fixed number of
steps as one CUDA graph and replaying it removes that overhead (NVIDIA, "CUDA Graphs",
CUDA C++ Programming Guide; ``torch.cuda.graphs``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class GraphedLoop:
    """``n_inner`` applications of ``step`` captured once and replayed.

    Parameters
    ----------
    step : callable tensor -> tensor
        One step; must be capturable (static shapes, no host synchronisation, no
        data-dependent Python control flow).
    example : tensor (B, ...)
        A state with the shape, dtype and device of those to come.
    n_inner : int
        Steps per replay.
    record : bool
        Keep every intermediate state in ``outputs`` (B, n_inner, ...).
    """

    def __init__(self, step: Callable[[torch.Tensor], torch.Tensor], example: torch.Tensor,
                 n_inner: int, record: bool = True):
        self.step, self.n_inner, self.record = step, n_inner, record
        self.state = example.detach().clone()
        self.outputs = (example.new_empty((example.shape[0], n_inner, *example.shape[1:]))
                        if record else None)
        # Warm up on a side stream (allocations and lazy initialisation must not be captured).
        side = torch.cuda.Stream(device=example.device)
        side.wait_stream(torch.cuda.current_stream(example.device))
        with torch.cuda.stream(side):
            self._body()
        torch.cuda.current_stream(example.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._body()

    def _body(self) -> None:
        value = self.state
        for j in range(self.n_inner):
            value = self.step(value)
            if self.record:
                self.outputs[:, j] = value
        self.state.copy_(value)

    def __call__(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Advance ``state`` by ``n_inner`` steps; returns the final state and the record
        (both are the loop's own buffers: copy them before the next call)."""
        self.state.copy_(state)
        self.graph.replay()
        return self.state, self.outputs


def use_graphs(device: torch.device, n_steps: int, n_inner: int) -> bool:
    """Whether capturing is worth it: a CUDA device and several replays' worth of steps."""
    return device.type == "cuda" and n_steps >= 4 * n_inner
