"""``twins dryrun`` on every task the package ships, and the launch previews that run it.

The dry run must drive the model exactly as the trainer does (the trainer's collate, the
task's own loss), whatever a batch holds: the drought model takes three tensors (dynamic,
static, baseline), the toy and noise models one. Every dry run here goes through
``twins.cli.main`` in-process on a tiny config; a module-wide work directory lets the drought
runs share the cached tiny cube.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from twins.cli import main

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "hydrology" / "configs" / "tiny.yaml"

#: The noise-cleaning task on a 48-s synthetic span at 1024 Hz with a small DeepClean.
NOISE_PARAMS = {
    "synthetic": {"duration": 48, "sample_rate": 1024, "n_distractors": 1},
    "sample_rate": 1024,
    "window": 4.0,
    "stride": 1.0,
    "val_fraction": 0.25,
    "widths": [4, 8],
    "dilations": [1],
    "loss_fftlength": 1.0,
    "loss_overlap": 0.5,
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dryrun")


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 0, err[-3000:]
    assert "Traceback" not in err
    return out


def _report_line(out: str, key: str) -> str:
    match = re.search(rf"^  {key}\s+(.*)$", out, flags=re.MULTILINE)
    assert match, out
    return match.group(1)


def _noise_config(tmp: Path) -> Path:
    cfg = tmp / "noise.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "name": "noise-tiny",
                "workdir": str(tmp),
                "task": {"target": "gravwave.task:NoiseCleaning", "params": NOISE_PARAMS},
                "train": {"epochs": 1, "batch_size": 8, "progress": False},
                "tracking": {"enabled": False},
            }
        )
    )
    return cfg


def test_toy_task(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"name: toy\nworkdir: {tmp_path}\ntrain:\n  batch_size: 64\n")
    out = _cli(["dryrun", str(cfg), "--workers", "4", "--nodes", "2", "--steps", "2"], capsys)
    assert _report_line(out, "inputs") == "(2, 32) float32 -> output (2, 1) float32"
    assert "local batch 16" in out and "torchrun --nnodes=2 --nproc_per_node=2" in out
    assert not (tmp_path / "toy" / "checkpoints").exists()  # a dry run leaves no checkpoint


@pytest.mark.parametrize(
    ("model", "inputs", "output"),
    [
        # per cell: dynamic (batch, seq, features), static (batch, S), analogue baseline
        # (batch, n_out); 6 outputs = SPI-3 and SSMI at leads 1-3
        (
            "lstm",
            r"\(2, 12, \d+\) float32, \(2, \d+\) float32, \(2, 6\) float32",
            r"\(2, 6\) float32",
        ),
        # space-time tiles: the same three inputs with the tile's (lat, lon) axes
        (
            "convlstm",
            r"\(2, 12, \d+, \d+, \d+\) float32, \(2, \d+, \d+, \d+\) float32, "
            r"\(2, 6, \d+, \d+\) float32",
            r"\(2, 6, \d+, \d+\) float32",
        ),
    ],
)
def test_drought_task(
    model: str, inputs: str, output: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's ``twins dryrun hydrology/configs/demo.yaml --workers 8 --nodes 2`` on the
    tiny preset (it crashed with ``CellLSTM.forward() missing ... 'static'``)."""
    argv = ["dryrun", str(TINY), f"workdir={workdir}", f"task.params.model={model}"]
    out = _cli([*argv, "tracking.enabled=false", "--workers", "8", "--nodes", "2"], capsys)
    assert re.fullmatch(f"{inputs} -> output {output}", _report_line(out, "inputs")), out
    assert "8 worker(s) on 2 node(s), local batch 16" in out  # batch_size 128 over 8
    assert "--nnodes=2 --nproc_per_node=4" in out and str(TINY) in out


def test_noise_task(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = _cli(["dryrun", str(_noise_config(tmp_path)), "--workers", "2", "--steps", "2"], capsys)
    # witnesses (batch, channels, 4 s x 1024 Hz) -> predicted strain noise (batch, time)
    assert re.fullmatch(
        r"\(2, \d+, 4096\) float32 -> output \(2, 4096\) float32", _report_line(out, "inputs")
    ), out
    assert "local batch 4" in out


def test_overrides_after_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``twins dryrun CONFIG --workers 8 workdir=/x``: overrides after a flag are accepted
    and applied (the batch is the override's) and passed on to the launch command."""
    cfg = tmp_path / "run.yaml"
    cfg.write_text("name: late\ntrain:\n  batch_size: 64\ntracking:\n  enabled: false\n")
    late = [f"workdir={tmp_path / 'x'}", "train.batch_size=32"]
    out = _cli(["dryrun", str(cfg), "--workers", "8", *late], capsys)
    assert "8 worker(s) on 1 node(s), local batch 4" in out  # 32 / 8, not 64 / 8
    assert f"twins train {cfg} {' '.join(late)}" in out.split("launch:")[-1]


def test_batch_smaller_than_workers_is_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"workdir: {tmp_path}\ntrain:\n  batch_size: 4\n")
    assert main(["dryrun", str(cfg), "--workers", "8"]) != 0
    err = capsys.readouterr().err
    assert "train.batch_size 4 is smaller than 8 workers" in err and "Traceback" not in err


def test_refused_dry_run_leaves_no_run_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The drought task caches its cube in the run directory before the batch check
    refuses: the refused dry run takes the directory away again (a real run does too)."""
    argv = ["dryrun", str(TINY), f"workdir={tmp_path}", "tracking.enabled=false"]
    assert main([*argv, "train.batch_size=4", "--workers", "8"]) == 1
    assert "train.batch_size 4 is smaller than 8 workers" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    assert main([*argv, "--workers", "8", "--steps", "1"]) == 0
    left = {p.relative_to(tmp_path).parts[:2] for p in tmp_path.rglob("*")}
    assert left <= {("drought-tiny",), ("drought-tiny", "data")}  # the cube cache only


# -- the launchers run the dry run for their resource request ---------------------------
@pytest.mark.parametrize(
    ("flags", "expect"),
    [
        (["--nodes", "4", "--tasks-per-node", "4"], "--nproc_per_node=4"),
        (["--kind", "ray", "--nodes", "2"], "--backend ray --address"),
    ],
)
def test_slurm_preview_of_the_drought_config(
    flags: list[str], expect: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``twins launch slurm hydrology/configs/demo.yaml --nodes 4 --tasks-per-node 4`` (and
    ``--kind ray``) on the tiny preset: the dry run behind the walltime now passes."""
    argv = ["launch", "slurm", str(TINY), f"workdir={workdir}", "tracking.enabled=false"]
    out = _cli([*argv, "--steps", "2", *flags], capsys)
    assert out.startswith("#!") and "# dry run:" in out and expect in out
    assert re.search(r"^#SBATCH --time=\d+:\d\d:\d\d$", out, flags=re.MULTILINE), out
    assert "#SBATCH --submit" not in out  # a preview: nothing was submitted


@pytest.mark.parametrize("kind", ["torchrun", "ray", "twin-update"])
def test_k8s_preview_of_the_drought_config(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["launch", "k8s", str(TINY), "--kind", kind]
    if kind == "twin-update":
        argv += ["--twin", str(tmp_path / "drought-twin"), "--interlink"]
    docs = [d for d in yaml.safe_load_all(_cli(argv, capsys)) if d]
    kinds = [d["kind"] for d in docs]
    expected = {"torchrun": "Job", "ray": "RayCluster", "twin-update": "CronJob"}[kind]
    assert expected in kinds, kinds
    if kind == "twin-update":  # the twin holds its own config: none is shipped
        assert "ConfigMap" not in kinds
        pod = docs[kinds.index("CronJob")]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        command = pod["containers"][0]["command"]
        assert command[-3:] == ["twin", "update", str(tmp_path / "drought-twin")]
    else:
        shipped = next(d for d in docs if d["kind"] == "ConfigMap")
        assert "hydrology.task:DroughtForecast" in next(iter(shipped["data"].values()))
