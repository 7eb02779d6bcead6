"""``spectro-bench loop`` on a classification bundle: accuracy through the loop against the same bundle offline.

A classification bundle publishes one value per class label, its probability (unit ``probability``), and the
ANNOTATION frames carry each spectrum's class as an index into the bundle's labels (the order of its outputs; the
data set's classes are mapped onto them by :func:`benchmarks.harness.classes_in_bundle_order`).  The predicted
class is the most probable one.

Figures (JSON keys, beside the loop's accounting in :mod:`benchmarks.loop`):

- ``classes``: the bundle's class labels; ``loop_accuracy``, ``offline_accuracy`` (noise-free input, the edge's own
  code), ``replay_accuracy`` (the very frames the simulator sent, rebuilt offline), each ``{target: share}``;
- ``accuracy_difference``: loop - offline per target (goal: >= -``GOAL_ACCURACY_DROP_MAX``, the classification
  counterpart of the regression's loop RMSEP <= 1.05 x offline);
- ``loop_vs_replay_max_abs_diff``: the largest difference of a published probability from the replayed one (0: the
  loop adds nothing), ``loop_vs_replay_class_agreement``: share of received predictions whose class is the
  replay's;
- ``loop_confusion``, ``offline_confusion``: counts, rows the reference class, columns the predicted one, in the
  order of ``classes``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from benchmarks.results import markdown_table

#: Largest drop of the loop's accuracy below the same bundle offline (5 points: the regression's 1.05 x RMSEP).
GOAL_ACCURACY_DROP_MAX = 0.05


def _accuracy(pred: np.ndarray, ref: np.ndarray) -> float | None:
    ok = np.isfinite(ref) & (pred >= 0)
    return float(np.mean(pred[ok] == ref[ok])) if ok.any() else None


def _classes(probabilities: np.ndarray, k: int) -> np.ndarray:
    """The most probable of ``k`` classes in each row; -1 where a row has no finite probability."""
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1, k)
    finite = np.isfinite(p).any(axis=1)
    out = np.full(len(p), -1, dtype=np.int64)
    out[finite] = np.argmax(np.where(np.isfinite(p[finite]), p[finite], -np.inf), axis=1)
    return out


def _confusion(pred: np.ndarray, ref: np.ndarray, k: int) -> list[list[int]]:
    m = np.zeros((k, k), dtype=np.int64)
    for p, r in zip(pred, ref):
        if np.isfinite(r) and 0 <= p < k and 0 <= r < k:
            m[int(r), int(p)] += 1
    return m.tolist()


def classification_figures(bundle: Any, stream: Any, offline: Mapping[str, Any],
                           received: tuple[np.ndarray, np.ndarray], seqs: list[int],
                           order: np.ndarray) -> tuple[dict[str, Any], dict[str, Any]]:
    """(figures, goals) of a classification bundle; ``received`` is (probabilities per class label, reference
    class indices) of the received predictions in ``seqs`` order, ``order`` the stream's rows as sent."""
    labels = list(bundle.class_labels)
    target = bundle.targets[0].name
    probs, refs = received
    ref = refs[:, 0]
    loop_cls = _classes(probs, len(labels))
    off_cls, off_ref = _classes(offline["pred"][order], len(labels)), np.asarray(stream.y, dtype=np.float64)[order, 0]
    replay = offline.get("replay") or {}
    both = [i for i, s in enumerate(seqs) if s in replay]
    rep = np.array([replay[seqs[i]] for i in both], dtype=np.float64).reshape(len(both), len(labels))
    rep_cls = _classes(rep, len(labels))
    loop_acc, off_acc = _accuracy(loop_cls, ref), _accuracy(off_cls, off_ref)
    diff = None if loop_acc is None or off_acc is None else loop_acc - off_acc
    figures = {
        "with_reference": int(np.isfinite(ref).sum()),
        "classes": labels,
        "loop_accuracy": {target: loop_acc},
        "offline_accuracy": {target: off_acc},
        "replay_accuracy": {target: _accuracy(rep_cls, ref[both])} if both else None,
        "accuracy_difference": {target: diff},
        "loop_vs_replay_max_abs_diff": float(np.nanmax(np.abs(rep - probs[both]))) if both else None,
        "loop_vs_replay_class_agreement": float(np.mean(rep_cls == loop_cls[both])) if both else None,
        "replayed": len(both),
        "units": {target: "class"},
        "loop_confusion": _confusion(loop_cls, ref, len(labels)),
        "offline_confusion": _confusion(off_cls, off_ref, len(labels)),
    }
    return figures, {"accuracy_drop_max": GOAL_ACCURACY_DROP_MAX,
                     "accuracy_met": None if diff is None else diff >= -GOAL_ACCURACY_DROP_MAX}


def accuracy_table(result: Mapping[str, Any]) -> str:
    """The per-target table of a classification loop (markdown)."""
    ra = result.get("replay_accuracy") or {}

    def pct(v: Any) -> str:
        return "-" if v is None else f"{v:.1%}"

    rows = [[n, ", ".join(result["classes"]), pct(result["loop_accuracy"][n]), pct(result["offline_accuracy"][n]),
             "-" if result["accuracy_difference"][n] is None else f"{result['accuracy_difference'][n] * 100:+.1f} pt",
             pct(ra.get(n))] for n in result["loop_accuracy"]]
    return markdown_table(["target", "classes", "loop accuracy", "offline accuracy", "loop - offline",
                           "offline accuracy, same frames as sent"], rows)


def plot_confusions(plt: Any, result: Mapping[str, Any], path: str | Path) -> Any:
    """Confusion matrices of the loop and of the same bundle offline, side by side (a figure, not yet saved)."""
    labels = list(result["classes"])
    side = 3.2 + 0.45 * len(labels)
    fig, axes = plt.subplots(1, 2, figsize=(max(8.0, 2 * side), side + 1.2), squeeze=False)
    target = next(iter(result["loop_accuracy"]))
    for ax, key, acc_key, title in ((axes[0][0], "loop_confusion", "loop_accuracy", "loop"),
                                    (axes[0][1], "offline_confusion", "offline_accuracy", "offline")):
        m = np.asarray(result[key], dtype=np.int64)
        ax.imshow(m, cmap="Blues")
        for (r, c), v in np.ndenumerate(m):
            ax.text(c, r, str(v), ha="center", va="center", fontsize=8,
                    color="white" if v > 0.6 * max(int(m.max()), 1) else "black")
        acc = result[acc_key][target]
        ax.set_title(f"{title}: accuracy {'-' if acc is None else f'{acc:.1%}'}", fontsize=9)
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_xlabel(f"predicted {target}")
        ax.set_ylabel(f"reference {target}")
    return fig
