"""Device physics: one module per device model, each a parameter family member plus kernels.

Models are found by devsim's registries (the ``devsim.devices``, ``devsim.noise`` and
``devsim.activations`` entry points name this package, whose modules are all imported
on first use); nothing needs to be listed here.

Importing this package lets idle OpenMP threads sleep (``OMP_WAIT_POLICY=passive``)
unless the user set a policy: Numba's parallel kernels run on GNU OpenMP, whose threads
otherwise spin after every kernel and take the cores from the BLAS threads of the next
matrix product; a noisy crossbar read then ran 4x slower on two threads than on one
(BENCHMARKS.md). The variable is read when OpenMP loads, at the first parallel kernel.
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "passive")
