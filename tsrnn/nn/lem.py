"""Long Expressive Memory (LEM).

Rusch, Mishra, Erichson, Mahoney, "Long expressive memory for sequence modeling", ICLR 2022.
A multiscale discretisation of a system of ODEs; with inputs u_n and states y_n, z_n:

    Δt̄_n = Δt · σ(W₁ y_{n-1} + V₁ u_n + b₁)
    Δt_n  = Δt · σ(W₂ y_{n-1} + V₂ u_n + b₂)
    z_n = (1 - Δt_n) ⊙ z_{n-1} + Δt_n ⊙ tanh(W_z y_{n-1} + V_z u_n + b_z)
    y_n = (1 - Δt̄_n) ⊙ y_{n-1} + Δt̄_n ⊙ tanh(W_y z_n + V_y u_n + b_y)     (the new z_n)

Every cell parameter starts as U(-1/√H, 1/√H), as in the authors' code. Δt ∈ (0, 1], as in
the paper, keeps each update a convex combination. For irregular sampling, a per-sample,
per-step gap ``dt`` (in units of Δt) turns each gate g = Δt σ(·) into

    1 - (1 - g)^dt,

the decay of dt steps of the same gate towards the same candidate: g itself for dt = 1,
dt · g to first order for short gaps (the ODE's step Δt · dt), and still below 1 for any gap.
(Multiplying g by dt instead, the first-order form, leaves the convex combination once
dt · g > 1 and diverges past 2: gaps of 5 median steps sent forecasts to 1e15.)

Two implementations compute the same recurrence:

- ``"loop"``: torch operations step by step, differentiated by autograd (any device);
- ``"fused"`` (CPU): the whole sequence in numpy with a hand-written backward pass
  (backpropagation through time of the equations above). Small recurrent cells are dominated
  by per-operation overhead, which is several times lower in numpy than in torch, and the
  backward pass computes every term that does not depend on the recurrence for all steps at
  once. On the FitzHugh–Nagumo task (H = 16, L = 1000, batch 32) a training step takes
  about 2.5 times less CPU time than autograd through the loop. Its gradients equal
  autograd's (tests/nn/test_lem.py, float64 to 1e-12).

``"auto"`` (the default) takes ``"fused"`` on the CPU and ``"loop"`` elsewhere.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .._validation import check_in_range, check_option, check_positive
from ._sampling import check_sequence, check_state, check_time_steps

IMPLEMENTATIONS = ("auto", "loop", "fused")


class LEM(nn.Module):
    """LEM layer over a sequence (see the module docstring for the equations).

    Parameters
    ----------
    input_size : int
        Channels of u_n.
    hidden_size : int
        H, the size of each of y_n and z_n.
    dt : float in (0, 1]
        Δt, the step of the discretised ODE (the authors use 1 on FitzHugh–Nagumo).
    implementation : {"auto", "loop", "fused"}
        How the recurrence is computed (module docstring); all give the same values.
    generator : torch.Generator, optional
        For a reproducible initialisation.

    Parameters of the module: ``input_weight`` (4H, C) = [V₁; V₂; V_z; V_y],
    ``input_bias`` (4H), ``recurrent_weight`` (3H, H) = [W₁; W₂; W_z], ``recurrent_bias``
    (3H), ``state_weight`` W_y (H, H) and ``state_bias`` (H); b = input + recurrent bias.

    Shapes
    ------
    x : (B, L, input_size); dt : (B, L) or (B, L, 1), the elapsed time before each step in
    units of Δt (None: every step is Δt; the module docstring says how a gap enters).
    h0 : a tuple (y_0, z_0) of (B, H) tensors or one (B, 2H) tensor [y_0, z_0] (zeros when
    None).
    Returns the outputs y_1..y_L (B, L, H) and the final state (y_L, z_L).
    """

    def __init__(self, input_size: int, hidden_size: int, dt: float = 1.0,
                 implementation: str = "auto", generator: torch.Generator | None = None):
        super().__init__()
        self.input_size = check_positive(input_size, "input_size", integer=True)
        self.hidden_size = check_positive(hidden_size, "hidden_size", integer=True)
        self.dt = float(check_in_range(dt, "dt", 0.0, 1.0, closed="right"))
        self.implementation = check_option(implementation, "implementation", IMPLEMENTATIONS)
        h, c = self.hidden_size, self.input_size
        self.input_weight = nn.Parameter(torch.empty(4 * h, c))
        self.input_bias = nn.Parameter(torch.empty(4 * h))
        self.recurrent_weight = nn.Parameter(torch.empty(3 * h, h))
        self.recurrent_bias = nn.Parameter(torch.empty(3 * h))
        self.state_weight = nn.Parameter(torch.empty(h, h))
        self.state_bias = nn.Parameter(torch.empty(h))
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.uniform_(-bound, bound, generator=generator)

    def _initial_state(self, h0, batch: int, like: torch.Tensor):
        h = self.hidden_size
        if h0 is None:
            zeros = like.new_zeros(batch, h)
            return zeros, zeros
        if isinstance(h0, tuple | list):
            if len(h0) != 2:
                raise ValueError("h0 must be a tuple (y_0, z_0) or one (B, 2H) tensor")
            y0, z0 = h0
        else:
            if not isinstance(h0, torch.Tensor) or h0.ndim != 2 or h0.shape[1] != 2 * h:
                shape = tuple(h0.shape) if isinstance(h0, torch.Tensor) else type(h0).__name__
                raise ValueError(f"h0 as one tensor must have shape (B, {2 * h}), got "
                                 f"{shape}")
            y0, z0 = h0[:, :h], h0[:, h:]
        for name, value in (("y_0", y0), ("z_0", z0)):
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != (batch, h):
                shape = (tuple(value.shape) if isinstance(value, torch.Tensor)
                         else type(value).__name__)
                raise ValueError(f"{name} must have shape ({batch}, {h}), got {shape}")
            check_state(value, like, f"h0's {name}")
        return y0, z0

    def forward(self, x: torch.Tensor, h0=None, dt: torch.Tensor | None = None):
        check_sequence(x, self.input_size, module=self)
        batch, length, _ = x.shape
        y0, z0 = self._initial_state(h0, batch, x)
        dt = check_time_steps(dt, batch, length, x)
        h = self.hidden_size
        bias = self.input_bias + torch.cat([self.recurrent_bias, self.state_bias])
        # Input projections of every step at once: only the recurrent products stay in the loop.
        projected = nn.functional.linear(x, self.input_weight, bias)  # (B, L, 4H)
        numpy_dtype = x.dtype in (torch.float32, torch.float64)
        use_fused = self.implementation == "fused" or (
            self.implementation == "auto" and x.device.type == "cpu" and numpy_dtype)
        if use_fused:
            if x.device.type != "cpu" or not numpy_dtype:
                raise ValueError("implementation='fused' runs on the CPU in float32 or float64 "
                                 f"only (got {x.device.type}, {x.dtype}); use 'loop'")
            outputs, z_last = _FusedLEM.apply(projected, self.recurrent_weight, self.state_weight,
                                              y0, z0, dt, self.dt)
            return outputs, (outputs[:, -1], z_last)
        steps_rec = projected[..., : 3 * h].unbind(1)  # unbind: one backward node, not L
        steps_y = projected[..., 3 * h:].unbind(1)
        gaps = None if dt is None else dt.unbind(1)
        weight_t, state_weight_t = self.recurrent_weight.t(), self.state_weight.t()
        y, z = y0, z0
        outputs = []
        for t in range(length):
            pre = torch.addmm(steps_rec[t], y, weight_t)
            gates = self.dt * torch.sigmoid(pre[:, : 2 * h])
            if gaps is not None:
                rest = (1.0 - gates).clamp_min(torch.finfo(gates.dtype).tiny)
                gates = 1.0 - rest ** gaps[t][:, None]
            z = torch.lerp(z, torch.tanh(pre[:, 2 * h:]), gates[:, h:])
            y = torch.lerp(y, torch.tanh(torch.addmm(steps_y[t], z, state_weight_t)),
                           gates[:, :h])
            outputs.append(y)
        return torch.stack(outputs, 1), (y, z)


class _FusedLEM(torch.autograd.Function):
    """The LEM recurrence over a whole sequence, forward and backward in numpy (CPU).

    Inputs: projected (B, L, 4H) = V u_n + b (columns: Δt̄, Δt, z, y), recurrent weight
    (3H, H), state weight W_y (H, H), y_0, z_0 (B, H), the gaps dt (B, L) or None, and the
    constant Δt. Outputs: y_1..y_L (B, L, H) and z_L (B, H).

    Written for few numpy calls per step, all into preallocated buffers: σ(a) is computed
    as (1 + tanh(a/2)) / 2 so that one tanh call covers both gates and the z candidate.
    """

    @staticmethod
    def forward(ctx, projected, weight, state_weight, y0, z0, gaps, dt_constant):
        dtype = projected.dtype
        p = projected.detach().numpy().transpose(1, 0, 2)  # time-major (L, B, 4H)
        length, batch, four_h = p.shape
        h = four_h // 4
        # Halve the gate pre-activations once: tanh(a/2) then gives the sigmoid.
        p_rec = p[:, :, : 3 * h].copy()
        p_rec[:, :, : 2 * h] *= 0.5
        p_y = p[:, :, 3 * h:].copy()
        w_t = weight.detach().numpy().T.copy()
        w_t[:, : 2 * h] *= 0.5
        wy_t = state_weight.detach().numpy().T.copy()
        half_c = np.full((length, 1, 1), 0.5 * dt_constant, dtype=p.dtype)
        exponents = (None if gaps is None
                     else gaps.detach().numpy().T[:, :, None].astype(p.dtype))  # (L, B, 1)
        rests = None if gaps is None else np.empty((length, batch, 2 * h), dtype=p.dtype)
        tiny = np.finfo(p.dtype).tiny
        ys = np.empty((length + 1, batch, h), dtype=p.dtype)
        zs = np.empty((length + 1, batch, h), dtype=p.dtype)
        tanhs = np.empty((length, batch, 3 * h), dtype=p.dtype)  # tanh(a/2) gates, z cand.
        steps = np.empty((length, batch, 2 * h), dtype=p.dtype)  # Δt̄_n, Δt_n
        cand_y = np.empty((length, batch, h), dtype=p.dtype)
        pre = np.empty((batch, 3 * h), dtype=p.dtype)
        q = np.empty((batch, h), dtype=p.dtype)
        work = np.empty((batch, h), dtype=p.dtype)
        ys[0] = y0.detach().numpy()
        zs[0] = z0.detach().numpy()
        for t in range(length):
            np.matmul(ys[t], w_t, out=pre)
            pre += p_rec[t]
            np.tanh(pre, out=tanhs[t])
            step = steps[t]
            np.add(tanhs[t, :, : 2 * h], 1.0, out=step)
            step *= half_c[t]  # g = Δt σ
            if exponents is not None:  # 1 - (1 - g)^dt, 1 - g kept for the backward pass
                np.subtract(1.0, step, out=rests[t])
                np.maximum(rests[t], tiny, out=rests[t])
                np.power(rests[t], exponents[t], out=step)
                np.subtract(1.0, step, out=step)
            np.subtract(tanhs[t, :, 2 * h:], zs[t], out=work)
            work *= step[:, h:]
            np.add(zs[t], work, out=zs[t + 1])
            np.matmul(zs[t + 1], wy_t, out=q)
            q += p_y[t]
            np.tanh(q, out=cand_y[t])
            np.subtract(cand_y[t], ys[t], out=work)
            work *= step[:, :h]
            np.add(ys[t], work, out=ys[t + 1])
        ctx.save_for_backward(weight, state_weight)
        ctx.arrays = (ys, zs, tanhs, steps, cand_y, half_c, exponents, rests)
        outputs = torch.from_numpy(ys[1:].transpose(1, 0, 2).copy()).to(dtype)
        return outputs, torch.from_numpy(zs[-1].copy()).to(dtype)

    @staticmethod
    def backward(ctx, grad_outputs, grad_z_last):
        weight, state_weight = ctx.saved_tensors
        ys, zs, tanhs, steps, cand_y, half_c, exponents, rests = ctx.arrays
        w = weight.detach().numpy()
        wy = state_weight.detach().numpy()
        length, batch, h = cand_y.shape
        dtype = ys.dtype
        g_out = (np.zeros((length, batch, h), dtype=dtype) if grad_outputs is None else
                 grad_outputs.numpy().transpose(1, 0, 2))
        gz = (np.zeros((batch, h), dtype=dtype) if grad_z_last is None else
              grad_z_last.numpy().astype(dtype, copy=True))
        gy = np.zeros((batch, h), dtype=dtype)
        # Everything that does not depend on the backward recurrence, for all steps at once:
        # y_t = y_{t-1} + Δt̄ (c_y - y_{t-1}),  z_t = z_{t-1} + Δt (c_z - z_{t-1}),
        # σ'(a) = (1 - tanh²(a/2)) / 4 for the gates, tanh' = 1 - tanh².
        step_y, step_z = steps[:, :, :h], steps[:, :, h:]
        diff = np.concatenate([cand_y - ys[:-1], tanhs[:, :, 2 * h:] - zs[:-1]], axis=2)
        keep_y, keep_z = 1.0 - step_y, 1.0 - step_z
        slope_y = step_y * (1.0 - cand_y * cand_y)
        slope_z = step_z * (1.0 - tanhs[:, :, 2 * h:] ** 2)
        slope_gates = (0.5 * half_c) * (1.0 - tanhs[:, :, : 2 * h] ** 2)  # ∂g/∂a
        if exponents is not None:  # step = 1 - (1 - g)^dt: ∂step/∂g = dt (1 - step) / (1 - g)
            slope_gates *= exponents * (1.0 - steps) / rests
        d_steps = np.empty((length, batch, 2 * h), dtype=dtype)  # ∂L/∂(Δt̄_n, Δt_n)
        d_rec = np.empty((length, batch, 3 * h), dtype=dtype)  # ∂L/∂ pre-activations
        d_y = np.empty((length, batch, h), dtype=dtype)
        work = np.empty((batch, h), dtype=dtype)
        for t in range(length - 1, -1, -1):
            gy += g_out[t]
            np.multiply(gy, slope_y[t], out=d_y[t])
            d_step = d_steps[t]
            np.multiply(gy, diff[t, :, :h], out=d_step[:, :h])
            gy *= keep_y[t]
            np.matmul(d_y[t], wy, out=work)
            gz += work
            np.multiply(gz, diff[t, :, h:], out=d_step[:, h:])
            d = d_rec[t]
            np.multiply(gz, slope_z[t], out=d[:, 2 * h:])
            gz *= keep_z[t]
            np.multiply(d_step, slope_gates[t], out=d[:, : 2 * h])
            np.matmul(d, w, out=work)
            gy += work
        # Weight gradients as two large products instead of L small ones.
        d_weight = d_rec.reshape(-1, 3 * h).T @ ys[:-1].reshape(-1, h)
        d_state_weight = d_y.reshape(-1, h).T @ zs[1:].reshape(-1, h)
        d_gaps = None
        if exponents is not None:  # ∂step/∂dt = -(1 - g)^dt log(1 - g)
            d_gaps = -(d_steps * (1.0 - steps) * np.log(rests)).sum(2)

        def tensor(array):
            return torch.from_numpy(np.ascontiguousarray(array)).to(weight.dtype)

        d_proj = np.concatenate([d_rec, d_y], axis=2).transpose(1, 0, 2)
        return (tensor(d_proj), tensor(d_weight), tensor(d_state_weight), tensor(gy),
                tensor(gz), None if d_gaps is None else tensor(d_gaps.T), None)
