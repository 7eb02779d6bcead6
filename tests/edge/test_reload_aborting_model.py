"""A hot reload of a bundle whose model makes the interpreter abort, with real processes: ``spectro-sim`` on a pty
-> ``spectro-edge run`` -> a real mosquitto -> a paho subscriber.

The new bundle is the trainer-built demo bundle with its ``model.tflite`` replaced by
``tests/data/trained/litert_abort.tflite`` (an int8 CNN ``spectro-train fit`` converted, on which LiteRT's XNNPACK
delegate aborted the whole process) and its manifest rehashed, so every check before the model's load passes. The
daemon probes the model in a child process (``edge.load_probe``): the reload is refused with the reason, the daemon
lives, and the old model goes on serving every spectrum (none lost).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import edge.load_probe as probe
from edge.errors import RuntimeLoadError
from tests.support.broker import MosquittoBroker
from tests.support.bundles import read_zip, rehash_manifest, write_zip
from tests.support.daemon import DemoBundles, wait_for
from tests.support.processes import Proc, Subscriber, send_command, start_daemon, start_sim, write_config

ABORTING_MODEL = Path(__file__).resolve().parents[1] / "data" / "trained" / "litert_abort.tflite"


def _aborts_here() -> bool:
    """Whether this interpreter still kills the process that loads the model (probed in a child: this process
    lives either way)."""
    try:
        probe.probe_model_load(ABORTING_MODEL.read_bytes())
    except RuntimeLoadError as exc:
        return "killed by" in str(exc)
    return False


def test_a_reloaded_bundle_whose_model_aborts_litert_is_refused_and_the_old_one_keeps_serving(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, subscriber: Subscriber,
    procs: list[Proc],
) -> None:
    aborts = _aborts_here()
    members = read_zip(demo_bundles.v1)
    members.pop("manifest.sig", None)
    members["model.tflite"] = ABORTING_MODEL.read_bytes()
    rehash_manifest(members, lambda m: m.update(model_version="9.9.9"))
    crashing = write_zip(demo_bundles.v1.parent / "crashing.spectrolite", members)  # commands reach that folder only

    sim, path = start_sim(tmp_path, count=0, rate_hz=50.0)
    procs.append(sim)
    cfg = write_config(tmp_path, port_url=path, bundle=demo_bundles.v1, mqtt_port=mosquitto_broker.port)
    daemon = start_daemon(tmp_path, cfg)
    procs.append(daemon)
    wait_for(lambda: subscriber.count() >= 10 or not daemon.alive(), "predictions of the first bundle")
    assert daemon.alive(), daemon.text()

    send_command(mosquitto_broker.port, "reload_bundle", {"path": str(crashing)}, "r-crash")
    answer = subscriber.response("reload_bundle", "r-crash")
    assert answer["ok"] is False and "model.tflite" in answer["error"], answer
    if aborts:  # refused by the probe, with the signal and the interpreter's own last words
        assert "killed by SIG" in answer["error"] and "refused" in answer["error"], answer
    assert daemon.alive(), daemon.text()

    # The old model keeps serving: new predictions come, every one from version 1.0.0, none lost.
    n_then = subscriber.count()
    wait_for(lambda: subscriber.count() >= n_then + 50 or not daemon.alive(), "predictions after the refusal")
    assert daemon.alive(), daemon.text()
    with subscriber.lock:
        predictions = dict(subscriber.predictions)
    versions = {p["model"]["version"] for p in predictions.values()}
    assert versions == {"1.0.0"}, versions
    seqs = sorted(predictions)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a spectrum was lost around the refusal"
    assert subscriber.duplicates == 0


def test_a_daemon_started_on_such_a_bundle_exits_with_the_reason(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, procs: list[Proc],
) -> None:
    if not _aborts_here():
        pytest.skip("this LiteRT build loads the model without dying: nothing native to survive here (the "
                    "model then merely mismatches the demo pipeline, a refusal other tests cover)")
    members = read_zip(demo_bundles.v1)
    members.pop("manifest.sig", None)
    members["model.tflite"] = ABORTING_MODEL.read_bytes()
    rehash_manifest(members)
    crashing = write_zip(tmp_path / "crashing.spectrolite", members)
    sim, path = start_sim(tmp_path, count=0, rate_hz=50.0)
    procs.append(sim)
    daemon = start_daemon(tmp_path, write_config(tmp_path, port_url=path, bundle=crashing,
                                                 mqtt_port=mosquitto_broker.port))
    procs.append(daemon)
    wait_for(lambda: not daemon.alive(), "the daemon to refuse its bundle and exit")
    code = daemon.end()
    assert code not in (0, -6, 134), (code, daemon.text())  # an error exit, not the interpreter's abort
    assert "killed by SIG" in daemon.text() and "model.tflite" in daemon.text(), daemon.text()
