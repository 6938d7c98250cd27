"""The commands audio adds to `modalzoo` (found by cli.py through `components.modality_modules("commands")`)."""

from __future__ import annotations

from .units_cli import add_units_parser, run_units

COMMANDS = {"units": (add_units_parser, run_units)}
