"""Accuracy after drift on PCM: devsim, and IBM aihwkit 1.2.0 for the same trained weights.

1. Train ``configs/pcm_digits.yaml`` (digits, 64-32-10 sigmoids, MGD node perturbation
   on the PCM preset with mixed-precision writes), or reuse the trace at ``--trace``.
2. devsim (:func:`devsim.drift.evaluate_drift`), ``--repeats`` fresh programmings read at
   1 s ... 1 y after programming:

   - ``as trained``: the chip of the trace (the preset's periphery: 7-bit DAC, 9-bit ADC,
     output noise; weights in [-1, 1] mapped to 0..25 uS), compensation on and off;
   - ``PCM model``: the same PCM statistical model (programming noise, drift, 1/f read
     noise, global drift compensation) with an ideal periphery and each layer's weights
     mapped as aihwkit maps a tile's (its largest |weight|, bias included, to g_max):
     the model aihwkit runs below.

3. aihwkit (``--aihwkit``; run with a Python that has aihwkit 1.2.0 and torch): the
   trained weights in ``AnalogLinear`` layers (analog bias: ``mapping.digital_bias =
   False``) with the same sigmoids, ``InferenceRPUConfig`` with ``PCMLikeNoiseModel(g_max=25)``
   and ``GlobalDriftCompensation`` (its defaults), ``forward.is_perfect = True``; per
   repeat ``torch.manual_seed(seed + r)``, ``program_analog_weights()``, then
   ``drift_analog_weights(t)`` at each time. Also with aihwkit's default forward
   periphery (``aihwkit IO``), for reference only: its noise and bound management have
   no counterpart in devsim's preset. And one level down, the first layer's weights
   themselves (``weights``): mean drifted / target weight, the spread of the error before
   and after compensation, and the compensation factor, in both simulators.

Writes ``experiments/drift_pcm.json`` and ``experiments/drift_pcm.png`` (``--record``;
the trace goes under ``--out``) and prints the tables as markdown. Usage (from the
repository root)::

    PYTHONPATH=. nice python experiments/drift_pcm.py --out runs/drift_pcm
    PYTHONPATH=. nice /work/venv_aihwkit/bin/python experiments/drift_pcm.py --out runs/drift_pcm --aihwkit
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import yaml

from devsim import evaluate_drift, load_config, read_trace, run
from devsim.drift import parse_times
from devsim.rng import stream

ROOT = Path(__file__).parents[1]
TIMES = "1s,1min,1h,1d,1w,30d,1y"


def ideal_periphery_overrides(trace) -> list[str]:
    """``--set`` values giving each layer the trace's PCM device with an ideal periphery
    and w_max at the layer's largest |weight| (aihwkit's per-tile conductance scale)."""
    config = yaml.safe_load(trace.config_yaml)
    device = config["network"]["device"]
    params, start, n_in = trace.snapshots["params"][-1], 0, 64
    overrides = []
    for i, layer in enumerate(config["network"]["layers"]):
        n_out = layer["units"]
        size = n_out * n_in + n_out
        w_max = float(np.abs(params[start:start + size]).max())
        start, n_in = start + size, n_out
        mapping = {**device, "w_max": w_max, "input_range": None, "dac_bits": 0,
                   "output_range": None, "adc_bits": 0, "out_noise": 0.0,
                   "drift_compensation": True}
        flow = yaml.safe_dump(mapping, default_flow_style=True, width=1 << 20).strip()
        overrides.append(f"network.layers[{i}].device={flow}")
    return overrides


def summary(values: np.ndarray) -> dict:
    """Mean, standard deviation (ddof 1) and the values of (repeats, times) accuracies."""
    return {"mean": values.mean(axis=0).tolist(), "std": values.std(axis=0, ddof=1).tolist(),
            "values": values.tolist()}


def devsim_curves(trace, times, repeats: int) -> dict:
    as_trained_on = evaluate_drift(trace, times, compensation=True, repeats=repeats)
    as_trained_off = evaluate_drift(trace, times, compensation=False, repeats=repeats)
    model = evaluate_drift(trace, times, repeats=repeats,
                           overrides=ideal_periphery_overrides(trace))
    return {"devsim as trained, compensation on": summary(as_trained_on.accuracy),
            "devsim as trained, compensation off": summary(as_trained_off.accuracy),
            "devsim PCM model": summary(model.accuracy)}


def aihwkit_curves(trace, times, repeats: int, seed: int) -> dict:
    """aihwkit 1.2.0's accuracy after drift for the trace's trained weights."""
    import torch
    from aihwkit.inference import GlobalDriftCompensation, PCMLikeNoiseModel
    from aihwkit.nn import AnalogLinear, AnalogSequential
    from aihwkit.simulator.configs import InferenceRPUConfig
    config = load_config_from(trace)
    data = config.data.load(stream(config.seed, "data"))
    x = torch.tensor(data.x_test, dtype=torch.float32)
    params = trace.snapshots["params"][-1]
    shapes = [(32, 64), (10, 32)]
    torch.set_num_threads(1)

    def network(perfect: bool):
        rpu = InferenceRPUConfig()
        rpu.noise_model = PCMLikeNoiseModel(g_max=25.0)
        rpu.drift_compensation = GlobalDriftCompensation()
        rpu.mapping.digital_bias = False
        rpu.forward.is_perfect = perfect
        layers, start = [], 0
        for n_out, n_in in shapes:
            layer = AnalogLinear(n_in, n_out, bias=True, rpu_config=rpu)
            w = params[start:start + n_out * n_in].reshape(n_out, n_in)
            b = params[start + n_out * n_in:start + n_out * n_in + n_out]
            start += n_out * n_in + n_out
            layer.set_weights(torch.tensor(w, dtype=torch.float32),
                              torch.tensor(b, dtype=torch.float32))
            layers += [layer, torch.nn.Sigmoid()]
        return AnalogSequential(*layers).eval()

    curves = {}
    for name, perfect in (("aihwkit PCM model", True), ("aihwkit IO", False)):
        model = network(perfect)
        accuracy = np.empty((repeats, len(times)))
        with torch.no_grad():
            for r in range(repeats):
                torch.manual_seed(seed + r)
                model.program_analog_weights()
                for j, (_, t) in enumerate(times):
                    model.drift_analog_weights(t)
                    predicted = model(x).argmax(dim=1).numpy()
                    accuracy[r, j] = float((predicted == data.labels_test).mean())
        curves[name] = summary(accuracy)
    return curves


def weight_statistics(trace, times, repeats: int, seed: int) -> dict:
    """The first trained layer (weights and bias) programmed and drifted by aihwkit's
    tile and by devsim's crossbar (the PCM model, w_max at the layer's largest |weight|):
    per time, the mean of drifted / target over weights with |target| > w_max / 2, the
    standard deviation of drifted - target, the same after the compensation factor, and
    that factor; means over repeats."""
    import torch
    from aihwkit.inference import GlobalDriftCompensation, PCMLikeNoiseModel
    from aihwkit.nn import AnalogLinear
    from aihwkit.simulator.configs import InferenceRPUConfig
    from devsim.config import from_data
    from devsim.device import DeviceParams
    n_out, n_in = 32, 64
    params = trace.snapshots["params"][-1]
    w, b = params[:n_out * n_in].reshape(n_out, n_in), params[n_out * n_in:n_out * n_in + n_out]
    target = np.concatenate([w, b[:, None]], axis=1)
    w_max = float(np.abs(target).max())
    large = np.abs(target) > w_max / 2
    rpu = InferenceRPUConfig()
    rpu.noise_model = PCMLikeNoiseModel(g_max=25.0)
    rpu.drift_compensation = GlobalDriftCompensation()
    rpu.mapping.digital_bias = False
    rpu.forward.is_perfect = True
    layer = AnalogLinear(n_in, n_out, bias=True, rpu_config=rpu)
    layer.set_weights(torch.tensor(w, dtype=torch.float32), torch.tensor(b, dtype=torch.float32))
    layer.eval()
    (tile,) = list(layer.analog_tiles())
    device = yaml.safe_load(trace.config_yaml)["network"]["device"]
    device = from_data(DeviceParams, {**device, "w_max": w_max, "drift_compensation": True})
    stats = {"aihwkit": [], "devsim": []}
    for _, t in times:
        drifted = {"aihwkit": [], "devsim": []}
        alphas = {"aihwkit": [], "devsim": []}
        for r in range(repeats):
            torch.manual_seed(seed + r)
            layer.program_analog_weights()
            layer.drift_analog_weights(t)
            unit = w_max / float(np.abs(tile.reference_combined_weights.numpy()).max())
            drifted["aihwkit"].append(tile.tile.get_weights().numpy().astype(float) * unit)
            alphas["aihwkit"].append(float(tile.alpha))
            array = device.build(w, b, np.random.default_rng([seed, r]))
            array.set_time(t)
            flat = array.read()  # compensated, as reads see it
            alpha = float(array._alpha)
            drifted["devsim"].append(np.concatenate(
                [flat[:n_out * n_in].reshape(n_out, n_in), flat[n_out * n_in:, None]], 1) / alpha)
            alphas["devsim"].append(alpha)
        for name in stats:
            d, a = np.array(drifted[name]), np.array(alphas[name])
            stats[name].append({"ratio": float((d[:, large] / target[large]).mean()),
                                "error_std": float((d - target).std()),
                                "compensated_error_std": float(
                                    (d * a[:, None, None] - target).std()),
                                "alpha": float(a.mean())})
    return stats


def weight_table(stats: dict, times) -> str:
    rows = ["| time | drifted / target (aihwkit, devsim) | error std | compensated error "
            "std | compensation factor |", "|---|---|---|---|---|"]
    for j, (label, _) in enumerate(times):
        a, d = stats["aihwkit"][j], stats["devsim"][j]
        rows.append(f"| {label} | {a['ratio']:.4f}, {d['ratio']:.4f} | {a['error_std']:.4f}, "
                    f"{d['error_std']:.4f} | {a['compensated_error_std']:.4f}, "
                    f"{d['compensated_error_std']:.4f} | {a['alpha']:.4f}, {d['alpha']:.4f} |")
    return "\n".join(rows)


def load_config_from(trace):
    from devsim.config import loads
    from devsim.runconfig import RunConfig
    return loads(trace.config_yaml, RunConfig)


def table(results: dict, names: list[str], times) -> str:
    head = "| curve | " + " | ".join(label for label, _ in times) + " |"
    rows = [head, "|---" * (len(times) + 1) + "|"]
    for name in names:
        cells = [f"{m:.4f} +- {s:.4f}" for m, s in zip(results[name]["mean"],
                                                      results[name]["std"])]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def agreement(results: dict, a: str, b: str, repeats: int) -> str:
    """Per time: the difference of the means, the spread of one repeat's difference
    sqrt(std_a^2 + std_b^2), and Welch's t (the difference over its standard error)."""
    ma, mb = np.array(results[a]["mean"]), np.array(results[b]["mean"])
    sa, sb = np.array(results[a]["std"]), np.array(results[b]["std"])
    delta, spread = ma - mb, np.sqrt(sa ** 2 + sb ** 2)
    welch = delta / (spread / np.sqrt(repeats))
    rows = ["| time | " + " | ".join(results["times"]) + " |",
            "|---" * (len(delta) + 1) + "|",
            "| devsim - aihwkit | " + " | ".join(f"{d:+.4f}" for d in delta) + " |",
            "| spread sqrt(std_d^2 + std_a^2) | " + " | ".join(f"{s:.4f}" for s in spread) + " |",
            "| Welch t | " + " | ".join(f"{t:+.2f}" for t in welch) + " |"]
    return "\n".join(rows)


def plot(results: dict, times, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    seconds = np.array([t for _, t in times])
    panels = [("the chip as trained (devsim)", ["devsim as trained, compensation on",
                                                "devsim as trained, compensation off"]),
              ("PCM statistical model, same weights", ["devsim PCM model", "aihwkit PCM model",
                                                       "aihwkit IO"])]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    for ax, (title, names) in zip(axes, panels):
        for k, name in enumerate(n for n in names if n in results):
            mean, std = np.array(results[name]["mean"]), np.array(results[name]["std"])
            ax.errorbar(seconds * (1.0 + 0.04 * k), mean, yerr=std, marker="o", capsize=3,
                        ls="--" if name == "aihwkit IO" else "-", label=name)
        ax.set(xscale="log", xlabel="time after programming (s)", title=title)
        ax.set_xticks(seconds, [label for label, _ in times])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("test accuracy (mean +- std over repeats)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/drift_pcm")
    ap.add_argument("--trace", help="reuse this trace of configs/pcm_digits.yaml")
    ap.add_argument("--repeats", type=int, default=25)
    ap.add_argument("--seed", type=int, default=0, help="aihwkit's torch seeds: seed + r")
    ap.add_argument("--aihwkit", action="store_true", help="also run aihwkit 1.2.0")
    ap.add_argument("--record", default=str(ROOT / "experiments" / "drift_pcm"),
                    help="write RECORD.json and RECORD.png")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    trace_path = Path(args.trace) if args.trace else out / "pcm_digits.h5"
    if not trace_path.exists():
        run(load_config(ROOT / "configs" / "pcm_digits.yaml"), out=trace_path)
    trace = read_trace(trace_path)
    times = parse_times(TIMES)
    results_path, png = Path(args.record + ".json"), Path(args.record + ".png")
    results = devsim_curves(trace, times, args.repeats)
    if args.aihwkit:
        results.update(aihwkit_curves(trace, times, args.repeats, args.seed))
        results["weights"] = weight_statistics(trace, times, args.repeats, args.seed)
    results["times"] = [label for label, _ in times]
    results["final_test_accuracy"] = float(trace.evals["test_accuracy"][-1])
    results_path.write_text(json.dumps(results, indent=1))
    names = [n for n in results if n not in ("times", "final_test_accuracy", "weights")]
    print(f"trained: test accuracy {results['final_test_accuracy']:.4f} at the end of "
          f"training; {args.repeats} repeats\n")
    print(table(results, names, times))
    if "aihwkit PCM model" in results:
        print("\nPCM model, devsim against aihwkit:\n")
        print(agreement(results, "devsim PCM model", "aihwkit PCM model", args.repeats))
        print("\nFirst layer's weights (aihwkit, devsim; means over repeats):\n")
        print(weight_table(results["weights"], times))
    plot(results, times, png)
    print(f"\nwrote {results_path} and {png}")


if __name__ == "__main__":
    main()
