"""A refused run leaves no trace: the task and its data are checked before the run writes,
what a failing task wrote into a new run directory is removed, and nothing that existed
before is touched."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from twins.config import load_config
from twins.errors import ConfigError, DataError, TwinsError
from twins.train.run import removed_if_refused, train_process

REPO = Path(__file__).resolve().parents[3]

Snapshot = Callable[..., dict[str, object]]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A workdir holding an earlier run and a stray file, which every refusal must keep."""
    wd = tmp_path / "wd"
    (wd / "earlier" / "checkpoints").mkdir(parents=True)
    (wd / "earlier" / "checkpoints" / "last.pt").write_bytes(b"\x00" * 64)
    (wd / "notes.txt").write_text("keep")
    return wd


def noise_config(workdir: Path, *overrides: str) -> list[str]:
    return [
        f"workdir={workdir}",
        "name=noise",
        "task.target=gravwave.task:NoiseCleaning",
        "task.params.synthetic={duration: 24, sample_rate: 1024, n_distractors: 1}",
        "task.params.sample_rate=1024",
        "task.params.window=4.0",
        "task.params.widths=[4, 8]",
        "task.params.loss_fftlength=1.0",
        "task.params.loss_overlap=0.5",
        "tracking.enabled=false",
        "energy.enabled=false",
        *overrides,
    ]


def test_drought_path_matching_nothing_leaves_workdir_unchanged(
    workdir: Path, dir_snapshot: Snapshot
) -> None:
    cfg = load_config(
        REPO / "hydrology" / "configs" / "tiny.yaml",
        ["task.params.path=/nonexistent/*.nc", f"workdir={workdir}", "tracking.enabled=false"],
    )
    before = dir_snapshot(workdir)
    with pytest.raises(DataError, match="/nonexistent/"):
        train_process(cfg, progress=False)
    assert dir_snapshot(workdir) == before
    assert not cfg.run_dir.exists()


def test_noise_missing_file_leaves_workdir_unchanged(
    workdir: Path, dir_snapshot: Snapshot
) -> None:
    cfg = load_config(
        None, noise_config(workdir, "task.params.synthetic=null", "task.params.path=/no/x.h5")
    )
    before = dir_snapshot(workdir)
    with pytest.raises(DataError, match="/no/x.h5"):
        train_process(cfg, progress=False)
    assert dir_snapshot(workdir) == before


def test_what_a_failing_task_wrote_is_removed(
    tmp_path: Path, workdir: Path, dir_snapshot: Snapshot
) -> None:
    # 10 % of 24 s leaves 2.4 s for validation, less than one 4 s window: the task writes
    # normalisation.pt into the run directory while preparing, then refuses its splits.
    fresh = tmp_path / "fresh" / "deeper"  # a workdir this run would create, two levels
    for wd in (workdir, fresh):
        cfg = load_config(None, noise_config(wd, "task.params.val_fraction=0.1"))
        before = dir_snapshot(tmp_path)
        with pytest.raises(DataError, match="no training or validation window"):
            train_process(cfg, progress=False)
        assert dir_snapshot(tmp_path) == before
    assert not (tmp_path / "fresh").exists()


def test_refusal_keeps_what_existed_and_what_others_wrote(
    tmp_path: Path, dir_snapshot: Snapshot
) -> None:
    run_dir = tmp_path / "wd" / "new" / "run"
    with pytest.raises(RuntimeError), removed_if_refused(run_dir):
        run_dir.mkdir(parents=True)
        (run_dir / "cache.npz").write_bytes(b"x")
        (tmp_path / "wd" / "new" / "other-run").mkdir()  # a concurrent run, same workdir
        raise RuntimeError("refused")
    assert not run_dir.exists()
    assert (tmp_path / "wd" / "new" / "other-run").is_dir()  # non-empty parents are kept

    (run_dir / "checkpoints").mkdir(parents=True)  # an existing run directory
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"y")
    before = dir_snapshot(tmp_path)
    with pytest.raises(RuntimeError), removed_if_refused(run_dir):
        raise RuntimeError("refused")
    assert dir_snapshot(tmp_path) == before

    with removed_if_refused(tmp_path / "ok"):  # success: what was written stays
        (tmp_path / "ok").mkdir()
    assert (tmp_path / "ok").is_dir()

    with pytest.raises(RuntimeError), removed_if_refused(tmp_path / "rank1", is_main=False):
        (tmp_path / "rank1").mkdir()
        raise RuntimeError("refused")
    assert (tmp_path / "rank1").is_dir()  # only rank 0 deletes


def test_workdir_file_is_a_config_error(tmp_path: Path, dir_snapshot: Snapshot) -> None:
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    before = dir_snapshot(tmp_path)
    for wd in (afile, afile / "below"):
        cfg = load_config(None, [f"workdir={wd}", "tracking.enabled=false"])
        with pytest.raises(ConfigError) as info:
            train_process(cfg, progress=False)
        assert str(info.value).startswith(f"workdir: {afile} exists and is not a directory")
    assert dir_snapshot(tmp_path) == before


def test_resume_without_checkpoint_writes_nothing(workdir: Path, dir_snapshot: Snapshot) -> None:
    cfg = load_config(None, [f"workdir={workdir}", "name=fresh", "tracking.enabled=false"])
    before = dir_snapshot(workdir)
    with pytest.raises(TwinsError, match="cannot resume: no checkpoint"):
        train_process(cfg, resume=True, progress=False)
    assert dir_snapshot(workdir) == before
