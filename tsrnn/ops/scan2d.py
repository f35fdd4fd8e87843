"""Two-dimensional linear scan over (variate, time): the recurrence of Chimera's 2-D SSM.

Behrouz, Santacatterina, Zabih, "Chimera: Effectively Modeling Multivariate Time Series with
2-Dimensional State Space Models", NeurIPS 2024 (arXiv 2406.04320). With diagonal (here:
elementwise) transition blocks, the discrete Roesser-type 2-D SSM on the grid of variates v
and time steps t reads

    h1[v, t] = a1[v, t] * h1[v, t-1] + a2[v, t] * h2[v, t-1] + b1[v, t]     (along time)
    h2[v, t] = a3[v, t] * h1[v-1, t] + a4[v, t] * h2[v-1, t] + b2[v, t]     (along variates)

where b1 = B̄1 x and b2 = B̄2 x are the input terms already multiplied out. Boundaries:
h1[v, -1], h2[v, -1] are the initial states ``h0`` (zeros by default), h1[-1, t] and
h2[-1, t] are zero (the first variate has no predecessor).

Three exact ways to evaluate it (``METHODS``):

``"sequential"``
    The reference: a double loop over t and v, one cell at a time. Slow; use it in float64
    to check the others.
``"sweep"`` (default)
    For fixed v, the h2 row needs only row v-1 (h2[v, :] = a3 h1[v-1, :] + a4 h2[v-1, :] + b2,
    elementwise over all t at once), and given h2[v, :], the h1 row is a 1-D linear scan over
    time, h1[v, t] = a1 h1[v, t-1] + (a2 h2[v, t-1] + b1). So V steps, each one elementwise
    update and one time scan (:func:`tsrnn.ops.linear_scan` when available). Exact: it
    only reorders the same additions, so it equals the reference to round-off. Best when
    the number of variates V is small against the length T, the usual case.
``"wavefront"``
    Every cell on the anti-diagonal v + t = s depends only on cells of the diagonal s - 1,
    so V + T - 1 fully elementwise steps. Good when V and T are comparable.

The paper trains with its own "2-D parallel selective scan" (the recurrence recast as a 2-D
prefix sum); that kernel is not reproduced here. "sweep" and "wavefront" are exact
reorderings of the same recurrence, tested against "sequential" to float64 round-off.

All three are differentiable in every coefficient and in ``h0`` (autograd through the
steps; the time scans of ``"sweep"`` carry their own backward).

Shapes: every coefficient tensor is (B, V, T, *F) (F any trailing feature dimensions, e.g.
channels and states, broadcast-free: all the same shape); ``h0`` is a pair (h1_init,
h2_init) of (B, V, *F) tensors or None. Returns (h1, h2), each (B, V, T, *F).
``reverse_variates=True`` runs the variate recurrence from the last variate to the first
(Chimera's backward module); the tensors keep their order.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Tensor = torch.Tensor


def _time_scan(a: Tensor, b: Tensor, h0: Tensor | None) -> Tensor:
    """h_t = a_t h_{t-1} + b_t over dim 1 of (N, T, D) tensors."""
    try:  # the shared kernel, when it has landed (another module of tsrnn.ops)
        from .scan import linear_scan
    except ImportError:  # pragma: no cover - only before tsrnn.ops.scan exists
        return _loop_scan(a, b, h0)
    # No finiteness check per call: on these small rows its reductions cost ~9% of a
    # Chimera training step (profiled), and a non-finite coefficient still reaches the
    # outputs, which the callers' losses and input checks report.
    return linear_scan(a, b, h0, check_finite=False)


def _loop_scan(a: Tensor, b: Tensor, h0: Tensor | None) -> Tensor:
    """Plain loop over time, the fallback for ``linear_scan``. ``unbind``/``stack`` rather
    than indexing: the backward of an indexed slice allocates a zero tensor of the full
    size for every step, which made the loop quadratic in memory traffic."""
    h = torch.zeros_like(b[:, 0]) if h0 is None else h0
    states = []
    for a_t, b_t in zip(a.unbind(1), b.unbind(1)):
        h = a_t * h + b_t
        states.append(h)
    return torch.stack(states, dim=1)


def _check(coefficients: dict[str, Tensor], h0) -> tuple[int, int, int]:
    shape = coefficients["a1"].shape
    if len(shape) < 3:
        raise ValueError(f"scan2d coefficients must be (B, V, T, *F) tensors, got a1 of shape "
                         f"{tuple(shape)}")
    for name, value in coefficients.items():
        if not isinstance(value, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if value.shape != shape:
            raise ValueError(f"every coefficient must have the shape of a1 {tuple(shape)}; "
                             f"{name} has {tuple(value.shape)}")
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}")
    dtypes = {name: value.dtype for name, value in coefficients.items()}
    if len(set(dtypes.values())) > 1:  # as linear_scan: no silent promotion or rounding
        raise TypeError("scan2d coefficients must share one dtype, got "
                        + ", ".join(f"{name} {dtype}" for name, dtype in dtypes.items()))
    if h0 is not None:
        if not isinstance(h0, tuple | list) or len(h0) != 2:
            raise ValueError("h0 must be a pair (h1_init, h2_init) of (B, V, *F) tensors")
        want = (shape[0], shape[1], *shape[3:])
        for name, value in zip(("h1_init", "h2_init"), h0):
            if tuple(value.shape) != want:
                raise ValueError(f"{name} must have shape {want}, got {tuple(value.shape)}")
    return shape[0], shape[1], shape[2]


def _grid(c: Tensor) -> list[tuple[Tensor, ...]]:
    """c (B, V, T, *F) as cells c[v][t] of shape (B, *F), by unbind (cheap backward)."""
    return [row.unbind(1) for row in c.unbind(1)]


def _sequential(a1, a2, a3, a4, b1, b2, h1_init, h2_init):
    n_var, length = a1.shape[1:3]
    a1, a2, a3, a4, b1, b2 = (_grid(c) for c in (a1, a2, a3, a4, b1, b2))
    h1_init, h2_init = h1_init.unbind(1), h2_init.unbind(1)
    zero = h1_init[0].new_zeros(h1_init[0].shape)
    h1 = [[None] * length for _ in range(n_var)]
    h2 = [[None] * length for _ in range(n_var)]
    for t in range(length):
        for v in range(n_var):
            h1_prev = h1_init[v] if t == 0 else h1[v][t - 1]
            h2_prev = h2_init[v] if t == 0 else h2[v][t - 1]
            h1[v][t] = a1[v][t] * h1_prev + a2[v][t] * h2_prev + b1[v][t]
            h1_up = zero if v == 0 else h1[v - 1][t]
            h2_up = zero if v == 0 else h2[v - 1][t]
            h2[v][t] = a3[v][t] * h1_up + a4[v][t] * h2_up + b2[v][t]
    return _stack(h1), _stack(h2)


def _stack(cells: list[list[Tensor]]) -> Tensor:
    return torch.stack([torch.stack(row, dim=1) for row in cells], dim=1)


def _sweep(a1, a2, a3, a4, b1, b2, h1_init, h2_init, reverse: bool = False):
    batch, length = a1.shape[0], a1.shape[2]
    features = a1.shape[3:]
    # Rows by unbind, not by indexing: an indexed row's backward allocates a zero tensor of
    # the full size for each of the V rows. The reverse direction walks the rows backwards
    # instead of flipping eight full tensors.
    rows = [c.unbind(1) for c in (a1, a2, a3, a4, b1, b2, h1_init, h2_init)]
    if reverse:
        rows = [row[::-1] for row in rows]
    h1_rows, h2_rows = [], []
    h1_up = h2_up = a1.new_zeros((batch, length, *features))
    for a1_v, a2_v, a3_v, a4_v, b1_v, b2_v, h1_init_v, h2_init_v in zip(*rows):
        h2_row = a3_v * h1_up + a4_v * h2_up + b2_v
        # h1[v, t] reads h2[v, t-1]: shift the row by one step, h2_init filling t = 0
        h2_before = torch.cat([h2_init_v[:, None], h2_row[:, :-1]], dim=1)
        drive = a2_v * h2_before + b1_v
        h1_row = _time_scan(a1_v.reshape(batch, length, -1), drive.reshape(batch, length, -1),
                            h1_init_v.reshape(batch, -1)).reshape(drive.shape)
        h1_rows.append(h1_row)
        h2_rows.append(h2_row)
        h1_up, h2_up = h1_row, h2_row
    if reverse:
        h1_rows, h2_rows = h1_rows[::-1], h2_rows[::-1]
    return torch.stack(h1_rows, dim=1), torch.stack(h2_rows, dim=1)


def _wavefront(a1, a2, a3, a4, b1, b2, h1_init, h2_init):
    n_var, length = a1.shape[1:3]
    a1, a2, a3, a4, b1, b2 = (_grid(c) for c in (a1, a2, a3, a4, b1, b2))
    h1_init, h2_init = h1_init.unbind(1), h2_init.unbind(1)
    zero = h1_init[0].new_zeros(h1_init[0].shape)
    h1 = [[None] * length for _ in range(n_var)]
    h2 = [[None] * length for _ in range(n_var)]
    for s in range(n_var + length - 1):
        # The anti-diagonal v + t = s reads only the diagonal s - 1: one stacked update.
        cells = [(v, s - v) for v in range(max(0, s - length + 1), min(n_var - 1, s) + 1)]

        def gather(get, cells=cells):
            return torch.stack([get(v, t) for v, t in cells], dim=0)

        new_h1 = (gather(lambda v, t: a1[v][t])
                  * gather(lambda v, t: h1_init[v] if t == 0 else h1[v][t - 1])
                  + gather(lambda v, t: a2[v][t])
                  * gather(lambda v, t: h2_init[v] if t == 0 else h2[v][t - 1])
                  + gather(lambda v, t: b1[v][t]))
        new_h2 = (gather(lambda v, t: a3[v][t])
                  * gather(lambda v, t: zero if v == 0 else h1[v - 1][t])
                  + gather(lambda v, t: a4[v][t])
                  * gather(lambda v, t: zero if v == 0 else h2[v - 1][t])
                  + gather(lambda v, t: b2[v][t]))
        for (v, t), cell_h1, cell_h2 in zip(cells, new_h1.unbind(0), new_h2.unbind(0)):
            h1[v][t], h2[v][t] = cell_h1, cell_h2
    return _stack(h1), _stack(h2)


METHODS: dict[str, Callable] = {"sequential": _sequential, "sweep": _sweep,
                                "wavefront": _wavefront}


def scan2d(a1: Tensor, a2: Tensor, a3: Tensor, a4: Tensor, b1: Tensor, b2: Tensor,
           h0: tuple[Tensor, Tensor] | None = None, reverse_variates: bool = False,
           method: str = "sweep") -> tuple[Tensor, Tensor]:
    """Evaluate the 2-D recurrence of the module docstring.

    Parameters
    ----------
    a1, a2, a3, a4 : (B, V, T, *F) tensors
        Discrete transition coefficients: a1 (h1 along time), a2 (h2 into h1 along time),
        a3 (h1 into h2 along variates), a4 (h2 along variates).
    b1, b2 : (B, V, T, *F) tensors
        Input terms of h1 and h2.
    h0 : pair of (B, V, *F) tensors, optional
        (h1, h2) at t = -1 for every variate; zeros when None.
    reverse_variates : bool
        Run the variate recurrence from v = V-1 down to 0.
    method : {"sweep", "wavefront", "sequential"}
        How to evaluate it (all exact; see the module docstring).

    Returns
    -------
    (h1, h2), each (B, V, T, *F).
    """
    if method not in METHODS:
        known = ", ".join(repr(m) for m in METHODS)
        raise ValueError(f"unknown method {method!r}; expected one of {known}")
    coefficients = {"a1": a1, "a2": a2, "a3": a3, "a4": a4, "b1": b1, "b2": b2}
    batch, n_var, _ = _check(coefficients, h0)
    if h0 is None:
        zero = a1.new_zeros((batch, n_var, *a1.shape[3:]))
        h1_init, h2_init = zero, zero
    else:
        h1_init, h2_init = h0
    if reverse_variates and method == "sweep":
        return _sweep(*coefficients.values(), h1_init, h2_init, reverse=True)
    if reverse_variates:
        flip = lambda x: x.flip(1)  # noqa: E731
        h1, h2 = METHODS[method](*(flip(c) for c in coefficients.values()),
                                 flip(h1_init), flip(h2_init))
        return flip(h1), flip(h2)
    return METHODS[method](*coefficients.values(), h1_init, h2_init)
