"""Wirings: which neuron talks to which in the LTC and CfC cells.

A wiring fixes the connectivity of a cell of ``units`` neurons driven by ``input_size``
inputs (the "sensory neurons"):

- ``adjacency`` (units, units): entry [j, i] is the polarity (+1 excitatory, -1 inhibitory,
  0 none) of the synapse from neuron j to neuron i;
- ``sensory_adjacency`` (input_size, units): the same from input k to neuron i, drawn when
  the wiring is built for a number of inputs (``build``; the cells do this themselves);
- ``output_size``: the first ``output_size`` neurons are the "motor" neurons read out;
- ``layers``: the neuron indices of each layer (one layer unless the wiring is layered);
- ``rank``: None, or the rank of a low-rank recurrent weight matrix (low-rank plus sparse).

Wirings here:

:class:`FullyConnected`
    Every synapse present, polarities drawn with probability 2/3 excitatory.
:class:`RandomSparse`
    A random fraction ``1 - sparsity`` of the synapses present.
:class:`NCP` and :class:`AutoNCP`
    Neural circuit policies (Lechner et al. 2020, "Neural circuit policies enabling auditable
    autonomy", Nature Machine Intelligence): sensory -> inter -> command (recurrent) ->
    motor, with the given fan-outs. For the same arguments and seed they draw exactly the
    synapses and polarities of ncps 1.0.1's ``NCP``/``AutoNCP`` (the test checks this).
:class:`LowRankSparse`
    Tumma et al. 2024, "Leveraging low-rank and sparse recurrent connectivity for robust
    closed-loop control" (ICLR): recurrent weights W_rec = (W1 W2) ⊙ M with W1 (H, r),
    W2 (r, H) and a fixed random mask M keeping a fraction ``1 - sparsity`` of the entries.

:meth:`Wiring.from_matrices` builds a wiring from explicit adjacency matrices (for example
ones exported from ncps: ``Wiring.from_matrices(w.adjacency_matrix,
w.sensory_adjacency_matrix, w.output_dim)``).
"""

from __future__ import annotations

import numpy as np

from .._validation import check_bool, check_in_range, check_positive

__all__ = ["NCP", "AutoNCP", "FullyConnected", "LowRankSparse", "RandomSparse", "Wiring"]


class Wiring:
    """Connectivity of a cell: ``units`` neurons, the first ``output_size`` of them motor.

    Subclasses draw the recurrent synapses in ``__init__`` and the sensory ones in
    ``_build_sensory`` (called once by :meth:`build`, when the number of inputs is known).

    Parameters
    ----------
    units : int
        Number of neurons (the state size of the cell).
    output_size : int, optional
        Number of motor neurons (outputs); all neurons when None.
    """

    rank: int | None = None

    def __init__(self, units: int, output_size: int | None = None):
        self.units = check_positive(units, "units", integer=True)
        output_size = self.units if output_size is None else output_size
        self.output_size = check_positive(output_size, "output_size", integer=True)
        if self.output_size > self.units:
            raise ValueError(f"output_size ({self.output_size}) cannot exceed units "
                             f"({self.units})")
        self.adjacency = np.zeros((self.units, self.units), dtype=np.int8)
        self.sensory_adjacency: np.ndarray | None = None
        self.input_size: int | None = None

    # ------------------------------------------------------------------ structure
    @property
    def layers(self) -> list[list[int]]:
        """Neuron indices of each layer, in the order the signal flows."""
        return [list(range(self.units))]

    def is_built(self) -> bool:
        return self.input_size is not None

    def build(self, input_size: int) -> Wiring:
        """Draw the sensory synapses for ``input_size`` inputs (once; idempotent)."""
        input_size = check_positive(input_size, "input_size", integer=True)
        if self.input_size is not None:
            if self.input_size != input_size:
                raise ValueError(f"this wiring was built for {self.input_size} inputs; it "
                                 f"cannot serve a cell with {input_size} inputs")
            return self
        self.input_size = input_size
        self.sensory_adjacency = np.zeros((input_size, self.units), dtype=np.int8)
        self._build_sensory()
        return self

    def _build_sensory(self) -> None:
        raise NotImplementedError

    def _add(self, matrix: np.ndarray, src: int, dest: int, polarity: int) -> None:
        if polarity not in (-1, 1):
            raise ValueError(f"synapse polarity must be -1 or +1, got {polarity}")
        matrix[src, dest] = polarity

    @property
    def synapse_count(self) -> int:
        return int(np.abs(self.adjacency).sum())

    @property
    def sensory_synapse_count(self) -> int:
        return 0 if self.sensory_adjacency is None else int(np.abs(self.sensory_adjacency).sum())

    def check_fits(self, input_size: int, units: int | None = None) -> None:
        """Raise a clear error when this wiring does not fit a cell of these sizes."""
        if units is not None and units != self.units:
            raise ValueError(f"the wiring has {self.units} units but the cell {units}")
        if self.input_size is not None and self.input_size != input_size:
            raise ValueError(f"this wiring was built for {self.input_size} inputs; it cannot "
                             f"serve a cell with {input_size} inputs")

    def __repr__(self) -> str:
        built = f", input_size={self.input_size}" if self.is_built() else ""
        return (f"{type(self).__name__}(units={self.units}, output_size={self.output_size}"
                f"{built}, synapses={self.synapse_count})")

    # ------------------------------------------------------------------ explicit
    @classmethod
    def from_matrices(cls, adjacency, sensory_adjacency, output_size: int | None = None,
                      layers: list[list[int]] | None = None) -> Wiring:
        """A wiring with the given polarity matrices (units, units) and (inputs, units)."""
        adjacency = np.asarray(adjacency)
        sensory = np.asarray(sensory_adjacency)
        if adjacency.ndim != 2 or adjacency.shape[0] != adjacency.shape[1]:
            raise ValueError(f"adjacency must be square (units, units), got {adjacency.shape}")
        if sensory.ndim != 2 or sensory.shape[1] != adjacency.shape[0]:
            raise ValueError(f"sensory_adjacency must have shape (inputs, {adjacency.shape[0]})"
                             f", got {sensory.shape}")
        for name, m in (("adjacency", adjacency), ("sensory_adjacency", sensory)):
            if not np.isin(m, (-1, 0, 1)).all():
                raise ValueError(f"{name} must hold polarities -1, 0 or +1")
        wiring = _Explicit(adjacency.shape[0], output_size, layers)
        wiring.adjacency = adjacency.astype(np.int8)
        wiring.input_size = sensory.shape[0]
        wiring.sensory_adjacency = sensory.astype(np.int8)
        return wiring


class _Explicit(Wiring):
    def __init__(self, units, output_size, layers):
        super().__init__(units, output_size)
        if layers is not None:
            flat = sorted(i for layer in layers for i in layer)
            if flat != list(range(self.units)):
                raise ValueError("layers must partition the neuron indices 0..units-1")
        self._layers = layers

    @property
    def layers(self):
        return self._layers if self._layers is not None else super().layers

    def _build_sensory(self):  # pragma: no cover - always built
        pass


class FullyConnected(Wiring):
    """All synapses present; polarity +1 with probability 2/3 (as ncps 1.0.1, same seed,
    same draws).

    Parameters
    ----------
    units, output_size : see :class:`Wiring`.
    self_connections : bool
        Include the synapses j -> j.
    seed : int
        Seed of the polarity draws.
    """

    def __init__(self, units: int, output_size: int | None = None,
                 self_connections: bool = True, seed: int = 1111):
        super().__init__(units, output_size)
        self.self_connections = check_bool(self_connections, "self_connections")
        self._rng = np.random.default_rng(seed)
        for src in range(self.units):
            for dest in range(self.units):
                if src == dest and not self.self_connections:
                    continue
                self._add(self.adjacency, src, dest, int(self._rng.choice([-1, 1, 1])))

    def _build_sensory(self):
        for src in range(self.input_size):
            for dest in range(self.units):
                self._add(self.sensory_adjacency, src, dest, int(self._rng.choice([-1, 1, 1])))


class RandomSparse(Wiring):
    """A random ``1 - sparsity`` fraction of all recurrent and sensory synapses.

    Parameters
    ----------
    units, output_size : see :class:`Wiring`.
    sparsity : float in [0, 1)
        Fraction of synapses left out.
    seed : int
    """

    def __init__(self, units: int, output_size: int | None = None, sparsity: float = 0.5,
                 seed: int = 1111):
        super().__init__(units, output_size)
        self.sparsity = check_in_range(sparsity, "sparsity", 0.0, 1.0, closed="left")
        self._rng = np.random.default_rng(seed)
        self.adjacency = self._draw(self.units)

    def _draw(self, n_src: int) -> np.ndarray:
        total = n_src * self.units
        count = round(total * (1.0 - self.sparsity))
        chosen = self._rng.choice(total, size=count, replace=False)
        matrix = np.zeros(total, dtype=np.int8)
        matrix[chosen] = self._rng.choice(np.array([-1, 1, 1], dtype=np.int8), size=count)
        return matrix.reshape(n_src, self.units)

    def _build_sensory(self):
        self.sensory_adjacency = self._draw(self.input_size)


class LowRankSparse(RandomSparse):
    """Low-rank plus sparse recurrent connectivity: W_rec = (W1 W2) ⊙ M.

    The mask M keeps a random ``1 - sparsity`` fraction of the recurrent synapses (the
    adjacency); the cells parameterise the recurrent weights by two factors of rank ``rank``
    (LTC: w = softplus(W1) softplus(W2) ⊙ M, positive and of rank at most ``rank``; CfC:
    (W1 W2) ⊙ M in the recurrent block of each head). Sensory synapses are all present.

    Parameters
    ----------
    units : int
    rank : int, 1 <= rank <= units
    output_size : int, optional
    sparsity : float in [0, 1)
    seed : int
    """

    def __init__(self, units: int, rank: int, output_size: int | None = None,
                 sparsity: float = 0.5, seed: int = 1111):
        super().__init__(units, output_size, sparsity, seed)
        self.rank = check_positive(rank, "rank", integer=True)
        if self.rank > self.units:
            raise ValueError(f"rank ({self.rank}) cannot exceed units ({self.units})")

    def _build_sensory(self):
        self.sensory_adjacency = self._rng.choice(
            np.array([-1, 1, 1], dtype=np.int8), size=(self.input_size, self.units))


class NCP(Wiring):
    """Neural circuit policy: sensory -> inter -> command (recurrent) -> motor.

    Neuron order: motor neurons first (indices 0..motor-1, the outputs), then command,
    then inter. Draws the same synapses as ncps 1.0.1's ``NCP`` for the same arguments.

    Parameters
    ----------
    inter_neurons, command_neurons, motor_neurons : int
        Layer sizes.
    sensory_fanout : int
        Synapses from each input to the inter neurons (<= inter_neurons).
    inter_fanout : int
        Synapses from each inter neuron to the command neurons (<= command_neurons).
    recurrent_command_synapses : int
        Random synapses among the command neurons.
    motor_fanin : int
        Synapses from the command neurons into each motor neuron (<= command_neurons).
    seed : int
    """

    def __init__(self, inter_neurons: int, command_neurons: int, motor_neurons: int,
                 sensory_fanout: int, inter_fanout: int, recurrent_command_synapses: int,
                 motor_fanin: int, seed: int = 22222):
        n_inter = check_positive(inter_neurons, "inter_neurons", integer=True)
        n_command = check_positive(command_neurons, "command_neurons", integer=True)
        n_motor = check_positive(motor_neurons, "motor_neurons", integer=True)
        super().__init__(n_inter + n_command + n_motor, n_motor)
        self.sensory_fanout = check_positive(sensory_fanout, "sensory_fanout", integer=True)
        self.inter_fanout = check_positive(inter_fanout, "inter_fanout", integer=True)
        self.recurrent_command_synapses = check_positive(
            recurrent_command_synapses, "recurrent_command_synapses", integer=True,
            allow_zero=True)
        self.motor_fanin = check_positive(motor_fanin, "motor_fanin", integer=True)
        for name, value, limit, what in (
                ("motor_fanin", self.motor_fanin, n_command, "command"),
                ("sensory_fanout", self.sensory_fanout, n_inter, "inter"),
                ("inter_fanout", self.inter_fanout, n_command, "command")):
            if value > limit:
                raise ValueError(f"{name} is {value} but there are only {limit} {what} "
                                 "neurons")
        self.motor_neurons = list(range(n_motor))
        self.command_neurons = list(range(n_motor, n_motor + n_command))
        self.inter_neurons = list(range(n_motor + n_command, self.units))
        self._rng = np.random.RandomState(seed)
        # The recurrent synapses depend on draws made after the sensory ones (ncps's order),
        # so everything is drawn in build().

    @property
    def layers(self):
        return [self.inter_neurons, self.command_neurons, self.motor_neurons]

    def _choice(self, population, size):
        return self._rng.choice(population, size=size, replace=False)

    def _polarity(self) -> int:
        return int(self._rng.choice([-1, 1]))

    def _build_sensory(self):
        rng, sensory = self._rng, list(range(self.input_size))
        # sensory -> inter; inter neurons no input reached get a mean fan-in of inputs.
        unreached = list(self.inter_neurons)
        for src in sensory:
            for dest in self._choice(self.inter_neurons, self.sensory_fanout):
                if dest in unreached:
                    unreached.remove(dest)
                self._add(self.sensory_adjacency, src, dest, self._polarity())
        fanin = int(np.clip(int(self.input_size * self.sensory_fanout / len(self.inter_neurons)),
                            1, self.input_size))
        for dest in unreached:
            for src in self._choice(sensory, fanin):
                self._add(self.sensory_adjacency, src, dest, self._polarity())
        # inter -> command
        unreached = list(self.command_neurons)
        for src in self.inter_neurons:
            for dest in self._choice(self.command_neurons, self.inter_fanout):
                if dest in unreached:
                    unreached.remove(dest)
                self._add(self.adjacency, src, dest, self._polarity())
        fanin = int(np.clip(int(len(self.inter_neurons) * self.inter_fanout
                                / len(self.command_neurons)), 1, len(self.command_neurons)))
        for dest in unreached:
            for src in self._choice(self.inter_neurons, fanin):
                self._add(self.adjacency, src, dest, self._polarity())
        # command -> command (recurrent)
        for _ in range(self.recurrent_command_synapses):
            src = rng.choice(self.command_neurons)
            dest = rng.choice(self.command_neurons)
            self._add(self.adjacency, src, dest, self._polarity())
        # command -> motor; command neurons that reach no motor neuron get a mean fan-out.
        unreached = list(self.command_neurons)
        for dest in self.motor_neurons:
            for src in self._choice(self.command_neurons, self.motor_fanin):
                if src in unreached:
                    unreached.remove(src)
                self._add(self.adjacency, src, dest, self._polarity())
        fanout = int(np.clip(int(len(self.motor_neurons) * self.motor_fanin
                                 / len(self.command_neurons)), 1, len(self.motor_neurons)))
        for src in unreached:
            for dest in self._choice(self.motor_neurons, fanout):
                self._add(self.adjacency, src, dest, self._polarity())


class AutoNCP(NCP):
    """An :class:`NCP` sized from the number of units, outputs and a sparsity level.

    40% of the non-motor neurons are command neurons, the rest inter neurons; fan-outs
    scale with ``1 - sparsity`` (ncps 1.0.1's rule, same draws for the same seed).

    Parameters
    ----------
    units : int
    output_size : int, < units - 2
    sparsity : float in [0.1, 1.0]
    seed : int
    """

    def __init__(self, units: int, output_size: int, sparsity: float = 0.5, seed: int = 22222):
        units = check_positive(units, "units", integer=True)
        output_size = check_positive(output_size, "output_size", integer=True)
        if output_size >= units - 2:
            raise ValueError(f"output_size must be less than units - 2 (units={units}, "
                             f"output_size={output_size})")
        self.sparsity = check_in_range(sparsity, "sparsity", 0.1, 1.0)
        density = 1.0 - self.sparsity
        inter_and_command = units - output_size
        command = max(int(0.4 * inter_and_command), 1)
        inter = inter_and_command - command
        super().__init__(inter, command, output_size,
                         sensory_fanout=max(int(inter * density), 1),
                         inter_fanout=max(int(command * density), 1),
                         recurrent_command_synapses=max(int(command * density * 2), 1),
                         motor_fanin=max(int(command * density), 1), seed=seed)


def resolve_wiring(units, input_size: int) -> Wiring:
    """A built wiring from an int (fully connected) or a Wiring (built for ``input_size``)."""
    if isinstance(units, Wiring):
        units.check_fits(input_size)
        return units.build(input_size)
    if isinstance(units, bool) or not isinstance(units, int | np.integer):
        raise TypeError(f"units must be an int or a tsrnn.nn.wirings.Wiring, got "
                        f"{type(units).__name__}")
    return FullyConnected(int(units)).build(input_size)
