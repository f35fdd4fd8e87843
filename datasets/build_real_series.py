"""Extract and normalise the real series that ``tsrnn.datasets`` ships.

Usage (from the repository root; run by hand, never at import or install time)::

    pip download statsmodels==0.15.0 --no-deps -d /tmp/sm
    python datasets/build_real_series.py /tmp/sm/statsmodels-0.15.0-*.whl

    # or write somewhere else than tsrnn/datasets/data/ (to compare with the shipped files):
    python datasets/build_real_series.py WHEEL --out /tmp/check

The script reads the CSV files straight out of the statsmodels wheel (a zip file; statsmodels
is never imported or installed), checks that each dataset's ``COPYRIGHT`` note in its
``data.py`` says "public domain", reshapes each series into one tidy CSV (a time column
first, then one column per variate, ISO-like time stamps) and writes
``tsrnn/datasets/data/<name>.csv`` plus ``provenance.json`` with the wheel's name and SHA-256,
each member's path and SHA-256 and the SHA-256 of each file written. Values are copied, not
changed: only the layout, the column names and the time stamps are normalised.

Any wheel of statsmodels whose dataset files match these layouts works; the shipped files
were made from ``statsmodels-0.15.0-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl``
(the data files are the same in every platform wheel of one version).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import io
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "tsrnn" / "datasets" / "data"

MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]


def _sunspots(raw: pd.DataFrame) -> pd.DataFrame:
    # YEAR,SUNACTIVITY -> year,sunspot_number (yearly mean sunspot number)
    return pd.DataFrame({"year": raw["YEAR"].astype(int),
                         "sunspot_number": raw["SUNACTIVITY"].astype(float)})


def _co2(raw: pd.DataFrame) -> pd.DataFrame:
    # date as YYYYMMDD integers -> ISO dates; weeks without a value stay empty (NaN)
    dates = pd.to_datetime(raw["date"].astype(str), format="%Y%m%d")
    return pd.DataFrame({"date": dates.dt.strftime("%Y-%m-%d"), "co2": raw["co2"].astype(float)})


def _nile(raw: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"year": raw["year"].astype(int), "volume": raw["volume"].astype(float)})


def _elnino(raw: pd.DataFrame) -> pd.DataFrame:
    # one row per year with twelve month columns -> one row per month, in time order
    long = raw.melt(id_vars="YEAR", value_vars=MONTHS, var_name="month_name", value_name="sst")
    long["month_number"] = long["month_name"].map({m: i + 1 for i, m in enumerate(MONTHS)})
    long = long.sort_values(["YEAR", "month_number"], kind="stable")
    month = [f"{int(y):04d}-{int(m):02d}" for y, m in zip(long["YEAR"], long["month_number"])]
    return pd.DataFrame({"month": month, "sst": long["sst"].astype(float).to_numpy()})


def _macrodata(raw: pd.DataFrame) -> pd.DataFrame:
    # year,quarter,... -> quarter ("1959Q1"), then the twelve variates unchanged
    quarter = [f"{int(y):04d}Q{int(q)}" for y, q in zip(raw["year"], raw["quarter"])]
    values = raw.drop(columns=["year", "quarter"]).astype(float)
    return pd.concat([pd.DataFrame({"quarter": quarter}), values], axis=1)


# name -> (member directory inside statsmodels/datasets, CSV member name, reshaping function)
DATASETS: dict[str, tuple[str, str, Callable[[pd.DataFrame], pd.DataFrame]]] = {
    "sunspots": ("sunspots", "sunspots.csv", _sunspots),
    "co2": ("co2", "co2.csv", _co2),
    "nile": ("nile", "nile.csv", _nile),
    "elnino": ("elnino", "elnino.csv", _elnino),
    "macrodata": ("macrodata", "macrodata.csv", _macrodata),
}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _module_strings(source: str) -> dict[str, str]:
    """String constants of a ``data.py`` (COPYRIGHT, SOURCE, ...), read without importing it."""
    module = ast.parse(source)
    found = {"__doc__": (ast.get_docstring(module) or "").strip()}
    for node in module.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            found[node.targets[0].id] = node.value.value.strip()
    return found


def build(wheel: Path, out_dir: Path) -> dict:
    """Write the normalised CSVs and ``provenance.json`` into ``out_dir``; return the record."""
    wheel_bytes = wheel.read_bytes()
    match = re.match(r"statsmodels-([^-]+)-", wheel.name)
    if match is None:
        raise SystemExit(f"{wheel.name} does not look like a statsmodels wheel")
    out_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "source_package": "statsmodels",
        "source_version": match.group(1),
        "wheel": wheel.name,
        "wheel_sha256": _sha256(wheel_bytes),
        "package_licence": "BSD-3-Clause (statsmodels code); the data files are public domain",
        "datasets": {},
    }
    with zipfile.ZipFile(io.BytesIO(wheel_bytes)) as archive:
        for name, (folder, member, reshape) in DATASETS.items():
            member_path = f"statsmodels/datasets/{folder}/{member}"
            notes_path = f"statsmodels/datasets/{folder}/data.py"
            raw_bytes = archive.read(member_path)
            notes = _module_strings(archive.read(notes_path).decode("utf-8"))
            copyright_note = notes.get("COPYRIGHT", "")
            # refuse to ship anything whose own note does not put it in the public domain
            if "public domain" not in copyright_note.lower():
                raise SystemExit(
                    f"{notes_path}: COPYRIGHT is {copyright_note!r}, not public domain")
            table = reshape(pd.read_csv(io.BytesIO(raw_bytes)))
            text = table.to_csv(index=False, lineterminator="\n")
            (out_dir / f"{name}.csv").write_text(text, encoding="utf-8")
            record["datasets"][name] = {
                "file": f"{name}.csv",
                "rows": len(table),
                "columns": list(table.columns),
                "sha256": _sha256(text.encode("utf-8")),
                "source_member": member_path,
                "source_member_sha256": _sha256(raw_bytes),
                "licence_note": copyright_note,
                # some notes set TITLE = __doc__, which only the module docstring resolves
                "title": notes.get("TITLE") or notes["__doc__"],
                "original_source": notes.get("SOURCE", ""),
            }
            print(f"{name:10s} {len(table):5d} rows  <- {member_path}")
    (out_dir / "provenance.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="path to a downloaded statsmodels wheel")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"output folder (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    build(args.wheel, args.out)


if __name__ == "__main__":
    main()
