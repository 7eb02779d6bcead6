"""``python -m benchmarks.simproc``: the spectrometer simulator on a pty, stamping frames with the host's clock.

``spectro-sim`` stamps each frame with microseconds since the simulator started. To measure the latency from a
frame's device timestamp to a subscriber's receipt in another process, both must read one clock, so this runner
builds the same :class:`firmware_bridge.simulator.Simulator` with a device clock of ``CLOCK_MONOTONIC``
microseconds (``time.monotonic_ns() // 1000``, system-wide on Linux). Everything else is the simulator's own code;
the first stdout line is the pty path, as with ``spectro-sim --pty``. ``--replay N`` sends N spectra acquired
ahead again in turn (:mod:`benchmarks.producer`), a cheaper producer for the throughput search.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Sequence

__all__ = ["host_clock_us", "main"]


def host_clock_us() -> int:
    """``CLOCK_MONOTONIC`` in microseconds: the clock the benchmark's subscriber reads too."""
    return time.monotonic_ns() // 1000


def main(argv: Sequence[str] | None = None) -> int:
    """Serve ``--count`` spectra at ``--rate`` on a pty published at ``--link``; exit when done."""
    from firmware_bridge.signals import events_on_signals
    from firmware_bridge.simulator import (
        PtyEndpoint,
        Simulator,
        SimulatorConfig,
        VirtualSpectrometer,
        load_spectra,
    )

    p = argparse.ArgumentParser(prog="python -m benchmarks.simproc", description=__doc__.splitlines()[0])
    p.add_argument("--link", required=True, help="symlink to publish the pty at")
    p.add_argument("--dataset", help="dataset .npz (default: the simulator's synthetic spectra)")
    p.add_argument("--rate", type=float, default=100.0, help="spectra per second (0: as fast as possible)")
    p.add_argument("--count", type=int, required=True, help="spectra to send")
    p.add_argument("--line-spectra", type=int, default=0, help="send LINE frames of N spectra (0: SPECTRUM frames)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--replay", type=int, default=0, metavar="N",
                   help="send N spectra acquired ahead again in turn (benchmarks.producer; 0: acquire each afresh)")
    p.add_argument("--linger", type=float, default=2.0, help="seconds to stay up after the last spectrum")
    args = p.parse_args(argv)
    cfg = SimulatorConfig(dataset_path=args.dataset, rate_hz=args.rate, count=args.count, seed=args.seed,
                          line_spectra=args.line_spectra,
                          exit_when_done=True, linger_s=args.linger, connect_delay_s=0.25)
    x, wl, y = load_spectra(cfg)
    if args.replay:
        from benchmarks.producer import ReplaySpectrometer

        device: VirtualSpectrometer = ReplaySpectrometer(x, wl, y, cfg, clock_us=host_clock_us, replay=args.replay)
    else:
        device = VirtualSpectrometer(x, wl, y, cfg, clock_us=host_clock_us)
    sim = Simulator(cfg, PtyEndpoint(args.link), device=device)
    stop = threading.Event()
    with events_on_signals({signal.SIGTERM: stop, signal.SIGINT: stop}):
        rc = sim.run(stop, on_ready=lambda address: print(address, flush=True))
    print(f"sent {device.streamed}", file=sys.stderr, flush=True)
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
