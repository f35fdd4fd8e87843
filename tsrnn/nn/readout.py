"""A recurrent core with a linear readout that predicts the next observation.

The glue between any sequence module of :mod:`tsrnn.nn` (or torch's GRU/LSTM) and the
forecasting estimators: the core reads [y_t, x_{t+1}] and the readout maps its output to
y_{t+1}, optionally as an increment y_{t+1} = y_t + W o_t + c (``residual``), which suits
series sampled from smooth dynamics.
"""

from __future__ import annotations

import torch
from torch import nn

from .._validation import check_bool


class NextStepPredictor(nn.Module):
    """Predict y_{t+1} from y_{<=t} (and exogenous x_{<=t+1}) with a recurrent core.

    Parameters
    ----------
    core : nn.Module
        Batch-first sequence module returning ``(outputs (B, L, H), state)`` from
        ``(inputs (B, L, C), state)``, e.g. ``nn.GRU(..., batch_first=True)``.
    n_features : int
        Dimension d of the observations.
    core_output_size : int
        H, the width of the core's outputs.
    residual : bool
        Predict the increment y_{t+1} - y_t instead of y_{t+1}.

    Shapes
    ------
    y : (B, L, d); x : (B, L, p) or None (the exogenous input of the predicted step).
    Returns the predictions (B, L, d) and the core's final state.
    """

    def __init__(self, core: nn.Module, n_features: int, core_output_size: int,
                 residual: bool = True):
        super().__init__()
        self.core = core
        self.readout = nn.Linear(core_output_size, n_features)
        self.residual = check_bool(residual, "residual")

    def forward(self, y: torch.Tensor, x: torch.Tensor | None = None, state=None):
        inputs = y if x is None else torch.cat([y, x], dim=-1)
        outputs, state = self.core(inputs, state)
        prediction = self.readout(outputs)
        return (y + prediction if self.residual else prediction), state

    @torch.no_grad()
    def rollout(self, context_y: torch.Tensor, context_x: torch.Tensor | None,
                future_x: torch.Tensor | None, n_steps: int) -> torch.Tensor:
        """Closed-loop forecast of ``n_steps`` after a context (B, T_c, d).

        ``context_x`` (B, T_c, p) and ``future_x`` (B, n_steps, p) follow the convention of
        :class:`NextStepPredictor`: the step that predicts y_{t+1} reads x_{t+1}.
        """
        if context_x is not None:
            exogenous = torch.cat([context_x, future_x], dim=1)[:, 1:]
        else:
            exogenous = None
        steps = context_y.shape[1]
        prediction, state = self(context_y, None if exogenous is None else
                                 exogenous[:, :steps], None)
        current = prediction[:, -1:]
        outputs = [current]
        for i in range(1, n_steps):
            if not bool(torch.isfinite(current).all()):
                # The forecast left the finite range (predict warns at which step): nothing
                # after it is defined, and the cells refuse non-finite inputs.
                outputs.append(torch.full_like(current, float("nan")).expand(-1, n_steps - i, -1))
                break
            x = None if exogenous is None else exogenous[:, steps + i - 1: steps + i]
            current, state = self(current, x, state)
            outputs.append(current)
        return torch.cat(outputs, dim=1)
