"""Checks shared by the continuous-time modules of :mod:`tsrnn.nn`: the input sequence and the
per-sample, per-step elapsed times ``dt`` of irregularly sampled series.

``dt`` of shape (B, L) or (B, L, 1) is read sample by sample and step by step. It is never
squeezed to (B,) and broadcast against the hidden units: that mistake (ncps issues #81-#83)
raises an error when B != H and gives silently wrong dynamics when B == H.
"""

from __future__ import annotations

import torch


def check_sequence(x: torch.Tensor, input_size: int, name: str = "x") -> None:
    """Raise unless ``x`` is a floating (B, L, input_size) tensor with L >= 1, without NaN."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor of shape (B, L, {input_size}), got "
                        f"{type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.ndim != 3 or x.shape[-1] != input_size:
        raise ValueError(f"{name} must have shape (B, L, {input_size}) (batch-first), got "
                         f"{tuple(x.shape)}")
    if x.shape[1] == 0:
        raise ValueError(f"{name} has no time steps (L = 0)")
    if not bool(torch.isfinite(x).all()):
        index = tuple(int(i) for i in torch.nonzero(~torch.isfinite(x))[0])
        raise ValueError(f"{name} contains NaN or inf (first at index {index})")


def check_time_steps(dt, batch: int, length: int, like: torch.Tensor) -> torch.Tensor | None:
    """Return ``dt`` as a (B, L) tensor of ``like``'s dtype and device (None stays None).

    Raises a ValueError naming the problem for a wrong shape, NaN/inf or a negative step.
    """
    if dt is None:
        return None
    if not isinstance(dt, torch.Tensor):
        try:
            dt = torch.as_tensor(dt)
        except (TypeError, ValueError, RuntimeError) as error:
            raise TypeError(f"dt must be a tensor of shape (B, L) or (B, L, 1): {error}"
                            ) from error
    if dt.ndim == 3 and dt.shape[-1] == 1:
        dt = dt[..., 0]
    if tuple(dt.shape) != (batch, length):
        raise ValueError(f"dt must have shape (B, L) = ({batch}, {length}) or (B, L, 1), one "
                         f"elapsed time per sample and step; got {tuple(dt.shape)}")
    dt = dt.to(dtype=like.dtype, device=like.device)
    if not bool(torch.isfinite(dt).all()):
        index = tuple(int(i) for i in torch.nonzero(~torch.isfinite(dt))[0])
        raise ValueError(f"dt contains NaN or inf (first at index {index})")
    if bool((dt < 0).any()):
        index = tuple(int(i) for i in torch.nonzero(dt < 0)[0])
        raise ValueError(f"dt must be >= 0 (elapsed time between samples); got "
                         f"{float(dt[index]):.4g} at index {index}")
    return dt
