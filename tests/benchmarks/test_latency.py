"""``spectro-bench latency`` harness on the tiny committed bundle with few frames: the shape of the output, not figures.

Every stage is present with ordered percentiles, the JSON keys other tools read are there, the references given
on the command line are timed, the markdown and PNG are written, and building the CLI parser loads no TensorFlow.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.cli import main
from benchmarks.latency import STAGES

BUNDLE = Path(__file__).resolve().parents[1] / "data" / "bundles" / "v1_counts_two_targets.spectrolite"
FRAMES = 40
WARMUP = 5
PERCENTILE_KEYS = ("p50_us", "p95_us", "p99_us", "max_us", "mean_us")
#: Top-level keys of the latency JSON (issue 6 names the first four; the rest are read by docs and compare).
TOP_KEYS = {
    "stages", "compute_p99_us", "keras_per_frame_p50_us", "speedup_vs_keras", "benchmark", "bundle", "runtime",
    "frames", "warmup", "data", "compute", "compute_p50_us", "frame_total", "daemon_stage", "references",
    "threads", "sizes_bytes", "compute_cpu", "compute_cpu_p99_us", "peak_rss_mb_edge", "peak_rss_mb", "load", "goals",
    "host", "stage_sum_p50_us", "batch_us_per_frame",
}


def _ordered(s: dict) -> bool:
    return s["p50_us"] <= s["p95_us"] <= s["p99_us"] <= s["max_us"] and s["p50_us"] >= 0


@pytest.fixture(scope="module")
def pls_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pls.npz (coefficients of the right shape) with the bundle's own pipeline as its preprocessing."""
    from edge.bundle import load_bundle

    d = tmp_path_factory.mktemp("pls")
    bundle = load_bundle(BUNDLE)
    n = int(np.prod(bundle.pipeline.output_shape))
    rng = np.random.default_rng(0)
    np.savez(d / "pls.npz", coef=rng.normal(size=(n, 2)), intercept=np.zeros(2), n_components=np.int64(3))
    (d / "pls_preprocessing.json").write_text(bundle.pipeline.to_json(), encoding="utf-8")
    return d / "pls.npz"


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory, pls_reference: Path) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("latency") / "lat.json"
    rc = main(["latency", "--bundle", str(BUNDLE), "--frames", str(FRAMES), "--warmup", str(WARMUP),
               "--threads", "1,2", "--no-keras", "--pruned", str(BUNDLE), "--pls", str(pls_reference),
               "--json", str(out)])
    assert rc == 0
    return json.loads(out.read_text()), out


def test_every_stage_is_present_with_ordered_percentiles(result: tuple[dict, Path]) -> None:
    data, _ = result
    assert set(data["stages"]) == set(STAGES)
    assert data["stages"]["autoencoder"]["skipped"] is True  # this bundle has none (timed: the test below)
    for name, s in data["stages"].items():
        if name == "autoencoder":
            continue
        assert set(PERCENTILE_KEYS) <= set(s), name
        assert _ordered(s), (name, s)
        assert s["n"] == FRAMES
    for key in ("compute", "compute_cpu", "frame_total", "daemon_stage"):
        assert _ordered(data[key]), key
    paced = data["daemon_stage_paced"]
    assert paced["pause_ms"] == 10.0 and paced["frames"] == FRAMES
    for key in ("cpu_back_to_back", "cpu_paced"):
        assert _ordered(paced[key]) and paced[key]["n"] == FRAMES, key
    assert paced["paced_over_back_to_back_p50"] > 0
    batch = data["daemon_stage_batch"]
    assert batch["frames_per_batch"] == 64 and batch["batches"] == 1 and _ordered(batch["per_batch"])
    assert data["batch_us_per_frame"] == batch["per_batch"]["p50_us"] / 64 > 0
    assert batch["interpreter"] in ("one invoke per chunk of rows", "not checked") or batch["interpreter"].startswith(
        "row by row (")


def test_json_schema_is_stable(result: tuple[dict, Path]) -> None:
    data, _ = result
    assert TOP_KEYS <= set(data)
    assert data["benchmark"] == "latency"
    assert data["compute_p99_us"] == data["compute"]["p99_us"]
    assert data["keras_per_frame_p50_us"] is None and data["speedup_vs_keras"] is None  # --no-keras
    assert data["speedup_vs_keras_reason"] == "no Keras reference: --no-keras"
    assert data["references"]["keras_call"]["available"] is False
    assert [r["num_threads"] for r in data["threads"]] == [1, 2]
    assert data["bundle"]["frame_signal"] == "counts" and data["bundle"]["ood"] and data["bundle"]["intervals"]
    assert data["sizes_bytes"]["bundle"] == BUNDLE.stat().st_size
    assert 0 < data["peak_rss_mb_edge"] <= data["peak_rss_mb"]


def test_references_given_on_the_command_line_are_timed(result: tuple[dict, Path]) -> None:
    refs = result[0]["references"]
    for name in ("int8_tflite", "pruned_int8_tflite", "pls_dot", "pls_with_preprocessing"):
        assert refs[name]["available"] is True, (name, refs[name])
        assert _ordered(refs[name]), name
    assert refs["float_tflite"]["available"] is False and refs["float_tflite"]["reason"]


def test_compute_span_covers_its_stages_frame_by_frame(result: tuple[dict, Path]) -> None:
    """The compute span is measured, not summed: its mean equals the sum of its stages' means (same frames)."""
    data, _ = result
    parts = ("preprocess", "quantize", "invoke", "dequantize", "ood", "interval")
    if not data["stages"]["autoencoder"].get("skipped"):
        parts += ("autoencoder",)
    assert data["compute"]["mean_us"] == pytest.approx(sum(data["stages"][p]["mean_us"] for p in parts), rel=1e-9)


def test_markdown_and_plot_are_written(result: tuple[dict, Path]) -> None:
    _, out = result
    md = out.with_suffix(".md").read_text()
    assert "| decode |" in md and "speedup vs Keras" in md
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_building_the_cli_parser_loads_no_tensorflow() -> None:
    code = ("import sys; from benchmarks import cli\n"
            "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('tensorflow', 'keras', 'sklearn') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr


def test_a_missing_keras_model_is_said_on_the_console_and_in_the_json(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "lat.json"
    rc = main(["latency", "--bundle", str(BUNDLE), "--frames", str(FRAMES), "--warmup", str(WARMUP),
               "--threads", "1", "--pace-frames", "5", "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["speedup_vs_keras"] is None
    assert data["speedup_vs_keras_reason"] == "no Keras reference: no model.keras next to the bundle"
    assert "not measured: no Keras reference: no model.keras next to the bundle" in capsys.readouterr().out
    assert any("speedup_vs_keras not measured" in r.getMessage() for r in caplog.records)


def test_the_autoencoder_of_a_bundle_is_a_stage_of_the_compute_span(tmp_path: Path) -> None:
    """A bundle with an autoencoder (#16): its stage is timed inside the compute span, and the goal is judged."""
    from tests.support import trained

    out = tmp_path / "lat-ae.json"
    rc = main(["latency", "--bundle", str(trained.committed(trained.DEMO_AE)), "--frames", str(FRAMES), "--warmup",
               str(WARMUP), "--threads", "1", "--no-keras", "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    ae = data["stages"]["autoencoder"]
    assert not ae.get("skipped") and _ordered(ae) and ae["p50_us"] > 0
    parts = ("preprocess", "quantize", "invoke", "dequantize", "ood", "autoencoder", "interval")
    assert data["compute"]["mean_us"] == pytest.approx(sum(data["stages"][p]["mean_us"] for p in parts), rel=1e-9)
    assert data["bundle"]["autoencoder"] is True and isinstance(data["goals"]["autoencoder_met"], bool)
    assert "goal autoencoder stage p50 <= 50 us" in out.with_suffix(".md").read_text()
