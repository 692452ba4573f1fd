"""The ingest gates on real detector strain: GW150914 as GWOSC publishes it passes them.

The default bound K = 13 robust sigma is derived for Gaussian noise (gravwave.gates); this
checks it on real, non-Gaussian strain with a real binary-black-hole merger in it, so the gate
cannot be refusing the data the twin exists for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gravwave.gates import DEFAULT_MAX_ROBUST_SIGMA, check_segment, robust_location_scale
from gravwave.io import read_gwosc_hdf5

DATA = Path(__file__).resolve().parents[2] / "data" / "gravwave"


@pytest.mark.parametrize(
    ("name", "largest"),
    # peak |x - median| / robust sigma of each file, as this test prints it: float64 order
    # statistics of fixed bytes, so the only tolerance is the rounding of the stated value
    [("H-H1_LOSC_4_V2-1126259446-32.hdf5", 3.71), ("L-L1_LOSC_4_V2-1126259446-32.hdf5", 4.55)],
)
def test_gw150914_strain_passes_the_gates(name: str, largest: float) -> None:
    strain, segments = read_gwosc_hdf5(DATA / name)
    assert abs(segments) == pytest.approx(32.0)  # the whole file is analysable
    check_segment({strain.name or "strain": strain}, name)  # default bounds: no refusal
    x = np.asarray(strain.value, dtype=np.float64)
    med, sigma = robust_location_scale(x)
    peak = float(np.max(np.abs(x - med)) / sigma)
    print(f"{name}: peak {peak:.2f} robust sigma (K = {DEFAULT_MAX_ROBUST_SIGMA:g})")
    assert peak == pytest.approx(largest, abs=0.005)
    assert peak < DEFAULT_MAX_ROBUST_SIGMA / 2
