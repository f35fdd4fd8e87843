"""Exceptions raised by tsrnn."""


class DivergenceError(ArithmeticError):
    """A simulation or a training run produced non-finite or exploding values.

    The message names when it happened (simulation time or training epoch), so that the user
    can shorten the step, lower the learning rate or fix the initial condition.
    """


class NotFittedError(ValueError, AttributeError):
    """An estimator was used before ``fit`` (same bases as scikit-learn's, so both catch it)."""
