"""The drought-twin notebook runs top to bottom on the tiny preset, through the twin contract
(from_run, open, update, simulate, status, history, rollback)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "drought_twin.ipynb"


@pytest.mark.slow
def test_drought_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    root = str(NOTEBOOK.parents[1])
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("TWINS_NB_PRESET", "tiny")
    monkeypatch.setenv("TWINS_NB_WORKDIR", str(tmp_path / "work"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "cursor" in text and "spi_3 lead 1" in text
    # history, rollback and the month in again: v0 init, v1 and v2 the two months, v3 the
    # rollback to v1, v4 the second month again
    assert "v2 update  cursor 2007-12" in text
    assert "rollback: v3 restores v1, cursor 2007-11" in text
    assert "v4: ['2007-12'] in again, cursor 2007-12" in text
    assert (tmp_path / "work" / "twin" / "twin.json").is_file()
