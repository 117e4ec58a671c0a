"""``devsim activity`` and ``devsim analyse``: record node activity of a trained chip
under a condition; say which neurons changed between two recordings."""
from __future__ import annotations

import json

from devsim.cli.common import fail


def cmd_activity(args) -> int:
    from devsim.analysis.activity import FRESH, load_condition, record_activity
    from devsim.analysis.records import write_activity
    if args.fresh_out and not args.condition:
        return fail("--fresh-out records the chip before a condition's faults; "
                    "give --condition")
    conditions, outs, sources = [FRESH], [args.out], [""]
    if args.condition:
        conditions, sources = [load_condition(args.condition)], [args.condition]
        if args.fresh_out:  # the same chip first, before the faults
            conditions, outs = [FRESH] + conditions, [args.fresh_out] + outs
            sources = [""] + sources
    try:
        records = record_activity(args.trace, conditions, chip_seed=args.chip_seed,
                                  overrides=args.set or (), inputs=args.inputs,
                                  samples=args.samples, sample_seed=args.sample_seed,
                                  noisy=args.noisy, sources=sources)
    except ValueError as exc:
        return fail(f"{args.trace}: {exc}")
    for record, out in zip(records, outs):
        write_activity(out, record)
        rows, nodes = record.activity.shape
        print(f"wrote {out}: {rows} inputs x {nodes} nodes, condition {record.condition!r}, "
              f"chip seed {record.attrs['chip_seed']}")
    return 0


def cmd_analyse(args) -> int:
    from devsim.analysis.compare import compare, heatmap, summary
    from devsim.analysis.records import read_activity
    a, b = read_activity(args.a), read_activity(args.b)
    try:
        comparison = compare(a, b, method=args.method, lambda1=args.lambda1,
                             lambda2=args.lambda2, criterion=args.criterion,
                             path_points=args.path_points)
    except ValueError as exc:
        return fail(f"{args.a}, {args.b}: {exc}")
    info = summary(comparison, top=args.top)
    png = heatmap(comparison, args.png, title=f"{args.a} vs {args.b}: {info['method']}")
    info["png"] = str(png)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    chosen = (f" (chosen by {info['criterion']} over {args.path_points} values)"
              if info["criterion"] else "")
    print(f"{info['method']}: {args.a} ({info['samples'][0]} rows) vs {args.b} "
          f"({info['samples'][1]} rows), {info['nodes']} nodes; lambda1 {info['lambda1']:.3g}, "
          f"lambda2 {info['lambda2']:.3g} per sample{chosen}; "
          f"{'converged' if info['converged'] else 'NOT converged'} in {info['iterations']} "
          f"iterations")
    if info["dropped"]:
        print(f"constant in both, not fitted: {', '.join(info['dropped'])}")
    suspected = info["suspected"]
    print(f"suspected nodes ({len(suspected)}): "
          + (", ".join(s["node"] for s in suspected) if suspected else "none"))
    print(f"{'rank':>4}  {'node':<10} {'score':>10}  enters at lambda2")
    for i, row in enumerate(info["ranking"], 1):
        print(f"{i:>4}  {row['node']:<10} {row['score']:>10.4g}  {row['enters_at']:.3g}")
    print(f"wrote {png}")
    return 0


def register(sub) -> None:
    sp = sub.add_parser("activity", help="record node activity of a trained chip under a "
                                         "condition (HDF5)")
    sp.add_argument("trace", help="trace of a training run (its config and last snapshot)")
    sp.add_argument("--out", required=True, help="activity record to write")
    sp.add_argument("--condition", help="condition file (YAML): the faulty neurons; "
                                        "none: the fresh chip")
    sp.add_argument("--fresh-out", help="also record the same chip before the condition's "
                                        "faults, to this file")
    sp.add_argument("--chip-seed", type=int,
                    help="build another chip of the same design (default: the trace's seed)")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="change the trace's config before building the chip, e.g. "
                         "network.device.prog_noise=0.01 (repeatable)")
    sp.add_argument("--inputs", choices=("all", "train", "test"), default="all",
                    help="which inputs of the data set to run")
    sp.add_argument("--samples", type=int, default=0, help="run this many of them (0: all)")
    sp.add_argument("--sample-seed", type=int, default=0, help="seed of that draw")
    sp.add_argument("--noisy", action="store_true",
                    help="let the chip's intrinsic node noise act (network.node_noise)")
    sp.set_defaults(handler=cmd_activity)

    sp = sub.add_parser("analyse", help="which nodes changed between two activity records "
                                        "(joint graphical lasso; text and PNG)")
    sp.add_argument("a", help="activity record of condition A (say, the fresh chip)")
    sp.add_argument("b", help="activity record of condition B")
    sp.add_argument("--method", choices=("pnjgl", "fused", "group"), default="pnjgl",
                    help="perturbed-node joint graphical lasso, or a joint graphical lasso "
                         "baseline")
    sp.add_argument("--lambda1", type=float, default=0.3,
                    help="l1 weight per sample (on standardised activity)")
    sp.add_argument("--lambda2", type=float,
                    help="difference weight per sample (default: chosen on a path)")
    sp.add_argument("--criterion", choices=("bic", "ebic", "aic"), default="ebic",
                    help="information criterion that chooses lambda2")
    sp.add_argument("--path-points", type=int, default=12, help="lambda2 values on the path")
    sp.add_argument("--top", type=int, default=10, help="ranked nodes to list")
    sp.add_argument("--png", default="analysis.png", help="heat map to write")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp.set_defaults(handler=cmd_analyse)
