"""Start or resume a study: check it, claim its folder, open its storage, run workers."""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
from pathlib import Path
from typing import Callable

from devsim import config as cfg
from devsim.config import ConfigError
from devsim.params import ParamError
from devsim.tune import study as bookkeeping
from devsim.tune.params import TuneParams
from devsim.tune.space import Source, check
from devsim.tune.worker import WorkerSpec, pool_environment, work

DEFAULT_ROOT = Path("runs/tune")
"""Study folders go to ``runs/tune/<study name>`` unless ``out`` says otherwise."""


def optimize(config, out: str | Path | None = None, *, tune: TuneParams | None = None,
             storage: str | None = None, study: str | None = None, workers: int = 1,
             trials: int | None = None, overrides=(), log: Callable[[str], None] = print):
    """Run the study of ``config`` until it holds its trials; the Optuna study.

    ``config`` is a run config file (its ``tune:`` section is the study, the rest every
    trial's base) or a :class:`~devsim.runconfig.RunConfig`. ``tune`` replaces the
    config's section, ``trials`` its trial count, ``overrides`` are ``--set`` values for
    every trial. The study is named ``study`` (default: the config's name) and lives in
    ``storage`` (an Optuna RDB URL; default: a journal file in the study folder
    ``out``, by default ``runs/tune/<study>``). Running it again resumes it: lost trials
    run again and the count is completed. ``workers`` processes share the cores.
    Raises :class:`ConfigError` for a study that cannot run, before any trial does.
    """
    if isinstance(config, (str, Path)):
        source = Source.read(config, overrides)
    else:
        source = Source(cfg.dump(config), fixed=tuple(overrides))
    base = source.load()
    tune = tune or base.tune
    if tune is None:
        raise ConfigError([f"{source.name}: tune: missing; add a tune: section "
                           f"(docs/config.md) or give --grid or --random"])
    if trials is not None:
        try:
            tune = tune.replace(trials=trials)
        except ParamError as exc:
            raise ConfigError([f"{source.name}: --trials: tune.{exc}"]) from None
    if workers < 1:
        raise ConfigError([f"--workers: must be >= 1, got {workers}"])
    check(source, tune)
    name = study or base.name
    folder = Path(out) if out is not None else DEFAULT_ROOT / name
    label = bookkeeping.storage_label(storage)
    sha = bookkeeping.fingerprint(base, tune)
    op = bookkeeping.optuna()
    # a database that cannot be opened is refused before the folder is claimed; the
    # journal lives in the folder, so it opens after
    handle = bookkeeping.open_storage(storage, folder) if storage is not None else None
    bookkeeping.claim(folder, name, label, sha)
    handle = handle or bookkeeping.open_storage(None, folder)
    opened = op.create_study(storage=handle, study_name=name, directions=tune.directions,
                             load_if_exists=True)
    known = opened.user_attrs.get("config_sha256")
    if known is None:
        opened.set_user_attr("config_sha256", sha)
        opened.set_user_attr("config_yaml", cfg.dump(base.replace(tune=tune)))
    elif known != sha:
        raise ConfigError([f"--study {name}: the study of that name in {label} was made "
                           f"from another config; choose another --study"])
    with bookkeeping.folder_lock(folder):
        lost = bookkeeping.recover(opened, local_only=storage is None)
    finished = bookkeeping.done(opened.get_trials(deepcopy=False))
    log(f"study {name!r} in {label} (folder {folder}): {finished} of {tune.trials} trials "
        f"done" + (f", {len(lost)} lost to run again" if lost else "")
        + f"; {workers} worker(s)")
    specs = [WorkerSpec(source, tune, str(folder), storage, name, i, None)
             for i in range(workers)]
    if workers == 1:
        work(specs[0], log)
    else:
        _pool(specs, log)
    return op.load_study(study_name=name, storage=handle)


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _pool(specs: list[WorkerSpec], log) -> None:
    """Run one worker process per spec (spawned: no state copied from this process),
    each with its share of the cores, and wait for them."""
    threads = max(1, cores() // len(specs))
    context = multiprocessing.get_context("spawn")
    saved = dict(os.environ)
    os.environ.update(pool_environment(threads))  # read by the children as they start
    try:
        processes = [context.Process(target=_worker_main, name=f"devsim-tune-{s.index}",
                                     args=(dataclasses.replace(s, threads=threads),))
                     for s in specs]
        for p in processes:
            p.start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        for p in processes:
            p.join()
    except KeyboardInterrupt:  # the workers got the same signal: let them record it
        for p in processes:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
        raise
    for p in processes:
        if p.exitcode:
            log(f"worker {p.name} ended with exit code {p.exitcode}; run the same command "
                f"again to finish the study")


def _worker_main(spec: WorkerSpec) -> None:
    work(spec, lambda line: print(line, flush=True))
