"""SRAM and flash a microcontroller needs to run, or train, a chain of int8 dense layers.

The model lives in flash: int8 weights, int32 biases and float32 weight scales (the
.tflite tensor data; flatbuffer metadata and code are not counted). SRAM holds the
activation arena (TFLM's planner keeps a layer's int8 input and output alive
together, so a chain needs max_l (n_in_l + n_out_l) bytes), each layer's
requantization multiplier and shift (int32 per output channel, or one pair per
layer with per-tensor weights), and for every *trained* layer a writable copy of its
weights and biases plus the buffers of its training method:

``zo_weight`` (quantized zeroth-order, weight perturbation; directions regenerated
from a seed, never stored). With ``zo_replay`` (the default, what
:func:`devices.mcu.fully_connected_rademacher` computes) the kernel adds the
perturbation on the fly and the update replays the n directions from the seed, so
only the n query losses and the clean loss are kept (float32 each), once for the
whole network. Without it, weights are perturbed in place: a backup of the layer's
parameters (a clamped perturbation cannot be undone by subtracting it) and a
gradient accumulator of ``grad_bytes`` per parameter, as a plain CMSIS-NN kernel needs.

``zo_node`` (node perturbation; the suffix of the network re-run from the cached
layer input): the cached int8 input (n_in) and unperturbed int8 output (n_out), a
node-gradient accumulator (``grad_bytes`` per unit) and the weight-gradient
accumulator formed locally from node estimate and input (``grad_bytes`` per parameter).

``bp`` (int8-aware backpropagation): every layer from the first BP-trained one to
the output keeps its int8 input from the forward pass, two float32 buffers of the
widest such layer carry the activation gradient backwards, and each BP-trained
layer has a gradient accumulator of ``grad_bytes`` per parameter.

Samples are processed one at a time and gradients accumulate over a mini-batch, as
an MCU trainer does, so no item depends on the batch size.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from devsim.params import ParamError

METHODS = ("zo_weight", "zo_node", "bp")
KIB = 1024


class MemoryBudgetError(ParamError):
    """A configuration needs more SRAM or flash than its budget allows."""


@dataclass(frozen=True)
class MemoryReport:
    """Bytes of flash and SRAM, itemised: ``{item name: bytes}``."""

    flash: dict[str, int] = field(default_factory=dict)
    sram: dict[str, int] = field(default_factory=dict)

    @property
    def flash_bytes(self) -> int:
        return sum(self.flash.values())

    @property
    def sram_bytes(self) -> int:
        return sum(self.sram.values())

    def to_dict(self) -> dict:
        """Plain data for traces: items and totals, in bytes."""
        return {"flash": dict(self.flash), "sram": dict(self.sram),
                "flash_bytes": self.flash_bytes, "sram_bytes": self.sram_bytes}

    def table(self) -> str:
        """A human-readable breakdown (for ``devsim inspect``)."""
        lines = []
        for name, items, total in (("flash", self.flash, self.flash_bytes),
                                   ("SRAM", self.sram, self.sram_bytes)):
            lines.append(f"{name}: {total} B ({total / KIB:.1f} KiB)")
            lines += [f"  {item:<32} {n:>10} B" for item, n in items.items() if n]
        return "\n".join(lines)

    def check(self, sram_kib: float | None = None, flash_kib: float | None = None) -> None:
        """Raise :class:`MemoryBudgetError` if a total exceeds its budget (KiB)."""
        for key, budget, need, items in (("sram_kib", sram_kib, self.sram_bytes, self.sram),
                                         ("flash_kib", flash_kib, self.flash_bytes, self.flash)):
            if budget is not None and need > budget * KIB:
                largest = sorted(((n, k) for k, n in items.items()), reverse=True)[:3]
                detail = ", ".join(f"{k} {n / KIB:.1f} KiB" for n, k in largest)
                raise MemoryBudgetError((key,), f"needs {need / KIB:.1f} KiB, over the budget "
                                        f"of {budget:g} KiB (largest: {detail})")


def memory_report(shapes: Sequence[tuple[int, int]], training: Sequence[str | None] | None = None,
                  *, per_channel: bool = True, grad_bytes: int = 4, n_queries: int = 1,
                  zo_replay: bool = True) -> MemoryReport:
    """Flash and SRAM of dense int8 layers ``shapes[l] = (n_out, n_in)``.

    ``training[l]`` is the method that trains layer l (one of :data:`METHODS`) or
    None for a frozen layer; None overall means inference only. ``n_queries`` is the
    number of perturbations per zeroth-order step; ``zo_replay`` chooses between
    replayed directions and in-place perturbation (see the module docstring).
    """
    if n_queries < 1 or grad_bytes < 1:
        raise ValueError(f"n_queries and grad_bytes must be >= 1, got {n_queries}, {grad_bytes}")
    shapes = [tuple(int(n) for n in s) for s in shapes]
    training = list(training) if training is not None else [None] * len(shapes)
    if len(training) != len(shapes):
        raise ValueError(f"training names {len(training)} layers, the network has {len(shapes)}")
    for i, method in enumerate(training):
        if method is not None and method not in METHODS:
            raise ValueError(f"layer {i}: training method must be one of {METHODS} or None, "
                             f"got {method!r}")
    n_params = [o * i for o, i in shapes]
    flash = {"weights (int8)": sum(n_params),
             "biases (int32)": sum(4 * o for o, _ in shapes),
             "weight scales (float32)": sum(4 * (o if per_channel else 1) for o, _ in shapes)}
    sram = {"activation arena": max(o + i for o, i in shapes),
            "requantization params": sum(8 * (o if per_channel else 1) for o, _ in shapes)}

    def add(item, n):
        sram[item] = sram.get(item, 0) + n

    for (n_out, n_in), d, method in zip(shapes, n_params, training):
        if method is None:
            continue
        add("trained weights and biases", d + 4 * n_out)
        if method == "zo_weight" and not zo_replay:
            add("zo: parameter backup", d + 4 * n_out)
        if method == "zo_node":
            add("zo: cached layer input/output", n_in + n_out)
            add("zo: node gradient", grad_bytes * n_out)
        if method != "zo_weight" or not zo_replay:
            add("gradient accumulators", grad_bytes * (d + n_out))
    if "zo_weight" in training and zo_replay:
        add("zo: query losses", 4 * (n_queries + 1))
    if "bp" in training:
        tail = shapes[training.index("bp"):]
        add("bp: stored layer inputs", sum(n_in for _, n_in in tail))
        add("bp: activation gradients", 2 * 4 * max(max(o, i) for o, i in tail))
    return MemoryReport(flash, sram)
