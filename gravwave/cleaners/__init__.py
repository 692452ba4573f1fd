"""Noise cleaners: one abstract :class:`Cleaner`, the Wiener, network and cascade cleaners,
their registry, and online cleaning.

Example:
    >>> cleaner = WienerCleaner(strain.name, list(wit), 4096, [(142, 162)])  # doctest: +SKIP
    >>> cleaned = cleaner.fit(strain, wit).clean(new_strain, new_wit)  # doctest: +SKIP

Training (the network, the whole cascade) lives in :mod:`gravwave.training`, which depends
on this package, never the reverse.
"""

from gravwave.cleaners.base import Band, Cleaner
from gravwave.cleaners.cascade import CascadeCleaner
from gravwave.cleaners.network import NORMALISATION_FILE, NetworkCleaner, NetworkConfig
from gravwave.cleaners.online import OnlineCleaner
from gravwave.cleaners.registry import (
    CLEANERS,
    cleaner_from_state,
    load_cleaner,
    register_cleaner,
)
from gravwave.cleaners.wiener import WienerCleaner

__all__ = [
    "CLEANERS",
    "NORMALISATION_FILE",
    "Band",
    "CascadeCleaner",
    "Cleaner",
    "NetworkCleaner",
    "NetworkConfig",
    "OnlineCleaner",
    "WienerCleaner",
    "cleaner_from_state",
    "load_cleaner",
    "register_cleaner",
]
