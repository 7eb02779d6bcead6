"""A small historian: predictions from the broker into SQLite, each exactly once, nothing lost across a restart.

    python examples/consumers/sql_sink.py --host broker.plant.local --db /var/lib/historian/predictions.sqlite

What makes it lose nothing and store nothing twice (docs/mqtt.md, "A historian in SQL"):

- an MQTT 5 **persistent session** (``clean_start`` false, a session expiry, a fixed ``--client-id``): while the sink
  is down the broker queues its predictions (up to the broker's queue limits);
- a **shared subscription** ``$share/<group>/<filter>`` at QoS 1: several sinks with one ``--group`` share the load,
  and a second sink started for redundancy does not double the rows;
- a message is **acknowledged only after its row is committed** (paho's ``manual_ack``): a sink killed between the
  two gets the message again;
- rows are keyed on ``(device_id, device_boot_id, seq)`` (``INSERT OR IGNORE``): a redelivery, or the device
  re-sending after its own outage, is counted as a duplicate and stored once.  A device that sends no boot id is
  keyed with boot id 0.

Every payload is validated with :func:`edge.publish.schema.decode` (the schema of
``schemas/v1/prediction.schema.json``); one that does not validate is counted, logged and acknowledged (it would
fail again).  Two tables: ``predictions`` (one row per spectrum, with the whole payload as JSON) and
``prediction_values`` (one row per target, the long form a trend chart or a SQL join wants).  Prints
``{"subscribed": ...}`` once subscribed; stops on SIGTERM or SIGINT and prints its counts as JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.errors import EdgeError
from edge.publish.schema import decode

log = logging.getLogger("sql_sink")

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    device_id TEXT NOT NULL,
    device_boot_id INTEGER NOT NULL,        -- 0 when the device sent none (null in the payload)
    seq INTEGER NOT NULL,
    site TEXT NOT NULL,
    line TEXT NOT NULL,
    time_unix_s REAL NOT NULL,              -- the device's clock when the message was built
    received_unix_s REAL NOT NULL,          -- this sink's clock when the row was written
    model_id TEXT NOT NULL,
    model_version TEXT NOT NULL,
    quality TEXT NOT NULL,
    payload TEXT NOT NULL,                  -- the whole message, JSON
    PRIMARY KEY (device_id, device_boot_id, seq)
);
CREATE TABLE IF NOT EXISTS prediction_values (
    device_id TEXT NOT NULL,
    device_boot_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    unit TEXT NOT NULL,
    value REAL NOT NULL,
    lower REAL,
    upper REAL,
    time_unix_s REAL NOT NULL,
    PRIMARY KEY (device_id, device_boot_id, seq, name)
);
CREATE INDEX IF NOT EXISTS prediction_values_time ON prediction_values (device_id, name, time_unix_s);
"""


class SqlSink:
    """Writes validated prediction payloads into SQLite, once per ``(device_id, device_boot_id, seq)``."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self.counts = {"stored": 0, "duplicates": 0, "invalid": 0}

    def store(self, topic: str, payload: bytes) -> bool:
        """Validate and store one message; return whether it was new.  Invalid payloads are counted and logged."""
        try:
            msg = decode(payload, "prediction")
        except EdgeError as exc:
            self.counts["invalid"] += 1
            log.warning("invalid prediction on %s: %s", topic, exc)
            return False
        levels = topic.split("/")
        site, line = (levels[-4], levels[-3]) if len(levels) >= 5 else ("", "")
        boot = msg.get("device_boot_id") or 0
        key = (msg["device_id"], boot, msg["seq"])
        with self.db:  # one transaction: the prediction and its values, or nothing
            self.db.execute("BEGIN")
            cur = self.db.execute(
                "INSERT OR IGNORE INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*key, site, line, msg["time_unix_s"], time.time(), msg["model"]["id"], msg["model"]["version"],
                 msg["quality"], payload.decode("utf-8")))
            if cur.rowcount == 0:
                self.counts["duplicates"] += 1
                return False
            self.db.executemany(
                "INSERT OR IGNORE INTO prediction_values VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(*key, v["name"], v["unit"], v["value"], v["lower"], v["upper"], msg["time_unix_s"])
                 for v in msg["values"]])
        self.counts["stored"] += 1
        return True

    def close(self) -> None:
        self.db.close()


def build_client(args: argparse.Namespace, sink: SqlSink) -> mqtt.Client:
    """An MQTT 5 client with a persistent session, a shared QoS 1 subscription and acknowledgements after commit."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=args.client_id, protocol=mqtt.MQTTv5,
                         manual_ack=True)
    if args.username:
        password = Path(args.password_file).read_text().splitlines()[0] if args.password_file else None
        client.username_pw_set(args.username, password)
    if args.tls_ca:
        client.tls_set(ca_certs=args.tls_ca)
    subscription = f"$share/{args.group}/{args.topic}" if args.group else args.topic

    def on_connect(c: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            return
        log.info("connected (session present: %s); subscribing to %s", flags.session_present, subscription)
        c.subscribe(subscription, qos=1)

    def on_message(c: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            sink.store(message.topic, bytes(message.payload))
        except sqlite3.Error:
            log.exception("cannot write the row; not acknowledged (the broker re-sends it at the next session)")
            return
        c.ack(message.mid, message.qos)

    def on_subscribe(c: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        if any(r.is_failure for r in reasons):
            log.error("subscription to %s refused: %s", subscription, reasons)
            return
        print(json.dumps({"subscribed": subscription}), flush=True)  # for scripts and tests waiting on it

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.reconnect_delay_set(1, 30)
    return client


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--db", required=True, help="SQLite file (created if missing)")
    p.add_argument("--topic", default="spectrolite/+/+/+/prediction", help="topic filter of the predictions")
    p.add_argument("--group", default="historian", help="shared-subscription group ('' for a plain subscription)")
    p.add_argument("--client-id", default="spectrolite-sql-sink", help="stable: it names the persistent session")
    p.add_argument("--session-expiry-s", type=int, default=7 * 86400, help="how long the broker keeps the session")
    p.add_argument("--username")
    p.add_argument("--password-file")
    p.add_argument("--tls-ca", help="CA file: connect with TLS")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sink = SqlSink(Path(args.db))
    client = build_client(args, sink)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = args.session_expiry_s
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    client.connect_async(args.host, args.port, keepalive=30, clean_start=False, properties=props)
    client.loop_start()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        client.disconnect()
        client.loop_stop()
        sink.close()
    print(json.dumps(sink.counts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
