"""Hyper-parameter studies: ``twins tune`` (Ray Tune + ASHA) and ``twins report hpo``.

- :mod:`twins.tune.space`: the ``tune:`` section of a study config and :func:`load_study`;
- :mod:`twins.tune.study`: :func:`run_study`, each trial a nested MLflow run;
- :mod:`twins.tune.report`: :func:`hpo_report`, best versus default on the test split.

Imports are lazy (``twins --help`` stays fast); Ray loads only when a study runs.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TuneConfig": "twins.tune.space",
    "apply_sample": "twins.tune.space",
    "load_study": "twins.tune.space",
    "parse_tune": "twins.tune.space",
    "split_study": "twins.tune.space",
    "StudyResult": "twins.tune.study",
    "run_study": "twins.tune.study",
    "Report": "twins.tune.report",
    "hpo_report": "twins.tune.report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'twins.tune' has no attribute {name!r}")
