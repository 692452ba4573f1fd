"""The fast offline paths equal the paths they replace within derived rounding bounds:
exact stitching of windows that overlap by the reach (:mod:`gravwave.cleaners.stitch`) and
the fast inference copy of the network (:mod:`gravwave.models.deepclean_fast`)."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch
from gwpy.timeseries import TimeSeries, TimeSeriesDict
from scipy import signal
from torch import nn

from gravwave.cleaners import CascadeCleaner, NetworkCleaner, NetworkConfig, WienerCleaner
from gravwave.cleaners import fir as fir_module
from gravwave.cleaners.fir import BlockFIR, fir_whole_window
from gravwave.cleaners.stitch import (
    _Extended,
    stack_channel_minor,
    stitch_geometry,
    stitch_span,
    stitch_windows,
)
from gravwave.cleaners.windowed import overlap_add
from gravwave.models import DeepClean
from gravwave.models.deepclean import decimation_edges, decimation_filter, decimation_for
from gravwave.models.deepclean_fast import FastDeepClean, FastForward, rounding_bound
from gravwave.models.wiener import WienerFilter
from gravwave.preprocess import Standardizer

FS = 1024.0
U64 = 2.0**-53


def _model(channels: int, seed: int, **kwargs: object) -> DeepClean:
    """A DeepClean with random weights and BatchNorm statistics far from the identity (so
    that folding them changes the weights)."""
    torch.manual_seed(seed)
    model = DeepClean(channels, **kwargs).eval()  # type: ignore[arg-type]
    gen = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm1d):
            n = mod.num_features
            assert mod.running_mean is not None and mod.running_var is not None
            mod.running_mean.copy_(0.2 * torch.randn(n, generator=gen))
            mod.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=gen))
            mod.weight.data.copy_(0.5 + torch.rand(n, generator=gen))
            mod.bias.data.copy_(0.1 * torch.randn(n, generator=gen))
    return model


@pytest.mark.parametrize("decimation", [1, 4])
def test_fast_copy_equals_the_module_within_the_rounding_bound(decimation: int) -> None:
    model = _model(5, 0, decimation=decimation)
    x = torch.randn(2, 5, 2048, generator=torch.Generator().manual_seed(1))
    positions = [0, 3, 600, 1023, 1377, 2047]  # both edges and several stride phases
    with torch.no_grad():
        exact = model.double()(x.double())[:, positions]
        model.float()
        module = model(x)[:, positions].double()
        fast = FastDeepClean(model)(x)[:, positions].double()
    bound = rounding_bound(model, x, positions)
    # rounding_bound bounds every float32 evaluation's distance from the exact output (to
    # first order in u = 2^-24); the float64 reference is exact to ~1e-9 of that bound
    assert (fast - exact).abs().le(bound).all()
    assert (module - exact).abs().le(bound).all()
    assert (fast - module).abs().le(2 * bound).all()
    # and the bound is tight enough to mean something: under 1 % of the output's size
    assert bound.max() < 0.01 * exact.abs().max()


def test_fast_forward_is_rebuilt_when_the_weights_change() -> None:
    model = _model(3, 2, widths=(4, 8), dilations=(1,))
    x = torch.randn(1, 3, 256, generator=torch.Generator().manual_seed(3))
    forward = FastForward(model)
    first = forward.copy()
    assert forward.copy() is first  # unchanged weights: the same copy
    before = forward(x)
    with torch.no_grad():
        model.output.bias.add_(1.0)  # in place, as an optimiser step or load_state_dict
    after = forward(x)
    assert forward.copy() is not first
    with torch.inference_mode():  # a copy made now from the changed model: the same bits
        torch.testing.assert_close(after, FastDeepClean(model)(x), rtol=0, atol=0)
    assert (after - before).min() > 0.99  # the output bias moved every sample by 1
    with pytest.raises(ValueError, match="divisible by the total stride"):
        forward(torch.zeros(1, 3, 250))


def _phase_predictor(past: int, future: int, multiple: int):
    """An exact (integer) predictor with the given reach that also depends on the sample's
    phase in the window modulo ``multiple``, as a strided network does: the sum of channel
    0 over ``[i - past, i + future]`` (zeros outside the window) times ``1 + i % multiple``."""

    def predict(block: np.ndarray) -> np.ndarray:
        x = block[:, 0]
        n = x.shape[-1]
        c = np.concatenate([np.zeros((x.shape[0], past + 1)), np.cumsum(x, axis=-1)], axis=-1)
        c = np.concatenate([c, np.repeat(c[:, -1:], future, axis=-1)], axis=-1)
        i = np.arange(n)
        s = c[:, i + past + future + 1] - c[:, i]
        return (s * (1 + i % multiple))[:, None]

    return predict


@pytest.mark.parametrize("total", [5, 700, 1024, 5000])
@pytest.mark.parametrize("batch", [1, 3])
def test_stitching_equals_one_window_exactly(total: int, batch: int) -> None:
    past, future, multiple, window = 37, 21, 16, 256
    rng = np.random.default_rng(total)
    x = rng.integers(-50, 50, size=(2, total)).astype(np.float64)
    predict = _phase_predictor(past, future, multiple)
    got = stitch_windows(predict, x, window, (past, future), multiple=multiple, batch=batch)
    lead, core = stitch_geometry(window, (past, future), multiple)
    assert (lead, core) == (48, 176)  # past 37 -> 48 (stride 16); 256 - 48 - 21 -> 176
    # one window over the whole span: the same reflection, enough room for the reach and a
    # length that is a multiple of the stride; integer sums are exact in float64
    n = -(-(lead + total + future) // multiple) * multiple
    xp = np.pad(x, ((0, 0), (lead, n - lead - total)), mode="reflect" if total > 1 else "edge")
    one = predict(xp[None])[0, :, lead : lead + total]
    assert got.shape == (1, total)
    np.testing.assert_array_equal(got, one)


def test_stitching_refuses_a_window_shorter_than_the_reach() -> None:
    with pytest.raises(ValueError, match="cannot hold the reach 600\\+592 samples"):
        stitch_geometry(1184, (600, 592), 16)
    with pytest.raises(ValueError, match="multiple of 16"):
        stitch_geometry(1000, (10, 10), 16)
    with pytest.raises(ValueError, match="non-negative"):
        stitch_geometry(1024, (-1, 0), 16)


def _cascade(decimation: int = 1) -> tuple[CascadeCleaner, np.ndarray]:
    rng = np.random.default_rng(4)
    chans = [f"w{i}" for i in range(4)]
    x = rng.standard_normal((4, int(40 * FS)))
    y = signal.lfilter([0.5, -0.3, 0.2], [1.0], x[0]) + 0.1 * rng.standard_normal(x.shape[1])
    wit = TimeSeriesDict((c, TimeSeries(x[i], sample_rate=FS)) for i, c in enumerate(chans))
    wiener = WienerCleaner("V1:h", chans, FS, [(100.0, 140.0)], n_taps=32, window=4.0)
    wiener.fit(TimeSeries(y, sample_rate=FS), wit)
    config = NetworkConfig(
        strain_channel="V1:h",
        witness_channels=chans,
        sample_rate=FS,
        bands=[(40.0, 60.0)],
        target_scale=0.7,
        window=4.0,
    )
    model = _model(4, 5, widths=(4, 8), dilations=(1, 2), decimation=decimation)
    net = NetworkCleaner(model, Standardizer().fit(x), config)
    return CascadeCleaner(wiener, net), x


@pytest.mark.parametrize("decimation", [1, 4])
def test_cleaner_stitching_equals_one_window_and_the_hann_path_within_bounds(
    decimation: int,
) -> None:
    cascade, x = _cascade(decimation)
    w = x[:, : int(20 * FS) + 123]  # not a whole number of windows or strides
    total = w.shape[1]
    window, reach, m = round(4 * FS), cascade.reach, cascade.multiple
    stitched = stitch_windows(cascade.raw, w, window, reach, multiple=m)
    lead, _ = stitch_geometry(window, reach, m)
    n = -(-(lead + total + reach[1]) // m) * m
    wp = np.pad(w, ((0, 0), (lead, n - lead - total)), mode="reflect")
    one = cascade.raw(wp[None])[0][:, lead : lead + total]

    # Wiener row: two block-FFT convolutions (float64) of the same taps and data. Higham
    # (2002, 24.1): an FFT of length N is within log2(N) eta ||y||_2 of exact, eta ~ 5 u;
    # forward, product and inverse cost at most 3 log2(N) eta; the product is at most
    # max|H_c| ||X_c||_2 <= ||h_c||_1 ||x_c||_2 per channel (x_c without its mean m_c, whose
    # share is subtracted as a spectrum: <= ||x_c||_2 + |m_c| sqrt(n)); max-norm <= 2-norm;
    # twice (two evaluations). The blocks (8192 samples plus the taps) keep N below 2^14.
    taps, mean = cascade.wiener.filter.taps, cascade.wiener.filter.witness_mean
    assert taps is not None and mean is not None
    norms = np.sqrt((wp**2).sum(axis=1)) + np.abs(mean) * math.sqrt(wp.shape[1])
    fft_tol = 2 * 3 * 14 * 5 * U64 * float((np.abs(taps).sum(axis=1) * norms).sum())
    assert np.abs(stitched[0] - one[0]).max() <= fft_tol

    # network row: both float32 evaluations of the same standardised input; compare at
    # sampled outputs within twice the first-order rounding bound there
    pos = np.arange(0, total, 997)
    xs = ((wp - cascade.network._mean[0]) * cascade.network._inv_std[0]).astype(np.float32)
    bound = rounding_bound(cascade.network.model, torch.from_numpy(xs[None]), list(pos + lead))
    assert np.all(np.abs(stitched[1, pos] - one[1, pos]) <= 2 * bound[0].numpy())

    # Hann overlap-add (the previous default) differs by the Hann weight of windows whose
    # edge lies within the reach of a sample, at most sin^2(pi R / window), times that
    # window's edge error |p - e| <= max|p| + max|e|
    peak = np.zeros(2)

    def recording(block: np.ndarray) -> np.ndarray:
        pred = cascade.raw(block)
        peak[:] = np.maximum(peak, np.abs(pred).max(axis=(0, 2)))
        return pred

    hann = overlap_add(recording, w, window, 0.5, multiple=m)
    edge = math.sin(math.pi * max(reach) / window) ** 2
    for row in range(2):
        tol = edge * (peak[row] + np.abs(one[row]).max()) + 2 * bound.max().item() + fft_tol
        assert np.abs(hann[row] - stitched[row]).max() <= tol


@pytest.mark.parametrize("total", [1, 50, 150, 151, 5000])
def test_one_fir_pass_over_the_span_equals_stitched_windows(total: int) -> None:
    rng = np.random.default_rng(total)
    taps, mean = rng.standard_normal((3, 40)), 5 * rng.standard_normal(3)
    fir = BlockFIR(taps, mean, lag0=-15, block=256)  # reaches 24 samples back, 15 ahead
    reach = (40 - 1 - 15, 15)
    x = rng.standard_normal((3, total)) + mean[:, None]
    got = stitch_span(fir, x, reach)
    want = stitch_windows(fir, x, 512, reach)
    # block-FFT convolutions of the same taps and data cut otherwise (Higham 24.1 as above,
    # transforms below 2^10 points, both evaluations), the data extended by reflection: at
    # most three times the span's 2-norm per channel
    size = 3 * np.sqrt((x**2).sum(axis=1)) + np.abs(mean) * math.sqrt(3 * total + 512)
    tol = 2 * 3 * 10 * 5 * U64 * float((np.abs(taps).sum(axis=1) * size).sum())
    assert got.shape == want.shape == (1, total)
    assert np.abs(got - want).max() <= tol
    # and its edges are not the zeros outside the span: the reflection, as stitched
    if total > 100:
        zeros = fir(x[None])[0]
        assert np.abs(zeros[0, :24] - want[0, :24]).max() > 1e3 * tol


@pytest.mark.parametrize("decimation", [1, 4])
def test_cascade_stitches_each_stage_on_its_own_reach_as_the_joint_output(
    decimation: int,
) -> None:
    cascade, x = _cascade(decimation)
    wiener, net = cascade.wiener, cascade.network
    w = x[:, : int(20 * FS) + 123]
    total, window, m = w.shape[1], round(4 * FS), cascade.multiple
    joint = stitch_windows(cascade.raw, w, window, cascade.reach, multiple=m)
    # each stage on its own reach; the network's input standardised once over the span
    own_w = stitch_span(wiener.raw, w, wiener.reach)  # one block-FIR pass over the span
    xs = net.standardise(w)
    own_n = stitch_windows(
        net._forward_windows,
        xs,
        window,
        net.reach,
        multiple=net.multiple,
        stack=stack_channel_minor,
    )
    # what predict computes (the same calls): nothing but the two stages' finishes added
    np.testing.assert_array_equal(
        cascade.predict(w, window), wiener.finish(own_w) + net.finish(own_n)
    )
    assert wiener.reach[0] < net.reach[0]  # the Wiener windows overlap less
    # Wiener row: block-FFT convolutions of the same taps and data cut into other windows,
    # bounded as in the test above (Higham 24.1, blocks below 2^14 points, both evaluations)
    taps, mean = wiener.filter.taps, wiener.filter.witness_mean
    assert taps is not None and mean is not None
    norms = np.sqrt((w**2).sum(axis=1)) + np.abs(mean) * math.sqrt(total)
    fft_tol = 2 * 3 * 14 * 5 * U64 * float((np.abs(taps).sum(axis=1) * norms).sum())
    assert np.abs(own_w[0] - joint[0]).max() <= fft_tol
    # network row: the same float32 input values (standardised in float64 either way, then
    # rounded), so both are float32 evaluations of one input: within twice the first-order
    # rounding bound at sampled outputs of one window over the reflected span
    lead, _ = stitch_geometry(window, net.reach, net.multiple)
    n = -(-(lead + total + net.reach[1]) // m) * m
    wp = np.pad(w, ((0, 0), (lead, n - lead - total)), mode="reflect")
    pos = np.arange(0, total, 997)
    bound = rounding_bound(
        net.model, torch.from_numpy(net.standardise(wp)[None]), list(pos + lead)
    )
    assert np.all(np.abs(own_n[0, pos] - joint[1, pos]) <= 2 * bound[0].numpy())
    assert xs.dtype == np.float32 and xs.T.flags.c_contiguous  # channel-minor
    np.testing.assert_array_equal(xs, ((w - net._mean[0]) * net._inv_std[0]).astype(np.float32))


def test_cascade_runs_its_wiener_stage_beside_the_network_with_the_same_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cascade, x = _cascade(4)
    w, window = x[:, : int(20 * FS) + 123], round(4 * FS)
    seen: list[tuple[str, int]] = []
    call = BlockFIR.__call__

    def recording(self: BlockFIR, windows: np.ndarray) -> np.ndarray:
        workers = fir_module._WORKERS.get() or torch.get_num_threads()
        seen.append((threading.current_thread().name, workers))
        return call(self, windows)

    monkeypatch.setattr(BlockFIR, "__call__", recording)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # a pinned worker: one stage after the other, here
        cascade.predict(w, window)
        assert seen and set(seen) == {(threading.current_thread().name, 1)}
        torch.set_num_threads(2)
        seen.clear()
        beside = cascade.predict(w, window)
        # the Wiener stage ran in its own thread on one FFT worker
        assert seen and all(name.startswith("wiener-stage") and n == 1 for name, n in seen)
        # the same computations on the same inputs as one stage after the other, here
        # (pocketfft's workers split channels, not sums; the network keeps its threads)
        alone = cascade.wiener.predict(w, window) + cascade.network.predict(w, window)
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(beside, alone)


def test_clean_stitches_exactly_by_default_and_by_hann_on_request() -> None:
    cascade, x = _cascade()
    w = x[:, : int(12 * FS)]
    s = np.zeros(w.shape[1])
    strain = TimeSeries(s, sample_rate=FS, name="V1:h")
    wit = TimeSeriesDict(
        (c, TimeSeries(w[i], sample_rate=FS)) for i, c in enumerate(cascade.witness_channels)
    )
    default = -cascade.clean(strain, wit).value  # the noise prediction
    n = round(cascade.window * FS)
    # the same code path, called directly: identical
    np.testing.assert_array_equal(default, cascade.predict(w, n))
    np.testing.assert_array_equal(
        -cascade.clean(strain, wit, overlap=0.5).value, cascade.predict(w, n, 0.5)
    )
    with pytest.raises(ValueError, match="cannot hold the reach"):
        cascade.clean(strain, wit, window=64 / FS)


@pytest.mark.parametrize("total", [1, 2, 5, 100, 1000])
def test_extended_windows_equal_the_whole_span_padded(total: int) -> None:
    x = np.random.default_rng(total).standard_normal((2, total))
    for lead, pad_right in [(0, 0), (4, 1), (48, 60), (48, 300)]:
        whole = np.pad(x, ((0, 0), (lead, pad_right)), mode="reflect" if total > 1 else "edge")
        ext = _Extended(x, lead, pad_right)
        for start in range(-lead, total + pad_right, 3):
            for length in (1, 64, 200):
                if start + length <= total + pad_right:  # copies of the same samples
                    got = ext.window(start, length)
                    want = whole[:, start + lead : start + lead + length]
                    np.testing.assert_array_equal(got, want)
        # the span is copied whole only when it is too short to reflect the padding from
        assert (ext._whole is None) == (total > max(lead, pad_right))


@pytest.mark.parametrize("q", [2, 4, 8])
def test_decimation_filter_is_flat_to_its_pass_edge_and_stops_aliases(q: int) -> None:
    taps = decimation_filter(q)
    assert taps.shape == (24 * q + 1,)
    pass_edge, stop_edge = decimation_edges(q)
    assert stop_edge == 0.5 / q  # the reduced rate's Nyquist frequency: nothing aliases
    f, h = signal.freqz(taps, worN=1 << 15, fs=1.0)
    gain = np.abs(h)
    # Kaiser's design formulas are approximate: the ripple 10^(-80/20) = 1e-4 of both
    # bands is met within 50 % (78.5 dB measured at the stop edge)
    assert np.abs(gain[f <= pass_edge] - 1).max() < 1.5e-4
    assert gain[f >= stop_edge].max() < 1.5e-4
    with pytest.raises(ValueError, match="q >= 2"):
        decimation_filter(1)


def test_decimation_is_derived_from_the_band() -> None:
    # a 43-57 Hz training band at 4096 Hz: flat to 4 x 57 Hz needs 228 Hz: q = 4 (1024 Hz,
    # flat to 298 Hz); q = 8 would be flat to 149 Hz only
    assert decimation_for(57.0, 4096.0) == 4
    assert decimation_edges(4)[0] * 4096 >= 228 > decimation_edges(8)[0] * 4096
    assert decimation_for(57.0, 4096.0, factor=2.0) == 8
    assert decimation_for(500.0, 4096.0) == 1  # no room: the full rate
    with pytest.raises(ValueError, match="band_high"):
        decimation_for(2048.0, 4096.0)


def test_decimated_network_shapes_reach_and_state() -> None:
    model = DeepClean(3, widths=(4, 8), dilations=(1, 2), decimation=4).double().eval()
    assert model.total_stride == 16
    with pytest.raises(ValueError, match="decimation 4 x 2 \\*\\* 2"):
        model(torch.zeros(1, 3, 24, dtype=torch.float64))
    with pytest.raises(ValueError, match="positive integer"):
        DeepClean(3, decimation=0)
    # the reach: every input sample with a non-zero gradient, over every stride phase
    past, future = model.receptive_field()
    x = torch.randn(1, 3, 4 * (past + future) + 64, dtype=torch.float64, requires_grad=True)
    y = model(x)
    seen = [0, 0]
    for n in range(x.shape[-1] // 2, x.shape[-1] // 2 + model.total_stride):
        (grad,) = torch.autograd.grad(y[0, n], x, retain_graph=True)
        nonzero = torch.nonzero(grad[0].abs().sum(dim=0)).squeeze(1)
        seen = [max(seen[0], n - int(nonzero.min())), max(seen[1], int(nonzero.max()) - n)]
    assert tuple(seen) == (past, future)
    # a constant passes the fixed filters with gain 1 away from the edges: the taps sum to
    # 1 up to their float32 rounding (97 taps, each within u32 |h| <= 2^-24 / 4: 1.5e-6);
    # zero-stuffed, the constant also has images at k / q (k = 1..q-1), each passed by at
    # most the stop-band ripple 1.5e-4 (test above)
    ones = torch.ones(1, 3, 512, dtype=torch.float64)
    np.testing.assert_allclose(model._down(ones)[0, :, 30:-30].numpy(), 1.0, atol=1.5e-6)
    low = torch.ones(1, 1, 128, dtype=torch.float64)
    up = model._up(low)[0, 0, 120:-120].numpy()
    np.testing.assert_allclose(up, 1.0, atol=3 * 1.5e-4 + 1.5e-6)
    # the filters are rebuilt from the setting, not stored; a cleaner's state carries it
    assert not any("taps" in k for k in model.state_dict())
    config = NetworkConfig(
        strain_channel="V1:h",
        witness_channels=("a", "b", "c"),
        sample_rate=FS,
        bands=((40.0, 60.0),),
        target_scale=1.0,
    )
    net = NetworkCleaner(model.float(), Standardizer().fit(np.ones((3, 8)) + np.eye(3, 8)), config)
    again = NetworkCleaner.from_state(net.state())
    assert again.model.decimation == 4 and again.multiple == 16
    w = np.random.default_rng(0).standard_normal((3, 1024))
    np.testing.assert_array_equal(again.noise(w), net.noise(w))


@pytest.mark.parametrize("centred", [False, True])
@pytest.mark.parametrize("n", [1, 700, 5000])
def test_wiener_stage_raw_output_is_the_block_fir_equal_to_whole_window_ffts(
    centred: bool, n: int
) -> None:
    rng = np.random.default_rng(n)
    chans, taps_n = [f"w{i}" for i in range(3)], 32
    wiener = WienerCleaner("V1:h", chans, FS, [(100.0, 140.0)], n_taps=taps_n)
    filt = WienerFilter(taps_n, FS, wiener.fit_bands, centred=centred)
    filt.taps = rng.standard_normal((3, taps_n))
    filt.witness_mean = 10 * rng.standard_normal(3)
    wiener.filter = filt
    x = rng.standard_normal((2, 3, n)) + filt.witness_mean[None, :, None]
    want = fir_whole_window(x, filt.taps, filt.witness_mean, filt.lag0)
    # two small blocks, and the stage's raw output (the block FIR with its default block)
    blocks = {b: BlockFIR(filt.taps, filt.witness_mean, filt.lag0, b)(x) for b in (64, 1000)}
    for block, got in [*blocks.items(), ("stage", wiener.raw(x))]:
        # two FFT convolutions of lengths below 2^14 (Higham 2002, 24.1: log2(N) eta per
        # transform, eta ~ 5 u; three transforms), products bounded by ||h_c||_1 times the
        # 2-norm of what is transformed (the witnesses with their means here, without
        # them there: <= ||x_c||_2 + |m_c| sqrt(n)); max-norm <= 2-norm; both evaluations
        size = np.sqrt((x**2).sum(axis=-1)).max(axis=0) + np.abs(filt.witness_mean) * n**0.5
        tol = 2 * 3 * 14 * 5 * U64 * float((np.abs(filt.taps).sum(axis=1) * size).sum())
        assert got.shape == want.shape == (2, 1, n), block
        assert np.abs(got - want).max() <= tol, block
    with pytest.raises(ValueError, match="expected windows"):
        BlockFIR(filt.taps, filt.witness_mean)(np.zeros((2, 4, 10)))
    with pytest.raises(ValueError, match="block >= 1"):
        BlockFIR(filt.taps, filt.witness_mean, block=0)
