"""The notebooks run from top to bottom (slow: select with ``-m slow``)."""

import json
import runpy
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_code_runs(notebook, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # whatever a notebook writes stays in the temporary folder
    cells = json.loads(notebook.read_text())["cells"]
    code = "\n\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")
    script = tmp_path / "notebook.py"
    script.write_text("import matplotlib\nmatplotlib.use('Agg')\n" + code)
    runpy.run_path(str(script), run_name="__main__")
