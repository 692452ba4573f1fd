"""The noise-cleaning task: lazy windows, time-ordered normalisation, training end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from gwpy.timeseries import TimeSeries, TimeSeriesDict

from gravwave.cleaners import NetworkCleaner
from gravwave.cleaners.network import network_fit_bands
from gravwave.gates import IngestBounds
from gravwave.io import write_multichannel_hdf5
from gravwave.synthetic import SyntheticParams
from gravwave.task import NoiseCleaning, NoiseCleaningParams, WindowDataset
from twins.config import config_hash, load_config
from twins.errors import ConfigError, DataError
from twins.train.run import train_process

FS = 512.0


def test_windows_equal_direct_slices() -> None:
    a = torch.arange(30.0).reshape(3, 10)
    b = torch.arange(100.0, 160.0).reshape(3, 20)
    ds = WindowDataset([(a, a[0], 0, 10), (b, b[1], 5, 20)], window=4, stride=3)
    assert len(ds) == 3 + 4  # (10 - 4) // 3 + 1 and (15 - 4) // 3 + 1
    for i in range(len(ds)):
        seg, o = ds.index(i)
        w, t = ds[i]
        src = (a, a[0]) if seg == 0 else (b, b[1])
        torch.testing.assert_close(w, src[0][:, o : o + 4])
        torch.testing.assert_close(t, src[1][o : o + 4])
    assert ds.index(3) == (1, 5)
    with pytest.raises(IndexError):
        ds[len(ds)]


def _write(path: Path, strain: np.ndarray, wit: np.ndarray) -> Path:
    d = TimeSeriesDict()
    d["V1:h"] = TimeSeries(strain, sample_rate=FS, t0=0)
    for i, x in enumerate(wit):
        d[f"w{i}"] = TimeSeries(x, sample_rate=FS, t0=0)
    return write_multichannel_hdf5(path, d)


def test_normalisation_ignores_the_validation_part(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = int(64 * FS)
    wit, strain = rng.standard_normal((3, n)), rng.standard_normal(n)
    cut = int(n * 0.75)
    wit2, strain2 = wit.copy(), strain.copy()
    wit2[:, cut:] = 50 + 9 * wit2[:, cut:]  # a wildly different validation part
    strain2[cut:] *= 30
    tasks = []
    for k, (w, s) in enumerate([(wit, strain), (wit2, strain2)]):
        params = NoiseCleaningParams(
            path=str(_write(tmp_path / f"d{k}.h5", s, w)),
            sample_rate=FS,
            window=4.0,
            stride=1.0,
            val_fraction=0.25,
            band=[(40.0, 60.0)],
            # The second file's validation part is implausible on purpose (a 50-unit offset
            # on unit noise: ~60 robust sigma, its strain x30: ~90), so the ingest gate
            # (13 robust sigma) would refuse it; 1000 leaves a factor > 10 of margin.
            ingest=IngestBounds(max_robust_sigma=1000),
        )
        task = NoiseCleaning(params, workdir=tmp_path / f"run{k}")
        tasks.append(task)
    c0, c1 = tasks[0].prepare(), tasks[1].prepare()
    assert c0["val_start"] == cut
    np.testing.assert_array_equal(c0["standardizer"].mean, c1["standardizer"].mean)
    np.testing.assert_array_equal(c0["standardizer"].std, c1["standardizer"].std)
    assert c0["target_scale"] == c1["target_scale"]
    np.testing.assert_allclose(c0["standardizer"].mean, wit[:, :cut].mean(axis=1))
    # training windows are identical; validation windows differ
    s0, s1 = tasks[0].splits(), tasks[1].splits()
    torch.testing.assert_close(s0.train[len(s0.train) - 1], s1.train[len(s1.train) - 1])
    assert not torch.equal(s0.val[0][0], s1.val[0][0])
    assert (tmp_path / "run0" / "normalisation.pt").is_file()


def test_trains_through_train_process(tmp_path: Path) -> None:
    params = {
        "synthetic": {"duration": 48, "sample_rate": 1024, "n_distractors": 1},
        "sample_rate": 1024,
        "window": 4.0,
        "stride": 1.0,
        "val_fraction": 0.25,
        "widths": [4, 8],
        "dilations": [1],
        "loss_fftlength": 1.0,
        "loss_overlap": 0.5,
        # the bilinear 49-51 Hz widened by the finishing filter's transition (6.05 Hz): the
        # cleaner built from the run passes the network's output up to there
        "band": [list(b) for b in network_fit_bands([(49.0, 51.0)], 1024)],
    }
    cfg = load_config(
        None,
        base={
            "name": "dc",
            "workdir": str(tmp_path),
            "task": {"target": "gravwave.task:NoiseCleaning", "params": params},
            "train": {
                "epochs": 2,
                "batch_size": 4,
                "max_steps_per_epoch": 3,
                "optimizer": {"name": "adam", "lr": 3e-3},
                "progress": False,
            },
            "distributed": {"backend": "local"},
            "tracking": {"enabled": False},
            "energy": {"enabled": False},
        },
    )
    summary = train_process(cfg)
    assert summary["steps"] == 6 and np.isfinite(summary["test_loss"])
    assert 0 < summary["best_val_loss"] < 1.5
    assert [Path(f).name for f in summary["figures"]] == ["asd_test.png"]  # for MLflow
    net = NetworkCleaner.from_run(cfg.run_dir, window=4.0)
    assert net.witness_channels[0] == "V1:ENV_CEB_MAG_X" and len(net.witness_channels) == 4
    # its band: the trained one narrowed by the transition (float sums: 1e-9 Hz)
    assert net.bands[0] == pytest.approx((49.0, 51.0), abs=1e-9)
    assert net.fit_bands[0] == pytest.approx(network_fit_bands([(49.0, 51.0)], 1024)[0], abs=1e-9)
    with pytest.raises(DataError, match="trained on"):
        NetworkCleaner.from_run(cfg.run_dir, bands=[(45.0, 55.0)])
    noise = net.noise(np.random.default_rng(0).standard_normal((4, 9000)))
    assert noise.shape == (9000,) and np.isfinite(noise).all()


def test_training_file_passes_the_ingest_gates(tmp_path: Path) -> None:
    """A 1e30 witness sample is refused naming file, channel and bound; outside the span
    trained on it is not looked at; a widened per-channel bound lets it in."""
    rng = np.random.default_rng(1)
    n = int(64 * FS)
    wit, strain = rng.standard_normal((3, n)), rng.standard_normal(n)
    wit[1, int(48 * FS)] = 1e30  # GPS 48 s, in the second half
    path = _write(tmp_path / "spiky.h5", strain, wit)
    base = {"path": str(path), "sample_rate": FS, "window": 4.0, "stride": 1.0}

    def prepare(**kw: object) -> dict:
        params = NoiseCleaningParams(**base, **kw)
        return NoiseCleaning(params, workdir=tmp_path / "run").prepare()

    with pytest.raises(DataError, match=r"channel w1 in spiky\.h5: sample 1e\+30 at GPS 48"):
        prepare()
    assert prepare(span=(0.0, 32.0))["n"] == int(32 * FS)
    wide = IngestBounds(channel_max_robust_sigma={"w1": 1e31})  # 1e30 over a sigma near 1
    assert prepare(ingest=wide)["n"] == n


def test_params_are_strict() -> None:
    with pytest.raises(ValueError, match="exactly one data source"):
        NoiseCleaningParams()
    with pytest.raises(ValueError, match="extra"):
        NoiseCleaningParams(path="x.h5", bogus=1)


def _noise_yaml(tmp_path: Path, extra: str = "", synthetic: str = "duration: 24") -> Path:
    """A small noise-task config; a line of ``extra`` replaces the param of the same key."""
    params = {
        "synthetic": f"{{{synthetic}, sample_rate: 1024, n_distractors: 1}}",
        "sample_rate": "1024",
        "window": "4.0",
        "widths": "[4, 8]",
        "loss_fftlength": "1.0",
        "loss_overlap": "0.5",
    }
    for line in extra.splitlines():
        key, _, value = line.strip().partition(": ")
        params[key] = value
    cfg = tmp_path / "noise.yaml"
    cfg.write_text(
        "name: n\ntask:\n  target: gravwave.task:NoiseCleaning\n  params:\n"
        + "".join(f"    {k}: {v}\n" for k, v in params.items())
    )
    return cfg


def test_synthetic_params_are_typed_and_strict(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_noise_yaml(tmp_path, synthetic="durration: 24"))
    assert str(info.value) == (
        f"{tmp_path / 'noise.yaml'}: task.params.synthetic.durration: unknown key"
    )
    cfg = load_config(_noise_yaml(tmp_path))
    synthetic = cfg.task.params["synthetic"]
    assert synthetic["duration"] == 24.0 and synthetic["psd"] == SyntheticParams().psd
    again = load_config(_noise_yaml(tmp_path), ["task.params.synthetic.seed=0"])
    assert config_hash(again) == config_hash(cfg)  # defaults filled in: one canonical form
    assert isinstance(NoiseCleaningParams(**cfg.task.params).synthetic, SyntheticParams)


@pytest.mark.parametrize(
    ("extra", "key", "problem"),
    [
        ("    window: 3.3\n", "task.params", "window 3.3 s is 3379.2 samples"),
        ("    stride: 0.0001\n", "task.params", "stride 0.0001 s is under one sample"),
        ("    loss_fftlength: 8.0\n", "task.params", "expected 2 to the window's 4096"),
        ("    band: [[40.2, 40.4]]\n", "task.params", "no frequency bin of the loss"),
        ("    band: [[60, 40]]\n", "task.params.band", "0 < low < high < Nyquist"),
        ("    band: []\n", "task.params.band", "at least 1 item"),
        ("    loss_overlap: 1.0\n", "task.params.loss_overlap", "loss_overlap < loss_fftlength"),
        ("    loss_average: mode\n", "task.params.loss_average", "'mean' or 'median'"),
        ("    widths: []\n", "task.params.widths", "at least 1 item"),
        ("    widths: [4, 0]\n", "task.params.widths.1", "greater than or equal to 1"),
        ("    dilations: [0]\n", "task.params.dilations.0", "greater than or equal to 1"),
        ("    kernel_size: 4\n", "task.params.kernel_size", "odd kernel"),
        ("    res_kernel_size: 0\n", "task.params.res_kernel_size", "greater than or equal"),
        ("    channels: [V1:h]\n", "task.params.channels", "at least one witness"),
        ("    channels: [a, b, a]\n", "task.params.channels", "each once"),
        ("    window: .inf\n", "task.params.window", "finite number"),
        ("    segment: 1\n", "task.params", "segment and test_segment must differ"),
    ],
)
def test_network_and_loss_settings_are_config_errors(
    tmp_path: Path, extra: str, key: str, problem: str
) -> None:
    """Settings the network or the loss would reject with a ValueError at the first step are
    refused when the config is read, naming the key (or task.params for a combination)."""
    with pytest.raises(ConfigError) as info:
        load_config(_noise_yaml(tmp_path, extra))
    msg = str(info.value)
    assert msg.startswith(f"{tmp_path / 'noise.yaml'}: {key}: ") and problem in msg, msg
    assert "\n" not in msg


def test_synthetic_rate_must_be_the_working_rate(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="synthetic.sample_rate 2048 Hz differs from sample"):
        load_config(_noise_yaml(tmp_path), ["task.params.synthetic.sample_rate=2048"])
