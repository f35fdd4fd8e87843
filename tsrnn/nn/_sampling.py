"""Checks shared by the continuous-time modules of :mod:`tsrnn.nn`: the input sequence and the
per-sample, per-step elapsed times ``dt`` of irregularly sampled series.

``dt`` of shape (B, L) or (B, L, 1) is read sample by sample and step by step. It is never
squeezed to (B,) and broadcast against the hidden units: that mistake (ncps issues #81-#83)
raises an error when B != H and gives silently wrong dynamics when B == H.
"""

from __future__ import annotations

import itertools

import torch


def check_sequence(x: torch.Tensor, input_size: int, name: str = "x",
                   module: torch.nn.Module | None = None) -> None:
    """Raise unless ``x`` is a floating (B, L, input_size) tensor with L >= 1, without NaN,
    and (with ``module``) of the dtype and on the device of the module's parameters."""
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
    if module is not None:
        check_matches_module(x, module, name)


def module_reference(module: torch.nn.Module) -> torch.Tensor | None:
    """The module's first floating-point parameter (or buffer): its dtype and device are the
    module's. None for a module without any."""
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        if tensor.is_floating_point() or tensor.is_complex():
            return tensor
    return None


def check_matches_module(x: torch.Tensor, module: torch.nn.Module, name: str = "x") -> None:
    """Raise unless ``x`` has the dtype and device of ``module``'s parameters.

    Why not cast: torch's own layers refuse mixed dtypes too, and the compiled CPU kernels of
    CfC and LTC read raw memory, where a float64 tensor next to float32 weights gave
    silently wrong numbers rather than an error.
    """
    reference = module_reference(module)
    if reference is None:
        return
    if x.dtype != reference.dtype:
        raise TypeError(
            f"{name} has dtype {x.dtype} but the parameters of {type(module).__name__} have "
            f"dtype {reference.dtype}; convert one to the other (module.to({x.dtype}) or "
            f"{name}.to({reference.dtype}))")
    if x.device != reference.device:
        raise ValueError(
            f"{name} is on {x.device} but the parameters of {type(module).__name__} are on "
            f"{reference.device}; move one to the other (module.to({str(x.device)!r}) or "
            f"{name}.to({str(reference.device)!r}))")


def check_state(value: torch.Tensor, like: torch.Tensor, name: str = "h0",
                like_name: str = "the input x") -> torch.Tensor:
    """Raise unless the state tensor ``value`` (its shape already checked) has the dtype and
    device of ``like`` (the input, named ``like_name`` in the errors) and holds no NaN or inf;
    returns it unchanged.

    A state of another dtype is refused rather than cast (as torch's GRU/LSTM do): the
    compiled CPU kernels read its raw memory, and a NaN in it would spread to every later
    output without an error.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor, got {type(value).__name__}")
    if value.dtype != like.dtype:
        raise TypeError(f"{name} has dtype {value.dtype}, not the dtype of {like_name} "
                        f"({like.dtype}); pass a state of that dtype ({name}.to({like.dtype}))")
    if value.device != like.device:
        raise ValueError(f"{name} is on {value.device}, not on the device of {like_name} "
                         f"({like.device}); move it ({name}.to({str(like.device)!r}))")
    if not bool(torch.isfinite(value).all()):
        index = tuple(int(i) for i in torch.nonzero(~torch.isfinite(value))[0])
        raise ValueError(f"{name} contains NaN or inf (first at index {index})")
    return value


def check_time_steps(dt, batch: int, length: int, like: torch.Tensor) -> torch.Tensor | None:
    """Return ``dt`` as a (B, L) tensor of ``like``'s dtype and device (None stays None);
    a number (or 0-d tensor) is one step for every sample and step.

    Raises a ValueError naming the problem for a wrong shape, NaN/inf or a negative step.
    """
    if dt is None:
        return None
    if not isinstance(dt, torch.Tensor):
        try:
            dt = torch.as_tensor(dt)
        except (TypeError, ValueError, RuntimeError) as error:
            raise TypeError(f"dt must be a number or a tensor of shape (B, L) or (B, L, 1): "
                            f"{error}"
                            ) from error
    if dt.ndim == 0:
        dt = dt.expand(batch, length)
    if dt.ndim == 3 and dt.shape[-1] == 1:
        dt = dt[..., 0]
    if tuple(dt.shape) != (batch, length):
        raise ValueError(f"dt must be a number or have shape (B, L) = ({batch}, {length}) or "
                         f"(B, L, 1), one elapsed time per sample and step; got "
                         f"{tuple(dt.shape)}")
    dt = dt.to(dtype=like.dtype, device=like.device)
    if not bool(torch.isfinite(dt).all()):
        index = tuple(int(i) for i in torch.nonzero(~torch.isfinite(dt))[0])
        raise ValueError(f"dt contains NaN or inf (first at index {index})")
    if bool((dt < 0).any()):
        index = tuple(int(i) for i in torch.nonzero(dt < 0)[0])
        raise ValueError(f"dt must be >= 0 (elapsed time between samples); got "
                         f"{float(dt[index]):.4g} at index {index}")
    return dt
