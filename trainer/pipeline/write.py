"""Stage "bundle": the deployed model behind the steps that turn what the instrument sends into its input (counts
-> absorbance with the device's references, resampling onto the training grid), with golden vectors, OOD model and
intervals, written as a ``.spectrolite`` bundle."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from firmware_bridge.codec import max_spectrum_pixels
from trainer.bundle import (
    BundleIdentity,
    FitArtefacts,
    GoldenInputs,
    ServingArtefacts,
    hash_training_data,
    make_input_contract,
    write_bundle,
)
from trainer.config import TrainConfig
from trainer.pipeline.calibrate import Calibration
from trainer.pipeline.choose import Deployed
from trainer.pipeline.prepare import MIN_RATIO, Prepared

log = logging.getLogger(__name__)

#: Golden vectors stored in the bundle (real training spectra spanning the target range).
N_GOLDEN = 4


@dataclass(frozen=True)
class FitBundle:
    """A written bundle and the parts it was written from (re-written with the final metrics)."""

    path: Path
    identity: BundleIdentity
    artefacts: FitArtefacts
    golden: GoldenInputs

    def write(self, metrics: Mapping[str, Any], note: str = "") -> Path:
        """(Re-)write the bundle carrying ``metrics`` (``note``: for the log line)."""
        return write_bundle(self.path, identity=self.identity, artefacts=self.artefacts, golden=self.golden,
                            metrics=metrics, note=note)


def write_fit_bundle(cfg: TrainConfig, data: Prepared, deployed: Deployed, calibration: Calibration,
                     out: Path) -> FitBundle:
    """Write the bundle (metrics ``{"stage": "pre-evaluation"}``) into ``out``, removing older bundles there."""
    ds, tr, classify = data.ds, data.plan.train_rows, data.classify
    X, Y = ds.X, ds.y
    targets = _bundle_targets(ds.target_names, dict(cfg.bundle.units), None if classify else Y[tr].astype(np.float64),
                              calibration.predictions)
    golden_rows = _golden_rows(Y.astype(np.float64), tr, N_GOLDEN)
    line_pipe, golden = _line_pipeline(deployed.edge_pipe, cfg, ds.wavelengths, ds.axis_unit, X[golden_rows],
                                       data.min_ratio)
    atol = _int16x8_output_atol(deployed)
    if atol is not None:
        golden = replace(golden, tolerance={"output_float_atol": atol})
    serving = None
    if deployed.second is not None:  # a per-target bundle: the second model behind the same leading steps
        second = deployed.second
        line_pipe_2, _ = _line_pipeline(second.edge_pipe, cfg, ds.wavelengths, ds.axis_unit, X[golden_rows],
                                        data.min_ratio)
        weights = _second_weights(deployed)
        by_target = (deployed.serving if weights is None else
                     tuple(second.name if w > 0.5 else deployed.name for w in weights))
        serving = ServingArtefacts(primary_name=deployed.name, second_name=second.name, tflite_bytes=second.tflite,
                                   pipeline=line_pipe_2, by_target=by_target,
                                   output_transform=second.output_transform, weights=weights)
    bundle_path = out / f"{cfg.bundle.model_id}.spectrolite"
    for stale in out.glob("*.spectrolite"):
        if stale != bundle_path:
            log.warning("removing an older bundle from the output folder: %s", stale.name)
            stale.unlink()
    fb = FitBundle(
        path=bundle_path,
        identity=BundleIdentity(
            model_id=cfg.bundle.model_id,
            model_version=cfg.bundle.model_version,
            task=cfg.task,
            targets=targets,
            training_data_sha256=hash_training_data(X[tr], Y[tr]),
            seed=cfg.seed,
            class_labels=list(ds.class_names) if ds.class_names else None,
        ),
        artefacts=FitArtefacts(
            tflite_bytes=deployed.tflite,
            pipeline=line_pipe,
            wavelengths=_model_grid(deployed.steps, ds.wavelengths),
            wavelength_unit=ds.axis_unit,
            input_contract=_line_contract(line_pipe, cfg, ds.wavelengths),
            output_transform=deployed.output_transform,
            ood=calibration.ood,
            intervals=calibration.intervals,
            autoencoder=calibration.autoencoder,
            serving=serving,
        ),
        golden=golden,
    )
    fb.write({"stage": "pre-evaluation"}, note="for the evaluation through the edge runtime; written again with its "
             "metrics")
    return fb


def _second_weights(deployed: Deployed) -> tuple[float, ...] | None:
    """The second member's weight per target (manifest ``serving.weights``) when a target is a blend; else None."""
    if "blend" not in deployed.serving or deployed.second is None:
        return None
    second = deployed.second.name
    out = []
    for name, w_pls in zip(deployed.serving, deployed.pls_weights):
        if name == "blend":
            out.append(w_pls if second == "pls" else 1.0 - w_pls)
        else:
            out.append(1.0 if name == second else 0.0)
    return tuple(out)


def _model_grid(steps: Sequence[Mapping[str, Any]], wavelengths: np.ndarray) -> np.ndarray:
    """The wavelength grid the model sees: the data axis after any crop, or a resampling grid."""
    grid = np.asarray(wavelengths, dtype=np.float64)
    for s in steps:
        if s.get("op") == "crop":
            lo = s.get("wavelength_min")
            hi = s.get("wavelength_max")
            keep = np.ones(grid.size, dtype=bool)
            if lo is not None:
                keep &= grid >= float(lo)
            if hi is not None:
                keep &= grid <= float(hi)
            grid = grid[keep]
        elif s.get("op") == "resample" and s.get("grid") is not None:
            grid = np.asarray(s["grid"], dtype=np.float64)
    return grid


def _int16x8_output_atol(deployed: Deployed) -> float | None:
    """The golden ``output_float_atol`` of a bundle with an ``int16x8`` member (float output tensor fed by a
    quantised one): one step of that 16-bit output in target units (the largest over targets), as an int8 model
    gets one LSB, since integer kernels of other builds may round one step differently; None otherwise (the
    default)."""
    from edge.bundle import DEFAULT_GOLDEN_TOLERANCE
    from edge.runtime import ModelRuntime
    from trainer.quant_ranges import output_scale

    steps = []
    for member in deployed.members:
        if ModelRuntime(member.tflite).output_dtype != np.float32:
            continue
        scale = output_scale(member.tflite)
        if scale is not None:
            units = 1.0 if member.output_transform is None else max(map(abs, member.output_transform["scale"]))
            steps.append(scale * units)
    if not steps:
        return None
    return max(float(DEFAULT_GOLDEN_TOLERANCE["output_float_atol"]), max(steps))


def _golden_rows(y: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """Up to ``n`` training rows spanning the first target's range (evenly spaced in rank)."""
    order = rows[np.argsort(y[rows, 0], kind="stable")]
    pick = np.unique(np.linspace(0, order.size - 1, min(n, order.size)).round().astype(int))
    return order[pick]


def _bundle_targets(names: Sequence[str], units: Mapping[str, str], y_train: np.ndarray | None,
                    predictions: Sequence[Any] | None = None) -> list[Any]:
    """The manifest's targets, each regression target with the in-control distribution of its predictions (read by
    the edge's prediction-drift CUSUM): ``predictions`` (:func:`trainer.prediction_stats.prediction_stats`: held-out
    predictions plus the line's noise), else the training reference values."""
    from edge.bundle import Target, TargetStats

    out = []
    for j, name in enumerate(names):
        stats = None
        p = None if predictions is None else predictions[j]
        if p is not None and y_train is not None and p.std > 0:
            stats = TargetStats(mean=p.mean, std=p.std, n=p.n)
        elif y_train is not None and y_train.shape[0] >= 2 and float(np.std(y_train[:, j])) > 0:
            stats = TargetStats(mean=float(np.mean(y_train[:, j])), std=float(np.std(y_train[:, j])),
                                n=int(y_train.shape[0]))
        out.append(Target(name=str(name), unit=units.get(name, ""), training=stats))
    return out




def _line_pipeline(
    edge_pipe: Any, cfg: TrainConfig, wavelengths: np.ndarray, unit: str, X_golden: np.ndarray,
    min_ratio: float = MIN_RATIO,
) -> tuple[Any, GoldenInputs]:
    """The bundle's pipeline from what the device sends to the model's input, and golden vectors expressed that way.

    The trained preprocessing is preceded by a resampling onto the training axis (a device whose calibrated axis
    differs from it but covers it is served on the model's grid; one that does not cover it is refused) and, when
    the instrument sends counts, by the counts -> ``quantity`` conversion with the device's dark and white
    references.
    """
    from edge.bundle import counts_from_signal
    from edge.preprocess import CountsConversion, InputContract, Pipeline, Resample

    grid = np.asarray(wavelengths, dtype=np.float64)
    steps: list[Any] = [Resample(grid=grid, unit=unit), *edge_pipe.steps]
    golden = GoldenInputs(inputs=X_golden, wavelengths=grid)
    if cfg.instrument.signal == "counts":
        quantity = cfg.instrument.quantity
        steps.insert(0, CountsConversion(quantity=quantity, min_ratio=min_ratio))
        counts, dark, white = counts_from_signal(X_golden, quantity)
        golden = GoldenInputs(inputs=counts, dark=dark, reference=white, wavelengths=grid)
    # Any pixel count: the resampling step reads the device's axis; the range is what it must cover.
    contract = InputContract(None, float(grid.min()), float(grid.max()), unit)
    return Pipeline(tuple(steps), contract), golden




def _line_contract(pipe: Any, cfg: TrainConfig, wavelengths: np.ndarray) -> dict[str, Any]:
    """Input contract of a bundle that resamples: any device axis covering the training range with at least as
    many pixels as the training axis, in the signal the instrument sends."""
    return make_input_contract(
        pixel_count_min=int(len(wavelengths)),
        # the largest pixel count a device may send: uint16 pixels in the protocol's largest frame
        pixel_count_max=max(max_spectrum_pixels("counts"), int(len(wavelengths))),
        wavelength_min=float(np.min(wavelengths)),
        wavelength_max=float(np.max(wavelengths)),
        frame_signal=cfg.instrument.signal,
    )
