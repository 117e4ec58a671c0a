"""Device physics: one module per device model, each a parameter family member plus kernels.

Importing this package registers every device model under its YAML ``type`` name.
"""
from devices.base import DenseDevice, DeviceParams, Meter, NoiseSourceParams
from devices import noise
from devices import mtj  # noqa: F401  (registers mtj_pbit and mtj_telegraph)
from devices.ideal import IdealParams
from devices import mcu  # noqa: F401  (registers mcu)
from devices import crossbar  # noqa: F401  (registers crossbar)

__all__ = ["DenseDevice", "DeviceParams", "Meter", "NoiseSourceParams", "IdealParams", "noise"]
