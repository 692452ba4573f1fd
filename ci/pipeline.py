"""Container CI pipeline: build the image, run the test suite inside it, convert it to SIF.

The steps are plain commands (Docker, Apptainer) so any runner can execute them: GitHub
Actions, GitLab CI, a Dagger function wrapping each as ``container.with_exec``, or a shell
on an HPC login node. They need a Docker engine and Apptainer, which the development
machines lack; ``--check`` runs everything that can run without them (script syntax,
shellcheck, Dockerfile and Apptainer definition consistency) and the test suite checks it.

Usage::

    python ci/pipeline.py --dry-run            # print the commands
    python ci/pipeline.py --check              # local checks only
    python ci/pipeline.py --run [--variant cu128] [--tag twins:ci]
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("ci.pipeline")


def steps(tag: str = "twins:cpu", variant: str = "cpu", sif: str = "twins.sif") -> list[list[str]]:
    """The pipeline's commands, in order.

    Args:
        tag: Image tag to build.
        variant: torch wheel variant (``cpu`` or a CUDA tag such as ``cu128``).
        sif: Apptainer image to write.
    """
    return [
        ["docker", "build", "-t", tag, "--build-arg", f"TORCH_VARIANT={variant}", str(ROOT)],
        [
            "docker",
            "run",
            "--rm",
            "-e",
            "CI=true",
            "-e",
            "OMP_WAIT_POLICY=PASSIVE",
            "--entrypoint",
            "python",
            tag,
            "-m",
            "pytest",
            "-q",
            "-m",
            "not slurm",
        ],
        ["apptainer", "build", "--force", sif, str(ROOT / "apptainer.def")],
        ["apptainer", "test", sif],
    ]


def check() -> list[str]:
    """Checks that need no container engine; returns the problems found (empty = fine)."""
    problems: list[str] = []
    for script in (ROOT / ".ci" / "run", ROOT / "scripts" / "setup.sh"):
        proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        if proc.returncode:
            problems.append(f"{script.name}: bash -n: {proc.stderr.strip()}")
        if shutil.which("shellcheck"):
            proc = subprocess.run(
                ["shellcheck", "-S", "warning", str(script)], capture_output=True, text=True
            )
            if proc.returncode:
                problems.append(f"{script.name}: shellcheck: {proc.stdout.strip()}")
    dockerfile = (ROOT / "Dockerfile").read_text()
    for src in re.findall(r"^COPY\s+(.+?)\s+\S+\s*$", dockerfile, flags=re.M):
        for part in src.split():
            if not (ROOT / part).exists():
                problems.append(f"Dockerfile: COPY source {part!r} does not exist")
    if "torch==2.13.0" not in dockerfile:
        problems.append("Dockerfile: torch is not pinned to the project's version (2.13.0)")
    definition = (ROOT / "apptainer.def").read_text()
    match = re.search(r"^From:\s*(\S+)", definition, flags=re.M)
    built = steps()[0][3]
    if not match or match.group(1) != built:
        problems.append(f"apptainer.def: From: should be the image the pipeline builds ({built})")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--dry-run", action="store_true", help="print the commands")
    mode.add_argument("--check", action="store_true", help="run the local checks")
    mode.add_argument("--run", action="store_true", help="run the pipeline (Docker, Apptainer)")
    ap.add_argument("--tag", default="twins:cpu")
    ap.add_argument("--variant", default="cpu")
    ap.add_argument("--sif", default="twins.sif")
    ns = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cmds = steps(ns.tag, ns.variant, ns.sif)
    if ns.dry_run:
        for cmd in cmds:
            sys.stdout.write(" ".join(cmd) + "\n")
        return 0
    if ns.check:
        problems = check()
        for p in problems:
            log.error(p)
        log.info("%d problem(s)", len(problems))
        return 1 if problems else 0
    for tool in {cmd[0] for cmd in cmds}:
        if shutil.which(tool) is None:
            log.error("%s is not installed here; this pipeline needs Docker and Apptainer", tool)
            return 2
    for cmd in cmds:
        log.info("+ %s", " ".join(cmd))
        if subprocess.run(cmd).returncode:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
