"""``devsim inspect`` and ``devsim plot``: what a trace holds, as text, JSON or PNG."""
from __future__ import annotations

import json


def trace_summary(path) -> dict:
    """What ``devsim inspect`` reports about the trace at ``path``, as plain data."""
    from devsim.trace import read_trace
    trace = read_trace(path)
    ev = trace.evals
    info = {"path": str(path), "complete": trace.complete,
            "stop_reason": trace.attrs.get("stop_reason", ""), "seed": trace.attrs.get("seed"),
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
    info = trace_summary(args.trace)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    state = "complete" if info["complete"] else f"INCOMPLETE: {info['stop_reason'] or 'unfinished'}"
    print(f"trace      {info['path']} ({state})")
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


def register(sub) -> None:
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
