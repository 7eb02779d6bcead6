"""Compact 1D CNNs for spectra (Keras 3): building, seeded training with early stopping, and in-graph ensembles.

Public API (stable; the orchestration in ``trainer.pipeline`` codes against it)
-------------------------------------------------------------------------------
``CNNConfig``
    Frozen record of architecture and training parameters (``CNNConfig.from_dict`` reads a config table).
``build_cnn(input_shape, config, *, n_outputs, seed=0) -> keras.Model``
    One network. ``input_shape`` is ``(n_features,)`` or ``(n_features, k)`` (``k`` stacked preprocessings, the
    edge ``Pipeline`` output without the batch axis). Regression: linear output of ``n_outputs`` targets.
    Classification: softmax over ``n_outputs`` classes.
``train_cnn(X_train, y_train, X_sel, y_sel, *, config, seed) -> TrainedCNN``
    Trains ``config.ensemble_size`` networks (initialiser seeds ``seed, seed+1, ...``) *jointly in one graph* (one
    output and one loss per member, summed; the members share no weights, so their gradients stay independent, but one
    optimizer step serves all of them: measured here, a 3-member ensemble took about 1.4x the time of one network, not
    3x) and returns **one** Keras model whose output is the average of the members (regression: in the units of ``y``;
    classification: class probabilities). ``X_sel, y_sel`` drive early stopping, the kept epoch (``restore_best``) and
    the plateau schedule; pass ``None`` for both to train a fixed number of epochs (fewer where they would pass
    ``config.max_steps`` optimizer steps). ``TrainedCNN`` carries ``model``, ``history``, ``best_epoch``,
    ``epochs_run``, ``train_seconds``, ``config``, ``seed``, ``y_mean``, ``y_scale`` and ``n_params``.
``average_members(members, input_shape) -> keras.Model``
    The in-graph average used for ensembles.

Regression targets are standardised for training (mean and standard deviation of ``y_train``) and the scaling is
folded back into the last ``Dense`` layer afterwards, so the saved model maps preprocessed spectra straight to
reference units. The int8 conversion emits standardised targets again (:func:`standardised_output_copy`), with
``standardize_y`` or without, so the int8 output step stays far below the model's error.

Training is deterministic for a given seed (``keras.utils.set_random_seed`` and TensorFlow op determinism) and logs
one progress line per ``config.log_every`` epochs through :mod:`logging` (logger ``trainer.models``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from trainer.config.tables import record_from_table
from trainer.errors import TrainConfigError

__all__ = ["CNNConfig", "LINEAR_STARTS", "TrainedCNN", "average_members", "build_cnn", "build_trunk", "load_trunk",
           "set_determinism", "train_cnn", "trunk_layer_names"]

log = logging.getLogger(__name__)

_TASKS = ("regression", "classification")
_SCHEDULES = ("constant", "cosine", "plateau")
_LOSSES = ("mse", "huber")
_ACTIVATIONS = ("relu", "elu", "selu", "gelu", "tanh", "swish")
#: ``linear_start`` values (trainer.linear_start).
LINEAR_STARTS = ("none", "pls")


@dataclass(frozen=True)
class CNNConfig:
    """Architecture and training parameters of a compact 1D CNN (and of an ensemble of them).

    Parameters
    ----------
    task : {"regression", "classification"}
    filters : tuple of int
        Output channels of each ``Conv1D`` block.
    kernel_sizes : tuple of int
        Kernel width (channels) of each block; same length as ``filters``.
    strides : tuple of int
        Stride of each block (down-sampling without pooling layers); same length as ``filters``.
    dense_units : tuple of int
        Hidden ``Dense`` layers after flattening.
    activation : str
        Hidden activation (``relu`` keeps int8 kernels simplest).
    batch_norm : bool
        Batch normalisation after each convolution (folded into it by the TFLite converter).
    dropout : float
        Dropout rate before each dense layer.
    l2 : float
        L2 penalty on every kernel.
    learning_rate : float
        Initial Adam learning rate.
    lr_schedule : {"constant", "cosine", "plateau"}
        Cosine decay to 1 % over ``epochs``, or halving after ``plateau_patience`` epochs without improvement of
        the monitored loss.
    epochs, batch_size : int
    max_steps : int or None
        At most this many optimizer steps (epochs x batches): fewer epochs on many rows (None: all ``epochs``).
    max_gmac : float or None
        At most this many billion multiply-accumulates in the training's forward passes (steps x the batch through
        every member's Conv1D and Dense layers): fewer epochs for a network made dear by a wide input (None: no
        such cap).
    early_stopping_patience : int or None
        Epochs without improvement of the selection loss before stopping; ``None`` trains all ``epochs`` (best
        weights on the selection rows are still restored when selection rows are given and
        ``restore_best`` is true).
    restore_best : bool
        Keep the weights of the epoch with the lowest selection loss.
    plateau_patience : int
    ensemble_size : int
        Networks trained with seeds ``seed .. seed+ensemble_size-1`` and averaged inside one model.
    standardize_y : bool
        Regression only: train on standardised targets, fold the scaling into the last layer.
    log_every : int
        Log a progress line every this many epochs (and at the last one).
    loss : {"mse", "huber"}
        Regression loss; Huber limits the pull of reference-value outliers.
    huber_delta : float
        Huber threshold in standardised target units (1.0 = one standard deviation of ``y_train``).
    n_classes : int or None
        Classification only: number of classes (default: largest label in ``y_train`` plus one).
    linear_path : bool
        A linear path beside the convolutions: the flattened input is concatenated with the last hidden features
        before the output layer, so the output is a linear model of the spectrum (as PLS is) plus the network's
        nonlinear correction, and can extrapolate as PLS does. The output layer's kernel then gets the L2 penalty.
    linear_start : {"none", "pls"}
        Regression with a linear path only: ``"pls"`` starts the linear path at a PLS model of the CNN's input and
        trains the network on the PLS residual (:mod:`trainer.linear_start`); the deployed graph is unchanged.
    """

    task: str = "regression"
    filters: tuple[int, ...] = (8, 16)
    kernel_sizes: tuple[int, ...] = (15, 9)
    strides: tuple[int, ...] = (2, 2)
    dense_units: tuple[int, ...] = (32,)
    activation: str = "relu"
    batch_norm: bool = True
    dropout: float = 0.1
    l2: float = 1e-4
    learning_rate: float = 3e-3
    lr_schedule: str = "cosine"
    epochs: int = 200
    batch_size: int = 32
    max_steps: int | None = 20_000
    max_gmac: float | None = 200.0
    early_stopping_patience: int | None = None
    restore_best: bool = True
    plateau_patience: int = 20
    ensemble_size: int = 1
    standardize_y: bool = True
    log_every: int = 10
    loss: str = "mse"
    huber_delta: float = 1.0
    n_classes: int | None = None
    linear_path: bool = False
    linear_start: str = "none"

    def __post_init__(self) -> None:
        for name in ("filters", "kernel_sizes", "strides", "dense_units"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if self.task not in _TASKS:
            raise TrainConfigError(f"model.task: expected one of {list(_TASKS)}, got {self.task!r}")
        if self.lr_schedule not in _SCHEDULES:
            raise TrainConfigError(f"model.lr_schedule: expected one of {list(_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.activation not in _ACTIVATIONS:
            raise TrainConfigError(f"model.activation: expected one of {list(_ACTIVATIONS)}, got {self.activation!r}")
        if not self.filters:
            raise TrainConfigError("model.filters: expected at least one convolution block, got none")
        if not (len(self.filters) == len(self.kernel_sizes) == len(self.strides)):
            raise TrainConfigError("model.filters, model.kernel_sizes, model.strides: expected equal lengths, got "
                                   f"{len(self.filters)}, {len(self.kernel_sizes)}, {len(self.strides)}")
        for name in ("filters", "kernel_sizes", "strides", "dense_units"):
            if any(v < 1 for v in getattr(self, name)):
                raise TrainConfigError(f"model.{name}: expected positive integers, got {list(getattr(self, name))}")
        if self.linear_start not in LINEAR_STARTS:
            raise TrainConfigError(f"model.linear_start: expected one of {list(LINEAR_STARTS)}, "
                                   f"got {self.linear_start!r}")
        if self.linear_start == "pls" and not (self.linear_path and self.task == "regression"):
            raise TrainConfigError("model.linear_start = 'pls': expected a regression with linear_path = true, got "
                                   f"task {self.task!r}, linear_path {self.linear_path}")
        if self.loss not in _LOSSES:
            raise TrainConfigError(f"model.loss: expected one of {list(_LOSSES)}, got {self.loss!r}")
        if not (self.huber_delta > 0 and math.isfinite(self.huber_delta)):
            raise TrainConfigError(f"model.huber_delta: expected a positive number, got {self.huber_delta}")
        if not 0.0 <= self.dropout < 1.0:
            raise TrainConfigError(f"model.dropout: expected 0 <= dropout < 1, got {self.dropout}")
        if self.l2 < 0 or not math.isfinite(self.l2):
            raise TrainConfigError(f"model.l2: expected a finite number >= 0, got {self.l2}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise TrainConfigError(f"model.learning_rate: expected a positive number, got {self.learning_rate}")
        for name in ("epochs", "batch_size", "ensemble_size", "log_every", "plateau_patience"):
            if int(getattr(self, name)) < 1:
                raise TrainConfigError(f"model.{name}: expected an integer >= 1, got {getattr(self, name)}")
        if self.n_classes is not None and self.n_classes < 2:
            raise TrainConfigError(f"model.n_classes: expected an integer >= 2 or none, got {self.n_classes}")
        if self.max_gmac is not None and not (self.max_gmac > 0 and math.isfinite(self.max_gmac)):
            raise TrainConfigError(f"model.max_gmac: expected a positive number or none, got {self.max_gmac}")
        for name in ("max_steps", "early_stopping_patience"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise TrainConfigError(f"model.{name}: expected an integer >= 1 or none, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CNNConfig:
        """Build from the ``[model]`` table: unknown keys and values of the wrong type are refused, naming the key."""
        return record_from_table(cls, d, "model")

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (tuples as lists) for ``metrics.json`` and reports."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class TrainedCNN:
    """Result of :func:`train_cnn`.

    Attributes
    ----------
    model : keras.Model
        Input ``(batch, *input_shape)``; output ``(batch, n_outputs)`` in the units of ``y`` (regression) or class
        probabilities (classification); the ensemble average is inside the graph.
    history : dict of str to list of float
        Keras history of the joint fit: ``loss`` (summed over members), ``val_loss`` when selection rows were
        given, per-member ``cnn<i>_loss``; regression losses are on standardised targets.
    best_epoch : int
        1-based epoch whose weights were kept (the last one unless selection rows and ``restore_best``).
    epochs_run : int
        Epochs actually run (fewer than ``config.epochs`` after early stopping or the ``max_steps`` and ``max_gmac``
        caps).
    train_seconds : float
        Wall-clock seconds spent training all members.
    config : CNNConfig
    seed : int
    y_mean, y_scale : ndarray, shape (n_outputs,)
        Standardisation folded into the output layer (zeros and ones for classification).
    n_params : int
        Parameters of the averaged model (all members).
    """

    model: Any
    history: dict[str, list[float]]
    best_epoch: int
    epochs_run: int
    train_seconds: float
    config: CNNConfig
    seed: int
    y_mean: np.ndarray
    y_scale: np.ndarray
    n_params: int = field(default=0)

    def fine_tune_loss(self) -> Any:
        """The training loss expressed on the model's output units, for further fine-tuning (pruning).

        Regression: ``config.loss`` (MSE or Huber with ``huber_delta``) applied to ``(y - pred) / y_scale`` and
        multiplied by ``mean(y_scale ** 2)``: up to that constant, exactly the loss the network was trained with,
        although the folded model now outputs reference units (a constant factor does not change Adam's steps).
        Classification: sparse categorical cross-entropy.
        """
        import keras

        if self.config.task == "classification":
            return "sparse_categorical_crossentropy"
        scale = np.asarray(self.y_scale, dtype=np.float32).reshape(1, -1)
        if np.all(scale == scale.flat[0]):
            # One scale for all outputs: the built-in losses on output units equal the standardised loss times
            # scale ** 2 (Huber with its threshold scaled), which Adam does not see; they are also faster.
            s = float(scale.flat[0])
            if self.config.loss == "huber":
                return keras.losses.Huber(delta=self.config.huber_delta * s)
            return keras.losses.MeanSquaredError()
        base = keras.losses.Huber(delta=self.config.huber_delta) if self.config.loss == "huber" else \
            keras.losses.MeanSquaredError()

        def standardised_loss(y_true: Any, y_pred: Any) -> Any:
            return base(y_true / scale, y_pred / scale) * float(np.mean(scale ** 2))

        return standardised_loss


def set_determinism(seed: int) -> None:
    """Seed Python, numpy and TensorFlow and make TensorFlow ops deterministic."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(int(seed))
    tf.config.experimental.enable_op_determinism()


def build_cnn(
    input_shape: tuple[int, ...], config: CNNConfig, *, n_outputs: int, seed: int = 0, name: str = "cnn"
) -> Any:
    """Build (uncompiled) one compact 1D CNN.

    Parameters
    ----------
    input_shape : tuple of int
        ``(n_features,)`` or ``(n_features, k)`` without the batch axis.
    config : CNNConfig
    n_outputs : int
        Regression targets, or classes for classification.
    seed : int
        Seed of the weight initialisers.
    name : str
        Keras model name (ensemble members get distinct names).

    Returns
    -------
    keras.Model
        Output ``(batch, n_outputs)``: linear (regression) or softmax (classification).
    """
    import keras
    from keras import layers

    if len(input_shape) not in (1, 2) or any(int(v) < 1 for v in input_shape):
        raise ValueError(f"expected input_shape (n_features,) or (n_features, k), got {input_shape}")
    if n_outputs < 1 or (config.task == "classification" and n_outputs < 2):
        raise ValueError(f"expected n_outputs >= {2 if config.task == 'classification' else 1}, got {n_outputs}")
    reg = keras.regularizers.L2(config.l2) if config.l2 > 0 else None
    seeds = iter(range(seed * 1000, seed * 1000 + 1000))

    def init() -> Any:
        return keras.initializers.HeNormal(seed=next(seeds))

    inputs = keras.Input(shape=tuple(int(v) for v in input_shape), name=f"{name}_in")
    h = build_trunk(inputs, input_shape, config, name=name, init=init, reg=reg)
    h = layers.Flatten(name=f"{name}_flat")(h)
    for i, units in enumerate(config.dense_units):
        if config.dropout > 0:
            h = layers.Dropout(config.dropout, seed=next(seeds), name=f"{name}_drop{i}")(h)
        h = layers.Dense(units, activation=config.activation, kernel_initializer=init(), kernel_regularizer=reg,
                         name=f"{name}_dense{i}")(h)
    if config.dropout > 0:
        h = layers.Dropout(config.dropout, seed=next(seeds), name=f"{name}_drop_out")(h)
    if config.linear_path:
        # The output stays one Dense layer (output scaling folds into it as before): W_h h + W_x x + b.
        lin = layers.Flatten(name=f"{name}_lin_flat")(inputs) if len(input_shape) == 2 else inputs
        h = layers.Concatenate(name=f"{name}_with_linear")([h, lin])
    out_act = "softmax" if config.task == "classification" else None
    # Started at PLS (trainer.linear_start), the network's output starts at exactly the PLS model: zero corrections.
    head_init = keras.initializers.GlorotUniform(seed=next(seeds)) if config.linear_start == "none" else "zeros"
    outputs = layers.Dense(
        n_outputs, activation=out_act, kernel_initializer=head_init,
        kernel_regularizer=reg if config.linear_path else None, name=f"{name}_out",
    )(h)
    return keras.Model(inputs, outputs, name=name)


def build_trunk(inputs: Any, input_shape: tuple[int, ...], config: CNNConfig, *, name: str, init: Any,
                reg: Any = None) -> Any:
    """The convolutional trunk of :func:`build_cnn` on ``inputs``: output ``(batch, length, config.filters[-1])``.

    Its layers with weights are named :func:`trunk_layer_names` (``{name}_conv{i}``, ``{name}_bn{i}``), so weights
    pretrained on a trunk built with the same ``name`` (:mod:`trainer.pretrain`) load into the CNN by name.
    ``init()`` returns each convolution's kernel initialiser in turn.
    """
    from keras import layers

    h = inputs
    if len(input_shape) == 1:
        h = layers.Reshape((int(input_shape[0]), 1), name=f"{name}_reshape")(h)
    for i, (f, k, s) in enumerate(zip(config.filters, config.kernel_sizes, config.strides)):
        h = layers.Conv1D(
            f, k, strides=s, padding="same", use_bias=not config.batch_norm, kernel_initializer=init(),
            kernel_regularizer=reg, name=f"{name}_conv{i}",
        )(h)
        if config.batch_norm:
            h = layers.BatchNormalization(name=f"{name}_bn{i}")(h)
        h = layers.Activation(config.activation, name=f"{name}_act{i}")(h)
    return h


def trunk_layer_names(config: CNNConfig, name: str) -> tuple[str, ...]:
    """Names of the trunk's layers that hold weights (convolutions, then batch norms if any)."""
    convs = tuple(f"{name}_conv{i}" for i in range(len(config.filters)))
    return convs + (tuple(f"{name}_bn{i}" for i in range(len(config.filters))) if config.batch_norm else ())


def load_trunk(member: Any, weights: Mapping[str, Sequence[np.ndarray]]) -> None:
    """Set the trunk layers of ``member`` (a :func:`build_cnn` model) from ``{layer name: weights}``; a layer name
    or weight shape that does not match is a ``ValueError`` naming it."""
    for lname, w in weights.items():
        try:
            layer = member.get_layer(lname)
        except ValueError as exc:
            raise ValueError(f"expected a trunk layer {lname!r} in {member.name}, got none") from exc
        have = [tuple(v.shape) for v in layer.get_weights()]
        got = [tuple(np.shape(v)) for v in w]
        if have != got:
            raise ValueError(f"expected weights of shapes {have} for {lname}, got {got}")
        layer.set_weights([np.asarray(v) for v in w])


def _check_xy(X: np.ndarray, y: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y)
    if X.ndim not in (2, 3):
        raise ValueError(f"expected X_{what} of shape (n, n_features) or (n, n_features, k), got {X.shape}")
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"expected {X.shape[0]} rows of y_{what} to match X_{what}, got {y.shape[0]}")
    if not np.isfinite(X).all():
        raise ValueError(f"expected finite X_{what}, got NaN or inf")
    return X, y


def _fold_output_scaling(member: Any, y_mean: np.ndarray, y_scale: np.ndarray) -> None:
    """Rewrite the last Dense layer so it outputs ``pred * y_scale + y_mean`` directly."""
    out = member.layers[-1]
    kernel, bias = out.get_weights()
    out.set_weights([kernel * y_scale[None, :], bias * y_scale + y_mean])


def standardised_output_copy(model: Any, y_mean: np.ndarray, y_scale: np.ndarray) -> Any:
    """A copy of a regression CNN (one member or an averaged ensemble) whose last Dense layer(s) emit standardised
    targets ``(y - y_mean) / y_scale`` instead of units: the int8 output tensor then spans a few standard deviations
    around 0 for every target instead of ``[0, max(y)]``, so its rounding step stays far below the model's error.
    The edge multiplies back in float (bundle ``output_transform``).
    """
    import keras

    # From the architecture alone: clone_model would also re-compile a compiled model, and the training loss
    # (a closure) cannot be deserialised.
    copy = type(model).from_config(model.get_config()) if isinstance(model, keras.Model) else None
    if copy is None or len(copy.weights) != len(model.weights):
        raise ValueError(f"expected a functional Keras model, got {type(model).__name__}")
    copy.set_weights(model.get_weights())
    heads = [copy.layers[-1]] if isinstance(copy.layers[-1], keras.layers.Dense) else [
        layer.layers[-1] for layer in copy.layers
        if isinstance(layer, keras.Model) and isinstance(layer.layers[-1], keras.layers.Dense)
    ]
    if not heads:
        raise ValueError("expected a model ending in a Dense layer (or an average of such members)")
    mean = np.asarray(y_mean, dtype=np.float64).reshape(-1)
    scale = np.asarray(y_scale, dtype=np.float64).reshape(-1)
    for head in heads:
        kernel, bias = head.get_weights()
        head.set_weights([(kernel / scale[None, :]).astype(kernel.dtype), ((bias - mean) / scale).astype(bias.dtype)])
    return copy


def average_members(members: list[Any], input_shape: tuple[int, ...], name: str = "ensemble") -> Any:
    """Wrap trained member models into one model whose output is their mean (a single member is returned as is)."""
    import keras

    if len(members) == 1:
        return members[0]
    inputs = keras.Input(shape=input_shape, name=f"{name}_in")
    outs = [m(inputs) for m in members]
    avg = keras.layers.Average(name=f"{name}_mean")(outs)
    return keras.Model(inputs, avg, name=name)


def train_cnn(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_sel: np.ndarray | None,
    y_sel: np.ndarray | None,
    *,
    config: CNNConfig,
    seed: int,
    trunks: Sequence[Mapping[str, Sequence[np.ndarray]]] | None = None,
) -> TrainedCNN:
    """Train a CNN (or an averaged ensemble of ``config.ensemble_size`` CNNs) on preprocessed spectra.

    Parameters
    ----------
    X_train : ndarray, shape (n, n_features) or (n, n_features, k)
        Preprocessed (and possibly augmented) training spectra.
    y_train : ndarray, shape (n,) or (n, n_targets) for regression (reference units); shape (n,) of integer class
        indices ``0..n_classes-1`` for classification.
    X_sel, y_sel : ndarray or None
        Selection rows for early stopping / best-epoch choice / plateau schedule; never the test rows.
    config : CNNConfig
    seed : int
        Seeds shuffling; member ``i`` uses ``seed + i`` for its initialisers and dropout.
    trunks : sequence of mappings, optional
        One per member: pretrained trunk weights ``{layer name: weights}`` (:mod:`trainer.pretrain`) that replace
        the member's initial convolution (and batch-norm) weights; every weight stays trainable.

    Returns
    -------
    TrainedCNN
    """
    import keras

    from trainer.fitting import capped_epochs, compile_steps, fit_arrays, forward_macs
    from trainer.training_callbacks import best_weights_callback, progress_callback

    X_train, y_train = _check_xy(X_train, y_train, "train")
    if (X_sel is None) != (y_sel is None):
        raise ValueError("expected both X_sel and y_sel, or neither")
    if X_sel is not None and y_sel is not None:
        X_sel, y_sel = _check_xy(X_sel, y_sel, "sel")
        if X_sel.shape[1:] != X_train.shape[1:]:
            raise ValueError(f"expected X_sel rows of shape {X_train.shape[1:]}, got {X_sel.shape[1:]}")
    input_shape = tuple(int(v) for v in X_train.shape[1:])

    if config.task == "classification":
        labels = y_train.astype(np.int64).ravel()
        if labels.min() < 0:
            raise ValueError(f"expected class indices >= 0, got {labels.min()}")
        n_outputs = int(labels.max()) + 1 if config.n_classes is None else int(config.n_classes)
        if n_outputs < 2:
            raise ValueError(f"expected at least 2 classes in y_train, got {n_outputs}")
        yt = labels
        ys: np.ndarray | None = None if y_sel is None else np.asarray(y_sel).astype(np.int64).ravel()
        for name, lab in (("y_train", yt), ("y_sel", ys)):
            if lab is not None and (lab.min() < 0 or lab.max() >= n_outputs):
                raise ValueError(
                    f"expected class indices in 0..{n_outputs - 1} in {name}, got {lab.min()}..{lab.max()}"
                )
        y_mean = np.zeros(n_outputs)
        y_scale = np.ones(n_outputs)
        loss: Any = "sparse_categorical_crossentropy"
    else:
        y2 = np.asarray(y_train, dtype=np.float64).reshape(len(y_train), -1)
        n_outputs = y2.shape[1]
        if config.standardize_y:
            y_mean = y2.mean(axis=0)
            y_scale = y2.std(axis=0)
            y_scale = np.where(y_scale > 0, y_scale, 1.0)
        else:
            y_mean = np.zeros(n_outputs)
            y_scale = np.ones(n_outputs)
        yt = ((y2 - y_mean) / y_scale).astype(np.float32)
        ys = None
        if y_sel is not None:
            ys = ((np.asarray(y_sel, dtype=np.float64).reshape(len(y_sel), -1) - y_mean) / y_scale).astype(np.float32)
            if ys.shape[-1] != n_outputs:
                raise ValueError(f"expected {n_outputs} targets in y_sel, got {ys.shape[-1]}")
        loss = keras.losses.Huber(delta=config.huber_delta) if config.loss == "huber" else "mse"
    start = None
    if config.linear_start == "pls":  # the network learns the PLS residual (trainer.linear_start)
        from trainer.linear_start import fit_linear_start

        start = fit_linear_start(X_train, yt, seed=int(seed))
        yt = yt - start.predict(X_train)
        ys = None if ys is None else ys - start.predict(X_sel)

    steps_per_epoch = math.ceil(len(X_train) / config.batch_size)
    k = config.ensemble_size
    set_determinism(int(seed))
    t0 = time.perf_counter()
    # All members train jointly in one graph (one output per member, losses summed, gradients independent):
    # one optimizer step serves every member, so an ensemble costs far less than k separate fits on few cores.
    members = [
        build_cnn(input_shape, config, n_outputs=n_outputs, seed=int(seed) + i, name=f"cnn{i}") for i in range(k)
    ]
    if trunks is not None:
        if len(trunks) != k:
            raise ValueError(f"expected {k} pretrained trunks (one per ensemble member), got {len(trunks)}")
        for member, weights in zip(members, trunks):
            load_trunk(member, weights)
    # The batch through every member: what one step costs, beside its fixed overhead (max_gmac).
    step_macs = float(config.batch_size * sum(forward_macs(m) for m in members))
    epochs = capped_epochs(config.epochs, len(X_train), config.batch_size, config.max_steps,
                           step_macs=step_macs, max_gmac=config.max_gmac)
    if epochs < config.epochs:
        by_steps = capped_epochs(config.epochs, len(X_train), config.batch_size, config.max_steps)
        log.info("cnn: %d epochs capped to %d by %s", config.epochs, epochs,
                 f"max_steps {config.max_steps}" if by_steps == epochs else
                 f"max_gmac {config.max_gmac:g} ({step_macs / 1e6:.1f} M multiply-accumulates a step)")
    inputs = keras.Input(shape=input_shape, name="train_in")
    joint = keras.Model(inputs, [m(inputs) for m in members], name="joint")
    if config.lr_schedule == "cosine":
        lr: Any = keras.optimizers.schedules.CosineDecay(
            config.learning_rate, decay_steps=epochs * steps_per_epoch, alpha=0.01
        )
    else:
        lr = config.learning_rate
    joint.compile(optimizer=keras.optimizers.Adam(learning_rate=lr), loss=[loss] * k,
                  **compile_steps(len(X_train), config.batch_size))  # epoch-end callbacks only (trainer.fitting)
    callbacks: list[Any] = [progress_callback(k, epochs, config.log_every, log)]
    best = best_weights_callback()
    monitor = "val_loss" if X_sel is not None else "loss"
    if X_sel is not None and config.restore_best:
        callbacks.append(best)
    if config.early_stopping_patience is not None:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=config.early_stopping_patience))
    if config.lr_schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.5, patience=config.plateau_patience,
                                              min_lr=config.learning_rate / 100)
        )
    hist = fit_arrays(joint, X_train, [yt] * k, validation=None if X_sel is None else (X_sel, [ys] * k),
                      epochs=epochs, batch_size=config.batch_size, seed=int(seed), callbacks=callbacks)
    n_run = len(hist.history["loss"])
    if best.weights is not None:
        joint.set_weights(best.weights)
        best_epoch = best.best_epoch
    else:
        best_epoch = n_run
    history = {key: [float(v) for v in vals] for key, vals in hist.history.items()}
    if config.task == "regression":
        for m in members:
            if start is not None:
                start.add_to_head(m)
            _fold_output_scaling(m, y_mean, y_scale)
    train_seconds = time.perf_counter() - t0
    model = average_members(members, input_shape)
    log.info("cnn trained %d member(s) in %.1f s (%d epochs, kept epoch %d)", k, train_seconds, n_run, best_epoch)
    return TrainedCNN(
        model=model, history=history, best_epoch=best_epoch, epochs_run=n_run, train_seconds=train_seconds,
        config=config, seed=int(seed), y_mean=np.asarray(y_mean, dtype=np.float64),
        y_scale=np.asarray(y_scale, dtype=np.float64),
        n_params=int(model.count_params()),
    )
