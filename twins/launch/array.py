"""The body of a Slurm array job: one ``twins`` command per input, one array task each.

The inputs are listed in the script itself (a bash array, each one shell-quoted), so the job
does not depend on the list file staying where it was. Task ``i`` runs the command with input
``i`` in place of the word ``{input}`` (or after the last word when the command has none);
its exit status is the task's, so ``sacct`` shows which inputs failed.

Nothing here knows a domain: the command is any ``twins`` command line, e.g.
``gravwave clean --cleaner cascade.pt --out cleaned``.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from twins.errors import ConfigError

__all__ = ["PLACEHOLDER", "array_body", "command_words", "read_inputs"]

#: The word of a command replaced by each task's input.
PLACEHOLDER = "{input}"


def read_inputs(path: str | Path) -> list[str]:
    """The inputs listed in a text file: one per line; blank lines and ``#`` lines skipped.

    Args:
        path: The list, e.g. written by ``ls /data/H-H1_*.gwf > segments.txt``.

    Returns:
        The inputs in file order, as written (paths as the job will see them).

    Raises:
        ConfigError: The file is missing, not UTF-8 text, or lists nothing.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"input list {p} not found", "write one input per line into it")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"input list {p}: byte {exc.start} is not UTF-8 text") from None
    inputs = [s.strip() for s in text.splitlines()]
    inputs = [s for s in inputs if s and not s.startswith("#")]
    if not inputs:
        raise ConfigError(f"input list {p} lists no inputs", "write one input per line into it")
    return inputs


def command_words(command: str | Sequence[str]) -> list[str]:
    """The words of a ``twins`` command line, without a leading ``twins``.

    Raises:
        ConfigError: Empty, or not valid shell words (an unmatched quote).
    """
    if isinstance(command, str):
        try:
            words = shlex.split(command)
        except ValueError as exc:
            raise ConfigError(f"--command {command!r}: {exc}") from None
    else:
        words = list(command)
    if words[:1] == ["twins"]:
        words = words[1:]
    if not words:
        raise ConfigError(
            "an array job needs the command each task runs",
            'e.g. --command "gravwave clean --cleaner cascade.pt --out cleaned"',
        )
    return words


def _word(word: str) -> str:
    """A shell-quoted word with every ``{input}`` as ``"$input"``."""
    parts = word.split(PLACEHOLDER)
    return '"$input"'.join(shlex.quote(p) if p else "" for p in parts)


def array_body(runner: str, inputs: Sequence[str], command: Sequence[str]) -> list[str]:
    """The lines after the prelude: the inputs, this task's one, the command.

    Args:
        runner: How to start Python's twins (``[container exec IMAGE ]python3 -m twins``).
        inputs: One per array task.
        command: The ``twins`` command words (:func:`command_words`).

    Returns:
        Script lines.
    """
    words = [_word(w) for w in command]
    if not any(PLACEHOLDER in w for w in command):
        words.append('"$input"')
    lines = ["inputs=("]
    lines += [f"    {shlex.quote(i)}" for i in inputs]
    lines += [
        ")",
        'input="${inputs[$SLURM_ARRAY_TASK_ID]}"',
        f'echo "array task $SLURM_ARRAY_TASK_ID of {len(inputs)}: $input"',
        f"{runner} {' '.join(words)}",
    ]
    return lines
