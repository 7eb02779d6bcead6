"""The one subscriber of the demo, the benchmarks and the end-to-end tests (benchmarks.harness.Subscriber), against a
real mosquitto: what it keeps, what it counts, what it leaves out, and its persistent session across a restart."""

from __future__ import annotations

import json

import paho.mqtt.publish as publish

from benchmarks.harness import Subscriber
from tests.support.broker import MosquittoBroker
from tests.support.daemon import wait_for

BASE = "spectrolite/plant-a/line-1/sim-01"


def _send(broker: MosquittoBroker, suffix: str, payload: bytes | dict, *, retain: bool = False) -> None:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    publish.single(f"{BASE}/{suffix}", body, qos=1, retain=retain, hostname=broker.host, port=broker.port)


def test_predictions_once_per_seq_the_rest_by_topic_commands_left_out_and_non_json_counted(
    mosquitto_broker: MosquittoBroker,
) -> None:
    seen: list[int] = []
    sub = Subscriber(mosquitto_broker, base=BASE, client_id="sub-test", on_prediction=lambda b: seen.append(b["seq"]))
    try:
        _send(mosquitto_broker, "prediction", {"seq": 1})
        _send(mosquitto_broker, "prediction", {"seq": 1})  # a QoS 1 redelivery, as the daemon may send after a drop
        _send(mosquitto_broker, "prediction", {"seq": 4})
        _send(mosquitto_broker, "cmd/reload_bundle", b"\xff not json and not kept")
        _send(mosquitto_broker, "cmd/reload_bundle/response", {"request_id": "r-1", "ok": True})
        _send(mosquitto_broker, "status", b"{truncated")
        _send(mosquitto_broker, "metrics", {"n": 1})
        _send(mosquitto_broker, "drift", {"detector": "ood_q"})
        _send(mosquitto_broker, "metrics", {"n": 2})
        wait_for(lambda: len(sub.kind("/metrics")) == 2, "the second metrics message")

        assert sorted(sub.predictions) == [1, 4] and sub.count() == 2 and sub.max_seq() == 4
        assert sub.received == 3 and sub.duplicates == 1 and seen == [1, 4]
        assert sub.response("reload_bundle", "r-1") == {"request_id": "r-1", "ok": True}
        assert [t for t, _ in sub.inbox.other] == [f"{BASE}/{k}" for k in
                                                   ("cmd/reload_bundle/response", "metrics", "drift", "metrics")]
        assert sub.inbox.undecodable == 1  # the status; the command was left out before decoding
        with sub.lock:
            assert sub.inbox.metrics == {"n": 2} and sub.inbox.drift == [{"detector": "ood_q"}]
            assert sub.inbox.responses == [{"request_id": "r-1", "ok": True}] and sub.inbox.status == []
        sub.reset()
        assert sub.count() == 0 and sub.kind("/metrics") == [] and sub.inbox.metrics is None
    finally:
        sub.close()


def test_without_bodies_predictions_leave_only_their_seq_and_each_other_topic_its_last_message(
    mosquitto_broker: MosquittoBroker,
) -> None:
    """The soak's subscriber: memory bounded over a million predictions, the last metrics message still there."""
    sub = Subscriber(mosquitto_broker, base=BASE, client_id="seq-sub", keep_bodies=False)
    try:
        assert sub.last_prediction_s() is None
        for seq in (3, 3, 7):
            _send(mosquitto_broker, "prediction", {"seq": seq, "values": [{"value": 1.0}]})
        for n in (1, 2, 3):
            _send(mosquitto_broker, "metrics", {"n": n})
        _send(mosquitto_broker, "drift", {"detector": "ood_q"})
        wait_for(lambda: sub.kind("/drift") != [], "the drift alert")

        assert sub.count() == 2 and sub.max_seq() == 7 and sub.received == 3 and sub.duplicates == 1
        assert sub.predictions == {} and sub.inbox.receipt_us == {} and sub.inbox.seqs == {3, 7}
        assert sub.last_prediction_s() is not None
        with sub.lock:
            assert sub.inbox.other == [(f"{BASE}/metrics", {"n": 3}), (f"{BASE}/drift", {"detector": "ood_q"})]
            assert sub.inbox.metrics == {"n": 3}
        sub.reset()
        assert sub.count() == 0 and not sub.inbox.keep_bodies
    finally:
        sub.close()


def test_a_persistent_session_gets_what_was_published_while_it_was_away_across_a_broker_restart(
    mosquitto_broker: MosquittoBroker,
) -> None:
    sub = Subscriber(mosquitto_broker, base=BASE, client_id="persistent-sub", clean_session=False)
    try:
        _send(mosquitto_broker, "prediction", {"seq": 0})
        wait_for(lambda: sub.count() == 1, "the first prediction")
        sub.client.disconnect()  # away: the broker keeps its session and queues what comes for it
        sub.client.loop_stop()
        _send(mosquitto_broker, "prediction", {"seq": 1})
        mosquitto_broker.restart()  # persistence on: the queued message survives
        sub.client.reconnect()
        sub.client.loop_start()
        wait_for(lambda: sub.count() == 2, "the prediction queued in the session")
        assert sorted(sub.predictions) == [0, 1]
    finally:
        sub.close()
