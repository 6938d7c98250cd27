"""Python's front end: a source file -> one `CodeSample` per function (docstring split off, leaves from
``tokenize``, data flow from `dataflow.py`), or a `SkippedFunction` saying why not.

A function's code runs from its ``def`` line (decorators excluded) to its last statement, dedented. Its docstring
(the first statement, when it is a string on lines of its own) is removed from the code and kept as the sample's
natural-language side, cleaned as ``inspect.cleandoc`` does. Comments stay in ``code`` for readers but are not
leaves, so the model never sees them (GraphCodeBERT strips both). Nested functions and methods are samples of
their own; their enclosing function contains them too.
"""

from __future__ import annotations

import ast
import io
import keyword
import textwrap
import tokenize
from collections.abc import Iterator

from .dataflow import COMES_FROM, UnparsableCode, extract, function_defs
from .sample import IDENTIFIER, KEYWORD, NUMBER, OTHER, STRING, CodeSample, SkippedFunction, keep_connected

_LAYOUT = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER,
           tokenize.ENCODING}
_SOFT = set(getattr(keyword, "softkwlist", ()))


def _kind(tok: tokenize.TokenInfo) -> int:
    if tok.type == tokenize.NAME:
        return KEYWORD if keyword.iskeyword(tok.string) or tok.string in _SOFT else IDENTIFIER
    if tok.type == tokenize.STRING:
        return STRING
    if tok.type == tokenize.NUMBER:
        return NUMBER
    return OTHER


def leaves(code: str) -> list[tuple[int, int, int]]:
    """The code's leaf tokens as (start, end, kind) character spans; comments and layout tokens left out."""
    starts = [0]
    for line in code.split("\n"):
        starts.append(starts[-1] + len(line) + 1)

    def offset(pos: tuple[int, int]) -> int:
        return starts[pos[0] - 1] + pos[1]

    try:
        return [(offset(t.start), offset(t.end), _kind(t))
                for t in tokenize.generate_tokens(io.StringIO(code).readline) if t.type not in _LAYOUT]
    except (tokenize.TokenError, SyntaxError, IndentationError) as e:
        raise SkippedFunction("syntax", f"tokenize failed: {e}") from e


def sample_from_code(code: str, docstring: str = "", name: str = "", origin: str = "") -> CodeSample:
    """One function's (or any snippet's) sample. Raises `SkippedFunction` ("syntax", "no_data_flow")."""
    code = textwrap.dedent(code.replace("\r\n", "\n").replace("\r", "\n"))
    try:
        flow = extract(code)
    except UnparsableCode as e:
        raise SkippedFunction(e.reason, str(e)) from e
    spans = leaves(code)
    starts = [0]
    for line in code.split("\n"):
        starts.append(starts[-1] + len(line) + 1)
    at = {s: i for i, (s, _, _) in enumerate(spans)}
    # A name inside an f-string's replacement field is no leaf of its own before Python 3.12 (the f-string is one
    # STRING token): such nodes are dropped with their edges.
    token_of = [at.get(starts[n.line - 1] + n.col, -1) for n in flow.nodes]
    kinds = {COMES_FROM: 0}
    edges = [(e.src, e.dst, kinds.get(e.kind, 1)) for e in flow.edges
             if token_of[e.src] >= 0 and token_of[e.dst] >= 0]
    nodes, edges = keep_connected(token_of, edges)
    if not nodes:
        raise SkippedFunction("no_data_flow", "the function has no variable with data flow")
    return CodeSample("python", code, spans, nodes, edges, docstring, name, origin)


def _split_docstring(fn: ast.AST, lines: list[str]) -> tuple[str, list[str]] | None:
    """(docstring, code lines without it), or None when the function has no docstring on lines of its own."""
    body = fn.body
    first = body[0] if body else None
    if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)):
        return None
    doc = ast.get_docstring(fn, clean=True) or ""
    a, b = first.lineno - fn.lineno, first.end_lineno - fn.lineno      # relative to the def line
    before, after = lines[a][:first.col_offset], lines[b][first.end_col_offset:]
    if before.strip() or after.strip() not in ("", ";") or a == 0:
        raise SkippedFunction("docstring_inline", "the docstring shares a line with code")
    rest = lines[:a] + lines[b + 1:]
    if len(body) == 1:
        raise SkippedFunction("docstring_only", "the function's body is its docstring")
    return doc, rest


def functions(text: str, origin: str = "", need_docstring: bool = False
              ) -> Iterator[CodeSample | SkippedFunction]:
    """Every function and method of a Python source file, in source order: a sample, or the reason it is not one.
    A file that does not parse yields one ``SkippedFunction("syntax")`` and nothing else."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError) as e:
        yield SkippedFunction("syntax", f"{origin}: does not parse: {e}")
        return
    except (RecursionError, MemoryError):
        yield SkippedFunction("too_deep", f"{origin}: nested too deeply to parse")
        return
    file_lines = text.split("\n")
    try:
        found = function_defs(tree)
    except RecursionError:
        yield SkippedFunction("too_deep", f"{origin}: nested too deeply")
        return
    for qualname, fn in found:
        lines = file_lines[fn.lineno - 1:fn.end_lineno]
        lines[-1] = lines[-1][:fn.end_col_offset] if len(lines) > 1 else lines[-1]
        try:
            split = _split_docstring(fn, lines)
            if split is None:
                if need_docstring:
                    raise SkippedFunction("no_docstring")
                doc, body = "", lines
            else:
                doc, body = split
            # Dedent by the def line's indentation only: a multi-line string's lines at column 0 would stop
            # textwrap.dedent from dedenting at all.
            margin = body[0][:len(body[0]) - len(body[0].lstrip())]
            body = [line[len(margin):] if line.startswith(margin) else line for line in body]
            yield sample_from_code("\n".join(body), doc, qualname, origin)
        except SkippedFunction as e:
            e.args = (f"{origin}:{fn.lineno} {qualname}: {e.args[0] if e.args else e.reason}",)
            yield e
