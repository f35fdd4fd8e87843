"""Fixtures shared by the reservoir tests."""

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
