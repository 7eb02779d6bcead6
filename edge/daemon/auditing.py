"""The daemon's side of the audit trail (:mod:`edge.audit`): what it records of bundles, and
:class:`AuditHooks`, which writes records for every stage (failures counted and logged, never raised) and
rate-limits recorded command refusals."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from edge.audit import AuditError, AuditLog, RefusalGate
from edge.errors import EdgeError
from edge.metrics import Counters

if TYPE_CHECKING:  # pragma: no cover - names for type checkers only
    from edge.bundle import Bundle

log = logging.getLogger("edge.daemon")


def _file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, hex, read in blocks (raises OSError)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def signer_key_id(public_key_path: Path | None) -> str | None:
    """The audit trail's name of the bundle-signing key (:func:`edge.audit.key_id` of its raw Ed25519 bytes), or
    None when no key is configured or it cannot be read (the bundle load then says why)."""
    if public_key_path is None:
        return None
    try:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        from edge.audit import key_id
        from edge.bundle import load_public_key

        raw = load_public_key(public_key_path).public_bytes(Encoding.Raw, PublicFormat.Raw)
    except (EdgeError, ImportError, ValueError):
        return None
    return key_id("ed25519", bytes(raw))


def bundle_audit(bundle: "Bundle", key_id: str | None) -> dict[str, Any]:
    """What the audit trail records of a bundle: path, SHA-256 of the file, model and signer (the configured
    key's id when the signature was verified, ``unsigned``, or ``signed, not verified`` without a key)."""
    if bundle.signature_verified:
        signer = key_id or "ed25519 (configured key)"
    else:
        signer = "signed, not verified (no bundle.public_key_path)" if bundle.signed else "unsigned"
    return {"path": str(bundle.path), "sha256": bundle.file_sha256,
            "model": {"id": bundle.model_id, "version": bundle.model_version}, "signer": signer}


def _sha256_or_none(path: Path | None) -> str | None:
    """:func:`_file_sha256`, or None when the file cannot be read (for the audit trail)."""
    try:
        return _file_sha256(Path(path)) if path is not None else None
    except OSError:
        return None



class AuditHooks:
    """Writes the daemon's audit records (any thread): bundle loads, commands and their verdicts, configuration
    reloads, alerts.  A failure to write is counted (``audit_write_errors``) and logged, never raised; refusals
    beyond :class:`edge.audit.RefusalGate`'s rate are counted (``audit_refusals_unrecorded``) and recorded as one
    count.

    Parameters
    ----------
    audit : AuditLog or None
        The audit trail; None records nothing.
    counters : Counters
        Where records and failures are counted.
    model : callable() -> (model id, model version)
        The model in service, named in alert records.
    """

    def __init__(self, audit: AuditLog | None, counters: Counters, model: Callable[[], tuple[str, str]]) -> None:
        self.audit = audit
        self._counters = counters
        self._model = model
        self._refusals = RefusalGate()

    def record(self, event: str, details: Mapping[str, Any]) -> None:
        """Write one audit record (any thread); a failure is counted and logged, never raised."""
        if self.audit is None:
            return
        try:
            self.audit.append(event, details)
            self._counters.incr("audit_records")
        except (OSError, AuditError) as exc:
            self._counters.incr("audit_write_errors")
            if self._counters.get("audit_write_errors") <= 3 or log.isEnabledFor(logging.DEBUG):
                log.error("audit record %s could not be written: %s", event, exc)

    def alert(self, name: str, active: bool) -> None:
        """Record an alert raised or cleared (:class:`edge.daemon.status.ActiveAlerts`' ``on_change``)."""
        model_id, model_version = self._model()
        self.record("alert", {"alert": name, "state": "raised" if active else "cleared",
                              "model": {"id": model_id, "version": model_version}})

    def unanswered_refusal(self, command: str, request_id: str | None, error: str) -> None:
        """A refusal past the response budget is not in a response, but its verdict is recorded all the same."""
        self.command_result({"command": command, "request_id": request_id, "ok": False,
                             "error": f"{error} (not answered: response budget spent)"})

    def command_result(self, message: Mapping[str, Any]) -> None:
        """Record a command's verdict (its response); refusals beyond :class:`edge.audit.RefusalGate`'s rate are
        counted (``audit_refusals_unrecorded``) and recorded as one count."""
        ok = bool(message.get("ok"))
        if not ok:
            admit, unrecorded = self._refusals.admit(time.monotonic())
            if unrecorded:
                self.record("command_refusals_unrecorded", {"count": unrecorded})
            if not admit:
                self._counters.incr("audit_refusals_unrecorded")
                return
        details: dict[str, Any] = {"command": message.get("command"), "request_id": message.get("request_id"),
                                   "verdict": "ok" if ok else "refused"}
        if ok:
            details["result"] = message.get("result")
        else:
            details["reason"] = message.get("error")
        self.record("command_result", details)

    def drain(self) -> None:
        """At stop: record the count of refusals the rate limit held back."""
        unrecorded = self._refusals.drain()
        if unrecorded:
            self.record("command_refusals_unrecorded", {"count": unrecorded})
