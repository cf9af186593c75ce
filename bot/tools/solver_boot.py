"""Imported once, first, by the equation solver's forkserver (bot/tools/equations.py), never by the bot.

multiprocessing runs the program's main module again in each child it starts (`python -m
bot.answering.worker`); the forkserver has imported it already, so that this costs nothing, and
runpy then warns that the module was "found in sys.modules" — once per solve, on the worker's stderr.
The re-run is intended here: the warning is silenced in the forkserver and its children only."""

from __future__ import annotations

import warnings

warnings.filterwarnings(
    "ignore", message=r".*found in sys\.modules after import of package", category=RuntimeWarning
)
