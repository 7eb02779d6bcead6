"""``[pretrain]``: self-supervised pretraining of the CNN's convolutional trunk on unlabeled spectra."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.config.tables import _check_keys, _get
from trainer.errors import TrainConfigError

#: Pretext tasks :mod:`trainer.pretrain` knows.
PRETRAIN_TASKS = ("masked_bands", "denoise")
_KEYS = frozenset({"enabled", "source", "task", "epochs", "mask_width", "masks", "noise_sd", "learning_rate",
                   "batch_size", "seed"})


@dataclass(frozen=True)
class PretrainConfig:
    """``[pretrain]``: the CNN's convolutional trunk pretrained on unlabeled spectra, then fine-tuned.

    Parameters
    ----------
    enabled : bool
        ``false`` (default, also without a table): the CNN starts from random weights, as before.
    source : str
        ``"dataset"``: the spectra of every row of ``[data]`` (every split, every instrument; never their reference
        values). Otherwise a path to an ``.npz`` in the datasets' layout (``X``, ``wavelengths``; a
        ``spectro-edge export`` of counts is converted with its own dark and white references), resolved against
        the config's folder.
    tasks : tuple of str
        ``masked_bands`` (contiguous bands of the CNN input set to 0, reconstructed), ``denoise`` (Gaussian noise
        added, the clean input reconstructed), or both.
    epochs : int
        Pretraining epochs (each draws new masks and noise).
    mask_width : int
        Width of one masked band, in channels of the CNN input.
    masks : int
        Bands masked per spectrum and epoch.
    noise_sd : float
        Denoising noise, in units of each input channel's standard deviation over the unlabeled spectra.
    learning_rate : float
        Adam learning rate of the pretraining.
    batch_size : int
    seed : int or None
        Seed of the masks, noise and reconstruction heads; None: the training seed.
    """

    enabled: bool = False
    source: str = "dataset"
    path: Path | None = None
    tasks: tuple[str, ...] = ("masked_bands",)
    epochs: int = 20
    mask_width: int = 16
    masks: int = 2
    noise_sd: float = 0.1
    learning_rate: float = 1e-3
    batch_size: int = 64
    seed: int | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], base_dir: Path) -> PretrainConfig:
        w = "pretrain"
        _check_keys(d, w, _KEYS)
        source = _get(d, "source", w, str, "dataset")
        if not source.strip():
            raise TrainConfigError(f"pretrain.source: expected \"dataset\" or a path to an .npz file, got {source!r}")
        path = None
        if source != "dataset":
            path = Path(source) if Path(source).is_absolute() else base_dir / source
            if path.suffix.lower() != ".npz":
                raise TrainConfigError(f"pretrain.source: expected \"dataset\" or a path to an .npz file, got "
                                       f"{source!r}")
        task = _get(d, "task", w, (str, list), "masked_bands")
        tasks = [task] if isinstance(task, str) else task
        bad = [t for t in tasks if t not in PRETRAIN_TASKS]
        if not tasks or bad or len(set(tasks)) != len(tasks):
            raise TrainConfigError(f"pretrain.task: expected one or both of {list(PRETRAIN_TASKS)}, got {task!r}")
        ints = {k: _get(d, k, w, int, getattr(cls, k)) for k in ("epochs", "mask_width", "masks", "batch_size")}
        for k, v in ints.items():
            if v < 1:
                raise TrainConfigError(f"pretrain.{k}: expected an integer >= 1, got {v}")
        noise = _get(d, "noise_sd", w, float, cls.noise_sd)
        if not (noise > 0 and math.isfinite(noise)):
            raise TrainConfigError(f"pretrain.noise_sd: expected a positive number, got {noise!r}")
        lr = _get(d, "learning_rate", w, float, cls.learning_rate)
        if not (lr > 0 and math.isfinite(lr)):
            raise TrainConfigError(f"pretrain.learning_rate: expected a positive number, got {lr!r}")
        seed = _get(d, "seed", w, int, None)
        if seed is not None and seed < 0:
            raise TrainConfigError(f"pretrain.seed: expected an integer >= 0, got {seed}")
        return cls(enabled=_get(d, "enabled", w, bool, False), source=source, path=path,
                   tasks=tuple(sorted(tasks, key=PRETRAIN_TASKS.index)), noise_sd=float(noise),
                   learning_rate=float(lr), seed=seed, **ints)

    def to_dict(self) -> dict[str, Any]:
        """The settings for ``metrics.json``."""
        return {"source": self.source, "task": list(self.tasks), "epochs": self.epochs, "mask_width": self.mask_width,
                "masks": self.masks, "noise_sd": self.noise_sd, "learning_rate": self.learning_rate,
                "batch_size": self.batch_size, "seed": self.seed}
