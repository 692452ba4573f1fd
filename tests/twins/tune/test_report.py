"""``twins report hpo``: best versus default over seeds on the test split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from twins.config import to_yaml
from twins.errors import TwinsError
from twins.tune.report import hpo_report, relative_change
from twins.tune.space import apply_sample, load_study

SPACE = Path(__file__).resolve().parents[3] / "twins" / "tune" / "spaces" / "toy.yaml"


def _fake_study(tmp_path: Path) -> Path:
    """The files ``twins tune`` leaves, without running Ray (the report only reads them)."""
    cfg, _ = load_study(
        SPACE, [f"workdir={tmp_path}", "task.params.length=300", "tracking.enabled=false"]
    )
    best = {"train.optimizer.lr": 1e-2, "task.params.hidden": 16, "train.batch_size": 32}
    root = tmp_path / cfg.name
    root.mkdir()
    (root / "default.yaml").write_text(to_yaml(cfg))
    best_cfg = apply_sample(cfg, best).model_copy(update={"name": "toy-study-best"})
    (root / "best.yaml").write_text(to_yaml(best_cfg))
    meta = {"trials": 4, "trial_epochs": 9, "wall_s": 20.0, "trial_cpu_s": 1.5}
    (root / "study.json").write_text(json.dumps({**meta, "best_overrides": best}))
    return root


def test_report_compares_best_and_default_on_test(tmp_path: Path) -> None:
    study = _fake_study(tmp_path)
    report = hpo_report(study, seeds=3)
    assert report.seeds == [0, 1, 2]
    for which in ("default", "best"):
        vals = report.values[which]
        assert len(vals) == 3 and all(np.isfinite(vals))
        # the same float64 formulas on 3 values: a few u64 apart, far inside approx's 1e-6
        assert report.stats[which]["mean"] == pytest.approx(np.mean(vals))
        assert report.stats[which]["std"] == pytest.approx(np.std(vals, ddof=1))
    r = report.stats["r"]
    assert r == pytest.approx(report.stats["best"]["mean"] / report.stats["default"]["mean"] - 1)
    lo, hi = report.stats["r_ci95"]
    assert lo <= hi and report.stats["r_se"] >= 0
    # test metric from 6 fresh runs: each wrote its summary with test_loss
    summaries = sorted((study / "report" / "runs").glob("*/summary.json"))
    assert len(summaries) == 6
    names = {json.loads(p.read_text())["name"] for p in summaries}
    assert {"best-seed0", "default-seed2"} <= names
    # files: table, figure, machine-readable
    md = report.paths["md"].read_text()
    assert "| default | 3 |" in md and "| best | 3 |" in md and "Relative change" in md
    assert "trials" in md and "| study | 4 | 9 |" in md
    assert report.paths["png"].stat().st_size > 1000
    data = json.loads(report.paths["json"].read_text())
    assert data["compute"]["report"]["epochs"] == 18
    assert data["compute"]["study"]["trials"] == 4


def test_report_needs_three_seeds_and_a_study(tmp_path: Path) -> None:
    with pytest.raises(TwinsError, match="at least 3"):
        hpo_report(tmp_path, seeds=2)
    with pytest.raises(TwinsError, match="not a finished study"):
        hpo_report(tmp_path, seeds=3)


def test_relative_change_statistics() -> None:
    default = np.array([1.0, 1.2, 0.8])
    best = np.array([0.5, 0.6, 0.4])
    stats = relative_change(default, best)
    # best = default / 2 exactly: every statistic is -0.5 (or 0) up to a few u64 of rounding
    assert stats["r"] == pytest.approx(-0.5)
    assert stats["r_paired_mean"] == pytest.approx(-0.5)
    assert stats["r_paired_std"] == pytest.approx(0.0, abs=1e-12)
    assert stats["r_ci95"] == pytest.approx([-0.5, -0.5])
    assert stats["r_se"] > 0  # the means' spreads propagate even when ratios agree
