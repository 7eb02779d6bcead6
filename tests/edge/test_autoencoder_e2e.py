"""The autoencoder OOD statistic end to end (#16): spectro-sim on a pty, whose stream grows a foreign absorption band
after ``DRIFT_AT`` spectra -> ``spectro-edge run`` serving the committed trainer-built bundle with an autoencoder ->
a real mosquitto.  Every published prediction carries ``ood.ae_score`` and ``ood.ae_limit``; the clean spectra stay
under the limit, the drifted ones are flagged with the autoencoder's reason, and the drift monitor raises
``ood_ae``."""

from __future__ import annotations

from pathlib import Path

from tests.support import trained
from tests.support.broker import MosquittoBroker
from tests.support.daemon import offline_stream, wait_for
from tests.support.processes import Proc, Subscriber, start_daemon, start_sim, write_config

#: Spectra before the band starts growing in, and over which it reaches its full size.
DRIFT_AT, RAMP = 80, 20


def test_predictions_carry_the_autoencoder_score_and_a_foreign_band_raises_ood_ae(
    tmp_path: Path, mosquitto_broker: MosquittoBroker, subscriber: Subscriber, procs: list[Proc],
) -> None:
    sim, device = start_sim(tmp_path, count=0, rate_hz=50.0,
                            extra=("--drift-at", str(DRIFT_AT), "--drift-kind", "band", "--drift-ramp", str(RAMP)))
    procs.append(sim)
    bundle = trained.committed(trained.DEMO_AE)
    config = write_config(tmp_path, port_url=device, bundle=bundle, mqtt_port=mosquitto_broker.port)
    daemon = start_daemon(tmp_path, config)
    procs.append(daemon)

    def ae_raised() -> bool:
        return any(d["detector"] == "ood_ae" and d["event"] == "raised" for d in subscriber.kind("/drift"))

    # the simulator's first session is deterministic: the seqs its spectra get, offline (band from spectrum DRIFT_AT)
    spectra = offline_stream(DRIFT_AT + RAMP)["spectra"]
    onset_seq, full_seq = spectra[DRIFT_AT].seq, spectra[DRIFT_AT + RAMP - 1].seq

    def past_full_band() -> bool:
        with subscriber.lock:
            return any(seq >= full_seq for seq in subscriber.predictions)

    # the alert may come while the band still ramps up: wait for the full band's predictions too
    wait_for(lambda: (ae_raised() and past_full_band()) or not daemon.alive(), "the ood_ae drift alert",
             timeout_s=60.0)
    assert daemon.alive(), daemon.text()
    with subscriber.lock:
        preds = dict(subscriber.predictions)
    limits = {p["ood"]["ae_limit"] for p in preds.values()}
    assert len(limits) == 1 and next(iter(limits)) > 0
    assert all(p["ood"]["ae_score"] is not None for p in preds.values())
    seqs = sorted(preds)
    clean = [preds[s] for s in seqs if s < onset_seq]
    far = [preds[s] for s in seqs if s >= full_seq]
    assert clean and far, (len(clean), len(far))
    assert all(p["ood"]["ae_score"] < p["ood"]["ae_limit"] for p in clean)
    assert not any("autoencoder" in r for p in clean for r in p["quality_reasons"])
    for p in far:
        assert p["ood"]["ae_score"] > p["ood"]["ae_limit"]
        assert "out_of_distribution" in p["quality_flags"]
        assert any(r.startswith("autoencoder reconstruction error") for r in p["quality_reasons"]), p
    raised = next(d for d in subscriber.kind("/drift") if d["detector"] == "ood_ae" and d["event"] == "raised")
    assert raised["seq"] >= onset_seq
