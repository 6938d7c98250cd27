"""User-facing errors. The CLI prints these as one message and exits 2; anything else is a bug."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ModalzooError(Exception):
    """An error caused by what the user asked for (a recipe, a key, a path), not by a bug."""


class ConfigError(ModalzooError):
    """A recipe or override that does not fit the schema."""


def closest(word: str, choices: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.5)
    return matches[0] if matches else None


def unknown_name_message(what: str, name: str, valid: Iterable[str]) -> str:
    valid = sorted(valid)
    hint = closest(name, valid)
    msg = f"unknown {what} '{name}'"
    if hint:
        msg += f"; did you mean '{hint}'?"
    return msg + f" Valid: {', '.join(valid) if valid else '(none registered)'}"
