"""A whole-sequence CfC with a hand-derived backward pass (the fast path of tsrnn.nn.CfC).

Autograd through a Python loop of CfC steps records some twenty small operations per step
and replays them one by one, and each parameter collects L small gradient products. Here
the forward loop keeps, per step, only the backbone activation T and the head
pre-activations z; the backward loop runs the adjoint step by step (two matrix products and
a few elementwise operations), and the weight gradients are formed at the end by one
matrix product over all B * L rows.

Forward (backbone of one layer with activation act(p) = alpha tanh(beta p); ``alpha, beta``
= 1.7159, 0.666 for LeCun's tanh, 1, 1 for tanh; constants folded into the weights):

    T_t = tanh(beta (d_t + W_h h_{t-1})),  d_t = W_u u_t + b (given for all steps)
    z_t = alpha W_z T_t + b_z,             h_t = combine(z_t, dt_t)

Without a backbone, z_t = d_t + W_h h_{t-1}. ``combine`` is the closed-form update of the
mode (see :mod:`tsrnn.nn.cfc`). Backward, with g the gradient at h_t:

    dz = combine'(z_t, dt_t)^T g,   dT = alpha W_z^T dz,   dp = beta (1 - T^2) dT,
    g_{t-1} = W_h^T dp   (W_h^T dz without a backbone)

:func:`cfc_sequence` checks the result against autograd through the plain module in the
tests (``test_cfc_fast_path_gradients_equal_autograd``).
"""

from __future__ import annotations

import torch


def _combine(z, dt, mode, hidden, w_tau, A, out, act):
    """h' from z, written to ``out``; the gate modes keep [ff1, ff2, gate] in ``act``."""
    if mode == "pure":
        rate = w_tau + z.abs()
        return torch.sub(A, A * torch.exp(-dt * rate) * z, out=out)
    ff = torch.tanh(z[:, : 2 * hidden], out=act[:, : 2 * hidden])
    ff1, ff2 = ff[:, :hidden], ff[:, hidden:]
    gate = torch.sigmoid(torch.addcmul(z[:, 3 * hidden:], z[:, 2 * hidden: 3 * hidden], dt),
                         out=act[:, 2 * hidden:])
    if mode == "default":
        return torch.addcmul(ff1, gate, ff2 - ff1, out=out)
    return torch.addcmul(ff1, gate, ff2, out=out)


def _combine_backward(g, z, dt, mode, hidden, w_tau, A, out, act, want_dt):
    """dL/dz (B, heads * H) written to ``out``; dL/ddt (B, 1) when ``want_dt``; for pure,
    the dL/dw_tau and dL/dA terms (B, H). ``act`` holds the forward's [ff1, ff2, gate]."""
    if mode == "pure":
        rate = w_tau + z.abs()
        decay = torch.exp(-dt * rate)
        g_decay = -g * A * z
        g_rate = -g_decay * dt * decay
        torch.addcmul(-g * A * decay, g_rate, torch.sign(z), out=out)
        g_dt = (g_decay * (-rate * decay)).sum(-1, keepdim=True) if want_dt else None
        return g_dt, g_rate, g * (1 - decay * z)
    ff, gate = act[:, : 2 * hidden], act[:, 2 * hidden:]
    ff1, ff2 = ff[:, :hidden], ff[:, hidden:]
    g_ff = out[:, : 2 * hidden]  # first dL/dff, then overwritten by dL/dz of the ff heads
    torch.mul(g, gate, out=g_ff[:, hidden:])
    if mode == "default":
        torch.sub(g, g_ff[:, hidden:], out=g_ff[:, :hidden])
        g_gate = g * (ff2 - ff1)
    else:
        g_ff[:, :hidden] = g
        g_gate = g * ff2
    g_q = torch.ops.aten.sigmoid_backward.grad_input(g_gate, gate,
                                                     grad_input=out[:, 3 * hidden:])
    torch.mul(g_q, dt, out=out[:, 2 * hidden: 3 * hidden])
    torch.ops.aten.tanh_backward.grad_input(g_ff, ff, grad_input=g_ff)
    g_dt = (g_q * z[:, 2 * hidden: 3 * hidden]).sum(-1, keepdim=True) if want_dt else None
    return g_dt, None, None


_NO_DOUBLE_BACKWARD = (
    "the CfC fast path has a hand-written backward pass and no second derivatives; "
    "use CfC(..., fast_path=False) for create_graph=True")


class CfCSequence(torch.autograd.Function):
    """All steps of an unwired CfC with a backbone of 0 or 1 layer (see module docstring).

    Inputs: drive (B, L, U) (or (B, L, heads * H) without backbone); h0 (B, H); dt (B, L, 1);
    W_h (U, H) (or (heads * H, H)); W_z (heads * H, U) and b_z or None without backbone;
    w_tau (H,) and A (H,) for the pure mode (else None); mode; alpha, beta.
    Output: the states (B, L, H).
    """

    @staticmethod
    def forward(ctx, drive, h0, dt, w_h, w_z, b_z, w_tau, A, mode, alpha, beta):
        hidden = h0.shape[-1]
        backbone = w_z is not None
        # Time-major buffers of our own: each step reads and writes one contiguous block,
        # and the matrix products accumulate in place (addmm with out=self copies nothing).
        # Always fresh copies (never .contiguous(), which can return the caller's memory,
        # or for size-1 dimensions an expanded parameter, when the layout already fits).
        batch, steps = drive.shape[:2]
        buffer = drive.new_empty(steps, batch, drive.shape[-1])
        drive = torch.mul(drive.transpose(0, 1), beta if backbone else 1.0, out=buffer)
        dt = dt.transpose(0, 1).contiguous()
        w_h_t = (beta * w_h).T.contiguous() if backbone else w_h.T.contiguous()
        w_z_t = (alpha * w_z).T.contiguous() if backbone else None
        states = h0.new_empty(steps, batch, hidden)
        # With a backbone, drive becomes T (the backbone activations) step by step and z
        # starts as the bias; without one, drive becomes z.
        t_all = drive if backbone else None
        z_all = b_z.repeat(steps, batch, 1) if backbone else drive
        # The gate modes keep ff1, ff2 and the gate for the backward pass.
        act_all = None if mode == "pure" else h0.new_empty(steps, batch, 3 * hidden)
        h = h0
        for t in range(steps):
            if backbone:
                T = torch.addmm(drive[t], h, w_h_t, out=drive[t]).tanh_()
                z = torch.addmm(z_all[t], T, w_z_t, out=z_all[t])
            else:
                z = torch.addmm(drive[t], h, w_h_t, out=drive[t])
            h = _combine(z, dt[t], mode, hidden, w_tau, A, states[t],
                         None if act_all is None else act_all[t])
        ctx.save_for_backward(h0, dt, w_h, w_z, w_tau, A, states, z_all, t_all, act_all)
        ctx.mode, ctx.alpha, ctx.beta = mode, alpha, beta
        return states.transpose(0, 1).contiguous()

    @staticmethod
    def backward(ctx, g_states):
        # Grad mode is on in a backward pass only under create_graph=True.
        if torch.is_grad_enabled():
            raise RuntimeError(_NO_DOUBLE_BACKWARD)
        h0, dt, w_h, w_z, w_tau, A, states, z_all, t_all, act_all = ctx.saved_tensors
        want_dt = ctx.needs_input_grad[2]
        mode, alpha, beta = ctx.mode, ctx.alpha, ctx.beta
        backbone = w_z is not None
        hidden = h0.shape[-1]
        steps, batch = z_all.shape[:2]
        g_states = g_states.transpose(0, 1).contiguous()
        g_z_all = torch.empty_like(z_all)
        g_p_all = torch.empty_like(t_all) if backbone else None
        g_dt = torch.zeros_like(dt)
        g_tau = torch.zeros_like(h0) if mode == "pure" else None
        g_A = torch.zeros_like(h0) if mode == "pure" else None
        w_z_scaled = alpha * w_z if backbone else None
        w_h_scaled = beta * w_h if backbone else w_h
        g = torch.zeros_like(h0)
        for t in reversed(range(steps)):
            g = g + g_states[t]
            g_z = g_z_all[t]
            g_dt_t, g_rate, g_amp = _combine_backward(
                g, z_all[t], dt[t], mode, hidden, w_tau, A, g_z,
                None if act_all is None else act_all[t], want_dt)
            if want_dt:
                g_dt[t] = g_dt_t
            if g_rate is not None:
                g_tau += g_rate
                g_A += g_amp
            if backbone:
                g_p = torch.mm(g_z, w_z_scaled, out=g_p_all[t])
                torch.ops.aten.tanh_backward.grad_input(g_p, t_all[t], grad_input=g_p)
                g = g_p @ w_h_scaled
            else:
                g = g_z @ w_h
        previous = torch.cat([h0[None], states[:-1]]).reshape(-1, hidden)
        if backbone:
            rows_z = g_z_all.reshape(steps * batch, -1)
            g_w_z = alpha * (rows_z.T @ t_all.reshape(steps * batch, -1))
            g_b_z = rows_z.sum(0)
            g_w_h = beta * (g_p_all.reshape(steps * batch, -1).T @ previous)
            g_drive = (beta * g_p_all).transpose(0, 1)
        else:
            g_w_z = g_b_z = None
            g_w_h = g_z_all.reshape(steps * batch, -1).T @ previous
            g_drive = g_z_all.transpose(0, 1)
        g_w_tau = None if g_tau is None else g_tau.sum(0)
        g_A_total = None if g_A is None else g_A.sum(0)
        g_dt = g_dt.transpose(0, 1) if want_dt else None
        return (g_drive, g, g_dt, g_w_h, g_w_z, g_b_z, g_w_tau, g_A_total, None, None, None)
