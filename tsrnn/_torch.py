"""Small torch helpers: device and dtype resolution, seeding."""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import random
import threading

import numpy as np
import torch

from ._validation import check_positive

_DTYPES = {
    "float64": torch.float64,
    "double": torch.float64,
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"`` gives CUDA when present, else the CPU; asking for an absent
    CUDA device is an error rather than a silent fallback."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"unknown device {device!r}: {error}") from error
    if device.type not in ("cpu", "cuda"):
        # Other backends (mps, xpu, ...) are untested here, and several models need float64.
        raise ValueError(f"device {str(device)!r} is not supported: tsrnn runs on 'cpu' or "
                         "'cuda'")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was requested but no CUDA device is available")
    if device.type == "cuda" and device.index is not None \
            and device.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ValueError(f"device {str(device)!r} was requested but this machine has {count} "
                         f"CUDA device{'s' if count != 1 else ''} (cuda:0"
                         f"{f' to cuda:{count - 1}' if count > 1 else ''})")
    return device


def resolve_dtype(dtype: str | torch.dtype | None, default: torch.dtype = torch.float32
                  ) -> torch.dtype:
    """Accept a torch dtype, a numpy dtype or a name such as ``"float64"``."""
    if dtype is None:
        return default
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point type, got {dtype}")
        return dtype
    if isinstance(dtype, str) and dtype.strip().lower() in ("float", "float_"):
        # numpy reads "float" as float64 and torch.float is float32: refuse to guess.
        raise ValueError(f"dtype {dtype!r} is ambiguous (numpy reads it as float64, torch as "
                         "float32); give 'float32' or 'float64'")
    name = dtype if isinstance(dtype, str) and dtype in _DTYPES else None
    if name is None:
        try:  # numpy's spellings: np.float64, "f8", "<f4", ...
            name = np.dtype(dtype).name
        except TypeError:
            name = None
    if name not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(_DTYPES)} "
                         "(or a torch or numpy floating-point dtype)")
    return _DTYPES[name]


def torch_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator seeded from ``seed`` (fresh entropy when ``None``)."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(seed))
    return generator


def seed_everything(seed: int | None) -> None:
    """Seed Python, numpy and torch global generators (used by estimators' ``random_state``)."""
    if seed is None:
        return
    # numpy's own errors for a float, a string or a negative seed do not name random_state.
    seed = check_positive(seed, "random_state", integer=True, allow_zero=True)
    if seed >= 2**63:  # torch's generators take 64-bit seeds
        raise ValueError(f"random_state must be below 2**63, got {seed}")
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (code outside tsrnn may use the legacy API)
    torch.manual_seed(seed)


@contextlib.contextmanager
def at_most_threads(n: int):
    """Run a block with torch's CPU threads limited to ``n`` (restored afterwards).

    For loops of small operations: each op's work is split over the threads, which then
    wait for each other, and on a busy machine (more runnable threads than cores) every
    such wait costs a time slice: a map's Lyapunov spectrum took 60 s with two threads on
    two shared cores and 1 s with one. The setting is process-wide for the block's span.
    """
    previous = torch.get_num_threads()
    if previous <= n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def seeded_generators(seed: int | None, device: torch.device | None = None):
    """Run a block with Python's, numpy's and torch's global generators seeded from ``seed``
    (from fresh entropy when it is None), and give the caller's generator states back afterwards.

    torch modules draw their initial weights and dropout masks from torch's global
    generator, so a fit seeds it to be reproducible; restoring the states keeps that from
    reaching the caller (scikit-learn's estimators never reseed the caller's generators).
    ``device``: a CUDA device whose generator is forked too, from the main thread only:
    the device's generator is one for all threads, and trainings that share a GPU as
    threads (DSR ``n_init``) capture CUDA graphs while others would reset its state; their
    caller forks it around them all.
    """
    python_state = random.getstate()
    numpy_state = np.random.get_state()  # noqa: NPY002 (the legacy global state)
    cuda = device is not None and torch.device(device).type == "cuda"
    devices = [device] if cuda and threading.current_thread() is threading.main_thread() else []
    with torch.random.fork_rng(devices=devices):
        try:
            # seed None: fresh entropy. Left unseeded, every fit would start from the state
            # the fork gives back, and successive unseeded fits would share their weights.
            seed_everything(int.from_bytes(os.urandom(8), "little") % 2**63
                            if seed is None else seed)
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)  # noqa: NPY002


@functools.cache
def optional_triton_module(name: str):
    """The Triton kernel module ``name`` (e.g. "tsrnn.nn._triton_cfc"), or None where Triton
    is not installed or the environment variable ``TSRNN_NO_TRITON`` is set: every GPU
    kernel is optional and the torch path stays the reference."""
    if os.environ.get("TSRNN_NO_TRITON"):
        return None
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
