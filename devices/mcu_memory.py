"""SRAM and flash a microcontroller needs to run, or train, a chain of int8 layers.

A layer is described by its :class:`LayerFootprint`: activations in and out, int8
weights, output channels (each with an int32 bias, a float32 weight scale and a
requantization pair), and the scratch its kernel asks for. Dense layers are given as
``(n_out, n_in)``; :func:`conv_footprint`, :func:`depthwise_footprint` and
:func:`pool_footprint` describe CONV_2D, DEPTHWISE_CONV_2D and pooling layers.

The model lives in flash: int8 weights, int32 biases and float32 weight scales (the
.tflite tensor data; flatbuffer metadata and code are not counted). SRAM holds the
activation arena (TFLM's planner keeps a layer's int8 input and output alive
together, with its kernel's scratch buffer, which lives in the same arena for the
duration of the layer; a chain needs max_l (n_in_l + n_out_l + scratch_l) bytes), each
layer's requantization multiplier and shift (int32 per output channel, or one pair per
dense layer with per-tensor weights; TFLM's conv kernels allocate one pair per output
channel either way, ``conv_common.cc``), and for every *trained* layer a writable copy
of its weights and biases plus the buffers of its training method:

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

Scratch buffers are those TFLM's CMSIS-NN kernels request (``RequestScratchBufferInArena``
with CMSIS-NN's ``*_get_buffer_size``, ``Source/*/arm_*_get_buffer_sizes_s8.c``) on a
core with the DSP extension and no MVE (Cortex-M4, M7), built with GCC (TFLM's default
toolchain), one sample at a time:

- CONV_2D: two im2col columns of q15, 2 * 2 * ceil4(kh*kw*c_in) bytes
  (``arm_convolve_s8_get_buffer_size``; 1xN convolutions take the same path), none
  for a 1x1 kernel (padding is then always 0: ``arm_convolve_1x1_s8_fast`` asks for
  2 * 2 * c_in bytes only when built with Arm Compiler 6);
- DEPTHWISE_CONV_2D: with depth multiplier 1, c_in * kh * kw q15 values (2 bytes each)
  for ``arm_depthwise_conv_s8_opt``, none for the 3x3 kernel with padding <= 1 (its
  own kernel) or with a depth multiplier above 1 (the generic kernel);
- AVERAGE_POOL_2D: one int32 sum per channel, 4 * c_in bytes; MAX_POOL_2D none.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

from devsim.conv_geometry import ConvGeometry
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


class LayerFootprint(NamedTuple):
    """What one int8 layer of a TFLM graph occupies."""

    n_in: int
    """int8 input activations (bytes)."""
    n_out: int
    """int8 output activations (bytes)."""
    weights: int = 0
    """int8 weights."""
    channels: int = 0
    """Output channels: one int32 bias, float32 weight scale and requantization pair each."""
    scratch: int = 0
    """Bytes of kernel scratch in the arena while the layer runs."""
    requant_per_channel: bool = False
    """Whether the kernel keeps a requantization pair per channel even for per-tensor
    weights (TFLM's conv kernels do)."""


def dense_footprint(n_out: int, n_in: int) -> LayerFootprint:
    """A FULLY_CONNECTED layer (no scratch: the DSP build's FC kernel asks for none)."""
    return LayerFootprint(n_in, n_out, n_out * n_in, n_out)


def conv_footprint(geometry: ConvGeometry, c_out: int) -> LayerFootprint:
    """A CONV_2D layer with ``c_out`` filters; scratch as in the module docstring."""
    g = geometry
    depth = g.patch_size
    scratch = 0 if g.taps == 1 else 2 * 2 * (depth + (-depth) % 4)
    return LayerFootprint(g.in_size, g.n_positions * c_out, c_out * depth, c_out, scratch, True)


def depthwise_footprint(geometry: ConvGeometry, depth_multiplier: int) -> LayerFootprint:
    """A DEPTHWISE_CONV_2D layer; scratch as in the module docstring."""
    g = geometry
    c_out = g.in_c * depth_multiplier
    own_kernel = g.kernel_h == g.kernel_w == 3 and g.pad_top <= 1 and g.pad_left <= 1
    scratch = 2 * g.in_c * g.taps if depth_multiplier == 1 and not own_kernel else 0
    return LayerFootprint(g.in_size, g.n_positions * c_out, c_out * g.taps, c_out, scratch, True)


def pool_footprint(kind: str, geometry: ConvGeometry) -> LayerFootprint:
    """An AVERAGE_POOL_2D (``avg_pool``) or MAX_POOL_2D (``max_pool``) layer."""
    if kind not in ("avg_pool", "max_pool"):
        raise ValueError(f"pool kind must be 'avg_pool' or 'max_pool', got {kind!r}")
    g = geometry
    return LayerFootprint(g.in_size, g.n_positions * g.in_c,
                          scratch=4 * g.in_c if kind == "avg_pool" else 0)


def memory_report(layers: Sequence[tuple[int, int] | LayerFootprint],
                  training: Sequence[str | None] | None = None, *, per_channel: bool = True,
                  grad_bytes: int = 4, n_queries: int = 1, zo_replay: bool = True) -> MemoryReport:
    """Flash and SRAM of a chain of int8 layers: :class:`LayerFootprint` objects, or
    ``(n_out, n_in)`` for a dense layer.

    ``training[l]`` is the method that trains layer l (one of :data:`METHODS`) or
    None for a frozen layer; None overall means inference only. ``n_queries`` is the
    number of perturbations per zeroth-order step; ``zo_replay`` chooses between
    replayed directions and in-place perturbation (see the module docstring).
    """
    if n_queries < 1 or grad_bytes < 1:
        raise ValueError(f"n_queries and grad_bytes must be >= 1, got {n_queries}, {grad_bytes}")
    layers = [f if isinstance(f, LayerFootprint) else dense_footprint(*(int(n) for n in f))
              for f in layers]
    training = list(training) if training is not None else [None] * len(layers)
    if len(training) != len(layers):
        raise ValueError(f"training names {len(training)} layers, the network has {len(layers)}")
    for i, (method, f) in enumerate(zip(training, layers)):
        if method is not None and method not in METHODS:
            raise ValueError(f"layer {i}: training method must be one of {METHODS} or None, "
                             f"got {method!r}")
        if method is not None and not f.channels:
            raise ValueError(f"layer {i}: has no parameters to train with {method!r}")
    flash = {"weights (int8)": sum(f.weights for f in layers),
             "biases (int32)": sum(4 * f.channels for f in layers),
             "weight scales (float32)": sum(4 * (f.channels if per_channel else min(f.channels, 1))
                                            for f in layers)}
    sram = {"activation arena": max(f.n_in + f.n_out + f.scratch for f in layers),
            "requantization params": sum(
                8 * (f.channels if per_channel or f.requant_per_channel else min(f.channels, 1))
                for f in layers)}

    def add(item, n):
        sram[item] = sram.get(item, 0) + n

    for f, method in zip(layers, training):
        if method is None:
            continue
        d = f.weights + f.channels              # parameters
        add("trained weights and biases", f.weights + 4 * f.channels)
        if method == "zo_weight" and not zo_replay:
            add("zo: parameter backup", f.weights + 4 * f.channels)
        if method == "zo_node":
            add("zo: cached layer input/output", f.n_in + f.n_out)
            add("zo: node gradient", grad_bytes * f.n_out)
        if method != "zo_weight" or not zo_replay:
            add("gradient accumulators", grad_bytes * d)
    if "zo_weight" in training and zo_replay:
        add("zo: query losses", 4 * (n_queries + 1))
    if "bp" in training:
        tail = layers[training.index("bp"):]
        add("bp: stored layer inputs", sum(f.n_in for f in tail))
        add("bp: activation gradients", 2 * 4 * max(max(f.n_out, f.n_in) for f in tail))
    return MemoryReport(flash, sram)


def footprint(layer) -> LayerFootprint | None:
    """The footprint of a network layer (a :class:`devsim.layers.LayerShape`); None for
    ``flatten``, which costs nothing: TFLite's FULLY_CONNECTED reads a map as the flat
    vector it is, so the converter drops the reshape."""
    if layer.kind == "dense":
        return dense_footprint(*layer.matrix)
    if layer.kind == "conv2d":
        return conv_footprint(layer.geometry, layer.matrix[0])
    if layer.kind == "depthwise_conv2d":
        return depthwise_footprint(layer.geometry, layer.matrix[0] // layer.geometry.in_c)
    if layer.kind in ("avg_pool", "max_pool"):
        return pool_footprint(layer.kind, layer.geometry)
    if layer.kind == "flatten":
        return None
    raise ValueError(f"no int8 footprint for a layer of type {layer.kind!r}")


def network_memory_report(layers, training: Sequence[str | None] | None = None,
                          **options) -> MemoryReport:
    """:func:`memory_report` of a network's layers (:class:`devsim.layers.LayerShape`);
    ``training[l]`` for layer l as there, None for a layer without parameters."""
    training = list(training) if training is not None else [None] * len(layers)
    kept = [(f, method) for f, method in zip(map(footprint, layers), training, strict=True)
            if f is not None]
    return memory_report([f for f, _ in kept], [m for _, m in kept], **options)
