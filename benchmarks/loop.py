"""``spectro-bench loop``: a trained bundle scored through the whole loop against the same bundle run offline.

Usage::

    spectro-bench loop --config examples/tablets_assay.toml [--test test_inst1] [--json PATH]
    spectro-bench loop --bundle B --dataset NPZ [--select split=calibrate --select instrument=1] [--json PATH]

With ``--config`` the config is trained first with ``spectro-train fit`` in a child process (cached under a key made
of the config's SHA-256, see :func:`benchmarks.harness.ensure_trained`; ``--retrain`` trains again), and the rows
streamed are a test set of its ``[split.test]`` (the first unless ``--test`` names one) from its own dataset (a
``.npz`` or ``[data] synthetic``).  With ``--bundle`` the rows are those of ``--dataset`` matching every
``--select COLUMN=VALUE`` (all rows without one).

The rows, with the bundle's targets as reference values, go through the loop of :mod:`benchmarks.harness`:
``spectro-sim`` on a pty (it converts each spectrum to raw detector counts with its own detector noise and sends
dark and white references, ANNOTATION frames carry the reference values) -> ``spectro-edge run`` (the production
entry point, ``forward_annotations = true``) -> a real ``mosquitto`` (the embedded broker when none is installed) ->
a paho subscriber.  Before anything streams, the bundle's input contract (pixel count, wavelength range, signal) is
checked against what the simulator will send: a mismatch is one line and exit code 2.

Figures (JSON keys, per target where it applies):

- ``predictions`` (unique sequence numbers received), ``sent``, ``lost`` (= sent - predictions), ``duplicates``;
- ``loop_rmsep``: RMSEP of the received predictions against the reference values they carry;
- ``offline_rmsep``: the same bundle on the same rows offline, with the edge's own code
  (``edge.bundle.load_bundle(...).predict_spectra``) on noise-free raw input: what the loop would give without the
  simulator's detector noise; ``ratio`` = loop / offline (goal <= 1.05);
- ``replay_rmsep``: the same bundle offline on the very frames the simulator sent (rebuilt from its seed), and
  ``loop_vs_replay_max_abs_diff``, the largest difference between a received prediction and the replayed one: the
  loop itself (pty, daemon, broker) adds nothing when it is 0, and ``loop_rmsep`` - ``offline_rmsep`` is then the
  simulator's detector (noise, exposure, saturation) alone;
- ``ood_alarm_rate``: share of received predictions flagged ``out_of_distribution`` (goal <= 3 %);
  ``ood_alarm_rate_by_statistic`` the shares over the T2 and over the Q limit (which statistic fires);
  ``offline_ood_alarm_rate`` the same share offline (noise-free input), ``replay_ood_alarm_rate`` on the replayed
  frames (the simulator's detector noise included).

A classification bundle is scored by accuracy instead (the class its published probabilities make most likely;
the keys and goal in :mod:`benchmarks.loop_classes`).  ``task`` says which.  With ``--config``, ``--averages`` and
``--reference-averages`` default to what its ``[instrument.noise]`` declares of the line detector.

The table goes to stdout, the JSON to ``--json`` (with ``.md`` beside), and a plot of predicted against reference
values (loop and offline, per target; the two confusion matrices for a classification) to ``PATH.png``.
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.results import host_facts, jsonable, markdown_table, measure_and_publish, system_load

log = logging.getLogger(__name__)

#: Goals of issue 13 (on examples/tablets_assay.toml, instrument-1 test tablets).
GOAL_RMSEP_RATIO_MAX = 1.05
GOAL_LOST = 0
GOAL_OOD_ALARM_RATE_MAX = 0.03
#: Exit code of a run refused before streaming (nothing could be measured).
EXIT_REFUSED = 2


def add_budget_argument(parser: argparse.ArgumentParser) -> None:
    """``--budget-min``: the fit's recipe search budget (with ``--config``; read by :func:`_prepare`)."""
    parser.add_argument("--budget-min", type=float, metavar="M",
                        help="with --config: the recipe search budget in minutes (spectro-train fit --budget-min; 0 "
                             "trains the configured recipe as is); default the config's [search]")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``spectro-bench loop``."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", type=Path, help="training config to train (cached) and stream a test set of")
    src.add_argument("--bundle", type=Path, help="an existing bundle (with --dataset)")
    parser.add_argument("--dataset", type=Path, help="dataset whose rows are streamed (with --bundle): .npz, or a "
                        "CSV / JCAMP-DX file holding the bundle's target columns")
    parser.add_argument("--test", help="test set of the config's [split.test] to stream (default: the first)")
    parser.add_argument("--select", action="append", default=[], metavar="COLUMN=VALUE",
                        help="stream only rows with this column value (repeatable; with --bundle)")
    parser.add_argument("--frames", type=int, default=0, help="spectra to stream (default: every selected row once)")
    parser.add_argument("--rate", type=float, default=100.0, help="spectra per second (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="simulator seed (its detector noise)")
    parser.add_argument("--signal", choices=("auto", "counts", "absorbance", "reflectance"), default="auto",
                        help="what the simulator's SPECTRUM frames carry (spectro-sim --signal; default auto: what "
                             "the bundle expects); a signal the bundle does not take is refused before streaming")
    parser.add_argument("--averages", type=int, default=None,
                        help="scans the simulator averages per spectrum (spectro-sim --averages; default: the "
                             "config's [instrument.noise] averages with --config, else 1)")
    parser.add_argument("--reference-averages", type=int, default=None, metavar="N",
                        help="scans the simulator averages into each dark and white reference "
                             "(spectro-sim --reference-averages; default: the config's [instrument.noise] "
                             "reference_averages with --config, else the simulator's)")
    parser.add_argument("--broker", choices=("auto", "mosquitto", "embedded"), default="auto",
                        help="auto: mosquitto when installed, else the embedded amqtt broker")
    parser.add_argument("--cache", type=Path, help="folder of trained models (default: the user cache)")
    parser.add_argument("--retrain", action="store_true", help="train the config again even when cached")
    add_budget_argument(parser)
    parser.add_argument("--workdir", type=Path, help="keep the run's files (configs, logs, outbox) here")
    parser.add_argument("--plot", type=Path, help="PNG of predicted vs reference (default: beside --json)")
    parser.add_argument("--json", metavar="PATH", default=None, help="write the figures as JSON (and .md beside)")


class Refused(Exception):
    """The run cannot measure anything (the message says why)."""


def _rmsep(pred: np.ndarray, ref: np.ndarray) -> float | None:
    ok = np.isfinite(pred) & np.isfinite(ref)
    return float(np.sqrt(np.mean((pred[ok] - ref[ok]) ** 2))) if ok.any() else None


def _prepare(args: argparse.Namespace, work: Path) -> tuple[Any, Path, Any, dict[str, Any]]:
    """(bundle, bundle path, stream, setup facts); raises Refused when the run cannot measure anything."""
    from benchmarks import harness
    from edge.bundle import load_bundle
    from edge.errors import EdgeError

    setup: dict[str, Any] = {}
    if args.config is not None:
        cfg = harness.load_training_config(args.config)
        if args.select:
            raise Refused("expected --test NAME with --config (rows come from its [split.test]), got --select")
        if args.budget_min is not None and not 0 <= args.budget_min < float("inf"):
            raise Refused(f"expected --budget-min of 0 or more minutes, got {args.budget_min:g}")
        test_name, data, rows, where, selectors = harness.test_rows_of_config(cfg, args.config.resolve().parent,
                                                                              args.test)
        _line_of_config(args, cfg)
        print(f"training {args.config} with spectro-train fit (cached by the config's hash) ...", flush=True)
        trained = harness.ensure_trained(args.config, args.cache, rebuild=args.retrain, budget_min=args.budget_min,
                                         echo=lambda line: log.info("spectro-train: %s", line))
        bundle_path = trained.bundle
        setup.update({"config": str(args.config), "config_sha256_16": harness.config_digest(args.config),
                      "cache_key": harness.cache_key(args.config, args.budget_min), "budget_min": args.budget_min,
                      "trained_cached": trained.cached, "train_seconds": trained.train_seconds,
                      "metrics": str(trained.metrics), "test_set": test_name})
    else:
        if args.dataset is None:
            raise Refused("expected --dataset FILE with --bundle (the rows to stream), got none")
        if args.budget_min is not None:
            raise Refused("expected --budget-min with --config (it sets the fit's search budget), got --bundle")
        bundle_path = args.bundle
    try:
        bundle = load_bundle(bundle_path)
    except (EdgeError, OSError) as exc:
        raise Refused(f"expected a valid bundle at {bundle_path}: {exc}") from exc
    if args.config is None:
        data = harness.dataset_file(args.dataset, bundle.task, [t.name for t in bundle.targets])
        selectors = harness.parse_selectors(args.select)
        rows = harness.select_rows(data, selectors) if selectors else np.arange(len(data["X"]))
        where = f"{args.dataset}, " + (", ".join(f"{k} == {v!r}" for k, v in selectors.items()) or "all rows")
    if bundle.task == "classification":
        # The references the loop carries are indices into the bundle's class labels, its outputs' order.
        data = harness.classes_in_bundle_order(data, bundle.class_labels)
    stream = harness.stream_rows(work / "stream.npz", data, rows, [t.name for t in bundle.targets],
                                 f"{where} ({rows.size} rows)",
                                 axis_unit=bundle.input_contract.wavelength_unit)
    sends = bundle.input_contract.frame_signal if args.signal == "auto" else args.signal
    harness.check_contract(bundle, stream, sends=sends)
    setup.update({"bundle": str(bundle_path), "model_id": bundle.model_id, "model_version": bundle.model_version,
                  "task": bundle.task, "frame_signal": bundle.input_contract.frame_signal,
                  "simulator_signal": sends, "rows": stream.description,
                  "selectors": selectors, "n_rows": int(rows.size)})
    return bundle, Path(bundle_path).resolve(), stream, setup  # the daemon runs in its own folder


def _line_of_config(args: argparse.Namespace, cfg: Any) -> None:
    """Scans averaged per spectrum and per reference where the command line leaves them open: what the config's
    ``[instrument.noise]`` declares of its line detector (the model was trained for it), else one scan and the
    simulator's default (``args`` is updated)."""
    noise = (cfg.get("instrument") or {}).get("noise") or {}
    if args.averages is None:
        args.averages = int(noise.get("averages", 1))
    if getattr(args, "reference_averages", None) is None and "reference_averages" in noise:
        args.reference_averages = int(noise["reference_averages"])


def _offline(bundle: Any, stream: Any, averages: int = 1) -> dict[str, Any]:
    from benchmarks import harness

    X, ctx = harness.offline_inputs(bundle, stream.absorbance)
    pred = np.asarray(bundle.predict_spectra(X, wavelengths=stream.wavelengths, **ctx),
                      dtype=np.float64).reshape(len(X), -1)
    flags = None
    if bundle.ood is not None:
        flags = np.asarray(bundle.ood.is_outlier(bundle.preprocess(X, wavelengths=stream.wavelengths, **ctx),
                                                 _simulator_levels(bundle, stream, averages)))
    return {"pred": pred, "ood_flags": flags}


def _simulator_levels(bundle: Any, stream: Any, averages: int) -> np.ndarray | None:
    """For an OOD model that scores each spectrum under its own detector noise: the level the simulator's
    detector gives each noise-free spectrum of the stream (its expected counts, dark and white at the exposure it
    picks), not that of the offline frames' flat references; None for any other model."""
    from firmware_bridge.physics import DetectorModel

    noise = getattr(bundle.ood, "noise", None)
    if noise is None or stream.absorbance.shape[1] != noise.n_channels:
        return None
    wl = np.asarray(stream.wavelengths, dtype=np.float64)
    det = DetectorModel(1e7 / wl if bundle.input_contract.wavelength_unit == "cm-1" else wl)
    t_us = det.integration_time_for(stream.absorbance)
    counts = np.stack([det.expected_counts(a, t_us) for a in stream.absorbance])
    return np.asarray(noise.level(counts, det.dark_mean_counts(t_us), det.expected_counts(None, t_us),
                                  averages=averages))


def _reference_averages(args: argparse.Namespace) -> int:
    """Scans the simulator averages into each dark and white (``--reference-averages``, else its default)."""
    from firmware_bridge.simulator import DEFAULT_REFERENCE_AVERAGES

    return DEFAULT_REFERENCE_AVERAGES if args.reference_averages is None else int(args.reference_averages)


def _replay(bundle: Any, stream: Any, *, seed: int, averages: int, reference_averages: int, frames: int,
            signal: str = "counts", ood_flags: list[bool] | None = None) -> dict[int, np.ndarray]:
    """seq -> the bundle's offline prediction of the very frames the simulator sent (their OOD flags are appended
    to ``ood_flags`` when given).

    :class:`firmware_bridge.simulator.VirtualSpectrometer` is deterministic for a given config (the daemon sends
    nothing to a device that announces itself and streams), so its first session is rebuilt here frame for frame:
    the status, dark and white frames, then ``frames`` spectra.
    """
    from firmware_bridge.frames import Dark, Reference, SignalKind, Status
    from firmware_bridge.simulator import SimulatorConfig, VirtualSpectrometer

    dev = VirtualSpectrometer.from_config(SimulatorConfig(dataset_path=str(stream.path), seed=seed,
                                                          averages=averages, reference_averages=reference_averages,
                                                          signal=SignalKind[signal.upper()]))
    start = dev.session_start()
    status = next(f for f in start if isinstance(f, Status))
    ctx: dict[str, np.ndarray] = {}
    if signal == "counts":
        ctx["dark"] = np.asarray(next(f for f in start if isinstance(f, Dark)).counts, dtype=np.float64)
        ctx["reference"] = np.asarray(next(f for f in start if isinstance(f, Reference)).counts, dtype=np.float64)
    spectra = [dev.stream_next()[0] for _ in range(frames)]
    counts = np.stack([np.asarray(s.counts, dtype=np.float64) for s in spectra])
    wavelengths = status.axis_in(bundle.input_contract.wavelength_unit)
    pred = np.asarray(bundle.predict_spectra(counts, wavelengths=wavelengths, **ctx),
                      dtype=np.float64).reshape(frames, -1)
    if bundle.ood is not None and ood_flags is not None:
        noise = getattr(bundle.ood, "noise", None)  # each frame under its own noise level, as the daemon scores it
        levels = (None if noise is None or "dark" not in ctx or counts.shape[1] != noise.n_channels
                  else noise.level(counts, ctx["dark"], ctx["reference"], averages=averages))
        ood_flags.extend(bool(f) for f in np.atleast_1d(
            bundle.ood.is_outlier(bundle.preprocess(counts, wavelengths=wavelengths, **ctx), levels)))
    return {int(s.seq): pred[i] for i, s in enumerate(spectra)}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Prepare, stream, score; returns the result dict (the JSON).  Raises Refused before streaming."""
    from benchmarks import harness

    own = args.workdir is None
    work = Path(tempfile.mkdtemp(prefix="spectro-bench-loop-")) if own else args.workdir
    work.mkdir(parents=True, exist_ok=True)
    try:
        bundle, bundle_path, stream, setup = _prepare(args, work)
        args.averages = 1 if args.averages is None else int(args.averages)
        frames = int(args.frames) if args.frames > 0 else int(stream.y.shape[0])
        offline = _offline(bundle, stream, args.averages)
        try:
            replay_flags: list[bool] = []
            offline["replay"] = _replay(bundle, stream, seed=args.seed, averages=args.averages,
                                        reference_averages=_reference_averages(args), frames=frames,
                                        signal=setup["simulator_signal"], ood_flags=replay_flags)
            offline["replay_ood_alarm_rate"] = float(np.mean(replay_flags)) if replay_flags else None
        except Exception as exc:  # a diagnostic figure: its failure is reported, not fatal
            log.warning("could not replay the simulator's frames offline: %s: %s", type(exc).__name__, exc)
            offline["replay"] = {}
        load_before = system_load()
        with harness.Processes() as procs:
            broker = harness.start_broker(procs, work, args.broker)
            print(f"broker: {broker.description}", flush=True)
            sub = harness.Subscriber(broker)
            try:
                sim_cmd = harness.simulator_command(work / "run" / "spectrometer", count=frames, rate_hz=args.rate,
                                                    dataset=stream.path, seed=args.seed,
                                                    extra=["--averages", str(args.averages),
                                                           "--reference-averages", str(_reference_averages(args)),
                                                           "--signal", setup["simulator_signal"]])
                print(f"streaming {frames} spectra at {args.rate:g}/s: {stream.description}", flush=True)
                run = harness.run_loop(procs, broker, sub, bundle=bundle_path, sim_cmd=sim_cmd, workdir=work / "run",
                                       frames=frames, rate_hz=args.rate)
            finally:
                sub.close()
        return jsonable(_score(run, bundle, stream, offline, setup, broker, args, frames, load_before))
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)


def _received(run: Any, seqs: list[int], names: list[str], n_refs: int) -> tuple[np.ndarray, np.ndarray]:
    """(values, references) of the received predictions in ``seqs`` order: ``values[i, j]`` the message's value
    named ``names[j]`` (a target, or a class label's probability), ``references[i]`` the first ``n_refs``
    reference values the ANNOTATION frame carried (NaN where none)."""
    values = np.full((len(seqs), len(names)), np.nan)
    refs = np.full((len(seqs), n_refs), np.nan)
    for i, s in enumerate(seqs):
        body = run.predictions[s]
        by_name = {v["name"]: v["value"] for v in body["values"]}
        values[i] = [np.nan if by_name.get(n) is None else by_name[n] for n in names]
        given = [np.nan if r is None else r for r in (body.get("reference") or [])[:n_refs]]
        refs[i, :len(given)] = given
    return values, refs


def _regression_figures(bundle: Any, stream: Any, offline: dict[str, Any], run: Any, seqs: list[int],
                        order: np.ndarray) -> tuple[dict[str, Any], dict[str, Any]]:
    """(figures, goals) of a regression bundle: RMSEP of the loop, offline and the replay, per target."""
    names = [t.name for t in bundle.targets]
    pred, ref = _received(run, seqs, names, len(names))
    loop_rmsep = {n: _rmsep(pred[:, j], ref[:, j]) for j, n in enumerate(names)}
    replay = offline.get("replay") or {}
    both = [i for i, s in enumerate(seqs) if s in replay]
    rep = np.array([replay[seqs[i]] for i in both], dtype=np.float64).reshape(len(both), len(names))
    off_pred, off_ref = offline["pred"][order], stream.y[order]
    offline_rmsep = {n: _rmsep(off_pred[:, j], off_ref[:, j]) for j, n in enumerate(names)}
    ratio = {n: (loop_rmsep[n] / offline_rmsep[n] if loop_rmsep[n] is not None and offline_rmsep[n] else None)
             for n in names}
    worst = max((r for r in ratio.values() if r is not None), default=None)
    figures = {
        "with_reference": int(np.isfinite(ref).all(axis=1).sum()),
        "loop_rmsep": loop_rmsep,
        "offline_rmsep": offline_rmsep,
        "ratio": ratio,
        "replay_rmsep": {n: _rmsep(rep[:, j], ref[both, j]) for j, n in enumerate(names)} if both else None,
        "loop_vs_replay_max_abs_diff": float(np.nanmax(np.abs(rep - pred[both]))) if both else None,
        "replayed": len(both),
        "units": {t.name: t.unit for t in bundle.targets},
        # for the plot only (dropped from the JSON by run())
        "_points": {"loop_pred": pred, "loop_ref": ref, "offline_pred": off_pred, "offline_ref": off_ref,
                    "names": names},
    }
    return figures, {"rmsep_ratio_max": GOAL_RMSEP_RATIO_MAX,
                     "rmsep_met": None if worst is None else worst <= GOAL_RMSEP_RATIO_MAX}


def _score(run: Any, bundle: Any, stream: Any, offline: dict[str, Any], setup: dict[str, Any], broker: Any,
           args: argparse.Namespace, frames: int, load_before: Any) -> dict[str, Any]:
    from benchmarks.loop_classes import classification_figures

    seqs = sorted(run.predictions)
    # The rows in the order the simulator streamed them (in order, cycled when --frames exceeds the rows).
    order = np.arange(frames) % len(stream.y)
    if bundle.task == "classification":  # one reference: the class index
        received = _received(run, seqs, list(bundle.class_labels), 1)
        figures, task_goals = classification_figures(bundle, stream, offline, received, seqs, order)
    else:
        figures, task_goals = _regression_figures(bundle, stream, offline, run, seqs, order)
    flagged = 0
    over = {"t2": 0, "q": 0}  # which statistic fired: the OOD stats each prediction carries against its limits
    for s in seqs:
        body = run.predictions[s]
        flagged += "out_of_distribution" in body.get("quality_flags", [])
        stats = body.get("ood") or {}
        for key in over:
            if stats.get(key) is not None and stats.get(f"{key}_limit") is not None:
                over[key] += stats[key] > stats[f"{key}_limit"]
    n_pred = len(seqs)
    sent = run.sent if run.sent is not None else frames
    ood_rate = flagged / n_pred if n_pred else None
    counters = (run.metrics or {}).get("counters", {})
    result: dict[str, Any] = {
        "benchmark": "loop",
        "task": bundle.task,
        "setup": {**setup, "broker": broker.description, "rate_hz": args.rate, "frames_requested": frames,
                  "simulator_seed": args.seed, "simulator_averages": args.averages,
                  "simulator_reference_averages": _reference_averages(args)},
        "sent": sent,
        "predictions": n_pred,
        "lost": max(0, sent - n_pred),
        "duplicates": run.duplicates,
        **figures,
        "ood_alarm_rate": ood_rate,
        "ood_alarm_rate_by_statistic": {k: v / n_pred for k, v in over.items()} if n_pred else None,
        "offline_ood_alarm_rate": None if offline["ood_flags"] is None else float(offline["ood_flags"][order].mean()),
        "replay_ood_alarm_rate": offline.get("replay_ood_alarm_rate"),
        "quality": _quality_counts(run.predictions),
        "daemon_counters": {k: v for k, v in counters.items() if v and any(
            w in k for w in ("reject", "drop", "lost", "error", "crc", "mismatch"))},
        "daemon_exit_code": run.daemon_exit_code,
        "drift_alerts": [{k: d.get(k) for k in ("event", "detector", "seq")} for d in run.drift],
        "wall_s": run.wall_s,
        "load": {"before": load_before, "after": system_load()},
        "host": host_facts(),
    }
    if n_pred < sent or run.daemon_exit_code not in (0, None):
        # Something was lost or the daemon failed: keep its last words with the figures.
        try:
            result["daemon_log_tail"] = (run.workdir / "daemon.log").read_text(errors="replace")[-3000:]
        except OSError:
            result["daemon_log_tail"] = None
        log.warning("%d of %d spectra got no prediction (daemon exit code %s); daemon log tail:\n%s", sent - n_pred,
                    sent, run.daemon_exit_code, result["daemon_log_tail"])
    result["goals"] = {
        **task_goals, "lost_max": GOAL_LOST, "ood_alarm_rate_max": GOAL_OOD_ALARM_RATE_MAX,
        "lost_met": result["lost"] <= GOAL_LOST and n_pred > 0,
        "ood_met": None if ood_rate is None else ood_rate <= GOAL_OOD_ALARM_RATE_MAX,
    }
    return result


def _quality_counts(predictions: dict[int, dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for body in predictions.values():
        out[body.get("quality", "?")] = out.get(body.get("quality", "?"), 0) + 1
    return dict(sorted(out.items()))


def _num(v: Any, fmt: str = "{:.4g}") -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)


def verdict(v: Any) -> str:
    """A goal's verdict in a table: met, NOT met, or n/a (nothing to judge)."""
    return "n/a" if v is None else ("met" if v else "NOT met")


def render(result: dict[str, Any]) -> str:
    """Markdown tables: per target RMSEPs (accuracies for a classification), then the loop's accounting and the
    goals."""
    from benchmarks.loop_classes import accuracy_table

    g = result["goals"]
    if result.get("task") == "classification":
        table = accuracy_table(result)
        score_goal = [f"goal loop accuracy >= offline - {g['accuracy_drop_max']:g}", verdict(g["accuracy_met"])]
    else:
        rr = result.get("replay_rmsep") or {}
        table = markdown_table(["target", "unit", "loop RMSEP", "offline RMSEP", "loop / offline",
                                "offline RMSEP, same frames as sent"],
                               [[n, result["units"].get(n, ""), result["loop_rmsep"][n], result["offline_rmsep"][n],
                                 result["ratio"][n], rr.get(n)] for n in result["loop_rmsep"]])
        score_goal = [f"goal loop RMSEP <= {g['rmsep_ratio_max']:g} x offline", verdict(g["rmsep_met"])]

    s = result["setup"]
    summary = [
        ["bundle", f"{s['model_id']} {s['model_version']} (takes {s['frame_signal']} frames; the simulator sends "
                   f"{s['simulator_signal']})"],
        ["rows", s["rows"]],
        ["loop", f"spectro-sim (pty, {s['simulator_averages']} scan(s) averaged, references "
                 f"{s['simulator_reference_averages']}) -> spectro-edge run -> {s['broker']} "
                 f"-> subscriber, {s['rate_hz']:g} spectra/s"],
        ["sent / predictions / lost / duplicates",
         f"{result['sent']} / {result['predictions']} / {result['lost']} / {result['duplicates']}"],
        ["predictions carrying a reference value", result["with_reference"]],
        ["largest |loop - offline replay of the same frames|", f"{_num(result['loop_vs_replay_max_abs_diff'])} "
                                                                f"({result['replayed']} frames replayed)"],
        ["OOD alarm rate, loop / offline / offline replay of the sent frames",
         f"{_num(result['ood_alarm_rate'], '{:.1%}')} / {_num(result['offline_ood_alarm_rate'], '{:.1%}')} / "
         f"{_num(result.get('replay_ood_alarm_rate'), '{:.1%}')}"],
        ["loop spectra over the T2 / Q limit",
         " / ".join(_num(v, "{:.1%}") for v in (result.get("ood_alarm_rate_by_statistic") or {}).values()) or "-"],
        ["quality of the predictions", ", ".join(f"{k} {v}" for k, v in result["quality"].items()) or "-"],
        score_goal,
        ["goal zero lost", verdict(g["lost_met"])],
        [f"goal OOD alarm rate <= {g['ood_alarm_rate_max']:.0%}", verdict(g["ood_met"])],
    ]
    if result["daemon_counters"]:
        summary.append(["daemon counters (rejections, drops, errors)", result["daemon_counters"]])
    return "\n".join([table, "", markdown_table(["loop", "value"], summary)])


def run(args: argparse.Namespace) -> int:
    """``spectro-bench loop``: 0 when every goal is met, 1 when a goal is missed, 2 when the run was refused."""
    from benchmarks.harness import HarnessError
    from benchmarks.plots import plot_loop

    result = measure_and_publish(args, "loop", measure, render, plot_loop, (Refused, HarnessError))
    if result is None:
        return EXIT_REFUSED
    goals = result["goals"]
    score = "accuracy_met" if result.get("task") == "classification" else "rmsep_met"
    return 0 if all(goals[k] for k in (score, "lost_met", "ood_met")) else 1


if __name__ == "__main__":  # pragma: no cover
    from benchmarks.cli import main

    sys.exit(main(["loop", *sys.argv[1:]]))
