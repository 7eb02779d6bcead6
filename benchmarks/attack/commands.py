"""Attacks on the command path: unauthenticated commands, reload floods (signed and unsigned), a command flood,
and stale or retained signed commands."""

from __future__ import annotations

import time

from benchmarks.attack.rig import STEP_S, Result, Rig, wait_for

__all__ = ["SLOW_FILE_BYTES", "STALE_AGE_S", "command_flood", "command_flood_unsigned", "reload_flood",
           "stale_retained", "unauthenticated"]

#: Size of the sparse file the first command of the unsigned flood asks to reload: hashing it keeps the daemon's
#: command thread busy while the rest of the flood arrives, so the queue is full when the signed command comes
#: (deterministically, not by a race with that thread; as tests/edge/test_command_flood.py does).
SLOW_FILE_BYTES = 1 << 30

STALE_AGE_S = 120.0



def unauthenticated(rig: Rig) -> Result:
    rig.start_daemon(rig.start_sim())
    rig.flowing()
    sent = {"set_integration_time": {"integration_time_us": 1000}, "reload_bundle": {"path": str(rig.bundle)},
            "capture_dark": {"average_frames": 1}}
    for name, args in sent.items():
        rig.publish(name, rig.command(name, args, f"unauth-{name}"))
    wait_for(lambda: all(rig.response(f"unauth-{n}") is not None for n in sent), 20.0)
    answers = {n: rig.response(f"unauth-{n}") for n in sent}
    executed = sorted(n for n, r in answers.items() if r is not None and r.get("ok"))
    return Result("unauthenticated", not executed, rig.unexplained(), {
        "executed": executed,
        "answers": {n: (None if r is None else {"ok": r.get("ok"), "error": r.get("error")}) for n, r in
                    answers.items()},
        "commands_refused": rig.counters().get("commands_refused", 0)})



def reload_flood(rig: Rig, reloads: int) -> Result:
    rig.start_daemon(rig.start_sim(("--drift-at", "60")))  # bundle.min_reload_interval_s: the default

    def raised() -> set[str]:
        return {a for a in rig.status().get("alerts", []) if a.startswith("drift:")}

    if not wait_for(lambda: bool(raised()), 120.0):
        return Result("reload_flood", None, detail={"skipped": "no drift alert was raised to silence"})
    before = raised()
    answers = []
    for i in range(reloads):
        rid = f"flood-{i}"
        rig.publish("reload_bundle", rig.command("reload_bundle", {"path": str(rig.bundle)}, rid, signed=True))
        wait_for(lambda r=rid: rig.response(r) is not None, 5.0)  # type: ignore[misc]  # a default argument binds rid per loop
        answers.append(rig.response(rid))
        time.sleep(3.0)
    with rig.sub.inbox.lock:
        cleared = {f"drift:{e['detector']}" for e in rig.sub.inbox.drift if e.get("event") == "cleared"}
    still = raised()
    silenced = sorted(before - still - cleared)
    return Result("reload_flood", not silenced, rig.unexplained(), {
        "reloads": reloads, "alerts_before": sorted(before), "alerts_after": sorted(still),
        "cleared_with_event": sorted(before & cleared), "silenced": silenced,
        "reloads_executed": sum(1 for a in answers if a is not None and a.get("ok"))})


def command_flood(rig: Rig, flood: int) -> Result:
    """A flood of unsigned reloads, then a signed command, with the default command settings (unsigned commands
    are refused by authentication before they queue)."""
    rig.start_daemon(rig.start_sim())
    rig.flowing()
    with rig.attacker() as c:
        infos = [c.publish(f"{rig.base}/cmd/reload_bundle",
                           rig.command("reload_bundle", {"path": str(rig.bundle)}, f"f{i}"), qos=1)
                 for i in range(flood)]
        for info in infos:
            info.wait_for_publish(timeout=60)
    rig.publish("set_integration_time", rig.command("set_integration_time", {"integration_time_us": 5000},
                                                    "authenticated", signed=True))
    wait_for(lambda: rig.response("authenticated") is not None, 30.0)
    answer = rig.response("authenticated")
    ran = bool(answer and answer.get("ok"))
    wait_for(lambda: bool(rig.counters()), 5.0)
    counters = rig.counters()
    return Result("command_flood", ran, rig.unexplained(), {
        "flood": flood, "authenticated_answer": answer and {"ok": answer.get("ok"), "error": answer.get("error")},
        "commands_refused": counters.get("commands_refused", 0),
        "commands_dropped": counters.get("commands_dropped", 0)})



def command_flood_unsigned(rig: Rig, flood: int) -> Result:
    """The flood the command lanes protect against: ``commands.require_auth = false`` stated explicitly, so the
    unsigned reloads queue.  The first asks for a large sparse file (slow to hash), the rest arrive while it is
    read, then a signed reload.  Holds if the signed command ran before every queued unsigned one and each
    command of the flood was answered or counted (ran, dropped, or its refusal response suppressed)."""
    with open(rig.workdir / "slow.bin", "wb") as fh:  # sparse: costs no disk, but hashing reads every byte
        fh.truncate(SLOW_FILE_BYTES)
    rig.start_daemon(rig.start_sim(), commands={"enabled": True, "hmac_key_path": str(rig.key), "require_auth": False})
    rig.flowing()
    topic = f"{rig.base}/cmd/reload_bundle"
    with rig.attacker() as c:
        c.publish(topic, rig.command("reload_bundle", {"path": "slow.bin"}, "u-0"), qos=1).wait_for_publish(60)
        if not wait_for(lambda: "command reload_bundle (request u-0)" in rig.daemon_log(), STEP_S):
            return Result("command_flood_unsigned", False, detail={"error": "the slow reload never started"})
        infos = [c.publish(topic, rig.command("reload_bundle", {"path": str(rig.bundle)}, f"u-{i}"), qos=1)
                 for i in range(1, flood)]
        infos.append(c.publish(topic, rig.command("reload_bundle", {"path": str(rig.bundle)}, "signed", signed=True),
                               qos=1))
        for info in infos:
            info.wait_for_publish(timeout=60)
    wait_for(lambda: rig.response("signed") is not None, STEP_S)
    answer = rig.response("signed")

    def answered() -> int:
        with rig.sub.inbox.lock:
            return len({r.get("request_id") for r in rig.sub.inbox.responses
                        if str(r.get("request_id", "")).startswith("u-")})

    def accounted() -> int:
        return answered() + rig.counters().get("command_responses_suppressed", 0)

    def settled() -> bool:
        k = rig.counters()
        return k.get("commands_reload_bundle", 0) + k.get("commands_dropped", 0) >= flood + 1

    wait_for(lambda: accounted() >= flood and settled(), 2 * STEP_S)
    with rig.sub.inbox.lock:
        order = [r.get("request_id") for r in rig.sub.inbox.responses if r.get("ok")]
    counters = rig.counters()
    first = next((rid for rid in order if rid != "u-0"), None)  # u-0 may finish (refused or run) first
    ran = bool(answer and answer.get("ok"))
    held = ran and first == "signed" and accounted() == flood and settled()
    return Result("command_flood_unsigned", held, rig.unexplained(), {
        "flood": flood, "require_auth": False,
        "signed_answer": answer and {"ok": answer.get("ok"), "error": answer.get("error")},
        "signed_ran_first": first == "signed", "flood_accounted": accounted(),
        "commands_run": counters.get("commands_reload_bundle", 0),
        "commands_dropped": counters.get("commands_dropped", 0),
        "command_responses_suppressed": counters.get("command_responses_suppressed", 0)})


def stale_retained(rig: Rig) -> Result:
    """A signed command left retained on the broker (delivered at every subscribe), then a signed command issued
    2 minutes ago (one that waited in a persistent session), then a fresh signed one as the control.  Holds if
    neither of the first two ran, each was refused and counted, and the fresh one ran."""
    args = {"integration_time_us": 5000}
    rig.publish("set_integration_time", rig.command("set_integration_time", args, "retained", signed=True),
                retain=True)
    rig.start_daemon(rig.start_sim())
    rig.flowing()
    rig.publish("set_integration_time", rig.command("set_integration_time", args, "stale", signed=True,
                                                    issued_at_unix_s=time.time() - STALE_AGE_S))
    rig.publish("set_integration_time", rig.command("set_integration_time", args, "fresh", signed=True))
    wait_for(lambda: all(rig.response(r) is not None for r in ("retained", "stale", "fresh")), STEP_S)
    answers = {r: rig.response(r) for r in ("retained", "stale", "fresh")}
    wait_for(lambda: rig.counters().get("commands_refused_stale", 0) >= 1, 5.0)
    counters = rig.counters()
    ok = {r: bool(a and a.get("ok")) for r, a in answers.items()}
    held = not ok["retained"] and not ok["stale"] and ok["fresh"] \
        and counters.get("commands_refused_retained", 0) >= 1 and counters.get("commands_refused_stale", 0) >= 1
    return Result("stale_retained", held, rig.unexplained(), {
        "answers": {r: (None if a is None else {"ok": a.get("ok"), "error": a.get("error")})
                    for r, a in answers.items()},
        "retained_ran": ok["retained"], "stale_ran": ok["stale"], "fresh_ran": ok["fresh"],
        "commands_refused_retained": counters.get("commands_refused_retained", 0),
        "commands_refused_stale": counters.get("commands_refused_stale", 0)})
