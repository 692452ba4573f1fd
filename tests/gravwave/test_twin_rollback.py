"""``twins twin rollback`` on a noise twin: a segment that got in is taken out, and the stream
goes on from the restored cursor with the same results as if it had never been there."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gwpy.timeseries import TimeSeriesDict

from gravwave import synthetic as syn
from gravwave.cleaners import WienerCleaner
from gravwave.io import read_multichannel_hdf5, write_multichannel_hdf5
from gravwave.twin import NoiseTwin
from twins.cli import main

DUR = 16.0
T0 = 1262304018.0
POLICY = {"register_models": False, "min_refit_seconds": DUR, "buffer_seconds": 3 * DUR}


def _segment_file(tmp_path: Path, seg: syn.SyntheticSegment, name: str) -> Path:
    data = TimeSeriesDict({syn.STRAIN_CHANNEL: seg.strain, **seg.witnesses})
    return write_multichannel_hdf5(tmp_path / name, data)


def _cleaned(twin: NoiseTwin) -> np.ndarray:
    return next(iter(read_multichannel_hdf5(twin.cleaned_path()).values())).value


def test_rollback_takes_a_segment_out_and_the_stream_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = syn.SyntheticParams(duration=DUR, seed=11, t0=T0)
    segs = [syn.generate(params, k) for k in range(2)]
    fit = syn.generate(syn.SyntheticParams(duration=DUR, seed=11, t0=T0 - 4 * DUR), 0)
    chans = list(fit.witnesses)
    cleaner = WienerCleaner(
        syn.STRAIN_CHANNEL, chans, 4096, [fit.params.linear_band], n_taps=64
    ).fit(fit.strain, fit.witnesses)
    files = [_segment_file(tmp_path, s, f"seg{k}.h5") for k, s in enumerate(segs)]

    twin_dir = tmp_path / "twin"
    NoiseTwin.init(twin_dir, cleaner, POLICY)
    for f in files:
        assert main(["twin", "update", str(twin_dir), "--data", str(f)]) == 0
    twin = NoiseTwin.open(twin_dir)
    after_both = _cleaned(twin)
    state_v1 = json.loads((twin_dir / "versions" / "v000001" / "state.json").read_text())
    capsys.readouterr()

    assert main(["twin", "rollback", str(twin_dir), "--to", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["restored"] == 1 and out["undone"] == [2, 2] and out["version"] == 3
    twin = NoiseTwin.open(twin_dir)
    assert twin.cursor == pytest.approx(T0 + DUR)  # segment 1 is out
    assert twin.store.state.extra == state_v1["extra"]  # buffer, reference: as at v1
    assert twin.result().gps_start == pytest.approx(T0)  # segment 0's record is the newest
    assert twin.store.verify() == []

    # the taken-out segment comes again: processed anew (not "nothing new"), same result
    assert main(["twin", "update", str(twin_dir), "--data", str(files[1])]) == 0
    twin = NoiseTwin.open(twin_dir)
    assert twin.cursor == pytest.approx(T0 + 2 * DUR)
    # same cleaner, same input, same float64 arithmetic: bit-identical cleaned strain
    np.testing.assert_array_equal(_cleaned(twin), after_both)
