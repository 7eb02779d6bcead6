"""Fault injection in process: serial faults from a real simulator on a real pty, hostile spectra, bad bundles
offered for reload, and every configuration key given a wrong type or an out-of-range value.

The daemon runs its real threads with a real LiteRT bundle and a recording link instead of MQTT (the broker and
SIGKILL faults are in ``test_processes.py``). Each test asserts the daemon's promises: it recovers by itself,
counts every frame it did not predict on, never predicts on a spectrum that breaks the bundle's input contract,
and keeps the old model serving when a new bundle is refused.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.bundle import SUPPORTED_FORMAT_VERSIONS, load_bundle
from edge.config import EdgeConfig, parse_config
from edge.daemon import Daemon
from edge.errors import ConfigError
from edge.inference import InferenceEngine, Prediction, Rejection, RejectReason
from edge.references import ReferenceSet, ReferenceSpectrum
from firmware_bridge.codec import encode
from firmware_bridge.frames import Dark, Spectrum
from firmware_bridge.transport import SerialTransport
from tests.support.bundles import read_zip, rehash_manifest, write_zip
from tests.support.commands import commands_section, send_signed
from tests.support.daemon import (
    RecordingLink,
    edge_config,
    offline_stream,
    start_sim_thread,
    wait_for,
)
from tests.support.trained import DEMO_V1, DEMO_V2, committed

pytestmark = pytest.mark.reliability

#: Spectra streamed in the serial-fault run.
N_FAULT_SPECTRA = 400
#: Probability of a bit flip per byte on the wire: 1 % of the ~530-byte frames of the 256-pixel simulator get one
#: (a 1 % rate per *byte* would leave almost no frame intact: 0.99 ** 530 < 0.5 %).
BIT_FLIP_RATE = 0.01 / 530
#: Pixel count of the simulated firmware after its region of interest changes mid-stream.
CHANGED_PIXELS = 200


def _stop(daemon: Daemon, sim: Any) -> None:
    daemon.stop()
    sim.stop.set()
    sim.thread.join(timeout=10)


def _run(tmp: Path, bundle: Path, *, count: int, faults: Any, rate_hz: float = 400.0,
         **sections: Any) -> tuple[Daemon, RecordingLink, Any]:
    sim = start_sim_thread(tmp, count=count, rate_hz=rate_hz, faults=faults)
    cfg = edge_config(tmp, port_url=sim.address, bundle_path=bundle, **sections)
    link = RecordingLink()
    transport = SerialTransport(sim.address, read_timeout_s=0.05, reconnect_backoff_s=(0.05, 0.5))
    daemon = Daemon(cfg, load_bundle(bundle), transport, link)
    daemon.start()
    return daemon, link, sim


def _settled(probe: Callable[[], Any], quiet_s: float = 1.5) -> bool:
    """True once ``probe()`` did not change for ``quiet_s`` (the daemon finished what it had read)."""
    import time

    before = probe()
    time.sleep(quiet_s)
    return bool(probe() == before)


def _rejected(daemon: Daemon) -> int:
    return sum(daemon.counters.get(f"frames_rejected_{r.value}") for r in RejectReason)


# ------------------------------------------------------------------------------------------------ serial faults
def test_noisy_line_every_spectrum_predicted_or_counted(tmp_path: Path, example_bundle: Path) -> None:
    """Bit flips on 1 % of the frames, garbage bursts, truncated frames, stalls and unplugs: nothing crashes.

    Nothing is unaccounted: every spectrum the simulator sent is either predicted once, or counted (lost on the wire
    as a sequence gap, or rejected with a reason); a bit flip that survived the CRC would show as a prediction on
    changed counts, so the predicted ones are also checked against a clean offline replay.
    """
    from firmware_bridge.simulator import FaultConfig

    faults = FaultConfig(bit_flip_rate=BIT_FLIP_RATE, garbage_every=37, truncate_every=23, stall_every=150,
                         stall_for_s=0.5, disconnect_every=170, disconnect_for_s=0.3)
    daemon, link, sim = _run(tmp_path, example_bundle, count=N_FAULT_SPECTRA, faults=faults)
    try:
        wait_for(lambda: sim.sim.device.done, "the simulator to finish")
        wait_for(lambda: _settled(lambda: (len(link.of_kind("prediction")), _rejected(daemon))), "the daemon to settle")
    finally:
        _stop(daemon, sim)
    preds = link.of_kind("prediction")
    seqs = [m["seq"] for m in preds]
    assert len(seqs) == len(set(seqs)), "a spectrum was predicted twice"
    lost = daemon.counters.get("frames_lost_seq_gap")
    tally = {k: v for k, v in daemon.counters.snapshot().items() if k.startswith(("frames", "decoder"))}
    assert len(preds) + lost + _rejected(daemon) == N_FAULT_SPECTRA, (len(preds), tally, sim.sim.counters)
    assert lost > 0 and len(preds) > N_FAULT_SPECTRA // 4, (lost, len(preds))
    stats = daemon.transport.stats.decoder
    assert stats.crc_errors + stats.malformed > 0, stats
    assert not daemon.failed


def test_pixel_count_and_calibration_changes_stop_predictions(tmp_path: Path, example_bundle: Path) -> None:
    """A firmware that changes its region of interest, then another that announces another calibration: from the
    change on, every spectrum is rejected (input contract) and none is predicted on."""
    from firmware_bridge.simulator import FaultConfig

    n, change = 120, 60
    faults = FaultConfig(pixel_change_at=change, pixel_change_to=CHANGED_PIXELS)
    daemon, link, sim = _run(tmp_path, example_bundle, count=n, faults=faults)
    try:
        wait_for(lambda: sim.sim.device.done, "the simulator to finish")
        wait_for(lambda: len(link.of_kind("prediction")) + _rejected(daemon)
                 + daemon.counters.get("frames_lost_seq_gap") >= n, "every spectrum predicted or rejected")
    finally:
        _stop(daemon, sim)
    assert len(link.of_kind("prediction")) == change
    assert daemon.counters.get("frames_rejected_input_contract") == n - change
    assert not daemon.failed


def test_recalibrated_device_stops_predictions(tmp_path: Path, example_bundle: Path) -> None:
    from firmware_bridge.simulator import FaultConfig

    n, at = 100, 50
    faults = FaultConfig(recalibrate_at=at, recalibrate_shift_nm=400.0)
    daemon, link, sim = _run(tmp_path, example_bundle, count=n, faults=faults)
    try:
        wait_for(lambda: sim.sim.device.done, "the simulator to finish")
        wait_for(lambda: len(link.of_kind("prediction")) + _rejected(daemon) >= n, "every spectrum handled")
    finally:
        _stop(daemon, sim)
    preds = link.of_kind("prediction")
    assert len(preds) == at and daemon.counters.get("frames_rejected_input_contract") == n - at
    assert not daemon.failed


# ------------------------------------------------------------------------------------------------ input faults
def _engine_and_refs(bundle_path: Path) -> tuple[InferenceEngine, ReferenceSet, dict[str, Any]]:
    stream = offline_stream(2)
    engine = InferenceEngine(load_bundle(bundle_path))
    refs = ReferenceSet()
    for f in (stream["dark"], stream["white"]):
        refs = refs.with_spectrum(ReferenceSpectrum.from_frame(f, captured_at_s=0.0))
    return engine, refs, stream


def _with(spectrum: Spectrum, counts: np.ndarray, **kw: Any) -> Spectrum:
    return Spectrum(seq=spectrum.seq, timestamp_us=spectrum.timestamp_us,
                    integration_time_us=spectrum.integration_time_us, counts=counts, **kw)


HOSTILE: dict[str, Callable[[np.ndarray], tuple[np.ndarray, dict[str, Any]]]] = {
    "nan": lambda c: (np.where(np.arange(c.size) == 7, np.nan, c).astype(np.float32), {}),
    "inf": lambda c: (np.where(np.arange(c.size) == 7, np.inf, c).astype(np.float32), {}),
    "minus_inf": lambda c: (np.full(c.size, -np.inf, dtype=np.float32), {}),
    "all_zero": lambda c: (np.zeros(c.size, dtype=np.uint16), {}),
    "all_saturated": lambda c: (np.full(c.size, 65535, dtype=np.uint16), {"saturated_count": c.size}),
    "some_saturated": lambda c: (np.where(np.arange(c.size) < 5, 65535, c).astype(np.uint16),
                                 {"saturated_count": 5}),
    "huge_float": lambda c: (np.full(c.size, 3e38, dtype=np.float32), {}),
    "negative": lambda c: (-np.abs(c.astype(np.float32)) - 1, {}),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_spectrum_is_flagged_or_rejected_never_a_silent_number(name: str, example_bundle: Path) -> None:
    engine, refs, stream = _engine_and_refs(example_bundle)
    base = np.asarray(stream["spectra"][0].counts)
    counts, kw = HOSTILE[name](base)
    out = engine.process(_with(stream["spectra"][0], counts, **kw), refs, now_s=1.0)
    if isinstance(out, Rejection):
        assert out.reason in (RejectReason.BAD_INPUT, RejectReason.INPUT_CONTRACT) and out.detail
        return
    assert isinstance(out, Prediction)
    assert all(np.isfinite(out.values)), f"{name}: non-finite prediction {out.values}"
    assert out.flags, f"{name}: predicted without any quality flag: {out.values}"


def test_dark_above_reference_is_rejected_with_a_reason(example_bundle: Path) -> None:
    engine, refs, stream = _engine_and_refs(example_bundle)
    white = np.asarray(stream["white"].counts)
    dark_high = Dark(seq=1, timestamp_us=0, integration_time_us=stream["dark"].integration_time_us,
                     counts=np.minimum(white.astype(np.uint32) + 100, 65535).astype(np.uint16))
    refs = refs.with_spectrum(ReferenceSpectrum.from_frame(dark_high, captured_at_s=0.0))
    out = engine.process(stream["spectra"][0], refs, now_s=1.0)
    assert isinstance(out, Rejection) and out.reason is RejectReason.BAD_INPUT and "dark" in out.detail


def test_hostile_frames_through_the_daemon_never_crash_it(tmp_path: Path, example_bundle: Path) -> None:
    """Over ``loop://``: every hostile spectrum followed by a good one; the good ones are all predicted."""
    cfg = edge_config(tmp_path, port_url="loop://", bundle_path=example_bundle)
    link = RecordingLink()
    transport = SerialTransport("loop://", read_timeout_s=0.05)
    daemon = Daemon(cfg, load_bundle(example_bundle), transport, link)
    stream = offline_stream(2)
    good = stream["spectra"][0]
    base = np.asarray(good.counts)
    daemon.start()
    try:
        transport.write(encode(stream["status"]) + encode(stream["dark"]) + encode(stream["white"]))
        seq = 1000
        for name in sorted(HOSTILE):
            counts, kw = HOSTILE[name](base)
            bad = Spectrum(seq=seq, timestamp_us=seq, integration_time_us=good.integration_time_us, counts=counts,
                           **kw)
            ok = good.replace(seq=seq + 1)
            transport.write(encode(bad) + encode(ok))
            seq += 2
        wait_for(lambda: len({m["seq"] for m in link.of_kind("prediction")} & set(range(1001, seq, 2)))
                 == len(HOSTILE), "every good spectrum after a hostile one")
    finally:
        daemon.stop()
    assert not daemon.failed
    for m in link.of_kind("prediction"):
        assert all(np.isfinite(v["value"]) for v in m["values"])
        if m["seq"] % 2 == 0:  # a hostile one that was predicted on must say so
            assert m["quality"] != "ok", m


# ------------------------------------------------------------------------------------------------ bundles
@pytest.fixture(scope="module")
def signing(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo bundles signed with a fresh Ed25519 key, plus refused variants of the 1.1.0 one."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    d = tmp_path_factory.mktemp("signed")
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    pub = d / "signing.pub.pem"
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))

    def signed(members: dict[str, bytes], path: Path, k: Any = key) -> Path:
        members = {n: b for n, b in members.items() if n != "manifest.sig"}
        members["manifest.sig"] = k.sign(members["manifest.json"])
        return write_zip(path, members)

    out = {"pub": pub, "v1": signed(read_zip(committed(DEMO_V1)), d / "v1.spectrolite"),
           "v2": signed(read_zip(committed(DEMO_V2)), d / "v2.spectrolite")}
    good = read_zip(out["v2"])
    raw = out["v2"].read_bytes()
    (d / "truncated.spectrolite").write_bytes(raw[: len(raw) // 2])
    out["truncated"] = d / "truncated.spectrolite"
    for name in good:  # one byte changed in each member (the zip rewritten so its CRCs are right)
        members = dict(good)
        data = bytearray(members[name])
        data[len(data) // 2] ^= 0x01
        members[name] = bytes(data)
        out[f"byte:{name}"] = write_zip(d / f"byte-{name}.spectrolite", members)
    out["wrong_signature"] = signed(dict(good), d / "wrong-sig.spectrolite", other)
    out["unsigned"] = write_zip(d / "unsigned.spectrolite", {n: b for n, b in good.items() if n != "manifest.sig"})

    def edited(name: str, edit: Callable[[dict[str, Any]], None]) -> Path:
        members = {n: b for n, b in good.items() if n != "manifest.sig"}
        rehash_manifest(members, edit)
        return signed(members, d / f"{name}.spectrolite")

    newest = max(SUPPORTED_FORMAT_VERSIONS)  # a bundle from a newer spectrolite than this device runs
    out["newer_format"] = edited("newer", lambda m: m.update(format_version=newest + 1))

    def shift(m: dict[str, Any]) -> None:
        m["input_contract"]["wavelength_min"] += 2000.0
        m["input_contract"]["wavelength_max"] += 2000.0
        m["wavelength_grid"]["values"] = [v + 2000.0 for v in m["wavelength_grid"]["values"]]

    out["other_range"] = edited("other-range", shift)
    return out


#: What each refusal's message must name.
REFUSALS = {
    "truncated": "zip", "wrong_signature": "signature", "unsigned": "signed", "newer_format": "format_version",
    "other_range": "wavelength",
}


def test_bad_bundles_are_refused_and_the_old_model_keeps_serving(tmp_path: Path, signing: dict[str, Path]) -> None:
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    live = Path(shutil.copy(signing["v1"], bundles / "model.spectrolite"))
    cfg = edge_config(tmp_path, port_url="loop://", bundle_path=live,
                      bundle={"public_key_path": str(signing["pub"])},
                      commands=commands_section(tmp_path, signing["v1"].parent))
    link = RecordingLink()
    transport = SerialTransport("loop://", read_timeout_s=0.05)
    daemon = Daemon(cfg, load_bundle(live, public_key=signing["pub"]), transport, link)
    stream = offline_stream(2)
    good = stream["spectra"][0]
    variants = sorted(k for k in signing if k not in ("pub", "v1", "v2"))
    assert len([v for v in variants if v.startswith("byte:")]) >= 6

    def responses() -> list[dict[str, Any]]:
        return [m for m in link.of_kind("command_response") if m["command"] == "reload_bundle"]

    daemon.start()
    seq = 10_000
    try:
        # the device announces itself first: a bundle for another wavelength range is checked against its axis
        transport.write(encode(stream["status"]) + encode(stream["dark"]) + encode(stream["white"]))
        for i, name in enumerate(variants):
            send_signed(daemon, "reload_bundle", {"path": str(signing[name])}, f"r{i}")
            wait_for(lambda i=i: len(responses()) == i + 1, f"the response to reloading {name}")
            answer = responses()[-1]
            assert answer["ok"] is False, f"{name} was accepted"
            assert "still serving" in answer["error"] and "1.0.0" in answer["error"], answer
            fragment = REFUSALS.get(name, "sha" if name != "byte:manifest.sig" else "signature")
            if name == "byte:manifest.json":
                fragment = "signature"
            assert fragment in answer["error"].lower(), (name, answer["error"])
            transport.write(encode(good.replace(seq=seq)))
            wait_for(lambda seq=seq: any(m["seq"] == seq for m in link.of_kind("prediction")),
                     f"a prediction after {name}")
            assert next(m for m in link.of_kind("prediction") if m["seq"] == seq)["model"]["version"] == "1.0.0"
            seq += 1
        send_signed(daemon, "reload_bundle", {"path": str(signing["v2"])}, "good")
        wait_for(lambda: responses()[-1]["request_id"] == "good", "the good reload")
        assert responses()[-1]["ok"] is True
        transport.write(encode(good.replace(seq=seq)))
        wait_for(lambda: any(m["seq"] == seq for m in link.of_kind("prediction")), "a prediction of 1.1.0")
    finally:
        daemon.stop()
    assert next(m for m in link.of_kind("prediction") if m["seq"] == seq)["model"]["version"] == "1.1.0"
    assert daemon.counters.get("bundle_reload_failures") == len(variants)


# ------------------------------------------------------------------------------------------------ config
_BASE: dict[str, Any] = {
    "device": {"site": "s", "line": "l", "device_id": "d"},
    "serial": {"port_url": "loop://"},
    "bundle": {"path": "model.spectrolite"},
}


def _fields() -> list[tuple[str, str, Any, dict[str, Any]]]:
    """(section, key, type, metadata) of every configuration key, nested tables included."""
    out: list[tuple[str, str, Any, dict[str, Any]]] = []

    def walk(prefix: str, cls: Any) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.metadata.get("internal"):
                continue
            tp = hints[f.name]
            if dataclasses.is_dataclass(tp):
                walk(f"{prefix}.{f.name}" if prefix else f.name, tp)
            else:
                out.append((prefix, f.name, tp, dict(f.metadata)))

    walk("", EdgeConfig)
    return out


def _bad_values(tp: Any, meta: dict[str, Any]) -> list[Any]:
    """A wrong-type value and, where the key has one, out-of-range values."""
    text = str(tp)
    bad: list[Any] = []
    if tp is bool:
        bad.append("yes")
    elif tp is int:
        bad += ["12", 1.5]
    elif tp is float:
        bad += ["1.0", True]
    elif "Path" in text or tp is str:
        bad.append(12)
    elif "tuple" in text:
        bad.append(7)
    if meta.get("min") is not None:
        bad.append(meta["min"] - 1 if tp is int else meta["min"] - 1.0)
    if meta.get("max") is not None:
        bad.append(meta["max"] * 2 + 1)
    if meta.get("choices"):
        bad.append("not-a-choice")
    return bad


CASES = [(s, k, v) for s, k, tp, meta in _fields() for v in _bad_values(tp, meta)]


def _set(data: dict[str, Any], section: str, key: str, value: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(data))
    node = data
    for part in [p for p in section.split(".") if p]:
        node = node.setdefault(part, {})
    node[key] = value
    return data


def test_every_key_is_covered() -> None:
    assert len(_fields()) > 60 and len(CASES) > len(_fields())


@pytest.mark.parametrize(("section", "key", "value"), CASES, ids=[f"{s}.{k}={v!r}" for s, k, v in CASES])
def test_every_key_wrong_in_type_or_range_is_named(tmp_path: Path, section: str, key: str, value: Any) -> None:
    (tmp_path / "model.spectrolite").write_bytes(b"x")
    name = f"{section}.{key}" if section else key
    with pytest.raises(ConfigError) as info:
        parse_config(_set(_BASE, section, key, value), base_dir=tmp_path)
    assert name in str(info.value), str(info.value)
