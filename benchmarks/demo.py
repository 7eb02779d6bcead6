"""``spectro-bench demo`` (what ``make demo`` runs): train the demo model, run the whole loop on one machine, then a
summary; exit 0 only if the loop worked.

What runs (every process is started here and stopped here, whatever happens), through the one harness the
benchmarks and the tests use (:mod:`benchmarks.harness`):

1. the model: ``spectro-train fit examples/demo.toml`` in a child process (TensorFlow never enters the daemon or
   this process), cached in ``~/.cache/spectrolite/trained/`` under the SHA-256 of the config (and of the trainer's
   sources), so a second demo starts at once and an edited config trains again (``--bundle`` serves an existing
   bundle instead);
2. a broker: ``mosquitto`` when it is on PATH (or in /usr/sbin), otherwise the embedded ``amqtt`` broker (an
   install requirement, so no root and no apt are needed), on a free local port;
3. ``spectro-sim`` on a pty, streaming the config's test rows (the simulator's own synthetic spectra, as raw
   detector counts with dark and white references) with a provoked drift halfway;
4. the daemon, started as production starts it (``spectro-edge run --config``), with ``forward_annotations`` on so
   its predictions carry the simulator's reference values;
5. a console subscriber (here) printing predictions against the reference values, their intervals and quality,
   and every drift alert.

The summary gives frames sent, predictions received (unique, duplicates), RMSEP per target against the reference
values before the drift, and the drift alerts.  Success means: every frame's prediction arrived, the RMSEP is
finite, and (when a drift was provoked) an alert was raised after it started.
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any, Sequence

__all__ = ["main", "find_mosquitto"]

log = logging.getLogger(__name__)

_REPO = Path(__file__).resolve().parents[1]
#: The demo's training config (synthetic spectra the simulator streams).
DEMO_CONFIG = _REPO / "examples" / "demo.toml"


def find_mosquitto() -> str | None:
    """Path of a ``mosquitto`` executable on PATH or in the usual sbin folders, or None."""
    from benchmarks.harness import find_mosquitto as find

    return find()


class _Console:
    """Prints predictions and drift alerts as the harness's subscriber receives them (from paho's thread)."""

    def __init__(self, out: IO[str] | None, print_every: int) -> None:
        self.out = out
        self.print_every = max(1, print_every)
        self.n = 0
        self._last_quality: str | None = "ok"
        self._lock = threading.Lock()

    def prediction(self, body: dict[str, Any]) -> None:
        with self._lock:
            self.n += 1
            n = self.n
        quality = body.get("quality")
        if n == 1 or n % self.print_every == 0 or quality != self._last_quality:
            self._last_quality = quality
            self._print(_format_prediction(body))

    def drift(self, body: dict[str, Any]) -> None:
        arrow = "RAISED " if body["event"] == "raised" else "cleared"
        self._print(f"*** drift {arrow} {body['detector']} at seq {body.get('seq')}: {body.get('detail', '')}")

    def _print(self, line: str) -> None:
        """A closed stdout (``| head``) silences the console, never the subscriber."""
        if self.out is None:
            return
        try:
            self.out.write(line + "\n")
            self.out.flush()
        except (OSError, ValueError):
            self.out = None


def _format_prediction(body: dict[str, Any]) -> str:
    ref = body.get("reference") or []
    parts = []
    for i, v in enumerate(body["values"]):
        name = v["name"].replace("_pct", "")
        r = f" (ref {ref[i]:.2f})" if i < len(ref) and ref[i] is not None else ""
        lo, hi = v.get("lower"), v.get("upper")
        iv = f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else ""
        parts.append(f"{name}={v['value']:.2f}{v['unit']}{iv}{r}")
    ood = body.get("ood") or {}
    q = f" Q/lim={ood['q'] / ood['q_limit']:.2f}" if ood else ""
    return f"seq {body['seq']:>5}  {'  '.join(parts)}  quality={body['quality']}{q}  {body['latency_ms']:.2f} ms"


def _rmsep(predictions: dict[int, dict[str, Any]], seqs: Sequence[int]) -> dict[str, float]:
    sums: dict[str, list[float]] = {}
    for s in seqs:
        body = predictions[s]
        ref = body.get("reference")
        if not ref:
            continue
        for i, v in enumerate(body["values"]):
            if i < len(ref) and ref[i] is not None:
                sums.setdefault(v["name"], []).append((v["value"] - ref[i]) ** 2)
    return {k: math.sqrt(sum(v) / len(v)) for k, v in sums.items() if v}


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected --frames >= 1, got {value}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected --rate > 0, got {value:g}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The demo's options (``spectro-bench demo --help``)."""
    p.add_argument("--frames", type=_at_least_one, default=300,
                   help="spectra the simulator streams (default %(default)s)")
    p.add_argument("--rate", type=_positive, default=50.0, help="spectra per second (default %(default)s)")
    p.add_argument("--drift-at", type=int, help="spectrum index of the provoked drift (default: halfway; -1: none)")
    p.add_argument("--drift-kind", default="band", help="band, baseline, shift or lamp (default %(default)s)")
    p.add_argument("--broker", choices=("auto", "mosquitto", "embedded"), default="auto",
                   help="auto: mosquitto when installed, else the embedded amqtt broker (default %(default)s)")
    p.add_argument("--config", type=Path, default=DEMO_CONFIG,
                   help="training config of the model and the rows streamed (default examples/demo.toml)")
    p.add_argument("--bundle", help="serve this bundle instead of the config's trained one")
    p.add_argument("--rebuild", action="store_true", help="train the config again even if cached")
    p.add_argument("--workdir", help="keep the run's files (config, logs, outbox) here instead of a temporary folder")
    p.add_argument("--print-every", type=int, default=0, help="print every Nth prediction (default: about 25 lines)")


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="spectro-bench demo", description=__doc__.splitlines()[0])
    add_arguments(p)
    return p.parse_args(argv)


def _bundle(args: argparse.Namespace) -> Path:
    from benchmarks import harness

    if args.bundle:
        return Path(args.bundle)
    print(f"model: spectro-train fit {args.config} (cache key {harness.cache_key(args.config)}) ...", flush=True)
    t0 = time.monotonic()

    def echo(line: str) -> None:
        if line.strip():
            print(f"  train | {line}", flush=True)

    trained = harness.ensure_trained(args.config, rebuild=args.rebuild, echo=echo)
    how = "cached" if trained.cached else f"trained in {time.monotonic() - t0:.0f} s"
    print(f"model: {trained.bundle} ({how})")
    return trained.bundle


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.demo``: the demo (see the module docstring); its exit code as :func:`run` says."""
    return run(_parse(argv))


def run(args: argparse.Namespace) -> int:
    """Run the demo with parsed options; 0 when the loop worked, 1 when it did not, 2 on bad options or setup."""
    from benchmarks import harness
    from edge.bundle import load_bundle
    from edge.errors import EdgeError

    drift_at = args.frames // 2 if args.drift_at is None else (None if args.drift_at < 0 else args.drift_at)
    own_dir = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="spectrolite-demo-")) if own_dir else Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    console = _Console(sys.stdout, args.print_every or max(1, args.frames // 25))
    try:
        with harness.Processes() as procs:
            bundle_path = _bundle(args)
            bundle = load_bundle(bundle_path)
            cfg = harness.load_training_config(args.config)
            data, source = harness.dataset_of_config(cfg, Path(args.config).resolve().parent)
            test_name, selectors = harness.selectors_of_test_set(cfg)
            rows = harness.select_rows(data, selectors)
            stream = harness.stream_rows(workdir / "stream.npz", data, rows, [t.name for t in bundle.targets],
                                         f"{source}, test set {test_name!r} ({rows.size} rows)",
                                         axis_unit=bundle.input_contract.wavelength_unit)
            harness.check_contract(bundle, stream)
            broker = harness.start_broker(procs, workdir, args.broker)
            print(f"broker: {broker.description}")
            sub = harness.Subscriber(broker, on_prediction=console.prediction, on_drift=console.drift,
                                     client_id="spectrolite-demo-console")
            try:
                extra = ["--drift-at", str(drift_at), "--drift-kind", args.drift_kind] if drift_at is not None else []
                sim_cmd = harness.simulator_command(workdir / "spectrometer", count=args.frames, rate_hz=args.rate,
                                                    dataset=stream.path, extra=extra)

                def started(device: str, pid: int, config: Path) -> None:
                    print(f"simulator: {device} ({args.frames} spectra at {args.rate:g}/s from {stream.description}"
                          + (f", {args.drift_kind} drift from spectrum {drift_at})" if drift_at is not None else ")"))
                    print(f"daemon: spectro-edge run --config {config} (pid {pid}, log {workdir / 'daemon.log'})")
                    print("-" * 100, flush=True)

                run = harness.run_loop(procs, broker, sub, bundle=bundle_path, sim_cmd=sim_cmd, workdir=workdir,
                                       frames=args.frames, rate_hz=args.rate, on_started=started)
            finally:
                sub.close()
        return _summary(run, args, drift_at, workdir)
    except (harness.HarnessError, EdgeError, OSError) as exc:
        print(f"spectro-bench demo: {exc}", file=sys.stderr)
        return 2
    finally:
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)


def _summary(run: Any, args: argparse.Namespace, drift_at: int | None, workdir: Path) -> int:
    preds = run.predictions
    seqs = sorted(preds)
    # Spectra in stream order; the drift starts at the drift_at-th spectrum.
    before = seqs[:drift_at] if drift_at is not None else seqs
    first_drift_seq = seqs[drift_at] if drift_at is not None and drift_at < len(seqs) else None
    rmsep = _rmsep(preds, before)
    raised = [d for d in run.drift if d["event"] == "raised"]
    cleared = [d for d in run.drift if d["event"] == "cleared"]
    flagged = sum(1 for s in seqs if preds[s]["quality"] != "ok")
    print("-" * 100)
    print("summary")
    sent = run.sent
    print(f"  frames sent:           {sent if sent is not None else args.frames}"
          + ("" if sent is not None else " (requested; the simulator's log did not say)"))
    print(f"  predictions received:  {len(preds)} unique ({run.duplicates} duplicates dropped)")
    print(f"  flagged predictions:   {flagged} (quality other than ok)")
    for name, value in rmsep.items():
        print(f"  RMSEP {name:<17} {value:.3f} (vs the simulator's reference values, before the drift)")
    for d in raised + cleared:
        print(f"  drift {d['event']:<8} {d['detector']:<24} at seq {d.get('seq')}: {d.get('detail', '')}")
    if not run.drift:
        print("  drift alerts:          none")
    problems = []
    if len(preds) < args.frames:
        problems.append(f"expected {args.frames} predictions, got {len(preds)}")
    if sent is not None and sent != args.frames:
        problems.append(f"expected the simulator to send {args.frames} spectra, it reports {sent}")
    if not rmsep or not all(math.isfinite(v) for v in rmsep.values()):
        problems.append("no RMSEP could be computed (reference values missing)")
    if drift_at is not None and first_drift_seq is not None:
        if not any(d.get("seq") is not None and d["seq"] >= first_drift_seq for d in raised):
            problems.append(f"expected a drift alert after seq {first_drift_seq}, got none")
    if run.daemon_exit_code != 0:
        problems.append(f"the daemon exited with code {run.daemon_exit_code} (see its log)")
    if problems:
        print("RESULT: FAILED: " + "; ".join(problems))
        daemon_log = workdir / "daemon.log"
        if daemon_log.is_file():
            print("--- daemon log tail ---\n" + daemon_log.read_text(errors="replace")[-3000:], file=sys.stderr)
        return 1
    print("RESULT: OK: every frame predicted, reference values tracked, drift detected" if drift_at is not None
          else "RESULT: OK: every frame predicted, reference values tracked")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
