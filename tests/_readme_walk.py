"""The machinery of ``tests/test_readme_commands.py``: the README parser, the step kinds
(how a README command is run) and the walk-through directory they run in.

Not collected (no ``test_`` prefix); the test module loads it by path.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import traceback
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


# -- the README ------------------------------------------------------------------------------
def readme_commands(text: str) -> list[tuple[str, str]]:
    """``(section, command)`` for every command of the fenced ``bash`` blocks, in order.

    A section is the text of the nearest Markdown heading above the block. Comment lines and
    blank lines are dropped, backslash continuations joined, a trailing ``  # comment``
    removed and runs of blanks collapsed to one.
    """
    out: list[tuple[str, str]] = []
    section, in_block, pending = "", False, ""
    for raw in text.splitlines():
        s = raw.strip()
        if not in_block:
            if raw.startswith("#"):
                section = raw.lstrip("#").strip()
            in_block = s == "```bash"
            continue
        if s.startswith("```"):
            in_block = False
            continue
        if not pending and (not s or s.startswith("#")):
            continue
        if s.endswith("\\"):
            pending += s[:-1].rstrip() + " "
            continue
        line = re.sub(r"\s+#\s.*$", "", pending + s)
        pending = ""
        out.append((section, " ".join(line.split())))
    return out


# -- how a command is run --------------------------------------------------------------------
@dataclass
class Result:
    """What a live step did: exit status (None: it raised), stdout, stderr."""

    rc: int | None
    out: str
    err: str


class Live:
    """A step that runs in the walk-through; its result is kept for the session."""

    after: tuple[Live, ...] = ()
    prep: tuple[str, ...] = ()
    ok: tuple[int, ...] = (0,)
    expect: tuple[str, ...] = ()
    fields: tuple[tuple[str, Any], ...] = ()
    then: Callable[[Walk], None] | None = None

    def execute(self, walk: Walk) -> Result:
        raise NotImplementedError

    def __str__(self) -> str:
        what = next((getattr(self, k) for k in ("args", "line", "var") if hasattr(self, k)), "")
        return f"{type(self).__name__}({what!r})"

    def verify(self, walk: Walk) -> None:
        """Run (once per session, after its prerequisites) and check the outcome."""
        res = walk.result(self)
        shown = f"{self}\nstdout: {res.out[-2000:]}\nstderr: {res.err[-3000:]}"
        assert res.rc in self.ok, f"exit {res.rc}, expected {self.ok}: {shown}"
        assert "Traceback" not in res.err, shown
        for text in self.expect:
            assert walk.fill(text) in res.out, f"{walk.fill(text)!r} not in stdout: {shown}"
        if self.fields:
            doc = _json_of(res.out)
            for path, want in self.fields:
                got = _at(doc, path)
                assert want is ... or got == want, f"{path} is {got!r}, not {want!r}: {shown}"
        if self.then is not None:
            self.then(walk)


def _json_of(out: str) -> Any:
    """The JSON document a command printed (the whole stdout, or its last line)."""
    text = out.strip()
    try:
        return json.loads(text)
    except ValueError:
        return json.loads(text.splitlines()[-1])


def _at(doc: Any, path: str) -> Any:
    """``doc["a"]["b"]`` for ``"a.b"``; AssertionError naming the missing key."""
    for key in path.split("."):
        assert isinstance(doc, dict) and key in doc, f"no {key!r} (of {path!r}) in {doc!r}"[:500]
        doc = doc[key]
    return doc


@dataclass(frozen=True, eq=False)
class Run(Live):
    """``<main> ARGS`` in-process; ``{name}`` in ARGS is a walk value, then bash expands.

    Attributes:
        args: The command line after the program name (``twins`` or ``python -m MODULE``).
        main: Module whose ``main(argv)`` runs it.
        env: Environment variables set while it runs (values may hold ``{name}``).
    """

    args: str
    main: str = "twins.cli"
    after: tuple[Live, ...] = ()
    prep: tuple[str, ...] = ()
    ok: tuple[int, ...] = (0,)
    expect: tuple[str, ...] = ()
    fields: tuple[tuple[str, Any], ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    then: Callable[[Walk], None] | None = None

    def execute(self, walk: Walk) -> Result:
        argv = walk.expand(self.args)
        out, err = io.StringIO(), io.StringIO()
        env = {k: walk.fill(v) for k, v in self.env}
        with walk.inside(env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc: int | None = int(importlib.import_module(self.main).main(argv) or 0)
            except SystemExit as exc:  # argparse
                rc = exc.code if isinstance(exc.code, int) else 2
            except Exception:  # reported as a failed step, with its traceback
                rc, _ = None, err.write(traceback.format_exc())
        return Result(rc, out.getvalue(), err.getvalue())


@dataclass(frozen=True, eq=False)
class Shell(Live):
    """A line run by ``/bin/sh -c`` in the walk directory with the venv's ``bin`` on PATH."""

    line: str
    after: tuple[Live, ...] = ()
    prep: tuple[str, ...] = ()
    ok: tuple[int, ...] = (0,)
    expect: tuple[str, ...] = ()
    then: Callable[[Walk], None] | None = None

    def execute(self, walk: Walk) -> Result:
        proc = subprocess.run(
            ["/bin/sh", "-c", walk.fill(self.line)],
            cwd=walk.root,
            env=walk.subprocess_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)


@dataclass(frozen=True, eq=False)
class Server(Live):
    """A server started in the background (own process group, stopped at session end),
    ready when ``health`` answers 200; ``port`` names the walk value holding its port."""

    line: str
    health: str
    port: str
    after: tuple[Live, ...] = ()

    def execute(self, walk: Walk) -> Result:
        walk.values[self.port] = str(_free_port())
        log = (walk.root / f"{self.port}.log").open("wb")
        proc = subprocess.Popen(
            ["/bin/sh", "-c", "exec " + walk.fill(self.line)],
            cwd=walk.root,
            env={**walk.subprocess_env(), "HOME": str(walk.root)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        walk.background.append(proc)
        started = time.monotonic()
        while time.monotonic() - started < 120:  # a generous bound on a start-up, not a timing
            if proc.poll() is not None:
                break
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(walk.fill(self.health), timeout=2) as resp,
            ):
                if resp.status == 200:
                    return Result(0, "", "")
            time.sleep(0.5)
        return Result(proc.poll(), "", (walk.root / f"{self.port}.log").read_text()[-3000:])


@dataclass(frozen=True, eq=False)
class Export(Live):
    """``export VAR=VALUE``: the walk value ``VAR`` becomes VALUE (with ``{name}`` filled)."""

    var: str
    value: str
    after: tuple[Live, ...] = ()

    def execute(self, walk: Walk) -> Result:
        walk.values[self.var] = walk.fill(self.value)
        return Result(0, "", "")


@dataclass(frozen=True, eq=False)
class SrunStep(Live):
    """``srun --ntasks=N python ARGS``: N processes with the variables an srun step sets
    (``SLURM_PROCID``, ``SLURM_STEP_ID``, ``SLURM_STEP_NUM_TASKS`` ...) on localhost."""

    args: str
    ntasks: int = 2
    after: tuple[Live, ...] = ()
    then: Callable[[Walk], None] | None = None

    def execute(self, walk: Walk) -> Result:
        job = next(j for j in range(1000, 2000) if _port_free(29500 + j % 1000))
        base = walk.subprocess_env()
        procs = []
        for rank in range(self.ntasks):
            env = {
                **base,
                "SLURM_JOB_ID": str(job),
                "SLURM_PROCID": str(rank),
                "SLURM_LOCALID": str(rank),
                "SLURM_STEP_ID": "0",
                "SLURM_STEP_NUM_TASKS": str(self.ntasks),
                "SLURM_STEP_NODELIST": "localhost",
                "SLURM_STEP_TASKS_PER_NODE": str(self.ntasks),
            }
            procs.append(
                subprocess.Popen(
                    [sys.executable, *walk.expand(self.args)],
                    cwd=walk.root,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        outs = [p.communicate(timeout=300) for p in procs]
        rcs = [p.returncode for p in procs]
        return Result(max(rcs), outs[0][0], "\n".join(e for _, e in outs))


@dataclass(frozen=True)
class Elsewhere:
    """Run for real by another test: ``path::function`` (a test or a fixture) whose source
    holds every fragment, so the reference cannot drift from what the README shows."""

    test: str
    fragments: tuple[str, ...]
    why: str

    def verify(self, walk: Walk) -> None:
        path, name = self.test.split("::")
        source = (ROOT / path).read_text()
        node = next(
            (
                n
                for n in ast.walk(ast.parse(source))
                if isinstance(n, ast.FunctionDef) and n.name == name
            ),
            None,
        )
        assert node is not None, f"{self.test} does not exist ({self.why})"
        body = ast.get_source_segment(source, node) or ""
        missing = [f for f in self.fragments if f not in body]
        assert not missing, f"{self.test} no longer contains {missing} ({self.why})"


@dataclass(frozen=True)
class Check:
    """A command that cannot run here, checked against what it depends on."""

    fn: Callable[[], None]

    def verify(self, walk: Walk) -> None:
        self.fn()


Step = Live | Elsewhere | Check


@dataclass(frozen=True)
class Entry:
    """How one README command is run: its steps, and pytest marks of the whole entry."""

    steps: tuple[Step, ...]
    marks: tuple[Any, ...] = ()


def entry(*steps: Step, slow: bool = False, distributed: bool = False) -> Entry:
    """An :class:`Entry`: every README command must work (there is no "known broken")."""
    marks = [pytest.mark.slow] * slow + [pytest.mark.distributed] * distributed
    return Entry(steps, tuple(marks))


# -- the walk-through directory -----------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Walk:
    """The directory a reader works in; every live step runs once, after its ``after``."""

    root: Path
    values: dict[str, str] = field(default_factory=dict)
    results: dict[int, Result] = field(default_factory=dict)
    prep: dict[str, Callable[[Walk], None]] = field(default_factory=dict)
    prepared: set[str] = field(default_factory=set)
    background: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def fill(self, text: str) -> str:
        return text.format_map({"root": str(self.root), **self.values})

    def expand(self, args: str) -> list[str]:
        """The words of ``args`` as bash expands them in the walk directory."""
        proc = subprocess.run(
            ["bash", "-c", f"printf '%s\\0' {self.fill(args)}"],
            cwd=self.root,
            env=self.subprocess_env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert proc.returncode == 0, f"bash could not expand {args!r}: {proc.stderr}"
        return proc.stdout.split("\0")[:-1]

    def subprocess_env(self) -> dict[str, str]:
        return {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}

    @contextlib.contextmanager
    def inside(self, env: dict[str, str]) -> Iterator[None]:
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            with contextlib.chdir(self.root):
                yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def stop_background(self) -> None:
        """Stop the servers this walk started (their process groups), and forget them."""
        for proc in self.background:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.background.clear()

    def result(self, step: Live) -> Result:
        key = id(step)
        if key not in self.results:
            for dep in step.after:
                got = self.result(dep)
                assert got.rc in dep.ok, f"prerequisite {dep} failed ({got.rc}): {got.err[-2000:]}"
            for name in step.prep:
                if name not in self.prepared:
                    self.prep[name](self)
                    self.prepared.add(name)
            self.results[key] = step.execute(self)
        return self.results[key]
