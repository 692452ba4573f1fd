"""The network at a reduced rate end to end: derived from its band, trained and cleaned at it,
recorded with the cleaner (old files load at the full rate), kept by a retraining."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from gwpy.timeseries import TimeSeries, TimeSeriesDict
from pydantic import ValidationError

from gravwave.cleaners import CascadeCleaner, NetworkCleaner, NetworkConfig, load_cleaner
from gravwave.cleaners.network import NORMALISATION_FILE, network_decimation
from gravwave.models import DeepClean
from gravwave.models.deepclean import decimation_edges, encoder_widths_for
from gravwave.preprocess import Standardizer
from gravwave.training import (
    CascadeParams,
    CascadeTraining,
    SkirtedNoiseCleaning,
    SkirtedParams,
    fit_cascade,
    retrain_cascade,
)
from twins.errors import DataError

FS = 1024.0


def test_decimation_is_derived_from_the_band_and_the_window() -> None:
    # 49-51 Hz trained over 43-57 Hz: q = 4 at 4096 Hz (flat to 298 Hz >= 4 x 57 Hz)
    assert network_decimation([(49.0, 51.0)], 4096.0) == 4
    assert network_decimation([(49.0, 51.0)], 4096.0, window=8.0) == 4  # 32768 = 512 x 64
    # a window of 4100 samples / 4 = 1025: no power of two above 1 divides it with stride 16
    assert network_decimation([(49.0, 51.0)], 4096.0, window=4100 / 4096) == 1
    # 2 x 16 divides 4128 samples, 4 x 16 does not: halved to 2
    assert network_decimation([(49.0, 51.0)], 4096.0, window=4128 / 4096) == 2
    # at 1024 Hz even q = 2 is flat only to 149 Hz < 4 x 57 Hz: the full rate
    assert network_decimation([(49.0, 51.0)], FS) == 1


def test_encoder_keeps_its_bottleneck_above_the_band() -> None:
    default = (8, 16, 32, 64)
    # full rate: four stages put the bottleneck at 256 Hz (Nyquist 128 Hz > 57 Hz)
    assert encoder_widths_for(default, 4096.0, 57.0) == default
    # a quarter of it: 64 Hz would alias the band; three stages, 128 Hz, the last widths
    assert encoder_widths_for(default, 1024.0, 57.0) == (16, 32, 64)
    assert encoder_widths_for(default, 512.0, 57.0) == (32, 64)
    assert encoder_widths_for(default, 128.0, 57.0) == (64,)  # at least one stage
    assert encoder_widths_for(default, 1024.0, 64.0) == (32, 64)  # 128 Hz is not above 2 x 64


def _network(decimation: int, config_decimation: int | None) -> NetworkCleaner:
    chans = ("a", "b", "c")
    config = NetworkConfig(
        strain_channel="V1:h",
        witness_channels=chans,
        sample_rate=FS,
        bands=((40.0, 60.0),),
        target_scale=2.0,
        decimation=config_decimation,
    )
    model = DeepClean(3, widths=(4, 8), dilations=(1, 2), decimation=decimation)
    scaler = Standardizer().fit(np.random.default_rng(0).standard_normal((3, 64)))
    return NetworkCleaner(model, scaler, config)


def test_cleaner_records_its_decimation_and_old_files_load_at_the_full_rate(
    tmp_path: Path,
) -> None:
    net = _network(2, None)  # None: the model's
    assert net.decimation == 2 and net.multiple == 2 * 4
    again = load_cleaner(net.save(tmp_path / "net.pt"))
    assert isinstance(again, NetworkCleaner) and again.decimation == 2
    assert again.state()["decimation"] == again.state()["model_kwargs"]["decimation"] == 2
    x = np.random.default_rng(1).standard_normal((3, 2048))
    np.testing.assert_array_equal(again.noise(x), net.noise(x))
    with pytest.raises(DataError, match="says decimation 4 but the model runs at 1/2"):
        _network(2, 4)
    # a file written before the decimation was recorded: no key in the config or the model
    old = _network(1, None).state()
    del old["decimation"], old["model_kwargs"]["decimation"]
    loaded = NetworkCleaner.from_state(old)
    assert loaded.decimation == loaded.model.decimation == 1


_TASK = {
    "synthetic": {"duration": 16, "sample_rate": 4096, "n_distractors": 1},
    "sample_rate": 4096,
    "window": 4.0,
    "band": [(43.0, 57.0)],
    "cleaner_band": [(49.0, 51.0)],
    "loss_fftlength": 1.0,
    "loss_overlap": 0.5,
}


def test_training_task_builds_the_decimated_network_and_refuses_what_does_not_fit() -> None:
    task = SkirtedNoiseCleaning(SkirtedParams(**_TASK, decimation=4))
    assert task._model_kwargs(5)["decimation"] == 4  # what normalisation.pt records
    assert SkirtedNoiseCleaning(SkirtedParams(**_TASK))._model_kwargs(5)["decimation"] == 1
    # q = 32 is flat to 0.291 / 32 x 4096 = 37 Hz only, below the trained 57 Hz
    assert decimation_edges(32)[0] * 4096 < 57.0
    with pytest.raises(ValidationError, match="flat to 37.2 Hz only, below the trained"):
        SkirtedParams(**_TASK, decimation=32)
    with pytest.raises(ValidationError, match="needs a multiple of 128 samples"):
        SkirtedParams(**{**_TASK, "window": 16352 / 4096}, decimation=8)


def _span(seconds: float, seed: int) -> tuple[TimeSeries, TimeSeriesDict]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, int(seconds * FS)))
    y = np.convolve(x[1], [0.3, 0.2, -0.1], mode="same") + 0.1 * x[0] * x[2]
    wit = TimeSeriesDict((c, TimeSeries(x[i], sample_rate=FS)) for i, c in enumerate("abc"))
    return TimeSeries(y, sample_rate=FS, name="V1:h"), wit


def test_cascade_trains_and_cleans_at_the_reduced_rate_and_a_retraining_keeps_it(
    tmp_path: Path,
) -> None:
    torch.set_num_threads(2)
    strain, wit = _span(24, 0)
    budget = {
        "window": 4.0,
        "stride": 1.0,
        "epochs": 1,
        "max_steps_per_epoch": 2,
        "batch_size": 4,
        "val_fraction": 0.2,
        "network": {
            "widths": [4, 8],
            "dilations": [1, 2],
            "loss_fftlength": 1.0,
            "loss_overlap": 0.5,
            "val_stride": 2.0,
        },
    }
    params = CascadeParams(
        linear_bands=[(100.0, 140.0)],
        network_band=(49.0, 51.0),
        n_taps=16,
        decimation=2,
        **budget,  # type: ignore[arg-type]
    )
    cascade = fit_cascade(strain, wit, params, tmp_path / "fit")
    norm = torch.load(tmp_path / "fit" / "deepclean" / NORMALISATION_FILE, weights_only=True)
    assert norm["model_kwargs"]["decimation"] == 2
    assert cascade.network.decimation == cascade.network.model.decimation == 2
    again = load_cleaner(cascade.save(tmp_path / "cascade.pt"))
    assert isinstance(again, CascadeCleaner) and again.network.decimation == 2
    test_strain, test_wit = _span(12, 1)
    cleaned = again.clean(test_strain, test_wit)
    assert cleaned.shape == test_strain.shape and np.isfinite(cleaned.value).all()
    # a retraining keeps the network's rate, as its bands and taps: no training setting
    new = retrain_cascade(cascade, strain, wit, CascadeTraining(**budget))
    assert new.network.decimation == 2
    # and its Wiener stage's witness selection (on by default)
    assert cascade.wiener.select_channels and new.wiener.select_channels
    with pytest.raises(ValidationError, match="decimation"):
        CascadeTraining(**budget, decimation=1)  # type: ignore[arg-type]
