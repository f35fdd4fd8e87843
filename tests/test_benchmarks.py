"""The benchmark scripts still import against the library and build their command lines
(they run for minutes, so only their set-up is checked here; the figures are in
benchmarks/RESULTS.md)."""

import importlib.util
import pathlib
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(BENCHMARKS.glob("bench_*.py"))


def load(path: pathlib.Path):
    spec = importlib.util.spec_from_file_location(f"_benchmark_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # scripts run their work only under __main__
    return module


def test_every_benchmark_is_found():
    assert len(SCRIPTS) >= 18


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_benchmark_imports_and_its_command_line_builds(path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # for benchmarks/_common.py
    module = load(path)
    assert callable(getattr(module, "main", None)), f"{path.name} has no main()"
    if "argparse" not in path.read_text():
        return
    monkeypatch.setattr(sys, "argv", [path.name, "--help"])
    with pytest.raises(SystemExit) as exit_info:
        module.main()
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out
