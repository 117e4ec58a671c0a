"""Device physics: one module per device model, each a parameter family member plus kernels.

Importing this package registers every device model under its YAML ``type`` name.

It also lets idle OpenMP threads sleep (``OMP_WAIT_POLICY=passive``) unless the user
set a policy: Numba's parallel kernels run on GNU OpenMP, whose threads otherwise spin
after every kernel and take the cores from the BLAS threads of the next matrix product;
a noisy crossbar read then ran 4x slower on two threads than on one (BENCHMARKS.md).
The variable is read when OpenMP loads, at the first parallel kernel.
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

from devices.base import DenseDevice, DeviceParams, Meter, NoiseSourceParams
from devices import noise
from devices import mtj  # noqa: F401  (registers mtj_pbit and mtj_telegraph)
from devices.ideal import IdealParams
from devices import mcu  # noqa: F401  (registers mcu)
from devices import crossbar  # noqa: F401  (registers crossbar)

__all__ = ["DenseDevice", "DeviceParams", "Meter", "NoiseSourceParams", "IdealParams", "noise"]
