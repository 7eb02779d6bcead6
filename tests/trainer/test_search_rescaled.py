"""The search's second trial: the configured recipe with its input's scaling swapped (autoscale <-> center).

Which of the two suits a CNN depends on the data by a wide margin (wheat: the centred input won, tecator: the
autoscaled one), so a new study tries both before it samples; the trial's steps travel in its recipe, through the
cross-validation and into the recipe the fit trains."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tests.trainer.test_search import _cfg, _fake_cv

optuna = pytest.importorskip("optuna")


def _inputs(candidates: dict[str, list[dict[str, Any]]], base: str) -> Any:
    from trainer.search import SearchInputs

    rng = np.random.default_rng(1)
    return SearchInputs(X=rng.normal(size=(40, 8)), Y=rng.normal(size=(40, 1)), groups=np.arange(40),
                        target_names=("a",), make_pre=lambda steps: None, candidates=candidates,
                        base_candidate=base, base_model={"task": "regression", "learning_rate": 3e-3, "epochs": 40},
                        base_augment={"n_copies": 1})


SG = {"op": "savgol", "window": 5, "polyorder": 2, "deriv": 1}


@pytest.mark.parametrize(("steps", "name", "swapped"), [
    ([SG, {"op": "autoscale"}], "x~center", [SG, {"op": "center"}]),
    ([SG, {"op": "center"}], "x~autoscale", [SG, {"op": "autoscale"}]),
    ([{"op": "snv"}], "x~autoscale", [{"op": "snv"}, {"op": "autoscale"}]),
    ([], "x~autoscale", [{"op": "autoscale"}]),
])
def test_the_rescaled_recipe_swaps_the_last_scaling_and_keeps_the_rest(
        steps: list[dict[str, Any]], name: str, swapped: list[dict[str, Any]]) -> None:
    from trainer.search_space import configured_recipe, rescaled_recipe

    inputs = _inputs({"x": steps, "other": [{"op": "snv"}]}, "x")
    r = rescaled_recipe(inputs)
    assert r is not None and r["candidate"] == name and r["steps"] == swapped and r["rescaled"]
    assert "configured" not in r
    base = configured_recipe(inputs)
    assert r["model"] == base["model"] and r["augment"] == base["augment"]
    assert inputs.candidates["x"] == steps  # the config's candidate is left as it was


def test_a_stacked_input_is_not_rescaled() -> None:
    from trainer.search_space import rescaled_recipe

    stack = [{"op": "stack", "branches": [[{"op": "snv"}, {"op": "autoscale"}], [SG, {"op": "autoscale"}]]}]
    assert rescaled_recipe(_inputs({"s": stack}, "s")) is None


def test_a_new_study_runs_the_rescaled_recipe_second_and_only_once(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import trainer.search as search

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(search, "cv_predictions", _fake_cv(calls))
    cfg = _cfg("[search]\ntrials = 4\nbudget_min = 10\nspread_seeds = 1\nfolds = 2\n")
    inputs = _inputs({"as": [SG, {"op": "autoscale"}], "snv": [{"op": "snv"}]}, "as")
    lines: list[str] = []
    res = search.run_search(cfg, inputs, tmp_path, progress=lines.append)
    assert [c["recipe"].get("steps") for c in calls[:2]] == [None, [SG, {"op": "center"}]]
    assert calls[1]["recipe"]["candidate"] == "as~center"
    assert lines[1].startswith("search trial 1 (configured recipe, input rescaled): complete")
    assert not any("steps" in c["recipe"] for c in calls[2:])  # sampled trials name a config candidate

    again = search.run_search(cfg, inputs, tmp_path, search=cfg.search.__class__(
        enabled=True, trials=2, budget_min=10, folds=2, spread_seeds=1))
    study = optuna.load_study(study_name=res.study_name, storage=f"sqlite:///{tmp_path / 'search.db'}")
    assert again.trials_in_study == 6
    assert sum(bool(t.user_attrs.get("rescaled")) for t in study.trials) == 1


def test_one_trial_is_the_configured_recipe_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import trainer.search as search

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(search, "cv_predictions", _fake_cv(calls))
    cfg = _cfg("[search]\ntrials = 1\nbudget_min = 10\nspread_seeds = 1\nfolds = 2\n")
    search.run_search(cfg, _inputs({"as": [SG, {"op": "autoscale"}]}, "as"), tmp_path)
    assert len(calls) == 1 and "steps" not in calls[0]["recipe"]


def test_the_cross_validation_preprocesses_with_the_recipes_own_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    import trainer.champion as champion
    import trainer.search as search
    from trainer.search_space import rescaled_recipe

    seen: list[Any] = []
    monkeypatch.setattr(champion, "cnn_cv_predictions", lambda *a, make_pre, **k: seen.append(make_pre()))
    inputs = dataclasses.replace(_inputs({"as": [SG, {"op": "autoscale"}]}, "as"), make_pre=lambda steps: list(steps))
    recipe = rescaled_recipe(inputs)
    assert recipe is not None
    search.cv_predictions(recipe, inputs, folds=2, seed=0)
    search.cv_predictions({**recipe, "candidate": "as", "steps": None}, inputs, folds=2, seed=0)
    assert seen == [[SG, {"op": "center"}], [SG, {"op": "autoscale"}]]


def test_the_fit_trains_the_searched_rescaled_input(monkeypatch: pytest.MonkeyPatch) -> None:
    import trainer.pipeline.recipe as recipe_mod

    cfg = _cfg("[search]\ntrials = 2\nbudget_min = 5\n")
    steps = [{"op": "snv"}, {"op": "center"}]
    best = {"candidate": "snv~center", "steps": steps, "rescaled": True,
            "model": {k: v for k, v in cfg.raw["model"].items()}, "augment": {}}
    kwargs: dict[str, Any] = {}
    monkeypatch.setattr(recipe_mod, "_run_search",
                        lambda *a, **k: (kwargs.update(k), ({"ran": True, "best_recipe": best, "best_trial": 1}, None,
                                                             2))[1])
    monkeypatch.setattr(recipe_mod, "cnn_rows_for", lambda cfg, data: lambda aug: None)
    data = SimpleNamespace(plan=SimpleNamespace(train_rows=np.arange(4), select_rows=np.arange(0)),
                           ds=SimpleNamespace(X=np.zeros((4, 3)), y=np.zeros((4, 1)), target_names=("a",),
                                              class_names=None),
                           groups=np.arange(4), make_pre=None, classify=False)
    configs = SimpleNamespace(cnn=None, augment=None, prune=None)
    got = recipe_mod.choose_recipe(cfg, configs, data, "snv", Path("."), lambda s: None, None)
    assert got.candidate == "snv~center" and list(got.steps) == steps
    # --model auto cross-validates the CNN anyway: the search lets the configured recipe's trial finish for it
    assert kwargs["cross_validates"] is True
    cfg = dataclasses.replace(cfg, selection=dataclasses.replace(cfg.selection, model="cnn"))
    data.plan.select_rows = np.arange(4, 6)  # --model cnn with selection rows: no CNN cross-validation to reuse
    recipe_mod.choose_recipe(cfg, configs, data, "snv", Path("."), lambda s: None, None)
    assert kwargs["cross_validates"] is False
    data.plan.select_rows = np.arange(0)  # --model cnn without selection rows: a regression's intervals need it
    recipe_mod.choose_recipe(cfg, configs, data, "snv", Path("."), lambda s: None, None)
    assert kwargs["cross_validates"] is True
    data.classify = True  # ... a classification's do not
    recipe_mod.choose_recipe(cfg, configs, data, "snv", Path("."), lambda s: None, None)
    assert kwargs["cross_validates"] is False


def test_the_fit_passes_whether_it_cross_validates_on_to_the_search(monkeypatch: pytest.MonkeyPatch) -> None:
    import trainer.pipeline.recipe as recipe_mod
    import trainer.search as search

    seen: dict[str, Any] = {}

    def run_search(cfg: Any, inputs: Any, out: Any, **kw: Any) -> Any:
        seen.update(kw)
        raise StopIteration  # nothing more is needed from the search

    monkeypatch.setattr(search, "run_search", run_search)
    cfg = _cfg("[search]\ntrials = 2\nbudget_min = 5\n")
    for flag in (True, False):
        with pytest.raises(StopIteration):
            recipe_mod._run_search(cfg, np.zeros((4, 3)), np.zeros((4, 1)), np.arange(4), ("a",), "snv",
                                   lambda steps: None, Path("."), lambda s: None, None, cross_validates=flag)
        assert seen["finish_configured"] is flag



def test_a_rescaled_trial_left_queued_runs_its_stored_recipe_in_the_next_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The budget stops the study after the configured trial, the rescaled one still queued; the next run (another
    process whose configured input is another candidate, as a `search` worker's with `pls_best` is) runs it as it was
    queued, not rescaled from its own input."""
    from tests.trainer.test_search import _clocked_search

    search = _clocked_search(monkeypatch, step_s=10.0)
    # 33 s: the configured trial's 3 folds of 10 s, then not even one fold fits.
    cfg = _cfg("[search]\ntrials = 10\nbudget_min = 0.55\nfolds = 3\nspread_seeds = 1\n")
    first = search.run_search(cfg, _inputs({"as": [SG, {"op": "autoscale"}], "snv": [{"op": "snv"}]}, "as"), tmp_path)
    assert first.trials_run == 1
    study = optuna.load_study(study_name=first.study_name, storage=f"sqlite:///{tmp_path / 'search.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "WAITING"]

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(search, "cv_predictions", _fake_cv(calls))
    one = cfg.search.__class__(enabled=True, trials=1, budget_min=10, folds=3, spread_seeds=1)
    again = search.run_search(cfg, _inputs({"as": [SG, {"op": "autoscale"}], "snv": [{"op": "snv"}]}, "snv"),
                              tmp_path, search=one, spread=False)
    assert again.study_name == first.study_name and again.trial_log[0]["rescaled"]
    assert calls[0]["recipe"]["candidate"] == "as~center" and calls[0]["recipe"]["steps"] == [SG, {"op": "center"}]
