"""Fixtures shared by the reservoir tests."""

import numpy as np
import pytest

from tsrnn.reservoir import esn as esn_module


@pytest.fixture
def streamed_calls(monkeypatch):
    """The results of ESN._accumulate_streamed, one per fit (True: the fit was streamed
    through the compiled kernel; False: declined, the general path ran)."""
    calls = []
    original = esn_module.ESN._accumulate_streamed

    def spy(self, *args):
        calls.append(original(self, *args))
        return calls[-1]

    monkeypatch.setattr(esn_module.ESN, "_accumulate_streamed", spy)
    return calls


def _reference_states(W, W_in, b, leak, inputs, x0=None):
    """x_t = (1 - a) x_{t-1} + a tanh(W_in u_t + W x_{t-1} + b) in float64 numpy, one step at
    a time: the reference the reservoir's fast paths are checked against."""
    x = np.zeros(W.shape[0]) if x0 is None else x0.copy()
    out = []
    for u in inputs:
        x = (1 - leak) * x + leak * np.tanh(W_in @ u + W @ x + b)
        out.append(x)
    return np.array(out)


@pytest.fixture(scope="session")
def reference_states():
    """The leaky ESN recurrence written out (see :func:`_reference_states`)."""
    return _reference_states
