"""Execute every notebook in ``notebooks/`` with nbclient, with tiny sizes injected into the parameter cell.

Each notebook's first code cell is tagged ``parameters`` and holds plain ``NAME = value`` lines; the
test rewrites those values (one epoch, a handful of cases, ``OUT_DIR`` in a temporary folder), runs
the notebook in a ``python3`` kernel of this same environment and checks that no cell failed, that
inline figures were produced and that the notebook wrote its key artefacts.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
SHARED_MRI = REPO.parent / "shared" / "data" / "mri"
CELL_TIMEOUT_S = 600

TINY: dict[str, dict] = {
    "01_sepclr_exploration.ipynb": {"MAX_EPOCHS": 1, "N_SUBJECTS": 40, "WIDTH": 4},
    "02_prostate_zones.ipynb": {"MAX_EPOCHS": 1, "STAGE2_EPOCHS": 0, "N_CASES": 3},
    "03_ecg_prototypes.ipynb": {"MAX_EPOCHS": 1, "N_RECORDS": 60, "N_SHOW": 2},
}


def _parameter_cell(nb):
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "expected exactly one code cell tagged 'parameters'"
    assert cells[0] is next(c for c in nb.cells if c.cell_type == "code"), (
        "the parameter cell must come first"
    )
    return cells[0]


def inject_parameters(nb, values: dict) -> None:
    """Replace the value of each ``NAME = ...`` line of the parameter cell (every name must exist)."""
    cell = _parameter_cell(nb)
    source = cell.source
    for name, value in values.items():
        source, n = re.subn(rf"^{name}\s*=.*$", f"{name} = {value!r}", source, flags=re.M)
        assert n == 1, f"parameter {name} not found in the parameter cell"
    # the kernel must run in this environment (the one with medcl installed)
    cell.source = source + f"\nimport sys as _sys\nassert _sys.prefix == {sys.prefix!r}, _sys.executable\n"


def execute(path: Path, values: dict, cwd: Path):
    nb = nbformat.read(path, as_version=4)
    inject_parameters(nb, values)
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    return nb


def outputs(nb, kind: str) -> list:
    return [
        o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == kind
    ]


def png_count(nb) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def test_notebooks_are_committed_clean():
    assert {p.name for p in NOTEBOOKS.glob("*.ipynb")} >= set(TINY)
    for name in sorted(TINY):
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), f"{name}: outputs not cleared"
        assert 8 <= len(nb.cells) <= 15, name
        params = _parameter_cell(nb).source
        assert "MAX_EPOCHS" in params and "OUT_DIR" in params
        assert "medcl " in nb.cells[-1].source and nb.cells[-1].cell_type == "markdown"  # CLI pointer


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY))
def test_notebook_executes(name, tmp_path):
    out = tmp_path / "out"
    values = {**TINY[name], "OUT_DIR": str(out)}
    if name.startswith("02"):
        values["REAL_MRI"] = str(SHARED_MRI)  # exercised when the real-data folder exists, skipped otherwise
    nb = execute(NOTEBOOKS / name, values, tmp_path)

    assert not outputs(nb, "error")
    assert png_count(nb) >= 2, f"{name}: expected inline figures"
    if name.startswith("01"):
        result = json.loads((out / "eval" / "evaluation.json").read_text())
        assert {"common", "salient"} <= set(result["bg_tg"])
        assert {p["attribute"] for p in result["probes"]} >= {"texture", "digit"}
        assert (out / "embeddings.csv").is_file()
        assert any("text/html" in o.get("data", {}) for o in outputs(nb, "display_data"))  # the probe table
    elif name.startswith("02"):
        volumes = sorted((out / "segment").glob("*_volumes.json"))
        assert volumes and set(json.loads(volumes[0].read_text())) >= {"zones", "gland"}
        assert sorted((out / "segment").glob("*_zones.nii.gz"))
        if (SHARED_MRI / "prostatex-nrrd").is_dir():
            assert (out / "segment_real" / "t2_tse_tra_volumes.json").is_file()
            assert png_count(nb) >= 4  # phantom, overlay, phantom QC, real-scan QC
    else:
        predictions = json.loads((out / "predict" / "predictions.json").read_text())
        assert len(predictions["records"]) == TINY[name]["N_SHOW"] and len(predictions["labels"]) == 71
        assert (out / "reports" / "index.html").is_file()
        assert len(list((out / "reports").glob("*.html"))) == 2  # index + one report
