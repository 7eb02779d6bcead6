"""A deployed bundle on probation, on the daemon's side: :class:`Probation` keeps a copy of the bundle that served
before each install, counts what the new bundle does over the window of its rule (:mod:`edge.deploy.probation`) from
the daemon's counters, and when it fails returns by itself to that copy through the verified reload, with the
anti-rollback guard allowing exactly that return (:class:`edge.rollback.Return`).  Every step is the retained
status's ``deploy.rollout``, counted, audited, and kept on disk so a restart carries on."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from edge.daemon.install import install_over
from edge.deploy.probation import ProbationRule, Tally, verdict
from edge.deploy.staging import DeployError
from edge.jsonstrict import loads_strict
from edge.metrics import Counters
from edge.rollback import BundleVersion, Return, RollbackGuard

if TYPE_CHECKING:  # pragma: no cover - names for type checkers only
    from edge.bundle import Bundle

__all__ = ["Probation", "Rollout", "RolloutState", "OOD_COUNTER", "refusal_reason"]

log = logging.getLogger("edge.daemon")

#: The counter of predictions flagged out of distribution (edge.daemon.frames counts every flag this way).
OOD_COUNTER = "predictions_flagged_out_of_distribution"
_REJECTED_PREFIX = "frames_rejected_"
_STATE = "rollout.json"
_PREVIOUS = "previous.spectrolite"
_CANDIDATE = "previous.next.spectrolite"  # the copy made for an install being tried
_FORMAT = 1
#: Progress of a probation is published this many times over its window at most (the status is retained).
PROGRESS_STEPS = 5


class RolloutState:
    """The states of the status's ``deploy.rollout`` (the last install and what became of it)."""

    INSTALLED = "installed"  #: installed without a probation rule
    PROBATION = "probation"  #: installed, judged over the rule's window
    PASSED = "passed"  #: the window ended within the rule: the new bundle stays
    ROLLING_BACK = "rolling_back"  #: failed: the return to the bundle that served before is under way
    ROLLED_BACK = "rolled_back"  #: failed: the bundle that served before serves again
    ROLLBACK_FAILED = "rollback_failed"  #: failed, and the return was refused too (``error`` says why)
    REFUSED = "refused"  #: never installed (``reason``: untrusted, self_test, signal_contract, ...): the old one serves
    SUPERSEDED = "superseded"  #: another bundle was put in service during the probation


STATES = (RolloutState.INSTALLED, RolloutState.PROBATION, RolloutState.PASSED, RolloutState.ROLLING_BACK,
          RolloutState.ROLLED_BACK, RolloutState.ROLLBACK_FAILED, RolloutState.REFUSED, RolloutState.SUPERSEDED)


def refusal_reason(error: str, counted: Mapping[str, int]) -> str:
    """Why the verified reload refused a deployed bundle, as a word: from the counters it raised (``counted``: the
    increase of each counter during the reload) or, for the loader's errors, the message."""
    for counter, reason in (("bundle_reload_signal_mismatch", "signal_contract"),
                            ("bundle_reloads_rollback_refused", "anti_rollback"),
                            ("bundle_reload_device_unknown", "device_fit"),
                            ("bundle_reloads_rate_limited", "rate_limited")):
        if counted.get(counter, 0) > 0:
            return reason
    if "golden vector" in error or "self-test" in error:
        return "self_test"
    if "does not fit this bundle" in error:
        return "device_fit"
    return "load_failed"


@dataclass
class Rollout:
    """The last install and its probation (kept in ``rollout.json``)."""

    state: str
    transfer_id: str
    sha256: str
    model: dict[str, str] | None
    previous_model: dict[str, str] | None
    rule: ProbationRule | None
    tally: Tally = field(default_factory=lambda: Tally(0, 0, 0))
    reason: str | None = None
    detail: str | None = None
    updated_unix_s: float = 0.0
    #: What a return needs: the bundle that served before (version, SHA-256) and the failed model's mark before.
    previous: BundleVersion | None = None
    previous_sha256: str | None = None
    restore_mark: BundleVersion | None = None

    def summary(self) -> dict[str, Any]:
        """The status's ``deploy.rollout``."""
        return {"state": self.state, "transfer_id": self.transfer_id, "sha256": self.sha256, "model": self.model,
                "previous_model": self.previous_model, "rule": self.rule.to_json() if self.rule else None,
                **self.tally.to_json(), "reason": self.reason, "detail": self.detail,
                "updated_unix_s": self.updated_unix_s}

    def to_json(self) -> dict[str, Any]:
        def version(v: BundleVersion | None) -> dict[str, str] | None:
            return None if v is None else {"model_id": v.model_id, "model_version": v.model_version,
                                           "created_utc": v.created_utc}

        return {"format": _FORMAT, **self.summary(), "previous": version(self.previous),
                "previous_sha256": self.previous_sha256, "restore_mark": version(self.restore_mark)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Rollout:
        if d.get("format") != _FORMAT:
            raise ValueError(f"expected format {_FORMAT}, got {d.get('format')!r}")

        def version(v: Any) -> BundleVersion | None:
            return None if v is None else BundleVersion(str(v["model_id"]), str(v["model_version"]),
                                                        str(v["created_utc"]))

        state = str(d["state"])
        if state not in STATES:
            raise ValueError(f"expected a state in {STATES}, got {state!r}")
        return cls(state=state, transfer_id=str(d["transfer_id"]), sha256=str(d["sha256"]), model=d.get("model"),
                   previous_model=d.get("previous_model"),
                   rule=ProbationRule.from_json(d["rule"]) if d.get("rule") else None,
                   tally=Tally(int(d["spectra"]), int(d["ood"]), int(d["rejected"])), reason=d.get("reason"),
                   detail=d.get("detail"), updated_unix_s=float(d["updated_unix_s"]),
                   previous=version(d.get("previous")), previous_sha256=d.get("previous_sha256"),
                   restore_mark=version(d.get("restore_mark")))


def _model(bundle: "Bundle") -> dict[str, str]:
    return {"id": bundle.model_id, "version": bundle.model_version}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Probation:
    """The probation of deployed bundles (housekeeping thread; :meth:`summary` from any thread).

    Parameters
    ----------
    directory : Path
        Where the copy of the bundle that served before and ``rollout.json`` are kept (``<state dir>/deploy/rollout``).
    counters : Counters
        The daemon's counters: the window is read from them (``spectra_in``, :data:`OOD_COUNTER`,
        ``frames_rejected_*``), and ``deploy_probation_*``/``deploy_rollback*`` are counted there.
    serving : callable() -> Bundle
        The bundle in service now.
    bundle_path : callable() -> Path
        ``bundle.path`` (where the copy that served before may be found; where a return is persisted).
    persist : callable() -> bool
        ``deploy.persist``: write the bundle returned to over ``bundle.path``.
    reload : callable(path, *, request_id, command, reason, loader) -> str or None
        The verified reload.
    load_previous : callable(path) -> Bundle
        Loads the copy of the bundle that served before (with the key that signed it).
    guard : RollbackGuard or None
        The anti-rollback guard, told to let exactly the return through.
    audit : callable(event, details)
        Writes an audit record.
    publish_status : callable()
        Publishes the retained status.
    clock : callable() -> float
        Unix seconds.
    """

    def __init__(self, *, directory: Path, counters: Counters, serving: Callable[[], "Bundle"],
                 bundle_path: Callable[[], Path], persist: Callable[[], bool], reload: Callable[..., str | None],
                 load_previous: Callable[[Path], "Bundle"], guard: RollbackGuard | None,
                 audit: Callable[[str, Mapping[str, Any]], None], publish_status: Callable[[], None],
                 clock: Callable[[], float]) -> None:
        self.directory = Path(directory)
        self._counters = counters
        self._serving = serving
        self._bundle_path = bundle_path
        self._persist = persist
        self._reload = reload
        self._load_previous = load_previous
        self._guard = guard
        self._audit = audit
        self._publish_status = publish_status
        self._clock = clock
        self.current: Rollout | None = None  #: the last install (what a return starts from)
        self.refusal: Rollout | None = None  #: an install refused since (the old bundle serves on)
        self._baseline: Tally | None = None  # the counters when the new bundle was first seen serving
        self._earlier = Tally(0, 0, 0)  # counted before a restart
        self._published_spectra = 0
        self._handed = False  # the return was handed to the inference thread
        self._resumed = False  # a probation left by the previous run: its bundle must be the one that started
        self._load()

    @property
    def previous_path(self) -> Path:
        return self.directory / _PREVIOUS

    def serving_sha256(self) -> str:
        """The SHA-256 of the bundle file in service."""
        return str(self._serving().file_sha256)

    def summary(self) -> dict[str, Any] | None:
        """The status's ``deploy.rollout``: the last install, or a refused one after it (never over a probation or
        a return under way, which a refused commit does not touch)."""
        r, f = self.current, self.refusal
        if f is not None and (r is None or (r.state not in (RolloutState.PROBATION, RolloutState.ROLLING_BACK)
                                            and f.updated_unix_s >= r.updated_unix_s)):
            return f.summary()
        return r.summary() if r is not None else None

    # ------------------------------------------------------------------------------------------ install

    def keep_previous(self) -> tuple["Bundle", bool]:
        """Copy the bytes of the bundle in service aside (the bundle a failed probation of the install about to be
        tried returns to; it replaces the copy of the last install only once the new one is installed); return it
        and whether the copy was made (its file may be gone: the install may go on, without a return)."""
        serving = self._serving()
        bundle_path = self._bundle_path()
        for source in (self.previous_path, Path(serving.path), bundle_path,
                       bundle_path.with_name(bundle_path.name + ".previous")):
            try:
                if not source.is_file() or _sha256(source) != serving.file_sha256:
                    continue
                self.directory.mkdir(parents=True, exist_ok=True)
                tmp = self.directory / (_CANDIDATE + ".tmp")
                shutil.copyfile(source, tmp)
                os.replace(tmp, self.directory / _CANDIDATE)
                return serving, True
            except OSError as exc:
                log.warning("deploy: cannot keep a copy of the bundle in service (%s): %s", source, exc)
        return serving, False

    def installed(self, transfer_id: str, sha256: str, new: "Bundle", previous: "Bundle", kept: bool,
                  rule: ProbationRule | None, mark_before: BundleVersion | None) -> None:
        """The verified reload took ``new`` (handed to the inference thread); ``rule`` puts it on probation."""
        if kept:
            try:
                os.replace(self.directory / _CANDIDATE, self.previous_path)
            except OSError as exc:
                kept = False
                log.error("deploy: cannot keep the copy of %s %s in %s (%s): a failed probation cannot return to it",
                          previous.model_id, previous.model_version, self.directory, exc)
        self.current = Rollout(
            state=RolloutState.PROBATION if rule is not None else RolloutState.INSTALLED, transfer_id=transfer_id,
            sha256=sha256, model=_model(new), previous_model=_model(previous), rule=rule,
            updated_unix_s=self._clock(), previous=BundleVersion.of(previous) if kept else None,
            previous_sha256=previous.file_sha256 if kept else None,
            restore_mark=mark_before if new.model_id == previous.model_id or mark_before is not None else None)
        self._baseline, self._earlier, self._published_spectra = None, Tally(0, 0, 0), 0
        self.refusal = None
        if rule is not None:
            self._counters.incr("deploy_probation_started")
            log.info("deploy: %s %s on probation for %d spectra (max_ood_rate %s, max_rejected_rate %s); it returns "
                     "to %s %s if it fails", new.model_id, new.model_version, rule.window_spectra,
                     rule.max_ood_rate, rule.max_rejected_rate, previous.model_id, previous.model_version)
            self._audit("deploy_probation", {"verdict": "started", "transfer_id": transfer_id, "sha256": sha256,
                                             "model": _model(new), "previous_model": _model(previous),
                                             "rule": rule.to_json()})
        self._save()

    def refused(self, transfer_id: str, sha256: str, reason: str, error: str, rule: ProbationRule | None) -> None:
        """The install was refused (``reason``): the bundle in service stays, and the status says why."""
        serving = self._serving()
        self.refusal = Rollout(state=RolloutState.REFUSED, transfer_id=transfer_id, sha256=sha256, model=None,
                               previous_model=_model(serving), rule=rule, reason=reason, detail=error,
                               updated_unix_s=self._clock())
        self._counters.incr(f"deploy_refused_{reason}")
        try:
            (self.directory / _CANDIDATE).unlink(missing_ok=True)
        except OSError as exc:
            log.debug("cannot remove the unused copy: %s", exc)
        self._save()

    def return_on_command(self, transfer_id: str | None) -> dict[str, Any]:
        """``deploy_rollback``: return to the bundle that served before the last install (``transfer_id`` when
        given), as a failed probation does (the same single return through the guard); the answer says where it
        returns to.

        Raises
        ------
        DeployError
            Another transfer is the last install, it does not serve (refused, rolled back, superseded), or no copy
            of the bundle before it was kept.
        """
        r = self.current
        if r is None:
            raise DeployError("deploy_rollback: expected a bundle installed over MQTT to return from, got none")
        if transfer_id is not None and r.transfer_id != transfer_id:
            raise DeployError(f"deploy_rollback.args.transfer_id: expected the last transfer installed here "
                              f"({r.transfer_id}), got {transfer_id!r}")
        if r.state not in (RolloutState.INSTALLED, RolloutState.PROBATION, RolloutState.PASSED) \
                or self.serving_sha256() != r.sha256:
            raise DeployError(f"deploy_rollback: the last transfer installed ({r.transfer_id}) is {r.state}, not in "
                              "service: there is nothing to return from")
        if r.previous is None or not self.previous_path.is_file():
            raise DeployError(f"deploy_rollback: no copy of the bundle that served before transfer {r.transfer_id} "
                              "was kept")
        transfer_id = r.transfer_id
        self._counters.incr("deploy_rollback_commands")
        log.warning("deploy: deploy_rollback: returning from %s %s to %s %s", *(r.model or {}).values(),
                    *(r.previous_model or {}).values())
        self._audit("deploy_rollback", {"verdict": "requested", "transfer_id": transfer_id,
                                        "from_model": r.model, "to_model": r.previous_model})
        self._handed = False
        self._set(r, RolloutState.ROLLING_BACK, "command", f"deploy_rollback after {r.tally.spectra} spectra "
                  f"({r.state})")
        self._returning(r)
        return {"transfer_id": transfer_id, "state": r.state, "returning_to": r.previous_model}

    # ------------------------------------------------------------------------------------------ watching

    def tick(self) -> None:
        """Look at the probation (housekeeping thread): count, judge, return when it failed."""
        r = self.current
        if r is None:
            return
        if r.state == RolloutState.PROBATION:
            self._judge(r)
        elif r.state == RolloutState.ROLLING_BACK:
            self._returning(r)

    def _tally(self) -> Tally:
        snap = self._counters.snapshot()
        return Tally(snap.get("spectra_in", 0), snap.get(OOD_COUNTER, 0),
                     sum(v for k, v in snap.items() if k.startswith(_REJECTED_PREFIX)))

    def _judge(self, r: Rollout) -> None:
        assert r.rule is not None
        serving = self._serving().file_sha256
        if self._baseline is None:
            if serving == r.sha256:  # the inference thread swapped it in: the window starts now
                self._baseline = self._tally()
                self._resumed = False
                log.info("deploy: probation of %s started counting", r.transfer_id)
            elif self._resumed:  # restarted with another bundle in service (deploy.persist = false)
                self._resumed = False
                self._set(r, RolloutState.SUPERSEDED, None, "the daemon restarted serving another bundle (the one "
                          "on probation was not persisted): the probation ended")
            return
        if serving != r.sha256:
            self._set(r, RolloutState.SUPERSEDED, None, "another bundle was put in service during the probation")
            return
        now, base = self._tally(), self._baseline
        tally = Tally(self._earlier.spectra + now.spectra - base.spectra, self._earlier.ood + now.ood - base.ood,
                      self._earlier.rejected + now.rejected - base.rejected)
        r.tally = tally
        state, reason, detail = verdict(r.rule, tally)
        if state == "passed":
            self._counters.incr("deploy_probation_passed")
            log.info("deploy: %s %s passed its probation: %s", *(r.model or {}).values(), detail)
            self._audit("deploy_probation", {"verdict": "passed", "transfer_id": r.transfer_id, "sha256": r.sha256,
                                             **tally.to_json(), "detail": detail})
            self._set(r, RolloutState.PASSED, None, detail)
        elif state == "failed":
            self._counters.incr("deploy_probation_failed")
            log.warning("deploy: %s %s failed its probation (%s): returning to %s %s", *(r.model or {}).values(),
                        detail, *(r.previous_model or {}).values())
            self._audit("deploy_probation", {"verdict": "failed", "transfer_id": r.transfer_id, "sha256": r.sha256,
                                             **tally.to_json(), "reason": reason, "detail": detail})
            self._handed = False
            self._set(r, RolloutState.ROLLING_BACK, reason, detail)
            self._returning(r)
        elif tally.spectra - self._published_spectra >= max(1, r.rule.window_spectra // PROGRESS_STEPS):
            self._published_spectra = tally.spectra
            r.updated_unix_s = self._clock()
            self._save()
            self._publish_status()

    def _returning(self, r: Rollout) -> None:
        """Return to the bundle that served before (the verified reload, the guard allowing just that)."""
        if r.previous is None or r.previous_sha256 is None:
            self._fail_return(r, "no copy of the bundle that served before was kept")
            return
        guard = self._guard
        if self._handed:  # done once the inference thread swapped it in and recorded it (the guard's marks)
            if self._serving().file_sha256 == r.previous_sha256 and (guard is None or guard.pending_return is None):
                self._returned(r)
            return
        model_id = (r.model or {}).get("id", r.previous.model_id)
        permit = Return(r.previous, r.previous_sha256, model_id, r.restore_mark)
        if self._serving().file_sha256 == r.previous_sha256:  # it serves already (a restart during the return)
            if guard is not None:
                guard.permit_return(permit)
                try:
                    guard.record(self._serving())  # the failed model's mark goes back
                except OSError as exc:
                    log.error("deploy: cannot write the bundle version marks %s: %s", guard.path, exc)
            self._returned(r)
            return
        if guard is not None:
            guard.permit_return(permit)
        error = self._reload(self.previous_path, request_id=None, command=None,
                             reason=f"probation of transfer {r.transfer_id} failed: {r.detail}",
                             loader=self._load_previous)
        if error is None:
            self._handed = True
            return
        if error.startswith("waits "):  # bundle.min_reload_interval_s: the next look tries again
            return
        if guard is not None:
            guard.permit_return(None)
        self._fail_return(r, error)

    def _returned(self, r: Rollout) -> None:
        self._counters.incr("deploy_rolled_back")
        if self._persist():
            target = self._bundle_path()
            try:
                install_over(self.previous_path, target, keep_previous=False)
            except OSError as exc:
                self._counters.incr("deploy_persist_failures")
                log.error("deploy: returned to the previous bundle, but cannot write it to %s (%s): a restart serves "
                          "the bundle there", target, exc.strerror or exc)
        log.warning("deploy: rolled back to %s %s (transfer %s failed its probation: %s)",
                    *(r.previous_model or {}).values(), r.transfer_id, r.detail)
        self._audit("deploy_rollback", {"verdict": "returned", "transfer_id": r.transfer_id, "reason": r.reason,
                                        "detail": r.detail, "to_sha256": r.previous_sha256,
                                        "to_model": r.previous_model, "from_model": r.model})
        self._set(r, RolloutState.ROLLED_BACK, r.reason, r.detail)

    def _fail_return(self, r: Rollout, error: str) -> None:
        self._counters.incr("deploy_rollback_failed")
        log.error("deploy: transfer %s failed its probation and the return to the bundle that served before failed "
                  "too: %s; the failed bundle keeps serving", r.transfer_id, error)
        self._audit("deploy_rollback", {"verdict": "refused", "transfer_id": r.transfer_id, "reason": r.reason,
                                        "error": error})
        self._set(r, RolloutState.ROLLBACK_FAILED, r.reason, f"{r.detail}; the return failed: {error}")

    # ------------------------------------------------------------------------------------------ state

    def _set(self, r: Rollout, state: str, reason: str | None, detail: str | None) -> None:
        r.state, r.reason, r.detail, r.updated_unix_s = state, reason, detail, self._clock()
        self._save()
        self._publish_status()

    def _save(self) -> None:
        doc = {"current": self.current.to_json() if self.current is not None else None,
               "refusal": self.refusal.to_json() if self.refusal is not None else None}
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = self.directory / (_STATE + ".tmp")
            tmp.write_text(json.dumps(doc), encoding="utf-8")
            os.replace(tmp, self.directory / _STATE)
        except OSError as exc:  # the status says it anyway; only a restart loses it
            log.warning("deploy: cannot record the rollout state in %s: %s", self.directory, exc)

    def _load(self) -> None:
        path = self.directory / _STATE
        if not path.is_file():
            return
        try:
            doc = loads_strict(path.read_text(encoding="utf-8"))
            r = Rollout.from_json(doc["current"]) if doc.get("current") is not None else None
            self.refusal = Rollout.from_json(doc["refusal"]) if doc.get("refusal") is not None else None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("deploy: ignoring the unreadable rollout state %s: %s", path, exc)
            return
        self.current = r
        if r is None:
            return
        if r.state == RolloutState.PROBATION:
            self._earlier = r.tally
            self._resumed = True
            log.info("deploy: the probation of transfer %s goes on (%d spectra judged before the restart)",
                     r.transfer_id, r.tally.spectra)
        elif r.state == RolloutState.ROLLING_BACK:
            log.info("deploy: the return of transfer %s to the bundle that served before goes on", r.transfer_id)
