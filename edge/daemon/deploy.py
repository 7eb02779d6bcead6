"""Bundles sent over MQTT, on the daemon's side: :class:`DeployControl` carries out ``deploy_begin``,
``deploy_chunk`` and ``deploy_commit`` on the housekeeping thread (the staging on disk is :mod:`edge.deploy.staging`),
answers every step, counts it, keeps the retained status's ``deploy`` current, and hands a complete bundle signed by
a trusted key (:mod:`edge.deploy.trust`) to the verified reload, whose guards (self-test, device fit, anti-rollback,
rate limit) all apply; a ``probation`` rule in ``deploy_commit`` puts the new bundle on probation
(:mod:`edge.daemon.probation`), which returns to the bundle that served before when it fails."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from edge.daemon.install import install_over
from edge.daemon.probation import Probation, refusal_reason
from edge.deploy.args import DeployBeginArgs, DeployChunkArgs, DeployCommitArgs, DeployRollbackArgs
from edge.deploy.staging import DeployError, StagingArea, Transfer, TransferState
from edge.deploy.trust import signing_key, trusted_keys_of
from edge.metrics import Counters
from edge.publish.log_limit import LOG_INTERVAL_S, LogLimiter
from edge.publish.messages import command_response_message
from edge.publish.schema import MessageKind

if TYPE_CHECKING:  # pragma: no cover - names for type checkers only
    from edge.bundle import Bundle
    from edge.config import EdgeConfig
    from edge.rollback import RollbackGuard

log = logging.getLogger("edge.daemon")

class DeployControl:
    """The deploy commands of one daemon.

    Parameters
    ----------
    config : callable() -> EdgeConfig
        The configuration now (``deploy.*``, ``bundle.path``).
    device_id : str
        This daemon's device id (responses carry it).
    staging : StagingArea
        Where transfers are received (``<state dir>/deploy``); its transfer left by a previous run is resumed.
    counters : Counters
        ``deploy_*`` counters.
    emit : callable(kind, message, command)
        Sends a message (a command response).
    respond_error : callable(command, request_id, error)
        Answers a command with an error.
    reload : callable(path, *, request_id, command, reason, loader) -> str or None
        The verified reload (:meth:`edge.daemon.reload.BundleReloader.reload`): None when handed over.
    load_with_key : callable(path, key) -> Bundle
        Loads, verifies (with ``key``) and self-tests a bundle.
    publish_status : callable()
        Publishes the retained status (it carries :meth:`summary`).
    clock : callable() -> float
        Unix seconds.
    serving : callable() -> Bundle, optional
        The bundle in service; with it, installs may go on probation (:class:`edge.daemon.probation.Probation`,
        kept in ``<staging>/rollout``).
    load_bundle : callable(path) -> Bundle, optional
        The configured loader (a return to a bundle no trusted key signed).
    guard : RollbackGuard, optional
        The anti-rollback guard (a failed probation's return is let through it, nothing else).
    audit : callable(event, details), optional
        Writes an audit record (probation verdicts, returns).
    """

    def __init__(self, *, config: Callable[[], "EdgeConfig"], device_id: str, staging: StagingArea,
                 counters: Counters, emit: Callable[[MessageKind, dict[str, Any], str | None], None],
                 respond_error: Callable[[str, str | None, str], None], reload: Callable[..., str | None],
                 load_with_key: Callable[[Path, Path], "Bundle"], publish_status: Callable[[], None],
                 clock: Callable[[], float], serving: Callable[[], "Bundle"] | None = None,
                 load_bundle: Callable[[Path], "Bundle"] | None = None, guard: "RollbackGuard | None" = None,
                 audit: Callable[[str, Mapping[str, Any]], None] | None = None) -> None:
        self._config = config
        self._device_id = device_id
        self._staging = staging
        self._counters = counters
        self._emit = emit
        self._respond_error = respond_error
        self._reload = reload
        self._load_with_key = load_with_key
        self._publish_status = publish_status
        self._clock = clock
        self._lock = threading.Lock()  # summary() is read on other threads
        self._logs = LogLimiter(LOG_INTERVAL_S, time.monotonic)
        self._guard = guard
        self._load_bundle = load_bundle
        #: The probation of installed bundles (None without ``serving``: installs are not judged).
        self.probation = Probation(
            directory=staging.directory / "rollout", counters=counters, serving=serving,
            bundle_path=lambda: Path(self._config().bundle.path), persist=lambda: bool(self._config().deploy.persist),
            reload=reload, load_previous=self._load_previous, guard=guard, audit=audit or (lambda e, d: None),
            publish_status=publish_status, clock=clock) if serving is not None else None
        with self._lock:
            restored = staging.load()
        if restored is not None:
            log.info("deploy: transfer %s left by the previous run is %s (%d of %d chunks); the sender resumes it with "
                     "deploy_begin", restored.transfer_id, restored.state, len(restored.received), restored.chunks)

    def summary(self) -> dict[str, Any] | None:
        """The retained status's ``deploy``: the groups and the last transfer (None when ``[deploy]`` is off)."""
        config = self._config()
        if not config.deploy.enabled:
            return None
        with self._lock:
            t = self._staging.current
            out = {"groups": list(config.deploy.groups), "transfer": t.summary() if t is not None else None}
        rollout = self.probation.summary() if self.probation is not None else None
        if rollout is not None:
            out["rollout"] = rollout
        return out

    def tick(self) -> None:
        """Look at a probation in progress (housekeeping thread, between commands)."""
        if self.probation is not None:
            self.probation.tick()

    def execute(self, name: str, cmd: Any) -> None:
        """Carry out one validated deploy command (housekeeping thread); answer it whatever happens."""
        if not self._config().deploy.enabled:
            self._refuse(name, cmd.request_id, "deploy_disabled",
                         "expected [deploy] enabled = true, got deployment off on this device")
            return
        args = cmd.args
        try:
            if isinstance(args, DeployBeginArgs):
                self._begin(name, cmd.request_id, args)
            elif isinstance(args, DeployChunkArgs):
                self._chunk(name, cmd.request_id, args)
            elif isinstance(args, DeployCommitArgs):
                self._commit(name, cmd.request_id, args)
            elif isinstance(args, DeployRollbackArgs):
                if self.probation is None:
                    raise DeployError("deploy_rollback: this device keeps no bundle to return to")
                self._answer(name, cmd.request_id, self.probation.return_on_command(args.transfer_id))
            else:  # pragma: no cover - the parser pairs names and arguments
                raise DeployError(f"unexpected arguments {type(args).__name__} for {name}")
        except DeployError as exc:
            self._refuse(name, cmd.request_id, f"{name}_refused", str(exc))
        except OSError as exc:
            self._refuse(name, cmd.request_id, "deploy_io_errors",
                         f"{name}: cannot write the staging files in {self._staging.directory}: {exc.strerror or exc}")

    # ------------------------------------------------------------------------------------------ steps

    def _begin(self, name: str, request_id: str | None, args: DeployBeginArgs) -> None:
        deploy = self._config().deploy
        before = self._staging.current
        with self._lock:
            t = self._staging.begin(args, max_bytes=int(deploy.max_bundle_bytes),
                                    max_chunk_bytes=int(deploy.max_chunk_bytes), now=self._clock())
        resumed = t is before
        self._counters.incr("deploy_transfers_resumed" if resumed else "deploy_transfers_begun")
        log.info("deploy: transfer %s %s (%s, %d bytes in %d chunks; %d already here)", t.transfer_id,
                 "resumed" if resumed else "begun", t.name or "unnamed", t.size, t.chunks, len(t.received))
        self._answer(name, request_id, {**self._progress(t), "resumed": resumed})
        if not resumed:
            self._publish_status()

    def _chunk(self, name: str, request_id: str | None, args: DeployChunkArgs) -> None:
        with self._lock:
            t = self._staging.current
            duplicate = t is not None and t.transfer_id == args.transfer_id and args.index in t.received
            t = self._staging.write_chunk(args, self._clock())
        self._counters.incr("deploy_chunks_duplicate" if duplicate else "deploy_chunks_received")
        self._answer(name, request_id, {"transfer_id": t.transfer_id, "index": args.index, "duplicate": duplicate,
                                        "received": len(t.received), "chunks": t.chunks})
        if len(t.received) == t.chunks and not duplicate:
            self._publish_status()  # every chunk is here: the status says so

    def _commit(self, name: str, request_id: str | None, args: DeployCommitArgs) -> None:
        config = self._config()
        with self._lock:
            t, path = self._staging.complete(args.transfer_id, self._clock())
        try:
            key = signing_key(path, trusted_keys_of(config))
        except DeployError as exc:
            self._counters.incr("deploy_untrusted")
            if self.probation is not None:
                self.probation.refused(t.transfer_id, t.sha256, "untrusted", str(exc), args.probation)
            self._finish(TransferState.REFUSED, str(exc))
            raise
        if self.probation is not None and self.probation.serving_sha256() == t.sha256:
            # The bytes serve already (a commit sent again): answered as unchanged; a probation goes on untouched.
            self._reload(path, request_id=request_id, command=name, reason=f"deployed over MQTT (transfer "
                         f"{t.transfer_id}, sent again)")
            self._finish(TransferState.INSTALLED, None)
            return
        previous, kept = self.probation.keep_previous() if self.probation is not None else (None, False)
        if args.probation is not None and (self.probation is None or not kept):
            raise DeployError("deploy_commit.args.probation: expected the bundle in service on disk to return to if "
                              "the probation fails, got none of its files with its SHA-256 (bundle.path, .previous)")
        loaded: list[tuple["Bundle", Any]] = []

        def load(p: Path) -> "Bundle":
            bundle = self._load_with_key(p, key)
            loaded.append((bundle, self._guard.mark(bundle.model_id) if self._guard is not None else None))
            return bundle

        before = self._counters.snapshot()
        error = self._reload(path, request_id=request_id, command=name,
                             reason=f"deployed over MQTT (transfer {t.transfer_id})", loader=load)
        if error is not None:  # answered, counted and audited by the reload
            self._counters.incr("deploy_install_refused")
            if self.probation is not None:
                after = self._counters.snapshot()
                raised = {k: v - before.get(k, 0) for k, v in after.items()}
                self.probation.refused(t.transfer_id, t.sha256, refusal_reason(error, raised), error, args.probation)
            self._finish(TransferState.REFUSED, error)
            return
        self._counters.incr("deploy_installed")
        log.info("deploy: transfer %s (%s, sha256 %s) installed, signed by %s", t.transfer_id, t.name or "unnamed",
                 t.sha256[:16], key.name)
        if config.deploy.persist:
            self._persist(path, Path(config.bundle.path))
        if self.probation is not None and previous is not None:
            if loaded:
                new, mark_before = loaded[-1]
                self.probation.installed(t.transfer_id, t.sha256, new, previous, kept, args.probation, mark_before)
            else:  # the same bytes were in service already: nothing to judge
                self.probation.installed(t.transfer_id, t.sha256, previous, previous, kept, None, None)
        self._finish(TransferState.INSTALLED, None)

    def _load_previous(self, path: Path) -> "Bundle":
        """Load the bundle that served before with the trusted key that signed it, else the configured loader."""
        try:
            key = signing_key(path, trusted_keys_of(self._config()))
        except DeployError:
            if self._load_bundle is None:
                raise
            return self._load_bundle(path)
        return self._load_with_key(path, key)

    # ------------------------------------------------------------------------------------------ helpers

    def _persist(self, source: Path, target: Path) -> None:
        """Copy the installed bundle over ``bundle.path`` (atomically; the old file kept as ``.previous``)."""
        try:
            install_over(source, target)
        except OSError as exc:
            self._counters.incr("deploy_persist_failures")
            log.error("deploy: the installed bundle is served but cannot be written to %s (%s): a restart serves "
                      "the bundle there", target, exc.strerror or exc)

    def _finish(self, state: str, error: str | None) -> None:
        with self._lock:
            try:
                self._staging.finish(state, error, self._clock())
            except OSError as exc:  # the outcome is answered anyway; only the state file lags
                log.warning("deploy: cannot record the transfer's state: %s", exc)
        self._publish_status()

    def _progress(self, t: Transfer) -> dict[str, Any]:
        return {"transfer_id": t.transfer_id, "state": t.state, "chunks": t.chunks, "received": len(t.received),
                "missing": t.missing_ranges()}

    def _answer(self, name: str, request_id: str | None, result: Mapping[str, Any]) -> None:
        self._emit(MessageKind.COMMAND_RESPONSE, command_response_message(
            device_id=self._device_id, command=name, request_id=request_id, ok=True, result=dict(result)), name)

    def _refuse(self, name: str, request_id: str | None, counter: str, error: str) -> None:
        self._counters.incr(counter)
        due = self._logs.event(counter)
        if due is not None:
            events, _ = due
            more = f" ({events} such refusal(s) in the last {LOG_INTERVAL_S:.0f} s)" if events > 1 else ""
            log.warning("deploy: %s refused: %s%s", name, error, more)
        self._respond_error(name, request_id, error)
