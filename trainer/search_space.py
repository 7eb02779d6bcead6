"""The search space of the CNN recipe search (:mod:`trainer.search`): what a trial may sample, kept to what
:mod:`trainer.models` and :mod:`trainer.augment` build, and the configured recipe every new study starts from
(then the same recipe with its input rescaled)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trainer.models import LINEAR_STARTS

if TYPE_CHECKING:
    from trainer.search import SearchInputs

__all__ = ["configured_recipe", "rescaled_recipe", "suggest_recipe"]

#: User attribute marking the configured recipe's trial.
_CONFIGURED = "configured"
#: User attribute marking the trial of the configured recipe with its input's scaling swapped.
_RESCALED = "rescaled"
#: The input scalings the rescaled trial swaps: an autoscaled input is tried centred, and any other autoscaled.
_SCALINGS = ("center", "autoscale")

# The search space (kept to what trainer.models and trainer.augment build).
_DEPTHS = (1, 3)
#: 1 filter with a wide kernel and a stack of dense layers: the Cui & Fearn (2018) NIR-calibration CNN.
_FIRST_FILTERS = (1, 4, 8, 16)
_GROWTH = (1, 2)
_MAX_FILTERS = 64
_KERNELS = (3, 5, 7, 9, 15, 21, 41)
_STRIDES = (1, 2, 4)
_DENSE = (0, 16, 32, 64)
#: Hidden dense layers (with dense units u: u, u/2, u/4, ...).
_DENSE_LAYERS = (1, 2, 3)
#: The activation of every sampled recipe. ELU is not sampled although it keeps a single conv filter alive where
#: ReLU can switch it off: TFLite has no 16-bit ELU kernel, so an ELU network gets no int16x8 conversion, and its int8
#: model strayed 8 % (wheat, 0.918) and 37 % (gasoline, a recipe the search chose: 1.37) from the float network.
#: A configured recipe (``[model] activation``, trial 0) may still use it, as examples/wheat_protein.toml does.
_SEARCH_ACTIVATION = "relu"
_DROPOUT = (0.0, 0.3)
_L2 = (1e-6, 1e-2)
_LR = (3e-4, 1e-2)
_ENSEMBLE = (1, 3)
_COPIES = (0, 1, 2, 4)
#: Augmentation spreads: offset, slope and noise in units of the training spectra's baseline spread (the standard
#: deviation of the per-spectrum mean absorbance), the scale as a fraction, the shift in channels.
_AUG_OFFSET = (0.0, 0.5)
_AUG_SLOPE = (0.0, 0.5)
_AUG_NOISE = (0.0, 0.05)
_AUG_SCALE = (0.0, 0.05)
_AUG_SHIFT = (0.0, 2.0)


def configured_recipe(inputs: SearchInputs) -> dict[str, Any]:
    """The recipe the config describes (the first trial of a new study)."""
    recipe = {"candidate": inputs.base_candidate, "model": dict(inputs.base_model),
              "augment": dict(inputs.base_augment), _CONFIGURED: True}
    if inputs.pretrain is not None:
        recipe["pretrain"] = True
    return recipe


def rescaled_recipe(inputs: SearchInputs) -> dict[str, Any] | None:
    """The configured recipe with its input's last step swapped between ``autoscale`` and ``center`` (a candidate
    ending in neither gains ``autoscale``): the second trial of a new study. Which of the two suits a CNN depends on
    the data, by a wide margin both ways (docs/training.md, "The CNN's input"). None for a candidate with a
    ``stack`` step, whose branches must keep their own scales."""
    steps = [dict(s) for s in inputs.candidates[inputs.base_candidate]]
    if any(s.get("op") == "stack" for s in steps):
        return None
    last = steps[-1].get("op") if steps else None
    swapped = "center" if last == "autoscale" else "autoscale"
    steps = (steps[:-1] if last in _SCALINGS else steps) + [{"op": swapped}]
    recipe = {**configured_recipe(inputs), "candidate": f"{inputs.base_candidate}~{swapped}", "steps": steps,
              _RESCALED: True}
    del recipe[_CONFIGURED]
    return recipe


def suggest_recipe(trial: Any, inputs: SearchInputs) -> dict[str, Any]:
    """Sample one recipe; keys of ``[model]`` the search does not set (batch size, schedule, loss, ...) keep their
    configured values."""
    names = list(inputs.candidates)
    cand = trial.suggest_categorical("preprocessing", names) if len(names) > 1 else names[0]
    depth = trial.suggest_int("depth", *_DEPTHS)
    f0 = trial.suggest_categorical("filters", _FIRST_FILTERS)
    growth = trial.suggest_categorical("filter_growth", _GROWTH)
    filters = [min(_MAX_FILTERS, f0 * growth**i) for i in range(depth)]
    kernels = [trial.suggest_categorical(f"kernel{i}", _KERNELS) for i in range(depth)]
    strides = [trial.suggest_categorical(f"stride{i}", _STRIDES) for i in range(depth)]
    dense = trial.suggest_categorical("dense_units", _DENSE)
    n_dense = trial.suggest_categorical("dense_layers", _DENSE_LAYERS) if dense else 0
    epochs_max = int(inputs.base_model.get("epochs", 200))
    epochs_min = max(5, epochs_max // 4)
    model = dict(inputs.base_model)
    model.update(
        filters=filters,
        kernel_sizes=kernels,
        strides=strides,
        dense_units=[max(1, dense // 2**i) for i in range(n_dense)],
        activation=_SEARCH_ACTIVATION,
        linear_path=(linear := trial.suggest_categorical("linear_path", (False, True))),
        # A regression's linear path may start at PLS (trainer.linear_start): the network then learns its residual.
        linear_start=trial.suggest_categorical("linear_start", LINEAR_STARTS)
        if linear and not inputs.n_classes else "none",
        dropout=trial.suggest_float("dropout", *_DROPOUT),
        l2=trial.suggest_float("l2", *_L2, log=True),
        learning_rate=trial.suggest_float("learning_rate", *_LR, log=True),
        epochs=trial.suggest_int("epochs", epochs_min, epochs_max, log=True) if epochs_max > epochs_min
        else epochs_max,
        ensemble_size=trial.suggest_int("ensemble_size", *_ENSEMBLE),
    )
    copies = trial.suggest_categorical("aug_copies", _COPIES)
    augment: dict[str, Any] = {"n_copies": copies}
    if copies:
        unit = inputs.baseline_sd_abs
        augment.update(
            offset_sd_abs=trial.suggest_float("aug_offset", *_AUG_OFFSET) * unit,
            slope_sd_abs=trial.suggest_float("aug_slope", *_AUG_SLOPE) * unit,
            noise_sd_abs=trial.suggest_float("aug_noise", *_AUG_NOISE) * unit,
            scale_sd=trial.suggest_float("aug_scale", *_AUG_SCALE),
            shift_sd_channels=trial.suggest_float("aug_shift", *_AUG_SHIFT),
        )
    recipe = {"candidate": cand, "model": model, "augment": augment}
    if inputs.pretrain is not None:
        recipe["pretrain"] = trial.suggest_categorical("pretrain", (False, True))
    return recipe
