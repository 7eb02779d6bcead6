"""A virtual spectrometer that speaks the spectrolite protocol on a pty or TCP, with drifts and injected faults.

Two layers, as everywhere in this package:

* :class:`VirtualSpectrometer` is the device's brain, without I/O: it holds a dataset of absorbance spectra (a
  ``.npz`` of ``../shared/datasets`` or :func:`firmware_bridge.synthetic.make_synthetic_dataset`), turns rows into
  raw counts with :class:`firmware_bridge.physics.DetectorModel`, answers HELLO with STATUS and COMMANDs with
  ACK/NACK (plus DARK, REFERENCE or SPECTRUM frames), and applies slow and provoked drifts.  Every SPECTRUM is
  followed by an ANNOTATION with the same ``seq`` carrying the dataset's ``y`` row.
* :class:`Simulator` runs it on an endpoint: a pty pair (:class:`PtyEndpoint`) or a TCP listener
  (:class:`TcpEndpoint`), pacing the stream (``rate_hz``), flipping bits and dropping bytes on the way out, and
  dropping the connection on a schedule.  ``Simulator.run(stop_event)`` blocks until the event is set (or the run is
  done with ``exit_when_done``), so it runs in a thread of a test as well as in the ``spectro-sim`` process.

The parts, one module each: :mod:`~firmware_bridge.simulator.config` (settings, drifts and faults),
:mod:`~firmware_bridge.simulator.dataset` (the spectra to stream and their axis),
:mod:`~firmware_bridge.simulator.device` (the device without I/O), :mod:`~firmware_bridge.simulator.endpoints`
(pty and TCP) and :mod:`~firmware_bridge.simulator.runner` (the run loop).
"""

from __future__ import annotations

from firmware_bridge.simulator.config import (
    DEFAULT_REFERENCE_AVERAGES,
    DRIFT_KINDS,
    FaultConfig,
    ProvokedDriftConfig,
    SimulatorConfig,
    SimulatorError,
)
from firmware_bridge.simulator.dataset import dataset_axis_unit, fit_wavelength_polynomial, load_spectra
from firmware_bridge.simulator.device import VirtualSpectrometer
from firmware_bridge.simulator.endpoints import PtyEndpoint, TcpEndpoint
from firmware_bridge.simulator.runner import Simulator

__all__ = [
    "DEFAULT_REFERENCE_AVERAGES",
    "DRIFT_KINDS",
    "ProvokedDriftConfig",
    "FaultConfig",
    "PtyEndpoint",
    "Simulator",
    "SimulatorConfig",
    "SimulatorError",
    "TcpEndpoint",
    "VirtualSpectrometer",
    "dataset_axis_unit",
    "fit_wavelength_polynomial",
    "load_spectra",
]
