"""Scoring of ``spectro-bench drift``: what each detector said over a stream, read from what the daemon published.

Pure functions over the received messages (prediction and drift payloads as dicts), no I/O:

- :func:`detector_of` maps a drift message's ``detector`` to one of :data:`DETECTORS`;
- :func:`spectrum_index` turns a message's ``seq`` into the index of the spectrum in the stream (the position among
  the received predictions' sequence numbers: DARK and REFERENCE frames share the seq counter, so seq is not the
  index);
- :func:`alerts` gives, per detector, the indices at which its alert was raised and the mask of spectra under alert
  (a detector made of several monitors, such as the instrument health or one CUSUM per target, is in alert while
  any of them is);
- :func:`score_scenario` the detection delay of one detector in a scenario, :func:`flag_ratios` the per-spectrum
  OOD statistics over their limits (what the prediction's ``out_of_distribution`` flag says);
- :func:`predicted_values` the received predictions, :func:`cusum_in_control` whether they (and the streamed rows'
  reference values) match the mean and spread the prediction CUSUM standardises with.

>>> preds = [2, 3, 4, 5, 6]  # seqs of the received predictions; 0 and 1 were the dark and the white
>>> ev = [{"event": "raised", "detector": "ood_q", "seq": 5, "monitor_kind": "model"}]
>>> raised, mask = alerts(ev, preds)
>>> raised["q"], mask["q"].tolist()
([3], [False, False, False, True, True])
>>> score_scenario(raised["q"], onset=1, full_at=2)["delay_spectra"]
1
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["DETECTORS", "alerts", "cusum_in_control", "detector_of", "flag_ratios", "predicted_values",
           "score_scenario", "spectrum_index"]

#: The detectors the benchmark reports, in the issue's order, with the spectrum-level CUSUM (monitor kind
#: ``signal``) before the instrument health.
DETECTORS = ("t2", "q", "autoencoder", "prediction_cusum", "spectrum_level", "instrument_health")
#: Detectors whose statistic each prediction carries against its limit (``ood.<stat>`` / ``ood.<stat>_limit``).
FLAG_STATISTICS = {"t2": ("t2", "t2_limit"), "q": ("q", "q_limit"), "autoencoder": ("ae_score", "ae_limit")}


def detector_of(event: Mapping[str, Any]) -> str | None:
    """Which of :data:`DETECTORS` a drift message comes from (None for a monitor none of them covers)."""
    name = str(event.get("detector", ""))
    if name == "ood_t2":
        return "t2"
    if name == "ood_q":
        return "q"
    if name.startswith(("ood_ae", "autoencoder")):
        return "autoencoder"
    if name.startswith("prediction:"):
        return "prediction_cusum"
    if name == "spectrum_level":
        return "spectrum_level"
    if event.get("monitor_kind") == "instrument":
        return "instrument_health"
    return None


def spectrum_index(seq: int, prediction_seqs: Sequence[int]) -> int:
    """Index in the stream of the spectrum with sequence number ``seq``: how many received predictions came before
    it (``prediction_seqs`` sorted; a seq of a DARK or REFERENCE frame maps to the next spectrum)."""
    return bisect.bisect_left(prediction_seqs, seq)


def alerts(events: Sequence[Mapping[str, Any]], prediction_seqs: Sequence[int],
           n_spectra: int | None = None) -> tuple[dict[str, list[int]], dict[str, np.ndarray]]:
    """Per detector: the spectrum indices at which its alert went up, and the mask (n_spectra,) of spectra under it.

    ``events`` are drift messages in arrival order; ``n_spectra`` defaults to ``len(prediction_seqs)``.  A raised
    monitor stays in alert until its ``cleared`` message (or the end of the stream).
    """
    seqs = sorted(prediction_seqs)
    n = len(seqs) if n_spectra is None else n_spectra
    raised: dict[str, list[int]] = {d: [] for d in DETECTORS}
    mask = {d: np.zeros(n, dtype=bool) for d in DETECTORS}
    open_at: dict[str, tuple[str, int]] = {}  # monitor -> (detector, index it went up at)
    for ev in events:
        det, seq = detector_of(ev), ev.get("seq")
        if det is None or seq is None:
            continue
        i, monitor = spectrum_index(int(seq), seqs), str(ev["detector"])
        if ev.get("event") == "raised":
            if not any(d == det for d, _ in open_at.values()):
                raised[det].append(i)  # the detector goes up (another of its monitors may already be)
            open_at[monitor] = (det, i)
        elif ev.get("event") == "cleared" and monitor in open_at:
            d, start = open_at.pop(monitor)
            mask[d][start:i] = True
    for d, start in open_at.values():
        mask[d][start:] = True
    return raised, mask


def score_scenario(raised_at: Sequence[int], *, onset: int, full_at: int) -> dict[str, Any]:
    """Detection of one scenario by one detector from the indices its alert went up at.

    ``detected``: an alert went up at or after the scenario's ``onset``; ``delay_spectra``: spectra from the first
    spectrum at full size (``full_at``) to that alert (negative: during the ramp); ``delay_from_onset_spectra`` the
    same from the onset; ``false_alarms_before_onset``: alerts that went up before the onset.
    """
    after = [i for i in raised_at if i >= onset]
    first = after[0] if after else None
    return {
        "detected": first is not None,
        "delay_spectra": None if first is None else first - full_at,
        "delay_from_onset_spectra": None if first is None else first - onset,
        "raised_at_spectrum": first,
        "false_alarms_before_onset": sum(1 for i in raised_at if i < onset),
    }


def flag_ratios(predictions: Mapping[int, Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Per statistic of :data:`FLAG_STATISTICS`: statistic / limit of every received prediction in seq order
    (NaN where the prediction does not carry it)."""
    seqs = sorted(predictions)
    out = {}
    for det, (stat, limit) in FLAG_STATISTICS.items():
        values = []
        for s in seqs:
            ood = predictions[s].get("ood") or {}
            v, lim = ood.get(stat), ood.get(limit)
            values.append(float(v) / float(lim) if v is not None and lim else np.nan)
        out[det] = np.asarray(values, dtype=np.float64)
    return out


def predicted_values(predictions: Mapping[int, Mapping[str, Any]], names: Sequence[str]) -> np.ndarray:
    """Predicted value of every target (in ``names`` order) of every received prediction in seq order, shape
    (n, len(names)); NaN where a prediction does not carry a target's value."""
    rows = []
    for s in sorted(predictions):
        got = {v.get("name"): v.get("value") for v in predictions[s].get("values") or []}
        rows.append([float(got[n]) if got.get(n) is not None else np.nan for n in names])
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(names))


def cusum_in_control(values: np.ndarray, references: np.ndarray, names: Sequence[str], mean: Sequence[float],
                     std: Sequence[float]) -> dict[str, Any]:
    """Whether the in-distribution stream is in control for the prediction CUSUM, per target.

    The CUSUM standardises each prediction with the bundle's ``mean`` and ``std``; its false-alarm rate holds when
    the predictions it sees have that mean and spread (``z_mean`` near 0, ``z_sd`` near 1).  ``values`` (n, t) are
    the predictions received on in-distribution spectra, ``references`` (r, t) the reference values of the rows
    streamed: their own ``z_mean``/``z_sd`` say whether the rows themselves come from the training distribution.
    """
    out: dict[str, Any] = {}
    for j, name in enumerate(names):
        mu, sd = float(mean[j]), float(std[j])
        v = values[:, j][np.isfinite(values[:, j])]
        r = np.asarray(references, dtype=np.float64)[:, j]
        out[name] = {
            "cusum_mean": mu, "cusum_std": sd,
            "predictions": {"n": int(v.size), "mean": float(v.mean()) if v.size else None,
                            "std": float(v.std()) if v.size else None,
                            "z_mean": float((v.mean() - mu) / sd) if v.size else None,
                            "z_sd": float(v.std() / sd) if v.size else None},
            "stream_references": {"n": int(r.size), "mean": float(r.mean()), "std": float(r.std()),
                                  "z_mean": float((r.mean() - mu) / sd), "z_sd": float(r.std() / sd)},
        }
    return out
