"""Command line of the device side: ``spectro-edge check | run | config | keys | sign-command | audit | export |
schemas``.

The demo, which trains a model, is ``spectro-bench demo`` (the device side never imports the trainer).

Data goes to stdout, diagnostics to logging on stderr; expected failures end as one clear line and a non-zero
exit code.  Every subcommand imports its module lazily, so ``spectro-edge --help`` stays instant on a Pi.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from edge.errors import EdgeError
from edge.validation import require_mapping

if TYPE_CHECKING:
    from edge.config import EdgeConfig

log = logging.getLogger("spectro-edge")

#: pyserial URL schemes (``serial.serial_for_url``) whose rest is a local device path that must exist.
SERIAL_PATH_SCHEMES = ("spy", "alt")
#: pyserial URL schemes accepted as they are by ``config --validate`` (nothing to look at without opening them).
SERIAL_URL_SCHEMES = ("loop", "socket", "rfc2217", "hwgrep", "cp2110", *SERIAL_PATH_SCHEMES)


class EdgeArgumentError(EdgeError, ValueError):
    """A command-line argument is malformed (the message names it and what was expected)."""


@dataclass(frozen=True)
class Check:
    """One line of ``spectro-edge config --validate``: what was checked, whether it passed, and what was found."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'OK' if self.ok else 'FAIL':<5} {self.name:<7} {self.detail}"


def check_serial(port_url: str) -> Check:
    """Whether the configured serial device exists: a device path that exists, or a pyserial URL (accepted as it
    is, with a note; ``spy://`` and ``alt://`` URLs must name an existing device)."""
    if "://" in port_url:
        scheme, rest = port_url.split("://", 1)
        if scheme.lower() not in SERIAL_URL_SCHEMES:
            return Check("serial", False, f"{port_url}: expected a device path or a pyserial URL "
                         f"({', '.join(s + '://' for s in SERIAL_URL_SCHEMES)}), got the scheme {scheme}://")
        if scheme.lower() in SERIAL_PATH_SCHEMES:
            path = rest.split("?", 1)[0]
            if not os.path.exists(path):
                return Check("serial", False, f"{port_url}: no such device {path}")
            return Check("serial", True, f"{port_url}: {path} exists")
        return Check("serial", True, f"{port_url}: a pyserial URL, accepted as it is (not opened)")
    if not os.path.exists(port_url):
        return Check("serial", False, f"{port_url}: no such device (is the spectrometer plugged in, or the "
                     "simulator's pty link created?)")
    kind = "a character device" if Path(port_url).is_char_device() else "exists, but is not a character device"
    return Check("serial", True, f"{port_url}: {kind}")


def check_bundle(config: Any) -> Check:
    """Whether the configured bundle exists, verifies (hashes, signature with the configured key), passes its
    golden-vector self-test (unless ``bundle.self_test = false``, as ``run``) and has the targets the
    ``[control]`` check standards name."""
    path = Path(config.bundle.path)
    if not path.is_file():
        return Check("bundle", False, f"{path}: no such file")
    from edge.bundle import load_bundle

    try:
        bundle = load_bundle(path, public_key=config.bundle.public_key_path, self_test=config.bundle.self_test,
                             num_threads=config.runtime.num_threads)
        from edge.control_samples import check_targets

        check_targets(config.control.standards, [t.name for t in bundle.targets])  # what run refuses to start on
    except (EdgeError, OSError, ValueError) as exc:
        return Check("bundle", False, f"{path}: {exc}")
    summary = bundle.self_test.summary() if bundle.self_test is not None else "not run (bundle.self_test = false)"
    return Check("bundle", True, f"{path}: {bundle.model_id} {bundle.model_version}, takes "
                 f"{bundle.input_contract.frame_signal} frames; self-test {summary}")


def check_broker(config: Any) -> Check:
    """Whether the MQTT client can be built from the configuration as ``run`` builds it: the password file read,
    the TLS CA, certificate and key loaded (nothing is connected)."""
    from edge.publish.client import build_client, read_password

    m = config.mqtt
    try:
        read_password(config)
    except (EdgeError, OSError, ValueError) as exc:
        return Check("mqtt", False, f"mqtt.password_file: cannot be read: {exc}")
    try:
        build_client(config)
    except (EdgeError, OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        return Check("mqtt", False, f"mqtt.tls.ca_path / cert_path / key_path: the client cannot be built from "
                     f"them: {exc}")
    tls = "TLS" + (" with a client certificate" if m.tls.cert_path is not None else "") if m.tls.enabled else \
        "plaintext"
    return Check("mqtt", True, f"client built: {tls}, {'user ' + m.username if m.username else 'anonymous'}")


def validate_command(path: str, *, show_config: bool = False, check_device: bool = True) -> int:
    """``spectro-edge config --validate PATH``: print one OK/FAIL line per check and the verdict; 0 when all pass.

    Checks the configuration (syntax, keys, environment overrides; its insecure settings are named, see
    :func:`edge.config.security_warnings`), the MQTT client built from it (password file, TLS files; nothing is
    connected), the bundle it names (exists, loads, self-tests, has the check standards' targets)
    and the serial device (exists, or is a pyserial URL; skipped when ``check_device`` is false).
    """
    from edge.config import load_config, security_warnings

    checks: list[Check] = []
    config: EdgeConfig | None = None
    try:
        loaded = load_config(path)
    except EdgeError as exc:
        checks.append(Check("config", False, str(exc)))
    else:
        config = loaded
        d = config.device
        insecure = security_warnings(config)
        security = f"insecure settings (a WARNING each at start): {', '.join(insecure)}" if insecure else \
            "no insecure setting"
        checks.append(Check("config", True, f"{path}: device {d.site}/{d.line}/{d.device_id}, broker "
                            f"{', '.join(f'{h}:{p}' for h, p in config.mqtt.addresses())}; {security}"))
        checks.append(check_broker(config))
        checks.append(check_bundle(config))
        if check_device:
            checks.append(check_serial(config.serial.port_url))
    for check in checks:
        print(check.line())
    if config is not None and not check_device:
        print(f"{'SKIP':<5} {'serial':<7} {config.serial.port_url}: not checked (--skip-serial)")
    failed = [c.name for c in checks if not c.ok]
    if config is None:
        print("verdict: FAIL (the configuration does not load; MQTT client, bundle and serial device not checked)")
    elif failed:
        print(f"verdict: FAIL ({', '.join(failed)})")
    else:
        print(f"verdict: OK ({len(checks)} checks)")
    if show_config and config is not None:
        print(config)
    return 1 if failed else 0


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spectro-edge",
        description="spectrolite edge daemon: serial spectra in, int8 predictions with intervals and drift alerts "
        "out over MQTT.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser("check", help="verify a model bundle (hashes, signature, golden vectors) and print it")
    check.add_argument("bundle", help="path of a .spectrolite bundle")
    check.add_argument("--public-key", help="Ed25519 public key (PEM); the bundle must carry a valid signature")

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--config", required=True, help="edge TOML config (see `spectro-edge config --example`)")

    config = sub.add_parser("config", help="print or validate a daemon configuration")
    group = config.add_mutually_exclusive_group(required=True)
    group.add_argument("--example", action="store_true", help="print a commented example configuration")
    group.add_argument(
        "--validate",
        metavar="PATH",
        help="check PATH (with environment overrides), the MQTT client it builds (password and TLS files), the bundle "
        "it names (loads and self-tests it) and the serial device; one OK/FAIL line per check, exit code 1 on any "
        "FAIL (-v also prints the effective configuration, the MQTT password left out)",
    )
    config.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="with --validate: also print the effective configuration (as spectro-edge -v config)")
    config.add_argument(
        "--skip-serial",
        action="store_true",
        help="with --validate: do not check the serial device (a pre-start check of a service whose spectrometer "
        "may be plugged in later: the daemon waits for it)",
    )

    audit = sub.add_parser("audit", help="verify or export the daemon's hash-chained audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_sub.add_parser(
        "verify", help="check the chain; exit 0 with a one-line summary, 1 naming the first record where it breaks")
    verify.add_argument("path", help="an audit-NNNNNN.jsonl file or the directory of rotated files (audit.path)")
    verify.add_argument("--expect-head", metavar="HASH",
                        help="a head hash exported earlier (a retained status's audit_head): it must be in the log")
    export = audit_sub.add_parser("export", help="verify, then write the records in order as one JSON-lines file")
    export.add_argument("path", help="an audit file or the directory of rotated files")
    export.add_argument("--out", required=True, help="output file (JSON lines); '-' for stdout")
    keys = sub.add_parser("keys", help="create key files (the Ed25519 bundle signing pair is made in the lab by "
                          "`spectro-train keygen`)")
    kinds = keys.add_subparsers(dest="kind", required=True, metavar="KIND")
    hmac_key = kinds.add_parser("hmac", help="create the shared HMAC key of signed commands (commands.hmac_key_path)")
    hmac_key.add_argument("--out", required=True, type=Path,
                          help="file to create (mode 0600; an existing file is never overwritten)")

    sign = sub.add_parser("sign-command", help="print a signed command payload, e.g. for `mosquitto_pub -s`")
    sign.add_argument("name", help="command name (the last topic level .../cmd/NAME)")
    sign.add_argument("--device-id", required=True, help="device.device_id of the device to command")
    sign.add_argument("--key", required=True, type=Path, help="the device's HMAC key file (commands.hmac_key_path)")
    sign.add_argument("--args", default="{}", help="the command's arguments as a JSON object (default: {})")
    sign.add_argument("--request-id", help="echoed in the command's response")
    archive_export = sub.add_parser(
        "export", help="write archived spectra ([archive]) as a dataset .npz (the ../shared/datasets layout; "
        "docs/daemon.md, \"Spectrum archive\")")
    archive_export.add_argument("archive", help="the archive file (archive.path)")
    archive_export.add_argument("--since", help="first receive time, ISO 8601 (no zone: UTC); default: the oldest")
    archive_export.add_argument("--until", help="last receive time, ISO 8601 (no zone: UTC); default: the newest")
    archive_export.add_argument("--sample-id", help="only the spectra tagged with this lab sample id")
    archive_export.add_argument("--out", required=True, help="output .npz file")
    schemas = sub.add_parser("schemas", help="write the JSON Schema (draft 2020-12) file of every MQTT payload")
    schemas.add_argument("--out", required=True, help="folder to write <kind>.schema.json into (e.g. schemas/v1)")

    return parser


def audit_command(args: argparse.Namespace) -> int:
    """``spectro-edge audit verify|export PATH``: 0 when the chain is intact (and, for export, written)."""
    import json

    from edge.audit import verify

    report = verify(args.path, expect_head=getattr(args, "expect_head", None))
    if not report.ok:
        print(report.summary(), file=sys.stdout if args.audit_command == "verify" else sys.stderr)
        return 1
    if args.audit_command == "verify":
        print(report.summary())
        return 0
    lines = "".join(json.dumps(r, separators=(",", ":"), ensure_ascii=True) + "\n" for r in report.records_list)
    if args.out == "-":
        sys.stdout.write(lines)
    else:
        Path(args.out).write_text(lines, encoding="ascii")
        print(f"{report.records} records written to {args.out}; {report.summary()}", file=sys.stderr)
    return 0


def keys_command(out: Path) -> int:
    """``spectro-edge keys hmac --out FILE``: create a new key file and say where it goes."""
    from edge.keys import HMAC_KEY_BYTES, write_hmac_key

    path = write_hmac_key(out)
    print(f"wrote a {HMAC_KEY_BYTES}-byte HMAC key to {path} (mode 0600): set commands.hmac_key_path = \"{path}\" "
          "and give the same file to whoever signs commands")
    return 0


def sign_command_command(name: str, *, device_id: str, key: Path, args_json: str, request_id: str | None) -> int:
    """``spectro-edge sign-command NAME ...``: print one signed command payload (one line) to stdout."""
    from edge.commands import CommandName, load_hmac_key, make_command, sign_command
    from edge.jsonstrict import loads_strict

    known = [c.value for c in CommandName]
    if name not in known:
        raise EdgeArgumentError(f"NAME: expected one of {', '.join(known)}, got {name!r}")
    try:
        args = loads_strict(args_json)
    except ValueError as exc:
        raise EdgeArgumentError(f"--args: expected a JSON object, got unparsable JSON ({exc})") from None
    require_mapping(args, "--args", EdgeArgumentError, "a JSON object")
    body = make_command(name, args, device_id=device_id, request_id=request_id)
    print(sign_command(body, load_hmac_key(key)).decode("utf-8"))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``spectro-edge``; returns the process exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2) if args.command != "run" else logging.INFO
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "check":
            from edge.bundle import check_command

            return check_command(args.bundle, args.public_key)
        if args.command == "run":
            from edge.config import load_config
            from edge.daemon import run_daemon

            config = load_config(args.config)
            logging.getLogger().setLevel(config.log_level)  # the file's level from here on (INFO until it is read)
            return run_daemon(config)
        if args.command == "config":
            from edge import config as edge_config

            if args.example:
                sys.stdout.write(edge_config.example_config())
                return 0
            return validate_command(args.validate, show_config=args.verbose > 0, check_device=not args.skip_serial)
        if args.command == "audit":
            return audit_command(args)
        if args.command == "keys":
            return keys_command(args.out)
        if args.command == "sign-command":
            return sign_command_command(args.name, device_id=args.device_id, key=args.key, args_json=args.args,
                                        request_id=args.request_id)
        if args.command == "export":
            from edge.archive import export_npz, parse_time

            n = export_npz(args.archive, args.out, sample_id=args.sample_id,
                           since_unix_s=None if args.since is None else parse_time(args.since, "--since"),
                           until_unix_s=None if args.until is None else parse_time(args.until, "--until"))
            print(f"{n} spectra written to {args.out}", file=sys.stderr)
            return 0
        if args.command == "schemas":
            from edge.json_schema import write_all

            for path in write_all(args.out):
                print(path)
            return 0
    except (EdgeError, OSError) as exc:
        print(f"spectro-edge {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 1  # pragma: no cover - argparse guarantees a command


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
