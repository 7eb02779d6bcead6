"""edge: the device side of spectrolite: preprocessing, bundle reader, int8 inference and the MQTT daemon.

Imports only numpy, pyserial, paho-mqtt and a TFLite runtime; never TensorFlow, Keras, scikit-learn or SciPy.
"""

from __future__ import annotations

from edge.errors import (
    BundleError,
    CommandError,
    ConfigError,
    EdgeError,
    InputContractError,
    OutboxError,
    RuntimeLoadError,
    SpecError,
)

__all__ = [
    "BundleError",
    "CommandError",
    "ConfigError",
    "EdgeError",
    "InputContractError",
    "OutboxError",
    "RuntimeLoadError",
    "SpecError",
]
