"""``twins launch slurm CONFIG --kind array``: a job array running a twins command per input."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from twins.errors import ConfigError
from twins.launch.array import command_words, read_inputs
from twins.launch.cli import register
from twins.launch.models import SlurmConfig
from twins.launch.slurm import render_sbatch

SHELLCHECK = shutil.which("shellcheck") or shutil.which(
    "shellcheck", path=str(Path(sys.executable).parent)
)


def _run(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="twins")
    register(p.add_subparsers(dest="cmd", required=True))
    args = p.parse_args(argv)
    return int(args.func(args))


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A config that only names the job and its site settings."""
    path = tmp_path / "site.yaml"
    path.write_text("name: o3-clean\nlaunch:\n  slurm:\n    partition: virgo\n")
    return path


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    path = tmp_path / "segments.txt"
    path.write_text("# frames of O3b\n/data/V-V1-1000-32.gwf\n\n/data/with space/b.gwf\n")
    return path


def test_array_script_lists_inputs_and_runs_the_command(
    site: Path, inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cmd = "gravwave clean --cleaner cascade.pt --out 'cleaned dir'"
    argv = ["launch", "slurm", str(site), "--kind", "array", "--inputs", str(inputs)]
    assert _run([*argv, "--command", cmd, "--array-limit", "4", "--mem", "6G"]) == 0
    text = capsys.readouterr().out
    assert "#SBATCH --array=0-1%4" in text and "#SBATCH --job-name=twins-o3-clean-array" in text
    assert "#SBATCH --output=twins-%x-%A_%a.out" in text  # one log per task
    assert "#SBATCH --mem=6G" in text and "#SBATCH --time=01:00:00" in text
    assert "#SBATCH --partition=virgo" in text and "# dry run" not in text
    assert "    '/data/with space/b.gwf'\n" in text
    assert (
        "python3 -m twins gravwave clean --cleaner cascade.pt --out 'cleaned dir' \"$input\""
        in text
    )
    script = tmp_path / "job.sbatch"
    script.write_text(text)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    if SHELLCHECK:
        sc = subprocess.run([SHELLCHECK, str(script)], capture_output=True, text=True)
        assert sc.returncode == 0, sc.stdout


def test_each_task_runs_its_input_in_place_of_the_placeholder(tmp_path: Path) -> None:
    """The script run as task 1 (``python`` replaced by ``echo``): the input is one word."""
    slurm = SlurmConfig(python="echo", time="00:10:00", mem="1G")
    script = render_sbatch(
        "array",
        "site.yaml",
        slurm,
        inputs=["/d/a.gwf", "/d/with space/b.gwf"],
        command="twins twin update /t --data={input} --wait",
    )
    path = tmp_path / "job.sbatch"
    path.write_text(script)
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "1"}
    proc = subprocess.run(["bash", str(path)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "array task 1 of 2: /d/with space/b.gwf"
    assert lines[1] == "-m twins twin update /t --data=/d/with space/b.gwf --wait"
    assert '--data="$input"' in script  # one word however the input is spelt


def test_array_refusals(site: Path, inputs: Path, tmp_path: Path) -> None:
    base = ["launch", "slurm", str(site), "--kind", "array"]
    with pytest.raises(ConfigError, match="needs --inputs LIST and --command"):
        _run([*base, "--inputs", str(inputs)])
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n\n")
    with pytest.raises(ConfigError, match="empty.txt lists no inputs"):
        _run([*base, "--inputs", str(empty), "--command", "gravwave clean"])
    with pytest.raises(ConfigError, match="missing.txt not found"):
        read_inputs(tmp_path / "missing.txt")
    with pytest.raises(ConfigError, match="No closing quotation"):
        command_words("gravwave clean --out 'x")
    with pytest.raises(ConfigError, match="needs the command"):
        command_words("twins")
    with pytest.raises(ConfigError, match="needs inputs"):
        render_sbatch("array", "c.yaml", SlurmConfig(), command="gravwave clean")
    with pytest.raises(ConfigError, match="launch.slurm.array_limit"):
        limit = ["launch", "slurm", str(site), "launch.slurm.array_limit=0", "--kind", "array"]
        _run([*limit, "--inputs", str(inputs), "--command", "x"])
    with pytest.raises(SystemExit):  # argparse: --kind array is a Slurm kind only
        _run(["launch", "k8s", str(site), "--kind", "array"])
    with pytest.raises(ValueError, match="--array is derived"):
        SlurmConfig(sbatch_extra=["--array=0-3"])
