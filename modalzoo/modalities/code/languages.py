"""Which front end reads which language: Python through the standard library (`python.py`), the others through
tree-sitter grammar wheels (`treesitter.py`, the ``[code]`` extra). One call for the corpus builder and pack-code:
``functions(text, language)`` yields a `CodeSample` or a `SkippedFunction` per function."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ...errors import ModalzooError
from .sample import CodeSample, SkippedFunction

EXTENSIONS = {".py": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".java": "java",
              ".go": "go"}
LANGUAGES = tuple(dict.fromkeys(EXTENSIONS.values()))


def language_of(path: str | Path) -> str | None:
    """The language a file's extension names, or None (not code this package reads)."""
    return EXTENSIONS.get(Path(path).suffix.lower())


def functions(text: str, language: str, origin: str = "", need_docstring: bool = False
              ) -> Iterator[CodeSample | SkippedFunction]:
    if language == "python":
        from .python import functions as python_functions
        yield from python_functions(text, origin, need_docstring)
        return
    if language not in LANGUAGES:
        from ...errors import closest
        hint = closest(language, LANGUAGES)
        raise ModalzooError(f"unknown language '{language}'" + (f"; did you mean '{hint}'?" if hint else "")
                            + f" (languages: {', '.join(LANGUAGES)})")
    from .treesitter import functions as tree_sitter_functions  # raises naming the extra when absent
    yield from tree_sitter_functions(text, language, origin, need_docstring)
