"""The historian recipe (examples/consumers/sql_sink.py): every prediction of a real daemon lands in SQLite once,
including those published while the sink was killed (-9) and restarted.

Real parts: ``spectro-sim`` on a real pty -> ``spectro-edge run`` -> a real mosquitto -> the sink as a process
(MQTT 5 persistent session, shared subscription, acknowledgement after commit) -> SQLite.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.harness.processes import child_env
from tests.support.broker import MosquittoBroker
from tests.support.daemon import DemoBundles, wait_for
from tests.support.processes import Proc, Subscriber, start_daemon, start_sim, write_config

REPO = Path(__file__).resolve().parents[2]
SINK = REPO / "examples" / "consumers" / "sql_sink.py"
SPECTRA = 150


def _start_sink(tmp: Path, port: int, db: Path, n: int) -> Proc:
    log = tmp / f"sink-{n}.log"
    popen = subprocess.Popen([sys.executable, str(SINK), "--port", str(port), "--db", str(db), "-v",
                              "--client-id", "test-historian", "--group", "historian"],
                             cwd=REPO, env=child_env(), stdout=subprocess.PIPE, stderr=open(log, "wb"))
    assert popen.stdout is not None
    line = popen.stdout.readline().decode()
    assert json.loads(line or "{}").get("subscribed") == "$share/historian/spectrolite/+/+/+/prediction", \
        log.read_text(errors="replace")
    return Proc(popen, log)


def _rows(db: Path) -> list[tuple[str, int, int]]:
    if not db.exists():
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        try:
            return conn.execute("SELECT device_id, device_boot_id, seq FROM predictions").fetchall()
        except sqlite3.OperationalError:  # not created yet
            return []


@pytest.mark.slow
def test_every_prediction_lands_once_across_a_killed_sink(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, subscriber: Subscriber,
    procs: list[Proc],
) -> None:
    db = tmp_path / "historian.sqlite"
    sink = _start_sink(tmp_path, mosquitto_broker.port, db, 0)
    procs.append(sink)
    sim, path = start_sim(tmp_path, count=SPECTRA, rate_hz=30.0)
    procs.append(sim)
    daemon = start_daemon(tmp_path, write_config(tmp_path, port_url=path, bundle=demo_bundles.v1,
                                                 mqtt_port=mosquitto_broker.port))
    procs.append(daemon)

    wait_for(lambda: len(_rows(db)) >= 30 or not daemon.alive(), "the first rows")
    assert daemon.alive(), daemon.text()
    assert sink.end(signal.SIGKILL) == -signal.SIGKILL
    at_kill = subscriber.count()
    wait_for(lambda: subscriber.count() >= at_kill + 30, "predictions published while the sink is down")
    sink = _start_sink(tmp_path, mosquitto_broker.port, db, 1)  # same client id: the session kept them
    procs.append(sink)

    # every spectrum sent was predicted and delivered to the test's own subscriber ...
    wait_for(lambda: subscriber.count() >= SPECTRA or not daemon.alive(), f"{SPECTRA} predictions")
    expected = {("sim-01", p["device_boot_id"] or 0, seq) for seq, p in subscriber.predictions.items()}
    # ... and is in the historian exactly once
    wait_for(lambda: set(_rows(db)) >= expected, "every prediction in the historian")
    rows = _rows(db)
    assert len(rows) == len(set(rows)) == len(expected) and set(rows) == expected
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        values = conn.execute("SELECT seq, name, unit, value, lower, upper FROM prediction_values").fetchall()
    got = {(seq, name): (unit, value, lower, upper) for seq, name, unit, value, lower, upper in values}
    want = {(seq, v["name"]): (v["unit"], v["value"], v["lower"], v["upper"])
            for seq, p in subscriber.predictions.items() for v in p["values"]}
    assert got == want

    sink.popen.send_signal(signal.SIGTERM)
    out, _ = sink.popen.communicate(timeout=30)
    counts = json.loads(out.decode().strip().splitlines()[-1])
    assert counts["invalid"] == 0 and counts["stored"] >= 30  # at least what was queued while it was down
