"""A daemon given several brokers (``mqtt.brokers``) survives the loss of the one it is connected to: with a real
clustered broker (three RabbitMQ nodes, its MQTT plugin) and with two independent mosquitto processes (#15).

Real processes throughout: ``spectro-sim`` on a pty -> ``spectro-edge run`` (the systemd unit's command line) with both
broker addresses -> the broker -> paho subscribers with persistent QoS 1 sessions.  Mid-stream the broker the
daemon is connected to is SIGKILLed (a crashed or powered-off node: no goodbye to clients or peers); the daemon
fails over to the other address after its jittered reconnect delay and replays from its outbox what the dead
broker had not acknowledged.  Every ``seq`` must arrive; QoS 1 is at least once, so a message the dead node had
taken but not acknowledged may arrive twice (deduplicated by ``seq``, as docs/mqtt.md tells consumers to do).

The clustered case needs ``rabbitmq-server`` (Debian; ``make broker`` installs it) and is skipped without it; the
mosquitto case needs only mosquitto.  RabbitMQ 3.10 speaks MQTT 3.1.1, the daemon's default protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.broker import MosquittoBroker
from tests.support.daemon import DemoBundles, wait_for
from tests.support.processes import (
    LocalBroker,
    Proc,
    Subscriber,
    device_subscriber,
    start_daemon,
    start_sim,
    write_config,
)
from tests.support.rabbitmq import RabbitCluster

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

#: Spectra in the stream, and their rate: ~12 s of data, the node dies about a third of the way in.
FRAMES = 600
RATE_HZ = 50.0
KILL_AFTER = 200
#: Deadline for the whole stream to arrive after the failover (a liveness bound, never a speed goal).
ARRIVAL_S = 180.0
#: A new simulator session spends two sequence numbers on its DARK and REFERENCE frames: the first prediction's seq.
FIRST_SEQ = 2


@pytest.fixture
def subscribers() -> Iterator[list[Subscriber]]:
    made: list[Subscriber] = []
    try:
        yield made
    finally:
        for s in made:
            s.close()


def _subscriber(port: int, made: list[Subscriber], client_id: str) -> Subscriber:
    # returns once its SUBACK came (on a cluster: its queue declared), before anything is published
    sub = device_subscriber(LocalBroker(port), client_id=client_id)
    made.append(sub)
    return sub


def _latest_gauges(subs: list[Subscriber]) -> dict[str, Any]:
    metrics = [m for s in subs for m in s.kind("/metrics")]
    return max(metrics, key=lambda m: m["time_unix_s"])["gauges"] if metrics else {}


def _run_failover(tmp_path: Path, bundle: Path, ports: list[int], kill_first: Callable[[], None],
                  subs: list[Subscriber], procs: list[Proc]) -> tuple[set[int], int, Proc]:
    """Stream FRAMES spectra through a daemon with ``brokers = ports``, call ``kill_first`` once KILL_AFTER
    predictions have arrived; return the seqs that arrived, the duplicates and the daemon."""
    sim, path = start_sim(tmp_path, count=FRAMES, rate_hz=RATE_HZ)
    procs.append(sim)
    cfg = write_config(tmp_path, port_url=path, bundle=bundle, mqtt_port=ports[0], brokers=tuple(ports),
                       drain_rate=0.0, flush_timeout_s=2.0)
    daemon = start_daemon(tmp_path, cfg)
    procs.append(daemon)

    def seqs() -> set[int]:
        out: set[int] = set()
        for s in subs:
            with s.lock:
                out |= set(s.predictions)
        return out

    wait_for(lambda: len(seqs()) >= KILL_AFTER or not daemon.alive(), f"{KILL_AFTER} predictions before the kill")
    assert daemon.alive(), daemon.text()
    assert "connected to the MQTT broker 127.0.0.1:%d" % ports[0] in daemon.text(), daemon.text()
    kill_first()
    wait_for(lambda: len(seqs()) >= FRAMES or not daemon.alive(), f"all {FRAMES} predictions after the failover",
             timeout_s=ARRIVAL_S)
    assert daemon.alive(), daemon.text()
    wait_for(lambda: _latest_gauges(subs).get("mqtt_broker_index") == 1.0, "a metrics message naming broker 1")
    return seqs(), sum(s.duplicates for s in subs), daemon


def _assert_complete(got: set[int], duplicates: int, daemon: Proc, failed: int, survivor: int) -> None:
    expected = set(range(FIRST_SEQ, FIRST_SEQ + FRAMES))
    missing = sorted(expected - got)
    assert not missing, f"expected every seq, got {len(missing)} missing (first {missing[:10]})\n{daemon.text()}"
    assert got == expected, f"unexpected seqs {sorted(got - expected)[:10]}"
    log = daemon.text()
    assert f"connected to the MQTT broker 127.0.0.1:{survivor}" in log, log
    assert f"the next attempt goes to the MQTT broker 127.0.0.1:{survivor} (after 127.0.0.1:{failed})" in log, log
    # At least once: what the dead broker took without acknowledging is sent again, never more than the window.
    assert duplicates <= 64, f"expected at most one in-flight window of duplicates (64), got {duplicates}"


def test_a_rabbitmq_node_killed_mid_stream_the_daemon_moves_to_another_node_and_nothing_is_lost(
    tmp_path: Path, demo_bundles: DemoBundles, subscribers: list[Subscriber], procs: list[Proc],
) -> None:
    """Three nodes with quorum queues for persistent sessions (the daemon's own command subscription among them):
    the daemon publishes through node 0, the consumer reads on node 2, node 0 dies, the daemon moves to node 1."""
    with RabbitCluster(tmp_path / "rabbit", nodes=3, durable_queue_type="quorum") as cluster:
        ports = cluster.mqtt_ports
        sub = _subscriber(ports[2], subscribers, "historian")
        got, duplicates, daemon = _run_failover(tmp_path, demo_bundles.v1, ports, lambda: cluster.kill(0),
                                                subscribers, procs)
        _assert_complete(got, duplicates, daemon, ports[0], ports[1])
        assert sub.client.is_connected()
        assert sorted(cluster.running_nodes(via=1)) == sorted(cluster.names[1:])
        assert daemon.end() == 0, daemon.text()  # while its broker is up: a clean shutdown


def test_two_independent_mosquitto_brokers_the_daemon_fails_over_and_nothing_is_lost(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_factory: Callable[..., MosquittoBroker],
    subscribers: list[Subscriber], procs: list[Proc],
) -> None:
    """Without a cluster each broker only has what was published to it: a consumer needs a persistent session on
    every broker (or a bridge between them), and the union of what they got is the stream."""
    a, b = mosquitto_factory(), mosquitto_factory()
    _subscriber(a.port, subscribers, "historian-a")
    _subscriber(b.port, subscribers, "historian-b")
    got, duplicates, daemon = _run_failover(tmp_path, demo_bundles.v1, [a.port, b.port], a.kill, subscribers, procs)
    _assert_complete(got, duplicates, daemon, a.port, b.port)
