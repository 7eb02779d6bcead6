"""A bundle pushed to a whole simulated fleet during ``spectro-bench fleet``: each simulated device
(:class:`benchmarks.bridge.SimulatedFleet`) gets the daemon's deploy stack, and ``spectro-fleet``'s pusher sends one
signed bundle to the site's deployment group through the central broker and the bridge.

What runs on each device is the daemon's own code: :class:`edge.commands.CommandParser` (HMAC, group identity,
the chunk bound), :class:`edge.daemon.deploy.DeployControl` with its staging on disk, the trusted-signature check
and :func:`edge.bundle.load_bundle` with the signer's key (hashes, signature, golden-vector self-test).  What does
not: the swap into a serving inference engine (no spectrometer here), which :class:`DeployReceiver` replaces by
answering ``deploy_commit`` as the daemon's swap does, with the model now "served".
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
from edge.deploy.args import chunk_payload_limit
from edge.deploy.staging import StagingArea
from edge.errors import EdgeError
from edge.metrics import Counters
from edge.publish.messages import command_response_message
from edge.publish.schema import MessageKind

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_BUNDLE", "GROUP", "DeployReceiver", "Rollout"]

#: The committed trainer-built demo bundle (model_version 1.1.0) pushed by default.
DEFAULT_BUNDLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "trained" / "synthetic-demo-1.1.0.spectrolite"
#: The deployment group of every simulated device (the site; the shipped bridge forwards its group topics).
GROUP = "plant-a"


class DeployReceiver:
    """The deploy side of one simulated device; commands are carried out in order on a thread of its own."""

    def __init__(self, config: Any, emit: Callable[..., None], staging_dir: Path) -> None:
        limits = {"deploy_chunk": chunk_payload_limit(int(config.deploy.max_chunk_bytes))}
        self._parsers = {None: CommandParser(config.commands, device_id=config.device.device_id,
                                             payload_limits=limits)}
        for g in config.deploy.groups:
            self._parsers[g] = CommandParser(config.commands, device_id=f"group:{g}", payload_limits=limits)
        self._emit = emit
        self._device_id = config.device.device_id
        self.model: tuple[str, str] | None = None
        self.counters = Counters()
        from edge.daemon.deploy import DeployControl

        self.control = DeployControl(config=lambda: config, device_id=self._device_id,
                                     staging=StagingArea(staging_dir), counters=self.counters, emit=emit,
                                     respond_error=self._respond_error, reload=self._reload,
                                     load_with_key=self._load, publish_status=lambda: None, clock=time.time)
        self._queue: queue.Queue[Any] = queue.Queue()
        threading.Thread(target=self._work, name=f"deploy-{self._device_id}", daemon=True).start()

    def on_command(self, name: str, payload: bytes, *, retained: bool = False, group: str | None = None) -> None:
        parser = self._parsers.get(group)
        if parser is None or retained:
            return
        try:
            self._queue.put((name, parser.parse(name, payload)))
        except EdgeError as exc:
            self._respond_error(name, CommandParser.peek_request_id(payload), str(exc))

    def _work(self) -> None:
        while True:
            name, cmd = self._queue.get()
            self.control.execute(name, cmd)

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
        except (EdgeError, OSError, ValueError) as exc:
            error = f"bundle {path.name} refused: {exc}"
            if command is not None:
                self._respond_error(command, request_id, error)
            return error
        previous, self.model = self.model, (bundle.model_id, bundle.model_version)
        if command is not None:
            self._emit(MessageKind.COMMAND_RESPONSE, command_response_message(
                device_id=self._device_id, command=command, request_id=request_id, ok=True,
                result={"model": {"id": bundle.model_id, "version": bundle.model_version},
                        "previous_model": {"id": previous[0], "version": previous[1]} if previous else None,
                        "path": str(path)}), command)
        return None


@dataclass
class Rollout:
    """The keys, the signed bundle and the devices' deploy configuration of one run."""

    workdir: Path
    hmac_key: Path
    public_key: Path
    bundle: Path

    @classmethod
    def create(cls, workdir: Path, source: Path) -> Rollout:
        """Make an HMAC key and an Ed25519 key pair, and a copy of ``source`` signed with it."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        workdir.mkdir(parents=True, exist_ok=True)
        hmac_key = workdir / "hmac.key"
        hmac_key.write_text(secrets.token_hex(32), encoding="ascii")
        key = Ed25519PrivateKey.generate()
        public = workdir / "lab.pub.pem"
        public.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
        with zipfile.ZipFile(source) as zf:
            members = {i.filename: zf.read(i) for i in zf.infolist()}
        members["manifest.sig"] = key.sign(members["manifest.json"])
        bundle = workdir / source.name
        with zipfile.ZipFile(bundle, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, data in members.items():
                zf.writestr(name, data)
        return cls(workdir, hmac_key, public, bundle)

    def device_config(self) -> dict[str, Any]:
        """The ``[commands]`` and ``[deploy]`` tables of every device."""
        return {"commands": {"enabled": True, "hmac_key_path": str(self.hmac_key)},
                "deploy": {"enabled": True, "groups": [GROUP], "trusted_keys": [str(self.public_key)]}}

    def receivers(self) -> Callable[[Any, Callable[..., None]], Any]:
        """The ``command_handler`` of :class:`benchmarks.bridge.SimulatedFleet`."""
        def make(config: Any, emit: Callable[..., None]) -> Any:
            return DeployReceiver(config, emit, self.workdir / f"deploy-{config.device.device_id}").on_command

        return make

    def push(self, port: int, devices: list[tuple[str, str, str]], *, timeout_s: float = 30.0) -> dict[str, Any]:
        """Push the bundle to group :data:`GROUP` through the broker on ``port``; the figures of the push."""
        from edge.commands import load_hmac_key
        from edge.fleet.client import Device, FleetClient
        from edge.fleet.push import Bundle, Pusher

        client = FleetClient("127.0.0.1", port, hmac_key=load_hmac_key(self.hmac_key),
                             client_id="spectro-bench-fleet-rollout")
        try:
            targets = [Device(site, line, d, f"{client.prefix}/{site}/{line}/{d}") for site, line, d in devices]
            bundle = Bundle.read(self.bundle, 16_384)
            t0 = time.monotonic()
            pusher = Pusher(client, bundle, targets, group=GROUP, ack_timeout_s=timeout_s, commit_timeout_s=120.0)
            outcomes = pusher.run()
            took = time.monotonic() - t0
        finally:
            client.close()
        states = [o.state for o in outcomes.values()]
        return {
            "rollout_devices_updated": states.count("installed"),
            "rollout_devices_not_updated": {o.device_id: f"{o.state}: {o.detail}" for o in outcomes.values()
                                            if o.state != "installed"},
            "rollout_bundle_bytes": len(bundle.data),
            "rollout_chunks": bundle.chunks,
            "rollout_s": took,
        }
