"""Elementary functions that accept Python floats, numpy arrays and torch tensors alike,
so that a vector field in component form is written once for every backend."""

from __future__ import annotations

import math

import numpy as np
import torch


def _dispatch(name: str):
    scalar = getattr(math, name)
    array = getattr(np, name)
    tensor = getattr(torch, name)

    def function(x):
        if isinstance(x, torch.Tensor):
            return tensor(x)
        if isinstance(x, np.ndarray):
            return array(x)
        return scalar(x)

    function.__name__ = name
    function.__doc__ = f"``{name}`` for floats, numpy arrays and torch tensors."
    return function


sin = _dispatch("sin")
cos = _dispatch("cos")
tanh = _dispatch("tanh")
exp = _dispatch("exp")


def sign(x):
    """Sign of ``x`` (0 at 0) for floats, arrays and tensors."""
    if isinstance(x, torch.Tensor):
        return torch.sign(x)
    if isinstance(x, np.ndarray):
        return np.sign(x)
    return float((x > 0) - (x < 0))


def step(x):
    """Heaviside step of ``x`` (1.0 where x > 0, else 0.0)."""
    if isinstance(x, torch.Tensor):
        return (x > 0).to(x.dtype)
    if isinstance(x, np.ndarray):
        return (x > 0).astype(float)
    return 1.0 if x > 0 else 0.0
