"""The ``devsim`` command: run | validate | inspect | plot | tune | docs.

Handlers are plain functions returning an exit code, so tests call them directly.
Bad input (a config error, a missing file, a file that is not a trace) prints one
line per problem on stderr and exits with status 2, without a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from devsim.config import ConfigError
from devsim.tune import OBJECTIVES

EXIT_BAD_INPUT = 2


def _fail(messages) -> int:
    for line in ([messages] if isinstance(messages, str) else messages):
        print(f"devsim: error: {line}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _load(args):
    from devsim.runner import load_config
    config = load_config(args.config, args.set or ())
    if getattr(args, "seed", None) is not None:
        config = config.replace(seed=args.seed)
    return config


def cmd_run(args) -> int:
    from devsim.runner import run
    config = _load(args)
    summary = run(config, out=args.out, progress=not args.quiet, source=Path(args.config).name,
                  resume=args.resume)
    final = summary["final"]
    metric = (f"test accuracy {final['test_accuracy']:.4f} (best {summary['best_test_accuracy']:.4f})"
              if "test_accuracy" in final else f"test cost {final['test_cost']:.4g}")
    print(f"{config.name}: {summary['steps']:,} hardware steps in {summary['wall_seconds']:.1f} s "
          f"({summary['steps_per_second']:,.0f} steps/s); {metric}; trace {summary['trace']}")
    return 0


def cmd_validate(args) -> int:
    from devsim.config import dump
    config = _load(args)
    print(dump(config) if args.show else f"{args.config}: ok")
    return 0


def _inspect_data(path) -> dict:
    from devsim.trace import read_trace
    trace = read_trace(path)
    ev = trace.evals
    info = {"path": str(path), "complete": trace.complete, "seed": trace.attrs.get("seed"),
            "created_utc": trace.attrs.get("created_utc"),
            "versions": json.loads(trace.attrs.get("versions", "{}")),
            "hardware_steps": int(trace.scalars["step"][-1]) if len(trace.scalars["step"]) else 0,
            "scalar_rows": int(len(trace.scalars["step"])), "evaluations": int(len(ev["step"])),
            "snapshots": int(len(trace.snapshots["step"])), "summary": trace.summary,
            "config_yaml": trace.config_yaml}
    for name, values in ev.items():
        if name != "step" and len(values):
            best = values.max() if "accuracy" in name else values.min()
            info[f"final_{name}"] = float(values[-1])
            info[f"best_{name}"] = float(best)
    return info


def cmd_inspect(args) -> int:
    info = _inspect_data(args.trace)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"trace      {info['path']} ({'complete' if info['complete'] else 'INCOMPLETE'})")
    print(f"created    {info['created_utc']}  seed {info['seed']}  "
          f"devsim {info['versions'].get('devsim')}")
    print(f"hardware   {info['hardware_steps']:,} steps; {info['scalar_rows']} scalar rows, "
          f"{info['evaluations']} evaluations, {info['snapshots']} parameter snapshots")
    for key in sorted(k for k in info if k.startswith(("final_", "best_"))):
        print(f"{key:<22} {info[key]:.6g}")
    summary = info["summary"]
    if summary:
        print(f"wall time  {summary['wall_seconds']:.2f} s ({summary['steps_per_second']:,.0f} steps/s)")
        if summary.get("steps_to_target") is not None:
            print(f"time to target  {summary['steps_to_target']:,} hardware steps")
        if summary.get("memory"):
            from devices.mcu_memory import MemoryReport
            memory = summary["memory"]
            print("MCU memory\n" + MemoryReport(memory["flash"], memory["sram"]).table())
    if args.config:
        print("config:\n" + info["config_yaml"])
    return 0


def cmd_plot(args) -> int:
    from devsim.plot import plot_traces
    out = plot_traces(args.traces, args.out, x=args.x)
    print(f"wrote {out}")
    return 0


def cmd_tune(args) -> int:
    import numpy as np

    from devsim import tune
    if bool(args.grid) == bool(args.random):
        return _fail("tune: give either --grid axes or --random axes (with --trials)")
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


def cmd_docs(args) -> int:
    from devsim.docs import config_reference
    text = config_reference()
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="devsim", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp):
        sp.add_argument("config", help="run config (YAML)")
        sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a config value, e.g. train.optimizer.lr=0.5 (repeatable)")
        sp.add_argument("--seed", type=int, help="override the config's seed")

    sp = sub.add_parser("run", help="train as configured and write an HDF5 trace")
    with_config(sp)
    sp.add_argument("--out", help="trace file (default: trace.path or runs/<name>.h5)")
    sp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sp.add_argument("--resume", action="store_true",
                    help="continue a killed run from its checkpoint (same config and --set)")
    sp.set_defaults(handler=cmd_run)

    sp = sub.add_parser("validate", help="check a config and report every problem")
    with_config(sp)
    sp.add_argument("--show", action="store_true", help="print the resolved config")
    sp.set_defaults(handler=cmd_validate)

    sp = sub.add_parser("inspect", help="summarise what a trace holds")
    sp.add_argument("trace")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.add_argument("--config", action="store_true", help="also print the resolved config")
    sp.set_defaults(handler=cmd_inspect)

    sp = sub.add_parser("plot", help="plot cost and accuracy of one or more traces (PNG)")
    sp.add_argument("traces", nargs="+")
    sp.add_argument("--out", default="trace.png", help="PNG file to write")
    sp.add_argument("--x", choices=("steps", "seconds"), default="steps",
                    help="horizontal axis: hardware steps or wall-clock seconds")
    sp.set_defaults(handler=cmd_plot)

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

    sp = sub.add_parser("docs", help="print the config reference generated from the schema")
    sp.add_argument("--out", help="write to this file instead")
    sp.set_defaults(handler=cmd_docs)
    return p


def main(argv=None) -> int:
    from devsim.trace import TraceError
    args = parser().parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as exc:
        return _fail(exc.messages)
    except TraceError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{exc.filename or ''}: {exc.strerror or exc}")
    except KeyboardInterrupt:
        return _fail("interrupted; the partial trace keeps every flushed row")


if __name__ == "__main__":
    sys.exit(main())
