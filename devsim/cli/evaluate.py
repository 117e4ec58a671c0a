"""``devsim evaluate``: the accuracy of a trained network after drift, programmed afresh
onto its chip for each repeat and read at times after programming."""
from __future__ import annotations

from pathlib import Path

from devsim.cli.common import fail


def _outputs(args) -> tuple[Path, Path]:
    """The CSV and PNG paths of ``--out PREFIX`` (default: beside the trace)."""
    trace = Path(args.trace)
    prefix = Path(args.out) if args.out else trace.with_name(
        trace.name.removesuffix(".partial").rsplit(".", 1)[0] + "_drift")
    return prefix.with_name(prefix.name + ".csv"), prefix.with_name(prefix.name + ".png")


def cmd_evaluate(args) -> int:
    from devsim.drift import evaluate_drift, parse_times
    times = parse_times(args.at)
    csv, png = _outputs(args)
    for path in (csv, png):
        if path.exists() and not args.overwrite:
            return fail(f"{path}: already there; choose another --out or --overwrite")
        if not path.parent.is_dir():
            return fail(f"{path.parent}: no such folder for the output")
    compensation = {"on": True, "off": False, None: None}[args.compensation]
    table = evaluate_drift(args.trace, times, compensation=compensation,
                           repeats=args.repeats, seed=args.seed, overrides=args.set or ())
    print(table.text())
    table.write_csv(csv)
    table.plot(png)
    print(f"wrote {csv} and {png}")
    return 0


def register(sub) -> None:
    sp = sub.add_parser("evaluate", help="accuracy of a trained network after drift, over "
                                         "fresh programmings of its chip (table + PNG)")
    sp.add_argument("trace", help="run trace (HDF5) holding the trained parameters")
    sp.add_argument("--at", required=True, metavar="TIMES",
                    help="times after programming, e.g. 1s,1h,1d,1y (units s, min, h, d, "
                         "w, y)")
    sp.add_argument("--compensation", choices=("on", "off"),
                    help="global drift compensation on every device that has it "
                         "(default: as trained)")
    sp.add_argument("--repeats", type=int, default=10,
                    help="fresh programmings of the chip (default 10)")
    sp.add_argument("--seed", type=int,
                    help="seed of the repeats' streams (default: the run's seed)")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="change the trace's config before the chip is built, e.g. "
                         "network.device.prog_noise=2 (repeatable)")
    sp.add_argument("--out", metavar="PREFIX",
                    help="write PREFIX.csv and PREFIX.png (default: <trace>_drift beside "
                         "the trace)")
    sp.add_argument("--overwrite", action="store_true",
                    help="replace outputs already at PREFIX.csv / PREFIX.png")
    sp.set_defaults(handler=cmd_evaluate)
