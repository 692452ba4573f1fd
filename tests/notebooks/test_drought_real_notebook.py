"""The real-data drought notebook runs top to bottom on GPCC (data/hydrology): SPI-3 maps of
two documented droughts, a small forecaster against the baselines, the twin on 2016-01."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "drought_real_data.ipynb"


@pytest.mark.slow
def test_drought_real_data_notebook_executes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    root = str(NOTEBOOK.parents[1])
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("TWINS_NB_WORKDIR", str(tmp_path / "work"))
    monkeypatch.setenv("TWINS_NB_STEPS", "20")
    monkeypatch.setenv("TWINS_NB_HIDDEN", "8")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=240,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    rows = {
        ln.split("  ")[0]: ln for ln in text.splitlines() if ln[:4] in ("OND ", "MAM ", "JAS ")
    }
    # what the markdown says of the two droughts (ranks among the 70 seasons of the record)
    assert "1 of 70" in rows["OND 2010"] and "6 of 70" in rows["MAM 2011"], rows
    assert "3 of 70" in rows["JAS 1983"] and "1 of 70" in rows["JAS 1984"], rows
    assert "1984, 1972, 1983" in rows["JAS 1984"]
    # the baselines the markdown quotes: hydrology.baselines on exactly this split
    assert (
        "baselines by lead 1-3: persistence 0.853 / 1.158 / 1.377; climatology 1.022 / 1.022 "
        "/ 1.022; analogue 0.591 / 0.810 / 1.019" in text
    ), text
    assert "update: version 1, cursor 2016-01, noop False" in text
    assert "same month again: version 1, noop True" in text
    work = tmp_path / "work"
    assert (work / "spi3_documented_droughts.png").is_file()
    assert (
        work / "twin" / "versions" / "v000001" / "products" / "alerts_2016-01_spi_3.png"
    ).is_file()
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3  # the drought maps, the gain over ESP, the alert map
