"""Earlier import path of the cascade's training, kept only while tests/test_readme_commands.py
imports it from here: the cascade cleaner is :class:`gravwave.cleaners.CascadeCleaner`, its
training :mod:`gravwave.training`. Delete this module once that test imports from there."""

from gravwave.training import CascadeParams, fit_cascade

__all__ = ["CascadeParams", "fit_cascade"]
