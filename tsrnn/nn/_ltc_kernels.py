"""The fused semi-implicit LTC solver with a hand-derived, recomputing backward pass.

One input step of the liquid time-constant cell (Hasani et al. 2021) repeats, K times
(``unfolds``), the semi-implicit Euler update of ncps:

    S_bji = sigmoid(sigma_ji * v_bj - (sigma mu)_ji)                 synapse activations
    N_bi  = c_bi v_bi + n_bi + sum_j S_bji (w E)_ji
    D_bi  = c_bi + d_bi + sum_j S_bji w_ji
    v'_bi = N_bi / D_bi

with c = c_m K / dt (per sample and step), n = g_l v_l + the sensory numerator and
d = g_l + the sensory denominator + eps precomputed for all steps. Autograd through this
loop stores a few (B, H, H) tensors per unfold: 14 GB for batch 64, length 256, 64 units in
ncps. :class:`FusedLTC` stores only the states v at the step boundaries (B, L, H); its
backward recomputes each step's unfolds from its starting state and runs the adjoint of the
update by hand. With g = dL/dv':

    gN = g / D,   gD = -g v' / D
    dL/dv (direct) = c gN,  dL/dc = gN v + gD,  dL/dn = gN,  dL/dd = gD
    dL/dS_bji = gN_bi (wE)_ji + gD_bi w_ji,    P = dL/dS * S (1 - S)
    dL/d(wE)_ji += sum_b gN_bi S_bji,   dL/dw_ji += sum_b gD_bi S_bji
    dL/dsigma_ji += sum_b P_bji v_bj,   dL/d(sigma mu)_ji -= sum_b P_bji
    dL/dv_bj += sum_i P_bji sigma_ji

Tensors of shape (H, B, H) are laid out target-major (i, b, j) so that the sums over j and
over b are batched matrix products. :func:`ltc_sequence_autograd` is the plain autograd
reference that the tests compare with.
"""

from __future__ import annotations

import torch


def _activations(v: torch.Tensor, sigma_t: torch.Tensor, smu_t: torch.Tensor) -> torch.Tensor:
    """S laid out (i, b, j) from v (B, H) and sigma^T, (sigma mu)^T (H_i, H_j)."""
    return torch.sigmoid(torch.addcmul(-smu_t[:, None, :], sigma_t[:, None, :], v[None]))


def _update(v, c, n, d, S, weights_t):
    """v' from v and the activations S (i, b, j); weights_t (i, j, 2) holds (wE, w)."""
    sums = torch.bmm(S, weights_t)  # (i, b, 2)
    numerator = c * v + n + sums[..., 0].T
    denominator = c + d + sums[..., 1].T
    return numerator / denominator, denominator


def step_forward(v, c, n, d, sigma_t, smu_t, weights_t, unfolds: int):
    """Run one input step (``unfolds`` updates) from v (B, H); the new state (B, H)."""
    for _ in range(unfolds):
        v, _ = _update(v, c, n, d, _activations(v, sigma_t, smu_t), weights_t)
    return v


def step_backward(g, v_start, c, n, d, sigma_t, smu_t, weights_t, unfolds: int):
    """The adjoint of one input step.

    Returns dL/dv_start (B, H), dL/dc, dL/dn, dL/dd (B, H) and the parameter gradients
    dL/dweights_t (i, j, 2), dL/dsigma_t, dL/dsmu_t (i, j), given g = dL/dv_end (B, H).
    """
    states = [v_start]
    for _ in range(unfolds - 1):
        states.append(_update(states[-1], c, n, d,
                              _activations(states[-1], sigma_t, smu_t), weights_t)[0])
    g_c = torch.zeros_like(g)
    g_n = torch.zeros_like(g)
    g_d = torch.zeros_like(g)
    g_weights = torch.zeros_like(weights_t)
    g_sigma = torch.zeros_like(sigma_t)
    g_smu = torch.zeros_like(smu_t)
    for v in reversed(states):
        S = _activations(v, sigma_t, smu_t)
        v_next, denominator = _update(v, c, n, d, S, weights_t)
        g_num = g / denominator
        g_den = -g * v_next / denominator
        g_c += g_num * v + g_den
        g_n += g_num
        g_d += g_den
        coefficients = torch.stack([g_num.T, g_den.T], dim=-1)  # (i, b, 2)
        g_weights += torch.bmm(S.transpose(1, 2), coefficients)  # sum over b: (i, j, 2)
        g_S = torch.bmm(coefficients, weights_t.transpose(1, 2))  # (i, b, j)
        P = torch.ops.aten.sigmoid_backward(g_S, S)
        g_sigma += (P * v[None]).sum(1)
        g_smu -= P.sum(1)
        g = c * g_num + (P * sigma_t[:, None, :]).sum(0)
    return g, g_c, g_n, g_d, g_weights, g_sigma, g_smu


_NO_DOUBLE_BACKWARD = (
    "the fused LTC solver has a hand-written backward pass and no second derivatives; "
    "use LTC(..., implementation='autograd') for create_graph=True")


class FusedLTC(torch.autograd.Function):
    """All steps of the fused LTC solver; memory O(B L H) instead of O(B L K H^2).

    Inputs: v0 (B, H); c, n, d (B, L, H); w, wE, sigma, smu (H_j, H_i) (source, target);
    unfolds (int); backend "torch" (the step functions above) or "native" (the compiled
    CPU kernel of :mod:`tsrnn.nn._ltc_cpu`). Output: the states after every step (B, L, H).
    """

    @staticmethod
    def forward(ctx, v0, c, n, d, w, we, sigma, smu, unfolds, backend="torch"):
        if backend == "native":
            from . import _ltc_cpu

            tensors = [x.contiguous() for x in (v0, c, n, d, sigma, smu, w, we)]
            states = _ltc_cpu.forward(*tensors, unfolds)
            ctx.save_for_backward(*tensors, states)
        else:
            sigma_t, smu_t = sigma.T.contiguous(), smu.T.contiguous()
            weights_t = torch.stack([we.T, w.T], dim=-1).contiguous()
            steps = c.shape[1]
            states = v0.new_empty(v0.shape[0], steps, v0.shape[1])
            v = v0
            for t in range(steps):
                v = step_forward(v, c[:, t], n[:, t], d[:, t], sigma_t, smu_t, weights_t,
                                 unfolds)
                states[:, t] = v
            ctx.save_for_backward(v0, states, c, n, d, sigma_t, smu_t, weights_t)
        ctx.unfolds, ctx.backend = unfolds, backend
        return states

    @staticmethod
    def backward(ctx, g_states):
        # Grad mode is on in a backward pass only under create_graph=True.
        if torch.is_grad_enabled():
            raise RuntimeError(_NO_DOUBLE_BACKWARD)
        if ctx.backend == "native":
            from . import _ltc_cpu

            *tensors, states = ctx.saved_tensors
            g_v0, g_c, g_n, g_d, g_sig, g_smu, g_w, g_we = _ltc_cpu.backward(
                *tensors, states, g_states.contiguous(), ctx.unfolds)
            return g_v0, g_c, g_n, g_d, g_w, g_we, g_sig, g_smu, None, None
        v0, states, c, n, d, sigma_t, smu_t, weights_t = ctx.saved_tensors
        g_c, g_n, g_d = torch.zeros_like(c), torch.zeros_like(n), torch.zeros_like(d)
        g_weights = torch.zeros_like(weights_t)
        g_sigma, g_smu = torch.zeros_like(sigma_t), torch.zeros_like(smu_t)
        g = torch.zeros_like(v0)
        for t in reversed(range(c.shape[1])):
            g = g + g_states[:, t]
            start = v0 if t == 0 else states[:, t - 1]
            g, gc, gn, gd, gw, gs, gm = step_backward(g, start, c[:, t], n[:, t], d[:, t],
                                                      sigma_t, smu_t, weights_t, ctx.unfolds)
            g_c[:, t], g_n[:, t], g_d[:, t] = gc, gn, gd
            g_weights += gw
            g_sigma += gs
            g_smu += gm
        g_we, g_w = g_weights[..., 0].T, g_weights[..., 1].T
        return g, g_c, g_n, g_d, g_w, g_we, g_sigma.T, g_smu.T, None, None


def ltc_sequence_autograd(v0, c, n, d, w, we, sigma, smu, unfolds: int) -> torch.Tensor:
    """The same computation written plainly (source-major), differentiated by autograd.

    The reference for :class:`FusedLTC`, and the path for double backward.
    """
    v, outputs = v0, []
    for t in range(c.shape[1]):
        for _ in range(unfolds):
            S = torch.sigmoid(sigma * v[:, :, None] - smu)  # (b, j, i)
            numerator = c[:, t] * v + n[:, t] + (S * we).sum(1)
            denominator = c[:, t] + d[:, t] + (S * w).sum(1)
            v = numerator / denominator
        outputs.append(v)
    return torch.stack(outputs, dim=1)
