"""`modalzoo data pack-code`: users' repositories -> `CodeSample` shards the `code` dataset reads, like
`data build code-sample` writes them.

Sources are files and folders; folders are walked in sorted order, skipping ``.git``, ``node_modules``, hidden
folders, vendored copies (``vendor``, ``_vendor``, ``third_party``) and installed packages (``site-packages``). A
file's language is its extension's (`languages.language_of`: .py, .js/.mjs/.cjs, .java, .go); other files are
ignored and counted, as are files of a language not in ``--languages``. Python is read as Python reads it (BOM,
coding cookie, else UTF-8), the rest as UTF-8; a file that cannot be decoded is skipped (``encoding``), one over
``--max-file-bytes`` too (``too_large``: minified bundles). JavaScript, Java and Go need the tree-sitter grammars of
the ``[code]`` extra: when one is missing, that is said once, with the install hint, its files are counted under
``grammar_missing`` and the pack goes on with the other languages.

Functions stream into the shards (memory holds one file and the set of body hashes, never the samples): each keeps
its docstring's first paragraph (as `corpus.py`), duplicates by normalised body (sha1 of the leaves) are dropped
and counted, and a whole file goes to validation by a hash of its path relative to its source folder (named by the
folder's own name), so re-packing keeps the split. Skips are counted by reason (``syntax``, ``encoding``,
``no_data_flow``, ``no_docstring``, ...; a file that does not parse counts once) with the first few named; the pack
never stops for one bad file. Everything is written to ``OUT.partial`` and renamed to ``OUT`` when complete.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from itertools import chain
from pathlib import Path

from ...datasets.shards import ShardWriter
from ...errors import ModalzooError, closest
from ...registry import PACKERS
from . import languages
from .corpus import (
    PER_MEMBER,
    TAR_MTIME,
    VENDORED,
    body_digest,
    first_paragraph,
    module_name,
    path_fraction,
    read_source,
)
from .sample import CodeSample, SkippedFunction

PRUNED = {".git", "node_modules", "__pycache__", "site-packages", "dist-packages", *VENDORED}
INSTALL_HINT = "pip install 'modalzoo[code]'"


@dataclass
class PackCodeConfig:
    """The `data pack-code` flags (metadata "help": their help)."""
    languages: str = field(default=",".join(languages.LANGUAGES),
                           metadata={"help": "comma-separated languages to pack (default: all of "
                                             f"{','.join(languages.LANGUAGES)})"})
    need_docstring: bool = field(default=True, metadata={"help": "keep only functions with a docstring (false: "
                                                                 "every function)"})
    validation_fraction: float = field(default=0.05, metadata={"help": "share of files (by a hash of their path) "
                                                                       "routed to the validation split"})
    max_file_bytes: int = field(default=1_000_000, metadata={"help": "skip larger files (minified bundles)"})
    samples_per_shard: int = field(default=2000, metadata={"help": "functions per shard"})


def source_files(sources: list[Path]) -> Iterator[tuple[Path, str]]:
    """(path, origin) of every file under ``sources``, in sorted order; origin: the path relative to the source
    folder's parent (``repo/pkg/mod.py``; a Python function's name is then ``pkg.mod.f``), a file given directly
    by its name."""
    for src in sources:
        if src.is_file():
            yield src, src.name
            continue
        top = src.resolve()
        for folder, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if d not in PRUNED and not d.startswith("."))
            for name in sorted(files):
                if not name.startswith("."):
                    path = Path(folder, name)
                    yield path, Path(top.name, path.relative_to(top)).as_posix()


def _grammar_message(language: str, err: Exception) -> str:
    message = str(err) or type(err).__name__
    if INSTALL_HINT not in message:
        message = f"{language} needs its tree-sitter grammar ({message}): {INSTALL_HINT}"
    return message


class _Output:
    """Shard writers into OUT.partial (created on first use per split), renamed to OUT by `commit`."""

    def __init__(self, out: Path, cfg: PackCodeConfig):
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ModalzooError(f"{out} exists and is not empty: pack into a new folder (or delete it first)")
        self.out, self.tmp, self.cfg = out, out.with_name(out.name + ".partial"), cfg
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        self.writers: dict[str, ShardWriter] = {}
        self.counts: Counter = Counter()

    def write(self, split: str, sample: CodeSample) -> None:
        if split not in self.writers:
            self.writers[split] = ShardWriter(self.tmp, split, max_count=self.cfg.samples_per_shard,
                                              per_member=PER_MEMBER)
            self.writers[split].mtime = TAR_MTIME
        self.writers[split].write({"__key__": f"{split}-{self.counts[split]:09d}", "json": sample.to_json()})
        self.counts[split] += 1

    def close(self) -> None:
        for w in self.writers.values():
            w.close()

    def commit(self, info: dict) -> None:
        (self.tmp / "info.json").write_text(json.dumps(info, indent=2))
        if self.out.exists():
            self.out.rmdir()
        self.tmp.rename(self.out)


def wanted_languages(spec: str) -> list[str]:
    names = [n.strip().lower() for n in str(spec).split(",") if n.strip()]
    if not names:
        raise ModalzooError(f"--languages names no language (languages: {','.join(languages.LANGUAGES)})")
    for name in names:
        if name not in languages.LANGUAGES:
            hint = closest(name, languages.LANGUAGES)
            raise ModalzooError(f"unknown language '{name}'" + (f"; did you mean '{hint}'?" if hint else "")
                                + f" (languages: {','.join(languages.LANGUAGES)})")
    return list(dict.fromkeys(names))


def pack_code(sources: list[Path], out: Path, cfg: PackCodeConfig) -> dict:
    """Pack the functions of ``sources`` into ``out``; returns info.json's content."""
    from tqdm import tqdm

    sources, out = [Path(s) for s in sources], Path(out)
    if not sources:
        raise ModalzooError("give at least one source file or folder")
    for src in sources:
        if not src.exists():
            raise ModalzooError(f"no such file or folder: {src}")
    if not 0 <= cfg.validation_fraction < 1:
        raise ModalzooError(f"--validation-fraction must be in [0, 1), got {cfg.validation_fraction}")
    wanted = wanted_languages(cfg.languages)
    output = _Output(out, cfg)
    skipped, ignored, files = Counter(), Counter(), Counter()
    examples: dict[str, str] = {}
    missing: dict[str, str] = {}
    seen: set[bytes] = set()
    duplicates = functions_read = 0
    started = time.perf_counter()

    def skip(reason: str, detail: str) -> None:
        skipped[reason] += 1
        if reason not in examples and len(examples) < 20:      # the first case of every reason
            examples[reason] = detail

    try:
        bar = tqdm(source_files(sources), desc="pack-code", unit=" files", disable=None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")                # SyntaxWarnings of users' invalid escapes, ...
            for path, origin in bar:
                language = languages.language_of(path)
                if language is None:
                    ignored["not_code"] += 1
                    continue
                if language not in wanted:
                    ignored[f"{language}: not requested"] += 1
                    continue
                if language in missing:
                    skipped["grammar_missing"] += 1
                    continue
                try:
                    if path.stat().st_size > cfg.max_file_bytes:
                        skip("too_large", f"{origin}: over {cfg.max_file_bytes} bytes")
                        continue
                    text = read_source(path.read_bytes(), python=language == "python")
                except SkippedFunction as e:
                    skip(e.reason, f"{origin}: {e}")
                    continue
                except OSError as e:
                    skip("unreadable", f"{origin}: {e}")
                    continue
                items = languages.functions(text, language, origin, cfg.need_docstring)
                try:
                    first = next(items, None)
                except (ModalzooError, ImportError) as e:
                    if language == "python":
                        skip("error", f"{origin}: {type(e).__name__}: {e}")
                        continue
                    missing[language] = _grammar_message(language, e)     # said once per language
                    tqdm.write(f"modalzoo: {missing[language]}; packing the other languages", file=sys.stderr)
                    skipped["grammar_missing"] += 1
                    continue
                except Exception as e:                         # a front-end failure costs this file only
                    skip("error", f"{origin}: {type(e).__name__}: {e}")
                    continue
                files[language] += 1
                split = "validation" if path_fraction(origin) < cfg.validation_fraction else "train"
                inside = origin.split("/", 1)[-1]                 # the path inside its source folder
                prefix = module_name(inside) if language == "python" else ""
                try:
                    for item in chain([first] if first is not None else [], items):
                        functions_read += 1
                        if isinstance(item, SkippedFunction):
                            skip(item.reason, str(item))
                            continue
                        item.docstring = first_paragraph(item.docstring)
                        if cfg.need_docstring and not item.docstring:
                            skip("no_docstring", f"{origin}: {item.name}: empty docstring")
                            continue
                        digest = body_digest(item)
                        if digest in seen:
                            duplicates += 1
                            continue
                        seen.add(digest)
                        if prefix:
                            item.name = f"{prefix}.{item.name}"
                        output.write(split, item)
                except Exception as e:                         # a front-end failure costs this file's rest only
                    skip("error", f"{origin}: {type(e).__name__}: {e}")
    except BaseException:
        output.close()
        shutil.rmtree(output.tmp, ignore_errors=True)
        raise
    output.close()
    elapsed = time.perf_counter() - started
    counts = {"train": output.counts["train"], "validation": output.counts["validation"]}
    if not counts["train"]:
        shutil.rmtree(output.tmp, ignore_errors=True)
        hints = "".join(f"; {m}" for m in missing.values())
        first = f"; first: {next(iter(examples.values()))}" if examples else ""
        raise ModalzooError(f"no function to train on from {', '.join(map(str, sources))} (validation: "
                            f"{counts['validation']}, files read: {dict(files)}, skipped: {dict(skipped)}, "
                            f"ignored: {dict(ignored)}{first}){hints}")
    info = {"name": "pack-code", "summary": counts, "functions": counts, "files_read": dict(sorted(files.items())),
            "skipped": dict(sorted(skipped.items())), "skipped_examples": examples,
            "ignored_files": dict(sorted(ignored.items())), "missing_grammars": missing,
            "duplicates_dropped": duplicates, "sources": [str(s) for s in sources], "languages": wanted,
            "need_docstring": cfg.need_docstring,
            "docstring": "first paragraph of the docstring (up to the first blank line), whitespace collapsed",
            "extraction": {"seconds": round(elapsed, 2), "functions_read": functions_read,
                           "functions_per_second": round(functions_read / elapsed, 1) if elapsed else None},
            "format": "webdataset shards; each sample's 'json' field is CodeSample.to_json() "
                      f"({PER_MEMBER} per N.samples.jsonl member)",
            "config": asdict(cfg)}
    output.commit(info)
    return info


@PACKERS.register("pack-code")
class PackCode:
    """Pack the functions of your repositories (Python; JavaScript, Java, Go with the [code] extra) into code
    shards: files and folders walked (.git, node_modules, hidden and vendored folders skipped), the language by
    extension, docstring and data flow per function, duplicates dropped, files split by a hash of their path; bad
    files skipped and counted."""

    Config = PackCodeConfig
    inputs = "PATH"
    example = "modalzoo data pack-code ~/src/myrepo --out data/my-code --languages python,go"

    def __init__(self, cfg: PackCodeConfig):
        wanted_languages(cfg.languages)
        if cfg.samples_per_shard < 1 or cfg.max_file_bytes < 1:
            raise ValueError("samples_per_shard and max_file_bytes must be at least 1")
        self.cfg = cfg

    def pack(self, sources: list[Path], out: Path) -> str:
        info = pack_code(sources, out, self.cfg)
        counts, skipped = info["functions"], info["skipped"]
        reasons = ", ".join(f"{k}: {v}" for k, v in skipped.items()) or "none"
        read = ", ".join(f"{k}: {v}" for k, v in info["files_read"].items()) or "none"
        message = (f"packed {sum(counts.values())} functions ({counts['train']} train / {counts['validation']} "
                   f"validation) into {out} from files ({read}); skipped {sum(skipped.values())} ({reasons}), "
                   f"{info['duplicates_dropped']} duplicates dropped")
        for hint in info["missing_grammars"].values():
            message += f"; {hint}"
        return message
