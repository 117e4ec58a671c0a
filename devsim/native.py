"""Low-level pieces for compiled code that calls C and views arrays passed by address.

Numba calls C functions only through ctypes objects fixed at compile time (which keep
a function from being cached). These intrinsics (Numba's public extension API) fill the
gap:

* :func:`call_void` (and :func:`call_float32`, :func:`call_float64` for functions
  returning a float or a double): call a C function through its address (an
  argument, so the caller stays cacheable), with arrays passed as their data pointers;
* :func:`pointer`: an address as a typed pointer, to view an array passed by address.

Addresses are per process: compiled code must take them as arguments, never as
globals (which a cached function would keep from the process that compiled it).
"""
from __future__ import annotations

import ctypes

from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def _llvm_argument(context, builder, numba_type, value):
    """The LLVM value a C function receives for a Numba argument: arrays as their data
    pointer (void *), numbers as themselves."""
    if isinstance(numba_type, types.Array):
        data = context.make_array(numba_type)(context, builder, value).data
        return builder.bitcast(data, cgutils.voidptr_t), cgutils.voidptr_t
    return value, context.get_value_type(numba_type)


def _caller(return_type):
    def call(typingctx, address, args):
        if not (isinstance(address, types.Integer) and isinstance(args, types.BaseTuple)):
            return None

        def codegen(context, builder, signature, llargs):
            values, lltypes = [], []
            for k, numba_type in enumerate(signature.args[1].types):
                v = builder.extract_value(llargs[1], k)
                v, t = _llvm_argument(context, builder, numba_type, v)
                values.append(v)
                lltypes.append(t)
            ret = context.get_value_type(return_type)
            fnty = cgutils.ir.FunctionType(ret, lltypes)
            fn = builder.inttoptr(llargs[0], fnty.as_pointer())
            result = builder.call(fn, values)
            return context.get_dummy_value() if return_type == types.void else result
        return return_type(address, args), codegen
    return call


call_void = intrinsic(_caller(types.void))
call_void.__doc__ = """``f(*args)`` for the C function at ``address`` returning void."""
call_float32 = intrinsic(_caller(types.float32))
call_float32.__doc__ = """``f(*args)`` for the C function at ``address`` returning a float."""
call_float64 = intrinsic(_caller(types.float64))
call_float64.__doc__ = """``f(*args)`` for the C function at ``address`` returning a double."""


def c_address(library: ctypes.CDLL, name: str) -> int:
    """Address of the C function ``name`` in ``library``, or 0 where it has none."""
    try:
        return ctypes.cast(getattr(library, name), ctypes.c_void_p).value or 0
    except AttributeError:
        return 0


@intrinsic
def pointer(typingctx, address, dtype):
    """The integer ``address`` as a pointer to ``dtype`` (a NumPy scalar type), for
    ``numba.carray``: an array the caller passed as its address."""
    if not (isinstance(address, types.Integer) and isinstance(dtype, types.NumberClass)):
        return None
    result = types.CPointer(dtype.instance_type)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(result))
    return result(address, dtype), codegen
