"""The leaky echo-state reservoir as a torch module.

Jaeger & Haas (2004), "Harnessing nonlinearity: predicting chaotic systems and saving energy
in wireless communication", Science 304; Jaeger et al. (2007), "Optimization and
applications of echo state networks with leaky-integrator neurons", Neural Networks 20.

    x_t = (1 - a) x_{t-1} + a tanh(W_in u_t + W x_{t-1} + b)

W is sparse (CSR) or dense. The weights are fixed buffers, never trained. On the CPU a sparse
reservoir runs in a compiled kernel (:mod:`tsrnn.reservoir._esn_cpu`: the whole run in one
call, batches in tiles with vectorised inner loops, OpenMP over tiles). The kernel computes
in float64; a float32 reservoir runs there too, on its float32 weights, and its states are
rounded to float32 (as fast as float64 there, and closer to the exact recurrence than
float32 arithmetic). Without a C compiler, or for dense W, it runs through scipy's sparse
kernels on numpy views of the buffers (one call per step instead of several torch
dispatches); on a GPU in torch.
"""

from __future__ import annotations

import collections
import itertools
import threading
import warnings

import numpy as np
import scipy.sparse as sparse
import torch
from torch import nn

from .._validation import check_in_range, check_positive
from . import _esn_cpu

# The dtypes of reservoirs the compiled kernel runs (in float64 arithmetic).
_KERNEL_DTYPES = (torch.float64, torch.float32)


def _float64(tensor: torch.Tensor) -> np.ndarray:
    """A CPU tensor as a float64 numpy array (a view when it is float64 already)."""
    return tensor.numpy().astype(np.float64, copy=False)


def segment_plan(length: int, n_segments: int, washout: int) -> tuple[int, int] | None:
    """(number of segments, steps per segment) cutting ``length`` steps into at most
    ``n_segments`` segments of at least ``washout`` steps, none empty; None when fewer than
    two would remain."""
    if washout < 1:
        raise ValueError(f"washout must be at least 1 step, got {washout}")
    n_segments = max(1, min(n_segments, length // washout))
    if n_segments < 2:
        return None
    segment = -(-length // n_segments)  # ceil
    n_segments = -(-length // segment)  # no empty last segment
    return None if n_segments < 2 else (n_segments, segment)


def seam_tolerance(dtype: torch.dtype) -> float:
    """How closely a segment's seam must meet the previous segment's last state (relative
    to the state's size) in arithmetic of ``dtype``: 1e-12, or 100 ulp where that is more
    (float32: 1.2e-5). Two float32 runs that forgot their different starts still differ by
    their round-off, a few ulp; a seam held to 1e-12 there never closed, and every float32
    run fell back to the sequential one after the segmented one was paid for."""
    return max(1e-12, 100 * torch.finfo(dtype).eps)


def segmented_run(reservoir: nn.Module, inputs: torch.Tensor, n_segments: int, segment: int,
                  washout: int, tolerance: float | None, state: torch.Tensor | None
                  ) -> torch.Tensor | None:
    """The states (L, N) of one sequence (L, I) run as ``n_segments`` segments of ``segment``
    steps in one batch through ``reservoir(inputs (B, L, I), state (B, N))``, segment k >= 1
    started from zeros ``washout`` steps early; None when a seam does not close to
    ``tolerance`` (relative to the state's size; None: :func:`seam_tolerance` of the states'
    dtype). What ``run_segmented`` of any reservoir does where no compiled kernel applies."""
    length = inputs.shape[0]
    span = washout + segment
    padded = inputs.new_zeros((n_segments, span, inputs.shape[1]))
    padded[0, : min(span, length)] = inputs[:span]
    for k in range(1, n_segments):
        start = k * segment - washout
        piece = inputs[start: start + span]
        padded[k, : piece.shape[0]] = piece
    start_states = None
    if state is not None:
        start_states = padded.new_zeros((n_segments, reservoir.n_units))
        start_states[0] = state
    states, _ = reservoir(padded, start_states)
    if tolerance is None:
        tolerance = seam_tolerance(states.dtype)
    pieces = [states[0, :segment]]
    previous_last = states[0, segment - 1]
    for k in range(1, n_segments):
        seam = states[k, washout - 1]
        scale = 1.0 + float(previous_last.abs().max())
        if float((seam - previous_last).abs().max()) > tolerance * scale:
            return None
        pieces.append(states[k, washout: washout + segment])
        previous_last = states[k, washout + segment - 1]
    return torch.cat(pieces)[:length]


class LeakyReservoir(nn.Module):
    """A leaky-integrator tanh reservoir with fixed weights.

    Parameters
    ----------
    recurrent : scipy sparse matrix or array (N, N)
        W.
    input_weights : array (N, I)
        W_in.
    bias : array (N,)
        b.
    leak_rate : float in (0, 1]
        a; 1 gives the plain (non-leaky) reservoir.
    dtype : torch dtype of the buffers (float64 by default).

    Shapes
    ------
    inputs : (B, L, I); state : (B, N) or None (zeros).
    Returns the states (B, L, N) and the final state (B, N).
    """

    def __init__(self, recurrent, input_weights: np.ndarray, bias: np.ndarray,
                 leak_rate: float = 1.0, dtype: torch.dtype = torch.float64):
        super().__init__()
        check_in_range(leak_rate, "leak_rate", 0.0, 1.0, closed="right")
        self.leak_rate = float(leak_rate)
        self.n_units = int(input_weights.shape[0])
        self.n_inputs = int(input_weights.shape[1])
        self.is_sparse = sparse.issparse(recurrent)
        if self.is_sparse:
            csr = sparse.csr_array(recurrent)
            csr.sort_indices()
            # CSR as three plain buffers: state dicts of plain tensors load with
            # torch.load(weights_only=True) anywhere.
            self.register_buffer("recurrent_indptr",
                                 torch.as_tensor(csr.indptr, dtype=torch.int64))
            self.register_buffer("recurrent_indices",
                                 torch.as_tensor(csr.indices, dtype=torch.int64))
            self.register_buffer("recurrent_values", torch.as_tensor(csr.data, dtype=dtype))
        else:
            self.register_buffer("recurrent_dense", torch.as_tensor(np.asarray(recurrent),
                                                                    dtype=dtype))
        self.register_buffer("input_weights", torch.as_tensor(input_weights, dtype=dtype))
        self.register_buffer("bias", torch.as_tensor(bias, dtype=dtype))
        self._cache_key = None
        self._scipy = None
        self._torch_sparse = None
        self._input_csr = None
        self._kernel_csr = None

    @classmethod
    def from_state_dict(cls, state: dict, leak_rate: float,
                        dtype: torch.dtype = torch.float64) -> LeakyReservoir:
        """The reservoir whose buffers ``state`` holds (a ``state_dict()``): what loading a
        saved model needs, without drawing (and scaling) a random W only to overwrite it."""
        def array(name: str) -> np.ndarray:
            return state[name].detach().cpu().numpy()

        n_units = int(state["input_weights"].shape[0])
        if "recurrent_indptr" in state:
            recurrent = sparse.csr_array(
                (array("recurrent_values"), array("recurrent_indices"),
                 array("recurrent_indptr")), shape=(n_units, n_units))
        else:
            recurrent = array("recurrent_dense")
        return cls(recurrent, array("input_weights"), array("bias"), leak_rate, dtype=dtype)

    def __getstate__(self) -> dict:
        # The operator views are derived from the buffers and rebuilt on demand; a torch
        # sparse CSR tensor cannot be deep-copied (copy.deepcopy of a fitted ESN failed).
        state = self.__dict__.copy()
        state.update(_cache_key=None, _scipy=None, _torch_sparse=None, _input_csr=None,
                     _kernel_csr=None)
        return state

    # ------------------------------------------------------------------ the operator W
    def _refresh(self) -> None:
        """(Re)build the operator views when the buffers moved or changed dtype."""
        reference = self.recurrent_values if self.is_sparse else self.recurrent_dense
        key = (reference.device, reference.dtype, reference.data_ptr())
        if key == self._cache_key:
            return
        self._cache_key = key
        self._scipy = self._torch_sparse = self._input_csr = self._kernel_csr = None
        if not self.is_sparse:
            return
        if reference.device.type == "cpu":
            self._scipy = sparse.csr_array(
                (self.recurrent_values.numpy(), self.recurrent_indices.numpy(),
                 self.recurrent_indptr.numpy()), shape=(self.n_units, self.n_units))
        with warnings.catch_warnings():  # torch calls its CSR support "beta" on every build
            warnings.simplefilter("ignore", UserWarning)
            self._torch_sparse = torch.sparse_csr_tensor(
                self.recurrent_indptr, self.recurrent_indices, self.recurrent_values,
                (self.n_units, self.n_units), check_invariants=False)

    def _kernel(self) -> _esn_cpu.CSR | None:
        """W in the compiled kernel's layout, or None where the kernel does not apply (dense
        W, neither float64 nor float32, not on the CPU, or no compiler). The layout holds
        float64 values (a float32 W exactly, widened)."""
        self._refresh()
        if (not self.is_sparse or self.recurrent_values.device.type != "cpu"
                or self.recurrent_values.dtype not in _KERNEL_DTYPES
                or not _esn_cpu.available()):
            return None
        if self._kernel_csr is None:
            self._kernel_csr = _esn_cpu.CSR(self.recurrent_indptr.numpy(),
                                            self.recurrent_indices.numpy(),
                                            self.recurrent_values.numpy(), self.n_units)
        return self._kernel_csr

    def _run_kernel(self, csr: _esn_cpu.CSR, inputs: np.ndarray, state: np.ndarray | None,
                    out: np.ndarray, rows: np.ndarray, threads: int | None = None
                    ) -> np.ndarray:
        """Run the compiled kernel: states to ``out`` rows ``rows`` (B, L); final (B, N).
        ``threads``: OpenMP threads (default torch's thread count)."""
        start = None if state is None else np.ascontiguousarray(state, np.float64)
        return _esn_cpu.run(csr, _float64(self.input_weights), _float64(self.bias),
                            self.leak_rate, np.ascontiguousarray(inputs, dtype=np.float64),
                            start, out, rows,
                            threads=torch.get_num_threads() if threads is None else threads)

    def recurrent_matrix(self):
        """W as a scipy CSR array (sparse) or a numpy array (dense), on the CPU."""
        if self.is_sparse:
            return sparse.csr_array(
                (self.recurrent_values.cpu().numpy(), self.recurrent_indices.cpu().numpy(),
                 self.recurrent_indptr.cpu().numpy()), shape=(self.n_units, self.n_units))
        return self.recurrent_dense.cpu().numpy()

    # ------------------------------------------------------------------ the recurrence
    @torch.no_grad()
    def forward(self, inputs: torch.Tensor, state: torch.Tensor | None = None):
        batch = inputs.shape[0]
        if state is None:
            state = inputs.new_zeros((batch, self.n_units))
        self._refresh()
        kernel = self._kernel() if inputs.dtype == self.input_weights.dtype else None
        if inputs.device.type == "cpu" and kernel is not None:
            length = inputs.shape[1]
            out = np.empty((batch * length, self.n_units))
            rows = np.arange(batch * length, dtype=np.int64).reshape(batch, length)
            self._run_kernel(kernel, inputs.numpy(), state.numpy(), out, rows)
            states = torch.from_numpy(out.reshape(batch, length, self.n_units)).to(
                inputs.dtype)
        elif inputs.device.type == "cpu":
            states = self._run_numpy(inputs.numpy(), state.numpy().copy())
            states = torch.from_numpy(states)
        else:
            states = self._run_torch(inputs, state)
        return states, states[:, -1]

    def _run_numpy(self, inputs: np.ndarray, state: np.ndarray) -> np.ndarray:
        # W_in u_t is formed step by step: materialising it for a long series would write
        # and read L x N values, which costs more than the products themselves.
        leak = self.leak_rate
        weights_in = self.input_operator()
        bias = self.bias.numpy()
        batch, length, _ = inputs.shape
        states = np.empty((batch, length, self.n_units), dtype=bias.dtype)
        if batch == 1:
            multiply_add = self._matvec_into()
            x = state[0]
            for t in range(length):
                activation = weights_in @ inputs[0, t]
                activation += bias
                multiply_add(x, activation)
                np.tanh(activation, out=activation)
                x = activation if leak == 1.0 else (1.0 - leak) * x + leak * activation
                states[0, t] = x
            return states
        # Several sequences at once: torch's sparse-dense product (MKL on the CPU) costs a
        # quarter of scipy's per column at 32 columns.
        torch_states = self._run_torch(torch.from_numpy(inputs), torch.from_numpy(state))
        return torch_states.numpy()

    def input_operator(self):
        """W_in on the CPU for products with input vectors: a scipy CSR array when it is
        sparse (Pathak et al.'s one input per unit: a 4000 x 64 product drops from ~107 to
        ~16 us), else the dense numpy array."""
        self._refresh()
        if self._input_csr is None:
            weights = self.input_weights.numpy()
            density = np.count_nonzero(weights) / max(weights.size, 1)
            self._input_csr = sparse.csr_array(weights) if density < 0.25 else weights
        return self._input_csr

    def _matvec_into(self):
        """A function ``(x, out)`` doing ``out += W @ x`` with the least overhead per call."""
        if not self.is_sparse:
            dense = self.recurrent_dense.numpy()

            def dense_multiply_add(x, out):
                out += dense @ x

            return dense_multiply_add
        csr = self._scipy
        n = self.n_units
        try:  # scipy's C kernel, called directly: ~10 us less per step than ``csr @ x``
            from scipy.sparse._sparsetools import csr_matvec

            indptr, indices, data = csr.indptr, csr.indices, csr.data
            csr_matvec(n, n, indptr, indices, data, np.zeros(n, data.dtype),
                       np.zeros(n, data.dtype))

            def sparse_multiply_add(x, out):
                csr_matvec(n, n, indptr, indices, data, x, out)

            return sparse_multiply_add
        except (ImportError, TypeError, ValueError):  # a scipy without that private kernel
            def fallback_multiply_add(x, out):
                out += csr @ x

            return fallback_multiply_add

    def _run_torch(self, inputs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        # States are kept as columns (N, B), so that the sparse-dense product reads a
        # contiguous operand; W_in u_t is formed per step (materialising it for a batch of
        # long sequences would move more memory than the products do).
        leak = self.leak_rate
        batch, length, _ = inputs.shape
        states = inputs.new_empty((batch, length, self.n_units))
        input_columns = inputs.permute(1, 2, 0).contiguous()  # (L, I, B)
        bias = self.bias[:, None]
        columns = state.T.contiguous()
        for t in range(length):
            if self.is_sparse:
                activation = torch.sparse.mm(self._torch_sparse, columns)
            else:
                activation = self.recurrent_dense @ columns
            activation.addmm_(self.input_weights, input_columns[t]).add_(bias).tanh_()
            columns = activation if leak == 1.0 else (1.0 - leak) * columns + leak * activation
            states[:, t] = columns.T
        return states

    @torch.no_grad()
    def run_segmented(self, inputs: torch.Tensor, n_segments: int, washout: int,
                      tolerance: float | None = None, state: torch.Tensor | None = None
                      ) -> torch.Tensor | None:
        """States of one sequence, computed as parallel time segments.

        The sequence (L, I) is cut into ``n_segments`` consecutive segments run as one
        batch; the first starts from ``state`` (N,) (zeros when None), every other one from
        the zero state ``washout`` steps before its first step.
        By the echo state property the state forgets its start, so every segment joins the
        sequential trajectory; this is verified at each seam (the state one step before a
        segment against the previous segment's last state, to ``tolerance`` relative to
        the state's size). Returns the states (L, N), or None when a seam fails (too short
        a washout for this reservoir): then run sequentially.
        """
        plan = segment_plan(inputs.shape[0], n_segments, washout)
        if plan is None:
            return None
        n_segments, segment = plan
        kernel = self._kernel() if inputs.dtype == self.input_weights.dtype else None
        if inputs.device.type == "cpu" and kernel is not None:
            states = self._run_segmented_kernel(
                kernel, inputs.numpy(), n_segments, segment, washout,
                seam_tolerance(torch.float64) if tolerance is None else tolerance, state)
            return None if states is None else states.to(inputs.dtype)
        return segmented_run(self, inputs, n_segments, segment, washout, tolerance, state)

    def _run_segmented_kernel(self, kernel: _esn_cpu.CSR, inputs: np.ndarray,
                              n_segments: int, segment: int, washout: int, tolerance: float,
                              state: torch.Tensor | None) -> torch.Tensor | None:
        """:meth:`run_segmented` through the compiled kernel, which writes every kept state
        straight to its place in the result (no padded batch of states, no concatenation).

        Segment k >= 1 reads the inputs from ``k * segment - washout``; its state one step
        before its first kept step (the seam) goes to an extra row after the ``length``
        rows of the result."""
        length = inputs.shape[0]
        padded, rows = _segment_layout(inputs, n_segments, segment, washout)
        for k in range(1, n_segments):
            rows[k, washout - 1] = length + k - 1
        start_states = None
        if state is not None:
            start_states = np.zeros((n_segments, self.n_units))
            start_states[0] = state.cpu().double().numpy()
        out = np.empty((length + n_segments - 1, self.n_units))
        self._run_kernel(kernel, padded, start_states, out, rows)
        for k in range(1, n_segments):
            seam, previous_last = out[length + k - 1], out[k * segment - 1]
            scale = 1.0 + float(np.abs(previous_last).max())
            if float(np.abs(seam - previous_last).max()) > tolerance * scale:
                return None
        return torch.from_numpy(out)[:length]

    @torch.no_grad()
    def stream_segmented(self, inputs: np.ndarray, consume, n_segments: int, washout: int,
                         *, first: int = 0, chunk_rows: int = 4096, extra_columns: int = 0,
                         workers: int | None = None, tolerance: float = 1e-12
                         ) -> bool | None:
        """The states of one long sequence as parallel time segments (as
        :meth:`run_segmented`), handed over in chunks instead of returned whole.

        Every state whose time index is at least ``first`` is passed once to a consumer
        ``consume(times, rows)``: ``times`` (R,) the time indices, ``rows`` (R, N +
        extra_columns) a view of a C-contiguous buffer reused for a later chunk, the state
        in the first N columns and ``extra_columns`` columns for the consumer to fill
        (``consume`` may overwrite all of it), R <= ``chunk_rows`` (rounded to whole steps
        of the segments), rows in no particular time order. Memory stays at one chunk per
        consumer whatever the length of the sequence.

        Worker threads. ``consume`` may be a list of consumers, shared out evenly between
        ``workers`` threads (default: one consumer each). The segments are shared out too,
        consecutive ones to each worker, which runs the compiled kernel over them on one
        thread (the GIL released) and hands its chunks to its consumers in turn, each
        chunk in a buffer of its consumer's own. A worker with nothing of its own to do
        takes the next waiting chunk of another worker (so a slow core does not hold the
        others up), but every consumer still receives its chunks one at a time and in the
        same order, whichever thread calls it: sums accumulated per consumer come out the
        same, to the bit, run after run. Consumers that release the GIL (BLAS through
        ctypes, numpy) run in parallel.

        The seams (see :meth:`run_segmented`) can only be checked once every segment has
        run, so this returns True when they all closed to ``tolerance``, and False when one
        did not: the chunks consumed were then not the sequence's true states and must be
        discarded. Returns None, having consumed nothing, where the compiled kernel does not
        apply (then use :meth:`run_segmented` or :meth:`forward`).

        Parameters
        ----------
        inputs : array (L, I)
        consume : callable (times (R,) int64, rows (R, N + extra_columns) float64) -> None,
            or a list of them
        n_segments, washout : int
            As in :meth:`run_segmented` (washout >= 1).
        first : int
            States before this time index are not handed over (a warm-up).
        chunk_rows : int
            Rows per chunk (and per buffer).
        extra_columns : int
            Columns after the state in each row of the buffer, left to the consumer.
        workers : int, optional
            Worker threads; the number of consumers must be a multiple of it.
        """
        if washout < 1:
            raise ValueError(f"washout must be at least 1 step, got {washout}")
        check_positive(extra_columns, "extra_columns", integer=True, allow_zero=True)
        consumers = list(consume) if isinstance(consume, (list, tuple)) else [consume]
        if not consumers or not all(callable(c) for c in consumers):
            raise TypeError("consume must be a callable or a non-empty list of callables")
        workers = len(consumers) if workers is None else check_positive(
            workers, "workers", integer=True)
        if len(consumers) % workers:
            raise ValueError(f"{len(consumers)} consumers cannot be shared evenly between "
                             f"{workers} workers")
        kernel = self._kernel()
        if kernel is None:
            return None
        inputs = np.asarray(inputs, dtype=np.float64)
        length = inputs.shape[0]
        n_segments = max(1, min(n_segments, length // washout))
        segment = -(-length // n_segments)
        n_segments = -(-length // segment)
        if n_segments < 2:
            return None
        span = washout + segment
        padded, times = _segment_layout(inputs, n_segments, segment, washout)
        times[times < first] = -1
        per_worker = len(consumers) // workers
        workers = min(workers, n_segments)
        slots = [consumers[w * per_worker:(w + 1) * per_worker] for w in range(workers)]
        # Consecutive segments to each worker, as evenly as they go.
        edges = np.linspace(0, n_segments, workers + 1).round().astype(int)
        # Chunks also end where the seams and the segments' last states fall, so that the
        # kernel's final states there are the states the seams compare.
        steps = max(1, chunk_rows // int(np.diff(edges).max()))
        bounds = sorted(set(range(0, span, steps)) | {washout, segment, span})
        chunks = list(itertools.pairwise(bounds))
        seams = np.empty((n_segments, self.n_units))  # segment k's state before its first
        lasts = np.empty((n_segments, self.n_units))  # segment k's last state
        threads = torch.get_num_threads() if workers == 1 else 1
        buffers = [[np.empty(((edges[w + 1] - edges[w]) * max(b - a for a, b in chunks),
                              self.n_units + extra_columns)) for _ in slots[w]]
                   for w in range(workers)]
        schedule = _ChunkSchedule(workers, per_worker, len(chunks))
        kernel_states: list[np.ndarray | None] = [None] * workers

        def produce(worker: int, k: int):
            """Run worker's segments over chunk k into its buffer k % per_worker; returns
            the kept times, or None when the chunk keeps no state."""
            low, high = int(edges[worker]), int(edges[worker + 1])
            a, b = chunks[k]
            chunk_times = times[low:high, a:b]
            kept = chunk_times >= 0
            rows = np.full(chunk_times.shape, -1, dtype=np.int64)
            rows[kept] = np.arange(int(kept.sum()))
            state = self._run_kernel(kernel, padded[low:high, a:b], kernel_states[worker],
                                     buffers[worker][k % per_worker], rows, threads=threads)
            kernel_states[worker] = state
            if b == washout:
                seams[low:high] = state
            if b == segment and low == 0:
                lasts[0] = state[0]
            if b == span:
                lasts[max(low, 1):high] = state[max(low, 1) - low:]
            return chunk_times[kept] if kept.any() else None

        def handle(worker: int, k: int, kept_times) -> None:
            slot = k % per_worker
            rows = buffers[worker][slot][:kept_times.size]
            slots[worker][slot](kept_times, rows)

        if workers == 1 and per_worker == 1:  # one thread, one buffer: no scheduling
            for k in range(len(chunks)):
                kept_times = produce(0, k)
                if kept_times is not None:
                    handle(0, k, kept_times)
        else:
            _run_workers(lambda w: schedule.run(w, produce, handle), workers,
                         on_error=schedule.abort)
        scale = 1.0 + np.abs(lasts[:-1]).max(axis=1)
        return bool(np.all(np.abs(seams[1:] - lasts[:-1]).max(axis=1) <= tolerance * scale))

    def step(self, u: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """One differentiable step (B, I), (B, N) -> (B, N), for analysis (Jacobians)."""
        self._refresh()
        if self.is_sparse:
            recurrent = (self._torch_sparse @ state.T).T
        else:
            recurrent = state @ self.recurrent_dense.T
        activation = torch.tanh(recurrent + u @ self.input_weights.T + self.bias)
        return (1.0 - self.leak_rate) * state + self.leak_rate * activation


class _ChunkSchedule:
    """Who does what next in :meth:`LeakyReservoir.stream_segmented` with worker threads.

    Worker w alone produces its chunks 0, 1, ... (the kernel carries its segments' states
    from one to the next), chunk k into its buffer k % S (S buffers and consumers per
    worker); chunk k can only be produced once chunk k - S, which used that buffer, has been
    consumed. Produced chunks wait in one queue, oldest first, and any worker may consume
    one. So a consumer gets its chunks in order and one at a time (its buffer is not
    refilled before), whichever thread runs it. A worker produces when it can, else
    consumes, else waits; all leave once every chunk is consumed (or on an error).
    """

    def __init__(self, n_workers: int, per_worker: int, n_chunks: int):
        self.per_worker, self.n_chunks = per_worker, n_chunks
        self.next_chunk = [0] * n_workers  # the next chunk each worker produces
        self.busy = [[False] * per_worker for _ in range(n_workers)]  # buffer in use
        self.waiting: collections.deque = collections.deque()  # (worker, k, times)
        self.unfinished = n_workers * n_chunks  # chunks not yet consumed (or empty)
        self.failed = False
        self.condition = threading.Condition()

    def abort(self) -> None:
        with self.condition:
            self.failed = True
            self.condition.notify_all()

    def run(self, worker: int, produce, handle) -> None:
        while True:
            with self.condition:
                while True:
                    if self.failed or self.unfinished == 0:
                        return
                    k = self.next_chunk[worker]
                    if k < self.n_chunks and not self.busy[worker][k % self.per_worker]:
                        self.busy[worker][k % self.per_worker] = True
                        self.next_chunk[worker] += 1
                        task = ("produce", worker, k, None)
                        break
                    if self.waiting:
                        task = ("consume", *self.waiting.popleft())
                        break
                    self.condition.wait()
            kind, owner, k, kept_times = task
            if kind == "produce":
                kept_times = produce(owner, k)
                with self.condition:
                    if kept_times is None:  # nothing kept (a washout): buffer free again
                        self.busy[owner][k % self.per_worker] = False
                        self.unfinished -= 1
                    else:
                        self.waiting.append((owner, k, kept_times))
                    self.condition.notify_all()
            else:
                handle(owner, k, kept_times)
                with self.condition:
                    self.busy[owner][k % self.per_worker] = False
                    self.unfinished -= 1
                    self.condition.notify_all()


def _run_workers(work, n_workers: int, on_error=None) -> None:
    """Run ``work(0) .. work(n_workers - 1)``, the first in this thread and the others in
    threads of their own; on an error call ``on_error()`` (to release the others) and
    re-raise the first error once all have finished."""
    if n_workers == 1:
        work(0)
        return
    errors: list[BaseException] = []

    def guarded(worker: int) -> None:
        try:
            work(worker)
        except BaseException as error:  # handed to the calling thread
            errors.append(error)
            if on_error is not None:
                on_error()

    others = [threading.Thread(target=guarded, args=(w,), daemon=True)
              for w in range(1, n_workers)]
    for thread in others:
        thread.start()
    guarded(0)
    for thread in others:
        thread.join()
    if errors:
        raise errors[0]


def _segment_layout(inputs: np.ndarray, n_segments: int, segment: int, washout: int):
    """The inputs of a segmented run, (n_segments, washout + segment, I), and the time index
    of each segment's state after each of its steps, (n_segments, washout + segment), -1
    where a state is not kept.

    Segment k >= 1 reads the inputs from ``k * segment - washout`` and keeps its states from
    step ``washout`` on; segment 0 reads from 0 and keeps its first ``segment`` states."""
    length, n_inputs = inputs.shape
    span = washout + segment
    padded = np.zeros((n_segments, span, n_inputs))
    times = np.full((n_segments, span), -1, dtype=np.int64)
    padded[0, : min(span, length)] = inputs[:span]
    times[0, :segment] = np.arange(segment)
    for k in range(1, n_segments):
        start = k * segment - washout
        piece = inputs[start: start + span]
        padded[k, : piece.shape[0]] = piece
        kept = min(segment, length - k * segment)
        times[k, washout: washout + kept] = np.arange(k * segment, k * segment + kept)
    return padded, times
