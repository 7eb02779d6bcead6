"""Micro-batching in the daemon (#17): a batch predicts every spectrum exactly as one at a time, keeps the order and
the counters, and the outbox commits a batch in one transaction that a kill -9 never leaves half-written."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.bundle import load_bundle
from edge.daemon import Daemon
from edge.errors import OutboxError
from edge.inference import InferenceEngine, Prediction, Rejection
from edge.preprocess import (
    MSC,
    SNV,
    Autoscale,
    CountsConversion,
    InputContract,
    LinearTransfer,
    Normalize,
    Pipeline,
)
from edge.preprocess.filters import SavitzkyGolay
from edge.preprocess.scaling import MeanCenter
from edge.publish.messages import Priority
from edge.publish.outbox import Outbox, OutboxFullError
from edge.queues import BoundedQueue
from edge.references import ReferenceKind, ReferenceSet, ReferenceSpectrum
from firmware_bridge.frames import Spectrum
from firmware_bridge.transport import SerialTransport
from tests.support.daemon import (
    DemoBundles,
    RecordingLink,
    edge_config,
    offline_stream,
    start_sim_thread,
    wait_for,
)
from tests.support.inprocess import count_batches, feed, inprocess_daemon

REPO_ROOT = Path(__file__).resolve().parents[2]
GOLDEN_BUNDLE = REPO_ROOT / "tests" / "data" / "bundles" / "v1_counts_two_targets.spectrolite"
#: Fields of a message that are times of the run, not values of the prediction.
VOLATILE = ("time_unix_s", "latency_ms", "compute_us")
#: Spectra of the daemon tests.
N_SPECTRA = 150
#: Messages per batch in the kill -9 test, and batches committed before the kill.
KILL_BATCH = 40
KILL_AFTER_BATCHES = 15


# ------------------------------------------------------------------------------------------------ queue
def test_get_many_returns_what_is_queued_without_waiting_for_more() -> None:
    q: BoundedQueue[int] = BoundedQueue(100)
    assert q.get_many(8, 0.0) == []
    q.put(1)
    assert q.get_many(8, 5.0) == [1]  # a lone item comes at once: nothing waits for a batch to fill
    for i in range(20):
        q.put(i)
    assert q.get_many(8, 0.0) == list(range(8))
    assert q.get_many(100, 0.0) == list(range(8, 20))
    with pytest.raises(ValueError, match="max_items"):
        q.get_many(0)


# ------------------------------------------------------------------------------------------------ pipeline
def _counts_batch(n_rows: int, n_ch: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    dark, white = np.full(n_ch, 1000.0), np.full(n_ch, 60000.0)
    absorbance = rng.uniform(0.2, 1.2, (n_rows, n_ch)) + np.linspace(0, 0.3, n_ch)
    return np.round(dark + (white - dark) * 10.0 ** -absorbance + rng.normal(0, 30, (n_rows, n_ch))), dark, white


@pytest.mark.parametrize("n_rows", [2, 7, 64])
def test_transform_rows_gives_every_row_its_single_spectrum_bits(n_rows: int) -> None:
    n_ch = 650  # rows of 5,200 bytes: not aligned to SIMD widths in a batch, as in the tablets bundles
    X, dark, white = _counts_batch(n_rows, n_ch)
    rng = np.random.default_rng(5)
    steps = (CountsConversion(quantity="absorbance"), SNV(), SavitzkyGolay(window=11, polyorder=2, deriv=1),
             MeanCenter(mean=rng.normal(size=n_ch)), Normalize(), Autoscale(mean=rng.normal(size=n_ch),
                                                                           scale=rng.uniform(0.5, 2, n_ch)),
             LinearTransfer(matrix=rng.normal(size=(n_ch, 12))))
    pipeline = Pipeline(steps, InputContract(n_channels=n_ch))
    single = np.stack([pipeline.transform(x, dark=dark, reference=white) for x in X])
    batch = pipeline.transform_rows(X, dark=dark, reference=white)
    assert batch.shape == single.shape
    assert np.array_equal(batch, single)  # bit for bit, not close


@pytest.mark.parametrize("mode", ["interp", "mirror", "nearest", "wrap"])
@pytest.mark.parametrize(("n_rows", "wide"), [(1, 15), (2, 15), (5, 41), (64, 333)])
def test_a_stack_of_savitzky_golay_branches_batches_its_convolutions_and_keeps_each_rows_bits(
        n_rows: int, wide: int, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stack (several preprocessings as input channels, the demo's choice) runs its branches on the batch: the
    Savitzky-Golay convolution once per branch for all rows, each row's edges alone; every row the bits it gets
    alone, for windows of 1, of the whole spectrum and long enough for BLAS's blocked dot product."""
    from edge.preprocess import savgol
    from edge.preprocess.stack import Stack

    n_ch = 333  # odd: rows start at every alignment in the batch
    X, dark, white = _counts_batch(n_rows, n_ch, seed=11)
    rng = np.random.default_rng(7)
    stack = Stack(branches=((SavitzkyGolay(window=wide, polyorder=2, mode=mode), Autoscale(
        mean=rng.normal(size=n_ch), scale=rng.uniform(0.5, 2, n_ch))),
        (SNV(), SavitzkyGolay(window=9, polyorder=3, deriv=2, delta=2.0, mode=mode)),
        (SavitzkyGolay(window=1, polyorder=0, mode=mode), MeanCenter(mean=rng.normal(size=n_ch)))))
    pipeline = Pipeline((CountsConversion(quantity="absorbance"), stack), InputContract(n_channels=n_ch))
    single = np.stack([pipeline.transform(x, dark=dark, reference=white) for x in X])
    calls: list[tuple[int, ...]] = []
    convolve = savgol.convolve_rows
    monkeypatch.setattr(savgol, "convolve_rows", lambda a, k: calls.append(a.shape) or convolve(a, k))
    batch = pipeline.transform_rows(X, dark=dark, reference=white)
    assert batch.shape == single.shape == (n_rows, n_ch, 3)
    assert np.array_equal(batch, single)  # bit for bit, not close
    assert len(calls) == 3 and all(shape[0] == n_rows for shape in calls)  # one call per filter, not per row
    # a column-major batch (a caller's transposed array) gives the same bits
    assert np.array_equal(pipeline.transform_rows(np.asfortranarray(X), dark=dark, reference=white), single)
    plain = Pipeline((MeanCenter(mean=rng.normal(size=n_ch)), SNV()), InputContract(n_channels=n_ch))
    assert np.array_equal(plain.transform_rows(np.asfortranarray(X)), np.stack([plain.transform(x) for x in X]))


def test_a_steps_transform_rows_refuses_what_is_not_a_batch() -> None:
    """Called directly (a pipeline checks first), every step's transform_rows says what it expected: the same
    error for the default row loop, the Savitzky-Golay filter and a stack."""
    from edge.errors import InputContractError
    from edge.preprocess.stack import Stack

    for step in (SNV(), MSC(reference=np.linspace(1, 2, 20)), SavitzkyGolay(window=5, polyorder=2),
                 Stack(branches=((SNV(),), ()))):
        for bad in (np.ones(20), np.ones((0, 20)), np.ones((2, 3, 20))):
            with pytest.raises(InputContractError, match=re.escape(
                    f"expected a batch of spectra, shape (m >= 1, n), got shape {bad.shape}")):
                step.transform_rows(bad)
        assert step.transform_rows(np.linspace(1, 3, 40).reshape(2, 20) ** 2).shape[0] == 2


@pytest.mark.parametrize("descending", [False, True])
def test_resample_in_a_batch_gives_every_row_its_single_spectrum_bits(descending: bool) -> None:
    """Resample is batched whole (row_exact: its axis is checked once per batch, not per spectrum of a LINE frame);
    each row gets the bits it gets alone, on an ascending or a descending device axis."""
    from edge.preprocess.instrument import Resample

    n_ch = 650
    X, dark, white = _counts_batch(37, n_ch)
    axis = np.linspace(900.0, 1700.0, n_ch) + np.random.default_rng(2).uniform(0, 0.5, n_ch)
    if descending:
        axis = axis[::-1].copy()
    steps = (CountsConversion(quantity="absorbance"), Resample(grid=np.linspace(950.0, 1650.0, 256)), SNV())
    assert Resample.row_exact
    pipeline = Pipeline(steps, InputContract(n_channels=n_ch))
    single = np.stack([pipeline.transform(x, dark=dark, reference=white, wavelengths=axis) for x in X])
    batch = pipeline.transform_rows(X, dark=dark, reference=white, wavelengths=axis)
    assert np.array_equal(batch, single)  # bit for bit, not close


# ------------------------------------------------------------------------------------------------ engine
def _spectrum(seq: int, counts: np.ndarray, *, saturated: int = 0) -> Spectrum:
    return Spectrum(seq=seq, timestamp_us=1000 * seq, integration_time_us=10_000, detector_temp_c=25.0,
                    saturated_count=saturated, counts=np.asarray(counts, dtype=np.uint16))


def _same_prediction(a: Any, b: Any) -> None:
    assert type(a) is type(b)
    if isinstance(a, Prediction):
        assert dataclasses.replace(a, compute_us=0.0) == dataclasses.replace(b, compute_us=0.0)
    else:
        assert a == b


def test_process_many_equals_process_frame_by_frame() -> None:
    bundle = load_bundle(GOLDEN_BUNDLE)
    n_ch = int(bundle.input_contract.pixel_count_min)
    X, dark, white = _counts_batch(30, n_ch)
    now = 1_700_000_000.0
    refs = (ReferenceSet()
            .with_spectrum(ReferenceSpectrum(ReferenceKind.DARK, dark, now, 10_000))
            .with_spectrum(ReferenceSpectrum(ReferenceKind.WHITE, white, now, 10_000)))
    spectra = [_spectrum(i, x, saturated=int(i == 4)) for i, x in enumerate(X)]
    spectra[7] = _spectrum(7, X[7][: n_ch - 1])  # wrong pixel count: rejected, the others still batched
    engine = InferenceEngine(bundle, clock=lambda: now)
    one_by_one = [engine.process(s, refs, now_s=now, instrument_alerts=("temperature",)) for s in spectra]
    batched = engine.process_many(spectra, refs, now_s=now, instrument_alerts=("temperature",))
    assert [o.seq for o in batched] == list(range(30))
    assert isinstance(batched[7], Rejection) and sum(isinstance(o, Prediction) for o in batched) == 29
    for a, b in zip(batched, one_by_one):
        _same_prediction(a, b)
    plain = engine.process_many(spectra, refs, now_s=now)
    for a, b in zip(plain, one_by_one):  # the daemon adds the instrument flag afterwards, per frame
        _same_prediction(a.with_instrument_alerts(("temperature",)) if isinstance(a, Prediction) else a, b)


# ------------------------------------------------------------------------------------------------ daemon
def _handle(tmp: Path, bundle: Path, frames: list[Any], *, batched: bool) -> tuple[Daemon, RecordingLink, list[int]]:
    """A daemon (not started) handling ``frames`` on this thread, as its inference thread does: in micro-batches
    of INFERENCE_BATCH_MAX, or one frame at a time; returns the sizes of the engine's batches."""
    daemon, link = inprocess_daemon(tmp, bundle)
    sizes = count_batches(daemon)
    feed(daemon, frames, batched=batched)
    return daemon, link, sizes


def _stable(messages: list[tuple[Any, dict[str, Any], str | None]]) -> list[tuple[str, dict[str, Any]]]:
    return [(k.value, {f: v for f, v in m.items() if f not in VOLATILE}) for k, m, _ in messages]


def test_daemon_batches_publish_exactly_the_messages_of_one_frame_at_a_time(
        tmp_path: Path, demo_bundles: DemoBundles) -> None:
    stream = offline_stream(N_SPECTRA, drift_at=60)  # a drift inside the batches: alerts and drift messages too
    frames = [stream["status"], stream["dark"], stream["white"], *stream["spectra"][:70], stream["white"],
              *stream["spectra"][70:]]
    single, single_link, _ = _handle(tmp_path / "single", demo_bundles.v1, frames, batched=False)
    batch, batch_link, sizes = _handle(tmp_path / "batched", demo_bundles.v1, frames, batched=True)
    assert max(sizes) > 1  # the engine did predict batches
    assert len(batch_link.of_kind("prediction")) == N_SPECTRA
    assert [m["seq"] for m in batch_link.of_kind("prediction")] == [s.seq for s in stream["spectra"]]
    batched_msgs, single_msgs = _stable(batch_link.messages), _stable(single_link.messages)
    # Same payloads in the same order; a status is built when it is sent (the end of its batch), so it may
    # already carry the alerts of the batch's later frames, but as many are sent and the last one is the same.
    assert [m for m in batched_msgs if m[0] != "status"] == [m for m in single_msgs if m[0] != "status"]
    assert [k for k, _ in batched_msgs] == [k for k, _ in single_msgs]
    assert [m for m in batched_msgs if m[0] == "status"][-1] == [m for m in single_msgs if m[0] == "status"][-1]
    assert batch.counters.snapshot() == single.counters.snapshot()


def test_annotations_not_forwarded_do_not_split_the_batches(tmp_path: Path, demo_bundles: DemoBundles) -> None:
    """The simulator (and a test bench) sends an ANNOTATION after every spectrum; when annotations are not forwarded
    they are only counted, so the spectra around them are still predicted as one batch, with the same messages and
    counters as one frame at a time."""
    stream = offline_stream(N_SPECTRA)
    frames = [stream["status"], stream["dark"], stream["white"],
              *(f for pair in zip(stream["spectra"], stream["annotations"]) for f in pair)]
    single, single_link, _ = _handle(tmp_path / "single", demo_bundles.v1, frames, batched=False)
    batch, batch_link, sizes = _handle(tmp_path / "batched", demo_bundles.v1, frames, batched=True)
    assert sizes and max(sizes) >= 16  # 64 frames a batch: 32 spectra between 32 annotations
    assert sum(sizes) >= N_SPECTRA - 2
    assert _stable(batch_link.messages) == _stable(single_link.messages)
    assert batch.counters.snapshot() == single.counters.snapshot()
    assert batch.counters.get("annotation_frames") == N_SPECTRA


def test_overload_loses_nothing_the_counters_do_not_show(tmp_path: Path, demo_bundles: DemoBundles) -> None:
    sim = start_sim_thread(tmp_path, count=N_SPECTRA, rate_hz=0.0)
    cfg = edge_config(tmp_path, port_url=sim.address, bundle_path=demo_bundles.v1, queues={"frames_max": 4})
    link = RecordingLink()
    daemon = Daemon(cfg, load_bundle(demo_bundles.v1), SerialTransport(sim.address, read_timeout_s=0.05),
                    link, forward_annotations=False)
    daemon.start()
    try:
        last = offline_stream(N_SPECTRA)["spectra"][-1].seq
        wait_for(lambda: any(m["seq"] == last for m in link.of_kind("prediction")), "the last spectrum predicted")
    finally:
        daemon.stop()
        sim.stop.set()
        sim.thread.join(timeout=10)
    seqs = [m["seq"] for m in link.of_kind("prediction")]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # nothing reordered, nothing twice
    counters = daemon.counters.snapshot()
    lost = counters.get("frames_lost_seq_gap", 0)
    assert len(seqs) + lost == N_SPECTRA and seqs[-1] == last  # every spectrum predicted or counted
    assert daemon.frames.dropped >= lost  # the queue counted each one it dropped


# ------------------------------------------------------------------------------------------------ outbox
def test_put_many_commits_in_order_and_falls_back_to_put_when_full(tmp_path: Path) -> None:
    with Outbox(tmp_path / "ob.sqlite", max_messages=10, full_policy="refuse_new") as ob:
        ids = ob.put_many([(f"t/{i}", b"p%d" % i, 1, False, Priority.NORMAL) for i in range(6)])
        assert ids == sorted(ids) and len(ids) == 6 and ob.stats().stored == 6
        assert [m.payload for m in ob.pending(100)] == [b"p%d" % i for i in range(6)]
        out = ob.put_many([(f"u/{i}", b"q%d" % i, 1, False, Priority.NORMAL) for i in range(6)])
        assert [isinstance(o, int) for o in out] == [True] * 4 + [False] * 2  # what fits, then refused
        assert all(isinstance(o, OutboxFullError) for o in out[4:])
        assert ob.stats().refused == 2 and len(ob) == 10
        with pytest.raises(ValueError, match="qos"):
            ob.put_many([("t", b"x", 1, False, Priority.NORMAL), ("t", b"y", 5, False, Priority.NORMAL)])
        assert len(ob) == 10  # a caller mistake anywhere in the batch writes nothing
    with pytest.raises(OutboxError, match="closed"):
        ob.put_many([("t", b"x", 1, False, Priority.NORMAL)])


BATCH_WRITER = textwrap.dedent(f"""
    import sys
    from edge.publish.outbox import Outbox
    ob = Outbox(sys.argv[1])
    b = 0
    while True:
        b += 1
        ids = ob.put_many([("spectrolite/s/l/d/prediction", b"%d-%d" % (b, i), 1, False, 2)
                           for i in range({KILL_BATCH})])
        print(b, *ids, flush=True)
""")


def test_kill_9_mid_batch_loses_nothing_committed_and_leaves_no_half_batch(tmp_path: Path) -> None:
    path = tmp_path / "ob.sqlite"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen([sys.executable, "-c", BATCH_WRITER, str(path)], stdout=subprocess.PIPE, env=env,
                            text=True)
    reported: dict[int, list[int]] = {}
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            b, *ids = (int(v) for v in line.split())
            reported[b] = ids
            if len(reported) >= KILL_AFTER_BATCHES:
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    with Outbox(path) as ob:
        assert ob._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = {m.id: m.payload for m in ob.pending(1_000_000)}
    for b, ids in reported.items():
        assert [stored[i] for i in ids] == [b"%d-%d" % (b, i) for i in range(KILL_BATCH)]
    assert len(stored) % KILL_BATCH == 0  # whole batches only: a batch is one transaction
