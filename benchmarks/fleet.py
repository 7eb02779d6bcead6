"""``spectro-bench fleet``: a fleet of devices publishing through a site broker bridged to a central broker, through
a central outage and a site-broker restart; what reaches the central consumer, and how the devices reconnect.

Usage::

    spectro-bench fleet [--devices 20] [--outage-s 30] [--rate-hz 5] [--json PATH]

Two real mosquitto processes run the shipped ``deploy/mosquitto/site-bridge.conf`` and ``central.conf``, localised
to 127.0.0.1 (:mod:`benchmarks.bridge`).  Each device is the daemon's publishing stack (outbox + MQTT publisher,
built from an ``EdgeConfig`` as ``spectro-edge run`` builds it) publishing ``prediction`` messages at ``--rate-hz``;
the spectrometer, pty and model are left out, since N daemons with N simulators do not fit on a small machine at
N = 20 and the brokers only see MQTT.  A consumer with a persistent QoS 1 session on the central broker keeps every
``(device_id, seq)``.

The run: devices publish; once every device's data reaches the consumer, the central broker stops for
``--outage-s`` while they keep publishing (the site broker's bridge queues); then the site broker is restarted once
(every device loses its broker and reconnects after its jittered delay); publishing stops and the run waits until
everything has arrived or nothing more comes.

Rollout: once data flows, a staged rollout of one signed bundle (``--rollout-bundle``, default the committed demo
bundle 1.1.0; every device serves the demo bundle 1.0.0, signed with the same key, at the start) goes from the central
broker through the bridge while the devices keep publishing (``spectro-fleet rollout``'s code): 10% of the devices
as canaries first, on probation (at most 20% of the first 20 spectra flagged out_of_distribution), then the rest
unless more than one canary failed.  The first device (``nir-00``, a canary) sees a stream the new bundle flags
out_of_distribution, so it fails its probation and returns by itself to the bundle that served before.  Each device
runs the daemon's deploy and probation code (:mod:`benchmarks.rollout`: signed commands, staging, SHA-256 checks,
trusted signature, load and self-test, probation, the return through the anti-rollback guard), not its inference:
the spectra judged and their OOD flags are synthesised counts (see :mod:`benchmarks.rollout`).

JSON keys: ``devices``, ``rate_hz`` (per device), ``outage_s``, ``predictions_sent``,
``predictions_received_central`` (distinct), ``lost``, ``duplicates``, ``reconnect_spread_s`` (last minus first
device back after the site-broker restart), ``reconnect_window_s`` (``[min, 2 x min]`` of the devices' first
jittered delay), ``reconnect_first_s``/``reconnect_last_s`` (from the site broker's stop), ``devices_not_back``,
``rollout_devices_updated`` (devices that passed their probation with the new bundle; ``rollout_devices_not_updated``
says why for the others), ``rollback_devices_restored`` (devices that failed their probation and serve the bundle
that served before again), ``rollout_as_rule_says`` (every failing device restored, every other one updated, none
left behind unless the rule stopped the rollout), ``rollout_canaries``, ``rollout_failing_devices``,
``rollout_stopped``, ``rollout_probation``, ``rollout_s`` (the whole staged rollout), ``rollout_bundle_bytes``,
``rollout_chunks``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bridge import BrokerPair, CentralConsumer, SimulatedFleet, outage, settle, tally, warm_up
from benchmarks.results import markdown_table, publish, system_load
from benchmarks.rollout import DEFAULT_BUNDLE, Rollout

#: Deadlines (a failure to get there, not figures).
RECONNECT_TIMEOUT_S = 60.0
SETTLE_S = 120.0
#: Seconds of publishing after the site broker is back, so live and backlog data mix.
AFTER_RESTART_S = 2.0

#: The device whose stream the rolled-out bundle flags out_of_distribution (the first canary).
FAILING_DEVICE = "nir-00"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``spectro-bench fleet``."""
    parser.add_argument("--devices", type=int, default=20, help="simulated devices (default 20)")
    parser.add_argument("--outage-s", type=float, default=30.0, help="seconds the central broker is down (default 30)")
    parser.add_argument("--rate-hz", type=float, default=5.0, help="predictions per second per device (default 5)")
    parser.add_argument("--reconnect-min-delay-s", type=int, default=1,
                        help="devices' mqtt.reconnect_min_delay_s (default 1: jitter window 1-2 s)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the devices' reconnect jitter")
    parser.add_argument("--workdir", type=Path, default=None, help="keep broker logs and outboxes here")
    parser.add_argument("--rollout-bundle", type=Path, default=DEFAULT_BUNDLE,
                        help="the bundle pushed to every device during the run (signed here with a key made for it; "
                        "default the committed demo bundle 1.1.0)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures as JSON here")


def measure(workdir: Path, *, devices: int, outage_s: float, rate_hz: float, reconnect_min_delay_s: int = 1,
            seed: int = 0, rollout_bundle: Path | None = DEFAULT_BUNDLE) -> dict[str, Any]:
    """One run (see the module docstring); returns the JSON figures."""
    rollout = (Rollout.create(workdir / "rollout", rollout_bundle, failing=frozenset({FAILING_DEVICE}))
               if rollout_bundle is not None else None)
    with BrokerPair(workdir / "brokers") as pair:
        consumer = CentralConsumer(pair.central.port)
        fleet = SimulatedFleet(workdir / "devices", pair.site.port, devices,
                               reconnect_min_delay_s=reconnect_min_delay_s,
                               reconnect_max_delay_s=max(8, 8 * reconnect_min_delay_s), seed=seed,
                               extra_config=rollout.device_config() if rollout is not None else None,
                               command_handler=rollout.receivers(rate_hz) if rollout is not None else None)
        pushed: dict[str, Any] = {"rollout_devices_updated": None, "rollback_devices_restored": None}
        try:
            fleet.start()
            fleet.start_publishing(rate_hz)
            warm_up(fleet, consumer, pair)
            if rollout is not None:  # through the central broker and the bridge, while the devices publish
                pushed = rollout.staged(pair.central.port, fleet.topics())
            outage(pair.central, outage_s)
            before = fleet.connects()
            stopped_at = time.monotonic()
            pair.site.stop()
            pair.site.start()
            back = fleet.reconnect_times(before, RECONNECT_TIMEOUT_S)
            time.sleep(AFTER_RESTART_S)
            fleet.stop_publishing()
            fleet.wait_delivered_to_site(RECONNECT_TIMEOUT_S)
            settle(consumer, fleet.sent(), SETTLE_S)
            counts = tally(fleet, consumer)
        finally:
            fleet.close()
            consumer.close()
    times = [t - stopped_at for t in back if t is not None]
    return {
        "devices": devices,
        "rate_hz": rate_hz,
        "outage_s": outage_s,
        **counts.to_dict(),
        "missing_sample": [list(k) for k in counts.missing_sample],
        "reconnect_spread_s": (max(times) - min(times)) if times else None,
        "reconnect_first_s": min(times) if times else None,
        "reconnect_last_s": max(times) if times else None,
        "reconnect_window_s": list(fleet.reconnect_window_s),
        "devices_not_back": sum(t is None for t in back),
        **pushed,
        "devices_are": "in-process publishing stacks (outbox + MqttPublisher from an EdgeConfig), not daemons; for "
                       "the rollout each runs the daemon's deploy and probation code (benchmarks/rollout.py), not its "
                       "inference: spectra judged and their OOD flags are synthesised counts",
    }


def render(result: dict[str, Any]) -> str:
    """The figures as a markdown table."""
    window = result["reconnect_window_s"]
    rows = [
        ("devices", result["devices"]),
        ("predictions/s per device", result["rate_hz"]),
        ("central outage, s", result["outage_s"]),
        ("predictions sent", result["predictions_sent"]),
        ("received centrally (distinct)", result["predictions_received_central"]),
        ("lost", result["lost"]),
        ("duplicates", result["duplicates"]),
        ("reconnect spread after a site-broker restart, s", result["reconnect_spread_s"]),
        ("jitter window of the first retry, s", f"{window[0]:g}-{window[1]:g}"),
        ("devices not back", result["devices_not_back"]),
        ("rollout devices updated (staged: canaries on probation, then the rest)",
         "not measured" if result.get("rollout_devices_updated") is None
         else f"{result['rollout_devices_updated']} of {result['devices']} in {result['rollout_s']:.1f} s"),
        ("rollback devices restored (failed their probation)",
         "not measured" if result.get("rollback_devices_restored") is None
         else f"{result['rollback_devices_restored']} ({', '.join(result['rollout_failing_devices'])} failing)"),
        ("every device updated or restored as the rule says",
         "not measured" if result.get("rollout_as_rule_says") is None else str(result["rollout_as_rule_says"])),
    ]
    return markdown_table(("figure", "value"), rows)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``spectro-bench fleet``."""
    if args.devices < 1 or args.outage_s < 0 or args.rate_hz <= 0:
        print(f"spectro-bench fleet: expected --devices >= 1, --outage-s >= 0, --rate-hz > 0, got "
              f"{args.devices}, {args.outage_s}, {args.rate_hz}", file=sys.stderr)
        return 2
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        result = measure(args.workdir, devices=args.devices, outage_s=args.outage_s, rate_hz=args.rate_hz,
                         reconnect_min_delay_s=args.reconnect_min_delay_s, seed=args.seed,
                         rollout_bundle=args.rollout_bundle)
    else:
        with tempfile.TemporaryDirectory(prefix="spectro-bench-fleet-") as tmp:
            result = measure(Path(tmp), devices=args.devices, outage_s=args.outage_s, rate_hz=args.rate_hz,
                             reconnect_min_delay_s=args.reconnect_min_delay_s, seed=args.seed,
                             rollout_bundle=args.rollout_bundle)
    result["load"] = system_load()
    publish(args, result, render(result))
    rule_kept = result.get("rollout_as_rule_says") is not False
    return 0 if result["lost"] == 0 and result["devices_not_back"] == 0 and rule_kept else 1
