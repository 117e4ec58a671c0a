"""The test oracle for int8 kernels: .tflite models written here, run in tflite-micro.

:class:`Graph` writes a minimal flatbuffer (the schema module tflite-micro ships) of
int8 operators in a chain: FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D,
AVERAGE_POOL_2D, MAX_POOL_2D, with QUANTIZE / DEQUANTIZE for float input and output.
:class:`TFLM` runs such a model in the TFLM interpreter (whose int8 kernels are the
reference kernels the devices are checked against). Tests get one from the ``tflm``
fixture (``conftest.py``), which skips them where the ``tflite-micro`` wheel (the test
extra; Linux x86_64 only) is missing.
"""
from __future__ import annotations

import numpy as np

from devices.mcu_quant import bias_scales

_FUSED = {"none": "NONE", "relu": "RELU", "relu6": "RELU6"}
_OPS = {"fc": "FULLY_CONNECTED", "conv2d": "CONV_2D", "depthwise": "DEPTHWISE_CONV_2D",
        "avg_pool": "AVERAGE_POOL_2D", "max_pool": "MAX_POOL_2D", "quantize": "QUANTIZE",
        "dequantize": "DEQUANTIZE"}


class TFLM:
    """Builds :class:`Graph` objects and runs finished models in the TFLM interpreter."""

    def __init__(self):
        import flatbuffers
        from tflite_micro import runtime
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as sch
        self.flatbuffers, self.runtime, self.sch = flatbuffers, runtime, sch

    def graph(self, shape, dtype="int8", quant=None) -> "Graph":
        """A new graph whose input tensor has this shape, type and (scale, zero point)."""
        return Graph(self, shape, dtype, quant)

    def model(self, n_probe, layers, float_io=False, n_in=None, q_in=None) -> bytes:
        """A chain of FULLY_CONNECTED layers, each (w_q, b_q, w_scales, q_in, q_out, fused);
        with ``float_io``, QUANTIZE in front and DEQUANTIZE behind. With no layers it is
        the QUANTIZE op alone, to int8 with ``q_in``, for ``n_in`` inputs."""
        if layers:
            n_in, q_in = layers[0][0].shape[1], layers[0][3]
        g = self.graph((n_probe, n_in), "float32" if float_io else "int8",
                       None if float_io else q_in)
        if float_io:
            g.quantize(q_in)
        for w_q, b_q, w_scales, _, q_out, fused in layers:
            g.fully_connected(w_q, b_q, w_scales, q_out, fused)
        if float_io and layers:
            g.dequantize()
        return g.finish()

    def run(self, model: bytes, x: np.ndarray) -> np.ndarray:
        interpreter = self.runtime.Interpreter.from_bytes(model, arena_size=10 * len(model)
                                                          + 4 * x.nbytes + 65536)
        interpreter.set_input(x, 0)
        interpreter.invoke()
        return interpreter.get_output(0)


class Graph:
    """A chain of operators, each taking the previous one's output tensor."""

    def __init__(self, oracle: TFLM, shape, dtype, quant):
        self.sch = oracle.sch
        self._flatbuffers = oracle.flatbuffers
        self.buffers, self.tensors, self.ops, self.codes = [self.sch.BufferT()], [], [], []
        self.shape, self.quant = tuple(shape), quant
        self._current = self._add_tensor(self.shape, dtype, quant)

    # ---- operators
    def quantize(self, quant):
        """QUANTIZE the (float32) current tensor to int8 with (scale, zero point)."""
        self._op("quantize", [], self.shape, quant, "int8")

    def dequantize(self):
        """DEQUANTIZE the current int8 tensor to float32."""
        self._op("dequantize", [], self.shape, None, "float32")

    def fully_connected(self, w_q, b_q, w_scales, q_out, fused="none"):
        """FULLY_CONNECTED with (n_out, n_in) int8 weights, per-channel scales."""
        inputs = self._filter_and_bias(w_q, b_q, w_scales, 0)
        options = self.sch.FullyConnectedOptionsT()
        options.fusedActivationFunction = self._fused(fused)
        self._op("fc", inputs, (self.shape[0], w_q.shape[0]), q_out, "int8",
                 ("FullyConnectedOptions", options))

    def conv2d(self, w_q, b_q, w_scales, q_out, stride, padding, fused="none"):
        """CONV_2D with an OHWI (c_out, kh, kw, c_in) int8 filter quantized along dim 0."""
        inputs = self._filter_and_bias(w_q, b_q, w_scales, 0)
        options = self.sch.Conv2DOptionsT()
        self._window_options(options, stride, padding, fused)
        self._op("conv2d", inputs, self._out_shape(w_q.shape[1:3], stride, padding,
                                                   w_q.shape[0]),
                 q_out, "int8", ("Conv2DOptions", options))

    def depthwise(self, w_q, b_q, w_scales, q_out, stride, padding, depth_multiplier,
                  fused="none"):
        """DEPTHWISE_CONV_2D with a (1, kh, kw, c_out) int8 filter quantized along dim 3."""
        inputs = self._filter_and_bias(w_q, b_q, w_scales, 3)
        options = self.sch.DepthwiseConv2DOptionsT()
        self._window_options(options, stride, padding, fused)
        options.depthMultiplier = int(depth_multiplier)
        self._op("depthwise", inputs, self._out_shape(w_q.shape[1:3], stride, padding,
                                                      w_q.shape[3]),
                 q_out, "int8", ("DepthwiseConv2DOptions", options))

    def pool(self, kind, filter_hw, stride, padding, fused="none"):
        """AVERAGE_POOL_2D (``avg_pool``) or MAX_POOL_2D (``max_pool``); the output keeps
        the input's quantization, as TFLM requires."""
        options = self.sch.Pool2DOptionsT()
        self._window_options(options, stride, padding, fused)
        options.filterHeight, options.filterWidth = (int(n) for n in filter_hw)
        self._op(kind, [], self._out_shape(filter_hw, stride, padding, self.shape[3]),
                 self.quant, "int8", ("Pool2DOptions", options))

    def finish(self) -> bytes:
        """The model's flatbuffer bytes: the first tensor in, the last one out."""
        sch = self.sch
        graph = sch.SubGraphT()
        graph.tensors, graph.operators = self.tensors, self.ops
        graph.inputs, graph.outputs = [0], [self._current]
        opcodes = []
        for name in self.codes:
            code = sch.OperatorCodeT()
            code.builtinCode = getattr(sch.BuiltinOperator, _OPS[name])
            code.deprecatedBuiltinCode = min(code.builtinCode, 127)
            code.version = 1
            opcodes.append(code)
        model = sch.ModelT()
        model.version, model.operatorCodes, model.subgraphs = 3, opcodes, [graph]
        model.buffers = self.buffers
        builder = self._flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())

    # ---- helpers
    def _add_tensor(self, shape, dtype, quant, buffer=0, zero_points=None, dim=0):
        sch = self.sch
        t = sch.TensorT()
        t.shape, t.buffer = [int(n) for n in shape], buffer
        t.type = {"int8": sch.TensorType.INT8, "int32": sch.TensorType.INT32,
                  "float32": sch.TensorType.FLOAT32}[dtype]
        if quant is not None:
            q = sch.QuantizationParametersT()
            q.scale = [float(v) for v in np.atleast_1d(quant[0])]
            q.zeroPoint = ([int(quant[1])] if zero_points is None
                           else [int(v) for v in zero_points])
            q.quantizedDimension = dim
            t.quantization = q
        self.tensors.append(t)
        return len(self.tensors) - 1

    def _constant(self, array, dtype, scales, dim):
        buf = self.sch.BufferT()
        buf.data = np.frombuffer(np.ascontiguousarray(array).tobytes(), dtype=np.uint8)
        self.buffers.append(buf)
        scales = np.atleast_1d(scales)
        return self._add_tensor(array.shape, dtype, (scales, 0), len(self.buffers) - 1,
                                np.zeros(len(scales), np.int64), dim)

    def _filter_and_bias(self, w_q, b_q, w_scales, dim):
        w = self._constant(np.asarray(w_q, np.int8), "int8", w_scales, dim)
        b = self._constant(np.asarray(b_q, np.int32), "int32",
                           bias_scales(self.quant[0], w_scales), 0)
        return [w, b]

    def _fused(self, fused):
        return getattr(self.sch.ActivationFunctionType, _FUSED[fused])

    def _window_options(self, options, stride, padding, fused):
        options.padding = {"same": self.sch.Padding.SAME, "valid": self.sch.Padding.VALID}[padding]
        options.strideH, options.strideW = (int(s) for s in stride)
        options.fusedActivationFunction = self._fused(fused)

    def _out_shape(self, kernel_hw, stride, padding, channels):
        from devsim.conv_geometry import ConvGeometry
        g = ConvGeometry(self.shape[1], self.shape[2], self.shape[3], int(kernel_hw[0]),
                         int(kernel_hw[1]), int(stride[0]), int(stride[1]), padding)
        return (self.shape[0], g.out_h, g.out_w, int(channels))

    def _op(self, name, constants, out_shape, quant, dtype, options=None):
        if name not in self.codes:
            self.codes.append(name)
        out = self._add_tensor(out_shape, dtype, quant)
        op = self.sch.OperatorT()
        op.opcodeIndex = self.codes.index(name)
        op.inputs, op.outputs = [self._current, *constants], [out]
        if options is not None:
            op.builtinOptionsType = getattr(self.sch.BuiltinOptions, options[0])
            op.builtinOptions = options[1]
        self.ops.append(op)
        self.shape, self.quant, self._current = tuple(out_shape), quant, out
