"""``twins report hpo``: is the tuned configuration really better than the default?

The study selected its best trial on the validation split, with one seed. This report
re-trains both the default configuration (``default.yaml``) and the best one
(``best.yaml``) with ``seeds`` seeds each (the same seeds for both: a paired design)
and compares them on the held-out **test** split only.

Statistics, for the test metric ``m`` (``test_loss``, lower is better):

- per configuration: mean and sample standard deviation (``ddof=1``) over seeds;
- relative change ``r = mean(best) / mean(default) - 1`` (negative = better), with
  - ``r_se``: its standard error by first-order error propagation of the two means'
    standard errors, ``|1 + r| * sqrt((se_b / mean_b)^2 + (se_d / mean_d)^2)``;
  - ``r_paired_mean`` / ``r_paired_std``: mean and spread of the per-seed ratios
    ``m_best[s] / m_default[s] - 1`` (the paired view);
  - ``r_ci95``: a 95 % bootstrap interval of ``r`` (seeds resampled in pairs, 2000
    resamples, fixed RNG), which needs no normality assumption.

Compute spent: trials, trial-epochs, wall time and CPU-seconds (energy where a counter
was readable) of the study from ``study.json``, plus the same for the re-training here.

Outputs in ``<study>/report/``: ``report.md`` (table), ``report.png`` (per-seed test
metric and means with their spread), ``report.json`` (everything, machine-readable).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from twins.config import RunConfig, load_config
from twins.errors import TwinsError

log = logging.getLogger(__name__)

#: Test metric compared by the report (lower is better).
METRIC = "test_loss"
#: Bootstrap resamples of the relative change.
BOOTSTRAP = 2000


@dataclass
class Report:
    """The HPO report.

    Attributes:
        study_dir: The study directory.
        metric: Test metric compared.
        values: ``{"default": [...], "best": [...]}``: the metric per seed.
        stats: Means, spreads and the relative change (see the module docstring).
        compute: Compute spent by the study and by this report.
        paths: ``md``, ``png`` and ``json`` output paths.
    """

    study_dir: Path
    metric: str
    seeds: list[int]
    values: dict[str, list[float]]
    stats: dict[str, Any]
    compute: dict[str, Any]
    overrides: dict[str, Any] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)

    def render(self) -> str:
        """The report as Markdown (what ``report.md`` holds)."""
        s = self.stats
        lines = [
            f"# HPO report: {self.study_dir.name}",
            "",
            f"Test split, `{self.metric}` (lower is better), seeds {self.seeds}, same seeds "
            "for both configurations.",
            "",
            "| configuration | n | mean | std | per seed |",
            "|---|---|---|---|---|",
        ]
        for which in ("default", "best"):
            vals = ", ".join(f"{v:.4g}" for v in self.values[which])
            lines.append(
                f"| {which} | {len(self.values[which])} | {s[which]['mean']:.4g} | "
                f"{s[which]['std']:.3g} | {vals} |"
            )
        lo, hi = s["r_ci95"]
        lines += [
            "",
            f"Relative change (best / default - 1): **{100 * s['r']:+.1f} %** "
            f"(± {100 * s['r_se']:.1f} % s.e.; paired per seed {100 * s['r_paired_mean']:+.1f} "
            f"± {100 * s['r_paired_std']:.1f} %; bootstrap 95 % interval "
            f"[{100 * lo:+.1f} %, {100 * hi:+.1f} %]).",
            "",
            f"Best overrides: `{self.overrides}`",
            "",
            "## Compute",
            "",
            "| | trials | epochs | wall s | CPU s | energy J |",
            "|---|---|---|---|---|---|",
        ]
        for key in ("study", "report"):
            c = self.compute[key]
            lines.append(
                f"| {key} | {c.get('trials', '-')} | {c.get('epochs', '-')} | "
                f"{_fmt(c.get('wall_s'))} | {_fmt(c.get('cpu_s'))} | {_fmt(c.get('energy_j'))} |"
            )
        lines += ["", f"Energy: {self.compute['energy_note']}", ""]
        return "\n".join(lines)


def _fmt(value: Any) -> str:
    return "unavailable" if value is None else f"{value:.4g}"


def find_study(run: str | Path) -> Path:
    """The study directory of ``run``: a study directory, or the study config that made it.

    Raises:
        TwinsError: Not a finished study (no ``best.yaml``).
    """
    path = Path(run)
    if path.is_file():
        from twins.tune.space import load_study
        from twins.tune.study import study_paths

        cfg, _ = load_study(path)
        path = study_paths(cfg)["root"]
    if not (path / "best.yaml").is_file() or not (path / "default.yaml").is_file():
        raise TwinsError(
            f"{path} is not a finished study (no best.yaml / default.yaml)",
            "run twins tune CONFIG first, then pass <workdir>/<name>",
        )
    return path


def relative_change(default: np.ndarray, best: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Relative change of the means with its spread (see the module docstring).

    Args:
        default: Metric per seed of the default configuration.
        best: Metric per seed of the best configuration, same seeds in the same order.
        seed: Seed of the bootstrap.
    """
    n = len(default)
    md, mb = float(default.mean()), float(best.mean())
    sd, sb = float(default.std(ddof=1)), float(best.std(ddof=1))
    r = mb / md - 1
    se = abs(1 + r) * math.sqrt((sb / math.sqrt(n) / mb) ** 2 + (sd / math.sqrt(n) / md) ** 2)
    paired = best / default - 1
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(BOOTSTRAP, n))
    boot = best[idx].mean(axis=1) / default[idx].mean(axis=1) - 1
    return {
        "default": {"mean": md, "std": sd},
        "best": {"mean": mb, "std": sb},
        "r": r,
        "r_se": se,
        "r_paired_mean": float(paired.mean()),
        "r_paired_std": float(paired.std(ddof=1)),
        "r_ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
    }


def _retrain(cfg: RunConfig, name: str, seed: int, workdir: Path, tracking: bool) -> dict:
    from twins.config import validate
    from twins.train.run import train_process

    data = cfg.model_dump(mode="json")
    data.update(name=name, seed=seed, workdir=str(workdir))
    data["train"]["progress"] = False
    data["distributed"]["backend"] = "local"
    data["tracking"]["enabled"] = bool(tracking and cfg.tracking.enabled)
    run_cfg = validate(data, f"<report {name}>")
    return train_process(run_cfg, progress=False)


def hpo_report(run: str | Path, seeds: int = 3, tracking: bool = False) -> Report:
    """Re-train default and best configurations over seeds and write the report.

    Args:
        run: Study directory (``<workdir>/<name>``) or the study config.
        seeds: Seeds per configuration (at least 3, for a spread).
        tracking: Log the re-training runs to MLflow (off by default).

    Returns:
        The :class:`Report`; files are in ``<study>/report/``.

    Raises:
        TwinsError: Fewer than 3 seeds, or not a finished study.
    """
    if seeds < 3:
        raise TwinsError(f"--seeds {seeds}: need at least 3 seeds for a spread")
    study = find_study(run)
    meta = json.loads((study / "study.json").read_text())
    configs = {
        "default": load_config(study / "default.yaml"),
        "best": load_config(study / "best.yaml"),
    }
    out = study / "report"
    out.mkdir(parents=True, exist_ok=True)
    base_seed = configs["default"].seed
    seed_list = [base_seed + i for i in range(seeds)]
    values: dict[str, list[float]] = {"default": [], "best": []}
    spent = {"trials": 2 * seeds, "epochs": 0, "cpu_s": 0.0, "energy_j": None}
    t0 = time.perf_counter()
    for which, cfg in configs.items():
        for s in seed_list:
            summary = _retrain(cfg, f"{which}-seed{s}", s, out / "runs", tracking)
            if not math.isfinite(float(summary[METRIC])):
                raise TwinsError(f"{which} seed {s}: {METRIC} is not finite")
            values[which].append(float(summary[METRIC]))
            spent["epochs"] += int(summary["epochs"])
            energy = summary.get("energy") or {}
            spent["cpu_s"] += float(energy.get("energy_cpu_s", 0.0))
            if "energy_j" in energy:
                spent["energy_j"] = (spent["energy_j"] or 0.0) + float(energy["energy_j"])
            log.info("%s seed %d: %s %.4g", which, s, METRIC, values[which][-1])
    spent["wall_s"] = time.perf_counter() - t0
    stats = relative_change(np.array(values["default"]), np.array(values["best"]))
    compute = {
        "study": {
            "trials": meta.get("trials"),
            "epochs": meta.get("trial_epochs"),
            "wall_s": meta.get("wall_s"),
            "cpu_s": meta.get("trial_cpu_s"),
            "energy_j": meta.get("trial_energy_j"),
        },
        "report": spent,
        "energy_note": (
            "measured (RAPL/NVML counters)"
            if meta.get("trial_energy_j") is not None or spent["energy_j"] is not None
            else "unavailable: no RAPL or NVML counter readable on this machine"
        ),
    }
    report = Report(
        study_dir=study,
        metric=METRIC,
        seeds=seed_list,
        values=values,
        stats=stats,
        compute=compute,
        overrides=meta.get("best_overrides", {}),
        paths={"md": out / "report.md", "png": out / "report.png", "json": out / "report.json"},
    )
    report.paths["md"].write_text(report.render())
    _plot(report, report.paths["png"])
    payload = {
        "study": str(study),
        "metric": METRIC,
        "seeds": seed_list,
        "values": values,
        "stats": stats,
        "compute": compute,
        "best_overrides": report.overrides,
    }
    report.paths["json"].write_text(json.dumps(payload, indent=2, default=str))
    _log_to_study(meta, report)
    return report


def _plot(report: Report, path: Path) -> None:
    """Per-seed test metric of both configurations, with mean ± std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    for i, which in enumerate(("default", "best")):
        vals = report.values[which]
        ax.scatter([i] * len(vals), vals, color="0.5", zorder=2, s=18)
        st = report.stats[which]
        ax.errorbar(i + 0.15, st["mean"], yerr=st["std"], fmt="o", color="C0", capsize=4)
    ax.set_xticks([0, 1], ["default", "best"])
    ax.set_xlim(-0.5, 1.5)
    ax.set_ylabel(f"{report.metric} (test)")
    ax.set_title(f"relative change {100 * report.stats['r']:+.1f} %")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _log_to_study(meta: dict[str, Any], report: Report) -> None:
    """Attach the report files to the study's MLflow run, when there is one."""
    run_id, uri = meta.get("mlflow_run_id"), meta.get("tracking_uri")
    if not run_id or not uri:
        return
    from twins.track import Tracker

    tracker = Tracker(uri, meta.get("experiment", "twins"))
    tracker.run_id = run_id
    for key in ("md", "png", "json"):
        tracker.log_artifact(report.paths[key], "hpo_report")
    tracker.log_metrics(
        {
            "hpo_default_test_mean": report.stats["default"]["mean"],
            "hpo_best_test_mean": report.stats["best"]["mean"],
            "hpo_relative_change": report.stats["r"],
        },
        0,
    )
    tracker.flush()
