"""A corpus of bad configs and overrides, each tried as ``twins config`` and ``twins train``:
exit code 2, one ``twins: error:`` line naming the file (or override) and the culprit, no
traceback, and a workdir left byte-identical. A valid config is accepted afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from twins.cli import main
from twins.config.load import read_yaml
from twins.errors import ConfigError

NOISE = (
    "name: n\n"
    "task:\n"
    "  target: gravwave.task:NoiseCleaning\n"
    "  params:\n"
    "    synthetic: {duration: 24, sample_rate: 1024, n_distractors: 1}\n"
    "    sample_rate: 1024\n"
    "    window: 4.0\n"
    "    widths: [4, 8]\n"
    "    loss_fftlength: 1.0\n"
    "    loss_overlap: 0.5\n"
)

BOMB = "".join(
    f"    l{k}: &l{k} [{', '.join(['lol' if k == 0 else f'*l{k - 1}'] * 9)}]\n" for k in range(9)
)

# (case id, file bytes, overrides, fragments the error line must contain; "{cfg}" is the
# config's path)
FILE_CASES: list[tuple[str, bytes, list[str], list[str]]] = [
    ("empty", b"", [], ["{cfg}: the config file is empty (0 bytes)"]),
    ("comments-only", b"# a comment\n\n   \n# another\n", [], ["{cfg}: the config holds no"]),
    ("null-document", b"~\n", [], ["{cfg}: the config holds no settings"]),
    (
        "duplicate-section",
        b"train:\n  epochs: 2\nname: a\ntrain:\n  batch_size: 3\n",
        [],
        ["{cfg} at line 4: duplicate key train at lines 1 and 4"],
    ),
    (
        "duplicate-nested-key",
        b"train:\n  optimizer:\n    lr: 0.1\n    name: sgd\n    lr: 0.2\n",
        [],
        ["{cfg} at line 5: duplicate key train.optimizer.lr at lines 3 and 5"],
    ),
    (
        "latin-1-byte",
        b"name: a\nseed: 1\ntracking:\n  experiment: caf\xe9\n",
        [],
        ["{cfg} at line 4: not UTF-8 text (byte 0xe9 at byte offset 43)"],
    ),
    ("nul-byte", b"name: a\x00\n", [], ["{cfg} at line 1: unacceptable character #x0000"]),
    ("alias-bomb", b"task:\n  params:\n" + BOMB.encode(), [], ["{cfg} at line 8:", "alias bomb"]),
    ("recursive-alias", b"task:\n  params: &p {x: *p}\n", [], ["{cfg} at line 2: alias *p"]),
    ("too-deep", b"a: " + b"[" * 80 + b"]" * 80 + b"\n", [], ["{cfg} at line 1: nesting deeper"]),
    ("python-tag", b"name: !!python/name:os.system\n", [], ["{cfg} at line 1: not valid YAML"]),
    ("two-documents", b"name: a\n---\nname: b\n", [], ["{cfg} at line 2: not valid YAML"]),
    ("syntax", b"train: [\n", [], ["{cfg} at line 2: not valid YAML"]),
    ("a-list", b"- name: a\n", [], ["{cfg}: expected a mapping of sections, got list"]),
    ("a-scalar", b"just text\n", [], ["{cfg}: expected a mapping of sections, got str"]),
    ("section-is-list", b"train: [1, 2]\n", [], ["{cfg}: train: Input should be a valid dict"]),
    ("section-is-scalar", b"energy: 3\n", [], ["{cfg}: energy: Input should be a valid dict"]),
    ("wrong-type", b"train:\n  epochs: three\n", [], ["{cfg}: train.epochs:", "'three'"]),
    ("infinite-lr", b"train:\n  optimizer: {lr: .inf}\n", [], ["train.optimizer.lr:", "finite"]),
    ("unknown-key", b"trian:\n  epochs: 2\n", [], ["{cfg}: trian: unknown key"]),
    ("name-escapes-workdir", b"name: ..\n", [], ["{cfg}: name:", "outside workdir"]),
    ("negative-seed", b"seed: -1\n", [], ["{cfg}: seed: Input should be greater than"]),
    ("seed-overflows-torch", b"seed: 36893488147419103232\n", [], ["{cfg}: seed:"]),
    ("monitor-never-computed", b"train: {monitor: val_acc}\n", [], ["{cfg}: train.monitor:"]),
    ("path-a-list", b"energy: {rapl_root: [a, b]}\n", [], ["{cfg}: energy.rapl_root:"]),
    (
        "target-missing-module",
        b"task: {target: 'no_such_pkg.mod:Task'}\n",
        [],
        ["{cfg}: task.target: cannot import 'no_such_pkg.mod'"],
    ),
    (
        "target-missing-attribute",
        b"task: {target: 'twins.examples.toy:Nope'}\n",
        [],
        ["{cfg}: task.target: module 'twins.examples.toy' has no 'Nope'"],
    ),
    (
        "target-not-a-task",
        b"task: {target: 'os:path'}\n",
        [],
        ["{cfg}: task.target: 'os:path' is not a task class"],
    ),
    (
        "target-relative",
        b"task: {target: '.toy:ToyRegression'}\n",
        [],
        ["{cfg}: task.target: importing '.toy' failed"],
    ),
    ("target-no-colon", b"task: {target: twins.examples.toy}\n", [], ["{cfg}: task.target:"]),
    ("params-a-list", b"task: {params: [1]}\n", [], ["{cfg}: task.params: Input should be"]),
    ("toy-param-typo", b"task: {params: {windw: 3}}\n", [], ["{cfg}: task.params.windw: unknown"]),
    (
        "noise-synthetic-typo",
        NOISE.replace("duration: 24", "durration: 24").encode(),
        [],
        ["{cfg}: task.params.synthetic.durration: unknown key"],
    ),
    (
        "noise-window-not-multiple-of-stride",
        NOISE.replace("window: 4.0", "window: 3.3").encode(),
        [],
        ["{cfg}: task.params:", "window 3.3 s"],
    ),
    (
        "noise-band-above-nyquist",
        NOISE.encode() + b"    band: [[500, 600]]\n",
        [],
        ["{cfg}: task.params.band:", "Nyquist (512.0 Hz)"],
    ),
    (
        "noise-even-kernel",
        NOISE.encode() + b"    kernel_size: 4\n",
        [],
        ["{cfg}: task.params.kernel_size:", "odd"],
    ),
    (
        "noise-loss-average",
        NOISE.encode() + b"    loss_average: mode\n",
        [],
        ["{cfg}: task.params.loss_average:", "'mode'"],
    ),
    ("bad-override-no-equals", b"name: a\n", ["train.epochs"], ["bad override 'train.epochs'"]),
    ("bad-override-no-key", b"name: a\n", ["=3"], ["bad override '=3'"]),
    ("bad-override-empty-part", b"name: a\n", ["train..epochs=1"], ["bad override 'train..epo"]),
    ("override-into-scalar", b"name: a\n", ["name.x=1"], ["'name.x=1': name is not a section"]),
    (
        "override-into-scalar-from-file",
        b"train: {epochs: 2}\n",
        ["train.epochs.x=1"],
        ["'train.epochs.x=1': train.epochs is not a section"],
    ),
    ("override-bad-yaml", b"name: a\n", ["train.epochs=["], ["'train.epochs=[': value is not"]),
    ("override-section-scalar", b"name: a\n", ["train=3"], ["override 'train=3': train:"]),
    ("override-wrong-type", b"name: a\n", ["seed=x"], ["override 'seed=x': seed:"]),
    ("override-nan", b"name: a\n", ["train.optimizer.lr=.nan"], ["'train.optimizer.lr=.nan'"]),
    ("override-recursive", b"name: a\n", ["task.params.x=&a [*a]"], ["alias *a refers"]),
    (
        "override-noise-typo",
        NOISE.encode(),
        ["task.params.synthetic.durration=3"],
        ["override 'task.params.synthetic.durration=3': task.params.synthetic.durration"],
    ),
]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``twins ARGV`` in this process: ``(exit code, stderr)``."""
    rc = main(argv)
    return rc, capsys.readouterr().err


def assert_one_error_line(err: str, fragments: list[str]) -> None:
    errors = [line for line in err.splitlines() if line.startswith("twins: error: ")]
    assert len(errors) == 1, err
    assert "Traceback" not in err and "unexpected" not in err, err
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A workdir that already holds an earlier run (which must survive every refusal)."""
    wd = tmp_path / "wd"
    (wd / "earlier").mkdir(parents=True)
    (wd / "earlier" / "summary.json").write_text("{}")
    return wd


@pytest.mark.parametrize(
    ("text", "overrides", "fragments"),
    [pytest.param(t, o, f, id=i) for i, t, o, f in FILE_CASES],
)
@pytest.mark.parametrize("command", ["config", "train"])
def test_bad_config_is_one_line_exit_2(
    tmp_path: Path,
    workdir: Path,
    dir_snapshot: Callable[..., dict[str, object]],
    capsys: pytest.CaptureFixture[str],
    command: str,
    text: bytes,
    overrides: list[str],
    fragments: list[str],
) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_bytes(text)
    before = dir_snapshot(workdir)
    rc, err = run_cli([command, str(cfg), *overrides, f"workdir={workdir}"], capsys)
    assert rc == 2, err
    assert_one_error_line(err, [f.replace("{cfg}", str(cfg)) for f in fragments])
    assert dir_snapshot(workdir) == before


@pytest.mark.parametrize("command", ["config", "train"])
def test_bad_config_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    cases = [
        (tmp_path, f"config file {tmp_path} is a directory, expected a YAML file"),
        (tmp_path / "none.yaml", f"config file {tmp_path / 'none.yaml'} not found"),
        (Path(os.devnull), f"config file {os.devnull} is not a regular file"),
    ]
    for path, expected in cases:
        rc, err = run_cli([command, str(path)], capsys)
        assert rc == 2, err
        assert_one_error_line(err, [expected])


def test_unreadable_and_oversized_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text("name: a\n" * 20)  # 160 bytes
    monkeypatch.setattr("twins.config.load.MAX_FILE_BYTES", 100)
    with pytest.raises(ConfigError, match=r"run.yaml: larger than 100 bytes"):
        read_yaml(cfg)
    monkeypatch.undo()

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    # chmod 000 does not stop root, who runs some of our CI: make open() fail instead
    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(ConfigError, match=r"run.yaml: cannot read \(Permission denied\)$"):
        read_yaml(cfg)


def test_workdir_that_is_a_file(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    dir_snapshot: Callable[..., dict[str, object]],
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    cfg = tmp_path / "run.yaml"
    cfg.write_text("name: a\ntrain: {epochs: 1}\ntracking: {enabled: false}\n")
    before = dir_snapshot(tmp_path)
    for workdir in (afile, afile / "below"):
        rc, err = run_cli(["train", str(cfg), f"workdir={workdir}"], capsys)
        assert rc == 2, err
        assert_one_error_line(err, ["workdir: ", f"{afile} exists and is not a directory"])
    (tmp_path / "wd").mkdir()
    (tmp_path / "wd" / "a").write_text("a file where the run directory goes")
    before = dir_snapshot(tmp_path)
    rc, err = run_cli(["train", str(cfg), f"workdir={tmp_path / 'wd'}"], capsys)
    assert rc == 2, err
    assert_one_error_line(err, [f"workdir: the run directory {tmp_path / 'wd' / 'a'}"])
    assert dir_snapshot(tmp_path) == before


def test_valid_config_accepted_after_the_refusals(
    tmp_path: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "# a valid config with an anchor, a comment and UTF-8 text\n"
        "name: ok\n"
        "train: {epochs: &n 1, checkpoint_every: *n, progress: false}\n"
        "task: {params: {length: 300}}\n"
        "tracking: {enabled: false, experiment: café}\n"
        "energy: {enabled: false}\n"
    )
    rc, err = run_cli(["config", str(cfg)], capsys)
    assert rc == 0, err
    rc, err = run_cli(["train", str(cfg), f"workdir={workdir}"], capsys)
    assert rc == 0, err
    assert (workdir / "ok" / "model.pt").is_file() and (workdir / "earlier").is_dir()


def test_real_process_refuses_bomb_and_latin_1(tmp_path: Path) -> None:
    """The console entry point itself (not just ``main``) prints one line and exits 2."""
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("task:\n  params:\n" + BOMB)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"name: caf\xe9\n")
    for cfg, expected in [(bomb, "alias bomb"), (latin, "not UTF-8 text (byte 0xe9")]:
        proc = subprocess.run(
            [sys.executable, "-m", "twins", "config", str(cfg)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2, proc.stderr
        assert_one_error_line(proc.stderr, [str(cfg), expected])
