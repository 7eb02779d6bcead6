"""A staged rollout of one signed bundle to a whole simulated fleet during ``spectro-bench fleet``: each simulated
device (:class:`benchmarks.bridge.SimulatedFleet`) gets the daemon's deploy stack, and ``spectro-fleet rollout``'s
:class:`edge.fleet.rollout.StagedRollout` sends the bundle through the central broker and the bridge to a canary
share first, on probation, then to the rest.

What runs on each device is the daemon's own code: :class:`edge.commands.CommandParser` (HMAC, the chunk bound),
:class:`edge.daemon.deploy.DeployControl` with its staging on disk, the trusted-signature check,
:func:`edge.bundle.load_bundle` with the signer's key (hashes, signature, golden-vector self-test), the probation
(:class:`edge.daemon.probation.Probation`: the copy of the bundle that served before, the window read from the
device's counters, the verdict, the return through the reload) and the anti-rollback guard
(:class:`edge.rollback.RollbackGuard`, which must let the return through); the retained status carries
``deploy.rollout`` as the daemon's does.  What does not: the inference.  :class:`DeployReceiver` replaces the swap into
a serving engine by making the loaded bundle the one "served" (after the guard's check, as the daemon's reload does),
and the spectra by a synthesised judge: at the fleet's rate it counts one spectrum judged (``spectra_in``) per device;
a device listed as failing counts each spectrum judged by a bundle other than the one it started with as flagged
``out_of_distribution`` (the counter the daemon's inference thread increments), i.e. its line runs a product the new
model was not trained for.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edge.commands import CommandParser
from edge.daemon.probation import OOD_COUNTER
from edge.deploy.args import chunk_payload_limit
from edge.deploy.staging import StagingArea
from edge.errors import EdgeError
from edge.metrics import Counters
from edge.publish.messages import command_response_message, status_message
from edge.publish.schema import MessageKind
from edge.rollback import RollbackGuard

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_BUNDLE", "DEFAULT_SERVING", "GROUP", "PROBATION", "DeployReceiver", "Rollout"]

_TRAINED = Path(__file__).resolve().parents[1] / "tests" / "data" / "trained"
#: The committed trainer-built demo bundle (model_version 1.1.0) pushed by default.
DEFAULT_BUNDLE = _TRAINED / "synthetic-demo-1.1.0.spectrolite"
#: The bundle every simulated device serves when the run starts (model_version 1.0.0), signed with the same key.
DEFAULT_SERVING = _TRAINED / "synthetic-demo-1.0.0.spectrolite"
#: The deployment group of every simulated device (the site; the shipped bridge forwards its group topics).
GROUP = "plant-a"
#: The probation rule of the staged rollout: at most 20% of the first 20 spectra flagged out_of_distribution.
PROBATION = {"window_spectra": 20, "max_ood_rate": 0.2}
#: Canaries first (a share of the devices) and how many of them may fail without stopping the rollout.
CANARY = "10%"
MAX_CANARY_FAILURES = 1


class DeployReceiver:
    """The deploy side of one simulated device; commands are carried out in order on a thread of its own, between
    them the synthesised judge counts spectra and the probation looks at them (the daemon's housekeeping does the
    same)."""

    def __init__(self, config: Any, emit: Callable[..., None], staging_dir: Path, serving: Any, *,
                 rate_hz: float, ood_under_new: bool) -> None:
        limits = {"deploy_chunk": chunk_payload_limit(int(config.deploy.max_chunk_bytes))}
        self._parsers = {None: CommandParser(config.commands, device_id=config.device.device_id,
                                             payload_limits=limits)}
        for g in config.deploy.groups:
            self._parsers[g] = CommandParser(config.commands, device_id=f"group:{g}", payload_limits=limits)
        self._emit = emit
        self._device_id = config.device.device_id
        self.bundle = serving  #: the bundle "served"
        self._started_with = serving.file_sha256
        self._ood_under_new = ood_under_new
        self._period_s = 1.0 / rate_hz
        self.counters = Counters()
        self.guard = RollbackGuard(staging_dir.parent / f"{self._device_id}.bundle-versions.json")
        self.guard.record(serving)
        from edge.daemon.deploy import DeployControl

        self.control = DeployControl(config=lambda: config, device_id=self._device_id,
                                     staging=StagingArea(staging_dir), counters=self.counters, emit=emit,
                                     respond_error=self._respond_error, reload=self._reload,
                                     load_with_key=self._load, publish_status=self.publish_status, clock=time.time,
                                     serving=lambda: self.bundle, guard=self.guard)
        self._queue: queue.Queue[Any] = queue.Queue()
        self._status_sent = False
        threading.Thread(target=self._work, name=f"deploy-{self._device_id}", daemon=True).start()

    def on_command(self, name: str, payload: bytes, *, retained: bool = False, group: str | None = None) -> None:
        parser = self._parsers.get(group)
        if parser is None or retained:
            return
        try:
            self._queue.put((name, parser.parse(name, payload)))
        except EdgeError as exc:
            self._respond_error(name, CommandParser.peek_request_id(payload), str(exc))

    def publish_status(self) -> None:
        """The retained status, with ``deploy`` (the fleet reads the probation's verdict there)."""
        try:
            self._emit(MessageKind.STATUS, status_message(
                device_id=self._device_id, state="online", model_id=self.bundle.model_id,
                model_version=self.bundle.model_version, deploy=self.control.summary()))
            self._status_sent = True
        except IndexError:  # the device's publisher is not made yet: the next turn sends it
            pass

    def _work(self) -> None:
        next_at = time.monotonic() + self._period_s
        while True:
            try:
                item = self._queue.get(timeout=max(0.0, min(0.25, next_at - time.monotonic())))
            except queue.Empty:
                item = None
            if item is not None:
                self.control.execute(*item)
            while time.monotonic() >= next_at:
                self._judge_one()
                next_at += self._period_s
            if not self._status_sent:
                self.publish_status()
            self.control.tick()

    def _judge_one(self) -> None:
        """One spectrum judged by the bundle served (synthesised: see the module docstring)."""
        self.counters.incr("spectra_in")
        if self._ood_under_new and self.bundle.file_sha256 != self._started_with:
            self.counters.incr(OOD_COUNTER)
        self.counters.incr("predictions")

    def _respond_error(self, command: str, request_id: str | None, error: str) -> None:
        self._emit(MessageKind.COMMAND_RESPONSE, command_response_message(
            device_id=self._device_id, command=command, request_id=request_id, ok=False, error=error), command)

    @staticmethod
    def _load(path: Path, key: Path) -> Any:
        from edge.bundle import load_bundle

        return load_bundle(path, public_key=key, self_test=True, num_threads=1)

    def _reload(self, path: Path, *, request_id: str | None, command: str | None, reason: str,
                loader: Callable[[Path], Any]) -> str | None:
        try:
            bundle = loader(path)
            self.guard.check(bundle)  # anti-rollback, as the daemon's reload checks it
        except (EdgeError, OSError, ValueError) as exc:
            error = f"bundle {path.name} refused: {exc}"
            if command is not None:
                self._respond_error(command, request_id, error)
            return error
        previous, self.bundle = self.bundle, bundle
        self.guard.record(bundle)  # the daemon's swap records it
        self.publish_status()
        if command is not None:
            self._emit(MessageKind.COMMAND_RESPONSE, command_response_message(
                device_id=self._device_id, command=command, request_id=request_id, ok=True,
                result={"model": {"id": bundle.model_id, "version": bundle.model_version},
                        "previous_model": {"id": previous.model_id, "version": previous.model_version},
                        "path": str(path)}), command)
        return None


def _signed(source: Path, target: Path, key: Any) -> Path:
    """``source`` with ``manifest.sig`` by ``key`` (as ``spectro-train sign`` writes it)."""
    with zipfile.ZipFile(source) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    members["manifest.sig"] = key.sign(members["manifest.json"])
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return target


@dataclass
class Rollout:
    """The keys, the signed bundles and the devices' deploy configuration of one run."""

    workdir: Path
    hmac_key: Path
    public_key: Path
    bundle: Path  #: what is rolled out
    serving: Path  #: what every device serves at the start
    failing: frozenset[str] = frozenset()  #: devices whose stream the new bundle flags out_of_distribution

    @classmethod
    def create(cls, workdir: Path, source: Path, serving: Path = DEFAULT_SERVING,
               failing: frozenset[str] = frozenset()) -> Rollout:
        """Make an HMAC key and an Ed25519 key pair, and copies of ``source`` and ``serving`` signed with it."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        workdir.mkdir(parents=True, exist_ok=True)
        hmac_key = workdir / "hmac.key"
        hmac_key.write_text(secrets.token_hex(32), encoding="ascii")
        key = Ed25519PrivateKey.generate()
        public = workdir / "lab.pub.pem"
        public.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
        (workdir / "serving").mkdir(exist_ok=True)
        return cls(workdir, hmac_key, public, _signed(source, workdir / source.name, key),
                   _signed(serving, workdir / "serving" / serving.name, key), frozenset(failing))

    def device_config(self) -> dict[str, Any]:
        """The ``[commands]`` and ``[deploy]`` tables of every device (no bundle file to persist to here)."""
        return {"commands": {"enabled": True, "hmac_key_path": str(self.hmac_key)},
                "deploy": {"enabled": True, "groups": [GROUP], "trusted_keys": [str(self.public_key)],
                           "persist": False}}

    def receivers(self, rate_hz: float) -> Callable[[Any, Callable[..., None]], Any]:
        """The ``command_handler`` of :class:`benchmarks.bridge.SimulatedFleet`."""
        from edge.bundle import load_bundle

        serving = load_bundle(self.serving, public_key=self.public_key, self_test=True, num_threads=1)

        def make(config: Any, emit: Callable[..., None]) -> Any:
            device_id = config.device.device_id
            return DeployReceiver(config, emit, self.workdir / f"device-{device_id}" / "deploy", serving,
                                  rate_hz=rate_hz, ood_under_new=device_id in self.failing).on_command

        return make

    def staged(self, port: int, devices: list[tuple[str, str, str]], *, timeout_s: float = 120.0) -> dict[str, Any]:
        """A staged rollout (``spectro-fleet rollout``'s :class:`StagedRollout`) through the broker on ``port``:
        :data:`CANARY` of the devices first on :data:`PROBATION`, the rest unless more than
        :data:`MAX_CANARY_FAILURES` canaries fail; its figures."""
        from edge.commands import load_hmac_key
        from edge.fleet.client import Device, FleetClient
        from edge.fleet.push import Bundle
        from edge.fleet.rollout import StagedRollout, canary_count

        client = FleetClient("127.0.0.1", port, hmac_key=load_hmac_key(self.hmac_key),
                             client_id="spectro-bench-fleet-rollout")
        try:
            targets = [Device(site, line, d, f"{client.prefix}/{site}/{line}/{d}") for site, line, d in devices]
            bundle = Bundle.read(self.bundle, 16_384)
            t0 = time.monotonic()
            staged = StagedRollout(client, bundle, targets, canaries=canary_count(CANARY, len(targets)),
                                   probation=PROBATION, max_failures=MAX_CANARY_FAILURES, timeout_s=timeout_s,
                                   push={"ack_timeout_s": 30.0, "commit_timeout_s": 120.0})
            results = staged.run()
            took = time.monotonic() - t0
        finally:
            client.close()
        summary = staged.summary()
        canaries = {d.device_id for d in staged.canaries}
        stops = len(self.failing & canaries) > MAX_CANARY_FAILURES
        expected = {d: "restored" if d in self.failing and (d in canaries or not stops) else
                    "not pushed" if stops and d not in canaries else "updated" for _, _, d in devices}
        return {
            "rollout_devices_updated": len(summary["updated"]),
            "rollback_devices_restored": len(summary["restored"]),
            "rollout_devices_not_updated": {r.device_id: f"{r.state}: {r.detail}" for r in results.values()
                                            if r.category != "updated"},
            "rollout_canaries": [d.device_id for d in staged.canaries],
            "rollout_failing_devices": sorted(self.failing),
            "rollout_stopped": staged.stopped,
            "rollout_probation": dict(PROBATION),
            "rollout_max_canary_failures": MAX_CANARY_FAILURES,
            "rollout_as_rule_says": all(results[d].category == c for d, c in expected.items()),
            "rollout_bundle_bytes": len(bundle.data),
            "rollout_chunks": bundle.chunks,
            "rollout_s": took,
        }
