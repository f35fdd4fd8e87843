"""Exceptions raised by tsrnn."""

from __future__ import annotations

from typing import Any


class DivergenceError(ArithmeticError):
    """A simulation or a training run produced non-finite or exploding values.

    The message names when it happened (simulation time or training epoch), so that the user
    can shorten the step, lower the learning rate or fix the initial condition.
    """


def _not_fitted_error() -> type:
    from sklearn.exceptions import NotFittedError as SklearnNotFittedError

    class NotFittedError(SklearnNotFittedError):
        """An estimator was used before ``fit``; scikit-learn's ``NotFittedError`` (a
        ValueError and an AttributeError) catches it too."""

    NotFittedError.__module__ = __name__  # found by pickle through __getattr__ below
    NotFittedError.__qualname__ = "NotFittedError"
    return NotFittedError


def __getattr__(name: str) -> Any:
    # NotFittedError subclasses scikit-learn's, and importing scikit-learn takes ~1.6 s:
    # made on first use, so that the simulators and the analyses (which raise only
    # DivergenceError) import without it.
    if name == "NotFittedError":
        value = _not_fitted_error()
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DivergenceError", "NotFittedError"]  # noqa: F822 (NotFittedError: __getattr__)
