"""Tests of the ``tsrnn`` command (tsrnn.cli), run in-process through ``main`` except for one
call of the installed console script. Every file goes to tmp_path."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import tsrnn.reconstruct
from tsrnn.cli import main
from tsrnn.reconstruct import ReconstructionReport

REPORT_KEYS = {
    "system", "model", "dt", "n_train", "n_test", "fit_seconds", "valid_prediction_time",
    "valid_prediction_unit", "state_space_divergence", "power_spectrum_distance",
    "lyapunov_learned", "lyapunov_learned_stderr", "lyapunov_true", "lyapunov_true_source",
    "lyapunov_unit", "lyapunov_true_stderr", "model_state_dimension", "tuning",
    "fixed_points_learned", "fixed_points_true", "angles_on_circle",
    "total_seconds",
}


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path, monkeypatch):
    """Run every command from tmp_path, so that a stray relative path stays there."""
    monkeypatch.chdir(tmp_path)


def test_console_script_help_lists_the_verbs(tmp_path):
    script = Path(sys.executable).with_name("tsrnn")
    command = str(script) if script.exists() else shutil.which("tsrnn")
    assert command is not None, "the tsrnn console script is not installed"
    result = subprocess.run([command, "--help"], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stderr
    for verb in ("reconstruct", "simulate", "lyapunov", "systems"):
        assert verb in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_no_verb_prints_help_and_succeeds(capsys):
    assert main([]) == 0
    assert "usage: tsrnn" in capsys.readouterr().out


def test_systems_lists_lorenz63_and_henon(capsys):
    assert main(["systems"]) == 0
    lines = capsys.readouterr().out.splitlines()
    lorenz = [line for line in lines if line.startswith("lorenz63 ")]
    assert len(lorenz) == 1
    assert "flow" in lorenz[0] and "dim=3" in lorenz[0]
    assert any(line.startswith("henon ") and " map " in line for line in lines)


def test_simulate_writes_a_csv_with_a_time_column(tmp_path, capsys):
    path = tmp_path / "out.csv"
    assert main(["simulate", "lorenz63", "--n-steps", "50", "-o", str(path)]) == 0
    assert "wrote (50, 3) states" in capsys.readouterr().out
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["time", "x0", "x1", "x2"]
    assert len(frame) == 50
    np.testing.assert_allclose(frame["time"], np.arange(50) * 0.01, atol=1e-12)
    assert np.isfinite(frame.to_numpy()).all()


def test_simulate_to_standard_output_writes_the_same_table_as_a_file(tmp_path, capsys):
    path = tmp_path / "out.csv"
    assert main(["simulate", "rossler", "--n-steps", "20", "-o", str(path)]) == 0
    capsys.readouterr()
    assert main(["simulate", "rossler", "--n-steps", "20"]) == 0
    assert capsys.readouterr().out == path.read_text()


def test_simulate_refuses_to_overwrite_without_the_flag(tmp_path):
    path = tmp_path / "out.csv"
    path.write_text("keep me\n")
    with pytest.raises(SystemExit, match=r"exists; pass --overwrite to replace it"):
        main(["simulate", "lorenz63", "--n-steps", "50", "-o", str(path)])
    assert path.read_text() == "keep me\n"
    assert main(["simulate", "lorenz63", "--n-steps", "50", "-o", str(path),
                 "--overwrite"]) == 0
    assert len(pd.read_csv(path)) == 50


def test_simulate_batch_to_npz_has_shape_batch_steps_dim(tmp_path):
    path = tmp_path / "out.npz"
    assert main(["simulate", "lorenz63", "--n-steps", "50", "--batch", "3", "-o",
                 str(path)]) == 0
    with np.load(path) as data:
        states = data["states"]
        assert float(data["dt"]) == 0.01
    assert states.shape == (3, 50, 3)
    assert np.isfinite(states).all()
    assert np.abs(states[0] - states[1]).max() > 1e-3  # different initial states
    with pytest.raises(SystemExit, match=r"needs an \.npz file"):
        main(["simulate", "lorenz63", "--n-steps", "5", "--batch", "3", "-o",
              str(tmp_path / "batch.csv")])


def test_simulate_parameters_reach_the_system(tmp_path):
    default, changed = tmp_path / "a.npz", tmp_path / "b.npz"
    main(["simulate", "lorenz63", "--n-steps", "100", "-o", str(default)])
    main(["simulate", "lorenz63", "--n-steps", "100", "--param", "rho=35", "-o", str(changed)])
    with np.load(default) as a, np.load(changed) as b:
        assert np.abs(a["states"] - b["states"]).max() > 1e-3
        assert "rho=35" in str(b["metadata"])


def test_unknown_system_is_a_clean_error_listing_the_known_names(tmp_path):
    with pytest.raises(SystemExit, match=r"unknown system 'nosuch'; expected one of .*"
                                         r"'henon'.*'lorenz63'"):
        main(["simulate", "nosuch", "--n-steps", "5", "-o", str(tmp_path / "x.csv")])
    assert list(tmp_path.iterdir()) == []


def test_unknown_parameter_is_a_clean_error(tmp_path):
    with pytest.raises(SystemExit, match=r"error: .*'nosuch'"):
        main(["simulate", "lorenz63", "--param", "nosuch=1", "-o", str(tmp_path / "x.csv")])
    with pytest.raises(SystemExit, match=r"--param expects name=value"):
        main(["simulate", "lorenz63", "--param", "rho", "-o", str(tmp_path / "x.csv")])
    assert list(tmp_path.iterdir()) == []


def test_unknown_parameter_error_lists_the_known_parameters():
    with pytest.raises(SystemExit, match=r"sigma.*rho.*beta"):
        main(["simulate", "lorenz63", "--param", "nosuch=1", "-o", "x.csv"])


def test_lyapunov_henon_json_matches_the_reference(capsys):
    assert main(["lyapunov", "henon", "--n-steps", "2000", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["unit"] == "per step"
    # Literature values (0.419, -1.623); 32 trajectories of 2000 steps: stderr ~0.002.
    np.testing.assert_allclose(result["exponents"], [0.419, -1.623], atol=0.02)
    assert len(result["stderr"]) == 2
    assert result["kaplan_yorke_dimension"] == pytest.approx(1.26, abs=0.02)


def test_lyapunov_of_part_of_a_spectrum_does_not_claim_a_kaplan_yorke_dimension(capsys):
    # Three of Lorenz-96's 40 exponents, all positive: the dimension (~27) is not known from
    # them; it was printed as 3.0000.
    options = ["lyapunov", "lorenz96", "--n-steps", "300", "--n-trajectories", "2",
               "--n-exponents", "3"]
    assert main([*options, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kaplan_yorke_dimension"] is None
    assert main(options) == 0
    assert "Kaplan-Yorke dimension > 3 " in capsys.readouterr().out
    # Where the partial sums turn negative within the exponents asked for, it is known.
    assert main(["lyapunov", "henon", "--n-steps", "500", "--n-exponents", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kaplan_yorke_dimension"] > 1.0


def test_reconstruct_prints_the_report_and_writes_json(tmp_path, capsys):
    path = tmp_path / "report.json"
    with pytest.warns(UserWarning, match="validation_fraction"):  # 600 steps, windows of 100
        code = main(["reconstruct", "--model", "gru", "--n-train", "600", "--n-test", "300",
                     "--max-epochs", "1", "-q", "-o", str(path)])
    assert code == 0
    out = capsys.readouterr().out
    for line in ("Reconstruction of Lorenz63", "600 training and 300 held-out steps",
                 "valid prediction time:", "state-space divergence D_stsp:",
                 "power-spectrum distance D_H:",
                 "Lyapunov spectrum (per time unit), learned model:",
                 "Lyapunov spectrum (per time unit), true system:", f"report written to {path}"):
        assert line in out
    report = json.loads(path.read_text())
    assert set(report) == REPORT_KEYS | {"settings"}
    assert REPORT_KEYS == {field.name for field in dataclasses.fields(ReconstructionReport)}
    # What ran: files of a sweep can be told apart (the repr rounds parameters).
    assert report["settings"]["max_epochs"] == 1 and report["settings"]["seed"] == 0
    assert "tsrnn_version" in report["settings"]
    assert (report["n_train"], report["n_test"]) == (600, 300)
    assert report["model"] == "GRUForecaster"
    assert len(report["lyapunov_learned"]) == 3
    assert report["lyapunov_true"] == pytest.approx([0.9056, 0.0, -14.5723])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_reconstruct_default_model_is_the_echo_state_network(capsys):
    assert main(["reconstruct", "--n-train", "1500", "--n-test", "500", "-q"]) == 0
    out = capsys.readouterr().out
    assert "Reconstruction of Lorenz63" in out and "by ESN" in out


@pytest.mark.parametrize("model, name", [("nvar", "NVAR"), ("deepresesn", "DeepResESN")])
def test_reconstruct_with_the_other_reservoirs(model, name, tmp_path):
    # Fitted in one pass; their closed loops' spectra come out near Lorenz-63's even on
    # this short series (NVAR: 0.95, -0.02, -14.6 on 20,000 steps).
    path = tmp_path / "report.json"
    assert main(["reconstruct", "--model", model, "--n-train", "3000", "--n-test", "500",
                 "-q", "-o", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["model"] == name
    assert report["valid_prediction_time"] > 1.0
    learned = report["lyapunov_learned"]
    assert 0.5 < learned[0] < 1.5 and abs(learned[1]) < 0.3 and learned[2] < -5


def test_reconstruct_refuses_an_existing_report_before_running(tmp_path, monkeypatch):
    path = tmp_path / "report.json"
    path.write_text("{}")
    calls = []

    def fake_run(config):
        calls.append(config)
        raise AssertionError("the reconstruction ran although its report would be refused")

    monkeypatch.setattr(tsrnn.reconstruct, "run_reconstruction", fake_run)
    with pytest.raises(SystemExit, match="exists; pass --overwrite"):
        main(["reconstruct", "-q", "-o", str(path)])
    assert path.read_text() == "{}"


def test_reconstruct_with_an_alrnn_reports_learned_and_true_fixed_points(tmp_path, capsys):
    path = tmp_path / "report.json"
    code = main(["reconstruct", "--model", "alrnn", "--n-train", "1000", "--n-test", "500",
                 "--max-epochs", "2", "-q", "-o", str(path)])
    assert code == 0
    assert "fixed points, true system: 3" in capsys.readouterr().out
    report = json.loads(path.read_text())
    assert report["model"] == "ALRNN"
    # Lorenz-63's equilibria: the origin (one unstable direction) and C+- (two each).
    assert sorted(p["unstable_dimension"] for p in report["fixed_points_true"]) == [1, 2, 2]
    assert all(len(p["location"]) == 3 for p in report["fixed_points_learned"])
    # In the system's coordinates, not the standardised ones the model learned in (was).
    r = np.sqrt(8.0 / 3.0 * 27.0)
    np.testing.assert_allclose(sorted(p["location"] for p in report["fixed_points_true"]),
                               [[-r, -r, 27.0], [0.0, 0.0, 0.0], [r, r, 27.0]], atol=1e-8)
    # The DSR model knows its sampling step: exponents per time unit, finite.
    assert np.isfinite(report["lyapunov_learned"]).all()


def test_reconstruct_with_several_trainings_keeps_the_best(tmp_path, capsys, monkeypatch):
    from tsrnn.dsr.estimators import DSREstimator

    fitted = []
    restarts = DSREstimator._fit_restarts

    def spy(self, y, X):
        result = restarts(self, y, X)
        fitted.append((self.n_init, self.n_jobs, len(self.init_scores_), self.best_init_))
        return result

    monkeypatch.setattr(DSREstimator, "_fit_restarts", spy)
    path = tmp_path / "report.json"
    code = main(["reconstruct", "--model", "shplrnn", "--n-init", "2", "--n-train", "800",
                 "--n-test", "400", "--max-epochs", "1", "-q", "-o", str(path)])
    assert code == 0
    assert json.loads(path.read_text())["model"] == "ShallowPLRNN"
    assert len(fitted) == 1 and fitted[0][:3] == (2, -1, 2) and fitted[0][3] in (0, 1)
    with pytest.raises(ValueError, match="n_init applies to the DSR models"):
        main(["reconstruct", "--model", "esn", "--n-init", "2", "--n-train", "800", "-q"])
    with pytest.raises(SystemExit, match="--n-init must be >= 1"):
        main(["reconstruct", "--n-init", "0", "-q"])


def test_simulators_analyses_and_the_parser_load_without_scikit_learn():
    # scikit-learn costs ~1.6 s to import; only the estimators need it, so `tsrnn systems`,
    # `simulate` and `lyapunov` (and users of the simulators alone) do not pay for it.
    script = ("import sys, tsrnn.systems, tsrnn.analysis, tsrnn.metrics, tsrnn.cli\n"
              "tsrnn.cli.build_parser()\n"
              "from tsrnn.exceptions import DivergenceError\n"
              "assert 'sklearn' not in sys.modules, 'sklearn imported'\n"
              "import pickle, sklearn.exceptions\n"
              "from tsrnn.exceptions import NotFittedError\n"
              "assert issubclass(NotFittedError, sklearn.exceptions.NotFittedError)\n"
              "assert type(pickle.loads(pickle.dumps(NotFittedError('x')))) is NotFittedError\n")
    subprocess.run([sys.executable, "-c", script], check=True)


def test_a_system_with_other_parameters_gets_no_literature_spectrum(capsys):
    # Was: Henon(b=0) and Lorenz63(rho=10) were reported against the canonical systems'
    # published spectra (and reconstruct counted Lyapunov times with 0.9056).
    assert main(["lyapunov", "henon", "--param", "b=0", "--n-steps", "300",
                 "--n-trajectories", "2", "--json"]) == 0
    text = capsys.readouterr().out
    result = json.loads(text)  # strict JSON: the -inf exponent of b = 0 is null
    assert result["reference"] is None
    assert result["exponents"][1] is None and "Infinity" not in text


def test_an_output_directory_that_cannot_be_written_is_refused_before_running(monkeypatch):
    def fake_run(config):
        raise AssertionError("the reconstruction ran although its report cannot be written")

    monkeypatch.setattr(tsrnn.reconstruct, "run_reconstruction", fake_run)
    unwritable = Path("/proc/tsrnn-report.json")  # /proc takes no new files, even for root
    if not Path("/proc").is_dir():
        pytest.skip("no /proc here")
    with pytest.raises(SystemExit, match="cannot write to /proc"):
        main(["reconstruct", "-q", "-o", str(unwritable)])


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path):
    script = ("import sys\nfrom tsrnn.cli import console_main\n"
              "sys.exit(console_main(['simulate', 'lorenz63', '--n-steps', '20000']))\n")
    result = subprocess.run(f"{sys.executable} -c \"{script}\" | head -n 2", shell=True,
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.stdout.splitlines()[0].startswith("time,")
    assert "Broken pipe" not in result.stderr and "error" not in result.stderr


def test_a_forecast_valid_over_the_whole_test_stretch_is_reported_as_a_lower_bound():
    report = dict(system="Lorenz63()", model="ESN", dt=0.01, n_train=1000, n_test=500,
                  fit_seconds=0.1, valid_prediction_unit="Lyapunov times",
                  state_space_divergence=0.1, power_spectrum_distance=0.1,
                  lyapunov_learned=[0.9], lyapunov_learned_stderr=[0.01],
                  lyapunov_true=[0.9056], lyapunov_true_source="literature")
    whole = 500 * 0.01 * 0.9056  # the held-out stretch in Lyapunov times
    text = ReconstructionReport(valid_prediction_time=whole, **report).text()
    assert "valid prediction time: at least 4.528 Lyapunov times" in text
    assert "the whole held-out stretch" in text
    text = ReconstructionReport(valid_prediction_time=whole / 2, **report).text()
    assert "valid prediction time: 2.264 Lyapunov times (threshold 0.4)" in text


def test_integrator_options_given_for_a_map_are_named_as_such():
    # Was: "unknown Henon option 'method'; expected one of 'device', 'dtype'", options the
    # command line does not have.
    with pytest.raises(SystemExit, match="henon is a map"):
        main(["lyapunov", "henon", "--method", "rk4"])


def test_reconstruct_reports_the_leading_exponents_asked_for(tmp_path, capsys):
    # Kuramoto-Sivashinsky reported all 64 + 63 exponents (209 s): --n-exponents limits them.
    path = tmp_path / "report.json"
    code = main(["reconstruct", "--n-train", "1000", "--n-test", "500", "--n-exponents", "2",
                 "-q", "-o", str(path)])
    assert code == 0
    report = json.loads(path.read_text())
    assert len(report["lyapunov_learned"]) == 2 and len(report["lyapunov_true"]) == 2
    assert report["settings"]["n_exponents"] == 2
    with pytest.raises(SystemExit, match="--n-exponents must be >= 1"):
        main(["reconstruct", "--n-exponents", "0"])
    with pytest.raises(ValueError, match="n_exponents must be an integer from 1"):
        from tsrnn.reconstruct import ReconstructionConfig, run_reconstruction
        run_reconstruction(ReconstructionConfig(n_exponents=4, n_train=500, n_test=200))


def test_lyapunov_of_a_delay_system_computes_its_leading_exponents(capsys):
    # Was: all 341 exponents of Mackey-Glass's history buffer (minutes; reconstruct too).
    assert main(["lyapunov", "mackeyglass", "--n-steps", "100", "--n-trajectories", "2",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["exponents"]) == 4
    assert result["kaplan_yorke_dimension"] is not None  # the four sum to < 0


def test_reconstruct_counts_lyapunov_times_only_for_a_clearly_positive_exponent(tmp_path):
    # Van der Pol's limit cycle has lambda_1 = 0, computed as +1e-4 +- 5e-4: that read as
    # chaos, and the VPT came out as "0.000 Lyapunov times" for a forecast valid 3.9 time units.
    path = tmp_path / "report.json"
    assert main(["reconstruct", "--system", "vanderpol", "--n-train", "1500", "--n-test",
                 "500", "-q", "-o", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["valid_prediction_unit"] == "time units"
    assert report["valid_prediction_time"] > 1.0
    assert len(report["lyapunov_true_stderr"]) == len(report["lyapunov_true"]) == 3
    assert report["lyapunov_unit"] == "per time unit" and report["model_state_dimension"] > 3


def test_reconstruct_refuses_a_system_at_rest_before_fitting(monkeypatch):
    # Lorenz-63 at rho = 10 settles on a fixed point: the run fitted and analysed first, then
    # failed naming an internal variable.
    from tsrnn import reconstruct

    monkeypatch.setitem(reconstruct.MODELS, "esn", lambda *args: pytest.fail("fitted"))
    with pytest.raises(ValueError, match="settled on a fixed point"):
        reconstruct.run_reconstruction(reconstruct.ReconstructionConfig(
            system_params={"rho": 10.0}, n_train=5_000, n_test=2_000))


def test_reconstruct_saves_the_fitted_model_when_asked(tmp_path, capsys):
    from tsrnn.reservoir import NVAR

    path = tmp_path / "model.pt"
    options = ["reconstruct", "--model", "nvar", "--n-train", "1000", "--n-test", "300",
               "--n-exponents", "1", "-q", "--save-model", str(path)]
    assert main(options) == 0
    assert f"model saved to {path}" in capsys.readouterr().out
    model = NVAR.load(path)
    assert model.predict(5).shape == (5, 3)
    with pytest.raises(SystemExit, match="exists; pass --overwrite"):
        main(options)  # refused before any work
    assert main([*options, "--overwrite"]) == 0


def test_reconstruct_tunes_the_esn_on_the_training_block():
    # SPEC section 4's ESN (radius 0.9) collapses to a fixed point on Rossler (D_stsp 3.6):
    # the settings tried on the end of the training block pick one that reconstructs it.
    from tsrnn.reconstruct import ReconstructionConfig, run_reconstruction

    settings = dict(system="rossler", n_train=6_000, n_test=2_000, n_exponents=1)
    tuned = run_reconstruction(ReconstructionConfig(**settings))
    assert tuned.tuning["chosen"] != {"spectral_radius": 0.9}
    assert len(tuned.tuning["scores"]) == len(tuned.tuning["tried"]) == 3
    assert tuned.state_space_divergence < 1.0
    assert "tuned: spectral_radius=" in tuned.text()
    untuned = run_reconstruction(ReconstructionConfig(**settings, tune=False))
    assert untuned.tuning is None and untuned.state_space_divergence > 2.0


def test_tuning_keeps_the_run_to_one_progress_bar(capfd):
    from tsrnn.reconstruct import ReconstructionConfig, run_reconstruction

    run_reconstruction(ReconstructionConfig(n_train=4_000, n_test=500, n_exponents=1,
                                            verbose=True))
    bars = capfd.readouterr().err.count("0/1 [")
    assert bars == 1, f"{bars} progress bars"


def test_epochs_given_to_a_reservoir_are_announced():
    with pytest.warns(UserWarning, match="max_epochs=5 has no effect on 'nvar'"):
        assert main(["reconstruct", "--model", "nvar", "--max-epochs", "5", "--n-train", "1000",
                     "--n-test", "300", "--n-exponents", "1", "-q"]) == 0


def test_reconstruct_observes_a_forcing_phase_as_cosine_and_sine():
    # The forced Duffing oscillator's phase grows without bound: as simulated, the held-out
    # phase lies beyond the training range and no model can place it (D_stsp was 2.4).
    from tsrnn.reconstruct import ReconstructionConfig, run_reconstruction

    report = run_reconstruction(ReconstructionConfig(system="duffing", n_train=6_000,
                                                     n_test=2_000, n_exponents=1))
    assert report.angles_on_circle == [2]
    assert "coordinate 2 (an angle advancing without bound) as cosine and sine" in \
        report.text()
    assert report.state_space_divergence < 1.0


@pytest.mark.parametrize("verb", [["lyapunov", "henon", "--n-steps", "50",
                                   "--n-trajectories", "2"],
                                  ["simulate", "henon", "--n-steps", "5"]])
def test_system_commands_run_with_the_threads_asked_for(verb, monkeypatch, capsys):
    # torch's default (all cores) made `tsrnn lyapunov logistic` 40x slower than one thread
    # on a busy two-core machine; the commands now take --threads, default 1.
    import torch

    seen = []
    monkeypatch.setattr(torch, "set_num_threads", seen.append)
    assert main(verb) == 0
    assert seen[0] == 1
    assert main([*verb, "--threads", "2"]) == 0
    assert seen[-1] == 2
    with pytest.raises(SystemExit, match="--threads must be >= 1"):
        main([*verb, "--threads", "0"])


def test_the_reports_settings_name_the_default_model_and_the_tuning_unit(capsys):
    assert main(["reconstruct", "--n-train", "4000", "--n-test", "300", "--n-exponents", "1",
                 "-q", "-o", "report.json"]) == 0
    report = json.loads(Path("report.json").read_text())
    assert report["settings"]["model"] == "esn"
    assert report["tuning"]["score"] == "median valid prediction time, in steps"


def test_reconstruct_fits_kuramoto_sivashinsky_with_its_benchmarks_esn(monkeypatch):
    # The 1000-unit Lorenz-63 ESN forecast KS for 0.5 Lyapunov times and missed its
    # spectrum; the KS benchmark's reservoir is used instead of the tuning.
    from tsrnn.reconstruct import ReconstructionConfig, run_reconstruction
    from tsrnn.reservoir import ESN

    class Stop(Exception):
        pass

    fitted = []

    def fit(self, y, X=None):
        fitted.append(self.get_params())
        raise Stop

    monkeypatch.setattr(ESN, "fit", fit)
    with pytest.raises(Stop):
        run_reconstruction(ReconstructionConfig(system="ks", n_train=4_500, n_test=200))
    (params,) = fitted  # no tuning fits before it
    assert params["n_units"] == 4000 and params["squared_units"]
    assert params["input_connectivity"] == pytest.approx(1 / 64)


@pytest.mark.slow
def test_reconstruct_learns_kuramoto_sivashinskys_leading_exponents():
    from tsrnn.reconstruct import ReconstructionConfig, run_reconstruction

    report = run_reconstruction(ReconstructionConfig(system="kuramotosivashinsky",
                                                     n_exponents=2))
    assert report.valid_prediction_unit == "Lyapunov times"
    assert report.valid_prediction_time > 2.0
    assert report.lyapunov_learned[0] == pytest.approx(report.lyapunov_true[0], rel=0.2)
    assert "settings: n_units=4000" in report.text()
