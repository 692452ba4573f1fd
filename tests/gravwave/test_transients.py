"""Unwitnessed transients pass through the cleaner (issue 12, item 5): a loud sine-Gaussian
glitch keeps its band energy and is flagged at its GPS time, a loud BNS keeps its SNR."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
from gwpy.frequencyseries import FrequencySeries
from gwpy.timeseries import TimeSeries
from pycbc.filter import sigma
from pycbc.types import FrequencySeries as PyFrequencySeries

from gravwave import synthetic as syn
from gravwave import transients_check
from gravwave.cleaners import CascadeCleaner, load_cleaner
from gravwave.policy import TwinPolicy
from gravwave.transients import (
    TILE_SIGMAS,
    add_sine_gaussian,
    band_energy,
    glitch_tile,
    optimal_snr,
    sine_gaussian,
)
from gravwave.transients_check import ENERGY_BAR, SNR_BAR, TransientCheck, check_transients
from gravwave.twin import NoiseTwin
from twins.errors import ConfigError, DataError

log = logging.getLogger(__name__)

FS = 4096
F0, Q = 152.0, 20.0  # inside the Wiener band 125-180 Hz: its tile is 125.1-178.9 Hz
# The smooth design curve: the measured O3 curve has lines 40x its floor at 145-155 Hz, in the
# glitch's tile and the Wiener band, which would measure the lines rather than the glitch.
CURVE = "design"
GLITCH_SNR = 200.0  # >= 50; loud enough to resolve a 1 % energy bar (see the test)
BNS_SNR = 40.0


def _curve(duration: float) -> FrequencySeries:
    """The generator's design curve as a one-sided PSD on 0 .. Nyquist [strain^2/Hz]."""
    df = 1.0 / duration
    return FrequencySeries(syn.strain_psd(syn.SyntheticParams(asd=CURVE), df), f0=0.0, df=df)


def test_sine_gaussian_has_the_requested_snr_and_its_energy_in_its_tile() -> None:
    psd = _curve(16.0)
    zeros = TimeSeries(np.zeros(16 * FS), t0=1000.0, sample_rate=FS, name="V1:h")
    gps = 1008.0 + 0.3 / FS  # off the sample grid: placed to a sub-sample offset
    added, glitch = add_sine_gaussian(zeros, gps, F0, Q, 60.0, psd)
    np.testing.assert_array_equal(added.value, glitch.value)
    g = glitch.value[np.flatnonzero(glitch.value)[0] : np.flatnonzero(glitch.value)[-1] + 1]
    # pycbc's sigma on the same zero-padded grid: the same sum of ~1e4 positive terms in
    # another order, so the relative difference is a few float64 roundings (bound 1e-10)
    n = 2 ** math.ceil(math.log2(max(len(g), FS)))
    htilde = TimeSeries(np.pad(g, (0, n - len(g))), sample_rate=FS).to_pycbc()
    htilde = htilde.to_frequencyseries()
    grid = PyFrequencySeries(
        np.interp(htilde.sample_frequencies.numpy(), psd.frequencies.value, psd.value),
        delta_f=htilde.delta_f,
    )
    # from 20 Hz: the glitch's spectrum there is 11 sigma below f0 (exp(-60) of its peak)
    assert sigma(htilde, psd=grid, low_frequency_cutoff=20.0) == pytest.approx(60.0, rel=1e-10)
    assert optimal_snr(g, FS, psd) == pytest.approx(60.0, rel=1e-12)
    # the peak of the envelope is at gps: the largest |sample| within half a cycle of it
    peak_t = float(glitch.times.value[int(np.argmax(np.abs(glitch.value)))])
    assert abs(peak_t - gps) <= 0.5 / F0
    # energy of the glitch alone: a = b = erfc(5 / sqrt 2) = 5.7e-7 of it lies outside +-5
    # sigma in time (a) and in frequency (b); the tile's part of the band-passed glitch
    # differs from the glitch by at most sqrt(a) + sqrt(b) in norm (triangle inequality),
    # so its share is at least (1 - 2 sqrt(a))^2; the median-Welch noise estimate of a series
    # that is zero in at least 4 of its 7 FFTs is exactly 0
    tile = glitch_tile(gps, F0, Q)
    assert tile.f_low > 0 and tile.end - tile.start == pytest.approx(
        TILE_SIGMAS * Q / (math.sqrt(2) * math.pi * F0)
    )
    total = float(np.sum(glitch.value**2) / FS)
    share = band_energy(glitch, tile) / total
    assert (1 - 2 * math.sqrt(math.erfc(TILE_SIGMAS / math.sqrt(2)))) ** 2 <= share <= 1 + 1e-12


def test_transient_refusals_name_the_value() -> None:
    psd = _curve(4.0)
    x = TimeSeries(np.zeros(4 * FS), t0=0.0, sample_rate=FS, name="V1:h")
    with pytest.raises(DataError, match=r"f0 3000.0 Hz; expected 0 < f0 < Nyquist \(2048"):
        sine_gaussian(3000.0, 9.0, FS)
    with pytest.raises(DataError, match="Q 0.5; expected a finite Q >= 1"):
        sine_gaussian(100.0, 0.5, FS)
    with pytest.raises(DataError, match="glitch SNR -1.0"):
        add_sine_gaussian(x, 2.0, 100.0, 9.0, -1.0, psd)
    with pytest.raises(
        DataError, match=r"glitch at GPS 0.01 .* does not fit in V1:h \[0.0, 4.0\)"
    ):
        add_sine_gaussian(x, 0.01, 100.0, 9.0, 50.0, psd)
    with pytest.raises(DataError, match="is not inside V1:h"):
        band_energy(x, glitch_tile(3.999, 100.0, 9.0))
    short = FrequencySeries(psd.value[:100], f0=0.0, df=psd.df)
    with pytest.raises(DataError, match="PSD ends at 24.75 Hz, below Nyquist"):
        add_sine_gaussian(x, 2.0, 100.0, 9.0, 50.0, short)


@pytest.fixture(scope="module")
def cascade(tmp_path_factory: pytest.TempPathFactory) -> CascadeCleaner:
    """``python -m gravwave.transients_check`` on 256 s of training (short network training):
    its report, and the cascade it saved."""
    work = tmp_path_factory.mktemp("transients")
    args = ["--workdir", str(work), "--train-s", "256", "--test-s", "64", "--seed", "21"]
    report = transients_check.main(
        [*args, "--segments", "4", "--epochs", "2", "--steps", "4", "--batch", "8"]
    )
    row = report["segment 4"]
    check = TransientCheck.model_validate(
        {k: v for k, v in row.items() if k in TransientCheck.model_fields}
    )
    assert row["bars"] == check.bars() and row["energy_change"] == check.energy_change
    assert json.loads((work / "transients.json").read_text())["segment 4"] == row
    cleaner = load_cleaner(work / "cascade.pt")
    assert isinstance(cleaner, CascadeCleaner)
    return cleaner


@pytest.mark.slow
def test_glitch_and_bns_no_witness_sees_pass_through_the_cascade(
    cascade: CascadeCleaner, tmp_path: Path
) -> None:
    p = syn.SyntheticParams(
        duration=64, seed=21, asd=CURVE, injections=1, injection_snr=(BNS_SNR, BNS_SNR)
    )
    # segment 5 starts 320 s after segment 0: after the 256-s training span
    check = check_transients(cascade, p, 5, f0=F0, q=Q, glitch_snr=GLITCH_SNR)
    log.info("transients through the cascade: %s", check.model_dump_json())

    # Glitch band energy, cleaned vs oracle (the strain without witnessed noise): the cleaned
    # strain is oracle + r, r the cleaning residual, so the energies differ by 2 <g, r> plus
    # second-order terms; for r Gaussian with PSD rho x the floor's in the tile's band,
    # 2 <g, r> / <g, g> has standard deviation 2 sqrt(rho) / SNR (check.energy_spread, rho
    # measured from the truth r = cleaned - oracle); the 1 % bar is asserted only where it is
    # >= 3 of those standard deviations, so the test resolves it (SNR 200: rho up to 0.11)
    assert 3 * check.energy_spread <= ENERGY_BAR, f"rho {check.rho:.3f} cannot resolve 1 %"
    assert abs(check.energy_change) < ENERGY_BAR

    # The glitch is flagged at its GPS time, by glitch_flags and by the twin's update
    tau = Q / (math.sqrt(2) * math.pi * F0)
    assert check.flag_offset is not None and abs(check.flag_offset) <= tau
    seg = syn.generate(p, 5)
    raw, _ = add_sine_gaussian(seg.strain, check.glitch_gps, F0, Q, GLITCH_SNR, _curve(64.0))
    twin = NoiseTwin.init(tmp_path / "twin", cascade, TwinPolicy(register_models=False))
    result = twin.update(raw, witnesses=seg.witnesses)
    gps = check.glitch_gps
    assert [fl for fl in result.glitches if fl.gps_start - tau <= gps <= fl.gps_end + tau]

    # BNS matched-filter SNR (PSD from each series): cleaning lowers the PSD in its bands,
    # where the design curve holds 14 % (125-180 Hz) and 2 % (49-51 Hz) of a BNS's SNR^2,
    # so the SNR rises by ~2 %; the noise terms of the raw and cleaned SNRs share the floor
    # and differ by the removed noise's projection, of standard deviation sqrt(2 (1 - c)) with
    # c = sqrt(1 - 0.16 (1 - 1/10)) = 0.93 the correlation: 0.37, 0.9 % of SNR 40. A loss of
    # 1 % is then more than 3 standard deviations below the expected rise.
    assert check.bns_snr["cleaned"] >= (1 - SNR_BAR) * check.bns_snr["raw"]
    assert check.bars() == {"glitch_energy": True, "glitch_flagged": True, "bns_snr": True}
    with pytest.raises(DataError, match="needs injections=1, got 0"):
        check_transients(cascade, p.model_copy(update={"injections": 0}), 5)


def test_transients_check_refuses_test_segments_inside_the_training_span(tmp_path: Path) -> None:
    args = ["--workdir", str(tmp_path), "--train-s", "256", "--test-s", "64", "--segments", "3"]
    with pytest.raises(ConfigError, match=r"test segments \[3\] of 64 s start inside the 256-s"):
        transients_check.main(args)
    assert not list(tmp_path.iterdir())  # refused before anything is written
