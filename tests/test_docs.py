"""Every code example that tsrnn shows runs and prints what it claims.

- the ``>>>`` examples of the docstrings, as doctests (every module of the package whose
  source holds one is found automatically, so a new example is tested without listing it);
- the "A taste" block of README.md, read from the README itself so that the test breaks when
  the README goes stale, verbatim (~3 s);
- each command of the README's "Command line" block, through ``tsrnn.cli.main``: verbatim
  where fast, otherwise verbatim under ``slow`` and shortened in the default suite.
"""

from __future__ import annotations

import doctest
import importlib
import io
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

import tsrnn
from tsrnn.cli import main

PACKAGE_ROOT = Path(tsrnn.__file__).parent
README = PACKAGE_ROOT.parent / "README.md"
DOCTEST_FLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS


def _modules_with_examples() -> list[str]:
    """Dotted names of the tsrnn modules whose source holds a ``>>>`` example.

    Found from the source text rather than by importing every module, so that modules which
    need optional pieces (Triton, CUDA) are only imported when they carry an example.
    """
    names = []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        if ">>> " not in path.read_text(encoding="utf-8"):
            continue
        parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


DOCTEST_MODULES = _modules_with_examples()


def test_the_examples_are_found():
    # Guards the discovery above: if it silently found nothing, no example would be tested.
    assert len(DOCTEST_MODULES) >= 10
    assert {"tsrnn.systems", "tsrnn.analysis", "tsrnn.forecasting.rnn"} <= set(DOCTEST_MODULES)


@pytest.mark.parametrize("module_name", DOCTEST_MODULES)
def test_docstring_examples_print_what_they_show(module_name):
    module = importlib.import_module(module_name)
    tests = doctest.DocTestFinder().find(module, module_name)
    n_examples = sum(len(test.examples) for test in tests)
    assert n_examples > 0, f"{module_name} has '>>> ' in its source but no doctest was found"
    runner = doctest.DocTestRunner(optionflags=DOCTEST_FLAGS)
    report = io.StringIO()
    for test in tests:
        runner.run(test, out=report.write)
    assert runner.failures == 0, report.getvalue()


# ---------------------------------------------------------------------------------- README


def _readme_section(heading: str) -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"README.md has no section '## {heading}'"
    return match.group(1)


def _fenced_block(section: str, language: str) -> str:
    match = re.search(rf"^```{language}\n(.*?)^```", section, re.S | re.M)
    assert match, f"no ```{language} block"
    return match.group(1)


def _taste_code() -> str:
    return _fenced_block(_readme_section("A taste"), "python")


def _run_taste(code: str, tmp_path, monkeypatch) -> dict:
    monkeypatch.chdir(tmp_path)  # the block writes esn.pt into the working directory
    namespace: dict = {"__name__": "readme_taste"}
    exec(compile(code, str(README), "exec"), namespace)
    return namespace


# What the taste block's comments say it prints (the test checks that they still say so).
TASTE_SPECTRUM = "[  0.91  -0.   -14.57] 2.06"
TASTE_VPT = "6.8"


def _check_spectrum_lines(code: str, printed: list[str], namespace: dict):
    assert f"# {TASTE_SPECTRUM}" in code
    assert printed[0] == TASTE_SPECTRUM
    spectrum, stderr = namespace["spectrum"], namespace["stderr"]
    assert spectrum.shape == stderr.shape == (3,)
    # the literature values quoted in the comment lie within three standard errors
    literature = np.array([0.9056, 0.0, -14.5723])
    assert "literature: 0.906, 0, -14.572" in code
    assert np.all(np.abs(spectrum - literature) < 3 * stderr + 1e-3)


def test_readme_taste_verbatim_prints_what_its_comments_say(tmp_path, monkeypatch, capsys):
    code = _taste_code()
    namespace = _run_taste(code, tmp_path, monkeypatch)
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2
    _check_spectrum_lines(code, printed, namespace)
    assert "# (20000, 3), dt = 0.01" in code and namespace["y"].shape == (20_000, 3)
    assert namespace["forecast"].shape == (1_000, 3)
    assert f"# {TASTE_VPT} Lyapunov times" in code and printed[1] == TASTE_VPT
    # the saved model loads and forecasts the same
    from tsrnn.reservoir import ESN
    loaded = ESN.load(tmp_path / "esn.pt")
    np.testing.assert_array_equal(loaded.predict(1_000), namespace["forecast"])


# ---------------------------------------------------------------------------- command line


def _readme_commands() -> list[list[str]]:
    """The commands of the README's "Command line" block, without ``tsrnn`` and comments."""
    block = _fenced_block(_readme_section("Command line"), "")
    commands = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            assert words[0] == "tsrnn", line
            commands.append(words[1:])
    return commands


def _readme_command(*prefix: str) -> list[str]:
    """The README command that starts with ``prefix`` (the bare one if several do)."""
    matches = [c for c in _readme_commands() if c[:len(prefix)] == list(prefix)]
    if len(matches) > 1:
        matches = [c for c in matches if c == list(prefix)]
    assert len(matches) == 1, f"the README's command line block has no single {prefix}"
    return matches[0]


def test_readme_lists_the_commands_tested_here():
    # A new command in the README must get a test below.
    assert _readme_commands() == [
        ["reconstruct"],
        ["reconstruct", "--system", "rossler"],
        ["reconstruct", "--system", "duffing"],
        ["reconstruct", "--system", "ks"],
        ["reconstruct", "--model", "nvar"],
        ["reconstruct", "--model", "gru", "--noise", "0.05"],
        ["reconstruct", "--model", "shplrnn", "--noise", "0.05", "--max-epochs", "200"],
        ["simulate", "lorenz63", "--n-steps", "10000", "--transient", "1000", "-o", "lorenz.csv"],
        ["lyapunov", "lorenz63"],
        ["systems"],
    ]


def _run_cli(argv: list[str], tmp_path, monkeypatch, capsys) -> str:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 0
    return capsys.readouterr().out


# Sizes appended to a reconstruct command to shorten it (argparse keeps the last value).
SHORT_RECONSTRUCTION = ["--n-train", "1500", "--n-test", "500", "-q"]


def _check_reconstruction_report(out: str, model_name: str):
    assert f"by {model_name}" in out
    for measure in ("valid prediction time", "state-space divergence D_stsp",
                    "power-spectrum distance D_H", "Lyapunov spectrum ("):
        assert measure in out


# The GRU command has no shortened variant here: most of its time goes to the learned model's
# Lyapunov spectrum (~10 s, whatever the sizes); tests/test_cli.py runs a small GRU report.
@pytest.mark.parametrize("prefix, model_name, extra", [
    (("reconstruct",), "ESN", []),
    (("reconstruct", "--system", "rossler"), "ESN", ["--n-train", "5000"]),
    (("reconstruct", "--system", "duffing"), "ESN", ["--n-train", "5000"]),
    (("reconstruct", "--model", "nvar"), "NVAR", []),
    (("reconstruct", "--model", "shplrnn"), "ShallowPLRNN",
     ["--max-epochs", "1", "--n-train", "800"]),
])
def test_readme_reconstruct_commands_shortened(prefix, model_name, extra, tmp_path,
                                               monkeypatch, capsys):
    argv = _readme_command(*prefix) + SHORT_RECONSTRUCTION + extra
    out = _run_cli(argv, tmp_path, monkeypatch, capsys)
    _check_reconstruction_report(out, model_name)
    n_train = argv[len(argv) - 1 - argv[::-1].index("--n-train") + 1]  # the last one given
    assert f"data: {n_train} training and 500 held-out" in out
    if model_name == "ShallowPLRNN":  # "DSR, with fixed points"
        assert "fixed points, learned model" in out and "fixed points, true system: 3" in out
    if "rossler" in argv:  # "the ESN's spectral radius is tuned first"
        assert "Reconstruction of Rossler" in out and "tuned: spectral_radius=" in out
    if "duffing" in argv:  # "a forcing phase is observed as its cosine and sine"
        assert "observed: coordinate 2 (an angle advancing without bound) as cosine" in out


@pytest.mark.slow
def test_readme_kuramoto_sivashinsky_command_verbatim(tmp_path, monkeypatch, capsys):
    # "Kuramoto-Sivashinsky: a 4000-unit ESN, ~65 s"
    out = _run_cli(_readme_command("reconstruct", "--system", "ks"), tmp_path, monkeypatch,
                   capsys)
    _check_reconstruction_report(out, "ESN")
    assert "settings: n_units=4000" in out
    vpt = float(re.search(r"valid prediction time: ([\d.]+) Lyapunov times", out).group(1))
    assert vpt > 2


@pytest.mark.slow
def test_readme_reconstruct_default_verbatim(tmp_path, monkeypatch, capsys):
    # "the main job": an echo state network reconstructs Lorenz-63 (figures in the README's
    # "Two commands" block and RESULTS.md)
    out = _run_cli(_readme_command("reconstruct"), tmp_path, monkeypatch, capsys)
    _check_reconstruction_report(out, "ESN")
    assert "data: 20000 training and 20000 held-out steps, dt = 0.01" in out
    vpt = float(re.search(r"valid prediction time: ([\d.]+) Lyapunov times", out).group(1))
    d_stsp = float(re.search(r"D_stsp: ([\d.]+)", out).group(1))
    assert vpt > 3 and d_stsp < 0.3


@pytest.mark.slow
@pytest.mark.parametrize("prefix, model_name", [
    (("reconstruct", "--model", "gru"), "GRUForecaster"),
    (("reconstruct", "--model", "shplrnn"), "ShallowPLRNN"),
])
def test_readme_reconstruct_commands_verbatim(prefix, model_name, tmp_path, monkeypatch,
                                              capsys):
    out = _run_cli(_readme_command(*prefix), tmp_path, monkeypatch, capsys)
    _check_reconstruction_report(out, model_name)
    if model_name == "ShallowPLRNN":
        assert "fixed points, learned model" in out


def test_readme_simulate_command_verbatim(tmp_path, monkeypatch, capsys):
    out = _run_cli(_readme_command("simulate"), tmp_path, monkeypatch, capsys)
    assert "wrote (10000, 3) states" in out
    lines = (tmp_path / "lorenz.csv").read_text().splitlines()
    assert lines[0] == "time,x0,x1,x2" and len(lines) == 1 + 10_000
    assert np.loadtxt(tmp_path / "lorenz.csv", delimiter=",", skiprows=1).shape == (10_000, 4)


def test_readme_lyapunov_command_verbatim(tmp_path, monkeypatch, capsys):
    out = _run_cli(_readme_command("lyapunov"), tmp_path, monkeypatch, capsys)
    # the same estimate as the taste block's lyapunov_spectrum(Lorenz63()) (same defaults)
    exponents = [float(x) for x in re.findall(r"lambda_\d\s+([+-][\d.]+)", out)]
    np.testing.assert_allclose(exponents, [0.911, -0.003, -14.575], atol=1e-3)
    assert "Kaplan-Yorke dimension 2.06" in out


def test_readme_systems_command_verbatim(tmp_path, monkeypatch, capsys):
    out = _run_cli(_readme_command("systems"), tmp_path, monkeypatch, capsys)
    names = [line.split()[0] for line in out.splitlines()]
    assert {"lorenz63", "rossler", "henon", "kuramotosivashinsky", "mackeyglass"} <= set(names)
