"""A study's storage, folder and bookkeeping: which trials count, which were lost.

Storage: by default Optuna's journal file ``journal.log`` in the study folder (safe
for several worker processes of one machine); or any Optuna RDB URL
(``postgresql://user@host/db``), which workers on several machines share. The study
folder holds ``study.json`` (which study it belongs to), the journal, and one trace
per trial run under ``trials/``.

Bookkeeping, the same for every storage: a study is done when it holds ``trials``
trials that *count*: complete, pruned, running, or failed with a reason (a diverged
run, an invalid combination of values, a refused budget). A trial whose worker died
(killed, interrupted, or silent past the RDB heartbeat's grace period) is *lost*: it
does not count, and its values are queued again (Optuna's ``enqueue_trial``), so that
running the same command again completes the study with nothing lost or run twice.
Workers of one machine take trials under a file lock in the study folder; workers of
several machines may race for the last trial, and the loser records its trial as
``surplus`` (not counted) instead of running it.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import threading
import time
import warnings
from pathlib import Path

from devsim import config as cfg
from devsim.config import ConfigError
from devsim.tune.params import SamplerParams, PrunerParams, TuneParams

JOURNAL = "journal.log"
MARKER = "study.json"
TRIALS = "trials"
HEARTBEAT_S = 20
"""RDB storages: a running trial's worker records a heartbeat this often (seconds)..."""
GRACE_S = 120
"""...and a trial silent for this long is failed as lost (Optuna's heartbeat)."""


def optuna():
    """Optuna, imported on first use (the ``tune`` extra), quiet about its own progress."""
    try:
        import optuna as module
    except ImportError:
        raise ConfigError(["tune: Optuna is not installed (pip install 'devsim-lab[tune]')"]) from None
    module.logging.set_verbosity(module.logging.WARNING)
    return module


# ---------------------------------------------------------------- storage and folder
def storage_label(url: str | None) -> str:
    """How ``study.json`` and messages name a storage: ``journal``, or the RDB URL with
    its password hidden."""
    if url is None:
        return "journal"
    from sqlalchemy.engine import make_url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 (SQLAlchemy's URL errors vary by version)
        raise ConfigError([f"--storage {url}: not a database URL "
                           f"(e.g. postgresql://user:password@host/db)"]) from None


def open_storage(url: str | None, folder: Path):
    """The Optuna storage: the folder's journal file, or the RDB at ``url`` with a
    heartbeat (so trials of a dead worker on any machine are failed and retried)."""
    op = optuna()
    if url is None:
        from optuna.storages.journal import JournalFileBackend, JournalStorage
        return JournalStorage(JournalFileBackend(str(folder / JOURNAL)))
    for attempt in range(5):
        try:
            with warnings.catch_warnings():  # the heartbeat is "experimental" to Optuna
                warnings.simplefilter("ignore", op.exceptions.ExperimentalWarning)
                return op.storages.RDBStorage(_with_driver(url), heartbeat_interval=HEARTBEAT_S,
                                              grace_period=GRACE_S,
                                              engine_kwargs={"pool_pre_ping": True})
        except Exception as exc:  # noqa: BLE001 (driver, network and schema errors alike)
            if not lost_schema_race(exc) or attempt == 4:
                reason = " ".join(str(exc).split())[:300]
                raise ConfigError([f"--storage {storage_label(url)}: cannot open the study "
                                   f"database: {type(exc).__name__}: {reason}"]) from None
            time.sleep(0.5 * (attempt + 1))


def lost_schema_race(exc: Exception) -> bool:
    """Whether opening the storage failed only because another worker was creating the
    same new database's tables at that moment: the loser sees a duplicate key (an
    integrity error) or a table or type that "already exists" (PostgreSQL's
    DuplicateTable, SQLite's and MySQL's errors alike), and finds the tables on the
    next try."""
    if type(exc).__name__ == "IntegrityError":
        return True
    cause = getattr(exc, "orig", None) or exc
    return "already exists" in str(cause)


def _with_driver(url: str) -> str:
    """``postgresql://`` with the PostgreSQL driver that is installed (the ``postgres``
    extra installs psycopg 3; SQLAlchemy's default for the bare scheme depends on its
    version); any other URL as it is."""
    import importlib.util
    if url.startswith("postgresql://"):
        for module, driver in (("psycopg", "psycopg"), ("psycopg2", "psycopg2")):
            if importlib.util.find_spec(module):
                return f"postgresql+{driver}://" + url[len("postgresql://"):]
    return url


def fingerprint(config, tune: TuneParams) -> str:
    """What makes a study itself: the resolved base config and tune section, except the
    trial count (raising it continues the study)."""
    text = cfg.dump(config.replace(tune=tune.replace(trials=1)))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def claim(folder: Path, study: str, storage: str, sha: str) -> None:
    """Make ``folder`` the folder of this study, or refuse (:class:`ConfigError`) one
    that belongs to another study, another storage or another config, or that holds
    something else."""
    marker = folder / MARKER
    mine = {"study": study, "storage": storage, "config_sha256": sha}
    if marker.is_file():
        try:
            theirs = json.loads(marker.read_text())
        except (OSError, ValueError):
            raise ConfigError([f"{marker}: not a readable study marker"]) from None
        for key, what in (("study", "study"), ("storage", "storage"),
                          ("config_sha256", "config (base config and tune section)")):
            if theirs.get(key) != mine[key]:
                raise ConfigError([f"{folder}: belongs to another study ({what} "
                                   f"{theirs.get(key)!r}, this one {mine[key]!r}); "
                                   f"choose another --out or --study"])
        return
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConfigError([f"{folder}: exists and is not a study folder (no {MARKER}); "
                           f"choose another --out"])
    (folder / TRIALS).mkdir(parents=True, exist_ok=True)
    tmp = marker.with_name(marker.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(mine, indent=1) + "\n")
    os.replace(tmp, marker)


def read_marker(folder: Path) -> dict:
    """The ``study.json`` of a study folder."""
    try:
        return json.loads((folder / MARKER).read_text())
    except FileNotFoundError:
        raise ConfigError([f"{folder}: not a study folder (no {MARKER})"]) from None
    except (OSError, ValueError) as exc:
        raise ConfigError([f"{folder / MARKER}: not a readable study marker ({exc})"]) from None


@contextlib.contextmanager
def folder_lock(folder: Path):
    """An exclusive lock on the study folder, held by one worker process at a time."""
    with open(folder / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------- samplers and pruners
def trial_constraints() -> bool:
    """Whether Optuna takes constraints from each trial (``Trial.set_constraint``, from
    Optuna 5) rather than from a sampler's ``constraints_func`` (Optuna 4)."""
    return hasattr(optuna().trial.Trial, "set_constraint")


def constraint_values(trial) -> list[float]:
    """Optuna 4's ``constraints_func``: the values a worker stored with the trial."""
    return list(trial.user_attrs.get("constraints", [0.0]))


def sampler(tune: TuneParams, seed: int):
    """The Optuna sampler the study asks for, seeded with ``seed``."""
    op = optuna()
    p: SamplerParams = tune.sampler
    kind = p.type if p.type != "auto" else ("tpe" if len(tune.objectives) == 1 else "nsga2")
    constraints = constraint_values if tune.constraints and not trial_constraints() else None
    with warnings.catch_warnings():  # multivariate TPE is "experimental" to Optuna
        warnings.simplefilter("ignore", op.exceptions.ExperimentalWarning)
        if kind == "tpe":
            return op.samplers.TPESampler(seed=seed, n_startup_trials=p.startup_trials,
                                          multivariate=True, group=True, constant_liar=True,
                                          constraints_func=constraints)
        if kind == "nsga2":
            return op.samplers.NSGAIISampler(seed=seed, population_size=p.population_size,
                                             constraints_func=constraints)
        if kind == "cmaes":
            return op.samplers.CmaEsSampler(seed=seed, n_startup_trials=p.startup_trials)
        if kind == "grid":
            return _grid_sampler(op)(tune.grid_space(), seed=seed)
        return op.samplers.RandomSampler(seed=seed)


def _grid_sampler(op):
    """Optuna's grid sampler without its end-of-grid ``study.stop()``, which only works
    inside ``study.optimize`` (workers count their trials themselves)."""

    class Grid(op.samplers.GridSampler):
        def after_trial(self, study, trial, state, values):
            pass

    return Grid


def pruner(tune: TuneParams):
    """The Optuna pruner the study asks for (steps are evaluations: 1 is the first
    evaluation after training starts)."""
    op = optuna()
    p: PrunerParams = tune.pruner
    if p.type == "median":
        return op.pruners.MedianPruner(n_startup_trials=p.startup_trials,
                                       n_warmup_steps=p.warmup_evaluations)
    if p.type == "percentile":
        return op.pruners.PercentilePruner(p.percentile, n_startup_trials=p.startup_trials,
                                           n_warmup_steps=p.warmup_evaluations)
    if p.type == "halving":
        return op.pruners.SuccessiveHalvingPruner(min_resource=p.min_evaluations,
                                                  reduction_factor=p.reduction_factor)
    if p.type == "hyperband":
        return op.pruners.HyperbandPruner(min_resource=p.min_evaluations,
                                          reduction_factor=p.reduction_factor)
    return op.pruners.NopPruner()


# ---------------------------------------------------------------- bookkeeping
def counts(trial) -> bool:
    """Whether ``trial`` counts toward the study's trials (see the module doc)."""
    from optuna.trial import TrialState
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING):
        return True
    return trial.state == TrialState.FAIL and "fail_reason" in trial.user_attrs


def is_lost(trial) -> bool:
    """A failed trial that did not fail on its own: its worker died."""
    from optuna.trial import TrialState
    return (trial.state == TrialState.FAIL and "fail_reason" not in trial.user_attrs
            and "surplus" not in trial.user_attrs)


def done(trials) -> int:
    """Trials that count and have finished."""
    from optuna.trial import TrialState
    return sum(1 for t in trials if counts(t) and t.state != TrialState.RUNNING)


def identity(pid: int | None = None) -> str:
    """``host/boot/pid/start``: a process, told apart from a later one with its pid."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}/{_boot_id()}/{pid}/{_start_ticks(pid)}"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _dead_here(worker: str) -> bool:
    """Whether the process ``worker`` (an :func:`identity`) ran on this machine and is gone."""
    try:
        host, boot, pid, ticks = worker.split("/")
    except ValueError:
        return False
    if host != socket.gethostname() or boot != _boot_id():
        return False
    return identity(int(pid)) != worker if Path("/proc").is_dir() else not _alive(int(pid))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(study, local_only: bool) -> list[int]:
    """Fail the running trials whose worker died, and queue the values of every lost
    trial not yet retried; the numbers of the trials queued again. Call under the folder
    lock: on the journal storage (``local_only``) a running trial with no worker yet
    recorded is then one whose worker died between taking it and recording itself."""
    op = optuna()
    from optuna.trial import TrialState
    if not local_only:
        import warnings
        with warnings.catch_warnings():  # the RDB heartbeat is "experimental" to Optuna
            warnings.simplefilter("ignore", op.exceptions.ExperimentalWarning)
            op.storages.fail_stale_trials(study)
    storage = study._storage
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker")
        if (worker is None and local_only) or (worker is not None and _dead_here(worker)):
            try:  # (Optuna's storage API: Study offers no way to fail another's trial)
                storage.set_trial_user_attr(t._trial_id, "lost", f"worker {worker or '?'} died")
                storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            except op.exceptions.UpdateFinishedTrialError:
                pass  # it finished meanwhile after all
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    queued = []
    for t in filter(is_lost, trials):
        if t.params and t.number not in retried:  # (no values yet: nothing to repeat)
            study.enqueue_trial(dict(t.params), user_attrs={"retry_of": t.number},
                                skip_if_exists=False)
            queued.append(t.number)
    return queued


class Heartbeat:
    """Records a running trial's heartbeat in an RDB storage from a background thread
    every :data:`HEARTBEAT_S` (what Optuna's ``optimize`` does; ask-and-tell workers do
    it themselves). A no-op for storages without a heartbeat."""

    def __init__(self, study, trial):
        self.stop = threading.Event()
        self.thread = None
        storage = study._storage  # Optuna's storage API: the heartbeat is not on Study
        if getattr(storage, "record_heartbeat", None) and _heartbeat_on(storage):
            self.thread = threading.Thread(target=self._beat, args=(storage, trial._trial_id),
                                           daemon=True)
            self.thread.start()

    def _beat(self, storage, trial_id):
        while True:
            storage.record_heartbeat(trial_id)
            if self.stop.wait(HEARTBEAT_S):
                return

    def close(self):
        self.stop.set()
        if self.thread is not None:
            self.thread.join()


def _heartbeat_on(storage) -> bool:
    get = getattr(storage, "get_heartbeat_interval", None)
    return bool(get and get())
