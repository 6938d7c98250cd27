"""`modalzoo data build code-sample`: documented Python functions from what is installed (nothing is downloaded),
as `CodeSample` shards for GraphCodeBERT-style pretraining and code search.

* train / validation: the site-packages of the running interpreter. A whole source *file* goes to validation by a
  hash of its path relative to site-packages (``val_fraction``, ~3 %), so one file's functions never straddle the
  split. Files are read in the order of that hash (a deterministic mix of packages), until ``max_train``.
* test (held out): the standard library, every non-test module of it, fixed by the Python version.

Walks skip test code (folders ``test``/``tests``/``testing``, files ``test_*.py``, ``*_test.py``, ``conftest.py``),
vendored copies (``_vendor``, ``vendor``), hidden folders, modalzoo itself, and in the stdlib ``idlelib``,
``lib2to3``, ``turtledemo``, ``ensurepip`` and any ``site-packages`` inside it.

Each function keeps its docstring's **first paragraph** (up to the first blank line, whitespace collapsed to single
spaces) as its natural-language side; the rest of the docstring is dropped with it from the code. Quality filter:
that paragraph has at least ``min_doc_words`` words (``short_docstring``) and the body (the lines after the ``def``
header that hold code) at least ``min_body_lines`` lines (``short_body``). So that no package dominates, a file keeps
at most ``max_per_file`` functions (``file_cap``), a top-level package at most ``max_package_share`` of its split's
cap (``package_cap``; the package's later files are then not read at all, counted as files under
``package_full``). Deduplication by the normalised body,
sha1 of the code's leaves joined by spaces (identifiers kept, comments and layout not), within every split and
across them with priority test > validation > train: a site-packages copy of a stdlib function is dropped
(``duplicate_of_test``), and so is a train/validation function whose normalised docstring (lower case, single
spaces, no final period) is a test docstring (``docstring_of_test``), so no evaluation query leaks into training.
Test queries are unique too (``duplicate_docstring``: code search needs one right answer per query). A file in an
encoding Python cannot read (no cookie and not UTF-8, or a cookie naming an unknown codec) counts once under
``encoding``, one that does not parse once under ``syntax``; the build never stops for a file. Same installed
files -> byte-identical shards (sorted walks, hash order, fixed tar mtimes; parallel extraction keeps file order).

Shards: ``OUT/{train,validation,test}/shard-*.tar``, each sample a ``json`` field holding `CodeSample.to_json`
(grouped ``N.samples.jsonl`` members, read back by `datasets.shards.unpack_members`); ``OUT/info.json`` holds the
counts, skips and drops by reason, sources, licences and the extraction speed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import sysconfig
import time
import tokenize
import warnings
from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from ...datasets.shards import ShardWriter
from ...registry import SAMPLE_DATA
from .sample import CodeSample, SkippedFunction

SPLITS = ("train", "validation", "test")
TEST_PARTS = {"test", "tests", "testing"}
VENDORED = {"_vendor", "vendor", "vendored", "third_party"}
STDLIB_SKIP = {"idlelib", "lib2to3", "turtledemo", "ensurepip", "site-packages", "dist-packages"}
SITE_SKIP = {"modalzoo", "__pycache__"}
PER_MEMBER = 200                 # samples per grouped tar member
TAR_MTIME = 0                    # fixed member mtime: two builds of the same files give identical shard bytes
LICENCE = ("Samples are derived at build time from the Python files installed on this machine and are never "
           "committed: site-packages functions are under each package's own licence (see its *.dist-info), "
           "standard-library functions under the PSF License Agreement.")


def stdlib_root() -> Path:
    """The standard library folder of this interpreter (the held-out test split)."""
    return Path(sysconfig.get_paths()["stdlib"])


def site_roots() -> list[Path]:
    """The site-packages folders of this interpreter (purelib and platlib are often one)."""
    paths = sysconfig.get_paths()
    return sorted({Path(paths[k]) for k in ("purelib", "platlib")})


def is_test_file(name: str) -> bool:
    return name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py"


def python_files(root: Path, skip: set[str] = frozenset()) -> list[Path]:
    """Every non-test .py file under ``root``, sorted; test, vendored, hidden and ``skip`` folders pruned."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in TEST_PARTS and d not in VENDORED and d not in skip
                         and not d.startswith(".") and not d.endswith((".dist-info", ".egg-info")))
        found.extend(Path(folder, f) for f in files
                     if f.endswith(".py") and not is_test_file(f) and not f.startswith("__editable__"))
    return sorted(found)


def read_source(raw: bytes, python: bool = True) -> str:
    """Decode a source file as Python would (a BOM or coding cookie, else UTF-8); other languages: UTF-8.
    Raises ``SkippedFunction("encoding")`` when that is impossible."""
    try:
        if python:
            encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)   # SyntaxError: unknown codec
        else:
            encoding = "utf-8-sig"
        return raw.decode(encoding)
    except (SyntaxError, UnicodeDecodeError, LookupError) as e:
        raise SkippedFunction("encoding", f"cannot decode: {e}") from None


def first_paragraph(docstring: str) -> str:
    """The docstring up to its first blank line, whitespace collapsed to single spaces."""
    lines = []
    for line in docstring.strip().split("\n"):
        if not line.strip():
            break
        lines.append(line)
    return " ".join(" ".join(lines).split())


def normalised_docstring(doc: str) -> str:
    return " ".join(doc.lower().split()).rstrip(".").strip()


def body_digest(sample: CodeSample) -> bytes:
    """The normalised body hash: sha1 of the code's leaves joined by spaces (comments and layout ignored)."""
    return hashlib.sha1(" ".join(sample.leaves()).encode("utf-8")).digest()


def body_lines(sample: CodeSample) -> int:
    """Lines holding code after the function's header (``def ...:``, its colon at bracket depth 0)."""
    starts = [0]
    for line in sample.code.split("\n"):
        starts.append(starts[-1] + len(line) + 1)
    depth, body = 0, None
    for i, (s, e, _) in enumerate(sample.tokens):
        text = sample.code[s:e]
        if text in ("(", "[", "{"):
            depth += 1
        elif text in (")", "]", "}"):
            depth -= 1
        elif text == ":" and depth == 0:
            body = i + 1
            break
    if body is None:
        return 0
    return len({bisect_right(starts, s) for s, _, _ in sample.tokens[body:]})


def module_name(origin: str) -> str:
    """``json/decoder.py`` -> ``json.decoder``; ``pkg/__init__.py`` -> ``pkg``."""
    parts = list(Path(origin).with_suffix("").parts)
    if parts and parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def path_fraction(origin: str) -> float:
    """A file's place in [0, 1) by a hash of its relative path: the split and the reading order."""
    return int(hashlib.sha1(origin.encode("utf-8")).hexdigest()[:12], 16) / 16**12


@dataclass
class FileResult:
    """What one file gave: kept samples as (json, body digest, normalised docstring) and skips by reason."""
    origin: str
    samples: list[tuple[str, bytes, str]]
    skipped: Counter
    error: str = ""
    functions: int = 0               # functions the front end read (kept or skipped)


def extract_file(job: tuple[str, str, int, int]) -> FileResult:
    """One file's documented functions that pass the quality filter (run in a worker process)."""
    path, origin, min_doc_words, min_body_lines = job
    from .python import functions

    skipped: Counter = Counter()
    samples: list[tuple[str, bytes, str]] = []
    try:
        with open(path, "rb") as f:
            text = read_source(f.read())
    except SkippedFunction as e:
        skipped[e.reason] += 1
        return FileResult(origin, samples, skipped)
    except OSError as e:
        skipped["unreadable"] += 1
        return FileResult(origin, samples, skipped, f"{origin}: {e}")
    module = module_name(origin)
    error, seen = "", 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                  # SyntaxWarnings of old escape sequences, ...
        try:
            for item in functions(text, origin, need_docstring=True):
                seen += 1
                if isinstance(item, SkippedFunction):
                    skipped[item.reason] += 1
                    continue
                doc = first_paragraph(item.docstring)
                if len(doc.split()) < min_doc_words:
                    skipped["short_docstring"] += 1
                    continue
                if body_lines(item) < min_body_lines:
                    skipped["short_body"] += 1
                    continue
                item.docstring, item.name = doc, f"{module}.{item.name}" if module else item.name
                samples.append((item.to_json(), body_digest(item), normalised_docstring(doc)))
        except Exception as e:                           # a front-end failure costs this file's rest, not the build
            skipped["error"] += 1
            error = f"{origin}: {type(e).__name__}: {e}"
    return FileResult(origin, samples, skipped, error, seen)


@dataclass
class CodeSampleConfig:
    max_train: int = 30_000          # stop reading site-packages once train has this many functions
    max_validation: int = 600        # at most this many from the held-out site-packages files
    max_test: int = 0                # > 0: at most this many stdlib functions (0: all of them)
    val_fraction: float = 0.03       # of site-packages files (not functions) held out for validation
    max_per_file: int = 40           # functions kept per source file (train / validation) ...
    max_package_share: float = 0.1   # ... and per top-level package, as a share of the split's cap (transformers)
    min_doc_words: int = 3           # words in the docstring's first paragraph
    min_body_lines: int = 3          # lines of code after the def header
    samples_per_shard: int = 2000
    workers: int = 0                 # extraction processes; 0: one per CPU (at most 8); 1: in this process


class _Split:
    """One split's writer, dedup set and counts."""

    def __init__(self, out: Path, name: str, cfg: CodeSampleConfig):
        self.name = name
        self.writer = ShardWriter(out, name, max_count=cfg.samples_per_shard, per_member=PER_MEMBER)
        self.writer.mtime = TAR_MTIME
        self.count = self.files = 0
        self.skipped: Counter = Counter()
        self.dropped: Counter = Counter()
        self.packages: Counter = Counter()
        self.bodies: set[bytes] = set()
        self.docs: set[str] = set()


class _Pool:
    """File results in input order, from worker processes (or this one), so the output does not depend on the
    number of workers. At most ``window`` files are in flight: stopping early (a split's cap) wastes no more."""

    def __init__(self, workers: int):
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.workers = workers or min(cpus, 8)
        self.pool = None
        if self.workers > 1:
            import multiprocessing
            self.pool = multiprocessing.get_context().Pool(self.workers)

    def map(self, jobs: Iterable, wanted: Callable[[tuple], bool]) -> Iterator[FileResult | None]:
        """``extract_file(job)`` per job, in order; None for a job ``wanted`` refuses when it is submitted."""
        if self.pool is None:
            yield from (extract_file(job) if wanted(job) else None for job in jobs)
            return
        pending: deque = deque()
        jobs, window = iter(jobs), 8 * self.workers
        while True:
            while len(pending) < window and (job := next(jobs, None)) is not None:
                pending.append(self.pool.apply_async(extract_file, (job,)) if wanted(job) else None)
            if not pending:
                return
            result = pending.popleft()
            yield None if result is None else result.get()

    def close(self):
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()


@SAMPLE_DATA.register("code-sample")
class CodeSampleData:
    """Documented Python functions with data flow: site-packages (train/validation), stdlib (test)."""

    Config = CodeSampleConfig

    def __init__(self, cfg: CodeSampleConfig):
        if not 0 <= cfg.val_fraction < 0.5:
            raise ValueError("val_fraction must be in [0, 0.5)")
        if cfg.max_train < 1 or cfg.max_per_file < 1 or not 0 < cfg.max_package_share <= 1:
            raise ValueError("max_train and max_per_file must be at least 1, max_package_share in (0, 1]")
        self.cfg = cfg

    def build(self, out: Path) -> dict:
        from tqdm import tqdm

        from ..text.samples import package_of

        cfg, out = self.cfg, Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for split in SPLITS:                              # a rebuild replaces the old shards
            for old in (out / split).glob("shard-*.tar"):
                old.unlink()
        std, sites = stdlib_root(), [r for r in site_roots() if r.exists()]
        std_files = python_files(std, STDLIB_SKIP) if std.exists() else []
        site_files = sorted({(path_fraction(str(p.relative_to(root))), str(p.relative_to(root)), str(p))
                             for root in sites for p in python_files(root, SITE_SKIP)})
        jobs = {"test": [(str(p), str(p.relative_to(std))) for p in std_files],
                "validation": [(p, o) for f, o, p in site_files if f < cfg.val_fraction],
                "train": [(p, o) for f, o, p in site_files if f >= cfg.val_fraction]}
        caps = {"test": cfg.max_test or sys.maxsize, "validation": cfg.max_validation, "train": cfg.max_train}
        splits = {s: _Split(out, s, cfg) for s in SPLITS}
        errors: list[str] = []
        seen = 0                                          # functions the front end read
        pool = _Pool(cfg.workers)
        started = time.perf_counter()
        try:
            for name in ("test", "validation", "train"):   # priority order for cross-split dedup
                split, cap = splits[name], caps[name]
                package_cap = max(1, int(cfg.max_package_share * cap)) if name != "test" else cap
                todo = [(p, o, cfg.min_doc_words, cfg.min_body_lines) for p, o in jobs[name]]
                packages = {p: package_of(Path(p), [std] if name == "test" else sites) for p, _ in jobs[name]}

                def full(job, split=split, packages=packages, package_cap=package_cap) -> bool:
                    return split.packages[packages[job[0]]] >= package_cap

                bar = tqdm(total=cap if name == "train" else len(jobs[name]), disable=None,
                           desc=f"{name} ({'stdlib' if name == 'test' else 'site-packages'})",
                           unit=" functions" if name == "train" else " files")
                try:
                    # A file of a package already full is not read (whether it was, in a worker, depends on the
                    # number of workers; what is counted does not).
                    for job, result in zip(todo, pool.map(todo, lambda job: not full(job))):
                        if split.count >= cap:
                            break
                        if full(job):
                            split.skipped["package_full"] += 1       # counts files, unread
                            continue
                        split.files += 1
                        seen += result.functions
                        split.skipped.update(result.skipped)
                        if result.error and len(errors) < 10:
                            errors.append(result.error)
                        package = packages[job[0]]
                        kept = 0
                        for raw, digest, doc in result.samples:
                            reason = self._drop(name, split, splits, digest, doc, kept, package, package_cap)
                            if reason:
                                split.dropped[reason] += 1
                                continue
                            if split.count >= cap:
                                break
                            split.bodies.add(digest)
                            if name == "test":
                                split.docs.add(doc)
                            split.writer.write({"__key__": f"{name}-{split.count:07d}", "json": raw})
                            split.count += 1
                            split.packages[package] += 1
                            kept += 1
                        bar.update(kept if name == "train" else 1)
                finally:
                    bar.close()
        finally:
            pool.close()
            for split in splits.values():
                split.writer.close()
        elapsed = time.perf_counter() - started
        info = self._info(splits, errors, seen, elapsed, pool.workers, std, sites, len(std_files), len(site_files))
        (out / "info.json").write_text(json.dumps(info, indent=2))
        return info

    def _drop(self, name, split, splits, digest, doc, kept, package, package_cap) -> str:
        """Why a sample is not written (empty: it is), in order: dedup, then the caps."""
        test = splits["test"]
        if digest in split.bodies:
            return "duplicate"
        if name == "test":
            return "duplicate_docstring" if doc in split.docs else ""
        if digest in test.bodies:
            return "duplicate_of_test"
        if doc in test.docs:
            return "docstring_of_test"
        if name == "train" and digest in splits["validation"].bodies:
            return "duplicate_of_validation"
        if kept >= self.cfg.max_per_file:
            return "file_cap"
        if split.packages[package] >= package_cap:
            return "package_cap"
        return ""

    def _info(self, splits, errors, seen, elapsed, workers, std, sites, n_std, n_site) -> dict:
        counts = {s: splits[s].count for s in SPLITS}
        kept = sum(counts.values())
        return {
            "name": "code-sample",
            "summary": counts,
            "functions": counts,
            "files_read": {s: splits[s].files for s in SPLITS},
            "skipped": {s: dict(sorted(splits[s].skipped.items())) for s in SPLITS},
            "dropped": {s: dict(sorted(splits[s].dropped.items())) for s in SPLITS},
            "errors": errors,
            "packages": {s: len(splits[s].packages) for s in SPLITS},
            "top_packages": {s: dict(splits[s].packages.most_common(20)) for s in ("train", "validation")},
            "sources": {"python": sys.version.split()[0], "implementation": sys.implementation.name,
                        "stdlib": str(std), "site_packages": [str(r) for r in sites],
                        "stdlib_files": n_std, "site_packages_files": n_site,
                        "site_packages_packages": len(splits["train"].packages | splits["validation"].packages)},
            "licence": LICENCE,
            "docstring": "first paragraph of the cleaned docstring (up to the first blank line), whitespace "
                         "collapsed; the whole docstring is removed from the code",
            "dedup": "sha1 of the code's leaves joined by spaces; priority test > validation > train; train and "
                     "validation functions with a test docstring (lower case, single spaces) dropped",
            "extraction": {"seconds": round(elapsed, 2), "functions_read": seen,
                           "functions_per_second": round(seen / elapsed, 1) if elapsed else None,
                           "kept_per_second": round(kept / elapsed, 1) if elapsed else None, "workers": workers},
            "format": "webdataset shards; each sample's 'json' field is CodeSample.to_json() "
                      f"({PER_MEMBER} per N.samples.jsonl member)",
            "config": asdict(self.cfg),
        }
