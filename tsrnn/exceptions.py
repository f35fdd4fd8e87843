"""Exceptions raised by tsrnn."""

from sklearn.exceptions import NotFittedError as _SklearnNotFittedError


class DivergenceError(ArithmeticError):
    """A simulation or a training run produced non-finite or exploding values.

    The message names when it happened (simulation time or training epoch), so that the user
    can shorten the step, lower the learning rate or fix the initial condition.
    """


class NotFittedError(_SklearnNotFittedError):
    """An estimator was used before ``fit``; scikit-learn's ``NotFittedError`` (a ValueError
    and an AttributeError) catches it too."""
