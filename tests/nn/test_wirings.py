"""Tests of tsrnn.nn.wirings: the synapses drawn, the checks, and what the cells make of them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tsrnn.nn import LTC, CfC
from tsrnn.nn.wirings import NCP, AutoNCP, FullyConnected, LowRankSparse, RandomSparse, Wiring


def test_autoncp_draws_the_synapses_of_ncps():
    wirings = pytest.importorskip("ncps.wirings")
    for units, outputs, sparsity, seed in [(20, 4, 0.5, 22222), (32, 3, 0.7, 5)]:
        theirs = wirings.AutoNCP(units, outputs, sparsity_level=sparsity, seed=seed)
        theirs.build(3)
        ours = AutoNCP(units, outputs, sparsity=sparsity, seed=seed).build(3)
        np.testing.assert_array_equal(ours.adjacency, theirs.adjacency_matrix)
        np.testing.assert_array_equal(ours.sensory_adjacency, theirs.sensory_adjacency_matrix)


def test_fully_connected_polarities_match_ncps():
    wirings = pytest.importorskip("ncps.wirings")
    theirs = wirings.FullyConnected(7, erev_init_seed=3)
    theirs.build(2)
    ours = FullyConnected(7, seed=3).build(2)
    np.testing.assert_array_equal(ours.adjacency, theirs.adjacency_matrix)
    np.testing.assert_array_equal(ours.sensory_adjacency, theirs.sensory_adjacency_matrix)


def test_fully_connected_is_mostly_excitatory():
    wiring = FullyConnected(60, seed=0).build(3)
    assert wiring.synapse_count == 3600
    excitatory = (wiring.adjacency == 1).mean()
    assert abs(excitatory - 2 / 3) < 0.03  # 3600 Bernoulli(2/3) draws: sd 0.008
    no_self = FullyConnected(5, self_connections=False)
    assert np.all(np.diag(no_self.adjacency) == 0) and no_self.synapse_count == 20


def test_random_sparse_keeps_the_requested_fraction():
    wiring = RandomSparse(40, sparsity=0.75, seed=1).build(5)
    assert wiring.synapse_count == 400
    assert wiring.sensory_synapse_count == 50


def test_ncp_layers_connect_only_forward_and_command_to_itself():
    wiring = NCP(inter_neurons=6, command_neurons=4, motor_neurons=2, sensory_fanout=3,
                 inter_fanout=2, recurrent_command_synapses=5, motor_fanin=2, seed=0).build(3)
    inter, command, motor = wiring.layers
    assert motor == [0, 1] and sorted(inter + command + motor) == list(range(12))
    a = np.abs(wiring.adjacency)
    assert a[np.ix_(inter, inter)].sum() == 0 and a[np.ix_(motor, motor)].sum() == 0
    assert a[np.ix_(command, inter)].sum() == 0 and a[np.ix_(motor, command)].sum() == 0
    assert a[np.ix_(inter, command)].sum() > 0 and a[np.ix_(command, motor)].sum() > 0
    # Sensory synapses reach the inter neurons only, and every inter neuron.
    s = np.abs(wiring.sensory_adjacency)
    assert s[:, command + motor].sum() == 0 and (s[:, inter].sum(0) > 0).all()


def test_wirings_reject_what_does_not_fit():
    wiring = FullyConnected(4).build(3)
    with pytest.raises(ValueError, match="built for 3 inputs"):
        wiring.build(2)
    with pytest.raises(ValueError, match="built for 3 inputs"):
        LTC(2, wiring)
    with pytest.raises(ValueError, match="built for 3 inputs"):
        CfC(5, wiring)
    with pytest.raises(ValueError, match="only 2 command"):
        NCP(4, 2, 1, sensory_fanout=2, inter_fanout=3, recurrent_command_synapses=1,
            motor_fanin=1)
    with pytest.raises(ValueError, match="less than units - 2"):
        AutoNCP(5, 3)
    with pytest.raises(ValueError, match="cannot exceed units"):
        FullyConnected(3, output_size=4)
    with pytest.raises(ValueError, match="rank"):
        LowRankSparse(4, rank=5)
    with pytest.raises(ValueError, match="sparsity"):
        RandomSparse(4, sparsity=1.0)
    with pytest.raises(ValueError, match="polarities"):
        Wiring.from_matrices(np.full((2, 2), 2), np.ones((1, 2)))
    with pytest.raises(ValueError, match="sensory_adjacency"):
        Wiring.from_matrices(np.ones((2, 2)), np.ones((1, 3)))
    with pytest.raises(TypeError, match="Wiring"):
        LTC(2, "ten")


def test_low_rank_sparse_ltc_weights_have_the_rank_and_the_mask():
    torch.manual_seed(0)
    wiring = LowRankSparse(12, rank=2, sparsity=0.5, seed=0)
    cell = LTC(3, wiring)
    w = cell.w.detach()
    mask = torch.as_tensor(wiring.adjacency != 0)
    assert (w[~mask] == 0).all() and (w[mask] > 0).all()
    softplus = torch.nn.functional.softplus
    dense = softplus(cell.w_left_raw.double()) @ softplus(cell.w_right_raw.double())
    assert torch.linalg.matrix_rank(dense.detach()) == 2
    assert sum(p.numel() for n, p in cell.named_parameters() if n.startswith("w_")) == 48


def test_low_rank_sparse_cfc_recurrent_block_has_the_rank_and_the_mask():
    torch.manual_seed(0)
    wiring = LowRankSparse(10, rank=3, sparsity=0.6, seed=2)
    cell = CfC(2, wiring)
    weight = cell.layers[0].weight().detach()  # (4 * 10, 2 + 10): ff1, ff2, gates
    mask = torch.as_tensor(np.abs(wiring.adjacency.T), dtype=torch.float64)
    for head in range(2):
        block = weight[head * 10:(head + 1) * 10, 2:].double()
        assert (block[mask == 0] == 0).all()
        heads = cell.layers[0]
        unmasked = (heads.left[head].double() @ heads.right[head].double()).detach()
        assert torch.linalg.matrix_rank(unmasked) == 3


def test_cfc_follows_the_wiring_unless_asked_for_dense_layers():
    """With layer_recurrence='wiring' a neuron ignores the ones the wiring does not connect
    to it: perturbing an unconnected inter neuron's state leaves a motor neuron unchanged."""
    torch.manual_seed(0)
    wiring = AutoNCP(12, 2, sparsity=0.5, seed=1)
    sparse, dense = CfC(3, wiring, layer_recurrence="wiring"), CfC(3, wiring,
                                                                    layer_recurrence="dense")
    for cell, expect_zero in [(sparse, True), (dense, False)]:
        weight = cell.layers[0].weight().detach()  # inter layer: (4 * n_inter, 3 + n_inter)
        n_inter = cell.layer_sizes[0]
        recurrent_ff = weight[: 2 * n_inter, 3:]
        assert (recurrent_ff.abs().sum() == 0) == expect_zero
