"""The outbox's filesystem really full while the broker is down (a tmpfs filled to ENOSPC by another writer)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.attack.rig import RATE_HZ, REDELIVER_LIMIT_S, STEP_S, Result, Rig, wait_for
from benchmarks.harness import Subscriber, end_process, start_broker

__all__ = ["disk_full", "fill", "tmpfs"]


@contextlib.contextmanager
def tmpfs(where: Path, size_bytes: int) -> Iterator[str | None]:
    """Mount a tmpfs at ``where``; yields None when mounted, else the reason it could not be."""
    where.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        yield "mounting a tmpfs needs root and mount(8)"
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(where)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        yield f"cannot mount a tmpfs: {done.stderr.strip()}"
        return
    try:
        yield None
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


def fill(path: Path) -> None:
    """Another writer: append to ``path`` until its filesystem is full (ENOSPC), in halving chunks down to 512 B."""
    chunk = 1 << 20
    with open(path, "ab", buffering=0) as fh:
        while chunk >= 512:
            try:
                if fh.write(b"\0" * chunk) == 0:
                    chunk //= 2
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                chunk //= 2


def disk_full(rig: Rig, size_mb: int) -> Result:
    """The outbox's filesystem (a tmpfs of ``size_mb``) really full while the broker is down, policy drop_oldest.

    The broker is down from the start, so every prediction waits in the outbox, whose bounds (the defaults, far
    above the tmpfs) leave the disk as the bound.  After 5 s another writer fills the filesystem to ENOSPC, and the
    daemon runs 8 s more on the full disk.  Then the broker comes back and the device stops; the attack holds if
    the daemon stayed up, delivered again, kept the newest predictions (what it lost is the oldest: the delivered
    ones have no gap up to the last) and counted every prediction lost (outbox evictions and refusals, messages
    neither stored nor sent).
    """
    fs = rig.workdir / "outbox-fs"
    with tmpfs(fs, size_mb << 20) as why:
        if why is not None:
            return Result("disk_full", None, detail={"skipped": why})
        port = rig.broker.port
        end_process(next(p for n, p in rig.procs.items if n == "mosquitto"))  # the broker is down: nothing drains
        sim_url = rig.start_sim(rate_hz=2 * RATE_HZ)
        # A fixed reconnect delay of 5 s: the fresh subscriber below is subscribed before the daemon reconnects.
        rig.start_daemon(sim_url, outbox={"path": str(fs / "outbox.sqlite"), "full_policy": "drop_oldest"},
                         mqtt={"reconnect_min_delay_s": 5, "reconnect_max_delay_s": 5})
        time.sleep(5.0)
        fill(fs / "ballast")
        free_after_fill = shutil.disk_usage(fs).free
        free_min = free_after_fill
        deadline = time.monotonic() + 8.0  # predictions keep coming on the full disk
        while time.monotonic() < deadline:
            free_min = min(free_min, shutil.disk_usage(fs).free)
            time.sleep(0.05)
        rig.broker = start_broker(rig.procs, rig.workdir, "mosquitto", port=port)
        rig.sub.close()  # its reconnect delay has grown during the outage: a fresh one, subscribed at once
        rig.sub = Subscriber(rig.broker, client_id=f"attack-{rig.workdir.name}-2")
        came = wait_for(lambda: rig.sub.inbox.count() >= 20, REDELIVER_LIMIT_S)
        end_process(next(p for n, p in rig.procs.items if n == "spectro-sim"))  # no new predictions: settle

        def produced() -> int:
            return int(rig.counters().get("predictions", 0))

        def settled() -> bool:
            n, c = rig.sub.inbox.count(), produced()
            time.sleep(2.5)  # metrics come every second
            return c > 0 and produced() == c and rig.sub.inbox.count() == n
        wait_for(settled, STEP_S)
        alive = rig.daemon is not None and rig.daemon.poll() is None
        made, got = produced(), rig.sub.inbox.count()
        counted = rig.outbox_losses()
        c = rig.counters()
        other = sum(v for k, v in c.items() if k.startswith(("frames_rejected", "frames_dropped", "messages_")))
        other += c.get("dark_frames", 0) + c.get("white_frames", 0)
        newest_kept = rig.gaps() <= other  # the delivered predictions run without a gap up to the last
        g = rig.gauges()
        lost = max(0, made - got)
        unexplained = max(0, lost - counted)
        held = bool(came and alive and rig.restarts == 0 and newest_kept and unexplained == 0)
        return Result("disk_full", held, unexplained, {
            "tmpfs_mb": size_mb, "disk_free_after_fill_b": free_after_fill, "disk_free_min_b": free_min,
            "full_policy": "drop_oldest", "daemon_alive": alive, "daemon_restarts": rig.restarts,
            "delivered_after_broker_back": came, "predictions_made": made, "predictions_delivered": got,
            "newest_kept": newest_kept, "seq_gaps": rig.gaps(), "losses_counted": counted,
            "outbox_evicted": int(g.get("outbox_evicted", 0)),
            "outbox_store_errors": int(g.get("outbox_store_errors", 0)),
            "lost_outbox_unavailable": int(g.get("mqtt_lost_outbox_unavailable", 0)),
            "outbox_full_alert_seen": any("outbox_full" in s.get("alerts", []) for s in rig.sub.inbox.status)})
