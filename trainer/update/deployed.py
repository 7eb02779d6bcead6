"""How a bundle does on the joined line spectra, run exactly as the edge runs it: each archived frame, with the
references it was judged with and the device axis, through :class:`edge.inference.InferenceEngine` (the daemon's
engine: frame contract, counts conversion, resampling, LiteRT model), then bias, RMSEP, SEP, slope and R2 per
target, and the same over time (a rolling window of lab samples, and the bias trend per day)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer.pipeline.scores import regression_metrics
from trainer.update.join import LabJoin
from trainer.update.line import LineArchive, pixel_dtype

__all__ = ["LineEvaluation", "evaluate_on_line", "line_figures", "offline_engine"]

log = logging.getLogger(__name__)

#: Seconds in a day (the bias trend's unit).
DAY_S = 86_400.0


@dataclass(frozen=True)
class LineEvaluation:
    """One bundle on the joined spectra.

    Attributes
    ----------
    pred : ndarray, shape (m, t)
        Its prediction per joined spectrum and target (NaN where the engine rejected the frame).
    rejected : dict of str to int
        Rejection reason -> spectra.
    reproduced : dict or None
        For the bundle that was on the line: spectra it predicted on the device and their largest difference from
        the prediction recomputed here (0 when the edge code is deterministic, as it is).
    """

    model_id: str
    model_version: str
    bundle_sha256: str
    pred: np.ndarray
    rejected: Mapping[str, int]
    reproduced: Mapping[str, Any] | None


def offline_engine(bundle: Any) -> Any:
    """The daemon's inference engine for ``bundle``, with reference ageing off: the daemon already judged the
    references when it predicted, and the export does not keep their capture times."""
    from edge.inference import InferenceEngine
    from edge.references import ReferencePolicy

    return InferenceEngine(bundle, reference_policy=ReferencePolicy(max_age_s=None, match_integration_time=False))


def evaluate_on_line(bundle: Any, line: LineArchive, join: LabJoin) -> LineEvaluation:
    """Run ``bundle`` on every joined spectrum as the edge does, keeping its predictions of the join's targets."""
    from edge.inference import Prediction

    engine = offline_engine(bundle)
    names = list(engine.names)
    missing = [t for t in join.targets if t not in names]
    if missing:
        raise ValueError(f"bundle {bundle.model_id} {bundle.model_version}: expected targets "
                         f"{', '.join(join.targets)}, got {', '.join(names)}")
    cols = [names.index(t) for t in join.targets]
    dtype = pixel_dtype(line, bundle)
    pred = np.full((join.rows.size, len(cols)), np.nan)
    rejected: dict[str, int] = {}
    for k, i in enumerate(join.rows):
        spectrum, refs, axis = line.frame(int(i), dtype)
        out = engine.process(spectrum, refs, wavelengths_nm=axis, now_s=float(line.received_unix_s[i]),
                             frame_signal=str(line.signal[i]))
        if isinstance(out, Prediction):
            pred[k] = np.asarray(out.values, dtype=np.float64)[cols]
        else:
            rejected[out.reason.value] = rejected.get(out.reason.value, 0) + 1
    if rejected:
        log.warning("%s %s rejected %d joined spectra: %s", bundle.model_id, bundle.model_version,
                    sum(rejected.values()), ", ".join(f"{k} {v}" for k, v in sorted(rejected.items())))
    sha = str(bundle.file_sha256)
    mine = line.bundle_sha256[join.rows] == sha
    reproduced = None
    if mine.any():
        exported = [line.target_names.index(t) if t in line.target_names else -1 for t in join.targets]
        device = np.stack([line.prediction[join.rows][:, j] if j >= 0 else np.full(join.rows.size, np.nan)
                           for j in exported], axis=1)
        both = mine[:, None] & np.isfinite(device) & np.isfinite(pred)
        diff = np.abs(device - pred)[both]
        reproduced = {"spectra": int(np.any(both, axis=1).sum()),
                      "max_abs_difference": float(diff.max()) if diff.size else 0.0}
    return LineEvaluation(model_id=str(bundle.model_id), model_version=str(bundle.model_version), bundle_sha256=sha,
                          pred=pred, rejected=rejected, reproduced=reproduced)


def _slope(y_ref: np.ndarray, y_pred: np.ndarray) -> float:
    """Least-squares slope of the prediction against the reference (1 for an unbiased calibration)."""
    if y_ref.size < 2 or float(np.ptp(y_ref)) == 0.0:
        return float("nan")
    return float(np.polyfit(y_ref, y_pred, 1)[0])


def line_figures(join: LabJoin, pred: np.ndarray, received_unix_s: np.ndarray, *, rows: np.ndarray | None = None,
                 window: int = 10) -> dict[str, Any]:
    """Per target: ``n``, ``rmsep``, ``bias``, ``sep``, ``r2``, ``slope`` and ``bias_trend_per_day`` (the slope of the
    residual against time), and ``rolling``: per lab sample in time order, the bias and RMSEP of the last ``window``
    lab samples (their spectra pooled). ``rows`` restricts to those positions of the join."""
    sel = np.arange(join.rows.size) if rows is None else np.asarray(rows)
    t_all = received_unix_s[join.rows]
    out: dict[str, Any] = {}
    for j, target in enumerate(join.targets):
        ok = sel[np.isfinite(join.y[sel, j]) & np.isfinite(pred[sel, j])]
        if ok.size == 0:
            out[target] = {"n": 0}
            continue
        yt, yp, t = join.y[ok, j], pred[ok, j], t_all[ok]
        fig: dict[str, Any] = dict(regression_metrics(yt, yp))
        fig["slope"] = _slope(yt, yp)
        fig["bias_trend_per_day"] = (float(np.polyfit((t - t[0]) / DAY_S, yp - yt, 1)[0])
                                     if ok.size > 1 and float(np.ptp(t)) > 0 else float("nan"))
        samples = list(dict.fromkeys(join.sample[ok]))  # in time order (the join is sorted by time)
        rolling = []
        for s in range(len(samples)):
            keep = np.isin(join.sample[ok], samples[max(0, s + 1 - window): s + 1])
            err = yp[keep] - yt[keep]
            last = np.flatnonzero(join.sample[ok] == samples[s])[-1]
            rolling.append({"unix_s": float(t[last]), "samples": int(min(window, s + 1)),
                            "bias": float(err.mean()), "rmsep": float(np.sqrt(np.mean(err**2)))})
        fig["rolling"] = rolling
        out[target] = fig
    return out
