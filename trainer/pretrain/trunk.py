"""Self-supervised pretraining of the CNN trunk: corrupt the (preprocessed) unlabeled spectra, reconstruct them.

Each ensemble member ``i`` gets its own trunk, built by :func:`trainer.models.build_trunk` under the member's name
(``cnn{i}``) so its weights load into :func:`trainer.models.build_cnn`'s member by layer name, topped by a small
reconstruction head (up-sampling by the trunk's total stride, two ``Conv1D`` layers, cropped to the input length).
The members train jointly in one graph, as :func:`trainer.models.train_cnn` trains them. Every epoch draws new
corruptions:

- ``masked_bands``: ``masks`` contiguous bands of ``mask_width`` channels per spectrum set to 0 in every input
  channel; the loss is the mean squared error on the masked channels only;
- ``denoise``: Gaussian noise of ``noise_sd`` times each channel's standard deviation added; the loss covers every
  channel (with both tasks the masked bands are also noised, and every channel counts).

The inputs are only spectra: no reference value reaches this module.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer.config.pretrain import PretrainConfig
from trainer.errors import TrainConfigError

__all__ = ["PretrainResult", "corrupt", "pretrain_trunks"]

log = logging.getLogger(__name__)

#: Channels of the reconstruction head's hidden convolution and its kernel width.
_HEAD_FILTERS = 16
_HEAD_KERNEL = 9


@dataclass(frozen=True)
class PretrainResult:
    """Pretrained trunks (one ``{layer name: weights}`` per member) and the figures of the pretraining.

    ``loss`` is the reconstruction loss (mean over members) after each epoch on that epoch's corruptions;
    ``final_loss`` the loss of the final trunks on a last, fresh corruption of every row and ``identity_loss`` the
    loss, on the same corruption, of returning the corrupted input unchanged (for masked bands: predicting 0 there).
    """

    trunks: tuple[dict[str, list[np.ndarray]], ...]
    rows: int
    tasks: tuple[str, ...]
    epochs: int
    loss: tuple[float, ...]
    final_loss: float
    identity_loss: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Figures for ``metrics.json`` (without the weights)."""
        return {"rows": self.rows, "task": list(self.tasks), "epochs": self.epochs,
                "reconstruction_loss": self.final_loss, "identity_loss": self.identity_loss,
                "loss_per_epoch": list(self.loss), "seconds": round(self.seconds, 2)}


def corrupt(X: np.ndarray, cfg: PretrainConfig, rng: np.random.Generator,
            channel_sd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One corruption of ``X`` (shape ``(n, length, k)``): ``(corrupted, weight)``, ``weight`` shape
    ``(n, length)`` the channels the loss counts (1) or ignores (0)."""
    n, length = X.shape[:2]
    Xc = X.copy()
    weight = np.zeros((n, length), dtype=np.float32)
    if "denoise" in cfg.tasks:
        Xc += (rng.standard_normal(X.shape) * (cfg.noise_sd * channel_sd)).astype(X.dtype)
        weight[:] = 1.0
    if "masked_bands" in cfg.tasks:
        starts = rng.integers(0, length - cfg.mask_width + 1, size=(n, cfg.masks))
        cols = starts[:, :, None] + np.arange(cfg.mask_width)[None, None, :]
        mask = np.zeros((n, length), dtype=bool)
        mask[np.arange(n)[:, None, None], cols] = True
        Xc[mask] = 0.0
        weight[mask] = 1.0
    return Xc, weight


def _masked_mse(target: np.ndarray, pred: np.ndarray, weight: np.ndarray) -> float:
    err = np.mean((np.asarray(pred, dtype=np.float64) - target) ** 2, axis=-1)
    return float(np.mean(np.sum(err * weight, axis=1) / np.maximum(np.sum(weight, axis=1), 1.0)))


def _loss_fn() -> Any:
    from keras import ops

    def masked_mse(y_true: Any, y_pred: Any) -> Any:
        target, weight = y_true[..., :-1], y_true[..., -1]
        err = ops.mean(ops.square(target - y_pred), axis=-1)
        return ops.sum(err * weight, axis=-1) / ops.maximum(ops.sum(weight, axis=-1), 1.0)

    return masked_mse


def _member(input_shape: tuple[int, ...], length: int, k: int, cnn: Any, *, name: str, seed: int) -> Any:
    """Trunk ``name`` (as :func:`trainer.models.build_cnn` builds it) plus a reconstruction head."""
    import keras
    from keras import layers

    from trainer.models import build_trunk

    seeds = iter(range(seed * 1000, seed * 1000 + 1000))

    def init() -> Any:
        return keras.initializers.HeNormal(seed=next(seeds))

    inputs = keras.Input(shape=input_shape, name=f"{name}_in")
    h = build_trunk(inputs, input_shape, cnn, name=name, init=init)
    stride = int(np.prod(cnn.strides))
    if stride > 1:
        h = layers.UpSampling1D(stride, name=f"{name}_rec_up")(h)
    h = layers.Conv1D(_HEAD_FILTERS, _HEAD_KERNEL, padding="same", activation="relu", kernel_initializer=init(),
                      name=f"{name}_rec_conv")(h)
    h = layers.Conv1D(k, _HEAD_KERNEL, padding="same", kernel_initializer=init(), name=f"{name}_rec_out")(h)
    extra = int(h.shape[1]) - length
    if extra > 0:
        h = layers.Cropping1D((0, extra), name=f"{name}_rec_crop")(h)
    return keras.Model(inputs, h, name=name)


def pretrain_trunks(X: np.ndarray, cnn: Any, cfg: PretrainConfig, *, seed: int, n_members: int) -> PretrainResult:
    """Pretrain ``n_members`` trunks of the CNN ``cnn`` (a :class:`trainer.models.CNNConfig`) on unlabeled rows.

    Parameters
    ----------
    X : ndarray, shape (n, n_features) or (n, n_features, k)
        Unlabeled spectra through the CNN's fitted preprocessing (the same fitted pipeline as the labeled rows).
    cnn : CNNConfig
    cfg : PretrainConfig
    seed : int
        Seeds the heads, the trunks' initialisers (member ``i``: ``seed + i``), the corruptions and the shuffling.
    n_members : int
        Trunks to pretrain (the ensemble size).
    """
    import keras

    from trainer.models import set_determinism, trunk_layer_names

    X = np.asarray(X, dtype=np.float32)
    if X.ndim not in (2, 3) or X.shape[0] < 1:
        raise ValueError(f"expected unlabeled spectra of shape (n, n_features) or (n, n_features, k), got {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("expected finite unlabeled spectra after preprocessing, got NaN or inf")
    input_shape = tuple(int(v) for v in X.shape[1:])
    X3 = X.reshape(X.shape[0], X.shape[1], -1)
    n, length, k = X3.shape
    if "masked_bands" in cfg.tasks and cfg.mask_width >= length:
        raise TrainConfigError(f"pretrain.mask_width: expected fewer channels than the CNN input's {length}, "
                               f"got {cfg.mask_width}")
    channel_sd = np.where(X3.std(axis=0) > 0, X3.std(axis=0), 1.0).astype(np.float32)
    set_determinism(int(seed))
    rng = np.random.default_rng(int(seed))
    t0 = time.perf_counter()
    members = [_member(input_shape, length, k, cnn, name=f"cnn{i}", seed=int(seed) + i) for i in range(n_members)]
    inputs = keras.Input(shape=input_shape, name="pretrain_in")
    joint = keras.Model(inputs, [m(inputs) for m in members], name="pretrain_joint")
    joint.compile(optimizer=keras.optimizers.Adam(learning_rate=cfg.learning_rate), loss=[_loss_fn()] * n_members)
    losses: list[float] = []
    for epoch in range(cfg.epochs):
        Xc, w = corrupt(X3, cfg, rng, channel_sd)
        target = np.concatenate([X3, w[:, :, None]], axis=-1)
        hist = joint.fit(Xc.reshape(X.shape), [target] * n_members, batch_size=cfg.batch_size, epochs=epoch + 1,
                         initial_epoch=epoch, shuffle=True, verbose=0)
        losses.append(float(hist.history["loss"][-1]) / n_members)
        if (epoch + 1) % 10 == 0 or epoch in (0, cfg.epochs - 1):
            log.info("pretrain epoch %d/%d (%d member%s, %s): reconstruction loss %.4g", epoch + 1, cfg.epochs,
                     n_members, "" if n_members == 1 else "s", "+".join(cfg.tasks), losses[-1])
    Xc, w = corrupt(X3, cfg, rng, channel_sd)
    preds = joint.predict(Xc.reshape(X.shape), batch_size=256, verbose=0)
    preds = preds if isinstance(preds, list) else [preds]
    final = float(np.mean([_masked_mse(X3, p, w) for p in preds]))
    identity = _masked_mse(X3, Xc, w)
    if not math.isfinite(final):
        raise ValueError(f"pretraining diverged: reconstruction loss {final}")
    trunks = tuple({name: [np.asarray(v) for v in m.get_layer(name).get_weights()]
                    for name in trunk_layer_names(cnn, m.name)} for m in members)
    seconds = time.perf_counter() - t0
    log.info("pretrained %d trunk(s) on %d unlabeled spectra in %.1f s: reconstruction loss %.4g (returning the "
             "corrupted input: %.4g)", n_members, n, seconds, final, identity)
    return PretrainResult(trunks=trunks, rows=n, tasks=cfg.tasks, epochs=cfg.epochs, loss=tuple(losses),
                          final_loss=final, identity_loss=identity, seconds=seconds)
