"""A chip's exact float layers in the compiled kernels' terms.

Where every layer of the chip is an exact float array with a bias (the ideal device),
compiled code can run the chip's own arithmetic on its live parameters (and on its
decorrelation matrices, where it has them): the compiled
executors (:mod:`trainer.compiled`) run whole windows so, and reference backpropagation
(:mod:`trainer.backprop`) takes its gradient from the chip's recorded pass with the same
kernel, so that both give the same bits.
"""
from __future__ import annotations

import numpy as np

from devsim import blas
from devsim.activations import apply_in_place
from devsim.dense import CBLAS
from devsim.losses import LOSSES
from trainer.compiled_kernels import backprop_gradient


class ExactChip:
    """The bench's chip as the compiled kernels take it: its live float layers (flat
    [W.ravel(), b] each), their (n_out, n_in) shapes, activation codes and loss code, and
    the live decorrelation matrix in front of each layer (an empty array each where the
    chip has none)."""

    def __init__(self, bench):
        problems = self.refusals(bench)
        if problems:
            raise ValueError("the chip is not one compiled kernels run: " + "; ".join(problems))
        self.layers = bench.exact_layers()
        self.shapes = np.array(bench.chip.layer_shapes, dtype=np.int64)
        self.acts = np.array([act.native for act in bench.network.activations],
                             dtype=np.int64)
        self.loss = LOSSES.index(bench.chip.loss)
        matrices = bench.exact_decorrelation()
        self.decorrelated = matrices is not None
        self.decorrelation = (matrices if self.decorrelated
                              else tuple(np.empty((0, 0)) for _ in self.layers))

    @staticmethod
    def refusals(bench) -> list[str]:
        """What keeps the kernels from running this chip's arithmetic (empty: nothing)."""
        problems = []
        if bench.exact_layers() is None:
            problems.append("layers that are not all exact float arrays with a bias "
                            "(the ideal device)")
        for i, act in enumerate(bench.network.activations):
            if act.native is None or act.stateful:
                problems.append(f"layer {i} activation without compiled code")
        for i, (n_out, _) in enumerate(bench.chip.layer_shapes):
            if n_out == 1:  # NumPy's products of one column are dot products
                problems.append(f"layer {i} with one output")
        if bench.chip.capabilities.decorrelation:
            for i, (_, n_in) in enumerate(bench.chip.layer_shapes):
                if n_in == 1:  # R x would be a one-column product
                    problems.append(f"layer {i} with one input and a decorrelation matrix")
        if not blas.AVAILABLE:
            problems.append("NumPy's BLAS entry points (not found)")
        return problems

    def backprop(self, x: np.ndarray, y: np.ndarray, result) -> np.ndarray:
        """Gradient of the mean cost over the rows of ``x`` from the chip's recorded pass
        of them (a :class:`devsim.hardware.Result` with its layers' inputs and
        pre-activations); not through decorrelation matrices."""
        if self.decorrelated:
            raise ValueError("the compiled backpropagation does not pass through "
                             "decorrelation matrices")
        preactivations = tuple(np.ascontiguousarray(z, dtype=np.float64)
                               for z in result.preactivations)
        output = preactivations[-1].copy()
        apply_in_place(self.acts[-1], output)
        hidden = tuple(np.ascontiguousarray(h, dtype=np.float64)
                       for h in result.inputs[1:]) + (output,)
        gradient = np.empty(sum(len(layer) for layer in self.layers))
        backprop_gradient(self.layers, self.shapes, self.acts, self.loss,
                          np.ascontiguousarray(x, dtype=np.float64),
                          np.ascontiguousarray(y, dtype=np.float64), hidden, preactivations,
                          tuple(np.empty_like(z) for z in preactivations), gradient, CBLAS)
        return gradient
