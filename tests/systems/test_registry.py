"""tsrnn.systems: the registry (names, aliases) and the parameter checks every system shares."""

import pytest


def test_get_system_takes_common_aliases_and_refuses_non_names():
    from tsrnn.systems import KuramotoSivashinsky, Lorenz63, Rossler, get_system

    assert isinstance(get_system("Lorenz"), Lorenz63)
    assert isinstance(get_system("roessler"), Rossler)
    assert isinstance(get_system("KS"), KuramotoSivashinsky)
    with pytest.raises(ValueError, match="did you mean 'lorenz96'"):
        get_system("lorenz69")
    with pytest.raises(TypeError, match="a system's name"):
        get_system(123)


def test_non_finite_parameters_are_refused_at_construction():
    # Was: Lorenz63(rho=nan) built, and its rhs and Jacobian returned NaN; only simulate
    # checked.
    from tsrnn.systems import Flow, Lorenz63

    with pytest.raises(ValueError, match="rho"):
        Lorenz63(rho=float("nan"))

    class Shifted(Lorenz63):  # a subclass setting its own parameter after its parent's
        def __init__(self, shift: float = 1.0):
            super().__init__()
            self.shift = shift

    assert Shifted(2.0).shift == 2.0
    with pytest.raises(ValueError, match="shift"):
        Shifted(float("inf"))
    assert issubclass(Shifted, Flow)


def test_simulate_refuses_dtypes_it_cannot_integrate_in():
    import torch

    from tsrnn.datasets import simulate_splits
    from tsrnn.systems import Lorenz63

    for dtype in (torch.bfloat16, torch.float16):
        with pytest.raises(ValueError, match="float32 or float64"):
            Lorenz63().simulate(10, dtype=dtype)
    with pytest.raises(TypeError, match=r"Lorenz63\(\), not the class"):
        simulate_splits(Lorenz63, 10)
