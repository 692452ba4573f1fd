"""The Wiener + DeepClean cascade: file round trip, and a short training on synthetic data."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from gwpy.timeseries import TimeSeries, TimeSeriesDict
from pydantic import ValidationError

from gravwave.cleaners import (
    CascadeCleaner,
    Cleaner,
    NetworkCleaner,
    NetworkConfig,
    WienerCleaner,
    load_cleaner,
)
from gravwave.metrics import asd_ratio, matched_filter_snr, out_of_band
from gravwave.models import DeepClean
from gravwave.policy import TwinPolicy
from gravwave.preprocess import Standardizer
from gravwave.synthetic import SyntheticParams, generate
from gravwave.training import (
    CascadeParams,
    CascadeTraining,
    SkirtedNoiseCleaning,
    SkirtedParams,
    fit_cascade,
    retrain_cascade,
)
from twins.errors import ConfigError, DataError

log = logging.getLogger(__name__)
FS = 1024.0


def _series(x: np.ndarray, y: np.ndarray, chans: list[str]) -> tuple[TimeSeries, TimeSeriesDict]:
    wit = TimeSeriesDict((c, TimeSeries(x[i], sample_rate=FS)) for i, c in enumerate(chans))
    return TimeSeries(y, sample_rate=FS, name="V1:h"), wit


def _small_cascade() -> CascadeCleaner:
    rng = np.random.default_rng(0)
    chans = ["a", "b", "c"]
    x = rng.standard_normal((3, int(32 * FS)))
    y = np.convolve(x[1], [0.3, 0.2, -0.1], mode="same")
    wiener = WienerCleaner("V1:h", chans, FS, [(100.0, 140.0)], n_taps=16).fit(
        *_series(x, y, chans)
    )
    model = DeepClean(3, widths=(4, 8), dilations=(1, 2))
    with torch.no_grad():
        for prm in model.parameters():
            prm.add_(0.1 * torch.randn_like(prm))
    config = NetworkConfig(
        strain_channel="V1:h",
        witness_channels=chans,
        sample_rate=FS,
        bands=[(40.0, 60.0)],
        target_scale=2.5,
    )
    return CascadeCleaner(wiener, NetworkCleaner(model, Standardizer().fit(x), config))


def test_cascade_round_trips_weights_only(tmp_path: Path) -> None:
    cascade = _small_cascade()
    assert isinstance(cascade, Cleaner)
    x = np.random.default_rng(1).standard_normal((3, int(20 * FS)))
    for cleaner in (cascade, cascade.network, cascade.wiener):
        path = cleaner.save(tmp_path / "c.pt")
        torch.load(path, weights_only=True)  # plain tensors, numbers and strings only
        again = load_cleaner(path)
        assert type(again) is type(cleaner)
        assert again.witness_channels == cleaner.witness_channels
        np.testing.assert_array_equal(again.noise(x), cleaner.noise(x))
    stages = cascade.stages()
    # the same two stage outputs (O(1)) added once, in float64: <= u64 * 10
    np.testing.assert_allclose(
        cascade.noise(x), stages["wiener"].noise(x) + stages["network"].noise(x), atol=1e-12
    )
    with pytest.raises(DataError, match="same witness channels"):
        CascadeCleaner(cascade.wiener, _rename(cascade.network))
    # fit refits the Wiener stage only; the trained network stays; a network alone is trained
    y = np.convolve(x[2], [0.4, -0.1], mode="same")
    refit = cascade.refit(*_series(x, y, list(cascade.witness_channels)))
    assert refit.network.state()["model"].keys() == cascade.network.state()["model"].keys()
    for k, v in refit.network.state()["model"].items():
        torch.testing.assert_close(v, cascade.network.state()["model"][k], rtol=0, atol=0)
    assert not np.array_equal(refit.wiener.filter.taps, cascade.wiener.filter.taps)
    with pytest.raises(ConfigError, match="a NetworkCleaner is trained, not fitted"):
        cascade.network.refit(*_series(x, y, list(cascade.witness_channels)))


def _rename(net: NetworkCleaner) -> NetworkCleaner:
    state = net.state()
    state["witness_channels"] = ["x", "y", "z"]
    return NetworkCleaner.from_state(state)


@pytest.mark.slow
def test_short_cascade_beats_wiener_alone_and_keeps_signals(tmp_path: Path) -> None:
    torch.set_num_threads(2)
    p = SyntheticParams(duration=96, seed=5)
    train = generate(p, 0)
    cascade = fit_cascade(
        train.strain,
        train.witnesses,
        CascadeParams(
            linear_bands=[train.bands["linear"]],
            network_band=train.bands["bilinear"],
            val_fraction=0.2,
            window=4.0,
            stride=0.5,
            epochs=3,
            max_steps_per_epoch=5,
            batch_size=8,
            network={"loss_fftlength": 1.0, "loss_overlap": 0.5, "val_stride": 2.0},
        ),
        tmp_path,
    )
    assert isinstance(cascade.wiener, WienerCleaner) and cascade.wiener.window == 4.0
    # the default layout at the derived quarter rate (1024 Hz) drops its first encoder stage:
    # the bottleneck runs at 128 Hz, its Nyquist frequency above the 43-57 Hz trained band
    model = cascade.network.model
    assert model.decimation == 4 and model.widths == (16, 32, 64)
    test = generate(p.model_copy(update={"injections": 2, "injection_snr": (15.0, 18.0)}), 3)
    raw, bands = test.strain, test.bands
    wiener_only = cascade.stages()["wiener"].clean(raw, test.witnesses)
    cleaned = cascade.clean(raw, test.witnesses)
    r_w = asd_ratio(wiener_only, raw, [bands["bilinear"]])
    r_c = asd_ratio(cleaned, raw, [bands["bilinear"]])
    log.info("bilinear band ASD ratio: Wiener alone %.3f, cascade %.3f", r_w, r_c)
    assert r_c < r_w - 0.03  # the network removes part of the bilinear noise
    assert asd_ratio(cleaned, raw, [bands["linear"]]) < 0.5
    # Nothing added beside the bands (issue 12): a leak at the 2 % bar (q = 0.04 of the
    # noise) would read 1.02 with a median-Welch sigma of 2.4 sqrt(0.04 / (2 * 96 s * 5 Hz))
    # = 0.5 %; 1.01 tells it from no leak at 2 sigma. Next to the network's band above all:
    # trained in its band alone, its untrained output there came through the finishing
    # filter (1.04-1.06 in the issue).
    ob = out_of_band(cleaned, raw, list(bands.values()))
    assert ob.worst < 1.01
    for edge in ((44.0, 49.0), (51.0, 56.0)):
        assert ob.ratios[np.flatnonzero((ob.subbands == edge).all(axis=1))[0]] < 1.01
    for inj in test.injections:
        before = matched_filter_snr(raw, inj, inj["gps"])
        after = matched_filter_snr(cleaned, inj, inj["gps"])
        assert after / before >= 0.98


@pytest.mark.slow
def test_twin_cascade_refit_retrains_both_stages_on_new_coupling(tmp_path: Path) -> None:
    """TwinPolicy(refit="cascade"): the whole cascade is retrained on the buffered data with
    the current bands, taps and channels, and cleans the new coupling it was refitted on."""
    torch.set_num_threads(2)
    current = _small_cascade()
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, int(48 * FS)))
    # the coupling drifted: now witness "c" leaks into strain inside the linear band
    y = 0.1 * rng.standard_normal(x.shape[1]) + np.convolve(x[2], [0.5, -0.2], mode="same")
    policy = TwinPolicy(
        refit="cascade",
        cascade_refit={
            "window": 4.0,
            "stride": 1.0,
            "epochs": 1,
            "max_steps_per_epoch": 2,
            "batch_size": 4,
            "val_fraction": 0.2,
            "network": {"loss_fftlength": 1.0, "loss_overlap": 0.5, "val_stride": 2.0},
        },
    )
    # taps and bands always come from the current cascade: they are no training setting
    with pytest.raises(ValidationError, match="n_taps"):
        TwinPolicy(refit="cascade", cascade_refit={"n_taps": 999})
    strain, wit = _series(x, y, list(current.witness_channels))
    new = retrain_cascade(current, strain, wit, policy.cascade_refit)
    assert isinstance(new, CascadeCleaner) and new is not current
    assert new.witness_channels == current.witness_channels
    assert new.wiener.bands == current.wiener.bands
    assert new.network.bands == current.network.bands
    assert new.wiener.filter.n_taps == current.wiener.filter.n_taps

    def ratio(cleaner: CascadeCleaner) -> float:
        def ts(v: np.ndarray) -> TimeSeries:
            return TimeSeries(v, sample_rate=FS)

        return asd_ratio(ts(y - cleaner.noise(x)), ts(y), [tuple(current.wiener.bands[0])])

    before, after = ratio(current), ratio(new)
    log.info(
        "linear-band ASD ratio on the drifted coupling: old %.3f, refitted %.3f", before, after
    )
    assert after < 0.5 < before
    with pytest.raises(ConfigError, match="needs a CascadeCleaner"):
        retrain_cascade(current.wiener, strain, wit, CascadeTraining())


def test_network_task_trains_over_the_skirts_of_its_band() -> None:
    """fit_cascade's task: the cleaner's band inside the trained band, the rest skirts."""
    base = {
        "synthetic": {"duration": 16, "sample_rate": 1024, "n_distractors": 1},
        "sample_rate": 1024,
        "window": 4.0,
        "band": [(43.0, 57.0)],
        "loss_fftlength": 1.0,
        "loss_overlap": 0.5,
    }
    params = SkirtedParams(**base, cleaner_band=[(49.0, 51.0)])
    assert params.skirt_weight == 1.0
    task = SkirtedNoiseCleaning(params)
    model = torch.nn.Conv1d(5, 1, 1)
    x, y = torch.randn(2, 5, 4096), torch.randn(2, 4096)
    value = task.loss(lambda w: model(w).squeeze(1), (x, y))
    assert torch.isfinite(value)
    # 1-Hz bins: 49 and 50 Hz in band, 43-48 and 51-56 Hz skirts
    assert int(task._loss.mask.sum()) == 2 and int(task._loss.skirt.sum()) == 12
    with pytest.raises(ValidationError, match="not inside band"):
        SkirtedParams(**base, cleaner_band=[(40.0, 51.0)])
