"""scripts/drought_skill_ceiling.py: its helpers, and one run on the tiny preset."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "drought_skill_ceiling.py"


@pytest.fixture(scope="module")
def mod():
    spec = importlib.util.spec_from_file_location("drought_skill_ceiling", SCRIPT)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def test_helpers(mod) -> None:
    v = np.arange(12.0)[None].repeat(3, 0)  # (cell, time)
    tm = mod.trailing_mean(v, 3)
    assert np.isnan(tm[:, :2]).all()
    np.testing.assert_allclose(tm[0, 2:], np.arange(1.0, 11.0))
    x = np.stack([np.ones(50), np.linspace(0, 1, 50)], -1)
    y = 2 + 3 * x[:, 1]
    y[7] = np.nan  # skipped
    # an exact linear relation, 49 rows, condition number of x about 4: a few u64 * 4
    np.testing.assert_allclose(mod.lstsq(x, y), [2, 3], atol=1e-10)
    assert mod.median_rmse(np.zeros((2, 4)), np.ones((2, 4))) == pytest.approx(1.0)

    class Cube:  # 3 x 4 grid, two sea cells
        shape = (3, 4)
        cells = np.array([0, 1, 2, 4, 5, 6, 8, 9, 10, 11])

    const = np.full((10, 5), 0.7)
    # a normalised weighted mean of equal values in float64: <= (cells + 1) u64 relative
    np.testing.assert_allclose(mod.regional(Cube, const, 2.0), const, rtol=1e-12)


@pytest.mark.slow
def test_runs_on_tiny_preset(tmp_path: Path) -> None:
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    out = subprocess.run(
        [
            sys.executable,
            "-W",
            "ignore",
            str(SCRIPT),
            "--workdir",
            str(tmp_path),
            "task.params.preset=tiny",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        cwd=ROOT,
        check=True,
    )
    lines = [ln for ln in out.stderr.splitlines() if re.match(r"(val|test) spi_3 lead", ln)]
    assert len(lines) == 6, out.stderr[-2000:]
    assert re.search(r"drought cell-months .*: train \d+\.\d%, val \d+\.\d%, test", out.stderr)
    for ln in lines:
        assert re.search(
            r"ESP \d\.\d{3} \| recalibrated .* oracle .* ridge, train-fitted [+-]", ln
        )
