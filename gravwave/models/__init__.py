"""Noise-subtraction models: a linear Wiener stage and a non-linear DeepClean stage.

Either stage can be used alone; in cascade the Wiener filter removes linear couplings
first and DeepClean learns what remains.
"""

from gravwave.models.deepclean import DeepClean
from gravwave.models.wiener import WienerFilter

__all__ = ["DeepClean", "WienerFilter"]
