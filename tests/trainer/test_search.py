"""Tests of trainer.search (the Optuna search of the CNN recipe), its [search] config, its CLI and the linear path
of trainer.models.

The study mechanics (configured recipe first, pruning, budget, best trial, seed spread, resuming a study) run with a
stand-in for the cross-validation, so they need no TensorFlow; the CLI tests train tiny CNNs on the simulator's
synthetic spectra in child processes (two workers filling one SQLite study, a fit that searches, a fit whose budget
is 0).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.tiny_fit import TINY_DATA
from trainer.config import SearchConfig, parse_config
from trainer.errors import TrainConfigError

optuna = pytest.importorskip("optuna")

REPO = Path(__file__).resolve().parents[2]

#: A config small enough for a CNN cross-validation in seconds: 60 synthetic spectra of 32 channels, 6 epochs.
TINY = """
seed = 0
report = false
""" + TINY_DATA + """[preprocessing.candidates]
center = [{ op = "center" }]
snv = [{ op = "snv" }, { op = "autoscale" }]
[model]
filters = [4]
kernel_sizes = [5]
strides = [2]
dense_units = []
epochs = 4
log_every = 100
[intervals]
coverage = 0.8
"""

SEARCH_TABLE = """
[search]
trials = 3
budget_min = 5
spread_seeds = 2
"""


def _cfg(extra: str = "") -> Any:
    return parse_config(TINY + extra, base_dir=".")


# ------------------------------------------------------------------------------------------------- config and CLI
def test_no_search_table_means_no_search() -> None:
    sc = _cfg().search
    assert not sc.enabled and not sc.active


def test_empty_search_table_turns_it_on_with_defaults() -> None:
    sc = _cfg("[search]\n").search
    assert sc.active
    assert (sc.trials, sc.budget_min, sc.storage, sc.spread_seeds) == (40, 8.0, "search.db", 3)
    assert sc.folds is None and sc.study_name is None and sc.seed is None


@pytest.mark.parametrize("body", ["enabled = false", "budget_min = 0", "trials = 0"])
def test_search_off_by_key(body: str) -> None:
    assert not _cfg(f"[search]\n{body}\n").search.active


@pytest.mark.parametrize(("body", "key"), [("trials = -1", "search.trials"), ("budget_min = -2", "search.budget_min"),
                                         ("folds = 1", "search.folds"), ("spread_seeds = 0", "search.spread_seeds"),
                                         ("storage = ''", "search.storage"), ("budget = 3", "search.budget")])
def test_bad_search_keys_are_named(body: str, key: str) -> None:
    with pytest.raises(TrainConfigError, match=key.replace(".", r"\.")):
        _cfg(f"[search]\n{body}\n")


def test_budget_min_flag_overrides_the_config() -> None:
    from trainer.cli import _apply_search_overrides

    on = _cfg("[search]\nbudget_min = 4\n")
    assert _apply_search_overrides(on, 0.0).search.active is False
    assert _apply_search_overrides(on, 1.5).search.budget_min == 1.5
    # --budget-min M > 0 searches a config without a [search] table, with the table's defaults otherwise.
    off = _cfg()
    forced = _apply_search_overrides(off, 2.0).search
    assert forced.active and forced.budget_min == 2.0 and forced.trials == SearchConfig.from_dict({}).trials
    # An explicit enabled = false is respected.
    assert not _apply_search_overrides(_cfg("[search]\nenabled = false\n"), 2.0).search.active
    with pytest.raises(ValueError, match="--budget-min"):
        _apply_search_overrides(on, -1.0)


def test_storage_resolution(tmp_path: Path) -> None:
    from trainer.search import resolve_storage

    url, kind = resolve_storage("search.db", tmp_path / "out")
    assert kind == "sqlite" and url == f"sqlite:///{(tmp_path / 'out' / 'search.db').resolve()}"
    assert resolve_storage("postgresql://u:p@db.example:5432/studies", tmp_path) == (
        "postgresql://u:p@db.example:5432/studies", "postgresql")
    assert resolve_storage("mysql+pymysql://u@h/s", tmp_path)[1] == "mysql"


# ------------------------------------------------------------------------------------------------- linear path
def test_linear_path_feeds_the_input_to_the_output_layer() -> None:
    pytest.importorskip("keras")
    from trainer.models import CNNConfig, build_cnn

    cfg = CNNConfig(filters=(2,), kernel_sizes=(3,), strides=(4,), dense_units=(), dropout=0.0, batch_norm=False,
                    linear_path=True)
    model = build_cnn((16, 2), cfg, n_outputs=3)
    kernel = model.layers[-1].get_weights()[0]
    assert kernel.shape == (4 * 2 + 16 * 2, 3)  # conv features (16/4 x 2 filters) + the flattened input
    plain = build_cnn((16, 2), CNNConfig(filters=(2,), kernel_sizes=(3,), strides=(4,), dense_units=()), n_outputs=3)
    assert plain.layers[-1].get_weights()[0].shape == (8, 3)
    # Conv weights at zero: the output is exactly the linear path, W_x x + b.
    for layer in model.layers:
        if layer.name.endswith("_conv0"):
            layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    x = np.random.default_rng(0).normal(size=(5, 16, 2)).astype(np.float32)
    w, b = model.layers[-1].get_weights()
    expected = x.reshape(5, -1) @ w[8:] + b
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-5)


def test_search_space_reaches_the_single_filter_wide_kernel_cnn() -> None:
    """The Cui & Fearn (2018) NIR CNN (one convolution with one wide filter, a stack of ELU dense layers) is a recipe
    the search can sample: its values are among the sampled distributions and it builds that architecture."""
    pytest.importorskip("keras")
    import keras

    from trainer.models import CNNConfig, build_cnn
    from trainer.search import SearchInputs, suggest_recipe

    rng = np.random.default_rng(0)
    inputs = SearchInputs(X=rng.normal(size=(20, 100)), Y=rng.normal(size=(20, 1)), groups=np.arange(20),
                          target_names=("y",), make_pre=lambda steps: None, candidates={"snv": [{"op": "snv"}]},
                          base_candidate="snv", base_model={"epochs": 200, "batch_norm": False},
                          base_augment={"n_copies": 0})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    dist: dict[str, Any] = {}
    for _ in range(20):  # the dense layers are sampled only where a trial has dense units
        trial = study.ask()
        suggest_recipe(trial, inputs)
        dist.update(trial.distributions)
    assert 1 in dist["filters"].choices and 41 in dist["kernel0"].choices
    assert 3 in dist["dense_layers"].choices
    # ELU is never sampled: no 16-bit kernel, so no int16x8 conversion, and its int8 strays (trainer/search.py)
    assert "activation" not in dist

    fixed = optuna.trial.FixedTrial({"depth": 1, "filters": 1, "filter_growth": 1, "kernel0": 41, "stride0": 1,
                                     "dense_units": 32, "dense_layers": 3, "linear_path": False,
                                     "dropout": 0.0, "l2": 1e-3, "learning_rate": 1e-3, "epochs": 200,
                                     "ensemble_size": 3, "aug_copies": 0})
    model_cfg = suggest_recipe(fixed, inputs)["model"]
    net = build_cnn((100,), CNNConfig.from_dict(model_cfg), n_outputs=1)
    convs = [layer for layer in net.layers if isinstance(layer, keras.layers.Conv1D)]
    dense = [layer for layer in net.layers if isinstance(layer, keras.layers.Dense)]
    assert [(c.filters, c.kernel_size, c.strides) for c in convs] == [(1, (41,), (1,))]
    assert [d.units for d in dense] == [32, 16, 8, 1]
    assert [d.activation.__name__ for d in dense[:-1]] == ["relu"] * 3
    assert model_cfg["ensemble_size"] == 3


# ------------------------------------------------------------------------------------------------- the CV hooks
def test_cnn_cv_hooks_report_each_fold_and_keep_folds_with_fold_seed() -> None:
    from trainer.champion import cnn_cv_predictions

    rng = np.random.default_rng(0)
    X, Y, groups = rng.normal(size=(30, 4)), rng.normal(size=(30, 1)), np.arange(30)

    class Identity:
        def fit(self, X: np.ndarray) -> Identity:
            return self

        def transform(self, X: np.ndarray) -> np.ndarray:
            return X

    def run(seed: int, fold_seed: int | None) -> list[np.ndarray]:
        masks: list[np.ndarray] = []
        cnn_cv_predictions(X, Y, groups, make_pre=Identity, augment_fn=lambda a, b, s: (a, b),
                           train_fn=lambda a, b, s: None, predict_fn=lambda m, a: np.zeros((a.shape[0], 1)),
                           folds=3, seed=seed, fold_seed=fold_seed,
                           on_fold=lambda i, pred, done: masks.append(done.copy()))
        return masks

    masks = run(0, None)
    assert [int(m.sum()) for m in masks] == [10, 20, 30]
    same = run(5, 0)
    assert all(np.array_equal(a, b) for a, b in zip(masks, same))
    assert not all(np.array_equal(a, b) for a, b in zip(masks, run(5, None)))


# ------------------------------------------------------------------------------------------------- the study
def _inputs() -> Any:
    from trainer.search import SearchInputs

    rng = np.random.default_rng(1)
    Y = rng.normal(size=(40, 2)) * [1.0, 10.0]
    return SearchInputs(X=rng.normal(size=(40, 8)), Y=Y, groups=np.arange(40), target_names=("a", "b"),
                        make_pre=lambda steps: None, candidates={"c1": [], "c2": [{"op": "snv"}]},
                        base_candidate="c1", base_model={"task": "regression", "learning_rate": 3e-3, "epochs": 40},
                        base_augment={})


class _Clock:
    """The search's clock in these tests: only the stand-in cross-validation advances it (a fold takes ``step_s``),
    so budgets are met or missed the same way however busy the machine is."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _fake_cv(
    calls: list[dict[str, Any]], clock: _Clock | None = None, step_s: float = 0.0
) -> Callable[..., np.ndarray]:
    """Stand-in for trainer.search.cv_predictions: the error grows with the distance of the learning rate from 3e-3
    (the configured one), reported fold by fold as the real CV does."""

    def cv(recipe: dict[str, Any], inputs: Any, *, folds: int, seed: int, fold_seed: int | None = None,
           on_fold: Callable[[int, np.ndarray, np.ndarray], None] | None = None) -> np.ndarray:
        calls.append({"seed": seed, "fold_seed": fold_seed, "recipe": recipe})
        lr = float(recipe["model"]["learning_rate"])
        err = 0.05 + abs(np.log10(lr / 3e-3)) + 0.01 * (seed % 7)
        noise = np.random.default_rng(seed).normal(size=inputs.Y.shape)
        full = inputs.Y + err * inputs.y_sd * noise
        pred = np.full(inputs.Y.shape, np.nan)
        done = np.zeros(inputs.Y.shape[0], dtype=bool)
        for i, held in enumerate(np.array_split(np.arange(inputs.Y.shape[0]), folds)):
            if clock is not None:
                clock.now += step_s
            pred[held] = full[held]
            done[held] = True
            if on_fold is not None:
                on_fold(i, pred, done)
        return pred

    return cv


def _clocked_search(monkeypatch: pytest.MonkeyPatch, step_s: float) -> Any:
    """trainer.search with the stand-in cross-validation on the test's own clock (each fold takes ``step_s``)."""
    import trainer.search as search

    clock = _Clock()
    monkeypatch.setattr(search, "_clock", clock)
    monkeypatch.setattr(search, "cv_predictions", _fake_cv([], clock, step_s=step_s))
    return search


def test_study_runs_configured_recipe_first_prunes_and_returns_the_best(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import trainer.search as search

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(search, "cv_predictions", _fake_cv(calls))
    cfg = _cfg("[search]\ntrials = 14\nbudget_min = 10\nspread_seeds = 3\nfolds = 3\n")
    lines: list[str] = []
    res = search.run_search(cfg, _inputs(), tmp_path, progress=lines.append)

    assert res.trials_run == 14 and res.trials_in_study == 14 and res.budget_note is None
    assert res.trial_log[0]["configured"] and res.trial_log[0]["state"] == "complete"
    assert calls[0]["recipe"]["model"]["learning_rate"] == 3e-3
    assert res.trials_pruned >= 1 and any(t["stopped"] == "pruned" for t in res.trial_log)
    assert sum(line.startswith("search trial ") for line in lines) == 14
    assert "budget left" in lines[0]

    study = optuna.load_study(study_name=res.study_name, storage=f"sqlite:///{tmp_path / 'search.db'}")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = min(complete, key=lambda t: t.value)
    assert res.best_trial == best.number and res.best_value == pytest.approx(best.value)
    assert res.recipe == best.user_attrs["recipe"]
    assert res.configured_value == pytest.approx(study.trials[0].value)
    assert res.best_value <= res.configured_value
    # The best trial's out-of-fold predictions come back (for the champion rule) and score as the study says.
    assert res.oof is not None and res.oof.shape == (40, 2)
    inputs = _inputs()
    assert search.score(res.oof, inputs.Y, inputs.y_sd) == pytest.approx(res.best_value)
    # Seed spread: the chosen recipe again with seeds 1 and 2, on the folds of seed 0.
    spread_calls = calls[-2:]
    assert [(c["seed"], c["fold_seed"]) for c in spread_calls] == [(1, 0), (2, 0)]
    assert all(c["recipe"] == res.recipe for c in spread_calls)
    assert res.seed_spread is not None and res.seed_spread["seeds"] == [0, 1, 2]
    assert set(res.seed_spread["std"]) == {"a", "b"} and all(v > 0 for v in res.seed_spread["std"].values())
    d = res.to_dict()
    assert d["ran"] and d["storage"] == "sqlite" and d["trials_run"] == 14 and d["best_params"] == res.best_params
    json.dumps(d, allow_nan=False)

    # A second run continues the same study: the configured recipe is not queued again.
    again = search.run_search(cfg, _inputs(), tmp_path, search=cfg.search.__class__(
        enabled=True, trials=2, budget_min=10, folds=3, spread_seeds=1))
    assert again.study_name == res.study_name and again.trials_in_study == 16 and again.trials_run == 2
    study = optuna.load_study(study_name=res.study_name, storage=f"sqlite:///{tmp_path / 'search.db'}")
    assert sum(bool(t.user_attrs.get("configured")) for t in study.trials) == 1


def test_a_recipe_that_cannot_train_fails_its_trial_not_the_search(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import trainer.search as search

    calls: list[dict[str, Any]] = []
    good = _fake_cv(calls)

    def cv(recipe: dict[str, Any], inputs: Any, **kw: Any) -> np.ndarray:
        if not recipe.get("configured"):
            raise RuntimeError("out of memory")  # what TensorFlow may raise for a sampled recipe
        return good(recipe, inputs, **kw)

    monkeypatch.setattr(search, "cv_predictions", cv)
    res = search.run_search(_cfg("[search]\ntrials = 3\nfolds = 3\nspread_seeds = 1\n"), _inputs(), tmp_path)
    assert res.trials_run == 3 and res.trials_failed == 2 and res.best_trial == 0
    assert [t["state"] for t in res.trial_log] == ["complete", "fail", "fail"]
    assert [t["error"] for t in res.trial_log] == [None, "RuntimeError: out of memory", "RuntimeError: out of memory"]


def test_search_cli_refuses_a_bad_model_table_before_any_trial(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import trainer.search as search
    from trainer.cli import main

    def never(*args: Any, **kw: Any) -> Any:
        raise AssertionError("the search started")

    monkeypatch.setattr(search, "run_search", never)
    config = tmp_path / "tiny.toml"
    config.write_text(TINY.replace("strides = [2]", "strides = [2, 2]") + SEARCH_TABLE, encoding="utf-8")
    assert main(["search", str(config), "--out", str(tmp_path / "out")]) == 1
    assert "expected equal lengths, got 1, 1, 2" in capsys.readouterr().err


def test_search_cli_fails_when_every_trial_failed(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import trainer.search as search
    from trainer.cli import main

    def cv(recipe: dict[str, Any], inputs: Any, **kw: Any) -> np.ndarray:
        raise ValueError("kernel size 99 is larger than the input")

    monkeypatch.setattr(search, "cv_predictions", cv)
    config = tmp_path / "tiny.toml"
    config.write_text(TINY + SEARCH_TABLE, encoding="utf-8")
    assert main(["search", str(config), "--out", str(tmp_path / "out"), "--trials", "2"]) == 1
    out, err = capsys.readouterr()
    assert "2 run by this worker (0 pruned, 2 failed)" in out
    assert "every trial this worker ran failed (2)" in err and "kernel size 99 is larger" in err


def test_study_name_follows_config_and_data() -> None:
    from trainer.search import study_name_for

    inputs = _inputs()
    a = study_name_for(_cfg(), inputs, 3)
    assert a == study_name_for(_cfg(), inputs, 3)
    assert a != study_name_for(_cfg().__class__(**{**_cfg().__dict__, "seed": 1}), inputs, 3)
    assert a != study_name_for(_cfg(), inputs, 4)
    changed = inputs.__class__(**{**inputs.__dict__, "Y": inputs.Y + 1})
    assert a != study_name_for(_cfg(), changed, 3)
    # The line copies every trial trains on: another [instrument.noise] is another study.
    noisy = study_name_for(_cfg("[instrument.noise]\naverages = 64\ncnn_copies = 2\n"), inputs, 3)
    assert noisy != a
    assert noisy != study_name_for(_cfg("[instrument.noise]\naverages = 64\ncnn_copies = 5\n"), inputs, 3)


# ------------------------------------------------------------------------------------------------- child processes
def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", TF_NUM_INTRAOP_THREADS="1",
                TF_NUM_INTEROP_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")


@pytest.mark.slow
def test_two_workers_fill_one_sqlite_study(tmp_path: Path) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY + SEARCH_TABLE, encoding="utf-8")
    out = tmp_path / "out"
    procs = [subprocess.Popen([sys.executable, "-m", "trainer.cli", "search", str(config), "--out", str(out),
                               "--trials", "2", "--worker", str(k), "--threads", "1"],
                              cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k in (0, 1)]
    results = [p.communicate(timeout=600) for p in procs]
    for p, (stdout, stderr) in zip(procs, results):
        assert p.returncode == 0, stderr[-4000:]
        assert "2 run by this worker" in stdout
    names = {line.split()[1] for stdout, _ in results for line in stdout.splitlines() if line.startswith("study:")}
    assert len(names) == 1, names  # both workers derived the same study name

    storage = f"sqlite:///{out / 'search.db'}"
    summaries = optuna.get_all_study_summaries(storage)
    assert [s.study_name for s in summaries] == list(names)
    study = optuna.load_study(study_name=names.pop(), storage=storage)
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) == 4
    assert sorted(t.user_attrs["worker"] for t in finished) == [0, 0, 1, 1]
    assert any(t.user_attrs.get("configured") for t in finished)
    best = study.best_trial
    # a config candidate, or the configured one with its scaling swapped (the second trial)
    assert best.user_attrs["recipe"]["candidate"] in ("center", "snv", "center~autoscale", "snv~center")
    oof = np.asarray(best.user_attrs["oof"])  # readable: the out-of-fold predictions, one row per training spectrum
    assert oof.ndim == 2 and oof.shape[1] == 2 and np.isfinite(oof).all()


def _fit(config: Path, out: Path, *extra: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "trainer.cli", "fit", str(config), "--out", str(out),
                           "--threads", "1", *extra], cwd=REPO, env=_env(), capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["_stdout"] = proc.stdout
    metrics["_stderr"] = proc.stderr
    return metrics


@pytest.mark.slow
def test_fit_uses_the_searched_recipe_and_reports_it(tmp_path: Path) -> None:
    config = tmp_path / "tiny.toml"
    config.write_text(TINY + SEARCH_TABLE, encoding="utf-8")
    m = _fit(config, tmp_path / "out")
    s = m["search"]
    assert s["ran"] and s["trials_run"] == 3 and s["storage"] == "sqlite" and s["folds"] == 2
    assert (tmp_path / "out" / "search.db").is_file()
    assert s["best_recipe"]["candidate"] == m["preprocessing"]["cnn"]
    # The champion's CNN figure is the best trial's cross-validation.
    assert m["selection"]["cv_rmse"]["cnn_float"] == pytest.approx(s["best_cv_rmse"])
    assert s["seed_spread"]["seeds"] == [0, 1] and set(s["seed_spread"]["mean"]) == set(m["targets"])
    assert s["budget_used_s"] > 0 and len(s["trials"]) == 3
    assert [t["rescaled"] for t in s["trials"]] == [False, True, False]  # the configured input rescaled, second
    assert "search trial 0 (configured recipe)" in m["_stderr"]
    assert "search: 3 trials" in m["_stdout"]
    n_warned = len(m["warnings"])  # the fit's warnings, counted in the summary when there are any
    assert (f"warnings: {n_warned} (metrics.json warnings" in m["_stdout"]) == (n_warned > 0)


@pytest.mark.slow
def test_budget_zero_trains_the_configured_recipe_as_before(tmp_path: Path) -> None:
    plain = tmp_path / "plain.toml"
    plain.write_text(TINY, encoding="utf-8")
    searched = tmp_path / "searched.toml"
    searched.write_text(TINY + SEARCH_TABLE, encoding="utf-8")
    a = _fit(plain, tmp_path / "a")
    b = _fit(searched, tmp_path / "b", "--budget-min", "0")
    assert a["search"] == {"ran": False, "reason": "no [search] table"}
    assert b["search"] == {"ran": False, "reason": "budget_min = 0"}
    assert not (tmp_path / "b" / "search.db").exists()

    def figures(m: dict[str, Any]) -> list[tuple[str, str, str, float]]:
        return sorted((e["split"], e["target"], e["model"], e["rmsep"]) for e in m["evaluations"])

    assert figures(a) == figures(b)
    assert a["selection"]["cv_rmse"] == b["selection"]["cv_rmse"]


def test_a_classification_trial_is_scored_by_the_cross_entropy_of_its_probabilities() -> None:
    from trainer.search import SearchInputs, class_score

    prob = np.array([[0.8, 0.1, 0.1], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1], [0.0, 0.0, 1.0]])
    labels = np.array([0, 1, 1, 2])
    want = -np.mean(np.log([0.8, 0.5, 0.3, 1.0]))
    assert class_score(prob, labels) == pytest.approx(want)
    assert class_score(prob, labels, np.array([True, False, False, True])) == pytest.approx(-np.log(0.8) / 2)
    assert class_score(np.array([[1.0, 0.0]]), np.array([1])) == pytest.approx(-np.log(1e-7))  # clipped, finite
    inputs = SearchInputs(X=np.zeros((4, 8)), Y=labels[:, None].astype(np.float64), groups=np.arange(4),
                          target_names=("grade",), make_pre=lambda steps: None, candidates={"raw": []},
                          base_candidate="raw", base_model={}, base_augment={}, n_classes=3)
    assert inputs.trial_score(prob) == pytest.approx(want)
    assert inputs.cv_errors(prob) == {"grade": 0.25}  # the third row is called class 0


@pytest.mark.slow
def test_a_searched_recipe_whose_int8_model_is_refused_gives_way_to_the_configured_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The search's best recipe trains, its int8 conversion is refused (as edge.load_probe refuses a model that
    makes LiteRT abort), and the fit trains the configured recipe instead and says so, rather than dying after the
    search."""
    import importlib

    import trainer.pipeline.recipe as recipe_mod

    fit_mod = importlib.import_module("trainer.pipeline.fit")  # the package's attribute `fit` is the function
    from trainer.quantize import QuantizeError

    cfg = _cfg("[search]\ntrials = 2\n")
    searched = {"candidate": "snv", "model": {**dict(cfg.model), "task": "regression", "epochs": 3},
                "augment": dict(cfg.augment)}
    info = {"ran": True, "best_trial": 5, "best_is_configured": False, "best_recipe": searched}
    monkeypatch.setattr(recipe_mod, "_run_search", lambda *a, **k: (dict(info), None, 0))
    trained_epochs: list[int] = []
    train = fit_mod.train_network

    def train_network(c: Any, data: Any, recipe: Any, stage: Any) -> Any:
        trained_epochs.append(recipe.cnn.epochs)
        return train(c, data, recipe, stage)

    convert = fit_mod.convert_network
    why = "the converted model does not load in the edge runtime: ... killed by SIGABRT"

    def convert_network(c: Any, data: Any, net: Any, rmse: Any) -> Any:
        if len(trained_epochs) == 1:
            raise QuantizeError(why)
        return convert(c, data, net, rmse)

    monkeypatch.setattr(fit_mod, "train_network", train_network)
    monkeypatch.setattr(fit_mod, "convert_network", convert_network)
    result = fit_mod.fit_full(cfg, tmp_path)
    assert trained_epochs == [3, 4]  # the searched recipe, then the configured one ([model] epochs = 4)
    s = result.metrics["search"]
    assert s["refused"] == {"trial": 5, "why": why} and s["trained"] == "the configured recipe"
    assert result.bundle_path.is_file()
    # A refused configured recipe has nothing to give way to: the error stands, whether the search chose it or it
    # was the fallback (every conversion refused: the searched recipe, then the configured one, then the error).
    monkeypatch.setattr(recipe_mod, "_run_search", lambda *a, **k: ({**info, "best_is_configured": True}, None, 0))
    trained_epochs.clear()
    with pytest.raises(QuantizeError, match="killed by SIGABRT"):
        fit_mod.fit_full(cfg, tmp_path / "again")
    assert trained_epochs == [3]
    monkeypatch.setattr(recipe_mod, "_run_search", lambda *a, **k: (dict(info), None, 0))
    monkeypatch.setattr(fit_mod, "convert_network", lambda *a: (_ for _ in ()).throw(QuantizeError(why)))
    trained_epochs.clear()
    with pytest.raises(QuantizeError, match="killed by SIGABRT"):
        fit_mod.fit_full(cfg, tmp_path / "every")
    assert trained_epochs == [3, 4]


def test_report_says_which_recipe_was_trained() -> None:
    from trainer.report import _search_paragraph

    assert "as configured" in _search_paragraph({"ran": False, "reason": "no [search] table"})
    text = _search_paragraph({"ran": True, "storage": "sqlite", "study_name": "m-1", "trials_run": 9,
                              "trials_pruned": 3, "budget_used_s": 61.2, "trials_in_study": 9, "best_trial": 4,
                              "best_is_configured": False, "best_score": 0.21, "configured_score": 0.3,
                              "seed_spread": {"seeds": [0, 1, 2], "mean": {"fat": 0.8}, "std": {"fat": 0.05}},
                              "best_recipe": {"candidate": "snv"}})
    assert "trial 4" in text and "0.21 against 0.3" in text and "fat 0.8 +/- 0.05" in text and "snv" in text
    assert "No trial completed" in _search_paragraph({"ran": True, "best_trial": None})
    refused = _search_paragraph({"ran": True, "best_trial": 4, "best_score": 0.21, "refused": {"trial": 4, "why": "x"},
                                 "trained": "the configured recipe"})
    assert "Best: trial 4" in refused and "Its int8 model was refused</b> (x): the configured recipe" in refused
    only = _search_paragraph({"ran": True, "best_trial": 0, "best_score": 0.39, "best_is_configured": True,
                              "budget_note": "the 8 min budget held the configured recipe only"})
    assert "<b>Search budget:</b> the 8 min budget held the configured recipe only." in only
