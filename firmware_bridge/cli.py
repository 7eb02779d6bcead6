"""Command line of the spectrometer simulator, ``spectro-sim``: serve a virtual spectrometer on a pty or TCP port.

The first line on stdout (flushed at once) is what a host opens: the pty's stable symlink path with ``--pty``, or a
``socket://host:port`` URL with ``--tcp``.  Diagnostics go to stderr.  SIGTERM and SIGINT stop it cleanly (the
symlink is removed); exit code 0 on a clean stop, 2 on bad arguments or an unreadable dataset, 1 when the link
fails during the run (an OS error on the pty or socket).

Example::

    spectro-sim --pty --dataset ../shared/datasets/idrc2002_tablets.npz --rate 20 --count 200 --drift-at 100

``--line-spectra N`` plays a line-scan (push-broom) camera: LINE frames of N consecutive spectra each, numbered
per spectrum (the rate still counts spectra; no ANNOTATION frames).

By default the device sends raw detector counts (STATUS ``signal`` COUNTS, with DARK and REFERENCE frames);
``--signal absorbance`` (or ``reflectance``) plays a device that processes on board and streams float32 spectra of
that signal.  Each run boots with a random ``boot_id``; ``--reboot-every N`` reboots the firmware after every N
spectra (new ``boot_id``, ``seq`` and uptime from 0, an unsolicited STATUS).

The STATUS announces the dataset's axis as a polynomial in the axis's own unit: ``--axis-unit cm-1`` for an FTIR
dataset (the MIR sets of ``../shared/datasets``, whose ``.npz`` files do not say their unit; their READMEs do),
``nm`` for a grating one; the default ``auto`` takes the dataset's ``axis_unit`` entry (synthetic datasets carry
one), else nm.  No range can decide it: those NIR sets span 600-1898 nm and the FTIR ones 799-1911 cm-1.
Example::

    spectro-sim --pty --dataset ../shared/datasets/fruit_puree_mir.npz --axis-unit cm-1 --signal absorbance
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from firmware_bridge.errors import BridgeError
from firmware_bridge.frames import AxisUnit, SignalKind
from firmware_bridge.signals import events_on_signals
from firmware_bridge.simulator import (
    DEFAULT_REFERENCE_AVERAGES,
    DRIFT_KINDS,
    FaultConfig,
    ProvokedDriftConfig,
    PtyEndpoint,
    Simulator,
    SimulatorConfig,
    TcpEndpoint,
)

__all__ = ["build_parser", "main"]

_LOG = logging.getLogger("firmware_bridge.cli")


def _rows(text: str) -> slice:
    try:
        parts = [int(p) if p else None for p in text.split(":")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START:STOP[:STEP] of integers, got {text!r}") from None
    if not 1 <= len(parts) <= 3:
        raise argparse.ArgumentTypeError(f"expected START:STOP[:STEP], got {text!r}")
    if len(parts) == 1:
        start = parts[0]
        return slice(start, None if start is None else start + 1)
    return slice(*parts)


def _names(text: str) -> tuple[str, ...]:
    """``NAME[,NAME...]`` as a tuple of names (spaces around each stripped)."""
    names = tuple(n.strip() for n in text.split(","))
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected NAME[,NAME...] with no empty name, got {text!r}")
    return names


def _sample_tag(text: str) -> tuple[int, str, int]:
    """``INDEX:FRAMES:ID`` as ``(index, sample_id, frames)`` (the id may hold colons)."""
    index, _, rest = text.partition(":")
    frames, sep, sample_id = rest.partition(":")
    try:
        tag = (int(index), sample_id, int(frames))
    except ValueError:
        sep = ""
    if not sep:
        raise argparse.ArgumentTypeError(f"expected INDEX:FRAMES:ID (two integers and a sample id), got {text!r}")
    return tag


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``spectro-sim``."""
    p = argparse.ArgumentParser(
        prog="spectro-sim",
        description="A virtual spectrometer speaking the spectrolite serial protocol on a pty pair or a TCP port.",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--pty", action="store_true", help="serve on a pty pair; prints the device path first")
    where.add_argument("--tcp", type=int, metavar="PORT", help="serve on TCP PORT (0: a free one); prints the URL")
    p.add_argument("--host", default="127.0.0.1", help="address to bind with --tcp (default %(default)s)")
    p.add_argument("--link", metavar="PATH", help="stable symlink to publish the pty at (default: in a temp folder)")

    data = p.add_argument_group("data")
    data.add_argument("--dataset", metavar="NPZ", help="dataset .npz to stream (default: synthetic Beer-Lambert)")
    data.add_argument("--split", help="stream only rows whose 'split' equals this (e.g. test)")
    data.add_argument("--rows", type=_rows, metavar="START:STOP[:STEP]", help="rows to stream, cycled")
    data.add_argument("--shuffle", action="store_true", help="stream rows in a seeded random order")
    data.add_argument("--targets", type=_names, metavar="NAME[,NAME...]",
                      help="reference values of each ANNOTATION: these of the dataset's target_names, in this order "
                           "(give the bundle's targets; default: every target, in the dataset's order)")
    data.add_argument("--synthetic-samples", type=int, default=500, help="size of the synthetic dataset")
    data.add_argument("--synthetic-channels", type=int, default=256, help="pixels of the synthetic dataset")
    data.add_argument(
        "--axis-unit",
        choices=["auto", *(u.symbol for u in AxisUnit)],
        default="auto",
        help="unit of the dataset's wavelengths and of the axis the STATUS announces: nm (grating, NIR) or cm-1 "
        "(FTIR, MIR); auto (default): the dataset's axis_unit entry, else nm (the shared MIR .npz files have none: "
        "give cm-1 for them)",
    )

    run = p.add_argument_group("acquisition")
    run.add_argument(
        "--rate", type=float, default=10.0, metavar="HZ", help="spectra per second (0: as fast as possible)"
    )
    run.add_argument("--count", type=int, default=0, metavar="N", help="spectra to stream (0: endless)")
    run.add_argument(
        "--line-spectra",
        type=int,
        default=0,
        metavar="N",
        help="stream LINE frames of N spectra each, as a push-broom camera (no ANNOTATIONs; --rate counts spectra)",
    )
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--integration-time-us", type=int, help="exposure (default: fills 80%% of the ADC)")
    run.add_argument("--averages", type=int, default=1, help="scans averaged per spectrum")
    run.add_argument(
        "--reference-averages",
        type=int,
        default=DEFAULT_REFERENCE_AVERAGES,
        metavar="N",
        help="scans averaged into each DARK and REFERENCE frame (default %(default)s: the references are shared by "
        "every spectrum of a session, so their noise biases all of them)",
    )
    run.add_argument("--device-id", default="SIM-0001")
    run.add_argument(
        "--signal",
        choices=[k.name.lower() for k in SignalKind],
        default="counts",
        help="what SPECTRUM frames carry: raw detector counts with DARK/REFERENCE frames (default), or the "
        "processed absorbance or reflectance as float32 (announced in STATUS)",
    )
    run.add_argument("--no-autostart", action="store_true", help="wait for a START_STREAM command")
    run.add_argument("--exit-when-done", action="store_true", help="exit after --count spectra (and --linger)")
    run.add_argument("--linger", type=float, default=1.0, metavar="S", help="wait before exiting when done")
    run.add_argument("--connect-delay", type=float, default=0.25, metavar="S", help="wait after a host opens the port")
    run.add_argument("--sample-tag", action="append", default=[], type=_sample_tag, metavar="INDEX:FRAMES:ID",
                     help="send a SAMPLE_TAG frame (the device's own tag_sample) before spectrum INDEX of the stream: "
                          "the next FRAMES spectra are lab sample ID's (repeatable)")

    drift = p.add_argument_group("drifts")
    drift.add_argument(
        "--lamp-ageing", type=float, default=0.0, metavar="FRAC", help="lamp output lost per 1000 spectra"
    )
    drift.add_argument(
        "--wavelength-shift-nm-per-kframe",
        type=float,
        default=0.0,
        metavar="SHIFT",
        help="axis drift per 1000 spectra, in the axis unit (nm, or cm-1 with --axis-unit cm-1)",
    )
    drift.add_argument("--baseline-offset", type=float, default=0.0, help="absorbance added to every spectrum")
    drift.add_argument("--baseline-drift-per-kframe", type=float, default=0.0, help="absorbance added per 1000 spectra")
    drift.add_argument("--drift-at", type=int, metavar="FRAME", help="start a provoked drift at this spectrum index")
    drift.add_argument("--drift-kind", choices=sorted(DRIFT_KINDS), default="band", help="kind of provoked drift")
    drift.add_argument("--drift-size", type=float, help="size of the provoked drift (default per kind)")
    drift.add_argument("--drift-ramp", type=int, default=20, metavar="FRAMES", help="spectra to reach full size")
    drift.add_argument("--product-dataset", metavar="NPZ",
                       help="the other product of --drift-kind product (default: synthetic spectra, another seed)")
    drift.add_argument("--product-split", help="only the other product's rows whose 'split' equals this")

    faults = p.add_argument_group("fault injection")
    faults.add_argument("--bit-flip-rate", type=float, default=0.0, help="probability of a bit flip per byte")
    faults.add_argument("--drop-byte-rate", type=float, default=0.0, help="probability of dropping a byte")
    faults.add_argument("--disconnect-every", type=int, default=0, metavar="N", help="unplug after every N spectra")
    faults.add_argument("--disconnect-for", type=float, default=1.0, metavar="S", help="seconds unplugged")
    faults.add_argument(
        "--garbage-every", type=int, default=0, metavar="N", help="64 random bytes after every N spectra"
    )
    faults.add_argument(
        "--truncate-every", type=int, default=0, metavar="N", help="cut every N-th spectrum frame short"
    )
    faults.add_argument("--stall-every", type=int, default=0, metavar="N", help="go silent after every N spectra")
    faults.add_argument("--stall-for", type=float, default=1.0, metavar="S", help="seconds of each stall")
    faults.add_argument("--pixel-change-at", type=int, metavar="FRAME", help="change the pixel count at this spectrum")
    faults.add_argument("--pixel-change-to", type=int, default=0, metavar="N", help="pixel count after the change")
    faults.add_argument("--recalibrate-at", type=int, metavar="FRAME", help="announce a new wavelength calibration")
    faults.add_argument(
        "--recalibrate-shift-nm",
        type=float,
        default=5.0,
        help="shift of the new calibration, in the axis unit (nm, or cm-1 with --axis-unit cm-1)",
    )
    faults.add_argument(
        "--reboot-every",
        type=int,
        default=0,
        metavar="N",
        help="reboot the firmware after every N spectra: new boot id, seq and uptime from 0, unsolicited STATUS",
    )

    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging on stderr (-v info, -vv debug)")
    return p


def _config(args: argparse.Namespace) -> SimulatorConfig:
    return SimulatorConfig(
        dataset_path=args.dataset,
        rows=args.rows,
        split=args.split,
        shuffle=args.shuffle,
        targets=args.targets,
        rate_hz=args.rate,
        count=args.count,
        line_spectra=args.line_spectra,
        seed=args.seed,
        integration_time_us=args.integration_time_us,
        averages=args.averages,
        reference_averages=args.reference_averages,
        device_id=args.device_id,
        signal=SignalKind[args.signal.upper()],
        autostart=not args.no_autostart,
        connect_delay_s=args.connect_delay,
        exit_when_done=args.exit_when_done,
        linger_s=args.linger,
        synthetic_samples=args.synthetic_samples,
        synthetic_channels=args.synthetic_channels,
        axis_unit=None if args.axis_unit == "auto" else AxisUnit.from_symbol(args.axis_unit),
        sample_tags=tuple(args.sample_tag),
        drift=ProvokedDriftConfig(
            lamp_ageing_per_kframe=args.lamp_ageing,
            wavelength_shift_nm_per_kframe=args.wavelength_shift_nm_per_kframe,
            baseline_offset=args.baseline_offset,
            baseline_drift_per_kframe=args.baseline_drift_per_kframe,
            drift_at_frame=args.drift_at,
            drift_kind=args.drift_kind,
            drift_size=args.drift_size,
            drift_ramp_frames=args.drift_ramp,
            product_dataset=args.product_dataset,
            product_split=args.product_split,
        ),
        faults=FaultConfig(
            bit_flip_rate=args.bit_flip_rate,
            drop_byte_rate=args.drop_byte_rate,
            disconnect_every=args.disconnect_every,
            disconnect_for_s=args.disconnect_for,
            garbage_every=args.garbage_every,
            truncate_every=args.truncate_every,
            stall_every=args.stall_every,
            stall_for_s=args.stall_for,
            pixel_change_at=args.pixel_change_at,
            pixel_change_to=args.pixel_change_to,
            recalibrate_at=args.recalibrate_at,
            recalibrate_shift_nm=args.recalibrate_shift_nm,
            reboot_every=args.reboot_every,
        ),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``spectro-sim``; returns the exit code."""
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s spectro-sim %(levelname)s %(message)s")
    try:
        config = _config(args)
        endpoint = PtyEndpoint(args.link) if args.pty else TcpEndpoint(args.tcp, args.host)
        sim = Simulator(config, endpoint)
    except (BridgeError, OSError) as exc:
        print(f"spectro-sim: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def _ready(address: str) -> None:
        print(address, flush=True)
        _LOG.info(
            "serving %d-pixel spectra of %s on a %s axis at %s (integration time %d us, boot_id 0x%08x)",
            sim.device.pixel_count,
            sim.device.signal.name.lower(),
            sim.device.axis_unit.symbol,
            address,
            sim.device.integration_time_us,
            sim.device.boot_id,
        )

    try:
        with events_on_signals({signal.SIGTERM: stop, signal.SIGINT: stop}):
            return sim.run(stop, on_ready=_ready)
    except OSError as exc:
        print(f"spectro-sim: {exc}", file=sys.stderr)
        return 1

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
