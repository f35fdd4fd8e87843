"""Closed-form continuous-time cells (CfC).

Hasani, Lechner, Amini, Liebenwein, Ray, Tschaikowski, Teschl, Rus, "Closed-form
continuous-time neural networks", Nature Machine Intelligence 2022 (arXiv 2106.13898);
reference implementation ncps 1.0.1.

With the backbone x = MLP([u_t, h_{t-1}]) (activation LeCun's 1.7159 tanh(0.666 z) by
default), ff1 = tanh(W_1 x + b_1), ff2 = tanh(W_2 x + b_2) and the time gate
t_i = sigmoid(a(x) dt + b(x)) (a, b affine in x), the new state is

    default:  h' = ff1 * (1 - t_i) + t_i * ff2
    no_gate:  h' = ff1 + t_i * ff2
    pure:     h' = -A * exp(-dt (w_tau + |f|)) * f + A,   f = W_1 x + b_1 (no tanh)

where dt is the time elapsed since the previous sample, per sample and step. In the pure
mode (the direct closed-form solution of the LTC ODE) w_tau = softplus(w_tau_raw) > 0,
starting at softplus(-4) = 0.018 with A = 1: a smooth positive rate that starts slow (ncps
takes |w_tau|, whose gradient flips sign at 0, and draws w_tau and A by Xavier's uniform
rule, e.g. w_tau in +-0.8 and A in +-0.5 for 64 units).

``mixed_memory`` puts an LSTM memory cell in front (h, c <- LSTM(u_t, (h, c)) before
each CfC update). With a :mod:`tsrnn.nn.wirings` wiring instead of a unit count, the cell is
a stack of CfC layers without backbone, one per layer of the wiring (NCP: inter, command,
motor), whose ff1/ff2 weights are masked by the wiring's synapses (ncps's ``WiredCfCCell``);
a low-rank-plus-sparse wiring makes the recurrent block of ff1/ff2 (W1 W2) ⊙ M.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from .._torch import optional_triton_module
from .._validation import check_bool, check_in_range, check_option, check_positive
from . import _cfc_cpu
from ._cfc_kernels import CfCSequence
from ._sampling import check_sequence, check_state, check_time_steps
from .ltc import MemoryCell
from .wirings import Wiring


def _triton_kernels():
    """:mod:`tsrnn.nn._triton_cfc`, or None without Triton (see optional_triton_module)."""
    return optional_triton_module("tsrnn.nn._triton_cfc")


class LeCunTanh(nn.Module):
    """1.7159 tanh(0.666 x) (LeCun et al. 1998, "Efficient BackProp")."""

    def forward(self, x):
        return 1.7159 * torch.tanh(0.666 * x)


ACTIVATIONS = {"lecun_tanh": LeCunTanh, "tanh": nn.Tanh, "relu": nn.ReLU, "silu": nn.SiLU,
               "gelu": nn.GELU}


def _default(ff1, ff2, gate):
    return ff1 * (1.0 - gate) + gate * ff2


def _no_gate(ff1, ff2, gate):
    return ff1 + gate * ff2


MODES = {"default": _default, "no_gate": _no_gate, "pure": None}
LAYER_RECURRENCE = ("wiring", "dense")


class _Heads(nn.Module):
    """The closed-form update from the backbone features x and the elapsed time dt.

    ``input_mask`` (out, in), if given, masks ff1 and ff2 (the synapses of a wiring); with
    ``rank`` the last ``recurrent_size`` input columns of ff1/ff2 (the recurrent block) are
    the product of two factors of that rank, times the mask.
    """

    def __init__(self, in_features: int, hidden: int, mode: str, input_mask=None,
                 rank: int | None = None, recurrent_size: int = 0):
        super().__init__()
        self.mode, self.hidden = mode, hidden
        n_heads = 1 if mode == "pure" else 4
        self.linear = nn.Linear(in_features, n_heads * hidden)
        with torch.no_grad():
            for block in self.linear.weight.split(hidden):
                nn.init.xavier_uniform_(block)
        if input_mask is not None:
            # torch's default dtype, like the parameters: a float32 mask in a module built
            # under torch.set_default_dtype(torch.float64) would mix dtypes.
            self.register_buffer("mask", torch.as_tensor(input_mask,
                                                         dtype=torch.get_default_dtype()))
        else:
            self.mask = None
        self.rank, self.recurrent_size = rank, recurrent_size
        if rank is not None:
            n_ff = 1 if mode == "pure" else 2
            self.left = nn.Parameter(torch.randn(n_ff, hidden, rank) / rank ** 0.5)
            self.right = nn.Parameter(torch.randn(n_ff, rank, recurrent_size)
                                      / recurrent_size ** 0.5)
        if mode == "pure":
            self.w_tau_raw = nn.Parameter(torch.full((hidden,), -4.0))  # softplus ~ 0.018
            self.A = nn.Parameter(torch.ones(hidden))

    def weight(self) -> torch.Tensor:
        weight = self.linear.weight
        if self.mask is None and self.rank is None:
            return weight
        n_ff = 1 if self.mode == "pure" else 2
        ff, rest = weight[: n_ff * self.hidden], weight[n_ff * self.hidden:]
        ff = ff.reshape(n_ff, self.hidden, -1)
        if self.rank is not None:
            low_rank = self.left @ self.right  # (n_ff, hidden, recurrent)
            ff = torch.cat([ff[..., : -self.recurrent_size], low_rank], dim=-1)
        if self.mask is not None:
            ff = ff * self.mask
        return torch.cat([ff.reshape(n_ff * self.hidden, -1), rest])

    def forward(self, x: torch.Tensor, dt, weight: torch.Tensor | None = None):
        z = F.linear(x, self.weight() if weight is None else weight, self.linear.bias)
        return self.combine(z, dt)

    def combine(self, z: torch.Tensor, dt):
        """h' from the head pre-activations z (..., heads * hidden) and dt (..., 1) or 1."""
        if self.mode == "pure":
            rate = F.softplus(self.w_tau_raw) + z.abs()
            return -self.A * torch.exp(-dt * rate) * z + self.A
        ff1, ff2, a, b = z.split(self.hidden, dim=-1)
        gate = torch.sigmoid(a * dt + b)
        return MODES[self.mode](torch.tanh(ff1), torch.tanh(ff2), gate)


class CfC(nn.Module):
    """CfC layer over a sequence (equations in the module docstring).

    Parameters
    ----------
    input_size : int
        Input channels I.
    units : int or Wiring
        Hidden size H, or a wiring (then there is no backbone: see the module docstring).
    mode : {"default", "no_gate", "pure"}
        Which closed-form solution to use.
    backbone_units, backbone_layers : int, optional
        Width and depth of the backbone MLP (0 layers: the heads read [u, h] directly);
        128 and 1 when not given. A wired cell has no backbone: giving either (or
        ``backbone_dropout``, ``activation``) with a wiring is an error, as in ncps.
    backbone_dropout : float in [0, 1), optional
        Dropout after every backbone activation (training only); 0 when not given.
    activation : {"lecun_tanh", "tanh", "relu", "silu", "gelu"}, optional
        Backbone activation; "lecun_tanh" when not given.
    mixed_memory : bool
        Put an LSTM memory cell in front; the state is then the pair (h, c).
    proj_size : int, optional
        A linear map of the outputs to this size.
    layer_recurrence : {"wiring", "dense"}, optional
        Wired mode only (an error without a wiring): recurrent synapses within a layer as
        the wiring draws them ("wiring", the default), or all present (ncps 1.0.1 connects
        every layer of a wiring densely to itself).
    fast_path : bool
        Run unwired cells with at most one tanh-kind backbone layer through the
        hand-derived sequence function (:mod:`tsrnn.nn._cfc_kernels`; on the CPU, where a C
        compiler is present, the compiled kernel of :mod:`tsrnn.nn._cfc_cpu`; on CUDA, where
        triton is installed, the fused kernels of :mod:`tsrnn.nn._triton_cfc`); False runs
        plain autograd (needed for second derivatives).

    Shapes
    ------
    x : (B, L, I); h0 : (B, H) (a pair with ``mixed_memory``); dt : (B, L) or (B, L, 1),
    the time elapsed before each step (1 when None). Returns the outputs (B, L, H) (wired:
    the motor neurons (B, L, output_size); ``proj_size`` if given) and the final state
    (B, H). In wired mode the state lists the layers in signal order (inter, command,
    motor for an NCP), as in ncps.
    """

    def __init__(self, input_size: int, units: int | Wiring, *, mode: str = "default",
                 backbone_units: int | None = None, backbone_layers: int | None = None,
                 backbone_dropout: float | None = None, activation: str | None = None,
                 mixed_memory: bool = False, proj_size: int | None = None,
                 layer_recurrence: str | None = None, fast_path: bool = True):
        super().__init__()
        self.fast_path = check_bool(fast_path, "fast_path")
        self.input_size = check_positive(input_size, "input_size", integer=True)
        self.mode = check_option(mode, "mode", tuple(MODES))
        if activation is not None:
            check_option(activation, "activation", tuple(ACTIVATIONS))
        if layer_recurrence is not None:
            check_option(layer_recurrence, "layer_recurrence", LAYER_RECURRENCE)
        self.wiring = None
        if isinstance(units, Wiring):
            # ncps raises the same: a wired cell has no backbone, so these would do nothing.
            given = [name for name, value in (
                ("backbone_units", backbone_units), ("backbone_layers", backbone_layers),
                ("backbone_dropout", backbone_dropout), ("activation", activation))
                if value is not None]
            if given:
                raise ValueError(f"{', '.join(given)} cannot be used with a wiring: a wired "
                                 "CfC has no backbone (its layers read the wiring's synapses "
                                 "directly, as ncps's WiredCfCCell)")
            layer_recurrence = "wiring" if layer_recurrence is None else layer_recurrence
            self.wiring = units
            units.check_fits(self.input_size)
            units.build(self.input_size)
            self.hidden_size = units.units
            self._build_wired(units, layer_recurrence)
            self.output_size = (units.output_size if len(units.layers) == 1
                                else len(units.layers[-1]))
        else:
            if layer_recurrence is not None:
                raise ValueError("layer_recurrence applies to a wired CfC only (units given as "
                                 "a Wiring); with a unit count every neuron reads all others")
            self.hidden_size = check_positive(units, "units", integer=True)
            self.output_size = self.hidden_size
            backbone_layers = 1 if backbone_layers is None else backbone_layers
            backbone_units = 128 if backbone_units is None else backbone_units
            backbone_dropout = 0.0 if backbone_dropout is None else backbone_dropout
            activation = "lecun_tanh" if activation is None else activation
            self.backbone_layers = check_positive(backbone_layers, "backbone_layers",
                                                  integer=True, allow_zero=True)
            width = check_positive(backbone_units, "backbone_units", integer=True)
            check_in_range(backbone_dropout, "backbone_dropout", 0.0, 1.0, closed="left")
            layers, size = [], self.input_size + self.hidden_size
            for _ in range(self.backbone_layers):
                layers.append(nn.Linear(size, width))
                size = width
            self.backbone = nn.ModuleList(layers)
            self.activation = ACTIVATIONS[activation]()
            self.dropout = nn.Dropout(backbone_dropout) if backbone_dropout > 0 else None
            self.heads = _Heads(size, self.hidden_size, mode)
        mixed_memory = check_bool(mixed_memory, "mixed_memory")
        self.memory = MemoryCell(self.input_size, self.hidden_size) if mixed_memory else None
        self.projection = None
        if proj_size is not None:
            proj_size = check_positive(proj_size, "proj_size", integer=True)
            self.projection = nn.Linear(self.output_size, proj_size)
            self.output_size = proj_size

    def _build_wired(self, wiring: Wiring, layer_recurrence: str) -> None:
        self.layer_sizes = [len(layer) for layer in wiring.layers]
        cells, previous = [], None
        for layer in wiring.layers:
            if previous is None:
                incoming = wiring.sensory_adjacency[:, layer]
            else:
                incoming = wiring.adjacency[previous][:, layer]
            recurrent = (wiring.adjacency[layer][:, layer] if layer_recurrence == "wiring"
                         else torch.ones(len(layer), len(layer)).numpy())
            mask = torch.as_tensor(abs(incoming), dtype=torch.float32)
            mask = torch.cat([mask, torch.as_tensor(abs(recurrent), dtype=torch.float32)]).T
            cells.append(_Heads(mask.shape[1], len(layer), self.mode, mask, wiring.rank,
                                len(layer) if wiring.rank is not None else 0))
            previous = layer
        self.layers = nn.ModuleList(cells)

    # ------------------------------------------------------------------ state
    def _check_state(self, h0, batch: int, like: torch.Tensor):
        H = self.hidden_size
        parts = h0 if self.memory is not None and h0 is not None else (h0,)
        if self.memory is not None and h0 is not None and (
                not isinstance(h0, tuple | list) or len(h0) != 2):
            raise ValueError("with mixed_memory=True the state is a pair (h, c) of (B, H) "
                             "tensors")
        for part in parts:
            if part is not None and (not isinstance(part, torch.Tensor)
                                     or tuple(part.shape) != (batch, H)):
                shape = tuple(part.shape) if isinstance(part, torch.Tensor) else type(part)
                raise ValueError(f"h0 must have shape (B, H) = ({batch}, {H}), got {shape}")
        if h0 is None:
            zero = like.new_zeros(batch, H)
            return (zero, zero) if self.memory is not None else zero
        if self.memory is not None:
            return tuple(check_state(part, like, f"h0[{i}]") for i, part in enumerate(h0))
        return check_state(h0, like)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, h0=None, dt=None):
        """Run the cell over ``x``; returns (outputs, final state), see the class docstring."""
        states, final = self.trajectory(x, h0, dt, _return_final=True)
        if self.wiring is not None:
            outputs = states[..., self.hidden_size - self.layer_sizes[-1]:]
            if len(self.layer_sizes) == 1:
                outputs = outputs[..., : self.wiring.output_size]
        else:
            outputs = states
        if self.projection is not None:
            outputs = self.projection(outputs)
        return outputs, final

    def trajectory(self, x: torch.Tensor, h0=None, dt=None, *, _return_final: bool = False):
        """The hidden states after every step (B, L, H)."""
        check_sequence(x, self.input_size, module=self)
        batch, length = x.shape[:2]
        dt = check_time_steps(dt, batch, length, x)
        state = self._check_state(h0, batch, x)
        return self._run(x, state, dt, _return_final)

    def _run(self, x, state, dt, return_final: bool):
        """The computation after validation (no host synchronisation: CUDA-graph
        capturable); dt is a (B, L) tensor or None."""
        length = x.shape[1]
        if self._fast_path_applies():
            states = self._fast(x, state, dt)
            return (states, states[:, -1]) if return_final else states
        memory = None
        if self.memory is not None:
            state, memory = state
        step = self._wired_step if self.wiring is not None else self._step
        weights = self._step_weights()
        if self.wiring is None and self.memory is None:
            # The input's share of the first layer is computed for all steps at once.
            # unbind, not drive[:, t]: the gradient of each slice would be a full-size
            # zero tensor with one row filled, L times over.
            drive = self._input_drive(x).unbind(1)
        outputs = []
        h = state
        for t in range(length):
            dt_t = 1.0 if dt is None else dt[:, t, None]
            if memory is not None:
                h, memory = self.memory(x[:, t], h, memory)
            if self.wiring is None and self.memory is None:
                h = self._step_from_drive(drive[t], h, dt_t, weights)
            else:
                h = step(x[:, t], h, dt_t, weights)
            outputs.append(h)
        states = torch.stack(outputs, dim=1)
        final = h if memory is None else (h, memory)
        return (states, final) if return_final else states

    # Backbone activations the fast path knows: act(p) = alpha tanh(beta p).
    _FAST_ACTIVATIONS: ClassVar[dict] = {LeCunTanh: (1.7159, 0.666), nn.Tanh: (1.0, 1.0)}
    # The fast path on CUDA runs the Triton kernels where they apply (False: the torch
    # sequence function, e.g. to compare the two).
    _triton: bool = True
    # The fast path on the CPU runs the compiled kernel of tsrnn.nn._cfc_cpu where it could
    # be built (False: the torch sequence function, e.g. to compare the two).
    _native: bool = True

    def _sequence_function(self, x: torch.Tensor, features: int):
        """The autograd function of the fast path for ``x`` (on the CPU, where the compiled
        kernel applies, :meth:`_fast` uses that instead): Triton's on CUDA where the kernels
        cover the sizes and dtype, else :class:`CfCSequence`."""
        if self._triton and x.device.type == "cuda":
            kernels = _triton_kernels()
            batch, steps = (x.shape[0], x.shape[1]) if x.dim() > 1 else (0, 0)
            if kernels is not None and kernels.supports(self.hidden_size, features, x.dtype,
                                                        batch, steps):
                return kernels.TritonCfCSequence
        return CfCSequence

    def _fast_path_applies(self) -> bool:
        """Unwired, no memory cell, at most one backbone layer of a tanh kind, no dropout
        in training: the hand-derived sequence function of :mod:`tsrnn.nn._cfc_kernels`."""
        if (not self.fast_path or self.wiring is not None or self.memory is not None
                or self.backbone_layers > 1):
            return False
        if self.backbone_layers and type(self.activation) not in self._FAST_ACTIVATIONS:
            return False
        return self.dropout is None or not self.training

    def _fast(self, x, h0, dt):
        I = self.input_size
        dt = x.new_ones(x.shape[0], x.shape[1], 1) if dt is None else dt[..., None]
        heads = self.heads
        if self.mode == "pure":
            w_tau, amplitude = F.softplus(heads.w_tau_raw), heads.A
        else:
            w_tau = amplitude = None
        native = self._native and _cfc_cpu.supports(x)
        if self.backbone_layers:
            first = self.backbone[0]
            alpha, beta = self._FAST_ACTIVATIONS[type(self.activation)]
            if native:
                return _cfc_cpu.CfCNativeSequence.apply(
                    x, first.weight[:, :I], first.bias, h0, dt, first.weight[:, I:],
                    heads.weight(), heads.linear.bias, w_tau, amplitude, self.mode, alpha,
                    beta)
            drive = F.linear(x, first.weight[:, :I], first.bias)
            sequence = self._sequence_function(x, first.out_features)
            return sequence.apply(drive, h0, dt, first.weight[:, I:], heads.weight(),
                                  heads.linear.bias, w_tau, amplitude, self.mode, alpha, beta)
        weight = heads.weight()
        if native:
            return _cfc_cpu.CfCNativeSequence.apply(
                x, weight[:, :I], heads.linear.bias, h0, dt, weight[:, I:], None, None, w_tau,
                amplitude, self.mode, 1.0, 1.0)
        drive = F.linear(x, weight[:, :I], heads.linear.bias)
        sequence = self._sequence_function(x, self.hidden_size)
        return sequence.apply(drive, h0, dt, weight[:, I:], None, None, w_tau, amplitude,
                              self.mode, 1.0, 1.0)

    def _step_weights(self):
        if self.wiring is not None:
            return [cell.weight() for cell in self.layers]
        return self.heads.weight()

    def _input_drive(self, x):
        first = self.backbone[0] if self.backbone_layers else self.heads.linear
        if self.backbone_layers:
            weight = first.weight
        else:
            weight = self.heads.weight()
        return F.linear(x, weight[:, : self.input_size], first.bias)

    def _step_from_drive(self, drive, h, dt, head_weight):
        first = self.backbone[0] if self.backbone_layers else None
        if first is None:
            z = drive + h @ head_weight[:, self.input_size:].T
            return self.heads.combine(z, dt)
        features = self._activate(drive + h @ first.weight[:, self.input_size:].T)
        for layer in self.backbone[1:]:
            features = self._activate(layer(features))
        return self.heads(features, dt, head_weight)

    def _activate(self, z):
        z = self.activation(z)
        return z if self.dropout is None else self.dropout(z)

    def _step(self, u, h, dt, head_weight):
        features = torch.cat([u, h], dim=-1)
        for layer in self.backbone:
            features = self._activate(layer(features))
        return self.heads(features, dt, head_weight)

    def _wired_step(self, u, h, dt, weights):
        parts = h.split(self.layer_sizes, dim=-1)
        inputs, new = u, []
        for cell, weight, part in zip(self.layers, weights, parts):
            inputs = cell(torch.cat([inputs, part], dim=-1), dt, weight)
            new.append(inputs)
        return torch.cat(new, dim=-1)

    def extra_repr(self) -> str:
        where = f"wiring={self.wiring!r}" if self.wiring is not None else \
            f"units={self.hidden_size}"
        return f"input_size={self.input_size}, {where}, mode={self.mode!r}"
