"""PLS as a bundle carries it: each target's tuned PLS (its preprocessing and latent variables) as one linear map on
one preprocessing pipeline, and PLS-DA as class probabilities; :mod:`trainer.champion` compares them with the CNN.

A bundle's PLS member has one pipeline. When the targets' cross-validation chose different preprocessings, they
become the branches of one ``stack`` step (:class:`edge.preprocess.stack.Stack`), each branch fitted on the rows as
that candidate alone would be, and each target's coefficients sit on its own branch, zeros on the others: every
target is served by the very PLS the baseline tuned for it, not by a compromise. Only where the candidates cannot
share a stack does one candidate serve every target (:func:`deployable_pls`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer.pls import PlsBaseline, cv_predictions_all_k, flatten_features, linear_map
from trainer.splits import grouped_folds

log = logging.getLogger("trainer.champion")  # the champion rule's log: the deployed PLS is one of its decisions

__all__ = ["DeployablePls", "TEMPERATURE_GRID", "deployable_pls", "deployable_plsda", "fit_temperature", "softmax"]

#: Ops a stack branch cannot hold (:class:`edge.preprocess.stack.Stack`): a nested stack, and the device-axis steps
#: that belong before a stack.
_NOT_IN_BRANCH = frozenset({"stack", "counts", "resample"})


@dataclass(frozen=True)
class DeployablePls:
    """PLS as the bundle carries it: fitted preprocessing (trainer pipeline with ``to_edge()``) and one linear map.

    Attributes
    ----------
    candidate : str
        The preprocessing candidate; ``"a+b"`` where targets chose different ones, stacked as branches.
    n_components : dict of str to int
        Latent variables per target.
    preprocess : object
        Fitted on the training rows.
    coef : ndarray, shape (n_features, n_targets)
        Regression coefficients on the flattened preprocessed spectrum.
    intercept : ndarray, shape (n_targets,)
    feature_shape : tuple of int
        Shape of one preprocessed spectrum.
    cv_rmse : ndarray, shape (n_targets,)
        Cross-validated RMSE of this deployable model per target (its candidate's curve at its latent variables):
        what the champion rule compares the CNN with.
    steps : list of dict
        The preprocessing op specs (a candidate's, or one ``stack`` step of several): what the bundle carries.
    branch_of : tuple of int or None
        Per target, the stack branch its coefficients sit on; None without a stack of candidates.
    branches : tuple of str
        The candidate of each stack branch, in order; empty without a stack of candidates.
    """

    candidate: str
    n_components: Mapping[str, int]
    preprocess: Any
    coef: np.ndarray
    intercept: np.ndarray
    feature_shape: tuple[int, ...]
    cv_rmse: np.ndarray
    steps: Sequence[Mapping[str, Any]] = ()
    branch_of: tuple[int, ...] | None = None
    branches: tuple[str, ...] = ()
    #: PLS-DA only: the softmax temperature that turns its responses (one per class) into class probabilities.
    temperature: float | None = None

    def predict(self, X_abs: np.ndarray) -> np.ndarray:
        """Predictions (n, n_targets) in float64, for absorbance spectra (PLS-DA: class probabilities)."""
        Xp = flatten_features(self.preprocess.transform(np.asarray(X_abs, dtype=np.float64)))
        out = Xp @ self.coef + self.intercept
        return out if self.temperature is None else softmax(out / self.temperature)

    def keras_model(self) -> Any:
        """One dense layer with the coefficients; PLS-DA: divided by the temperature, with a softmax.

        A stacked input (channels, branches) gets the same linear map as one convolution whose kernel spans every
        channel, then a mean over its single output position: no reshape, whose converted graph would fix the batch
        at one row and stop the edge from running a batch of frames in one invoke."""
        import keras

        inp = keras.Input(self.feature_shape)
        t = 1.0 if self.temperature is None else self.temperature
        activation = None if self.temperature is None else "softmax"
        n_out = self.coef.shape[1]
        kernel = (self.coef / t).astype(np.float32)
        if len(self.feature_shape) > 1:
            layer = keras.layers.Conv1D(n_out, int(self.feature_shape[0]), name="pls")
            out = keras.layers.Activation(activation, name="pls_out")(
                keras.layers.GlobalAveragePooling1D(name="pls_position")(layer(inp)))
            kernel = kernel.reshape(*self.feature_shape, n_out)
        else:
            layer = keras.layers.Dense(n_out, name="pls", activation=activation)
            out = layer(inp)
        model = keras.Model(inp, out, name="pls")
        layer.set_weights([kernel, (self.intercept / t).astype(np.float32)])
        return model


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (n, k) scores."""
    e = np.exp(z - np.max(z, axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


#: Softmax temperatures tried for PLS-DA (log-spaced; its responses are about 0..1 per class).
TEMPERATURE_GRID = tuple(float(t) for t in np.geomspace(0.01, 2.0, 60))


def fit_temperature(responses: np.ndarray, y: np.ndarray) -> float:
    """The temperature of :data:`TEMPERATURE_GRID` whose softmax of ``responses`` (n, k) gives the smallest
    cross-entropy of the classes ``y`` (n,): temperature scaling, fitted on out-of-fold responses."""
    idx = np.asarray(y, dtype=np.int64).reshape(-1)
    losses = [-float(np.mean(np.log(np.maximum(softmax(responses / t)[np.arange(idx.size), idx], 1e-12))))
              for t in TEMPERATURE_GRID]
    return TEMPERATURE_GRID[int(np.argmin(losses))]


def deployable_plsda(
    pls: PlsBaseline,
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    candidates: Mapping[str, Sequence[Mapping[str, Any]]],
    make_pre: Callable[[Sequence[Mapping[str, Any]]], Any],
    folds: int,
    seed: int,
    measured: int | None = None,
) -> DeployablePls:
    """PLS-DA as a bundle carries it: the baseline's model (its preprocessing and latent variables, one response per
    class, fitted on the training rows ``X``) as one linear map, with a softmax whose temperature is fitted on the
    responses of grouped, class-stratified cross-validation of the same recipe (:func:`fit_temperature`).
    ``cv_rmse`` holds its cross-validated error rate on the first ``measured`` rows (all by default: the measured
    spectra, when line copies follow them), the rows the CNN's out-of-fold error rate is counted on."""
    model = pls.models[0]
    labels = np.asarray(y, dtype=np.int64).reshape(-1)
    n_classes = len(pls.class_names) if pls.class_names is not None else int(labels.max()) + 1
    P = model.preprocess.transform(np.asarray(X, dtype=np.float64))
    coef, b0 = linear_map(model.pls, flatten_features(P).shape[1])
    # Out-of-fold responses of the same recipe (its preprocessing and latent variables), class-stratified folds.
    oof = cv_predictions_all_k(np.asarray(X, dtype=np.float64), np.eye(n_classes)[labels],
                               candidates[model.candidate], grouped_folds(groups, folds, seed=seed, y_class=labels),
                               model.n_components, make_pre, per_target=False)[model.n_components - 1]
    temperature = fit_temperature(oof, labels)
    n = labels.size if measured is None else int(measured)
    error = float(np.mean(np.argmax(oof[:n], axis=1) != labels[:n]))
    log.info("deployable PLS-DA: %s, %d latent variables, softmax temperature %.3g (out of fold: error rate %.3f)",
             model.candidate, model.n_components, temperature, error)
    return DeployablePls(candidate=model.candidate, n_components={model.targets[0]: model.n_components},
                         preprocess=model.preprocess, coef=coef, intercept=b0,
                         feature_shape=tuple(int(s) for s in P.shape[1:]), cv_rmse=np.array([error]),
                         steps=list(candidates[model.candidate]), temperature=temperature)


def deployable_pls(
    pls: PlsBaseline,
    X: np.ndarray,
    Y: np.ndarray,
    *,
    candidates: Mapping[str, Sequence[Mapping[str, Any]]],
    make_pre: Callable[[Sequence[Mapping[str, Any]]], Any],
) -> DeployablePls:
    """Each target's PLS1, with its own preprocessing and latent variables, as one linear map on one pipeline.

    Targets that chose different candidates get them as branches of one ``stack`` step (module docstring), so each is
    served by the PLS its cross-validation chose. Where the candidates cannot share a stack (one is a stack itself or
    holds a ``counts`` or ``resample`` step, or their outputs differ in length) one candidate serves every target:
    the one whose RMSECV, relative to each target's best, is smallest on average, each target keeping its own latent
    variables, chosen on that candidate's cross-validation curve. The champion rule compares the CNN with this model
    (``cv_rmse``), the one that would be deployed.
    """
    from sklearn.cross_decomposition import PLSRegression

    models = pls.models
    chosen = list(dict.fromkeys(m.candidate for m in models))
    why = _unstackable(chosen, X, candidates, make_pre) if len(chosen) > 1 else None
    if len(chosen) > 1 and why is None:
        return _stacked(pls, X, Y, chosen, candidates=candidates, make_pre=make_pre)
    if len(chosen) == 1:
        cand = chosen[0]
    else:
        def cost(c: str) -> float:
            return float(np.mean([np.min(m.cv_curves[c]) / min(np.min(v) for v in m.cv_curves.values())
                                  for m in models]))
        cand = min(candidates, key=cost)
        log.info("deployable PLS: targets chose %s, which cannot share a stack (%s); one preprocessing for all: %s",
                 chosen, why, cand)
    pre = make_pre(candidates[cand]).fit(X)
    P = pre.transform(X)
    Xp = flatten_features(P)
    coefs, intercepts, ks, cv = [], [], {}, []
    for j, m in enumerate(models):
        k = int(np.argmin(m.cv_curves[cand])) + 1 if cand != m.candidate else m.n_components
        cv.append(float(np.asarray(m.cv_curves[cand])[k - 1]))
        k = min(k, Xp.shape[0] - 1, Xp.shape[1])
        c, b0 = linear_map(PLSRegression(n_components=k, scale=False).fit(Xp, Y[:, j]), Xp.shape[1])
        coefs.append(c[:, 0])
        intercepts.append(float(b0[0]))
        ks[m.targets[0]] = k
    return DeployablePls(
        candidate=cand,
        n_components=ks,
        preprocess=pre,
        coef=np.stack(coefs, axis=1),
        intercept=np.asarray(intercepts),
        feature_shape=tuple(int(s) for s in P.shape[1:]),
        cv_rmse=np.asarray(cv),
        steps=list(candidates[cand]),
    )


def _common_prefix(names: Sequence[str], candidates: Mapping[str, Sequence[Mapping[str, Any]]]) -> int:
    """How many leading steps every candidate of ``names`` shares (a common crop, say): they go before the stack."""
    steps = [list(candidates[n]) for n in names]
    k = 0
    while all(len(s) > k for s in steps) and all(dict(s[k]) == dict(steps[0][k]) for s in steps):
        k += 1
    return k


def _unstackable(names: Sequence[str], X: np.ndarray, candidates: Mapping[str, Sequence[Mapping[str, Any]]],
                 make_pre: Callable[[Sequence[Mapping[str, Any]]], Any]) -> str | None:
    """Why the candidates ``names`` cannot be the branches of one stack (after their common leading steps), or None
    when they can."""
    k = _common_prefix(names, candidates)
    for name in names:
        ops = sorted({str(s.get("op")) for s in list(candidates[name])[k:]} & _NOT_IN_BRANCH)
        if ops:
            return f"{name!r} holds {', '.join(ops)}"
    shapes = {name: make_pre(candidates[name]).fit(X).transform(X[:1]).shape[1:] for name in names}
    if len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) != 1:
        return "their outputs differ in shape: " + ", ".join(f"{n} {s}" for n, s in shapes.items())
    return None


def _stacked(pls: PlsBaseline, X: np.ndarray, Y: np.ndarray, names: Sequence[str], *,
             candidates: Mapping[str, Sequence[Mapping[str, Any]]],
             make_pre: Callable[[Sequence[Mapping[str, Any]]], Any]) -> DeployablePls:
    """The candidates ``names`` as the branches of one stack (their common leading steps before it, where the
    bundle's wavelength grid and noise level read them), each target's PLS (its candidate, its latent variables,
    fitted on ``X``) on its own branch: the tuned baseline, exactly."""
    from sklearn.cross_decomposition import PLSRegression

    k = _common_prefix(names, candidates)
    lead = [dict(s) for s in list(candidates[names[0]])[:k]]
    steps = lead + [{"op": "stack", "branches": [[dict(s) for s in list(candidates[n])[k:]] for n in names]}]
    pre = make_pre(steps).fit(X)
    P = pre.transform(X)  # (n, channels, branches)
    coef = np.zeros(P.shape[1:] + (len(pls.models),))
    intercepts, ks, cv, branch_of = [], {}, [], []
    for j, m in enumerate(pls.models):
        b = list(names).index(m.candidate)
        n_lv = min(m.n_components, P.shape[0] - 1, P.shape[1])
        c, b0 = linear_map(PLSRegression(n_components=n_lv, scale=False).fit(P[:, :, b], Y[:, j]), P.shape[1])
        coef[:, b, j] = c[:, 0]
        intercepts.append(float(b0[0]))
        ks[m.targets[0]] = n_lv
        cv.append(float(np.asarray(m.cv_curves[m.candidate])[m.n_components - 1]))
        branch_of.append(b)
    log.info("deployable PLS: targets chose %s, stacked as branches%s: %s", list(names),
             f" after their {k} common leading step(s)" if k else "",
             ", ".join(f"{m.targets[0]} <- {m.candidate} ({ks[m.targets[0]]} LV)" for m in pls.models))
    return DeployablePls(candidate="+".join(names), n_components=ks, preprocess=pre,
                         coef=coef.reshape(-1, len(pls.models)), intercept=np.asarray(intercepts),
                         feature_shape=tuple(int(s) for s in P.shape[1:]), cv_rmse=np.asarray(cv), steps=steps,
                         branch_of=tuple(branch_of), branches=tuple(names))
