"""Low-level pieces for compiled code that shares memory between threads and calls C.

Numba has no atomics and calls C functions only through ctypes objects fixed at
compile time (which keep a function from being cached). These intrinsics fill the gap:

* :func:`load_acquire`, :func:`store_release`, :func:`store_seq_cst`: an int64 array
  element read or written as an atomic, so that a loop waiting for another thread's
  store reloads it every time and sees the data written before it;
* :func:`call_void`, :func:`call_int`: call a C function through its address (an
  argument, so the caller stays cacheable), with arrays passed as their data pointers;
* :func:`pointer`: an address as a typed pointer, to view an array passed by address.

Addresses are per process: compiled code must take them as arguments, never as
globals (which a cached function would keep from the process that compiled it).
"""
from __future__ import annotations

import ctypes
import sys

from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def _element_pointer(context, builder, array_type, array, index):
    ary = context.make_array(array_type)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, array_type, ary, [index])


@intrinsic
def load_acquire(typingctx, array, index):
    """``array[index]`` (int64) read atomically with acquire ordering."""
    if not (isinstance(array, types.Array) and array.dtype == types.int64):
        return None

    def codegen(context, builder, signature, args):
        ptr = _element_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "acquire", 8)
    return types.int64(array, types.intp), codegen


def _store(ordering):
    def store(typingctx, array, index, value):
        if not (isinstance(array, types.Array) and array.dtype == types.int64):
            return None

        def codegen(context, builder, signature, args):
            ptr = _element_pointer(context, builder, signature.args[0], args[0], args[1])
            value = context.cast(builder, args[2], signature.args[2], types.int64)
            builder.store_atomic(value, ptr, ordering, 8)
            return context.get_dummy_value()
        return types.void(array, types.intp, types.int64), codegen
    store.__name__ = store.__qualname__ = f"store_{ordering}"
    store.__doc__ = f"``array[index] = value`` (int64) stored atomically, {ordering} ordering."
    return intrinsic(store)


store_release = _store("release")
store_seq_cst = _store("seq_cst")
"""Sequentially consistent: a later load of another element is not moved before it
(what a flag handshake between two threads needs, a full fence on x86)."""


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
call_int = intrinsic(_caller(types.int32))
call_int.__doc__ = """``f(*args)`` for the C function at ``address`` returning int."""


def c_address(library: ctypes.CDLL, name: str) -> int:
    """Address of the C function ``name`` in ``library``, or 0 where it has none."""
    try:
        return ctypes.cast(getattr(library, name), ctypes.c_void_p).value or 0
    except AttributeError:
        return 0


try:
    _LIBC = ctypes.CDLL(None)  # the C library of this process (POSIX)
except OSError:  # Windows: no spinning helpers
    _LIBC = None
SCHED_YIELD = c_address(_LIBC, "sched_yield") if _LIBC is not None else 0
"""``sched_yield``: a spinning thread's pause, which lets the core go to a runnable
thread (a BLAS worker, the main thread) at once; 0 where the C library has none."""
CLOCK_GETTIME = c_address(_LIBC, "clock_gettime") if _LIBC is not None else 0
"""``clock_gettime``, with which a spinning thread keeps to its time budget."""
CLOCK_MONOTONIC = 6 if sys.platform == "darwin" else 1  # the clock id of clock_gettime



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
