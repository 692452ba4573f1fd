"""Corpus of bad run configs, tried as a user would: ``twins train CONFIG [overrides]``.

Each case is refused with one line naming the config file (or the override) and the key,
exit 2 (exit 3 where the config is valid but names data that do not exist), no traceback, and
nothing written: the current directory, where the default ``workdir: runs`` lands, stays as it
was (no ``runs/<name>/`` left behind).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hydrology.synthetic import generate, write_netcdf

#: Appended to configs whose refusal is about another section: should a gate be missing,
#: the run that starts is one step of the toy task, untracked and unmetered.
QUIET = "tracking: {enabled: false}\nenergy: {enabled: false}\n"
SHORT = "train: {epochs: 1, max_steps_per_epoch: 1, progress: false}\n"
NOISE = "task:\n  target: gravwave.task:NoiseCleaning\n  params:\n"
DROUGHT = "task:\n  target: hydrology.task:DroughtForecast\n  params:\n"


def _bomb(levels: int = 9, width: int = 9) -> str:
    """A "billion laughs" document: ``width**levels`` strings once aliases are expanded,
    placed in the free-form ``task.params`` of the toy task."""
    lines = ['    l0: &l0 "lol"']
    for i in range(1, levels + 1):
        refs = ", ".join([f"*l{i - 1}"] * width)
        lines.append(f"    l{i}: &l{i} [{refs}]")
    return "task:\n  params:\n    bomb:\n" + "\n".join("  " + ln for ln in lines) + "\n"


def _deep(levels: int = 100) -> str:
    return "task:\n  params:\n    deep: " + "[" * levels + "]" * levels + "\n"


@dataclass(frozen=True)
class Bad:
    """One refused config.

    Attributes:
        id: Test id.
        text: The config file's content (``None``: no file is written).
        names: What the error line must name besides the file (a tuple: any of).
        overrides: Command-line arguments after the config (flags and ``key=value``).
        code: Expected exit code.
        file: Whether the error line must name the config file.
        setup: Prepares the current directory (e.g. a file where ``workdir`` points).
    """

    id: str
    text: str | bytes | None
    names: tuple[str | tuple[str, ...], ...] = ()
    overrides: tuple[str, ...] = ()
    code: int = 2
    file: bool = True
    setup: Callable[[Path], None] | None = None


def _file_at(rel: str) -> Callable[[Path], None]:
    def make(cwd: Path) -> None:
        target = cwd / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("I am a file, not a directory\n")

    return make


def _bytes_at(rel: str, content: bytes) -> Callable[[Path], None]:
    def make(cwd: Path) -> None:
        target = cwd / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)

    return make


def _netcdf_without_tp(rel: str) -> Callable[[Path], None]:
    """Daily 2000-2007 (the tiny preset's splits) whose precipitation is called ``rainfall``
    (not a known name: ``precip`` is GPCC's and reads as ``tp``): the only thing wrong is
    the missing ``tp``."""

    def make(cwd: Path) -> None:
        target = cwd / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        time = pd.date_range("2000-01-01", "2007-12-31")
        precip = xr.DataArray(
            np.ones((time.size, 2, 2), np.float32),
            coords={"time": time, "lat": [49.0, 49.1], "lon": [5.0, 5.1]},
            dims=("time", "lat", "lon"),
            attrs={"units": "mm"},
        )
        xr.Dataset({"rainfall": precip}).to_netcdf(target)

    return make


def _tiny_negative_tp(rel: str) -> Callable[[Path], None]:
    """The tiny preset's daily record with ``tp`` = -5 mm/day at every land cell-day."""

    def make(cwd: Path) -> None:
        ds = generate("tiny").drop_vars(["drought_forcing", "drought_mask"])
        land = (ds["lsm"] > 0.5).broadcast_like(ds["tp"])
        ds["tp"] = xr.where(land, np.float32(-0.005), ds["tp"]).assign_attrs(ds["tp"].attrs)
        write_netcdf(ds, cwd / rel)

    return make


CASES: list[Bad] = [
    # -- not a usable document
    Bad("empty-file", b""),
    Bad("comment-only", "# a run config, to be written\n\n   \n# later\n"),
    Bad("null-document", "~\n"),
    Bad("list-document", "- name: a\n- name: b\n"),
    Bad("scalar-document", "just some words\n"),
    Bad("two-documents", "name: a\n---\nname: b\n"),
    Bad("latin-1-byte", "name: run\n# caf\xe9 au lait\n".encode("latin-1")),
    Bad("control-character", "name: run\x07\n"),
    Bad("syntax-unclosed-bracket", "train:\n  epochs: [1, 2\n"),
    Bad("tab-indentation", "train:\n\tepochs: 2\n"),
    Bad("duplicate-top-level-train", "train:\n  epochs: 1\ntrain:\n  epochs: 2\n", ("train",)),
    Bad(
        "duplicate-nested-key", "train:\n  epochs: 1\n  batch_size: 8\n  epochs: 3\n", ("epochs",)
    ),
    Bad("alias-bomb-in-task-params", _bomb()),
    Bad("recursive-alias", "task:\n  params: &p\n    again: *p\n"),
    Bad("nesting-100-deep", _deep()),
    # -- unknown keys and wrong types in the core sections
    Bad("unknown-top-level-key", "trian:\n  epochs: 2\n", ("trian",)),
    Bad("unknown-nested-key", "train:\n  epoch: 2\n", ("train.epoch",)),
    Bad("section-is-a-number", "train: 3\n", ("train",)),
    Bad("epochs-a-word", "train:\n  epochs: five\n", ("train.epochs",)),
    Bad("epochs-fractional", "train:\n  epochs: 2.5\n", ("train.epochs",)),
    Bad("epochs-zero", "train:\n  epochs: 0\n", ("train.epochs",)),
    Bad("batch-size-negative", "train:\n  batch_size: -8\n", ("train.batch_size",)),
    Bad("lr-infinite", "train:\n  optimizer:\n    lr: .inf\n", ("train.optimizer.lr",)),
    Bad("lr-a-word", "train:\n  optimizer:\n    lr: fast\n", ("train.optimizer.lr",)),
    Bad(
        "scheduler-unknown", "train:\n  scheduler:\n    name: linear\n", ("train.scheduler.name",)
    ),
    Bad("seed-negative", "seed: -1\n", ("seed",)),
    Bad("seed-above-2-62", f"seed: {2**63}\n", ("seed",)),
    Bad("name-escapes-workdir", "name: ../escape\n", ("name",)),
    Bad("name-dot-dot", "name: '..'\n", ("name",)),
    Bad("backend-unknown", "distributed:\n  backend: mpi\n", ("distributed.backend",)),
    Bad("tracking-enabled-maybe", "tracking:\n  enabled: maybe\n", ("tracking.enabled",)),
    Bad(
        "energy-watts-negative",
        "energy:\n  estimate_watts_per_core: -5\n",
        ("energy.estimate_watts_per_core",),
    ),
    # -- the task reference and typed task parameters
    Bad("target-without-colon", "task:\n  target: twins.examples.toy\n", ("task.target",)),
    Bad("target-module-missing", "task:\n  target: nosuchpkg.tasks:Task\n", ("task.target",)),
    Bad(
        "target-attribute-missing", "task:\n  target: twins.examples.toy:Nope\n", ("task.target",)
    ),
    Bad("target-not-a-task", "task:\n  target: os.path:join\n", ("task.target",)),
    Bad("toy-param-typo", "task:\n  params:\n    lenght: 512\n", ("task.params.lenght",)),
    Bad("toy-param-out-of-range", "task:\n  params:\n    ar: 1.5\n", ("task.params.ar",)),
    Bad(
        "noise-synthetic-typo-durration",
        NOISE + "    synthetic:\n      durration: 64\n" + QUIET + SHORT,
        ("task.params.synthetic.durration",),
    ),
    Bad(
        "noise-synthetic-duration-a-word",
        NOISE + "    synthetic:\n      duration: long\n" + QUIET + SHORT,
        ("task.params.synthetic.duration",),
    ),
    Bad(
        "noise-even-kernel",
        NOISE + "    synthetic: {duration: 64}\n    kernel_size: 4\n" + QUIET + SHORT,
        ("task.params.kernel_size",),
    ),
    Bad(
        "drought-param-typo",
        DROUGHT + "    presett: tiny\n" + QUIET + SHORT,
        ("task.params.presett",),
    ),
    Bad(
        "drought-seq-len-a-word",
        DROUGHT + "    seq_len: twelve\n" + QUIET + SHORT,
        ("task.params.seq_len",),
    ),
    # -- data named by the config that do not exist (a data error, exit 3)
    Bad(
        "drought-path-matches-nothing",
        DROUGHT + "    path: /nonexistent-era5land/era5land_*.nc\n" + QUIET + SHORT,
        ("era5land_*.nc",),
        code=3,
        file=False,
    ),
    Bad(
        "noise-path-missing",
        NOISE + "    path: /nonexistent-virgo/V-SEG-0.h5\n" + QUIET + SHORT,
        ("V-SEG-0.h5",),
        code=3,
        file=False,
    ),
    Bad(
        "drought-path-zero-length-file",
        DROUGHT + "    path: data/era5land_2000.nc\n" + QUIET + SHORT,
        ("era5land_2000.nc",),
        code=3,
        file=False,
        setup=_bytes_at("data/era5land_2000.nc", b""),
    ),
    Bad(
        "drought-path-without-tp",
        DROUGHT + "    path: data/era5land_2000.nc\n" + QUIET + SHORT,
        ("era5land_2000.nc", "tp"),
        code=3,
        file=False,
        setup=_netcdf_without_tp("data/era5land_2000.nc"),
    ),
    Bad(
        "drought-path-negative-tp",
        DROUGHT + "    path: data/era5land_2000-2007.nc\n" + QUIET + SHORT,
        ("era5land_2000-2007.nc", "tp"),
        code=3,
        file=False,
        setup=_tiny_negative_tp("data/era5land_2000-2007.nc"),
    ),
    Bad(
        "noise-path-zero-length-file",
        NOISE + "    path: data/V-SEG-0.h5\n" + QUIET + SHORT,
        ("V-SEG-0.h5",),
        code=3,
        file=False,
        setup=_bytes_at("data/V-SEG-0.h5", b""),
    ),
    Bad(
        "noise-band-above-nyquist",
        NOISE + "    synthetic: {duration: 64}\n    band: [[3000, 3100]]\n" + QUIET + SHORT,
        ("task.params.band",),
    ),
    Bad(
        "noise-synthetic-and-path",
        NOISE + "    synthetic: {duration: 64}\n    path: data/V-SEG-0.h5\n" + QUIET + SHORT,
        ("task.params",),
    ),
    Bad("python-object-tag", "name: !!python/object/apply:os.getcwd []\n"),
    # -- where the run would be written
    Bad(
        "workdir-is-a-file",
        "workdir: results\n" + QUIET + SHORT,
        ("workdir",),
        file=False,
        setup=_file_at("results"),
    ),
    Bad(
        "workdir-below-a-file",
        "workdir: results/today\n" + QUIET + SHORT,
        ("workdir",),
        file=False,
        setup=_file_at("results"),
    ),
    Bad(
        "run-dir-is-a-file",
        "name: exp1\nworkdir: results\n" + QUIET + SHORT,
        ("workdir",),
        file=False,
        setup=_file_at("results/exp1"),
    ),
    # -- overrides (given after the flags, as the README allows)
    Bad(
        "override-wrong-type",
        QUIET + SHORT,
        ("train.epochs=abc",),
        ("--backend", "local", "train.epochs=abc"),
        file=False,
    ),
    Bad("override-unknown-key", QUIET + SHORT, ("train.epoch",), ("train.epoch=3",), file=False),
    Bad("override-empty-key", QUIET + SHORT, ("=3",), ("=3",), file=False),
    Bad("override-into-a-value", QUIET + SHORT, ("name",), ("name.x=1",), file=False),
    Bad(
        "override-lr-nan",
        QUIET + SHORT,
        ("train.optimizer.lr=.nan",),
        ("train.optimizer.lr=.nan",),
        file=False,
    ),
    # -- the config file itself
    Bad("config-missing", None),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_config_is_refused(
    case: Bad, workdir: Path, tmp_path: Path, refuse: Callable[..., str]
) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    config = configs / f"{case.id}.yaml"
    if isinstance(case.text, bytes):
        config.write_bytes(case.text)
    elif case.text is not None:
        config.write_text(case.text, encoding="utf-8")
    if case.setup is not None:
        case.setup(workdir)
    names = [config.name, *case.names] if case.file else list(case.names)
    refuse(["train", config, *case.overrides], case.code, names, [workdir, configs])


def test_config_that_is_a_directory(
    workdir: Path, tmp_path: Path, refuse: Callable[..., str]
) -> None:
    folder = tmp_path / "run.yaml"
    folder.mkdir()
    refuse(["train", folder], 2, ["run.yaml"], [workdir, folder])


@pytest.mark.parametrize("command", ["config", "dryrun"])
def test_other_commands_read_configs_the_same_way(
    command: str, workdir: Path, tmp_path: Path, refuse: Callable[..., str]
) -> None:
    """``twins config`` and ``twins dryrun`` refuse what ``twins train`` refuses."""
    config = tmp_path / "dup.yaml"
    config.write_text("train:\n  epochs: 1\ntrain:\n  epochs: 2\n")
    refuse([command, config], 2, ["dup.yaml", "train"], [workdir])
