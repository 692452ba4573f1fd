"""The container pipeline: every command that can run here does (syntax, consistency)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "ci" / "pipeline.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(PIPELINE), *args], capture_output=True, text=True, timeout=120
    )


def test_local_checks_pass() -> None:
    proc = run("--check")
    assert proc.returncode == 0, proc.stderr
    assert "0 problem(s)" in proc.stderr


def test_dry_run_lists_build_test_convert() -> None:
    lines = run("--dry-run", "--variant", "cu128", "--tag", "twins:gpu").stdout.splitlines()
    assert lines[0].startswith("docker build -t twins:gpu --build-arg TORCH_VARIANT=cu128")
    assert "-m pytest" in lines[1] and lines[2].startswith("apptainer build --force twins.sif")
    assert lines[3] == "apptainer test twins.sif"


@pytest.mark.skipif(shutil.which("apptainer") is not None, reason="apptainer is installed")
def test_run_without_engines_says_what_is_missing() -> None:
    proc = run("--run")
    assert proc.returncode == 2 and "is not installed here" in proc.stderr


def test_check_catches_a_broken_dockerfile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("ci_pipeline", PIPELINE)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for name in ("Dockerfile", "apptainer.def", "README.md"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    (tmp_path / ".ci").mkdir()
    (tmp_path / "scripts").mkdir()
    (tmp_path / ".ci" / "run").write_text("#!/bin/bash\nif [ x; then\n")
    (tmp_path / "scripts" / "setup.sh").write_text("#!/bin/bash\necho ok\n")
    monkeypatch.setattr(mod, "ROOT", tmp_path)
    problems = mod.check()
    assert any(p.startswith("run: bash -n") for p in problems)
    assert any("COPY source 'twins' does not exist" in p for p in problems)
