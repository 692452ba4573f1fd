"""Subprocess helper of the drought-twin crash test.

``python _drought_twin_worker.py TWIN_DIR DATA_FILE [POINT]``: open the twin, load the imports,
print ``ready``, then run one update from ``DATA_FILE``. With ``POINT`` (a commit step of the
twin store: ``staged``, ``renamed``, ``history``, ``committed``) the process SIGKILLs itself
exactly there; without it the parent kills it at a random instant.
"""

from __future__ import annotations

import os
import signal
import sys

from hydrology.twin import DroughtTwin
from twins.twin import store as store_module


def main(argv: list[str]) -> int:
    """Run one update (see the module docstring)."""
    twin_dir, data = argv[0], argv[1]
    if len(argv) > 2:
        point = argv[2]

        def hook(p: str) -> None:
            if p == point:
                os.kill(os.getpid(), signal.SIGKILL)

        store_module._fault_hook = hook
    twin = DroughtTwin.open(twin_dir)
    twin.indices  # noqa: B018  (load before "ready": the kill window is the update itself)
    print("ready", flush=True)
    twin.update(data, wait=True)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
