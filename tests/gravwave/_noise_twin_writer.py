"""Subprocess helper of the noise-twin crash test: ``python _noise_twin_writer.py TWIN SEGMENT``.

Opens the twin, prints ``ready`` and updates it with the segment file (multi-channel HDF5); the
test kills it with SIGKILL at a random instant.
"""

from __future__ import annotations

import sys

from gravwave.twin import NoiseTwin


def main(argv: list[str]) -> int:
    """Update one twin with one segment file."""
    twin = NoiseTwin.open(argv[0])
    print("ready", flush=True)
    twin.update(argv[1], wait=True)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
