"""Chimera: a selective two-dimensional state space model over time and variates.

Behrouz, Santacatterina, Zabih, "Chimera: Effectively Modeling Multivariate Time Series with
2-Dimensional State Space Models", NeurIPS 2024 (arXiv 2406.04320).

The continuous 2-D SSM over time t and variate v, with two states (h1 carries information
along time, h2 across variates),

    dh1/dt = A1 h1 + A2 h2 + B1 x,      dh2/dv = A3 h1 + A4 h2 + B2 x,      y = C1 h1 + C2 h2,

discretised with steps Δ1 (time) and Δ2 (variates) into

    h1[v, t] = Ā1 h1[v, t-1] + Ā2 h2[v, t-1] + B̄1 x[v, t]
    h2[v, t] = Ā3 h1[v-1, t] + Ā4 h2[v-1, t] + B̄2 x[v, t]
    y[v, t]  = C1 h1[v, t] + C2 h2[v, t] + D x[v, t]

evaluated by the 2-D scan :func:`tsrnn.ops.scan2d.scan2d`. As in the paper: B1, B2, C1, C2,
Δ1, Δ2 are functions of the input x[v, t] (selective); A1..A4 are diagonal; two heads with
different discretisations along time (small Δ1: long-term progression; large Δ1 and a
seasonal lag: seasonal patterns); each head runs forward and backward along the variate
axis, which has no natural order; layers are stacked with nonlinearities between them and a
data-dependent gate on the SSM output.

Sources. The paper's own text was not reachable here beyond its abstract; §3 was checked
against a detailed secondary account of it (the MQL5 article "Neural Networks in Trading:
Two-Dimensional Connection Space Models (Chimera)", which paraphrases §3) and summaries.
They agree with the equations above (h1 carries information along time from the same
variate, h2 across variates at the same time; ZOH with Δ1, Δ2; smaller Δ1 for long-term
progression, larger Δ1 for seasonal patterns; small Δ2 = more mixing across variates;
B, C, Δ functions of x[v, t]; forward and backward modules along the variates; stacked
layers with nonlinearities; a "closed-loop decoder" to extend forecast horizons, which
:class:`tsrnn.forecasting.ChimeraForecaster` mirrors by recursive blocks). The paper
structures A1, A2 beyond diagonal ("diagonal plus augmentation"); here all four are
diagonal, the simplest case it describes.

Choices the paper leaves open (or that could not be read from it here), and what this
module does:

- Discretisation. ZOH along each axis, the cross state held constant over the step like the
  input (the exact ZOH of a diagonal A1 with h2 and x as held inputs):
  Ā1 = exp(Δ1 A1), Ā2 = (Ā1 - 1) A1⁻¹ A2, B̄1 = (Ā1 - 1) A1⁻¹ B1, and likewise
  Ā4 = exp(Δ2 A4), Ā3 = (Ā4 - 1) A4⁻¹ A3, B̄2 = (Ā4 - 1) A4⁻¹ B2.
- Stability by construction. A1 = -exp(α1), A4 = -exp(α4) (negative, diagonal), and the
  couplings A2 = -A1 tanh(w2), A3 = -A4 tanh(w3), so that Ā2 = (1 - Ā1) tanh(w2) and
  Ā3 = (1 - Ā4) tanh(w3): per state the block matrix [[Ā1, Ā2], [Ā3, Ā4]] has infinity
  norm < 1, a sufficient condition for a bounded 2-D (Roesser) recurrence.
- Sizes. Each cell x[v, t] is lifted to d_model channels (a shared linear map of the value
  plus a learned embedding of the variate); Δ1, Δ2 are per channel, B1, B2, C1, C2 have
  d_state entries shared by the channels (Mamba's convention); initial A1 = A4 = -(n + 1)
  (S4D-real), Δ initialised log-uniformly (trend head Δ1 in [1e-3, 1e-1], seasonal head
  Δ1 in [1e-1, 1], Δ2 in [1e-2, 1] for both).
- Seasonal head. Besides its larger Δ1, its time recurrence reaches back ``season`` steps,
  h1[v, t] = Ā1 h1[v, t-s] + Ā2 h2[v, t-s] + B̄1 x[v, t] (s = 1 when ``season`` is None),
  computed exactly by folding the s phases of t into the feature dimensions of the scan.
- Combining. The outputs of the heads and directions are summed, gated by SiLU(z) of a
  second input projection, projected back to d_model and added to the residual stream;
  a pre-norm two-layer GELU MLP follows (standard deep-SSM block). No time convolution:
  the block stays causal in t and its state is exactly the last columns of the scans.

Causality: every operation is causal in time (the scans run forward in t; norms, gates and
MLPs act per cell), so outputs at t depend on inputs up to t only; across variates the
model is bidirectional.

Shapes
------
x : (B, L, C), C = ``input_size`` variates. dt : (B, L) or (B, L, 1), the time elapsed before
each step (multiplies Δ1; irregular sampling). Outputs (B, L, C * output_size), variate-major
(reshape to (B, L, C, output_size)). The state is a list with one tensor
(B, C, lag, 2, d_model, d_state) per layer, head and direction (lag = 1, or ``season`` for the
seasonal head): (h1, h2) of the last ``lag`` time steps, and with ``mix_variates`` = K > 1 a
last entry (B, K - 1, C), the last input rows; pass it back as ``h0`` to continue a sequence
exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_bool, check_finite, check_option, check_positive
from ..ops.scan2d import METHODS, scan2d
from ._sampling import check_matches_module, check_state

HEADS = {
    # name: (Δ1 initial range, uses the seasonal lag)
    "trend": ((1e-3, 1e-1), False),
    "seasonal": ((1e-1, 1.0), True),
}
_DT2_RANGE = (1e-2, 1.0)


def _inverse_softplus_log_uniform(shape, low: float, high: float,
                                  generator: torch.Generator | None) -> torch.Tensor:
    """Biases b with softplus(b) log-uniform in [low, high] (Mamba's Δ initialisation)."""
    u = torch.rand(shape, generator=generator)
    step = torch.exp(u * (math.log(high) - math.log(low)) + math.log(low))
    return step + torch.log(-torch.expm1(-step))


def _init_linear(layer: nn.Linear, generator: torch.Generator | None) -> None:
    """torch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn from ``generator`` so that
    a given generator fixes the whole initialisation (not the global RNG)."""
    bound = 1 / math.sqrt(layer.in_features)
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=generator)
        if layer.bias is not None:
            layer.bias.uniform_(-bound, bound, generator=generator)


class SelectiveSSM2D(nn.Module):
    """One selective 2-D SSM head in one variate direction (see the module docstring).

    Parameters
    ----------
    d_model, d_state : int
        Channels D of the cells and states N per channel.
    dt1_range : (float, float)
        Initial range of the time step Δ1.
    lag : int
        How many steps back the time recurrence reaches (1; the season for a seasonal head).
    reverse : bool
        Run the variate recurrence from the last variate to the first.
    scan_method : str
        One of :data:`tsrnn.ops.scan2d.METHODS`.

    Shapes
    ------
    u : (B, V, T, D) cells; dt : (B, T) or None; h0 : (B, V, lag, 2, D, N) or None.
    Returns y (B, V, T, D) and the state (B, V, lag, 2, D, N).
    """

    def __init__(self, d_model: int, d_state: int, dt1_range=(1e-3, 1e-1), lag: int = 1,
                 reverse: bool = False, scan_method: str = "sweep",
                 generator: torch.Generator | None = None):
        super().__init__()
        self.d_model, self.d_state, self.lag = d_model, d_state, lag
        self.reverse, self.scan_method = check_bool(reverse, "reverse"), scan_method
        decay = torch.log(torch.arange(1, d_state + 1, dtype=torch.get_default_dtype()))
        decay = decay.repeat(d_model, 1)
        self.log_a1 = nn.Parameter(decay.clone())  # A1 = -exp(log_a1), (D, N)
        self.log_a4 = nn.Parameter(decay.clone())
        self.w2 = nn.Parameter(0.1 * torch.randn((d_model, d_state), generator=generator))
        self.w3 = nn.Parameter(0.1 * torch.randn((d_model, d_state), generator=generator))
        # x -> (Δ1, Δ2) per channel and (B1, B2, C1, C2) per state.
        self.dt_proj = nn.Linear(d_model, 2 * d_model)
        self.bc_proj = nn.Linear(d_model, 4 * d_state, bias=False)
        with torch.no_grad():
            bound = 1 / math.sqrt(d_model)
            self.dt_proj.weight.uniform_(-bound, bound, generator=generator)
            self.dt_proj.bias.copy_(torch.cat([
                _inverse_softplus_log_uniform(d_model, *dt1_range, generator),
                _inverse_softplus_log_uniform(d_model, *_DT2_RANGE, generator)]))
            self.bc_proj.weight.uniform_(-bound, bound, generator=generator)
        self.skip = nn.Parameter(torch.ones(d_model))

    def forward(self, u: torch.Tensor, dt: torch.Tensor | None = None,
                h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        batch, n_var = u.shape[:2]
        steps = F.softplus(self.dt_proj(u))
        dt1, dt2 = steps[..., : self.d_model], steps[..., self.d_model:]
        if dt is not None:
            dt1 = dt1 * dt[:, None, :, None]
        b1, b2, c1, c2 = self.bc_proj(u).split(self.d_state, dim=-1)  # (B, V, T, N) each
        # |A1| = exp(log_a1), |A4| = exp(log_a4); (D, N)
        a1_abs, a4_abs = torch.exp(self.log_a1), torch.exp(self.log_a4)
        # 1 - Ā = -expm1(-Δ|A|): accurate for small steps, one op instead of exp and 1 - x.
        gain1 = -torch.expm1(-dt1[..., None] * a1_abs)  # (B, V, T, D, N)
        gain4 = -torch.expm1(-dt2[..., None] * a4_abs)
        abar1, abar4 = 1 - gain1, 1 - gain4
        abar2 = gain1 * torch.tanh(self.w2)
        abar3 = gain4 * torch.tanh(self.w3)
        x = u[..., None]  # (B, V, T, D, 1)
        # B̄ x = (1 - Ā) |A|⁻¹ B x, the reciprocal taken on the small (D, N) tensor.
        drive1 = gain1 * (x * b1[..., None, :] * torch.exp(-self.log_a1))
        drive2 = gain4 * (x * b2[..., None, :] * torch.exp(-self.log_a4))
        coefficients = [abar1, abar2, abar3, abar4, drive1, drive2]
        lag = self.lag
        if h0 is None:
            h0 = u.new_zeros((batch, n_var, lag, 2, self.d_model, self.d_state))
        if lag == 1:
            h1, h2 = scan2d(*coefficients, h0=(h0[:, :, 0, 0], h0[:, :, 0, 1]),
                            reverse_variates=self.reverse, method=self.scan_method)
        else:
            h1, h2 = self._seasonal_scan(coefficients, h0)
        # y = C1 h1 + C2 h2 + D u; contracting the state axis as a batched matrix product
        # avoids two full-size temporaries.
        y = (torch.matmul(h1, c1[..., :, None]) + torch.matmul(h2, c2[..., :, None]))[..., 0]
        y = y + self.skip * u
        # The state: (h1, h2) of the last `lag` steps (earlier ones from h0 if L < lag).
        columns = torch.stack([h1[:, :, -lag:], h2[:, :, -lag:]], dim=3)  # (B, V, <=lag, 2, D, N)
        state = torch.cat([h0, columns], dim=2)[:, :, -lag:] if columns.shape[2] < lag \
            else columns
        return y, state

    def _seasonal_scan(self, coefficients, h0):
        """Lag-s time recurrence: the s phases of t are independent 2-D grids, folded into
        the feature dimensions of one scan (exact; padding goes after the last step)."""
        lag = self.lag
        length = coefficients[0].shape[2]
        rows = -(-length // lag)
        pad = rows * lag - length

        def fold(c):
            c = F.pad(c, (0, 0, 0, 0, 0, pad)) if pad else c
            return c.reshape(c.shape[0], c.shape[1], rows, lag, *c.shape[3:])

        h1, h2 = scan2d(*(fold(c) for c in coefficients), h0=(h0[:, :, :, 0], h0[:, :, :, 1]),
                        reverse_variates=self.reverse, method=self.scan_method)
        unfold = lambda h: h.reshape(h.shape[0], h.shape[1], rows * lag,  # noqa: E731
                                     *h.shape[4:])[:, :, :length]
        return unfold(h1), unfold(h2)


class ChimeraLayer(nn.Module):
    """Pre-norm block: the gated sum of the 2-D SSM heads and directions, then an MLP.

    Shapes: u (B, V, T, D) -> (B, V, T, D); state as :class:`SelectiveSSM2D`, a list.
    """

    def __init__(self, d_model: int, d_state: int, heads, season: int | None,
                 bidirectional: bool, dropout: float, scan_method: str,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.in_proj = nn.Linear(d_model, 2 * d_model)
        scans = []
        for name in heads:
            dt1_range, seasonal = HEADS[name]
            lag = int(season) if seasonal and season is not None else 1
            for reverse in ((False, True) if bidirectional else (False,)):
                scans.append(SelectiveSSM2D(d_model, d_state, dt1_range, lag, reverse,
                                            scan_method, generator))
        self.scans = nn.ModuleList(scans)
        self.out_proj = nn.Linear(d_model, d_model)
        self.mlp_norm = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 2 * d_model), nn.GELU(),
                                 nn.Linear(2 * d_model, d_model))
        self.dropout = nn.Dropout(dropout)
        for layer in (self.in_proj, self.out_proj, self.mlp[0], self.mlp[2]):
            _init_linear(layer, generator)

    def forward(self, u, dt=None, h0=None):
        x, z = self.in_proj(self.norm(u)).chunk(2, dim=-1)
        x = F.silu(x)
        total, states = 0.0, []
        for i, scan in enumerate(self.scans):
            y, state = scan(x, dt, None if h0 is None else h0[i])
            total = total + y
            states.append(state)
        u = u + self.dropout(self.out_proj(total * F.silu(z)))
        u = u + self.dropout(self.mlp(self.mlp_norm(u)))
        return u, states


class Chimera(nn.Module):
    """Stacked Chimera layers over a multivariate sequence, with a per-cell readout.

    Parameters
    ----------
    input_size : int
        C, the number of variates.
    d_model : int
        Channels per cell (time step, variate).
    d_state : int
        States per channel of each 2-D SSM.
    n_layers : int
        Stacked layers.
    output_size : int
        Outputs per variate and time step (1: a sequence of the shape of the input; a
        forecasting head uses the horizon).
    heads : tuple of {"trend", "seasonal"}
        Which discretisations to use (see the module docstring).
    season : int, optional
        Lag of the seasonal head's time recurrence (None: 1).
    bidirectional : bool
        Run every head forward and backward along the variates (the paper's choice).
    dropout : float
        Dropout on the residual branches.
    scan_method : {"sweep", "wavefront", "sequential"}
        How the 2-D scans are evaluated (all exact).
    mix_variates : int
        K > 0: also embed the cross-sections of the last K steps into every cell,
        u[v, t] = W x[v, t] + b + E[v] + Σ_{j<K} M_j[v] x[:, t-j], with learned (d_model, C)
        maps M_j[v] per variate (zeros before the first step; the last K - 1 rows travel in
        the state, as its last entry, so that a continued sequence is exact). 0: off (a
        bool means 0 or 1). Not part of the paper, where cells meet other variates only
        through the variate recurrence (h2) of the 2-D SSM; it hands every cell the recent
        cross-sections at once, which the h2 chain otherwise relays variate by variate and
        learns slowly (on the synthetic set of ``benchmarks/bench_chimera.py`` a ridge
        forecaster from the last 4 cross-sections alone scores 0.204, from the full window
        of 48 steps 0.216; Chimera without this embedding 0.361). Causal in time (steps
        t-K+1..t only).
    generator : torch.Generator, optional
        For a reproducible initialisation.

    Shapes
    ------
    x : (B, L, C); h0 : the state list returned by a previous call, or None; dt : (B, L) or
    (B, L, 1). Returns outputs (B, L, C * output_size) and the state list (module docstring).
    """

    def __init__(self, input_size: int, d_model: int = 16, d_state: int = 8, n_layers: int = 2,
                 output_size: int = 1, heads: tuple[str, ...] = ("trend", "seasonal"),
                 season: int | None = None, bidirectional: bool = True, dropout: float = 0.0,
                 scan_method: str = "sweep", mix_variates: int = 0,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.input_size = check_positive(input_size, "input_size", integer=True)
        self.d_model = check_positive(d_model, "d_model", integer=True)
        self.d_state = check_positive(d_state, "d_state", integer=True)
        self.n_layers = check_positive(n_layers, "n_layers", integer=True)
        self.output_size = check_positive(output_size, "output_size", integer=True)
        bidirectional = check_bool(bidirectional, "bidirectional")
        heads = (heads,) if isinstance(heads, str) else tuple(heads)
        if not heads:
            raise ValueError(f"heads must name at least one of {sorted(HEADS)}")
        for name in heads:
            check_option(name, "head", tuple(HEADS))
        if season is not None:
            check_positive(season, "season", integer=True)
        check_option(scan_method, "scan_method", tuple(METHODS))
        self.heads, self.season = heads, season
        self.lift = nn.Linear(1, d_model)
        self.variate_embedding = nn.Parameter(
            0.1 * torch.randn((input_size, d_model), generator=generator))
        if int(mix_variates) != mix_variates or mix_variates < 0:
            raise ValueError(f"mix_variates must be a non-negative integer (steps of the "
                             f"cross-section embedded), got {mix_variates!r}")
        self.mix_variates = int(mix_variates)
        if self.mix_variates:
            # Every cell (v, t) also embeds the cross-sections x[:, t-K+1..t] (own map per v).
            self.variate_mix = nn.Linear(input_size * self.mix_variates, input_size * d_model,
                                         bias=False)
            _init_linear(self.variate_mix, generator)
        self.layers = nn.ModuleList(
            ChimeraLayer(d_model, d_state, heads, season, bidirectional, dropout, scan_method,
                         generator) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.readout = nn.Linear(d_model, output_size)
        _init_linear(self.lift, generator)
        _init_linear(self.readout, generator)

    @property
    def scans_per_layer(self) -> int:
        return len(self.layers[0].scans)

    def initial_state(self, batch: int) -> list[torch.Tensor]:
        """The zero state (the default of ``h0``)."""
        reference = self.readout.weight
        state = [reference.new_zeros((batch, self.input_size, scan.lag, 2, self.d_model,
                                      self.d_state))
                 for layer in self.layers for scan in layer.scans]
        if self.mix_variates > 1:  # the last K - 1 input rows of the cross-section embedding
            state.append(reference.new_zeros((batch, self.mix_variates - 1, self.input_size)))
        return state

    def _check(self, x, h0, dt):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError("x must be a floating-point torch.Tensor of shape (B, L, C)")
        if x.ndim != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"x must have shape (B, L, {self.input_size}), got "
                             f"{tuple(x.shape)}")
        if x.shape[1] == 0:
            raise ValueError("x is empty along time (L = 0)")
        if x.shape[0] == 0:  # torch's own error was a reshape's
            raise ValueError("x is empty along the batch (B = 0)")
        check_finite(x, "x")
        check_matches_module(x, self)
        if dt is not None:
            if not isinstance(dt, torch.Tensor):  # a float or a (nested) list
                dt = torch.as_tensor(dt, dtype=x.dtype, device=x.device)
            if dt.ndim == 0:  # one step for every sample and step
                dt = dt.expand(*x.shape[:2])
            if dt.ndim == 3 and dt.shape[-1] == 1:
                dt = dt[..., 0]
            if tuple(dt.shape) != tuple(x.shape[:2]):
                raise ValueError(f"dt must be a number or have shape (B, L) = "
                                 f"{tuple(x.shape[:2])} or "
                                 f"(B, L, 1), got {tuple(dt.shape)}")
            check_finite(dt, "dt")
            if bool((dt <= 0).any()):
                raise ValueError("dt must be positive (the time elapsed before each step)")
            dt = dt.to(x.dtype)
        if h0 is not None:
            expected = self.initial_state(x.shape[0])
            if not isinstance(h0, list | tuple) or len(h0) != len(expected):
                raise ValueError(f"h0 must be the list of {len(expected)} state tensors that "
                                 "Chimera returns (one per layer, head and direction)")
            for i, (given, want) in enumerate(zip(h0, expected)):
                if not isinstance(given, torch.Tensor) or tuple(given.shape) != tuple(
                        want.shape):
                    shape = (tuple(given.shape) if isinstance(given, torch.Tensor)
                             else type(given).__name__)
                    raise ValueError(f"h0[{i}] must have shape {tuple(want.shape)}, got "
                                     f"{shape}")
                check_state(given, x, f"h0[{i}]")
        return dt

    def forward(self, x: torch.Tensor, h0: list[torch.Tensor] | None = None,
                dt: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        dt = self._check(x, h0, dt)
        batch, length, n_var = x.shape
        cells = x.transpose(1, 2)[..., None]  # (B, V, T, 1)
        u = self.lift(cells) + self.variate_embedding[:, None, :]
        states = []
        if self.mix_variates:
            steps = self.mix_variates
            if steps > 1:  # the K - 1 rows before x: from the state, zeros at the start
                before = x.new_zeros((batch, steps - 1, n_var)) if h0 is None else h0[-1]
                x_padded = torch.cat([before, x], dim=1)
                # windows[:, t] = x[:, t-K+1..t] as (C, K), flattened C-major
                windows = x_padded.unfold(1, steps, 1).reshape(batch, length, n_var * steps)
                tail = x_padded[:, -(steps - 1):]
            else:
                windows = x
            mixed = self.variate_mix(windows).reshape(batch, length, n_var, self.d_model)
            u = u + mixed.transpose(1, 2)
        per_layer = self.scans_per_layer
        for i, layer in enumerate(self.layers):
            layer_h0 = None if h0 is None else h0[i * per_layer:(i + 1) * per_layer]
            u, layer_states = layer(u, dt, layer_h0)
            states.extend(layer_states)
        if self.mix_variates > 1:
            states.append(tail)
        out = self.readout(self.norm(u))  # (B, V, T, O)
        out = out.permute(0, 2, 1, 3).reshape(batch, length, n_var * self.output_size)
        return out, states
