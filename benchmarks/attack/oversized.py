"""The oversized command message (finding 1): a message larger than the daemon may buffer, under a memory limit."""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.attack.rig import REDELIVER_LIMIT_S, Result, Rig, wait_for

__all__ = ["MEMORY_HEADROOM_BYTES", "limit_memory", "oversized"]

#: The daemon's address space is capped at what it maps plus this much before the oversized message (RLIMIT_AS,
#: as systemd's MemoryMax would cap it), so a message larger than this cannot simply be buffered, bytes.
MEMORY_HEADROOM_BYTES = 32 << 20


def limit_memory(pid: int) -> int | None:
    """Cap ``pid``'s address space at what it maps now plus MEMORY_HEADROOM_BYTES; returns the cap, or None where
    it cannot be set (no ``/proc`` or ``prlimit``)."""
    import resource

    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
        vm_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmSize:")))
        _soft, hard = resource.prlimit(pid, resource.RLIMIT_AS)
        cap = vm_kb * 1024 + MEMORY_HEADROOM_BYTES
        resource.prlimit(pid, resource.RLIMIT_AS, (cap, hard))
    except (OSError, AttributeError, StopIteration, ValueError):
        return None
    return cap


def oversized(rig: Rig, size_mb: int, protocol: str) -> Result:
    """A ``size_mb`` message on ``.../cmd/reload_bundle`` while the daemon (MQTT ``protocol``, no broker packet
    bound) runs under a memory limit.  MQTT 5: the daemon's Maximum Packet Size makes the broker drop it, so the
    daemon must keep delivering without a restart.  MQTT 3.1.1 (the default protocol) has no such bound: the
    message may kill paho's network thread, and the watchdog must then end the daemon (exit code 2) so that it is
    restarted; either way predictions must flow again within REDELIVER_LIMIT_S."""
    name = "oversized" if protocol == "5" else "oversized_mqtt311"
    rig.start_daemon(rig.start_sim(), mqtt={"protocol": protocol})
    if not rig.flowing() or rig.daemon is None:
        return Result(name, False, detail={"error": "no predictions before the attack"})
    cap = limit_memory(rig.daemon.pid)
    t0 = time.monotonic()
    rig.publish("reload_bundle", b"x" * (size_mb << 20), qos=1)
    sent_s = time.monotonic() - t0
    before = set(rig.predictions())
    t1 = time.monotonic()
    came = wait_for(lambda: bool(set(rig.predictions()) - before), REDELIVER_LIMIT_S)
    redeliver_s = time.monotonic() - t1 if came else None
    rig.flowing(10)
    lost = 0 if rig.restarts else rig.unexplained()
    # MQTT 5: the bound holds, no restart.  3.1.1: a restart is allowed, only after the watchdog's exit code 2.
    held = bool(came) and (rig.restarts == 0 if protocol == "5" else all(c == 2 for c in rig.exit_codes))
    return Result(name, held, lost, {
        "size_mb": size_mb, "mqtt_protocol": protocol, "publish_s": round(sent_s, 2),
        "memory_limit_mb": None if cap is None else round(cap / (1 << 20)),
        "redeliver_after_oversized_s": None if redeliver_s is None else round(redeliver_s, 2),
        "daemon_restarts": rig.restarts, "daemon_exit_codes": list(rig.exit_codes), "seq_gaps": rig.gaps(),
        "note": "seq gaps while a crashed daemon restarts are allowed (the device's frames have no reader)"})

