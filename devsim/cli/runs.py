"""``devsim run`` and ``devsim validate``: train as configured; check a config."""
from __future__ import annotations

from pathlib import Path

from devsim.cli.common import add_config_arguments, load_run_config


def cmd_run(args) -> int:
    from devsim.runner import run
    config = load_run_config(args)
    summary = run(config, out=args.out, progress=not args.quiet, source=Path(args.config).name,
                  resume=args.resume, overwrite=args.overwrite)
    final = summary["final"]
    metric = (f"test accuracy {final['test_accuracy']:.4f} (best {summary['best_test_accuracy']:.4f})"
              if "test_accuracy" in final else f"test cost {final['test_cost']:.4g}")
    print(f"{config.name}: {summary['steps']:,} hardware steps in {summary['wall_seconds']:.1f} s "
          f"({summary['steps_per_second']:,.0f} steps/s); {metric}; trace {summary['trace']}")
    if "plain_loop_reasons" in summary:  # what would let a compiled executor run it
        print(f"  update windows ran on the plain loop: {'; '.join(summary['plain_loop_reasons'])}")
    return 0


def cmd_validate(args) -> int:
    from devsim.config import dump
    config = load_run_config(args)
    print(dump(config) if args.show else f"{args.config}: ok")
    return 0


def register(sub) -> None:
    sp = sub.add_parser("run", help="train as configured and write an HDF5 trace")
    add_config_arguments(sp)
    sp.add_argument("--out", help="trace file (default: trace.path or runs/<name>.h5)")
    sp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sp.add_argument("--resume", action="store_true",
                    help="continue a killed run from its checkpoint (same config and --set)")
    sp.add_argument("--overwrite", action="store_true",
                    help="replace a trace already at the output path (refused otherwise)")
    sp.set_defaults(handler=cmd_run)

    sp = sub.add_parser("validate", help="check a config and report every problem")
    add_config_arguments(sp)
    sp.add_argument("--show", action="store_true", help="print the resolved config")
    sp.set_defaults(handler=cmd_validate)
