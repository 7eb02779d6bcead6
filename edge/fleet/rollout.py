"""``spectro-fleet rollout``: a staged rollout.  The bundle goes to a canary share of the devices first, each on
probation (the rule travels in ``deploy_commit``; :mod:`edge.deploy.probation`); the rollout waits until every canary
passed or rolled back by itself (read from the retained status's ``deploy.rollout``), stops when more canaries
failed than ``max_failures`` allows, and otherwise sends the bundle, with the same rule, to the rest.

Every device ends in one of: ``passed`` (updated), ``rolled_back`` (failed its probation; the bundle that served
before serves again), ``refused`` (never installed: untrusted, self-test, signal contract, ...; the old one serves),
``failed`` (no answer, the return failed, timed out) or ``not pushed`` (the rollout stopped before it).
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from edge.fleet.client import Device, FleetClient, FleetError
from edge.fleet.push import Bundle, Pusher
from edge.validation import fail

__all__ = ["DeviceResult", "StagedRollout", "canary_count", "TERMINAL"]

log = logging.getLogger("spectro-fleet")

#: The states of ``deploy.rollout`` a probation ends in.
TERMINAL = ("passed", "rolled_back", "rollback_failed", "refused", "superseded", "installed")
#: How the device results are summed up: the state of each, the word of the summary.
CATEGORY = {"passed": "updated", "installed": "updated", "rolled_back": "restored", "refused": "refused"}
_CANARY_RE = re.compile(r"^(\d+)(%?)$")


def canary_count(spec: str, devices: int) -> int:
    """Canaries out of ``devices`` for ``--canary K`` or ``--canary P%`` (at least one, at most all).

    >>> canary_count("1", 20), canary_count("10%", 20), canary_count("5%", 3), canary_count("50", 4)
    (1, 2, 1, 4)
    """
    m = _CANARY_RE.match(spec.strip())
    if m is None or (m.group(2) and not 0 < int(m.group(1)) <= 100) or (not m.group(2) and int(m.group(1)) < 1):
        fail(FleetError, "--canary", "a count >= 1 or a share 1%..100%", spec)
    n = math.ceil(devices * int(m.group(1)) / 100) if m.group(2) else int(m.group(1))
    return max(1, min(devices, n))


@dataclass
class DeviceResult:
    """What became of the rollout on one device."""

    device_id: str
    wave: str  #: canary or rest
    state: str = "not pushed"
    reason: str | None = None
    detail: str = ""
    rollout: dict[str, Any] = field(default_factory=dict)  #: the device's last ``deploy.rollout``

    @property
    def category(self) -> str:
        return CATEGORY.get(self.state, "not pushed" if self.state == "not pushed" else "failed")

    def as_dict(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "wave": self.wave, "state": self.state, "category": self.category,
                "reason": self.reason, "detail": self.detail,
                "spectra": self.rollout.get("spectra"), "ood": self.rollout.get("ood"),
                "rejected": self.rollout.get("rejected")}


class StagedRollout:
    """Canaries, their verdicts, then the rest (see the module docstring).

    Parameters
    ----------
    client : FleetClient
        Connected, with the HMAC key; its retained statuses give the verdicts.
    bundle : Bundle
        The signed bundle.
    devices : list of Device
        Every target; the first ``canaries`` (by site, line, device id) are the canaries.
    canaries : int
        How many go first.
    probation : dict
        The rule (``window_spectra``, ``max_ood_rate``, ``max_rejected_rate``).
    max_failures : int
        Canaries that may fail without stopping the rollout (0: any failure stops it).
    timeout_s : float
        How long to wait for the verdicts of one wave.
    push : dict
        Keyword arguments of :class:`edge.fleet.push.Pusher` (window, timeouts).
    report : callable(str)
        Told each step (a line for the operator).
    """

    def __init__(self, client: FleetClient, bundle: Bundle, devices: list[Device], *, canaries: int,
                 probation: dict[str, Any], max_failures: int = 0, timeout_s: float = 600.0,
                 push: dict[str, Any] | None = None, report: Callable[[str], None] | None = None) -> None:
        if not devices:
            raise FleetError("expected at least one device to roll out to, got none")
        ordered = sorted(devices, key=lambda d: (d.site, d.line, d.device_id))
        self.client = client
        self.bundle = bundle
        self.canaries = ordered[:canaries]
        self.rest = ordered[canaries:]
        self.probation = dict(probation)
        self.max_failures = max_failures
        self.timeout_s = timeout_s
        self.push = dict(push or {})
        self.report = report or (lambda line: log.info("%s", line))
        self.results = {d.device_id: DeviceResult(d.device_id, "canary" if i < canaries else "rest")
                        for i, d in enumerate(ordered)}
        self.stopped: str | None = None  #: why the rollout stopped after the canaries (None: it went on)

    def run(self) -> dict[str, DeviceResult]:
        self.report(f"canaries: {', '.join(d.device_id for d in self.canaries)} "
                    f"(then {len(self.rest)} more); probation {self.probation}")
        self._wave(self.canaries)
        failed = [r for r in self.results.values() if r.wave == "canary" and r.state != "passed"]
        if len(failed) > self.max_failures:
            self.stopped = (f"{len(failed)} of {len(self.canaries)} canary(ies) did not pass (at most "
                            f"{self.max_failures} may): " + "; ".join(f"{r.device_id} {r.state}" for r in failed))
            self.report(f"rollout stopped: {self.stopped}; {len(self.rest)} device(s) not pushed")
            return self.results
        if self.rest:
            self.report(f"canaries done ({len(self.canaries) - len(failed)} passed, {len(failed)} failed): pushing "
                        f"to the other {len(self.rest)}")
            self._wave(self.rest)
        return self.results

    def _wave(self, devices: list[Device]) -> None:
        before = {d.device_id: self._rollout(d.device_id) for d in devices}
        pusher = Pusher(self.client, self.bundle, devices, commit_args={"probation": self.probation}, **self.push)
        outcomes = pusher.run()
        waiting = set()
        for d in devices:
            o, r = outcomes[d.device_id], self.results[d.device_id]
            if o.state == "installed":
                r.state, r.detail = "probation", o.detail
                waiting.add(d.device_id)
            else:
                r.state, r.detail = ("refused" if o.state == "refused" else "failed"), f"{o.state}: {o.detail}"
                self.report(f"{r.wave} {d.device_id}: {r.detail}")
        end = time.monotonic() + self.timeout_s
        while waiting and time.monotonic() < end:
            for device_id in sorted(waiting):
                now = self._rollout(device_id)
                if now is None or now == before[device_id] or now.get("transfer_id") != self.bundle.transfer_id:
                    continue
                r = self.results[device_id]
                r.rollout = now
                if now.get("state") in TERMINAL:
                    waiting.discard(device_id)
                    r.state, r.reason, r.detail = str(now["state"]), now.get("reason"), str(now.get("detail") or "")
                    self.report(f"{r.wave} {device_id}: {r.state}" + (f" ({r.reason})" if r.reason else "")
                                + (f": {r.detail}" if r.detail else ""))
            time.sleep(0.2)
        for device_id in waiting:
            r = self.results[device_id]
            r.state = "failed"
            r.detail = (f"no verdict within {self.timeout_s:g} s (last: {r.rollout.get('state', 'none')}, "
                        f"{r.rollout.get('spectra', 0)} spectra judged)")
            self.report(f"{r.wave} {device_id}: {r.detail}")

    def _rollout(self, device_id: str) -> dict[str, Any] | None:
        d = self.client.devices().get(device_id)
        deploy = (d.status.get("deploy") or {}) if d is not None else {}
        rollout = deploy.get("rollout")
        return dict(rollout) if isinstance(rollout, dict) else None

    def summary(self) -> dict[str, Any]:
        """Counts per category (updated, restored, refused, failed, not pushed) and the devices of each."""
        out: dict[str, Any] = {"updated": [], "restored": [], "refused": [], "failed": [], "not pushed": []}
        for r in self.results.values():
            out[r.category].append(r.device_id)
        return out


def roll_back(client: FleetClient, devices: list[Device], *, ack_timeout_s: float = 10.0,
              timeout_s: float = 120.0, report: Callable[[str], None] | None = None) -> dict[str, DeviceResult]:
    """``spectro-fleet rollback``: ask each device (signed ``deploy_rollback``) to return to the bundle that served
    before its last install, and wait until its retained ``deploy.rollout`` says ``rolled_back`` (or why not).

    The command names the transfer the device's status shows in service (none when it shows another state: the
    device then answers whether its last install serves); a device that refuses it is ``refused``, with why.
    """
    say = report or (lambda line: log.info("%s", line))
    results = {d.device_id: DeviceResult(d.device_id, "rollback") for d in devices}
    before: dict[str, dict[str, Any]] = {}
    sent: dict[str, str] = {}
    for d in devices:
        rollout = (d.status.get("deploy") or {}).get("rollout")
        rollout = rollout if isinstance(rollout, dict) else {}
        before[d.device_id] = dict(rollout)
        serves = rollout.get("state") in ("installed", "probation", "passed")
        rid = f"rollback-{d.device_id}-{int(time.time())}"[:64]
        client.send("deploy_rollback", {"transfer_id": rollout["transfer_id"]} if serves else {}, request_id=rid,
                    device=d)
        sent[d.device_id] = rid
    for device_id, rid in sent.items():
        got = client.wait_responses(rid, {device_id}, ack_timeout_s).get(device_id)
        client.forget(rid)
        r = results[device_id]
        if got is None or not got.ok:
            r.state = "refused" if got is not None else "failed"
            r.detail = str(got.error) if got is not None else f"no answer within {ack_timeout_s:g} s"
            say(f"{device_id}: {r.state}: {r.detail}")
            before.pop(device_id)
        else:
            r.state = "rolling_back"
    end = time.monotonic() + timeout_s
    waiting = set(before)
    while waiting and time.monotonic() < end:
        for device_id in sorted(waiting):
            seen = client.devices().get(device_id)
            now = ((seen.status.get("deploy") or {}).get("rollout") if seen is not None else None) or {}
            if now.get("state") in ("rolled_back", "rollback_failed"):
                waiting.discard(device_id)
                r = results[device_id]
                r.rollout, r.state, r.reason = dict(now), str(now["state"]), now.get("reason")
                r.detail = str(now.get("detail") or "")
                prev = now.get("previous_model") or {}
                say(f"{device_id}: {r.state}" + (f" to {prev.get('id')} {prev.get('version')}" if prev else "")
                    + (f": {r.detail}" if r.state != "rolled_back" else ""))
        time.sleep(0.2)
    for device_id in waiting:
        results[device_id].state = "failed"
        results[device_id].detail = f"not rolled back within {timeout_s:g} s"
    return results
