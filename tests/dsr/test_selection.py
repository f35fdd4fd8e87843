"""Checkpoint selection of the DSR estimators: selection="dstsp+dh" (the default) runs the
best checkpoints by short-run D_stsp again as one long free run each and keeps the lowest
D_stsp + D_H; selection="dstsp" keeps the lowest short-run D_stsp."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tsrnn.dsr import ALRNN, PLRNN, ShallowPLRNN
from tsrnn.dsr import estimators as dsr_estimators
from tsrnn.metrics import power_spectrum_distance, state_space_divergence
from tsrnn.systems import Lorenz63

SMALL = dict(sequence_length=20, batch_size=8, batches_per_epoch=3, checkpoint_every=1,
             dt=0.01, random_state=0, device="cpu")


@pytest.fixture(scope="module")
def lorenz():
    return Lorenz63().simulate(1500, transient=500, seed=0)


def test_candidates_are_the_ten_best_short_run_checkpoints(lorenz):
    model = ShallowPLRNN(n_hidden=10, max_epochs=14, teacher_forcing="gtf", alpha=0.4,
                         **SMALL).fit(lorenz)
    ranked = sorted(model.checkpoint_scores_, key=lambda row: (row[1], row[0]))
    expected = sorted(epoch for epoch, _ in ranked[:10])
    assert [epoch for epoch, _, _ in model.selection_scores_] == expected
    sums = {epoch: d_stsp + d_h for epoch, d_stsp, d_h in model.selection_scores_}
    assert model.best_epoch_ == min(sums, key=lambda epoch: (sums[epoch], epoch))
    assert model.selection_score_ == pytest.approx(min(sums.values()), rel=1e-12)
    assert all(0.0 <= d_h <= 1.0 for _, _, d_h in model.selection_scores_)


def test_long_run_score_equals_a_step_by_step_reference(lorenz):
    model = ALRNN(n_latent=6, n_pwl=2, max_epochs=3, **SMALL).fit(lorenz)
    y = model.y_scaler_.transform(lorenz)
    module = model.module_
    with torch.no_grad():
        z = module.observation.initial_state(torch.as_tensor(y[:1], dtype=torch.float32))
        rows = []
        for _ in range(1000 + len(y)):
            z = module.step(z)
            rows.append(module.observe(z))
    generated = torch.cat(rows)[1000:].double().numpy()
    expected = (state_space_divergence(y, generated), power_spectrum_distance(y, generated))
    score = model._long_run_score(module, [(y, None)])
    np.testing.assert_allclose(score, expected, rtol=1e-6)
    # The weights kept are the selected checkpoint's: its long run scores what was recorded.
    recorded = {epoch: (d_stsp, d_h) for epoch, d_stsp, d_h in model.selection_scores_}
    np.testing.assert_allclose(score, recorded[model.best_epoch_], rtol=1e-6)


def test_the_choice_follows_the_long_run_score_and_loads_those_weights(lorenz, monkeypatch):
    # A long-run "score" read off the weights themselves: the kept module must carry the
    # weights of the candidate that scored lowest, not those of the best short-run D_stsp.
    def weight_score(self, module, references):
        return float(module.latent.h.sum()), 0.0

    monkeypatch.setattr(dsr_estimators.DSREstimator, "_long_run_score", weight_score)
    model = ALRNN(n_latent=6, n_pwl=2, max_epochs=12, **SMALL).fit(lorenz)
    scores = {epoch: d_stsp for epoch, d_stsp, _ in model.selection_scores_}
    assert len(set(scores.values())) == len(scores) == 10  # the weights differ per epoch
    assert model.best_epoch_ == min(scores, key=scores.get)
    assert float(model.module_.latent.h.detach().sum()) == pytest.approx(min(scores.values()))
    short = ALRNN(n_latent=6, n_pwl=2, max_epochs=12, selection="dstsp", **SMALL).fit(lorenz)
    assert [row[:1] for row in short.checkpoint_scores_] == [
        row[:1] for row in model.checkpoint_scores_]  # the same training either way
    assert short.selection_scores_ == [] and short.selection_score_ is None


def test_checkpoint_file_holds_the_selected_model(lorenz, tmp_path):
    path = tmp_path / "model.pt"
    model = ShallowPLRNN(n_hidden=10, max_epochs=6, checkpoint_path=str(path),
                         teacher_forcing="gtf", alpha=0.4, **SMALL).fit(lorenz)
    saved = ShallowPLRNN.load(path)
    assert saved.best_epoch_ == model.best_epoch_
    assert saved.selection_scores_ == model.selection_scores_
    np.testing.assert_array_equal(saved.predict(25), model.predict(25))


def test_driven_and_masked_models_are_selected_on_their_runs(lorenz):
    y = [lorenz[:700], lorenz[700:]]
    x = [np.sin(np.arange(700))[:, None], np.cos(np.arange(800))[:, None]]
    driven = PLRNN(n_latent=5, max_epochs=3, **SMALL).fit(y, X=x)
    assert len(driven.selection_scores_) == 3
    assert all(np.isfinite(row).all() for row in driven.selection_scores_)
    gappy = lorenz.copy()
    gappy[100:140, 1] = np.nan
    masked = ALRNN(n_latent=6, n_pwl=2, max_epochs=3, missing="mask", **SMALL).fit(gappy)
    # Spectra need complete rows: with NaN in the data D_H is measured on the longest
    # stretch without them (rows 140 on), and counts in the selection.
    assert all(d_h > 0 for _, _, d_h in masked.selection_scores_)
    assert masked.selection_score_ == min(d + h for _, d, h in masked.selection_scores_)


def test_unknown_selection_is_refused(lorenz):
    with pytest.raises(ValueError, match=r"selection.*dstsp"):
        ALRNN(n_latent=6, selection="dh", **SMALL).fit(lorenz)


def test_time_budget_reserves_the_long_runs(lorenz):
    # The reserve is 10 long runs, each costing the median short-run scoring times the
    # ratio of sequential steps: 1,000 + 1,500 against min(10,000, 1,500) + ceil(1,500 / 16).
    model = ALRNN(n_latent=6, n_pwl=2, max_epochs=2, **SMALL).fit(lorenz)
    model._selection_references_ = [(np.zeros((1500, 3)), None)]
    model._score_seconds_ = [5.0, 0.2, 0.3]
    assert model._reserved() == pytest.approx(10 * 0.3 * 2500 / (1500 + 94))
    model.set_params(selection="dstsp")
    assert model._reserved() == 0.0
    # Within max_time, the long runs included (a budget below one short scoring stops
    # training after its first epoch, and the selection still runs).
    timed = ALRNN(n_latent=6, n_pwl=2, max_epochs=500, max_time=2.0, **SMALL).fit(lorenz)
    assert timed.stopped_by_time_ and timed.selection_scores_
    assert timed.training_time_ < 4.0


def test_the_scores_bin_the_data_once_per_list_of_references():
    estimator = ALRNN(n_latent=4, n_pwl=1)
    rng = np.random.default_rng(0)
    first = [(rng.standard_normal((500, 3)), None)]
    second = [(rng.standard_normal((400, 3)), None), (rng.standard_normal((300, 3)), None)]
    _, score = estimator._score_truth(first)
    assert estimator._score_truth(first)[1] is score  # reused, not rebuilt
    truth, score = estimator._score_truth(second)
    np.testing.assert_array_equal(truth, np.concatenate([second[0][0], second[1][0]]))
    generated = rng.standard_normal((600, 3))
    assert score(generated) == state_space_divergence(truth, generated)
