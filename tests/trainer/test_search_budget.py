"""The search's budget: where it stops a trial, what it lets finish, and what its note says
(tests/trainer/test_search.py holds the search itself and its stand-ins)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.trainer.test_search import _cfg, _clocked_search, _inputs


def test_budget_stops_the_search_inside_a_trial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    search = _clocked_search(monkeypatch, step_s=0.05)
    cfg = _cfg("[search]\ntrials = 10\nbudget_min = 0.0005\nfolds = 3\n")  # 30 ms: spent within the first fold
    res = search.run_search(cfg, _inputs(), tmp_path)
    assert res.trials_run == 1 and res.trial_log[0]["stopped"] == "budget"
    assert res.recipe is None and res.oof is None and res.seed_spread is None  # fit then trains the configured recipe


def test_a_budget_that_ends_inside_the_configured_recipe_starts_no_other_trial(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    search = _clocked_search(monkeypatch, step_s=10.0)
    # 15 s: the configured recipe's first fold takes 10 s, the second would overrun: 5 s are left, too few for a fold
    # of any recipe, so no second trial starts (a newcomer's --budget-min 1 used to start one with 12 s left).
    cfg = _cfg("[search]\ntrials = 10\nbudget_min = 0.25\nfolds = 3\nspread_seeds = 3\n")
    res = search.run_search(cfg, _inputs(), tmp_path)
    assert res.trials_run == 1 and res.trial_log[0]["stopped"] == "budget" and res.recipe is None
    assert res.budget_note is not None and "did not hold one cross-validation of the configured recipe (1 of its 3 " \
        "folds, about 30 s for all): no recipe was judged and the configured one is trained as is" in res.budget_note
    assert res.budget_note.endswith("about 6 min (--budget-min or [search] budget_min) holds some 10 trials and the "
                                    "seed spread")  # 12 runs of 30 s
    # The same study continued with a budget that holds trials: the earlier cut trial is not this run's.
    again = search.run_search(cfg, _inputs(), tmp_path, search=cfg.search.__class__(
        enabled=True, trials=3, budget_min=10, folds=3, spread_seeds=1))
    assert again.best_trial is not None and again.budget_note is None


def test_the_fit_lets_the_configured_recipe_finish_past_the_budget(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # The same 15 s budget and 10 s folds as above, but the search runs for a fit that cross-validates the CNN with
    # these folds anyway: cutting the configured trial would only make the fit run its folds again.
    search = _clocked_search(monkeypatch, step_s=10.0)
    base = _cfg("[search]\ntrials = 10\nbudget_min = 0.25\nfolds = 3\nspread_seeds = 3\n")
    cfg = dataclasses.replace(base, selection=dataclasses.replace(base.selection, cnn_cv_folds=3))  # the fit's folds
    lines: list[str] = []
    res = search.run_search(cfg, _inputs(), tmp_path, finish_configured=True, progress=lines.append)
    assert res.trials_run == 1 and res.trial_log[0]["stopped"] is None and res.trial_log[0]["state"] == "complete"
    assert res.best_trial == 0 and res.oof is not None and res.oof.shape == (40, 2)  # reused by the fit
    assert res.seed_spread is not None and res.seed_spread["seeds"] == [0]  # no budget left for other seeds
    assert "in the 0 s left" in res.seed_spread["note"]  # not a negative time
    said = [line for line in lines if "runs to the end" in line]
    assert len(said) == 1 and "fold 1 of 3" in said[0]  # said once, though folds 1 and 2 both passed the budget
    assert res.budget_note is not None and "did not hold one cross-validation of the configured recipe (30 s for " \
        "its 3 folds; it ran to the end, as the fit needs it)" in res.budget_note
    # The study continued with a budget that cuts the next trial: that run judged nothing either, but its note is
    # about this run's budget, not the earlier run's overrun.
    again = search.run_search(cfg, _inputs(), tmp_path, finish_configured=True, search=cfg.search.__class__(
        enabled=True, trials=3, budget_min=0.1, folds=3, spread_seeds=1))
    assert [t["stopped"] for t in again.trial_log] == ["budget"]
    assert again.budget_note is not None
    assert "held the configured recipe only (30 s for its 3 folds)" in again.budget_note
    # Folds other than the fit's: the fit cannot reuse the trial, so the budget cuts it as before.
    cut = search.run_search(base, _inputs(), tmp_path / "other", finish_configured=True)
    assert cut.trial_log[0]["stopped"] == "budget" and cut.oof is None


def test_only_the_configured_recipe_runs_past_the_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    search = _clocked_search(monkeypatch, step_s=10.0)
    # 35 s, the fit's 2 folds of 10 s: the configured trial ends at 20 s, the next one's first fold at 30 s, and its
    # second would overrun: a sampled recipe is cut by the budget as always.
    cfg = _cfg("[search]\ntrials = 10\nbudget_min = 0.5833\nfolds = 2\nspread_seeds = 1\n")
    res = search.run_search(cfg, _inputs(), tmp_path, finish_configured=True)
    assert [t["stopped"] for t in res.trial_log] == [None, "budget"]


def test_seed_spread_gets_only_the_seeds_that_fit_in_the_budget(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    search = _clocked_search(monkeypatch, step_s=0.1)
    # 0.81 s: the configured trial (3 folds of 0.1 s) completes, then one more run of it fits, not two.
    cfg = _cfg("[search]\ntrials = 10\nbudget_min = 0.0135\nfolds = 3\nspread_seeds = 3\n")
    res = search.run_search(cfg, _inputs(), tmp_path)
    assert res.trials_run == 1 and res.best_trial == 0 and res.oof is not None
    assert res.seed_spread is not None and res.seed_spread["seeds"] == [0, 1]
    assert "did not fit" in res.seed_spread["note"]
    # Only the configured recipe ran: the result says so and what budget a search would need (12 runs of 0.3 s).
    assert res.budget_note is not None and res.to_dict()["budget_note"] == res.budget_note
    assert "held the configured recipe only (0.3 s for its 3 folds)" in res.budget_note
    assert "about 1 min" in res.budget_note


def test_a_trial_cut_off_by_the_budget_still_leaves_the_budget_note(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # Folds of 10 s on the test's clock: Optuna's own timeout (the budget in real seconds, a safety net) then never
    # stops the study before the search's clock does, however slow the machine.
    search = _clocked_search(monkeypatch, step_s=10.0)
    # 45 s, no seed spread: the configured trial (3 folds of 10 s), then one fold of the next trial before the
    # budget stops it.
    cfg = _cfg("[search]\ntrials = 10\nbudget_min = 0.75\nfolds = 3\nspread_seeds = 1\n")
    res = search.run_search(cfg, _inputs(), tmp_path)
    assert [t["stopped"] for t in res.trial_log] == [None, "budget"]
    assert res.budget_note is not None and "no other recipe finished its cross-validation" in res.budget_note
    assert "(30 s for its 3 folds)" in res.budget_note
    assert res.budget_note.endswith("about 5 min (--budget-min or [search] budget_min) holds some 10 trials")
