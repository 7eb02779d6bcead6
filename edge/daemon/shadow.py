"""Shadow mode in the daemon: :class:`ShadowMode` loads a challenger bundle on command (with the guards of a reload),
runs it on the inference thread after the serving bundle on every spectrum the serving one judged, publishes its
predictions on ``.../challenger_prediction``, keeps the comparison (:class:`edge.shadow.ShadowComparison`) for the
metrics, and promotes the challenger through the reload path, by command or by the rule the rollout request stated.

Threads: the housekeeping thread runs the commands (:meth:`ShadowMode.execute`); the inference thread hands over
what the serving bundle judged (:meth:`ShadowMode.observe`, :meth:`ShadowMode.observe_reference`) and runs the
challenger at the top of its loop (:meth:`ShadowMode.flush`), after the serving bundle's messages of the batch were
committed; the challenger's interpreter is only ever run by the inference thread.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from edge.daemon.auditing import _file_sha256
from edge.daemon.outbound import Outbound
from edge.inference import InferenceEngine, Outcome, Prediction, Rejection
from edge.metrics import Counters, LatencyWindow
from edge.publish.messages import LinePosition, challenger_prediction_message_of, command_response_message
from edge.publish.schema import MessageKind, Quality
from edge.references import ReferencePolicy, ReferenceSet
from edge.shadow import Judged, PromotionRule, ShadowComparison

if TYPE_CHECKING:  # pragma: no cover - names for type checkers only
    from edge.bundle import Bundle
    from firmware_bridge.frames import Spectrum

log = logging.getLogger("edge.daemon")

#: Commands this module executes.
SHADOW_COMMANDS = ("load_challenger", "promote_challenger", "drop_challenger", "reference_value")
#: Longest ``detail`` and ``rule_verdict`` text and ``path`` the payloads carry (their schemas' bounds).
TEXT_MAX, PATH_MAX = 2048, 1024


def _clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ending in an ellipsis when cut (a rule over many targets says much)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class _Challenger:
    """A challenger in shadow mode (its engine is run by the inference thread only)."""

    engine: InferenceEngine
    path: Path
    sha256: str
    request_id: str | None
    authenticated: bool
    rule: PromotionRule | None
    since_unix_s: float
    comparison: ShadowComparison
    serving_sha256: str
    serving_model: dict[str, str]
    compute: LatencyWindow = field(default_factory=LatencyWindow)
    compute_total_us: float = 0.0
    rule_verdict: str | None = None
    promotion_requested: bool = False

    @property
    def model(self) -> dict[str, str]:
        return {"id": self.engine.model_id, "version": self.engine.model_version}


@dataclass(frozen=True)
class _Observed:
    """A spectrum the serving bundle judged, with the device state it was judged in."""

    frame: "Spectrum"
    serving: Outcome
    received_ns: int
    refs: ReferenceSet
    wavelengths_nm: Any
    signal: str
    instrument: tuple[str, ...]
    boot_id: int | None
    line: LinePosition | None = None  #: where it sat in a LINE frame (None for a SPECTRUM frame)

    def context(self) -> tuple[int, int, str, tuple[str, ...]]:
        return (id(self.refs), id(self.wavelengths_nm), self.signal, self.instrument)


def judged(outcome: Outcome) -> Judged:
    """What the comparison needs of one model's outcome."""
    if isinstance(outcome, Rejection):
        return Judged(outcome.seq, None, None, None, False, False)
    return Judged(outcome.seq, outcome.values, outcome.lower, outcome.upper, bool(outcome.flags),
                  Quality.OUT_OF_DISTRIBUTION in outcome.flags)


class ShadowMode:
    """A challenger bundle beside the serving one: commands, the challenger's run, its comparison and promotion.

    Parameters
    ----------
    load_bundle : callable(path) -> Bundle
        Loads, verifies and self-tests a bundle (the reload's loader).
    reference_policy : ReferencePolicy
        For the challenger's engine.
    check_fit : callable(Bundle, InferenceEngine)
        Raises when the connected device does not fit the bundle (:meth:`BundleReloader.check_device_fit`).
    rollback_problem : callable(Bundle) -> str or None
        Why the bundle would be a refused rollback (:meth:`edge.rollback.RollbackGuard.problem`).
    serving : callable() -> InferenceEngine
        The engine in service.
    reload : callable(path, *, request_id, command, reason) -> bool
        The verified reload (:meth:`BundleReloader.reload`): promotion puts the challenger's file in service.
    request_promotion : callable(request_id, authenticated, verdict)
        Queues a ``promote_challenger`` command for a rule that is met (the housekeeping thread runs it).
    outbound : Outbound
        Messages (the challenger's predictions are committed by the inference thread in their own batch).
    publish_status : callable()
        Publishes the retained status (each step of a challenger is in it).
    device_id : str
    counters : Counters
    audit : callable(event, details)
    respond_error : callable(command, request_id, error)
    clock : callable() -> float
    """

    def __init__(self, *, load_bundle: Callable[[Path], "Bundle"], reference_policy: ReferencePolicy,
                 check_fit: Callable[["Bundle", InferenceEngine], None],
                 rollback_problem: Callable[["Bundle"], str | None], serving: Callable[[], InferenceEngine],
                 reload: Callable[..., str | None], request_promotion: Callable[[str | None, bool, str], None],
                 outbound: Outbound, publish_status: Callable[[], None], device_id: str, counters: Counters,
                 audit: Callable[[str, Mapping[str, Any]], None],
                 respond_error: Callable[[str, str | None, str], None], clock: Callable[[], float]) -> None:
        self._load_bundle = load_bundle
        self._reference_policy = reference_policy
        self._check_fit = check_fit
        self._rollback_problem = rollback_problem
        self._serving = serving
        self._reload = reload
        self._request_promotion = request_promotion
        self._outbound = outbound
        self._publish_status = publish_status
        self._device_id = device_id
        self._counters = counters
        self._audit = audit
        self._respond_error = respond_error
        self._clock = clock
        self._lock = threading.Lock()
        #: The challenger commanded now (set by the housekeeping thread; the inference thread reads it).
        self._challenger: _Challenger | None = None
        #: The retained status's ``challenger``: the last step (None until a challenger was commanded).
        self._step: dict[str, Any] | None = None
        self._observed: list[_Observed] = []  # inference thread only
        self._boot_id: int | None = None

    # ---------------------------------------------------------------------------------------- any thread
    @property
    def active(self) -> bool:
        return self._challenger is not None

    def status(self) -> dict[str, Any] | None:
        """The retained status's ``challenger`` (None until a challenger was commanded since the start)."""
        with self._lock:
            return dict(self._step) if self._step is not None else None

    def metrics(self) -> dict[str, Any] | None:
        """The metrics' ``challenger``: the comparison now (None while no challenger runs)."""
        ch = self._challenger
        if ch is None:
            return None
        comp = ch.compute.summary()
        summary = ch.comparison.summary()
        verdict = ch.rule_verdict
        if ch.rule is not None and not ch.promotion_requested:
            verdict = ch.rule.verdict(summary)[1]  # of this very summary (the inference thread checks it per turn)
        verdict = None if verdict is None else _clip(verdict, TEXT_MAX)
        return {"model": ch.model, "serving_model": ch.serving_model, "request_id": ch.request_id,
                "since_unix_s": ch.since_unix_s, **summary,
                "compute_ms": {"p50": comp["p50_us"] / 1000.0, "p99": comp["p99_us"] / 1000.0,
                               "total": round(ch.compute_total_us / 1000.0, 3)},
                "rule": ch.rule.to_dict() if ch.rule is not None else None, "rule_verdict": verdict}

    def _set_step(self, state: str, ch: _Challenger, detail: str | None) -> None:
        with self._lock:
            self._step = {"state": state, "model": ch.model, "path": _clip(str(ch.path), PATH_MAX),
                          "request_id": ch.request_id, "since_unix_s": self._clock(),
                          "rule": ch.rule.to_dict() if ch.rule is not None else None,
                          "detail": None if detail is None else _clip(detail, TEXT_MAX)}
        log.info("challenger %s %s: %s%s", ch.engine.model_id, ch.engine.model_version, state,
                 f" ({detail})" if detail else "")
        self._publish_status()

    # ---------------------------------------------------------------------------------------- housekeeping thread
    def execute(self, name: str, cmd: Any) -> None:
        """Run a shadow-mode command (housekeeping thread)."""
        if name == "load_challenger":
            self._load(name, cmd)
            return
        ch = self._challenger
        if ch is None:
            self._respond_error(name, cmd.request_id, "expected a challenger in shadow mode, got none: send "
                                "load_challenger first")
        elif name == "promote_challenger":
            self._promote(name, cmd, ch, by_rule=getattr(cmd.args, "by_rule", None))
        elif name == "drop_challenger":
            self._drop(name, cmd, ch)
        else:
            self._reference(name, cmd, ch)

    def _respond(self, name: str, request_id: str | None, result: Mapping[str, Any]) -> None:
        self._outbound.emit(MessageKind.COMMAND_RESPONSE, command_response_message(
            device_id=self._device_id, command=name, request_id=request_id, ok=True, result=result), name)

    def _load(self, name: str, cmd: Any) -> None:
        path, rule = Path(cmd.args.path), cmd.args.promote
        serving = self._serving()
        try:
            if self._challenger is not None:
                running = self._challenger
                raise ValueError(f"expected no challenger running, got {running.engine.model_id} "
                                 f"{running.engine.model_version} ({running.path.name}): drop or promote it first")
            digest = _file_sha256(path)
            if digest == serving.bundle.file_sha256:
                raise ValueError(f"expected another bundle than the one in service, got the same bytes "
                                 f"({serving.model_id} {serving.model_version})")
            t0 = time.monotonic()
            bundle = self._load_bundle(path)
            engine = InferenceEngine(bundle, reference_policy=self._reference_policy, clock=self._clock)
            self._check_fit(bundle, engine)
            problem = self._rollback_problem(bundle)
            if problem is not None:
                raise ValueError(f"it could never be promoted: {problem}")
            comparison = ShadowComparison(serving.names, serving.units, engine.names, engine.units)
            if not comparison.targets:
                raise ValueError(f"expected a target both bundles predict in the same unit, got serving "
                                 f"{list(zip(serving.names, serving.units))}, challenger "
                                 f"{list(zip(engine.names, engine.units))}")
            if rule is not None:
                rule.check_targets(comparison.targets)
        except Exception as exc:  # a bundle file is untrusted data: whatever it does, nothing changes
            self._counters.incr("challenger_refused")
            error = f"challenger {path.name} refused, nothing changed (still serving {serving.model_id} " \
                    f"{serving.model_version}): {exc}"
            log.error("%s", error)
            self._audit("challenger_load", {"path": str(path), "request_id": cmd.request_id, "verdict": "refused",
                                            "reason": error})
            self._respond_error(name, cmd.request_id, error)
            return
        ch = _Challenger(engine=engine, path=path, sha256=digest, request_id=cmd.request_id,
                         authenticated=bool(cmd.authenticated), rule=rule, since_unix_s=self._clock(),
                         comparison=comparison, serving_sha256=serving.bundle.file_sha256,
                         serving_model={"id": serving.model_id, "version": serving.model_version})
        self._counters.incr("challenger_loads")
        log.info("challenger %s verified and self-tested in %.2f s", path, time.monotonic() - t0)
        self._audit("challenger_load", {"path": str(path), "sha256": digest, "request_id": cmd.request_id,
                                        "verdict": "accepted", "model": ch.model, "serving_model": ch.serving_model,
                                        "rule": rule.to_dict() if rule is not None else None})
        self._challenger = ch  # the inference thread runs it from its next turn
        self._set_step("shadowing", ch, "promotion by command only" if rule is None else
                       "promoted by itself once its rule is met")
        self._respond(name, cmd.request_id, {"model": ch.model, "serving_model": ch.serving_model,
                                             "path": str(path), "sha256": digest,
                                             "targets": list(comparison.targets),
                                             "rule": rule.to_dict() if rule is not None else None})

    def _promote(self, name: str, cmd: Any, ch: _Challenger, *, by_rule: str | None) -> None:
        trigger = f"rule ({by_rule})" if by_rule else "command"
        summary = ch.comparison.summary()
        self._audit("challenger_promotion", {"request_id": cmd.request_id, "trigger": trigger, "model": ch.model,
                                             "serving_model": ch.serving_model, "comparison": summary})
        self._set_step("promoting", ch, f"by {trigger}")
        if self._reload(ch.path, request_id=cmd.request_id, command=name,
                        reason=f"challenger promoted by {trigger}", persist=True) is None:
            return  # the inference thread swaps it in; its next turn ends the shadow run (_promoted)
        self._counters.incr("challenger_promotions_refused")
        self._set_step("shadowing", ch, "promotion refused by the reload (see the response and last_error); "
                       + ("the rule promotes no more: promote by command" if by_rule else "still shadowing"))

    def _drop(self, name: str, cmd: Any, ch: _Challenger) -> None:
        with self._lock:
            if self._challenger is not ch:
                return
            self._challenger = None
        summary = ch.comparison.summary()
        self._counters.incr("challenger_drops")
        self._audit("challenger_drop", {"request_id": cmd.request_id, "model": ch.model, "comparison": summary})
        self._set_step("dropped", ch, f"dropped by command after {summary['compared']} spectra compared")
        self._respond(name, cmd.request_id, {"model": ch.model, "comparison": summary})

    def _reference(self, name: str, cmd: Any, ch: _Challenger) -> None:
        args = cmd.args
        if args.device_boot_id is not None and args.device_boot_id != self._boot_id:
            self._respond_error(name, cmd.request_id, f"args.device_boot_id: expected the device's boot id now "
                                f"({self._boot_id}), got {args.device_boot_id}")
            return
        try:
            applied = ch.comparison.reference(int(args.seq), args.values)
        except ValueError as exc:
            self._counters.incr("challenger_references_refused")
            self._respond_error(name, cmd.request_id, f"args: {exc}")
            return
        self._counters.incr("challenger_references")
        self._respond(name, cmd.request_id, {"seq": int(args.seq), "applied": applied})

    # ---------------------------------------------------------------------------------------- inference thread
    def observe(self, frame: "Spectrum", outcome: Outcome, received_ns: int, *, refs: ReferenceSet,
                wavelengths_nm: Any, signal: str, instrument: Sequence[str], boot_id: int | None,
                line: LinePosition | None = None) -> None:
        """A spectrum the serving bundle judged (inference thread): the challenger judges it at :meth:`flush`."""
        self._boot_id = boot_id
        if self._challenger is not None:
            self._observed.append(_Observed(frame, outcome, received_ns, refs, wavelengths_nm, signal,
                                            tuple(instrument), boot_id, line))

    def observe_reference(self, seq: int, values: Sequence[float | None]) -> None:
        """Known reference values of spectrum ``seq`` in the serving bundle's target order (the simulator's
        ANNOTATION with ``forward_annotations``; inference thread)."""
        ch = self._challenger
        if ch is None:
            return
        named = {n: float(v) for n, v in zip(ch.comparison.serving_names, values)
                 if v is not None and n in ch.comparison.targets}
        if named:
            ch.comparison.reference(seq, named, pending_ok=True)
            self._counters.incr("challenger_references")

    def flush(self) -> None:
        """Run the challenger on the spectra the serving bundle judged since the last turn and commit its messages
        in one batch; end the run when the challenger is now in service; check the promotion rule (inference
        thread)."""
        observed, self._observed = self._observed, []
        ch = self._challenger
        if ch is None:
            return
        serving = self._serving()
        if serving.bundle.file_sha256 == ch.sha256:
            self._promoted(ch)
            return
        if serving.bundle.file_sha256 != ch.serving_sha256:  # another bundle was reloaded: compare afresh
            ch.comparison = ShadowComparison(serving.names, serving.units, ch.engine.names, ch.engine.units)
            ch.serving_sha256 = serving.bundle.file_sha256
            ch.serving_model = {"id": serving.model_id, "version": serving.model_version}
            self._counters.incr("challenger_comparison_resets")  # the spectra observed since were judged by it
        if not observed:
            return
        self._outbound.begin_batch()
        try:
            start = 0
            for i in range(1, len(observed) + 1):
                if i == len(observed) or observed[i].context() != observed[start].context():
                    self._run(ch, serving, observed[start:i])
                    start = i
        finally:
            self._outbound.flush_batch()
        if ch.rule is not None and not ch.promotion_requested:
            due, ch.rule_verdict = ch.rule.verdict(ch.comparison.summary())
            if due:
                ch.promotion_requested = True
                log.info("challenger %s %s: promotion rule %s", ch.engine.model_id, ch.engine.model_version,
                         ch.rule_verdict)
                self._request_promotion(ch.request_id, ch.authenticated, ch.rule_verdict)

    def _run(self, ch: _Challenger, serving: InferenceEngine, run: Sequence[_Observed]) -> None:
        first = run[0]
        t0 = time.perf_counter_ns()
        try:
            if len(run) == 1:
                outcomes = [ch.engine.process(first.frame, first.refs, wavelengths_nm=first.wavelengths_nm,
                                              instrument_alerts=first.instrument, frame_signal=first.signal)]
            else:
                outcomes = ch.engine.process_many([o.frame for o in run], first.refs,
                                                  wavelengths_nm=first.wavelengths_nm,
                                                  instrument_alerts=first.instrument, frame_signal=first.signal)
        except Exception as exc:  # the challenger must never stop the serving bundle's thread
            self._counters.incr("challenger_errors", len(run))
            if self._counters.get("challenger_errors") <= 3 or log.isEnabledFor(logging.DEBUG):
                log.warning("challenger failed on %d spectra: %s: %s", len(run), type(exc).__name__, exc)
            return
        spent_us = (time.perf_counter_ns() - t0) / 1000.0
        ch.compute_total_us += spent_us
        self._counters.incr("challenger_compute_us", int(spent_us))
        for obs, outcome in zip(run, outcomes):
            ch.comparison.observe(judged(obs.serving), judged(outcome))
            if isinstance(outcome, Rejection):
                self._counters.incr(f"challenger_rejected_{outcome.reason.value}")
                continue
            assert isinstance(outcome, Prediction)
            ch.compute.add(outcome.compute_us)
            msg = challenger_prediction_message_of(
                outcome, device_id=self._device_id, latency_ms=(time.monotonic_ns() - obs.received_ns) / 1e6,
                serving_model_id=serving.model_id, serving_model_version=serving.model_version,
                device_boot_id=obs.boot_id, validate_now=False, line=obs.line)
            self._outbound.emit(MessageKind.CHALLENGER_PREDICTION, msg)
            self._counters.incr("challenger_predictions")

    def _promoted(self, ch: _Challenger) -> None:
        """The challenger's file is in service now: the shadow run ends (inference thread)."""
        with self._lock:
            if self._challenger is not ch:
                return
            self._challenger = None
        summary = ch.comparison.summary()
        self._counters.incr("challenger_promoted")
        self._audit("challenger_promoted", {"request_id": ch.request_id, "model": ch.model,
                                            "previous_model": ch.serving_model, "comparison": summary})
        self._set_step("promoted", ch, f"in service after {summary['compared']} spectra compared; the shadow run "
                       f"ended (bundle.path still names the old file: change it to keep the promotion after a "
                       f"restart)")
