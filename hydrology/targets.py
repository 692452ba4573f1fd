"""Which drought-index targets a record can give, checked before anything is computed.

* ``spi_N``: precipitation ``tp``;
* ``spei_N``: ``tp`` and potential evaporation: ``pev`` as given, or derived from
  temperature (:mod:`hydrology.pet`, per ``task.params.pet``);
* ``ssmi_N``: soil moisture ``swvl1``.

A target whose variable the record lacks is a configuration error (the config named it),
reported once, naming every such target, the variable and the file.
"""

from __future__ import annotations

from collections.abc import Sequence

import xarray as xr

from hydrology.indices import IndexSpec
from hydrology.pet import PetMethod, pet_source
from twins.errors import ConfigError

_PET_NEEDS = {
    "auto": "potential evaporation 'pev' or temperature ('t2m', or 'mn2t' and 'mx2t')",
    "pev": "potential evaporation 'pev'",
    "hargreaves": "daily 'mn2t' and 'mx2t' (pet: hargreaves)",
    "thornthwaite": "temperature 't2m', or 'mn2t' and 'mx2t' (pet: thornthwaite)",
}


def missing_for(target: str, ds: xr.Dataset, pet: PetMethod) -> str | None:
    """What ``ds`` lacks for ``target`` (a phrase naming the variables), or None."""
    kind = IndexSpec.parse(target).kind
    lacks = []
    if kind in ("spi", "spei") and "tp" not in ds:
        lacks.append("precipitation 'tp'")
    if kind == "spei" and pet_source(ds, pet) is None:
        lacks.append(_PET_NEEDS[pet])
    if kind == "ssmi" and "swvl1" not in ds:
        lacks.append("soil moisture 'swvl1'")
    return " and ".join(lacks) or None


def check_targets(ds: xr.Dataset, targets: Sequence[str], pet: PetMethod, source: str) -> None:
    """Refuse targets the record cannot give.

    Args:
        ds: Canonical dataset (daily or monthly).
        targets: Index names (``task.params.targets``).
        pet: ``task.params.pet``.
        source: The file(s) ``ds`` was read from, for the message.

    Raises:
        ConfigError: One line naming each target the record cannot give, the variable it
            needs and ``source``.
    """
    problems = [
        f"{t!r} needs {lack}" for t in targets if (lack := missing_for(t, ds, pet)) is not None
    ]
    if problems:
        held = ", ".join(str(v) for v in ds.data_vars) or "no variables"
        raise ConfigError(
            f"task.params.targets: {'; '.join(problems)}, which {source} does not hold "
            f"(it holds {held})",
            hint="drop those targets, or train on a file that has the variable",
        )
