"""Bundle reloads off the inference thread: :class:`BundleReloader` watches the bundle file and reloads on command,
loads, verifies and self-tests the new bundle, refuses one that is older than allowed (anti-rollback), does not fit
the device, or comes too soon, and hands a verified engine to the inference thread to swap in."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from edge.daemon.auditing import _file_sha256
from edge.daemon.device import DeviceView, printable
from edge.daemon.install import install_over
from edge.daemon.values import _Swap
from edge.errors import BundleError, EdgeError
from edge.inference import InferenceEngine
from edge.metrics import Counters
from edge.publish.messages import command_response_message
from edge.publish.schema import MessageKind
from edge.references import ReferencePolicy
from edge.rollback import RollbackGuard

if TYPE_CHECKING:  # pragma: no cover - names for type checkers only
    from edge.bundle import Bundle
    from edge.config import EdgeConfig

log = logging.getLogger("edge.daemon")


def _file_stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


class BundleReloader:
    """Verified bundle reloads (housekeeping thread), handed to the inference thread through ``swap``.

    Parameters
    ----------
    config : callable() -> EdgeConfig
        The configuration now (``bundle.*``).
    serving : callable() -> InferenceEngine
        The engine in service.
    device : callable() -> DeviceView
        What the device has announced (a new bundle must fit it).
    load_bundle : callable(path) -> Bundle
        Loads, verifies and self-tests a bundle.
    swap : callable(_Swap)
        Hands a verified engine to the inference thread.
    rollback : RollbackGuard
        Anti-rollback of signed bundles; the bundle in service is recorded by the caller.
    reference_policy : ReferencePolicy
        For the new engine.
    device_id : str
        This daemon's device id (command responses; the device's name until it announced itself).
    counters : Counters
        Where reloads, refusals and their reasons are counted.
    audit : callable(event, details)
        Writes an audit record.
    emit : callable(kind, message, command)
        Sends a message (the response to a reload command that changed nothing).
    respond_error : callable(command, request_id, error)
        Answers a command with an error.
    refused : callable(error)
        Makes a refused bundle the status's ``last_error`` and publishes the status.
    clock : callable() -> float
        Host time, for the new engine.
    """

    def __init__(self, *, config: Callable[[], "EdgeConfig"], serving: Callable[[], InferenceEngine],
                 device: Callable[[], DeviceView], load_bundle: Callable[[Path], "Bundle"],
                 swap: Callable[[_Swap], object], rollback: RollbackGuard, reference_policy: ReferencePolicy,
                 device_id: str, counters: Counters, audit: Callable[[str, Mapping[str, Any]], None],
                 emit: Callable[[MessageKind, dict[str, Any], str | None], None],
                 respond_error: Callable[[str, str | None, str], None], refused: Callable[[str], None],
                 clock: Callable[[], float]) -> None:
        self._config = config
        self._serving = serving
        self._device = device
        self._load_bundle = load_bundle
        self._swap = swap
        self.rollback = rollback
        self._reference_policy = reference_policy
        self._device_id = device_id
        self._counters = counters
        self._audit = audit
        self._emit = emit
        self._respond_error = respond_error
        self._refused = refused
        self._clock = clock
        self._bundle_stamp = _file_stamp(Path(config().bundle.path))
        self._failed_stamp: tuple[int, int] | None = None
        self._seen_stamp = self._bundle_stamp
        self._last_reload_mono = -math.inf  # last reload that swapped a new bundle in (rate limit)
        #: The watched file was refused because the device had not announced itself: its STATUS retries it.
        self._watch_waits_for_status = False

    def watch(self) -> None:
        """Look at the bundle file; reload it once it changed and is stable."""
        path = Path(self._config().bundle.path)
        stamp = _file_stamp(path)
        if self._watch_waits_for_status and self._device().status is not None:
            self._watch_waits_for_status = False  # refused before the device announced itself: try it again now
            self._failed_stamp = None
        if stamp is None or stamp == self._bundle_stamp or stamp == self._failed_stamp:
            self._seen_stamp = stamp
            return
        if stamp != self._seen_stamp:  # changed since the last look: wait until it is stable (being written)
            self._seen_stamp = stamp
            return
        self.reload(path, request_id=None, command=None, reason="bundle file changed", stamp=stamp)

    def reload(
        self,
        path: Path,
        *,
        request_id: str | None,
        command: str | None,
        reason: str,
        stamp: tuple[int, int] | None = None,
        loader: Callable[[Path], "Bundle"] | None = None,
        persist: bool = False,
    ) -> str | None:
        """Load, verify and self-test ``path`` off the inference thread; swap it in or report why not.

        Returns None when ``path`` is handed to the inference thread (or is the bundle in service already), else
        why not (the refusal is answered, counted and audited here).  ``loader`` replaces the configured loader (a
        deployed bundle is loaded with the trusted key that signed it, so the anti-rollback guard applies).
        ``persist`` (a command's ``path``, a challenger's promotion): once handed over, the file is also written over
        ``bundle.path`` (``bundle.persist``; :mod:`edge.daemon.install`) so that a restart serves it.

        The same bytes as the bundle in service are a no-op (said in the log and the command response: nothing is
        reset, drift detectors and alerts stay); otherwise at most one model change per
        ``bundle.min_reload_interval_s`` (a command sooner is refused and counted, ``bundle_reloads_rate_limited``; a
        file change waits).  A refused bundle does not start the interval: the operator may send a good one at once.
        """
        config = self._config()
        stamp = stamp if stamp is not None else _file_stamp(path)
        watched = path == Path(config.bundle.path)
        serving = self._serving()
        try:
            digest = _file_sha256(path)
        except OSError:
            digest = None  # the load below reports why
        if digest is not None and digest == serving.bundle.file_sha256:
            if watched:
                self._bundle_stamp = stamp
                self._failed_stamp = None
            self._counters.incr("bundle_reloads_unchanged")
            self._audit("bundle_load", {"path": str(path), "sha256": digest, "trigger": reason,
                                        "request_id": request_id, "verdict": "unchanged",
                                        "reason": "the same bytes are in service"})
            log.info("bundle %s is the one in service (%s %s, sha256 %s): nothing reloaded, drift state kept (%s)",
                     path, serving.model_id, serving.model_version, digest[:16], reason)
            if command is not None:
                self._emit(MessageKind.COMMAND_RESPONSE, command_response_message(
                    device_id=self._device_id, command=command, request_id=request_id, ok=True,
                    result={"unchanged": True, "model": {"id": serving.model_id, "version": serving.model_version},
                            "sha256": digest, "note": "the same bytes are in service; nothing was reloaded"}),
                    command)
            return None
        now = time.monotonic()
        interval = float(config.bundle.min_reload_interval_s)
        wait_s = self._last_reload_mono + interval - now
        if wait_s > 0:
            if command is None:  # a file change: tried again at the next look, once the interval has passed
                log.debug("bundle file change waits %.1f s (bundle.min_reload_interval_s)", wait_s)
                return f"waits {wait_s:.1f} s (bundle.min_reload_interval_s)"
            self._counters.incr("bundle_reloads_rate_limited")
            error = (f"reload refused: at most one reload every {interval:g} s (bundle.min_reload_interval_s); "
                     f"try again in {wait_s:.1f} s; still serving {serving.model_id} {serving.model_version}")
            self._audit("bundle_load", {"path": str(path), "sha256": digest, "trigger": reason,
                                        "request_id": request_id, "verdict": "refused", "reason": error})
            if self._counters.get("bundle_reloads_rate_limited") <= 3 or log.isEnabledFor(logging.DEBUG):
                log.warning("%s", error)
            self._respond_error(command, request_id, error)
            return error
        t0 = time.monotonic()
        try:
            bundle = (loader or self._load_bundle)(path)
            engine = InferenceEngine(bundle, reference_policy=self._reference_policy, clock=self._clock)
            self.check_rollback(bundle)
            self.check_device_fit(bundle, engine, watched=watched)
        except Exception as exc:  # a bundle file is untrusted data: whatever it does, keep serving
            if not isinstance(exc, (EdgeError, OSError, ValueError)):
                log.exception("unexpected error while loading %s", path)
            self._counters.incr("bundle_reload_failures")
            if path == Path(self._config().bundle.path):
                self._failed_stamp = stamp
            serving = self._serving()
            error = f"bundle {path.name} refused, still serving {serving.model_id} {serving.model_version}: {exc}"
            self._audit("bundle_load", {"path": str(path), "sha256": digest, "trigger": reason,
                                        "request_id": request_id, "verdict": "refused", "reason": error})
            log.error("%s", error)
            self._refused(error)  # the status's last_error, published
            if command is not None:
                self._respond_error(command, request_id, error)
            return error
        if path == Path(self._config().bundle.path):
            self._bundle_stamp = stamp
            self._failed_stamp = None
        log.info("bundle %s verified and self-tested in %.2f s", path, time.monotonic() - t0)
        self._last_reload_mono = time.monotonic()
        self._swap(_Swap(engine, request_id, command, reason))
        if persist and config.bundle.persist:
            self._install(path, Path(config.bundle.path))
        return None

    def _install(self, path: Path, target: Path) -> None:
        """Write the bundle just handed over over ``bundle.path`` (the old file kept as ``.previous``), so a restart
        serves it; the watched file then holds the bytes in service (no reload of its own)."""
        try:
            if install_over(path, target):
                self._counters.incr("bundle_installed_over_path")
                log.info("bundle %s written over %s (the file there kept as %s.previous): a restart serves it",
                         path, target, target.name)
        except OSError as exc:
            self._counters.incr("bundle_persist_failures")
            log.error("bundle %s is served but cannot be written over %s (%s): a restart serves the file there "
                      "(with signed bundles an older one is refused by the anti-rollback guard)", path, target,
                      exc.strerror or exc)
            return
        self._bundle_stamp = self._seen_stamp = _file_stamp(target)
        self._failed_stamp = None

    def check_rollback(self, bundle: "Bundle") -> None:
        """Refuse a signed bundle older than the newest one of its model served here (:mod:`edge.rollback`)."""
        problem = self.rollback.problem(bundle)
        if problem is not None:
            self._counters.incr("bundle_reloads_rollback_refused")
            raise BundleError(problem)

    def record_version(self, bundle: "Bundle") -> None:
        """Remember a signed bundle put in service as its model's newest (a state file beside the outbox)."""
        try:
            self.rollback.record(bundle)
        except OSError as exc:
            self._counters.incr("bundle_version_mark_write_failures")
            log.error("cannot write the bundle version mark %s: %s; after a restart an older signed bundle of %s "
                      "may be accepted", self.rollback.path, exc, bundle.model_id)

    def check_device_fit(self, bundle: "Bundle", engine: InferenceEngine | None = None, *,
                         watched: bool = False) -> None:
        """Refuse a bundle whose input contract the connected device cannot meet: the signal its spectra carry
        (``counts`` until the device's STATUS says otherwise, as protocol v1 has it), its pixel count and axis.

        Before the device has announced itself (no valid STATUS yet), what the bundle in service accepts is the
        best knowledge of the device: a bundle that accepts less (another pixel count, signal, unit, pixel format or
        a wider axis) is refused (``bundle_reload_device_unknown``); the watched file is tried again at the STATUS.
        """
        device = self._device()
        status = device.status
        if status is None:
            unmet = bundle.input_contract.unmet_by_devices_of(self._serving().bundle.input_contract)
            if unmet is not None:
                self._counters.incr("bundle_reload_device_unknown")
                self._watch_waits_for_status = self._watch_waits_for_status or watched
                raise BundleError(
                    f"the device has not announced itself yet (no valid STATUS), so the new bundle must accept every "
                    f"device the bundle in service accepts: {unmet}; reload it again once the device has sent its "
                    "STATUS")
        engine = engine if engine is not None else InferenceEngine(bundle, reference_policy=self._reference_policy)
        name = printable(status.device_id) if status is not None else self._device_id
        mismatch = engine.signal_mismatch(device.signal, name)
        if mismatch is not None:
            self._counters.incr("bundle_reload_signal_mismatch")
            raise BundleError(f"the connected device does not fit this bundle: {mismatch}")
        if status is None:
            return
        try:
            bundle.input_contract.check(status.pixel_count, wavelengths_nm=device.wavelengths_nm)
        except EdgeError as exc:
            raise BundleError(f"the connected device does not fit this bundle: {exc}") from exc
