"""``devsim tune`` and ``devsim tune-report``: run or resume a study; report what it found."""
from __future__ import annotations

import yaml

from devsim.cli.common import fail

OBJECTIVE_CHOICES = ("final_test_accuracy", "best_test_accuracy", "final_test_cost",
                     "steps_to_target", "energy_j", "hardware_time_s", "pulses")


def _axes_from_flags(args):
    """The search space, sampler and trial count that ``--grid`` / ``--random`` ask for
    (Optuna's grid and random samplers), or None without them."""
    from devsim.config import ConfigError
    from devsim.tune import SamplerParams, SearchKey
    if args.grid and args.random:
        raise ConfigError(["tune: give --grid or --random axes, not both"])
    space, size = [], 1
    for item in args.grid or ():
        key, values = _split(item, "--grid", "KEY=V1,V2,...")
        choices = tuple(yaml.safe_load(v) for v in values.split(",") if v.strip())
        space.append(SearchKey(key, "categorical", choices=choices))
        size *= len(choices)
    for item in args.random or ():
        key, bounds = _split(item, "--random", "KEY=LO:HI or KEY=log:LO:HI")
        parts = bounds.split(":")
        log = parts[0] == "log"
        try:
            lo, hi = (yaml.safe_load(p) for p in parts[int(log):])
            integer = all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi))
            space.append(SearchKey(key, "int" if integer else "float", low=float(lo),
                                   high=float(hi), log=log))
        except (ValueError, TypeError):
            raise ConfigError([f"--random {item}: expected KEY=LO:HI or KEY=log:LO:HI with "
                               f"LO <= HI (LO > 0 for log)"]) from None
    if not space:
        return None
    if args.grid:
        return tuple(space), SamplerParams("grid"), size
    return tuple(space), SamplerParams("random"), None


def _split(item: str, flag: str, form: str) -> tuple[str, str]:
    from devsim.config import ConfigError
    if "=" not in item:
        raise ConfigError([f"{flag} {item}: expected {form}"])
    key, rest = item.split("=", 1)
    return key.strip(), rest


def _study_params(args, base):
    """The config's ``tune`` section with the command line's axes, objective and seeds."""
    from devsim.config import ConfigError
    from devsim.params import ParamError
    from devsim.tune import Objective, TuneParams
    tune = base.tune or TuneParams()
    changes = {}
    axes = _axes_from_flags(args)
    if axes is not None:
        space, sampler, size = axes
        changes.update(space=space, sampler=sampler, constraints=(),
                       trials=size if size is not None else 8)
    elif base.tune is None:
        raise ConfigError([f"{args.config}: tune: missing; add a tune: section "
                           f"(docs/config.md) or give --grid or --random"])
    if args.trials:
        changes["trials"] = args.trials
    if args.objective:
        changes["objectives"] = (Objective(args.objective),)
        changes["pruner"] = tune.pruner.replace(type="none")
    if args.seeds is not None:
        changes["seeds"] = args.seeds
    if args.search_seed is not None:
        changes["seed"] = args.search_seed
    try:
        return tune.replace(**changes)
    except ParamError as exc:
        raise ConfigError([f"{args.config}: tune.{exc}"]) from None


def cmd_tune(args) -> int:
    from devsim.tune import study as bookkeeping
    from devsim.tune.launch import optimize
    from devsim.tune.report import table
    from devsim.tune.space import Source
    base = Source.read(args.config, args.set or ()).load()
    tune = _study_params(args, base)
    study = optimize(args.config, args.out, tune=tune, storage=args.storage, study=args.study,
                     workers=args.workers, overrides=args.set or ())
    print(table(study, tune, top=args.top))
    trials = study.get_trials(deepcopy=False)
    finished, counted = bookkeeping.done(trials), sum(map(bookkeeping.counts, trials))
    if counted < tune.trials:
        print(f"study incomplete: {finished} of {tune.trials} trials; run the same command "
              f"again to finish it")
        return 1
    if finished < counted:
        print(f"{counted - finished} trial(s) still running in other workers")
    return 0


def cmd_tune_report(args) -> int:
    from devsim.tune.report import load_study, plot, reference, study_config, table
    study = load_study(args.study, args.storage)
    tune = study_config(study).tune
    references = []
    for item in args.reference or ():
        if "=" not in item:
            return fail(f"--reference {item}: expected LABEL=TRACE[,TRACE...]")
        label, paths = item.split("=", 1)
        references.append(reference(label, [p for p in paths.split(",") if p], tune))
    print(table(study, tune, args.top, references))
    if not args.no_plots:
        for path in plot(study, tune, args.out or args.study, references):
            print(f"wrote {path}")
    return 0


def register(sub) -> None:
    sp = sub.add_parser("tune", help="search config values on Optuna: one or more objectives, "
                                     "many runs, resumable, several workers or machines")
    sp.add_argument("config", help="run config (YAML) with a tune: section, or any run "
                                   "config with --grid / --random")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a config value for every trial (repeatable)")
    sp.add_argument("--trials", type=_positive, help="trials the study should hold "
                                                     "(default: tune.trials)")
    sp.add_argument("--workers", type=_positive, default=1,
                    help="worker processes on this machine (each gets cores / workers threads)")
    sp.add_argument("--storage", metavar="URL",
                    help="Optuna RDB URL shared by workers on several machines, e.g. "
                         "postgresql://user:password@host/db (default: a journal file in "
                         "the study folder)")
    sp.add_argument("--study", metavar="NAME", help="study name (default: the config's name)")
    sp.add_argument("--out", help="study folder: journal, study.json, trial traces "
                                  "(default: runs/tune/<study>; share it between machines)")
    sp.add_argument("--grid", action="append", metavar="KEY=V1,V2,...",
                    help="grid axis (repeatable): Optuna's grid sampler over every combination")
    sp.add_argument("--random", action="append", metavar="KEY=[log:]LO:HI",
                    help="random-search axis (repeatable): Optuna's random sampler, --trials "
                         "draws (default 8)")
    sp.add_argument("--seeds", type=_positive, help="runs per trial (default: tune.seeds)")
    sp.add_argument("--search-seed", type=int, help="study seed (default: tune.seed)")
    sp.add_argument("--objective", choices=OBJECTIVE_CHOICES,
                    help="one objective in its natural direction, instead of tune.objectives")
    sp.add_argument("--top", type=_positive, default=5, help="best trials listed (one objective)")
    sp.set_defaults(handler=cmd_tune)

    sp = sub.add_parser("tune-report", help="a study's best trials or Pareto front, and plots")
    sp.add_argument("study", help="study folder (holds study.json)")
    sp.add_argument("--storage", metavar="URL", help="the study's RDB URL (if study.json "
                                                     "hides its password)")
    sp.add_argument("--top", type=_positive, default=10, help="best trials listed (one objective)")
    sp.add_argument("--reference", action="append", metavar="LABEL=TRACE[,TRACE...]",
                    help="runs to compare with (e.g. a preset's defaults), their objectives "
                         "averaged over the traces (repeatable)")
    sp.add_argument("--out", help="folder for the PNG plots (default: the study folder)")
    sp.add_argument("--no-plots", action="store_true", help="the table only")
    sp.set_defaults(handler=cmd_tune_report)


def _positive(text: str) -> int:
    import argparse
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value
