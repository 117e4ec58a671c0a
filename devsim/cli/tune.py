"""``devsim tune``: many runs over config values."""
from __future__ import annotations

from pathlib import Path

from devsim.cli.common import fail


def cmd_tune(args) -> int:
    import numpy as np

    from devsim import tune
    if bool(args.grid) == bool(args.random):
        return fail("tune: give either --grid axes or --random axes (with --trials)")
    points = (list(tune.grid_points(args.grid)) if args.grid else
              list(tune.random_points(args.random, args.trials, np.random.default_rng(args.search_seed))))
    out_dir = Path(args.out)
    trials = tune.plan(args.config, points, args.seeds, args.set or [], out_dir)
    print(f"tune: {len(points)} points x {args.seeds} seeds = {len(trials)} runs "
          f"on {args.workers} worker(s) -> {out_dir}/results.csv")

    def report(row):
        print(f"  trial {row['trial']:>3} seed {row['seed']}: {row['overrides']}: "
              f"{args.objective} {row[args.objective]:.4g} ({row['wall_seconds']} s)", flush=True)

    results = tune.run_study(args.config, trials, args.set or [], out_dir, args.workers, report)
    point, value = tune.best_point(results, args.objective)
    print(f"best {args.objective} {value:.4g} (mean over seeds): {point}")
    return 0


def register(sub) -> None:
    from devsim.tune import OBJECTIVES
    sp = sub.add_parser("tune", help="grid or random search over config values, many runs")
    sp.add_argument("config", help="base run config (YAML)")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="fixed override for every run")
    sp.add_argument("--grid", action="append", metavar="KEY=V1,V2,...", help="grid axis (repeatable)")
    sp.add_argument("--random", action="append", metavar="KEY=[log:]LO:HI",
                    help="random-search axis (repeatable), with --trials")
    sp.add_argument("--trials", type=int, default=8, help="random-search points (default 8)")
    sp.add_argument("--search-seed", type=int, default=0, help="seed of the random search itself")
    sp.add_argument("--seeds", type=int, default=1, help="runs per point, seeds config.seed + 0..n-1")
    sp.add_argument("--workers", type=int, default=1, help="worker processes")
    sp.add_argument("--objective", choices=sorted(OBJECTIVES),
                    default="final_test_accuracy", help="what 'best' means")
    sp.add_argument("--out", default="runs/tune", help="folder for traces and results.csv")
    sp.set_defaults(handler=cmd_tune)
