"""A chip's exact float layers in the compiled kernels' terms.

Where every layer of the chip is an exact float array with a bias (the ideal device),
compiled code can run the chip's own arithmetic on its live parameters and
decorrelation matrices, with its device neurons' own compiled passes
(:class:`devsim.activations.CompiledNeuron`): the compiled executors
(:mod:`trainer.compiled`) run whole windows so, and reference backpropagation
(:mod:`trainer.backprop`) takes its gradient from the chip's recorded pass with the same
kernel, so that both give the same bits.
"""
from __future__ import annotations

import numpy as np

from devsim import blas
from devsim.activations import DEVICE_NEURON, apply_in_place
from devsim.dense import CBLAS
from devsim.losses import LOSSES
from trainer.compiled_kernels import backprop_gradient


class ExactChip:
    """The bench's chip as the compiled kernels take it: its live float layers (flat
    [W.ravel(), b] each), their (n_out, n_in) shapes, activations (codes and their
    parameters) and loss code, and the live decorrelation matrix in front of each layer
    (an empty array each where the chip has none)."""

    def __init__(self, bench):
        problems = self.refusals(bench)
        if problems:
            raise ValueError("the chip is not one compiled kernels run: " + "; ".join(problems))
        self.layers = bench.exact_layers()
        self.shapes = np.array(bench.chip.layer_shapes, dtype=np.int64)
        self._activations = bench.network.activations
        codes = np.array([_code(act) for act in self._activations], dtype=np.int64)
        self.acts = (codes, np.array([act.parameter for act in self._activations]))
        """Each layer's activation code and the parameter it takes
        (:func:`devsim.activations.apply_in_place`)."""
        self.device_neurons = bool((codes == DEVICE_NEURON).any())
        """Whether a layer's activation is a device neuron's compiled pass."""
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
            if _code(act) is None:
                problems.append(f"layer {i} activation without compiled code")
        if not blas.AVAILABLE:
            problems.append("NumPy's BLAS entry points (not found)")
        return problems

    @staticmethod
    def backprop_refusals(bench) -> list[str]:
        """What keeps :meth:`backprop` from giving this chip's reference gradient (the
        reference model passes through R and through a device neuron's mean response)."""
        problems = []
        if bench.chip.capabilities.decorrelation:
            problems.append("decorrelation matrices (backprop through them is the "
                            "reference model's)")
        for i, act in enumerate(bench.network.activations):
            if _code(act) == DEVICE_NEURON:
                problems.append(f"layer {i} device neuron (backprop through it is the "
                                "reference model's)")
        return problems

    def neurons(self) -> tuple[tuple, list]:
        """The device neurons' compiled passes in their present state, as the kernels
        take them: (addresses, ints, floats, states), one entry per layer (0 and empty
        arrays for the other layers); and each layer's
        :class:`~devsim.activations.CompiledNeuron` or None, to account their passes."""
        passes = [act.compiled() if code == DEVICE_NEURON else None
                  for act, code in zip(self._activations, self.acts[0])]
        none_i, none_f, none_s = (np.zeros(1, dtype=np.int64), np.zeros(0),
                                  np.zeros(0, dtype=np.int8))
        arguments = (np.array([p.address if p else 0 for p in passes], dtype=np.int64),
                     tuple(p.ints if p else none_i for p in passes),
                     tuple(p.floats if p else none_f for p in passes),
                     tuple(p.state if p else none_s for p in passes))
        return arguments, passes

    def backprop(self, x: np.ndarray, y: np.ndarray, result) -> np.ndarray:
        """Gradient of the mean cost over the rows of ``x`` from the chip's recorded pass
        of them (a :class:`devsim.hardware.Result` with its layers' inputs and
        pre-activations); not through decorrelation matrices."""
        if self.decorrelated or self.device_neurons:
            raise ValueError("the compiled backpropagation does not pass through "
                             "decorrelation matrices or device neurons")
        preactivations = tuple(np.ascontiguousarray(z, dtype=np.float64)
                               for z in result.preactivations)
        output = preactivations[-1].copy()
        apply_in_place(self.acts[0][-1], output, self.acts[1][-1])
        hidden = tuple(np.ascontiguousarray(h, dtype=np.float64)
                       for h in result.inputs[1:]) + (output,)
        gradient = np.empty(sum(len(layer) for layer in self.layers))
        backprop_gradient(self.layers, self.shapes, self.acts, self.loss,
                          np.ascontiguousarray(x, dtype=np.float64),
                          np.ascontiguousarray(y, dtype=np.float64), hidden, preactivations,
                          tuple(np.empty_like(z) for z in preactivations), gradient, CBLAS)
        return gradient


def _code(act) -> int | None:
    """A layer activation's code in the kernels (:func:`devsim.activations.apply_in_place`,
    or :data:`~devsim.activations.DEVICE_NEURON` for a device neuron's compiled pass);
    None where compiled code cannot apply it."""
    if act.stateful or act.native is None:
        return DEVICE_NEURON if act.compiled() is not None else None
    return act.native
