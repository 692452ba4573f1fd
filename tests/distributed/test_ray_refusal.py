"""A run Ray workers refuse (bad data) is one line of its kind and leaves no run directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from twins.cli import main

pytestmark = [pytest.mark.distributed, pytest.mark.ray, pytest.mark.slow]

TINY = Path(__file__).resolve().parents[2] / "hydrology" / "configs" / "tiny.yaml"


def test_refused_ray_run_leaves_no_run_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", str(TINY), "--backend", "ray", "--workers", "1", f"workdir={tmp_path}"]
    rc = main([*argv, "name=refused", "task.params.path=/nonexistent/*.nc"])
    err = capsys.readouterr().err
    assert rc == 3, err  # the worker's DataError, rebuilt on the driver with its exit code
    assert "/nonexistent/*.nc" in err and "Traceback" not in err
    assert sum(line.startswith("twins: error:") for line in err.splitlines()) == 1
    assert not (tmp_path / "refused").exists()


def test_workdir_that_is_a_file_is_refused_before_ray_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("")
    rc = main(
        ["train", str(TINY), "--backend", "ray", "--workers", "1", f"workdir={tmp_path}/file"]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "workdir" in err and "Traceback" not in err
