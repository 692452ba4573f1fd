"""A small stretch of segment files and a cleaner for the batch-cleaning tests.

Loaded by path (``tests/gravwave/test_batch.py``, ``tests/launch/test_slurm_array_real.py``):
not collected (no ``test_`` prefix).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gwpy.timeseries import TimeSeries, TimeSeriesDict

from gravwave import synthetic as syn
from gravwave.cleaners import CascadeCleaner, NetworkCleaner, NetworkConfig, WienerCleaner
from gravwave.io import write_multichannel_hdf5
from gravwave.models.deepclean import DeepClean
from gravwave.preprocess import Standardizer

#: 16-s segments (the policy's shortest), the generator's 7 witnesses at 4096 Hz.
PARAMS = syn.SyntheticParams(duration=16.0, seed=11, t0=1262304000.0)
STRAIN = syn.STRAIN_CHANNEL


def segment(k: int, params: syn.SyntheticParams = PARAMS) -> TimeSeriesDict:
    """Segment ``k`` of the stretch: strain first, then the witnesses."""
    s = syn.generate(params, k)
    return TimeSeriesDict({STRAIN: s.strain, **s.witnesses})


def frame_name(data: TimeSeriesDict, ext: str = ".h5") -> str:
    """``V-V1_TEST-<gps>-<duration>.<ext>``: the frame naming convention."""
    ts = data[STRAIN]
    t0, dur = float(ts.t0.value), len(ts) / float(ts.sample_rate.value)
    return f"V-V1_TEST-{t0:.0f}-{dur:.0f}{ext}"


def write_stretch(directory: Path, ks: range) -> list[Path]:
    """Segments ``ks`` as multi-channel HDF5 files named as frames are."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in ks:
        data = segment(k)
        paths.append(write_multichannel_hdf5(directory / frame_name(data), data))
    return paths


def make_cleaner(path: Path) -> CascadeCleaner:
    """A Wiener stage fitted on segments 0-1 and an untrained DeepClean stage (its random
    weights make a torch forward pass part of every cleaning), saved to ``path``."""
    a, b = segment(0), segment(1)
    fs = float(PARAMS.sample_rate)
    chans = [c for c in a if c != STRAIN]

    def join(c: str) -> TimeSeries:
        x = np.concatenate([a[c].value, b[c].value])
        return TimeSeries(x, t0=a[c].t0, sample_rate=fs, name=c)

    wit = TimeSeriesDict((c, join(c)) for c in chans)
    wiener = WienerCleaner(STRAIN, chans, fs, [tuple(PARAMS.linear_band)], n_taps=64)
    wiener.fit(join(STRAIN), wit)
    x = np.stack([wit[c].value for c in chans])
    model = DeepClean(len(chans), widths=(4, 8), dilations=(1, 2)).eval()
    config = NetworkConfig(
        strain_channel=STRAIN,
        witness_channels=chans,
        sample_rate=fs,
        bands=[PARAMS.bands["bilinear"]],
        target_scale=float(np.std(a[STRAIN].value)) * 1e-3,
        window=8.0,
    )
    cascade = CascadeCleaner(wiener, NetworkCleaner(model, Standardizer().fit(x), config))
    cascade.save(path)
    return cascade
