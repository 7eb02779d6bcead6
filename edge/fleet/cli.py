"""Command line of the fleet: ``spectro-fleet list | push | rollout | rollback | status | watch``.

Data goes to stdout, diagnostics and progress to logging on stderr; expected failures end as one clear line and a
non-zero exit code (2: a usage, key or broker problem; 1: a device refused or did not answer, or did not pass its
probation; 3: ``--max-chunks`` stopped a push before the end, push again to resume; 4: a staged rollout stopped
after its canaries).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from edge.errors import EdgeError

log = logging.getLogger("spectro-fleet")

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_INCOMPLETE = 3
EXIT_STOPPED = 4


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spectro-fleet", description="Devices from their retained status; bundles "
                                "pushed over MQTT in signed, resumable chunks (docs/daemon.md, 'Sending a bundle').")
    p.add_argument("--host", default="127.0.0.1", help="MQTT broker host (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=1883, help="MQTT broker port (default 1883)")
    p.add_argument("--prefix", default="spectrolite", help="mqtt.topic_prefix of the devices (default spectrolite)")
    p.add_argument("--hmac-key", type=Path, help="the devices' commands.hmac_key_path: signs every command")
    p.add_argument("--username", help="broker user name")
    p.add_argument("--password-file", type=Path, help="file holding the broker password")
    p.add_argument("--ca", type=Path, help="CA file: connect with TLS")
    p.add_argument("--client-id", default=None, help="MQTT client id (default spectro-fleet-<pid>)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="devices from their retained status")
    ls.add_argument("--json", action="store_true", help="print the statuses as JSON")
    st = sub.add_parser("status", help="the retained status of one device (JSON), or of all (table)")
    st.add_argument("device", nargs="?", help="device_id or site/line/device_id")
    st.add_argument("--json", action="store_true", help="print JSON")
    push = sub.add_parser("push", help="send a signed bundle to a device or a deployment group and install it")
    push.add_argument("bundle", type=Path, help="the .spectrolite file (signed by a key the devices trust)")
    to = push.add_mutually_exclusive_group(required=True)
    to.add_argument("--to", help="device_id or site/line/device_id")
    to.add_argument("--group", help="a deployment group (deploy.groups), e.g. plant-a/line-1")
    push.add_argument("--chunk-size", type=int, default=16_384, help="bytes per chunk (default 16384; at most the "
                      "devices' deploy.max_chunk_bytes)")
    push.add_argument("--window", type=int, default=8, help="chunks sent and not yet acknowledged, at most")
    push.add_argument("--max-chunks", type=int, default=None, help="send at most this many chunks in this run, "
                      "then stop (exit 3); the next push resumes")
    push.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each step's answers")
    push.add_argument("--commit-timeout", type=float, default=120.0, help="seconds to wait for the install")
    push.add_argument("--json", action="store_true", help="print the outcome per device as JSON")
    ro = sub.add_parser("rollout", help="a staged rollout: canaries on probation first, then the rest")
    ro.add_argument("bundle", type=Path, help="the .spectrolite file (signed by a key the devices trust)")
    targets = ro.add_mutually_exclusive_group(required=True)
    targets.add_argument("--to", action="append", help="a device (device_id or site/line/device_id); repeat it")
    targets.add_argument("--group", help="the online devices whose retained status lists this deployment group")
    ro.add_argument("--canary", default="1", help="canaries first: a count (K) or a share (P%%) of the devices, at "
                    "least one; the first by site, line, device id (default 1)")
    ro.add_argument("--window-spectra", type=int, required=True, help="the probation window: spectra judged on "
                    "each device before its new bundle passes")
    ro.add_argument("--max-ood-rate", type=float, default=None, help="share of the window flagged "
                    "out_of_distribution above which the device returns to the bundle that served before")
    ro.add_argument("--max-rejected-rate", type=float, default=None, help="share of the window rejected above "
                    "which the device returns to the bundle that served before")
    ro.add_argument("--max-failures", type=int, default=0, help="canaries that may fail without stopping the "
                    "rollout (default 0)")
    ro.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the verdicts of each wave "
                    "(default 600)")
    ro.add_argument("--chunk-size", type=int, default=16_384, help="bytes per chunk (default 16384)")
    ro.add_argument("--ack-timeout", type=float, default=10.0, help="seconds to wait for each step's answers")
    ro.add_argument("--json", action="store_true", help="print the outcome per device as JSON")
    rb = sub.add_parser("rollback", help="ask devices to return to the bundle that served before their last install")
    rb_to = rb.add_mutually_exclusive_group(required=True)
    rb_to.add_argument("--to", action="append", help="a device (device_id or site/line/device_id); repeat it")
    rb_to.add_argument("--group", help="the online devices whose retained status lists this deployment group")
    rb.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the devices to return")
    rb.add_argument("--json", action="store_true", help="print the outcome per device as JSON")
    watch = sub.add_parser("watch", help="print every status change (a rollout's progress) until interrupted")
    watch.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    try:
        return _run(args)
    except EdgeError as exc:
        print(f"spectro-fleet: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"spectro-fleet: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace) -> int:
    from edge.commands import load_hmac_key
    from edge.fleet.client import Device, FleetClient

    key = load_hmac_key(args.hmac_key) if args.hmac_key is not None else None
    password = args.password_file.read_text(encoding="utf-8").strip() if args.password_file else None

    def on_status(d: Device) -> None:
        if args.command == "watch":
            print(_watch_line(d), flush=True)

    client = FleetClient(args.host, args.port, prefix=args.prefix, hmac_key=key, username=args.username,
                         password=password, ca_path=args.ca, client_id=args.client_id or f"spectro-fleet-{os.getpid()}",
                         on_status=on_status)
    try:
        if args.command == "watch":
            end = None if args.duration is None else time.monotonic() + args.duration
            while end is None or time.monotonic() < end:
                time.sleep(0.2)
            return 0
        client.settle()
        if args.command in ("list", "status") and getattr(args, "device", None) is None:
            devices = sorted(client.devices().values(), key=lambda d: (d.site, d.line, d.device_id))
            if args.json:
                print(json.dumps([{"site": d.site, "line": d.line, "device_id": d.device_id, "status": d.status}
                                  for d in devices], indent=2))
            else:
                _print_table(devices)
            return 0
        if args.command == "status":
            print(json.dumps(client.find(args.device).status, indent=2))
            return 0
        if args.command == "rollout":
            return _rollout(client, args, key)
        if args.command == "rollback":
            return _rollback(client, args)
        return _push(client, args, key)
    finally:
        client.close()


def _push(client: Any, args: argparse.Namespace, key: bytes | None) -> int:
    from edge.fleet.client import FleetError
    from edge.fleet.push import Bundle, Pusher

    if key is None:
        log.warning("no --hmac-key: commands are sent unsigned (refused by devices with commands.require_auth)")
    bundle = Bundle.read(args.bundle, args.chunk_size)
    if args.group is not None:
        devices = [d for d in client.devices().values() if args.group in d.groups and d.online]
        if not devices:
            raise FleetError(f"--group: expected online devices whose retained status lists the group "
                             f"{args.group!r} (deploy.groups), got none")
    else:
        devices = [client.find(args.to)]
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= 1.0:
            last[0] = now
            log.info("chunks: %d/%d", done, total)

    pusher = Pusher(client, bundle, devices, group=args.group, window=args.window, ack_timeout_s=args.timeout,
                    commit_timeout_s=args.commit_timeout, progress=progress)
    outcomes = pusher.run(max_chunks=args.max_chunks)
    if args.json:
        print(json.dumps({"bundle": str(args.bundle), "sha256": bundle.sha256, "transfer_id": bundle.transfer_id,
                          "chunks": bundle.chunks, "chunks_sent": pusher.chunks_sent,
                          "devices": [o.as_dict() for o in outcomes.values()]}, indent=2))
    else:
        for o in outcomes.values():
            print(f"{o.device_id}: {o.state}{': ' + o.detail if o.detail else ''}")
    states = {o.state for o in outcomes.values()}
    if states == {"installed"}:
        return 0
    if states <= {"installed", "incomplete"}:
        return EXIT_INCOMPLETE
    return EXIT_REFUSED


def _rollout(client: Any, args: argparse.Namespace, key: bytes | None) -> int:
    from edge.deploy.probation import parse_probation
    from edge.fleet.client import FleetError
    from edge.fleet.push import Bundle
    from edge.fleet.rollout import StagedRollout, canary_count

    if key is None:
        log.warning("no --hmac-key: commands are sent unsigned (refused by devices with commands.require_auth)")
    rule = {k: v for k, v in (("window_spectra", args.window_spectra), ("max_ood_rate", args.max_ood_rate),
                              ("max_rejected_rate", args.max_rejected_rate)) if v is not None}
    try:
        parse_probation("--window-spectra/--max-ood-rate/--max-rejected-rate", rule)
    except EdgeError as exc:
        raise FleetError(str(exc)) from None
    devices = _targets(client, args)
    bundle = Bundle.read(args.bundle, args.chunk_size)
    staged = StagedRollout(client, bundle, devices, canaries=canary_count(args.canary, len(devices)),
                           probation=rule, max_failures=max(0, args.max_failures), timeout_s=args.timeout,
                           push={"ack_timeout_s": args.ack_timeout}, report=lambda line: log.info("%s", line))
    results = staged.run()
    summary = staged.summary()
    if args.json:
        print(json.dumps({"bundle": str(args.bundle), "sha256": bundle.sha256, "transfer_id": bundle.transfer_id,
                          "probation": rule, "stopped": staged.stopped, "summary": summary,
                          "devices": [r.as_dict() for r in results.values()]}, indent=2))
    else:
        for r in results.values():
            print(f"{r.wave} {r.device_id}: {r.state}" + (f" ({r.reason})" if r.reason else "")
                  + (f": {r.detail}" if r.detail else ""))
        if staged.stopped:
            print(f"rollout stopped after the canaries: {staged.stopped}")
        print("; ".join(f"{k} {len(v)}" + (f" ({', '.join(v)})" if v else "") for k, v in summary.items()))
    if staged.stopped:
        return EXIT_STOPPED
    return 0 if len(summary["updated"]) == len(results) else EXIT_REFUSED


def _targets(client: Any, args: argparse.Namespace) -> list[Any]:
    """The devices of ``--group`` (online, listing it) or of each ``--to``."""
    from edge.fleet.client import FleetError

    if args.group is not None:
        devices = [d for d in client.devices().values() if args.group in d.groups and d.online]
        if not devices:
            raise FleetError(f"--group: expected online devices whose retained status lists the group "
                             f"{args.group!r} (deploy.groups), got none")
        return devices
    return [client.find(t) for t in dict.fromkeys(args.to)]


def _rollback(client: Any, args: argparse.Namespace) -> int:
    from edge.fleet.rollout import roll_back

    results = roll_back(client, _targets(client, args), timeout_s=args.timeout,
                        report=lambda line: log.info("%s", line))
    if args.json:
        print(json.dumps({"devices": [r.as_dict() for r in results.values()]}, indent=2))
    else:
        for r in results.values():
            print(f"{r.device_id}: {r.state}" + (f": {r.detail}" if r.detail else ""))
    return 0 if all(r.state == "rolled_back" for r in results.values()) else EXIT_REFUSED


def _print_table(devices: list[Any]) -> None:
    rows = [("DEVICE", "SITE", "LINE", "STATE", "MODEL", "GROUPS", "DEPLOY")]
    for d in devices:
        t = d.transfer
        deploy = "-" if t is None else f"{t['state']} {t['received']}/{t['chunks']} {t.get('name') or ''}".strip()
        rows.append((d.device_id, d.site, d.line, str(d.status.get("state", "?")), d.model,
                     ",".join(d.groups) or "-", deploy))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def _watch_line(d: Any) -> str:
    t = d.transfer
    deploy = "" if t is None else f" deploy {t['transfer_id']} {t['state']} {t['received']}/{t['chunks']}" + (
        f" ({t['error']})" if t.get("error") else "")
    ro = (d.status.get("deploy") or {}).get("rollout")
    if isinstance(ro, dict):
        window = (ro.get("rule") or {}).get("window_spectra")
        deploy += (f" rollout {ro.get('state')}" + (f" {ro.get('spectra')}/{window} spectra, {ro.get('ood')} ood, "
                                                      f"{ro.get('rejected')} rejected" if window else "")
                   + (f" ({ro['reason']})" if ro.get("reason") else ""))
    err = d.status.get("last_error")
    return (f"{d.site}/{d.line}/{d.device_id} {d.status.get('state', '?')} {d.model}{deploy}"
            + (f" last_error: {err}" if err else ""))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
