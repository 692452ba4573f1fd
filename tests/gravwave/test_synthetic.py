"""Synthetic Virgo-like data: determinism, spectra, couplings, drift, glitches, injections."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydantic
import pytest
from gwpy.frequencyseries import FrequencySeries
from scipy import signal as sps

from gravwave import synthetic as syn
from gravwave.metrics import asd, asd_ratio, matched_filter_snr, out_of_band_ratio
from twins.errors import DataError

FFT = 4.0  # s; 64-s segments give 31 half-overlapping Welch segments


@pytest.fixture(scope="module")
def seg() -> syn.SyntheticSegment:
    return syn.generate(syn.SyntheticParams(seed=3))


def _curve_asd(segment: syn.SyntheticSegment, fftlength: float = FFT) -> np.ndarray:
    return np.sqrt(segment.floor_psd(1.0 / fftlength))


def _median_ratio(x: np.ndarray, freqs: np.ndarray, band: tuple[float, float]) -> float:
    m = (freqs >= band[0]) & (freqs <= band[1])
    return float(np.median(x[m]))


def _whitened(s: syn.SyntheticSegment) -> np.ndarray:
    """The oracle (curve noise, glitches, injections) divided by the curve's ASD."""
    x = s.oracle.value
    psd = s.floor_psd(s.params.sample_rate / len(x))
    spec = np.fft.rfft(x)
    spec[psd > 0] /= np.sqrt(psd[psd > 0])
    spec[psd == 0] = 0.0
    return np.fft.irfft(spec, len(x))


def test_same_seed_same_data_other_seed_or_segment_differs() -> None:
    p = syn.SyntheticParams(duration=16, injections=1, glitch_rate=0.5)
    a, b = syn.generate(p), syn.generate(p)
    np.testing.assert_array_equal(a.strain.value, b.strain.value)
    for name in a.witnesses:
        np.testing.assert_array_equal(a.witnesses[name].value, b.witnesses[name].value)
    assert a.injections == b.injections and a.glitches == b.glitches
    # Independent realisations: the whitened curve noise of two of them correlates by
    # N(0, 1 / n) over its n = 2 * 32609 real degrees of freedom (10-2048 Hz, 16 s); 5 sigma
    # is 0.02. (Unwhitened, the measured curve's 10-20 Hz wall leaves few degrees of
    # freedom: sigma 0.19.)
    other = syn.generate(p.model_copy(update={"seed": 4}))
    bound = 5 / np.sqrt(2 * np.count_nonzero(a.floor_psd(1 / 16.0)))
    assert bound < 0.021
    assert abs(np.corrcoef(_whitened(a), _whitened(other))[0, 1]) < bound
    nxt = syn.generate(p, segment=1)
    assert nxt.t0 == pytest.approx(a.t0 + 16.0)
    assert abs(np.corrcoef(_whitened(a), _whitened(nxt))[0, 1]) < bound
    # Streams are keyed per component: glitches do not change the Gaussian noise.
    quiet = syn.generate(p.model_copy(update={"glitch_rate": 0.0, "injections": 0}))
    # the generator's sums and these two subtractions: <= 4 roundings of the largest term
    terms = (a.strain, a.oracle, a.glitch_strain, a.signal, quiet.oracle)
    bound = 4 * np.finfo(float).eps * max(np.abs(t.value).max() for t in terms)
    np.testing.assert_allclose(
        quiet.oracle.value, (a.oracle - a.glitch_strain - a.signal).value, rtol=0, atol=bound
    )
    segs = list(syn.stream(p, start=2, count=2))
    assert [s.segment for s in segs] == [2, 3]
    np.testing.assert_array_equal(segs[0].strain.value, syn.generate(p, 2).strain.value)


def test_channels_units_and_sampling(seg: syn.SyntheticSegment) -> None:
    p = seg.params
    assert seg.strain.channel.name == syn.STRAIN_CHANNEL == "V1:Hrec_hoft_16384Hz"
    assert seg.strain.sample_rate.value == p.sample_rate == 4096
    assert len(seg.strain) == 64 * 4096 and seg.t0 == p.t0
    names = list(seg.witnesses)
    assert names[:3] == [syn.MAG_CHANNEL, syn.MAINS_CHANNEL, syn.ANGULAR_CHANNEL]
    assert len(names) == 3 + p.n_distractors and "V1:ENV_NEB_ACC_Z" in names
    for name, ts in seg.witnesses.items():
        assert ts.channel.name == name and name.startswith("V1:")
        assert len(ts) == len(seg.strain) and ts.t0 == seg.strain.t0
        assert np.isfinite(ts.value).all()
    assert str(seg.witnesses[syn.MAINS_CHANNEL].unit) == "V"
    assert seg.bands == {"linear": (142.0, 162.0), "bilinear": (49.0, 51.0)}


def test_strain_follows_virgo_curve_away_from_bands(seg: syn.SyntheticSegment) -> None:
    # Median-Welch ASD over 31 segments: about 11 % scatter per bin, so the median over the
    # >= 80 bins of each band is within about 2 % of the curve; 5 % is a 2.5-sigma-plus margin.
    est = asd(seg.strain, FFT)
    freqs, curve = est.frequencies.value, _curve_asd(seg)
    ratio = np.divide(est.value, curve, out=np.zeros_like(curve), where=curve > 0)
    for band in [(20, 40), (60, 125), (180, 400), (400, 1800)]:
        assert _median_ratio(ratio, freqs, band) == pytest.approx(1.0, abs=0.05), band


def test_oracle_removes_the_coupled_excess(seg: syn.SyntheticSegment) -> None:
    p = seg.params
    raw, orc = asd(seg.strain, FFT), asd(seg.oracle, FFT)
    freqs, curve = raw.frequencies.value, _curve_asd(seg)
    # Raw in-band level over the curve: sqrt(1 + gain^2 S(f_c) |H(f)|^2 / S(f)), the coupling
    # being gain x the curve at the centre f_c through the 6-pole band-pass H (3.16 for a flat
    # curve; the measured curve bends across the band).
    fc = np.sqrt(p.linear_band[0] * p.linear_band[1])
    s_c = seg.floor_psd(p.sample_rate / p.n_samples)[round(fc * p.duration)]
    sos = sps.butter(3, p.linear_band, btype="bandpass", fs=p.sample_rate, output="sos")
    inner = (freqs >= 145) & (freqs <= 159)
    _, h = sps.sosfreqz(sos, worN=freqs[inner], fs=p.sample_rate)
    expect = np.median(np.sqrt(1 + p.linear_gain**2 * s_c * np.abs(h) ** 2 / curve[inner] ** 2))
    lin = _median_ratio(raw.value / np.where(curve > 0, curve, 1), freqs, (145, 159))
    assert lin == pytest.approx(expect, rel=0.15)
    # Bilinear sidebands: gain x the curve at the mains frequency, flat over 49-51 Hz.
    s_50 = seg.floor_psd(p.sample_rate / p.n_samples)[round(p.mains_frequency * p.duration)]
    side_bins = (freqs >= 50.25) & (freqs <= 50.75)
    expect = np.median(np.sqrt(1 + p.bilinear_gain**2 * s_50 / curve[side_bins] ** 2))
    side = _median_ratio(raw.value / np.where(curve > 0, curve, 1), freqs, (50.25, 50.75))
    assert side == pytest.approx(expect, rel=0.2)
    # The oracle (strain - true noise) sits on the curve.
    assert _median_ratio(orc.value / np.where(curve > 0, curve, 1), freqs, (142, 162)) == (
        pytest.approx(1.0, abs=0.1)
    )
    bands = list(seg.bands.values())
    assert asd_ratio(seg.oracle, seg.strain, [seg.bands["linear"]]) < 0.45
    assert asd_ratio(seg.oracle, seg.strain, [seg.bands["bilinear"]]) < 0.6
    # the oracle adds nothing outside the bands: its worst sub-band exceeds 1 by estimator
    # noise only, at most where it removes q ~ 3 % of the power (the coupling's skirts):
    # 3 sigma = 3 * 2.4 sqrt(0.03 / (2 * 64 s * 5 Hz)) = 4.9 % (gravwave.metrics.out_of_band)
    assert out_of_band_ratio(seg.oracle, seg.strain, bands) < 1.035


def test_bilinear_sidebands_are_not_linearly_coherent(seg: syn.SyntheticSegment) -> None:
    w = seg.witnesses
    mains, ang, mag = w[syn.MAINS_CHANNEL], w[syn.ANGULAR_CHANNEL], w[syn.MAG_CHANNEL]
    product = mains * ang.value

    def coh(x, f_lo: float, f_hi: float) -> float:
        c = seg.strain.coherence(x, fftlength=FFT, overlap=FFT / 2)
        f = c.frequencies.value
        return float(np.mean(c.value[(f >= f_lo) & (f <= f_hi)]))

    # Sidebands 0.5-0.75 Hz off the line (the bins at +-0.25 Hz hold the line's Hann leakage).
    # Power is there (see test above) but no single witness is coherent with it: with about
    # 20 effective averages, incoherent estimates scatter around 0.05.
    for witness in (mains, ang, mag):
        assert coh(witness, 50.5, 50.75) < 0.2
        assert coh(witness, 49.25, 49.5) < 0.2
    # ... while the product of the two explains it, and the magnetometer explains 142-162 Hz.
    assert coh(product, 50.5, 50.75) > 0.7
    assert coh(product, 49.25, 49.5) > 0.7
    assert coh(mag, 145, 159) > 0.8
    assert coh(mains, 49.9, 50.1) > 0.5  # the linearly coupled line


def test_drift_changes_gains_over_time() -> None:
    p = syn.SyntheticParams(duration=32, drift=1.0)  # +100 % per hour
    first, later = syn.generate(p, 0), syn.generate(p, 112)  # 3584 s later
    g0, g1 = first.gains["linear"], later.gains["linear"]
    assert g0[0] == pytest.approx(3.0) and g1[0] == pytest.approx(3.0 * (1 + 3584 / 3600))
    assert later.gains["bilinear"][1] > later.gains["bilinear"][0]
    ratio = np.std(later.noise_linear.value) / np.std(first.noise_linear.value)
    assert ratio == pytest.approx(g1[0] / g0[0], rel=0.1)
    still = syn.generate(p.model_copy(update={"drift": 0.0}), 112)
    assert still.gains["linear"] == (3.0, 3.0)


def test_glitches_at_listed_times() -> None:
    p = syn.SyntheticParams(duration=32, glitch_rate=0.25, seed=5)
    s = syn.generate(p)
    assert len(s.glitches) >= 2
    fs = p.sample_rate
    g = s.glitch_strain.value
    for gl in s.glitches:
        assert s.t0 < gl.gps < s.t0 + 32
        assert p.glitch_f0[0] <= gl.f0 <= p.glitch_f0[1]
        assert p.glitch_snr[0] <= gl.snr <= p.glitch_snr[1]
        i = int(round((gl.gps - s.t0) * fs))
        near = slice(i - int(0.02 * fs), i + int(0.02 * fs))
        far = np.abs(g[near]).max()
        assert far > 0
        # The envelope peaks at the listed time: within one period of f0.
        peak = near.start + int(np.argmax(np.abs(g[near])))
        assert abs(peak - i) / fs <= 1.0 / gl.f0
    # Glitches are short and are the only difference to the glitch-free data.
    assert np.count_nonzero(g) < 0.5 * len(g)
    clean = syn.generate(p.model_copy(update={"glitch_rate": 0.0})).strain.value
    # the generator's addition of the glitches and this subtraction: <= 2 roundings of the
    # largest term
    bound = 2 * np.finfo(float).eps * max(np.abs(v).max() for v in (s.strain.value, g, clean))
    np.testing.assert_allclose(s.strain.value - g, clean, rtol=0, atol=bound)


def test_injection_at_listed_time_with_listed_snr() -> None:
    p = syn.SyntheticParams(duration=64, injections=1, injection_snr=(20.0, 20.0), seed=7)
    s = syn.generate(p)
    (inj,) = s.injections
    assert inj["optimal_snr"] == pytest.approx(20.0)
    assert 1.2 <= inj["mass2"] <= inj["mass1"] <= 1.6 and inj["distance"] > 0
    assert abs(inj["gps"] - inj["geocent_end_time"]) < 0.03  # light travel time to V1
    fs, t = p.sample_rate, s.signal.times.value
    # TaylorT4 ends at the merger: nothing after it, the chirp before it.
    assert np.all(s.signal.value[t > inj["gps"] + 2.0 / fs] == 0)
    assert np.abs(s.signal.value[(t > inj["gps"] - 1) & (t < inj["gps"])]).max() > 0
    # Noise-free matched filter with the true PSD recovers the optimal SNR at that time.
    psd = FrequencySeries(s.floor_psd(0.25), df=0.25)
    snr = matched_filter_snr(s.signal, inj, inj["gps"], psd=psd, window=2.0 / fs)
    assert snr == pytest.approx(20.0, rel=0.03)


def test_distance_mode_and_validation() -> None:
    p = syn.SyntheticParams(
        duration=64, injections=1, injection_snr=None, injection_distance=(30.0, 30.0)
    )
    (inj,) = syn.generate(p).injections
    assert inj["distance"] == pytest.approx(30.0) and inj["optimal_snr"] > 5
    with pytest.raises(pydantic.ValidationError):
        syn.SyntheticParams(unknown=1)
    with pytest.raises(pydantic.ValidationError):
        syn.SyntheticParams(injections=1, injection_snr=None)
    with pytest.raises(pydantic.ValidationError):
        syn.SyntheticParams(duration=1.00001)
    with pytest.raises(pydantic.ValidationError):
        syn.SyntheticParams(linear_band=(162.0, 142.0))
    with pytest.raises(DataError, match="unknown PSD"):
        syn.generate(syn.SyntheticParams(duration=4, asd="design", psd="NoSuchCurve"))
    with pytest.raises(DataError):
        syn.generate(syn.SyntheticParams(duration=4), segment=-1)


# -- coloured by any ASD (issue 12, item 3) ---------------------------------------------------

O3_FILE = (
    Path(__file__).resolve().parents[2] / "data" / "gravwave" / "O3-V1_sensitivity_strain_asd.txt"
)


def _welch_follows_curve(s: syn.SyntheticSegment) -> tuple[float, tuple[float, float]]:
    """Worst 5-Hz sub-band of 30-1000 Hz: ``(|z|, band)`` of the oracle's Welch PSD.

    The oracle is the generated curve noise exactly (no glitches, no injections). Its Welch
    estimate (Hann, 4 s, half overlap) is compared with its expectation: the generator's PSD on
    its 1/64-Hz grid convolved with the Hann window's spectral kernel |W|^2 (exact for noise
    drawn as independent Fourier amplitudes on that grid; needed because the measured curve
    has lines 1000x above the floor that leak through the window's side lobes). The sub-band
    mean ratio has relative standard deviation 1 / sqrt(K_eff * N_eff): K_eff = 31 segments /
    (1 + 2 * 0.167^2) = 29.4 (Hann at 50 % overlap, Percival & Walden), N_eff the band's
    participation ratio (sum E)^2 / sum E^2 (20 bins if flat, fewer under a line) divided by
    1 + 2 (4/9 + 1/36) = 1.94 for the correlation of neighbouring Hann bins. Returns the worst
    ``|ratio - 1| / sigma``.
    """
    p = s.params
    fs, n = p.sample_rate, p.n_samples
    nper = int(FFT * fs)
    freqs, est = sps.welch(s.oracle.value, fs=fs, window="hann", nperseg=nper)
    kernel = np.abs(np.fft.fft(sps.get_window("hann", nper), n)) ** 2
    kernel = np.fft.fftshift(kernel)
    kernel /= kernel.sum()
    fine = s.floor_psd(fs / n)
    expect_fine = sps.fftconvolve(fine, kernel, mode="same")
    step = n // nper  # fine bins per Welch bin
    expect = expect_fine[::step][: len(freqs)]
    k_eff = 31 / (1 + 2 * 0.167**2)
    worst = (0.0, (0.0, 0.0))
    for lo in np.arange(30.0, 1000.0, 5.0):
        m = (freqs >= lo) & (freqs < lo + 5.0)
        e = expect[m]
        n_eff = e.sum() ** 2 / np.sum(e**2) / 1.94
        z = abs(est[m].sum() / e.sum() - 1.0) * np.sqrt(k_eff * n_eff)
        if z > worst[0]:
            worst = (float(z), (float(lo), float(lo + 5.0)))
    return worst


def test_generator_follows_measured_o3_virgo_curve() -> None:
    s = syn.generate(syn.SyntheticParams(asd="o3-virgo", seed=11))
    f = np.arange(len(s.floor_psd(0.5))) * 0.5
    table = np.loadtxt(O3_FILE)  # 0, 0.5, ..., 8192 Hz: row k is k * 0.5 Hz
    keep = f >= s.params.flow
    # At the file's nodes the log-ASD interpolation returns exp(2 log a): relative error
    # <= (2 |log a| + 2) eps = 110 eps ~ 2.4e-14 for a ~ 1e-23; rtol 1e-13.
    np.testing.assert_allclose(
        s.floor_psd(0.5)[keep], table[: len(f), 1][keep] ** 2, rtol=1e-13, atol=0
    )
    assert not s.floor_psd(0.5)[~keep].any()
    z, band = _welch_follows_curve(s)
    # 194 sub-bands: the largest |z| of 194 standard normals exceeds 4 with probability
    # 194 * 6.3e-5 = 1.2 %, and 5 with 1e-4; measured worst |z| is reported in the message.
    assert z < 5.0, f"worst sub-band {band} Hz at {z:.2f} sigma"
    # The strain is the curve noise plus the witnessed noise: oracle stays known.
    np.testing.assert_array_equal(
        s.oracle.value, s.strain.value - s.noise_linear.value - s.noise_bilinear.value
    )


def test_generator_coloured_by_any_asd_file(tmp_path: Path) -> None:
    f = np.arange(0.0, 2049.0, 1.0)
    a = 1e-23 * (1.0 + (40.0 / np.maximum(f, 1.0)) ** 4 + (f / 500.0) ** 2)
    path = tmp_path / "my_curve.txt"
    np.savetxt(path, np.column_stack([f, a]), header="f [Hz] ASD [1/sqrt(Hz)]")
    s = syn.generate(syn.SyntheticParams(asd=path, duration=64, seed=5))
    z, band = _welch_follows_curve(s)
    assert z < 5.0, f"worst sub-band {band} Hz at {z:.2f} sigma"
    narrow = tmp_path / "narrow.txt"
    np.savetxt(narrow, np.column_stack([f[:1001], a[:1001]]))
    with pytest.raises(DataError, match=r"^narrow\.txt: ASD covers 1-1000 Hz; .*Nyquist 2048"):
        syn.generate(syn.SyntheticParams(asd=narrow, duration=4))
    with pytest.raises(DataError, match="missing.txt: file not found"):
        syn.generate(syn.SyntheticParams(asd=tmp_path / "missing.txt", duration=4))
    # the default is the measured Virgo O3a curve; the LALSimulation curve stays one option
    assert syn.SyntheticParams().asd == "o3-virgo"
    np.testing.assert_array_equal(
        syn.strain_psd(syn.SyntheticParams(), 0.5),
        syn.file_psd(syn.O3_VIRGO_ASD, 4096, 0.5, 10.0),
    )
    design = syn.SyntheticParams(asd="design", duration=4)
    np.testing.assert_array_equal(
        syn.generate(design).floor_psd(0.5), syn.virgo_psd("AdVO3LowT1800545", 4096, 0.5, 10.0)
    )
