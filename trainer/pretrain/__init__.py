"""Self-supervised pretraining of the CNN's convolutional trunk on unlabeled spectra (``[pretrain]``).

The CNN's trunk (its ``Conv1D`` blocks) is pretrained to reconstruct corrupted unlabeled spectra (masked bands,
noise: :mod:`~trainer.pretrain.trunk`), then the CNN is built on it and fine-tuned on the labeled rows with every
weight trainable (:func:`trainer.models.train_cnn` ``trunks``). The unlabeled spectra
(:mod:`~trainer.pretrain.unlabeled`) go through the **same fitted preprocessing** as the labeled rows of the
training (fitted on those labeled training rows only); they feed only the reconstruction loss.

:func:`pretrain_for` is the seam the fit, its cross-validation and the recipe search call with their fitted
preprocessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainer.config.pretrain import PretrainConfig
from trainer.pretrain.trunk import PretrainResult, corrupt, pretrain_trunks
from trainer.pretrain.unlabeled import UnlabeledSpectra, load_unlabeled

__all__ = ["PretrainPlan", "PretrainResult", "UnlabeledSpectra", "corrupt", "load_unlabeled", "pretrain_for",
           "pretrain_trunks"]


@dataclass(frozen=True)
class PretrainPlan:
    """What a pretraining needs besides the fitted preprocessing: the settings and the unlabeled spectra."""

    config: PretrainConfig
    unlabeled: UnlabeledSpectra

    def summary(self, result: PretrainResult | None) -> dict[str, Any]:
        """``metrics.json`` ``pretrain``: the settings, the source, and the figures of ``result``."""
        out: dict[str, Any] = {"ran": result is not None, **self.config.to_dict(), "source": self.unlabeled.source,
                               "rows_skipped": self.unlabeled.skipped,
                               "fine_tune": "all weights trainable from the first epoch"}
        if result is not None:
            out.update(result.to_dict())
        return out


def pretrain_for(pre: Any, plan: PretrainPlan, cnn: Any, seed: int) -> PretrainResult:
    """Pretrain the trunks of the CNN ``cnn`` on ``plan``'s unlabeled spectra through ``pre``, the preprocessing
    already fitted on the labeled training rows (``pre.transform`` only: nothing is fitted on the unlabeled
    spectra). ``seed``: the training seed, unless ``[pretrain] seed`` is set."""
    Xp = pre.transform(plan.unlabeled.X)
    s = int(seed) if plan.config.seed is None else int(plan.config.seed)
    return pretrain_trunks(Xp, cnn, plan.config, seed=s, n_members=int(cnn.ensemble_size))
