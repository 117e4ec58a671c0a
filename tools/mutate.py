"""Mutation testing for devsim: do the tests notice when the code is wrong?

For each named module, a seeded sample of behaviour-changing edits (:mod:`mutants`) is
applied one at a time to a scratch copy of the repository (the working tree is never
touched), and the tests that target the module (``mutation/targets.yaml``) run against
it. A mutant is *killed* when a test fails, *timeout* when the run takes longer than a few
times the unmutated run (an infinite loop, also a catch), and *survived* otherwise.
Mutants that cannot change behaviour are listed with their reason in
``mutation/equivalent.yaml`` and reported as *equivalent*, not dropped.

Numba's on-disk cache knows a kernel's own source file but not the jitted functions it
inlined from other modules, so before each mutant the cache files of the mutated module
and of every module that imports it (directly or not) are deleted; the warm caches are
put back afterwards. Runs are ``nice``d and one at a time (the machine is shared).

    python tools/mutate.py trainer/qzo.py            # 40 mutants (seed 0) -> mutation/
    python tools/mutate.py --core                    # every module in targets.yaml
    python tools/mutate.py trainer/qzo.py --survivors  # rerun only last run's survivors
    python tools/mutate.py --table                   # score table into mutation/README.md
"""
from __future__ import annotations

import argparse
import ast
import fcntl
import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from mutants import Mutant, find_mutants  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "mutation"
PACKAGES = ("devsim", "devices", "trainer")
HEADER = "status\twhere\toperator\tedit\tcode\tnote"
LOCK = Path(tempfile.gettempdir()) / "devsim-mutate.lock"
TABLE_START, TABLE_END = "<!-- scores: start -->", "<!-- scores: end -->"


def results_path(module: str, folder: Path = RESULTS) -> Path:
    return folder / (module.removesuffix(".py").replace("/", ".") + ".txt")


def code_line(source: str, mutant: Mutant) -> str:
    return source.splitlines()[mutant.line - 1].strip()


# -- the checked-in lists ------------------------------------------------------------
def load_targets() -> dict[str, list[str]]:
    return yaml.safe_load((RESULTS / "targets.yaml").read_text())


def load_equivalents() -> dict[str, list[dict]]:
    path = RESULTS / "equivalent.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def equivalent_reason(entries: list[dict], source: str, mutant: Mutant) -> str | None:
    """The recorded reason when ``mutant`` is listed as equivalent: same line text, same
    column and same edit (robust to lines moving)."""
    code = code_line(source, mutant)
    for entry in entries:
        if entry["code"] == code and entry["edit"] == mutant.edit \
                and int(str(entry["at"]).split(":")[1]) == mutant.col:
            return entry["reason"]
    return None


def sample(module: str, mutants: list[Mutant], size: int, seed: int) -> list[Mutant]:
    """``size`` mutants drawn reproducibly from ``seed`` and the module's name (all of
    them when there are fewer)."""
    if size <= 0 or size >= len(mutants):
        return list(mutants)
    chosen = random.Random(f"{seed}/{module}").sample(range(len(mutants)), size)
    return [mutants[i] for i in sorted(chosen)]


# -- the scratch copy ----------------------------------------------------------------
class Scratch:
    """A copy of the repository's tracked and unignored files in a temporary folder, with
    the Numba caches a mutant of ``module`` may make stale."""

    def __init__(self, keep: bool = False):
        self.dir = Path(tempfile.mkdtemp(prefix="devsim-mutate-"))
        self.keep = keep
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"],
                               cwd=ROOT, check=True, capture_output=True).stdout
        for name in files.decode().split("\0"):
            if name and (ROOT / name).is_file():
                target = self.dir / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, target)
        self.stash = Path(tempfile.mkdtemp(prefix="devsim-mutate-stash-"))

    def close(self):
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.stash, ignore_errors=True)

    def importers(self, module: str) -> list[Path]:
        """``module`` and every project file that imports it, directly or through others
        (their compiled kernels may have inlined its jitted functions)."""
        names = {}
        for path in self.dir.rglob("*.py"):
            rel = path.relative_to(self.dir)
            if rel.parts[0] in PACKAGES:
                dotted = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
                names[dotted] = path
        imported_by: dict[str, set[str]] = {name: set() for name in names}
        for name, path in names.items():
            for node in ast.walk(ast.parse(path.read_text())):
                targets = []
                if isinstance(node, ast.Import):
                    targets = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in names
                               else node.module for a in node.names]
                for target in targets:
                    if target in imported_by:
                        imported_by[target].add(name)
        start = ".".join(Path(module).with_suffix("").parts).removesuffix(".__init__")
        seen, todo = {start}, [start]
        while todo:
            for importer in imported_by.get(todo.pop(), ()):
                if importer not in seen:
                    seen.add(importer)
                    todo.append(importer)
        return sorted(names[name] for name in seen)

    @staticmethod
    def kernel_caches(files: list[Path]) -> list[Path]:
        caches = []
        for path in files:
            for suffix in ("nbi", "nbc"):
                caches += (path.parent / "__pycache__").glob(f"{path.stem}.*.{suffix}")
        return caches

    def stash_caches(self, files):
        shutil.rmtree(self.stash)
        self.stash.mkdir()
        for cache in self.kernel_caches(files):
            shutil.copy2(cache, self.stash / f"{cache.parent.parent.name}.{cache.name}")

    def clear_caches(self, files):
        for cache in self.kernel_caches(files):
            cache.unlink()
        for path in files:  # no stale bytecode of a same-size edit within one second
            for pyc in (path.parent / "__pycache__").glob(f"{path.stem}.cpython-*.pyc"):
                pyc.unlink()

    def restore_caches(self, files):
        self.clear_caches(files)
        by_name = {f"{p.parent.name}.{p.stem}": p for p in files}
        for saved in self.stash.iterdir():
            folder, stem = saved.name.split(".")[:2]
            path = by_name.get(f"{folder}.{stem}")
            if path is not None:
                shutil.copy2(saved, path.parent / "__pycache__" / saved.name[len(folder) + 1:])


# -- running -------------------------------------------------------------------------
def run_tests(where: Path, tests: list[str], timeout: float | None) -> tuple[str, float, str]:
    """('passed' | 'failed' | 'timeout', seconds, the first failing test or '')."""
    command = ["nice", "-n", "15", sys.executable, "-m", "pytest", "-x", "-q",
               "-p", "no:cacheprovider", *tests]
    with open(LOCK, "w") as lock, tempfile.TemporaryFile("w+") as log:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one test run at a time, whoever started it
        began = time.monotonic()
        process = subprocess.Popen(command, cwd=where, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return "timeout", time.monotonic() - began, ""
        except BaseException:  # interrupted: take the test run down too
            os.killpg(process.pid, signal.SIGKILL)
            raise
        seconds = time.monotonic() - began
        log.seek(0)
        output = log.read()
    if code == 0:
        return "passed", seconds, ""
    failed = re.search(r"^(?:FAILED|ERROR) (\S+)", output, re.M)
    return "failed", seconds, failed.group(1) if failed else output.strip()[-200:]


def mutate_module(module: str, tests: list[str], args, scratch: Scratch) -> dict:
    path = scratch.dir / module
    source = path.read_text()
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    everything = find_mutants(source)
    if args.at:
        chosen = [m for m in everything if f"{m.line}:{m.col}" in args.at]
    else:
        chosen = sample(module, everything, args.sample, args.seed)
    equivalents = load_equivalents().get(module, [])
    previous = read_results(module, args.out) if args.survivors else None
    if previous is not None and previous["source"] != digest:
        print(f"{module}: source changed since the last run; running every mutant")
        previous = None
    importers = scratch.importers(module)
    original_times = path.stat()

    rows, todo = [], []
    for mutant in chosen:
        where = f"{mutant.line}:{mutant.col}"
        reason = equivalent_reason(equivalents, source, mutant)
        old = previous["rows"].get((where, mutant.operator, mutant.edit)) if previous else None
        if reason is not None:
            rows.append(["equivalent", where, mutant, reason])
        elif old is not None and old[0] in ("killed", "timeout"):
            rows.append([old[0], where, mutant, old[5]])
        else:
            rows.append(["pending", where, mutant, ""])
            todo.append(rows[-1])

    print(f"{module}: {len(chosen)} of {len(everything)} mutants, {len(todo)} to run; "
          f"tests {' '.join(tests)}")
    baseline = timeout = 0.0
    if todo:
        status, _, failure = run_tests(scratch.dir, tests, None)  # warms Numba's cache
        if status != "passed":
            raise SystemExit(f"{module}: the tests fail without a mutant: {failure}")
        scratch.stash_caches(importers)
        scratch.clear_caches(importers)
        _, baseline, _ = run_tests(scratch.dir, tests, None)  # what each mutant recompiles
        scratch.restore_caches(importers)
        timeout = args.timeout_factor * baseline + 30
        print(f"  baseline {baseline:.1f} s (recompiling {len(importers)} modules' kernels),"
              f" timeout {timeout:.0f} s")
    for n, row in enumerate(todo, 1):
        mutant = row[2]
        path.write_text(mutant.apply(source))
        scratch.clear_caches(importers)
        status, seconds, failure = run_tests(scratch.dir, tests, timeout)
        path.write_text(source)
        os.utime(path, ns=(original_times.st_atime_ns, original_times.st_mtime_ns))
        scratch.restore_caches(importers)
        shutil.rmtree(scratch.dir / ".hypothesis", ignore_errors=True)
        row[0] = {"passed": "survived", "failed": "killed", "timeout": "timeout"}[status]
        row[3] = failure
        print(f"  [{n}/{len(todo)}] {row[0]:8s} {row[1]:>8s} {mutant.operator}: "
              f"{mutant.edit}  ({seconds:.0f} s) {failure[:80]}", flush=True)
        if not args.at:
            write_results(module, tests, rows, source, digest, len(everything), args,
                          baseline)
    if args.at:
        return score(rows)
    return write_results(module, tests, rows, source, digest, len(everything), args, baseline)


# -- results files -------------------------------------------------------------------
def score(rows) -> dict:
    counts = {s: sum(r[0] == s for r in rows)
              for s in ("killed", "timeout", "survived", "equivalent", "pending")}
    live = counts["killed"] + counts["timeout"] + counts["survived"] + counts["pending"]
    counts["score"] = 100.0 * (counts["killed"] + counts["timeout"]) / live if live else 100.0
    return counts


def write_results(module, tests, rows, source, digest, total, args, baseline) -> dict:
    counts = score(rows)
    lines = [f"# {module}: {counts['killed'] + counts['timeout']} of "
             f"{counts['killed'] + counts['timeout'] + counts['survived'] + counts['pending']}"
             f" non-equivalent mutants killed ({counts['score']:.1f} %); "
             f"{counts['survived']} survived, {counts['timeout']} by timeout, "
             f"{counts['equivalent']} equivalent",
             f"# command: python tools/mutate.py {module} --sample {args.sample} "
             f"--seed {args.seed}",
             f"# source: sha256 {digest}; {len(rows)} of {total} mutants",
             f"# tests: {' '.join(tests)}",
             f"# baseline run {baseline:.1f} s; timeout {args.timeout_factor} x baseline + 30 s",
             HEADER]
    for status, where, mutant, note in rows:
        fields = [status, where, mutant.operator, mutant.edit, code_line(source, mutant),
                  " ".join(note.split())]
        lines.append("\t".join(fields))
    args.out.mkdir(parents=True, exist_ok=True)
    results_path(module, args.out).write_text("\n".join(lines) + "\n")
    return counts


def read_results(module: str, folder: Path = RESULTS) -> dict | None:
    path = results_path(module, folder)
    if not path.exists():
        return None
    text = path.read_text().splitlines()
    digest = re.search(r"sha256 (\w+)", text[2]).group(1)
    rows = [line.split("\t") for line in text[text.index(HEADER) + 1:]]
    return {"source": digest, "rows": {(r[1], r[2], r[3]): r for r in rows},
            "list": rows}


def _table_row(name, rows) -> str:
    c = score(rows)
    return (f"| {name} | {len(rows)} | {c['killed']} | {c['timeout']} | {c['survived']} | "
            f"{c['equivalent']} | {c['score']:.0f} % |")


def write_table():
    """The per-module score table into mutation/README.md, between its markers: the
    modules of each package in targets.yaml's order, each package's total, then all."""
    lines = ["| module | mutants | killed | timeout | survived | equivalent | score |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    every = []
    modules = list(load_targets())
    for package in ("trainer", "devices", "devsim"):
        in_package = []
        for module in (m for m in modules if m.split("/")[0] == package):
            results = read_results(module)
            if results is not None:
                rows = [[r[0]] for r in results["list"]]
                in_package += rows
                lines.append(_table_row(f"`{module}`", rows))
        if in_package:
            lines.append(_table_row(f"**{package}/ in all**", in_package))
            every += in_package
    lines.append(_table_row("**all**", every))
    readme = RESULTS / "README.md"
    text = readme.read_text()
    head, rest = text.split(TABLE_START)
    _, tail = rest.split(TABLE_END)
    readme.write_text(head + TABLE_START + "\n" + "\n".join(lines) + "\n" + TABLE_END + tail)
    print("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="module paths, e.g. trainer/qzo.py")
    parser.add_argument("--core", action="store_true",
                        help="every module listed in mutation/targets.yaml")
    parser.add_argument("--sample", type=int, default=40,
                        help="mutants per module (0: all); default 40")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed; default 0")
    parser.add_argument("--timeout-factor", type=float, default=3.0,
                        help="a mutant's run may take this many baselines (+30 s)")
    parser.add_argument("--survivors", action="store_true",
                        help="rerun only mutants that survived last time (same source)")
    parser.add_argument("--at", type=lambda text: set(text.split(",")), default=set(),
                        help="only the mutants at LINE:COL[,LINE:COL...] of one module "
                             "(printed, no results file written)")
    parser.add_argument("--list", action="store_true",
                        help="print the sampled mutants and exit")
    parser.add_argument("--table", action="store_true",
                        help="write the score table of mutation/README.md and exit")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="folder of the result files (default mutation/; another "
                             "for a check sample that must not replace the recorded one)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up the scratch copy
    if args.table:
        return write_table()
    targets = load_targets()
    modules = list(targets) if args.core else args.modules
    unknown = [m for m in modules if m not in targets]
    if unknown or not modules:
        parser.error(f"name modules listed in mutation/targets.yaml: unknown {unknown}"
                     if unknown else "name a module or use --core")
    if args.list:
        for module in modules:
            source = (ROOT / module).read_text()
            for m in sample(module, find_mutants(source), args.sample, args.seed):
                print(f"{module}:{m.line}:{m.col}\t{m.operator}\t{m.edit}")
        return None
    scratch = Scratch(keep=args.keep)
    try:
        for module in modules:
            counts = mutate_module(module, targets[module], args, scratch)
            where = "" if args.at else f" -> {results_path(module, args.out)}"
            print(f"{module}: {counts['score']:.1f} % killed, {counts['survived']} survived,"
                  f" {counts['equivalent']} equivalent{where}")
    finally:
        scratch.close()
    if args.keep:
        print(f"scratch copy kept in {scratch.dir}")
    return None


if __name__ == "__main__":
    main()
