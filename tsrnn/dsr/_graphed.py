"""A whole DSR training step as one CUDA graph.

With the rollouts fused into two Triton kernels (:mod:`tsrnn.ops.pwl_rollout`), what is left
of a training step on a GPU is ~100 small operations (the loss, the batched parameter
gradient, gradient clipping, RAdam), each a few microseconds of launch overhead and far
less of work. Capturing the step once and replaying it per batch (NVIDIA, "CUDA Graphs";
``torch.cuda.graphs``, "whole-network capture") turns those launches into one.

The captured step is the eager one (:meth:`DSREstimator._training_loss` minus the
bookkeeping): teacher-forced rollout, masked MSE (+ L2 penalty), backward, gradient clipping
and the optimizer step, with the batch, the forcing weights and the learning rate in static
device buffers. The optimizer must be capturable with a tensor learning rate
(:func:`capturable_optimizer`). Capture needs warm-up steps; they run on the first batch and
are then undone (parameters copied back, optimizer state zeroed), so training follows the
same sequence of updates as the eager loop, up to round-off.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch
from torch import nn

from .._validation import warn
from .teacher_forcing import IdentityObservation, ReconstructionModel, teacher_forced_run

Tensor = torch.Tensor
# Trainings running as threads (n_init on one GPU) capture and replay graphs in one process.
# torch.cuda.graph synchronises the device and empties the allocator's cache on entry, and
# torch's capture bookkeeping is process-wide, so captures (warm-up included) and replays
# take this lock: the conservative choice, at no measurable cost, since a replay holds it
# only while it enqueues the graph (microseconds).
_GRAPH_LOCK = threading.Lock()


def capturable_optimizer(kind: type[torch.optim.Optimizer], module: nn.Module,
                         learning_rate: float, weight_decay: float) -> torch.optim.Optimizer:
    """``kind`` (Adam, RAdam, AdamW) with its state and learning rate on the device, as graph
    replay needs (a Python-float learning rate would be frozen into the graph)."""
    reference = next(module.parameters())
    rate = torch.tensor(learning_rate, dtype=reference.dtype, device=reference.device)
    return kind(module.parameters(), lr=rate, weight_decay=weight_decay, capturable=True,
                foreach=True)


def graph_supported(module: ReconstructionModel, device: torch.device) -> bool:
    """Whether the step can be captured: a CUDA device, a map the Triton kernels run, and the
    identity observation (the affine one's pseudo-inverse is not capturable)."""
    from ..ops import pwl_rollout

    if device.type != "cuda" or not isinstance(module.observation, IdentityObservation):
        return False
    if pwl_rollout.resolve_backend("auto", module.latent.A) != "triton":
        return False
    return pwl_rollout.pack(module.latent) is not None


class GraphedStep:
    """One training step on a fixed batch shape, captured at the first call.

    Parameters
    ----------
    module : ReconstructionModel (on CUDA)
    optimizer : from :func:`capturable_optimizer`
    penalty : callable module -> scalar tensor or None (the L2 regularisation, if any)
    gradient_clip : float or None
    example : (B, L + 1, N) the first batch (its shape is the graph's)
    """

    def __init__(self, module: ReconstructionModel, optimizer: torch.optim.Optimizer,
                 penalty: Callable[[nn.Module], Tensor | None], gradient_clip: float | None,
                 example: Tensor):
        self.module, self.optimizer = module, optimizer
        self.penalty, self.gradient_clip = penalty, gradient_clip
        self.y = example.detach().clone()
        self.weights = example.new_zeros(example.shape[1] - 1)
        self._last_weights: list[float] | None = None
        self.graph: torch.cuda.CUDAGraph | None = None
        self.eager = False  # set when capture fails: the same step, run eagerly
        self.loss: Tensor | None = None
        self.fed: Tensor | None = None

    def _body(self) -> tuple[Tensor, Tensor]:
        run = teacher_forced_run(self.module, self.y, self.weights, has_missing=False)
        loss = run.loss()
        penalty = self.penalty(self.module)
        if penalty is not None:
            loss = loss + penalty
        loss.backward()
        parameters = list(self.module.parameters())
        if self.gradient_clip is not None:
            torch.nn.utils.clip_grad_norm_(parameters, self.gradient_clip, foreach=True)
        self.optimizer.step()
        return loss.detach(), run.inputs

    def _capture(self) -> None:
        with _GRAPH_LOCK:
            self._capture_alone()

    def _capture_alone(self) -> None:
        parameters = list(self.module.parameters())
        saved = [p.detach().clone() for p in parameters]
        # Warm up on a side stream (lazy initialisation, Triton compilation and the optimizer
        # state must not happen during capture), then undo the warm-up's updates.
        try:
            side = torch.cuda.Stream(device=self.y.device)
            side.wait_stream(torch.cuda.current_stream(self.y.device))
            with torch.cuda.stream(side):
                for _ in range(2):
                    self.optimizer.zero_grad(set_to_none=True)
                    self._body()
            torch.cuda.current_stream(self.y.device).wait_stream(side)
            self._reset(parameters, saved)
            self.optimizer.zero_grad(set_to_none=True)
            self.graph = torch.cuda.CUDAGraph()
            # A capture stream of its own and thread-local capture mode: trainings running
            # as threads (n_init on one GPU) go on launching work while this one captures.
            with torch.cuda.graph(self.graph, stream=torch.cuda.Stream(self.y.device),
                                  capture_error_mode="thread_local"):
                self.loss, self.fed = self._body()
        except RuntimeError:
            torch.cuda.synchronize(self.y.device)
            self._reset(parameters, saved)
            self.optimizer.zero_grad(set_to_none=True)
            raise

    def _reset(self, parameters: list[Tensor], saved: list[Tensor]) -> None:
        with torch.no_grad():
            for p, value in zip(parameters, saved):
                p.copy_(value)
            for p, state in self.optimizer.state.items():
                for key, value in state.items():
                    if key == "step" and value.dtype != p.dtype:
                        # A capturable optimizer counts steps in float32, so its bias
                        # corrections (beta ** step) carry float32 error; float64 training
                        # counts in float64, as the eager optimizer's Python floats do.
                        state[key] = torch.zeros((), dtype=p.dtype, device=p.device)
                    elif isinstance(value, Tensor):
                        value.zero_()

    def __call__(self, y: Tensor, weights: list[float]) -> Tensor:
        """Train on the batch ``y`` with forcing weights w (L floats); returns the loss (a
        device scalar; the forced states are in ``self.fed`` until the next call). ``y`` may
        be a page-locked host tensor: it is then copied without waiting."""
        self.y.copy_(y, non_blocking=True)
        if weights != self._last_weights:  # constant for sparse forcing, GTF's alpha drifts
            self.weights.copy_(torch.tensor(weights, dtype=self.weights.dtype))
            self._last_weights = list(weights)
        if self.graph is None and not self.eager:
            try:
                self._capture()
            except RuntimeError as error:
                # _capture restored the parameters and reset the optimizer state, so the
                # eager step below continues exactly where training stands.
                self.eager, self.graph = True, None
                warn(f"capturing the training step as a CUDA graph failed ({error}); "
                     "training continues with eager steps", RuntimeWarning)
        if self.eager:
            self.optimizer.zero_grad(set_to_none=True)
            self.loss, self.fed = self._body()
        else:
            with _GRAPH_LOCK:
                self.graph.replay()
        return self.loss
