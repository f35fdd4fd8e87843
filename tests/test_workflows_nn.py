"""A torch user's workflows with the modules of tsrnn.nn: each module in a plain training loop
(forward with and without a state, continuation, backward, optimizer step), conversions and
copies (double, state_dict, deepcopy, eval/no_grad), torch.func on the PLRNN family, and the
errors for bad input (dtype/device of the input and of the state, NaN in a state, the
parameters a configuration would silently ignore).

Regressions pinned here (each test failed before its fix):

- a float32 CfC or LTC fed float64 input, or a float64 state with float32 input, ran the
  compiled CPU kernels on misread memory and returned wrong numbers without an error;
  the other modules failed deep inside torch ("mat1 and mat2 must have the same dtype");
- a NaN in ``h0`` spread to every output silently (HiPPORNN blamed ``dt`` for a NaN in its
  elapsed time);
- PLRNN/ShallowPLRNN/ALRNN.forward did not check x (rank, NaN) nor h0 (batch, dtype);
- CfC silently ignored backbone options with a wiring (ncps 1.0.1 raises) and
  ``layer_recurrence`` without one.
"""

from __future__ import annotations

import copy
import io

import pytest
import torch

from tsrnn.nn import ALRNN, LEM, LSSL, LTC, PLRNN, WARP, CfC, Chimera, HiPPORNN, ShallowPLRNN
from tsrnn.nn.wirings import AutoNCP, LowRankSparse, RandomSparse

I = 3  # input channels of every module here

# name -> (factory, continues a sequence from its returned state)
MODULES = {
    "cfc": (lambda: CfC(I, 5, backbone_units=8), True),
    "cfc_autograd": (lambda: CfC(I, 5, backbone_units=8, backbone_layers=2), True),
    "cfc_pure": (lambda: CfC(I, 5, mode="pure", backbone_layers=0), True),
    "cfc_mixed_memory": (lambda: CfC(I, 5, backbone_units=8, mixed_memory=True), True),
    "cfc_ncp": (lambda: CfC(I, AutoNCP(10, 2, seed=1)), True),
    "ltc": (lambda: LTC(I, 5), True),
    "ltc_torch": (lambda: LTC(I, 5, implementation="torch"), True),
    "ltc_low_rank_sparse": (lambda: LTC(I, LowRankSparse(6, rank=2)), True),
    "ltc_mixed_memory": (lambda: LTC(I, 5, mixed_memory=True), True),
    "lem": (lambda: LEM(I, 5), True),
    "lem_loop": (lambda: LEM(I, 5, implementation="loop"), True),
    "hippo_legs": (lambda: HiPPORNN(I, 5, state_size=4), True),
    "hippo_legt": (lambda: HiPPORNN(I, 5, state_size=4, measure="legt"), True),
    "lssl_convolution": (lambda: LSSL(I, 4, state_size=6, mode="convolution"), True),
    "lssl_recurrence": (lambda: LSSL(I, 4, state_size=6, trainable_A="shared",
                                     mode="recurrence"), True),
    "lssl_s4d": (lambda: LSSL(I, 4, state_size=6, measure="s4d_real",
                              trainable_A="per_feature"), True),
    "chimera": (lambda: Chimera(I, d_model=4, d_state=3, n_layers=1, season=3,
                                mix_variates=2), True),
    "warp": (lambda: WARP(I, root_width=4, hyper_width=4), False),
    "plrnn": (lambda: PLRNN(4, n_inputs=I), True),
    "shallow_plrnn": (lambda: ShallowPLRNN(4, 6, n_inputs=I, clipped=True), True),
    "alrnn": (lambda: ALRNN(4, 2, n_inputs=I), True),
}
CONTINUOUS = ("cfc", "cfc_autograd", "cfc_mixed_memory", "cfc_ncp", "ltc", "lem",
              "hippo_legs", "lssl_recurrence", "lssl_s4d", "chimera", "warp")


def build(name: str, dtype=torch.float64) -> torch.nn.Module:
    torch.manual_seed(0)
    return MODULES[name][0]().to(dtype)


def inputs(batch=2, length=7, dtype=torch.float64, seed=1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, length, I, generator=generator, dtype=dtype)


def tensors(state) -> list[torch.Tensor]:
    if isinstance(state, torch.Tensor):
        return [state]
    return [t for part in state for t in tensors(part)]


def map_state(state, function):
    if isinstance(state, torch.Tensor):
        return function(state)
    return type(state)(map_state(part, function) for part in state)


def assert_states_close(a, b, **tolerance):
    for p, q in zip(tensors(a), tensors(b), strict=True):
        torch.testing.assert_close(p, q, **tolerance)


# ------------------------------------------------------------------ a plain training loop
@pytest.mark.parametrize("name", MODULES)
def test_module_in_a_plain_training_loop(name):
    """Forward with and without a state, continuation equals one long run (float64: to
    round-off), finite gradients, and an optimizer step that changes the output."""
    module = build(name)
    x = inputs()
    outputs, state = module(x)
    assert outputs.shape[:2] == x.shape[:2]
    for part in tensors(state):
        assert part.shape[0] == x.shape[0] and part.dtype == x.dtype
    first, middle = module(x[:, :3])
    second, final = module(x[:, 3:], middle)
    if MODULES[name][1]:
        torch.testing.assert_close(torch.cat([first, second], 1), outputs, rtol=1e-10,
                                   atol=1e-10)
        assert_states_close(final, state, rtol=1e-10, atol=1e-10)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    target = torch.linspace(-1, 1, outputs.shape[-1], dtype=x.dtype)
    loss = (module(x)[0] - target).pow(2).mean()
    loss.backward()
    grads = {n: p.grad for n, p in module.named_parameters()}
    assert all(g is None or torch.isfinite(g).all() for g in grads.values())
    assert any(g is not None and g.abs().max() > 0 for g in grads.values())
    optimizer.step()
    assert not torch.equal(module(x)[0], outputs)


def test_zero_initialised_parameters_are_the_only_ones_without_gradient():
    """Parameters that get no gradient at the first step, and why (documented, not bugs):
    WARP's hypernetwork hidden layers sit behind its zero-initialised last layer; an
    autonomous-start PLRNN/ALRNN (C = 0, h = 0, z_0 = 0) stays at z = 0, where A and W
    multiply zero. After one optimizer step they all receive gradients."""
    x = inputs()
    for name, silent in (("warp", {"hypernetwork.0.weight", "hypernetwork.0.bias",
                                   "hypernetwork.2.weight", "hypernetwork.2.bias"}),
                         ("plrnn", {"A", "W"}), ("alrnn", {"A", "W"})):
        module = build(name)
        optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
        for step in range(2):
            optimizer.zero_grad()
            (module(x)[0] - 1.0).pow(2).mean().backward()
            without = {n for n, p in module.named_parameters()
                       if p.grad is None or p.grad.abs().max() == 0}
            assert without == (silent if step == 0 else set()), (name, step, without)
            optimizer.step()


@pytest.mark.parametrize("name", MODULES)
def test_state_dict_deepcopy_double_and_eval_round_trips(name):
    """torch.save/load_state_dict into a module built from another seed, deepcopy, a float32
    module cast to float64, and eval() under no_grad all give the same outputs."""
    module = build(name)
    x = inputs()
    expected = module(x)[0].detach()
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(123)
    fresh = MODULES[name][0]().double()
    fresh.load_state_dict(torch.load(buffer))
    torch.testing.assert_close(fresh(x)[0], expected, rtol=0, atol=0)
    torch.testing.assert_close(copy.deepcopy(module)(x)[0], expected, rtol=0, atol=0)
    single = build(name, torch.float32)
    torch.testing.assert_close(single.double()(x)[0], expected, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(module.eval()(x)[0], expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", CONTINUOUS)
def test_documented_dt_shapes_agree_and_unit_dt_is_regular_sampling(name):
    module = build(name)
    x = inputs()
    generator = torch.Generator().manual_seed(3)
    dt = 0.5 + torch.rand(2, 7, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(module(x, dt=dt)[0], module(x, dt=dt[..., None])[0])
    ones = torch.ones(2, 7, dtype=torch.float64)
    torch.testing.assert_close(module(x, dt=ones)[0], module(x)[0], rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ dtype and state errors
@pytest.mark.parametrize("name", MODULES)
def test_input_of_another_dtype_than_the_module_is_refused(name):
    """Was: CfC and LTC (compiled CPU kernels) returned wrong numbers for float64 input to a
    float32 module; the others raised an obscure torch error."""
    module = build(name, torch.float32)
    with pytest.raises(TypeError, match=r"x has dtype torch.float64 .* torch.float32"):
        module(inputs())


@pytest.mark.parametrize("name", MODULES)
def test_state_of_another_dtype_or_with_nan_is_refused(name):
    """Was: a float64 h0 with float32 input gave wrong numbers in the compiled CfC/LTC
    kernels (LTC: outputs of order 1e18); a NaN in h0 spread to the outputs silently."""
    module = build(name, torch.float32)
    x = inputs(dtype=torch.float32)
    _, state = module(x)
    with pytest.raises(TypeError, match=r"h0.*dtype torch\.float64"):
        module(x, map_state(state, torch.Tensor.double))

    def poison(tensor):
        tensor = tensor.detach().contiguous().clone()
        tensor.view(-1)[0] = float("nan")
        return tensor

    with pytest.raises(ValueError, match=r"h0.*NaN"):
        module(x, map_state(state, poison))


def test_float32_cfc_and_ltc_match_their_float64_results_once_converted():
    """The silent failure behind the dtype checks: the same float32 modules on float32 data
    agree with their float64 copies (to float32 round-off); mixed dtypes did not (errors of
    order 1)."""
    x = inputs()
    for name in ("cfc", "cfc_pure", "ltc"):
        single = build(name, torch.float32)
        double = copy.deepcopy(single).double()
        torch.testing.assert_close(single(x.float())[0].double(), double(x)[0], rtol=1e-4,
                                   atol=1e-5)


def test_hippo_names_its_elapsed_time_not_dt():
    module = build("hippo_legs")
    x = inputs()
    h, c, t = module(x)[1]
    with pytest.raises(ValueError, match="h0's t contains NaN"):
        module(x, (h, c, torch.full_like(t, float("nan"))))
    with pytest.raises(ValueError, match=r"h0's t .* must be >= 0"):
        module(x, (h, c, -torch.ones_like(t)))


# ------------------------------------------------------------------ PLRNN family
@pytest.mark.parametrize("name", ["plrnn", "shallow_plrnn", "alrnn"])
def test_plrnn_forward_checks_its_inputs(name):
    """Was: a (L, K) input failed inside a matmul, NaN passed, an h0 of another batch size
    broadcast silently, and n_steps was ignored when x was given."""
    module = build(name)
    x = inputs()
    with pytest.raises(ValueError, match=r"shape \(B, L, 3\)"):
        module(x[0])
    bad = x.clone()
    bad[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        module(bad)
    with pytest.raises(ValueError, match=r"h0 must have shape \(B, M\) = \(2, 4\)"):
        module(x, torch.zeros(1, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="n_steps=5 disagrees"):
        module(x, n_steps=5)
    free, last = module(None, torch.ones(3, 4, dtype=torch.float64), n_steps=4)
    assert free.shape == (3, 4, 4) and torch.equal(free[:, -1], last)


@pytest.mark.parametrize("name", ["plrnn", "shallow_plrnn", "alrnn"])
def test_torch_func_jacobian_of_a_step_equals_the_exact_jacobian(name):
    module = build(name)
    generator = torch.Generator().manual_seed(5)
    z = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    jacobians = torch.func.vmap(torch.func.jacrev(lambda v: module.step(v[None])[0]))(z)
    torch.testing.assert_close(jacobians, module.jacobian(z), rtol=0, atol=1e-14)


# ------------------------------------------------------------------ CfC options (ncps)
def test_wired_cfc_refuses_backbone_options_like_ncps():
    """ncps 1.0.1 raises for backbone_units/layers/dropout with a wiring; tsrnn ignored
    them (and the activation) silently."""
    for option in ({"backbone_units": 64}, {"backbone_layers": 2},
                   {"backbone_dropout": 0.1}, {"activation": "relu"}):
        with pytest.raises(ValueError, match=f"{next(iter(option))} cannot be used with a "
                                             "wiring"):
            CfC(I, AutoNCP(10, 2, seed=1), **option)
    with pytest.raises(ValueError, match="layer_recurrence applies to a wired CfC only"):
        CfC(I, 5, layer_recurrence="dense")
    unwired = CfC(I, 5)  # ncps's defaults when nothing is given
    assert unwired.backbone[0].out_features == 128 and unwired.backbone_layers == 1
    assert unwired.dropout is None and type(unwired.activation).__name__ == "LeCunTanh"


def test_cfc_defaults_equal_ncps():
    ncps = pytest.importorskip("ncps.torch")
    torch.manual_seed(0)
    theirs = ncps.CfC(I, 5).double()
    ours = CfC(I, 5).double()
    cell = theirs.rnn_cell
    with torch.no_grad():
        ours.backbone[0].load_state_dict(cell.backbone[0].state_dict())
        heads = [cell.ff1, cell.ff2, cell.time_a, cell.time_b]
        ours.heads.linear.weight.copy_(torch.cat([h.weight for h in heads]))
        ours.heads.linear.bias.copy_(torch.cat([h.bias for h in heads]))
    x = inputs()
    expected, final = theirs(x)
    outputs, state = ours(x)
    torch.testing.assert_close(outputs, expected)
    torch.testing.assert_close(state, final)


@pytest.fixture
def default_float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.mark.parametrize("name", MODULES)
def test_modules_built_under_a_float64_default_dtype_are_float64(name, default_float64):
    """Was: LSSL's A and B, LTC's reversal potentials and masks, wired CfC masks, Chimera's
    decays and WARP's theta_base were float32 whatever torch's default dtype, so a module built
    under torch.set_default_dtype(torch.float64) mixed dtypes (LSSL and WARP then failed on
    float64 input; the others trained some parameters in float32)."""
    torch.manual_seed(0)
    module = MODULES[name][0]()
    dtypes = {t.dtype for t in (*module.parameters(), *module.buffers())
              if t.is_floating_point()}
    assert dtypes == {torch.float64}
    outputs, _ = module(inputs())
    assert outputs.dtype == torch.float64


def test_lssl_built_in_float64_holds_the_exact_hippo_matrix(default_float64):
    from tsrnn.nn.hippo import transition

    a, b = transition("legs", 6)
    module = LSSL(I, 4, state_size=6)
    assert torch.equal(module.A, torch.as_tensor(a)) and torch.equal(module.B, torch.as_tensor(b))


# ------------------------------------------------------------------ wirings in training
def test_wiring_masks_hold_through_training_with_weight_decay():
    """After AdamW steps (weight decay moves every raw entry), the synapses a wiring leaves
    out still carry no weight: changing their raw values changes nothing."""
    torch.manual_seed(0)
    x = inputs(batch=4, length=6, dtype=torch.float32)
    cfc = CfC(I, AutoNCP(10, 2, seed=1))
    ltc = LTC(I, RandomSparse(8, sparsity=0.6, seed=2))
    for module in (cfc, ltc):
        optimizer = torch.optim.AdamW(module.parameters(), lr=0.05, weight_decay=0.1)
        for _ in range(3):
            optimizer.zero_grad()
            (module(x)[0] - 1).pow(2).mean().backward()
            optimizer.step()
    with torch.no_grad():
        before = cfc(x)[0]
        for layer in cfc.layers:
            n_ff = 2 * layer.hidden  # ff1 and ff2 rows: the masked heads
            absent = torch.cat([layer.mask, layer.mask]) == 0
            layer.linear.weight[:n_ff][absent] += 10.0
        torch.testing.assert_close(cfc(x)[0], before, rtol=0, atol=0)
        before = ltc(x)[0]
        absent = ltc.mask == 0
        assert absent.any() and (ltc.sensory_mask == 0).any()
        ltc.w_raw[absent] += 10.0
        ltc.erev[absent] += 3.0
        ltc.sigma[absent] += 3.0
        ltc.sensory_w_raw[ltc.sensory_mask == 0] += 10.0
        torch.testing.assert_close(ltc(x)[0], before, rtol=0, atol=0)


def test_ltc_checks_its_ode_method_when_built():
    # An unknown torchdiffeq method used to fail only at the first adaptive forward.
    with pytest.raises(ValueError, match=r"unknown method 'rk45'.*'dopri5'"):
        LTC(3, 5, solver="adaptive", method="rk45")
    with pytest.raises(ValueError, match="rtol"):
        LTC(3, 5, solver="adaptive", rtol=0.0)
    assert LTC(3, 5, solver="adaptive", method="rk4").method == "rk4"


# ------------------------------------------------------------------ on a GPU
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", MODULES)
def test_module_on_cuda_equals_the_cpu_and_refuses_inputs_left_on_the_cpu(name):
    """The dtype/device checks hold on the GPU too: a float64 module moved to CUDA gives the
    CPU's outputs and states (to round-off) and continues a sequence from its state there,
    while an input or a state left on the CPU is refused with its name."""
    cpu, x = build(name), inputs()
    gpu = copy.deepcopy(cpu).to("cuda")
    expected, expected_state = cpu(x)
    outputs, state = gpu(x.cuda())
    torch.testing.assert_close(outputs.cpu(), expected, rtol=1e-9, atol=1e-9)
    assert_states_close(map_state(state, torch.Tensor.cpu), expected_state, rtol=1e-9,
                        atol=1e-9)
    if MODULES[name][1]:
        _, middle = gpu(x[:, :3].cuda())
        second, _ = gpu(x[:, 3:].cuda(), middle)
        torch.testing.assert_close(second.cpu(), expected[:, 3:], rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match=r"x is on cpu .* on cuda"):
        gpu(x)
    with pytest.raises((TypeError, ValueError), match=r"cpu|device"):
        gpu(x.cuda(), map_state(state, torch.Tensor.cpu))
