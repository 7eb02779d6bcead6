"""Which producer a throughput step streams with: the simulator as it is, or the simulator replaying spectra it
acquired ahead (``--producer replay``), for steps where making each spectrum would cost the producer more CPU than
the daemon spends on it.

The simulator makes every spectrum afresh (detector model, noise, drifts: about 100 us of Python per spectrum on the
development VM), so on a 2-core machine shared with the daemon, mosquitto and the subscriber it tops out near
3,000-4,000 spectra/s and the throughput search measures the producer, not the daemon.  :class:`ReplaySpectrometer`
is the simulator's :class:`~firmware_bridge.simulator.VirtualSpectrometer` whose spectra are the first
``replay`` it acquired, sent again in turn with the next sequence number and a fresh device timestamp (each
encoded on the way out, as before).  Everything else is the simulator's own code and protocol over a real pty:
the session start (STATUS, DARK, REFERENCE), the answers to the daemon's commands, the ANNOTATION after each
spectrum, the pacing.  The daemon cannot tell the difference but for the spectra repeating every ``replay``.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from firmware_bridge.frames import Annotation, Spectrum, SpectrumFlags
from firmware_bridge.simulator import VirtualSpectrometer

__all__ = ["PRODUCERS", "REPLAY_SPECTRA", "ReplaySpectrometer", "add_arguments", "describe", "sim_args"]

#: ``--producer`` choices.
PRODUCERS = ("simulator", "replay")
#: Spectra the replaying simulator acquires ahead and sends in turn.
REPLAY_SPECTRA = 256


class ReplaySpectrometer(VirtualSpectrometer):
    """A :class:`VirtualSpectrometer` whose streamed spectra are its first ``replay`` acquisitions, sent again in
    turn: each with the next seq and the device clock's time of sending (the ANNOTATION carries its row's values).

    Parameters
    ----------
    *args, **kwargs
        As :class:`VirtualSpectrometer`.
    replay : int
        How many spectra to acquire ahead (>= 1).
    """

    def __init__(self, *args: Any, replay: int = REPLAY_SPECTRA, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if replay < 1:
            raise ValueError(f"expected replay >= 1 spectra, got {replay}")
        self._made = [super(ReplaySpectrometer, self).spectrum() for _ in range(replay)]
        self.seq = 0  # the acquisitions made ahead were never sent
        self.spectra_sent = 0

    def spectrum(self, *, triggered: bool = False) -> tuple[Spectrum, Annotation]:
        made, note = self._made[self.spectra_sent % len(self._made)]
        flags = made.flags | SpectrumFlags.TRIGGERED if triggered else made.flags
        spectrum = dataclasses.replace(made, seq=self._next_seq(), timestamp_us=self._now_us(), flags=flags)
        self.spectra_sent += 1
        return spectrum, Annotation(seq=spectrum.seq, values=note.values)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--producer", choices=PRODUCERS, default="simulator",
                        help="simulator: every spectrum acquired afresh (default); replay: the simulator sends "
                             f"{REPLAY_SPECTRA} spectra acquired ahead again in turn (a cheaper producer)")


def sim_args(args: argparse.Namespace) -> tuple[str, ...]:
    """The simulator's options for ``--producer``."""
    return ("--replay", str(REPLAY_SPECTRA)) if getattr(args, "producer", "simulator") == "replay" else ()


def describe(args: argparse.Namespace) -> str:
    """The producer, in words (the results' ``setup.producer``)."""
    if getattr(args, "producer", "simulator") == "replay":
        return (f"simulator replaying {REPLAY_SPECTRA} spectra acquired ahead (new seq and timestamp each, encoded "
                "on the way out) over a pty")
    return "simulator (every spectrum acquired afresh) over a pty"
