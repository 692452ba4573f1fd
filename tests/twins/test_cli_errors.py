"""The command line's contract for mistakes: exit codes, one-line errors, the last guard,
overrides anywhere, and the domain-free twin commands (history, rollback). In-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twins import cli
from twins.twin import TwinStore


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _store(tmp_path: Path) -> TwinStore:
    store = TwinStore.init(tmp_path / "twin", kind="nodomain", cursor="c0", model_ref="m0")
    for i in (1, 2, 3):
        with store.transaction(f"u{i}") as txn:
            (txn.products_dir / "p.txt").write_text(str(i))
            txn.update_state(cursor=f"c{i}", model_ref=f"m{i}")
    return store


@pytest.mark.parametrize(
    "argv",
    [
        ["dryrun", "CFG", "--workers", "8", "workdir=/x", "train.epochs=2"],
        ["dryrun", "CFG", "workdir=/x", "--workers", "8", "train.epochs=2"],
        ["dryrun", "CFG", "workdir=/x", "train.epochs=2", "--workers", "8"],
        ["train", "CFG", "--backend", "local", "workdir=/x", "train.epochs=2"],
    ],
)
def test_overrides_before_or_after_flags(argv: list[str]) -> None:
    args = cli.parse_args(argv)
    assert args.config == "CFG"
    assert args.overrides == ["workdir=/x", "train.epochs=2"]


@pytest.mark.parametrize(
    "argv",
    [["dryrun", "CFG", "--bogus"], ["env", "workdir=/x"], ["dryrun", "CFG", "--workers", "x"]],
)
def test_unknown_arguments_are_usage_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.parse_args(argv)
    assert info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_unexpected_exception_is_one_line_and_a_log(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(_args: object) -> int:
        raise RuntimeError("reader exploded\nsecond line")

    monkeypatch.setattr(cli, "cmd_env", boom)
    monkeypatch.setenv("TWINS_LOG_DIR", str(tmp_path / "logs"))
    rc, _out, err = _run(capsys, "env")
    assert rc == 1
    lines = err.strip().splitlines()
    assert lines[0] == "twins: error: unexpected RuntimeError: reader exploded"
    assert "Traceback" not in err and len(lines) == 2
    (log,) = (tmp_path / "logs").glob("twins-error-*.log")
    assert str(log) in lines[1]
    text = log.read_text()
    assert "Traceback" in text and "reader exploded" in text and text.startswith("twins env")


def test_log_falls_back_when_the_log_dir_is_unwritable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("TWINS_LOG_DIR", str(tmp_path / "file" / "logs"))  # under a file
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr("tempfile.tempdir", None)
    monkeypatch.setattr(cli, "cmd_env", lambda _a: 1 / 0)
    rc, _out, err = _run(capsys, "env")
    assert rc == 1 and "ZeroDivisionError" in err
    assert list((tmp_path / "tmp").glob("twins-error-*.log"))


@pytest.mark.parametrize("cmd", ["update", "simulate", "status", "history", "rollback"])
def test_twin_command_on_a_missing_twin_exits_4(
    cmd: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "nonexistent")
    rc, _out, err = _run(capsys, "twin", cmd, missing, "--data", "x.nc")
    assert rc == 4, err
    assert missing in err and "Traceback" not in err


def test_twin_history_lists_every_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = _store(tmp_path)
    rc, out, _err = _run(capsys, "twin", "history", str(store.path))
    assert rc == 0
    lines = out.strip().splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["v0", "init"],
        ["v1", "update"],
        ["v2", "update"],
        ["v3", "update"],
    ]
    rc, out, _err = _run(capsys, "twin", "history", str(store.path), "--json")
    assert [json.loads(line)["cursor_after"] for line in out.splitlines()] == [
        "c0",
        "c1",
        "c2",
        "c3",
    ]


def test_twin_rollback_restores_and_refuses_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dir_snapshot
) -> None:
    store = _store(tmp_path)
    rc, out, err = _run(capsys, "twin", "rollback", str(store.path), "--to", "1")
    assert rc == 0, err
    assert json.loads(out) == {
        "version": 4,
        "noop": False,
        "cursor": "c1",
        "action": "restore",
        "key": "restore:v1:at-v3",
        "model_ref": "m1",
        "restored": 1,
        "undone": [2, 3],
    }
    assert store.product_path("p.txt").read_text() == "1"
    rc, out, _err = _run(capsys, "twin", "history", str(store.path))
    assert out.strip().splitlines()[-1].split()[:2] == ["v4", "restore"]
    assert "(restores v1)" in out
    before = dir_snapshot(store.path, skip_lock=True)
    for bad in ("9", "4"):
        rc, _out, err = _run(capsys, "twin", "rollback", str(store.path), "--to", bad)
        assert rc == 4 and "Traceback" not in err and str(store.path) in err
    with pytest.raises(SystemExit):
        cli.main(["twin", "rollback", str(store.path)])  # --to is required
    assert dir_snapshot(store.path, skip_lock=True) == before


def test_twin_of_a_domain_not_installed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The core still shows, lists and restores it; updating it is a twin error naming the
    domain; init needs a known --kind."""
    store = _store(tmp_path)
    rc, out, _err = _run(capsys, "twin", "status", str(store.path))
    assert rc == 0 and "nodomain" in out
    rc, _out, err = _run(capsys, "twin", "update", str(store.path), "--data", "x.nc")
    assert rc == 4 and "'nodomain'" in err and "Traceback" not in err
    rc, _out, err = _run(capsys, "twin", "init", str(tmp_path / "new"), "--kind", "nope")
    assert rc == 4 and "'nope'" in err and not (tmp_path / "new").exists()
