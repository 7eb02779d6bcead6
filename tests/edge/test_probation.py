"""The probation of a deployed bundle without processes: the rule a ``deploy_commit`` carries
(:mod:`edge.deploy.probation`), its verdicts, the one return the anti-rollback guard lets through
(:class:`edge.rollback.Return`) and the words a refused install is reported with.  The daemon running all of it with
real processes is test_rollout_e2e.py."""

from __future__ import annotations

import doctest
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import edge.deploy.probation
import edge.deploy.staging as edge_staging
import edge.metrics as edge_metrics
from edge.daemon.probation import Rollout, RolloutState, refusal_reason
from edge.deploy.args import DeployCommitArgs, parse_deploy_args
from edge.deploy.probation import ProbationRule, Tally, parse_probation, verdict
from edge.errors import BundleError, CommandError
from edge.rollback import BundleVersion, Return, RollbackGuard

T0 = "2026-01-31T12:00:00Z"
T1 = "2026-02-01T08:00:00Z"
TID = "b16384-" + "a" * 32


def _bundle(version: str, sha: str, created: str = T0, *, verified: bool = True, model_id: str = "m") -> Any:
    """What the guard reads of a :class:`edge.bundle.Bundle`: manifest, verification, file hash."""
    return SimpleNamespace(manifest={"model_id": model_id, "model_version": version, "created_utc": created},
                           signature_verified=verified, model_id=model_id, file_sha256=sha)


def test_the_module_examples_hold() -> None:
    assert doctest.testmod(edge.deploy.probation).failed == 0


@pytest.mark.parametrize(("rule", "error"), [
    ([20], r"expected an object"),
    ({"window_spectra": 20}, r"expected max_ood_rate or max_rejected_rate \(or both\), got neither"),
    ({"window_spectra": 0, "max_ood_rate": 0.1}, r"window_spectra: expected an integer in 1\.\.1000000, got 0"),
    ({"window_spectra": True, "max_ood_rate": 0.1}, r"window_spectra: expected an integer"),
    ({"window_spectra": 20, "max_ood_rate": 1.5}, r"max_ood_rate: expected a number in 0\.\.1, got 1\.5"),
    ({"window_spectra": 20, "max_rejected_rate": "0.1"}, r"max_rejected_rate: expected a number in 0\.\.1"),
    ({"window_spectra": 20, "max_ood_rate": 0.1, "max_drift": 1}, r"probation\.max_drift: unknown key"),
])
def test_a_bad_rule_is_refused_with_what_was_expected(rule: Any, error: str) -> None:
    with pytest.raises(CommandError, match=error):
        parse_deploy_args("deploy_commit", {"transfer_id": TID, "probation": rule})


def test_deploy_commit_carries_the_rule_or_none() -> None:
    args = parse_deploy_args("deploy_commit", {"transfer_id": TID, "probation": {"window_spectra": 50,
                                                                                 "max_ood_rate": 0.1}})
    assert isinstance(args, DeployCommitArgs) and args.probation == ProbationRule(50, 0.1, None)
    plain = parse_deploy_args("deploy_commit", {"transfer_id": TID})
    assert isinstance(plain, DeployCommitArgs) and plain.probation is None


def test_the_verdict_fails_as_soon_as_the_window_cannot_end_within_a_rate_and_passes_at_its_end() -> None:
    rule = parse_probation("p", {"window_spectra": 10, "max_ood_rate": 0.2, "max_rejected_rate": 0.0})
    assert verdict(rule, Tally(3, 2, 0)) == (None, None, None)  # 2 of 10 allowed: not yet decided
    assert verdict(rule, Tally(3, 3, 0))[:2] == ("failed", "ood_rate")  # 3 > 2: no later spectrum can undo it
    assert verdict(rule, Tally(1, 0, 1))[:2] == ("failed", "rejected_rate")  # none may be rejected
    assert verdict(rule, Tally(9, 2, 0)) == (None, None, None)
    assert verdict(rule, Tally(10, 2, 0))[0] == "passed"
    assert verdict(ProbationRule(10, None, 0.5), Tally(10, 10, 0))[0] == "passed"  # OOD not judged by this rule


def test_the_guard_lets_exactly_the_permitted_return_through_and_puts_the_failed_models_mark_back(
        tmp_path: Path) -> None:
    path = tmp_path / "dev.bundle-versions.json"
    guard = RollbackGuard(path)
    old, new = _bundle("1.0.0", "0" * 64), _bundle("1.1.0", "1" * 64, T1)
    guard.record(old)
    guard.record(new)
    assert guard.problem(old) is not None  # an ordinary rollback: refused
    guard.permit_return(Return(BundleVersion.of(old), old.file_sha256, "m", BundleVersion.of(old)))
    assert guard.problem(old) is None
    # Nothing else: the same version with other bytes, or another older version, is still refused.
    assert "rollback refused" in str(guard.problem(_bundle("1.0.0", "2" * 64)))
    assert "rollback refused" in str(guard.problem(_bundle("0.9.0", "0" * 64)))
    guard.record(old)  # served: the permit is used up, the mark is what it was before the failed install
    assert guard.pending_return is None
    assert RollbackGuard(path).mark("m") == BundleVersion.of(old)
    with pytest.raises(BundleError, match="rollback refused"):
        RollbackGuard(path).check(_bundle("0.9.0", "3" * 64))  # the mark still guards what is older than 1.0.0
    assert guard.problem(_bundle("1.0.0", "4" * 64, "2025-01-01T00:00:00Z")) is not None  # no second return


def test_a_return_to_an_unsigned_bundle_removes_the_mark_the_failed_install_made(tmp_path: Path) -> None:
    path = tmp_path / "dev.bundle-versions.json"
    guard = RollbackGuard(path)
    old, new = _bundle("1.0.0", "0" * 64, verified=False), _bundle("1.1.0", "1" * 64, T1)
    guard.record(old)  # unsigned: no mark
    guard.record(new)
    guard.permit_return(Return(BundleVersion.of(old), old.file_sha256, "m", None))
    guard.record(old)
    assert json.loads(path.read_text())["marks"] == {}


def test_a_refused_install_is_named_by_the_guard_that_refused_it() -> None:
    assert refusal_reason("x", {"bundle_reload_signal_mismatch": 1}) == "signal_contract"
    assert refusal_reason("x", {"bundle_reloads_rollback_refused": 1}) == "anti_rollback"
    assert refusal_reason("x", {"bundle_reload_device_unknown": 1, "bundle_reload_failures": 1}) == "device_fit"
    assert refusal_reason("bundle b refused: golden vector 2: outputs differ", {}) == "self_test"
    assert refusal_reason("bundle b refused: the connected device does not fit this bundle: 512 pixels", {}) \
        == "device_fit"
    assert refusal_reason("bundle b refused: member model.tflite: hash mismatch", {}) == "load_failed"


def test_the_rollout_state_survives_a_round_trip_through_its_file() -> None:
    r = Rollout(state=RolloutState.ROLLING_BACK, transfer_id=TID, sha256="1" * 64,
                model={"id": "m", "version": "1.1.0"}, previous_model={"id": "m", "version": "1.0.0"},
                rule=ProbationRule(20, 0.1, None), tally=Tally(5, 3, 0), reason="ood_rate", detail="3 of 5",
                updated_unix_s=1.5, previous=BundleVersion("m", "1.0.0", T0), previous_sha256="0" * 64,
                restore_mark=BundleVersion("m", "1.0.0", T0))
    assert Rollout.from_json(json.loads(json.dumps(r.to_json()))) == r
    with pytest.raises(ValueError, match="expected a state in"):
        Rollout.from_json({**r.to_json(), "state": "lost"})


# ------------------------------------------------------------------------------------------------ Probation, with fakes
class _Device:
    """The daemon around :class:`edge.daemon.probation.Probation`: the bundle in service, its reload (which can be
    told to wait for the rate limit, as the real one does), the guard, the audit trail and the bundle file."""

    def __init__(self, tmp: Path) -> None:
        import hashlib

        self.tmp = tmp
        self.bundles = {}
        for name, version, created in (("old", "1.0.0", T0), ("new", "1.1.0", T1)):
            path = tmp / f"{name}.spectrolite"
            path.write_bytes(name.encode() * 100)
            self.bundles[name] = SimpleNamespace(
                path=path, file_sha256=hashlib.sha256(path.read_bytes()).hexdigest(), model_id="m",
                model_version=version, signature_verified=True,
                manifest={"model_id": "m", "model_version": version, "created_utc": created})
        self.bundle_path = tmp / "model.spectrolite"
        self.bundle_path.write_bytes(self.bundles["old"].path.read_bytes())
        self.serving = self.bundles["old"]
        self.counters = edge_metrics.Counters()
        self.guard = RollbackGuard(tmp / "dev.bundle-versions.json")
        self.guard.record(self.serving)
        self.audit: list[tuple[str, dict[str, Any]]] = []
        self.waits = 0  # reloads answered "waits" (bundle.min_reload_interval_s) before one goes through
        self.reloads: list[Path] = []

    def probation(self) -> Any:
        from edge.daemon.probation import Probation

        return Probation(directory=self.tmp / "deploy" / "rollout", counters=self.counters,
                         serving=lambda: self.serving, bundle_path=lambda: self.bundle_path, persist=lambda: True,
                         reload=self.reload, load_previous=self.load, guard=self.guard,
                         audit=lambda e, d: self.audit.append((e, dict(d))), publish_status=lambda: None,
                         clock=lambda: 1000.0 + len(self.audit))

    def load(self, path: Path) -> Any:
        data = path.read_bytes()
        return next(b for b in self.bundles.values() if b.path.read_bytes() == data)

    def reload(self, path: Path, *, request_id: Any, command: Any, reason: str, loader: Any) -> str | None:
        self.reloads.append(path)
        if self.waits:
            self.waits -= 1
            return "waits 1.0 s (bundle.min_reload_interval_s)"
        bundle = loader(path)
        problem = self.guard.problem(bundle)
        if problem is not None:
            return problem
        self.swap(bundle)
        return None

    def swap(self, bundle: Any) -> None:
        self.serving = bundle
        self.guard.record(bundle)

    def spectra(self, n: int, ood: int = 0) -> None:
        self.counters.incr("spectra_in", n)
        self.counters.incr("predictions_flagged_out_of_distribution", ood)


def _install(dev: _Device, p: Any, rule: ProbationRule) -> None:
    previous, kept = p.keep_previous()
    mark = dev.guard.mark("m")
    dev.swap(dev.bundles["new"])
    dev.bundle_path.write_bytes(dev.bundles["new"].path.read_bytes())  # deploy.persist
    p.installed(TID, dev.bundles["new"].file_sha256, dev.bundles["new"], previous, kept, rule, mark)


def test_a_failed_probation_waits_for_the_rate_limit_then_returns_and_restores_file_and_mark(tmp_path: Path) -> None:
    dev = _Device(tmp_path)
    p = dev.probation()
    _install(dev, p, ProbationRule(10, 0.2))
    dev.spectra(5)  # before the first look: not counted (the window starts when the new bundle is seen serving)
    p.tick()
    dev.spectra(3, ood=3)
    dev.waits = 2
    p.tick()
    assert p.summary()["state"] == "rolling_back" and p.summary()["reason"] == "ood_rate", p.summary()
    assert p.summary()["spectra"] == 3 and dev.serving is dev.bundles["new"]
    p.tick()
    p.tick()  # the rate limit let it through: swapped in and recorded by the guard
    p.tick()
    assert p.summary()["state"] == "rolled_back" and dev.serving is dev.bundles["old"]
    assert len(dev.reloads) == 3 and dev.bundle_path.read_bytes() == dev.bundles["old"].path.read_bytes()
    assert dev.guard.mark("m") == BundleVersion.of(dev.bundles["old"]) and dev.guard.pending_return is None
    assert dev.counters.get("deploy_probation_failed") == 1 and dev.counters.get("deploy_rolled_back") == 1
    assert [(e, d["verdict"]) for e, d in dev.audit] == [("deploy_probation", "started"),
                                                          ("deploy_probation", "failed"),
                                                          ("deploy_rollback", "returned")]


def test_a_probation_goes_on_after_a_restart_and_a_refused_install_does_not_hide_or_end_it(tmp_path: Path) -> None:
    dev = _Device(tmp_path)
    p = dev.probation()
    _install(dev, p, ProbationRule(20, 0.2))
    p.tick()
    dev.spectra(8, ood=2)
    p.tick()  # 8 >= 20 / 5: the progress is saved (and published)
    assert p.keep_previous()[1]  # another commit comes: the bundle in service (the new one) is copied aside...
    p.refused("b16384-" + "c" * 32, "c" * 64, "self_test", "golden vector 1: outputs differ", None)  # ...refused
    assert p.summary()["state"] == "probation" and p.summary()["spectra"] == 8
    again = dev.probation()  # the daemon restarts, serving the persisted new bundle
    again.tick()
    dev.spectra(12, ood=2)
    again.tick()
    assert again.summary()["state"] == "passed" and again.summary()["spectra"] == 20, again.summary()
    assert again.summary()["ood"] == 4  # 2 before the restart, 2 after: exactly floor(0.2 * 20), allowed
    # The operator takes it back later: the copy of the bundle before it is still there (the refused install's copy
    # did not replace it).
    answer = again.return_on_command(TID)
    assert answer["returning_to"] == {"id": "m", "version": "1.0.0"}
    again.tick()
    assert again.summary()["state"] == "rolled_back" and again.summary()["reason"] == "command"
    assert dev.serving is dev.bundles["old"]
    with pytest.raises(edge_staging.DeployError, match="is rolled_back, not in service"):
        again.return_on_command(None)


def test_a_probation_whose_bundle_does_not_serve_after_a_restart_ends_as_superseded(tmp_path: Path) -> None:
    dev = _Device(tmp_path)
    p = dev.probation()
    _install(dev, p, ProbationRule(20, 0.2))
    p.tick()
    dev.serving = dev.bundles["old"]  # restarted with deploy.persist = false: bundle.path serves
    again = dev.probation()
    again.tick()
    assert again.summary()["state"] == "superseded", again.summary()
