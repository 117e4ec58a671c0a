"""``devsim inspect`` and ``devsim plot``: what a trace holds, as text, JSON or PNG."""
from __future__ import annotations

import json

import numpy as np


def _target(trace, target: float | None) -> float:
    """The accuracy target: ``target`` if given, else the run's ``train.target_accuracy``
    (0: none)."""
    if target is not None:
        return target
    import yaml
    config = yaml.safe_load(trace.config_yaml) or {}
    return float((config.get("train") or {}).get("target_accuracy") or 0.0)


def learning_cost(trace, target: float) -> dict:
    """What training spent until the test accuracy reached ``target`` for good (the MGD
    papers' time to target, :func:`devsim.runner.steps_to_target`): hardware steps, device
    reads and pulses, hardware seconds and joules, read off the evaluation at that step.
    ``reached`` is False when the last evaluation is still below the target; the meter
    values are None in a trace that does not record them."""
    from devsim.runner import METER_COLUMNS, steps_to_target
    ev = trace.evals
    accuracy = ev.get("test_accuracy", np.zeros(0))
    step = steps_to_target(ev["step"], accuracy, target) if len(accuracy) else None
    info = {"target": target, "reached": step is not None, "steps": step}
    row = int(np.flatnonzero(ev["step"] == step)[0]) if step else None
    for column in METER_COLUMNS.values():
        if step is None or column not in ev:
            info[column] = None
        else:
            info[column] = float(ev[column][row]) if row is not None else 0.0
    return info


def device_totals(trace) -> dict | None:
    """Device reads, pulses, hardware seconds and joules of the whole run (the last
    scalar row's meter columns, else the summary's), or None where neither has them."""
    from devsim.runner import METER_COLUMNS
    scalars = trace.scalars
    if all(c in scalars for c in METER_COLUMNS.values()) and len(scalars["step"]):
        return {c: float(scalars[c][-1]) for c in METER_COLUMNS.values()}
    device = trace.summary.get("device")
    return {METER_COLUMNS[k]: float(v) for k, v in device.items()} if device else None


def trace_summary(path, target: float | None = None) -> dict:
    """What ``devsim inspect`` reports about the trace at ``path``, as plain data;
    ``target``: the accuracy whose time and energy to report (default: the run's
    ``train.target_accuracy``)."""
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
            "config_yaml": trace.config_yaml, "device": device_totals(trace)}
    target = _target(trace, target)
    if target and "test_accuracy" in ev:
        info["to_target"] = learning_cost(trace, target)
    from devsim.runner import METER_COLUMNS
    for name, values in ev.items():
        if name != "step" and name not in METER_COLUMNS.values() and len(values):
            best = values.max() if "accuracy" in name else values.min()
            info[f"final_{name}"] = float(values[-1])
            info[f"best_{name}"] = float(best)
    return info


def _quantity(value: float | None, unit: str) -> str:
    if value is None:
        return "not recorded"
    return f"{value:.4g} {unit}" if value else f"0 {unit} (the device models give no figure)"


def cmd_inspect(args) -> int:
    from devsim.cli.common import fail
    if args.target is not None and not 0.0 < args.target <= 1.0:
        return fail(f"--target: must be in (0, 1], got {args.target}")
    info = trace_summary(args.trace, args.target)
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
        if summary.get("memory"):
            from devices.mcu_memory import MemoryReport
            memory = summary["memory"]
            print("MCU memory\n" + MemoryReport(memory["flash"], memory["sram"]).table())
    device = info["device"]
    if device is not None:
        print(f"device     {device['reads']:,.0f} reads, {device['pulses']:,.0f} pulses, "
              f"hardware time {_quantity(device['hardware_time_s'], 's')}, energy "
              f"{_quantity(device['energy_j'], 'J')} (training; evaluation reads excluded)")
    to_target = info.get("to_target")
    if to_target is not None:
        head = f"to target  test accuracy {to_target['target']:g}:"
        if not to_target["reached"]:
            print(f"{head} never reached (best {info['best_test_accuracy']:.4g})")
        else:
            print(f"{head} {to_target['steps']:,} hardware steps, hardware time "
                  f"{_quantity(to_target['hardware_time_s'], 's')}, energy "
                  f"{_quantity(to_target['energy_j'], 'J')}")
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
    sp.add_argument("--target", type=float, metavar="ACCURACY",
                    help="report hardware steps, time and energy to this test accuracy "
                         "(default: the run's train.target_accuracy)")
    sp.set_defaults(handler=cmd_inspect)

    sp = sub.add_parser("plot", help="plot cost and accuracy of one or more traces (PNG)")
    sp.add_argument("traces", nargs="+")
    sp.add_argument("--out", default="trace.png", help="PNG file to write")
    sp.add_argument("--x", choices=("steps", "seconds", "hardware_time", "energy"),
                    default="steps",
                    help="horizontal axis: hardware steps, wall-clock seconds, hardware "
                         "time (s) or energy (J) spent by the chip's devices in training")
    sp.set_defaults(handler=cmd_plot)
