"""The numbered stage lines of a fit (every stage gets its number, a skipped one says so) and its summary line."""

from __future__ import annotations

import pytest

from trainer.pipeline.progress import STAGES, Progress


def test_stages_run_without_gaps_and_skipped_ones_say_so() -> None:
    lines: list[str] = []
    prog = Progress(lines.append)
    prog.stage("load data")
    prog.stage("cross-validate CNN")
    prog.stage("train CNN")
    prog.stage("cross-validate CNN")  # a retry after a refused conversion goes back: announced again, no skips
    prog.finish()
    n = len(STAGES)
    assert lines == [f"[1/{n}] load data", f"[2/{n}] split rows: skipped", f"[3/{n}] PLS baseline: skipped",
                     f"[4/{n}] search CNN recipe: skipped", f"[5/{n}] cross-validate CNN",
                     f"[6/{n}] pretrain CNN trunk: skipped", f"[7/{n}] train CNN", f"[5/{n}] cross-validate CNN",
                     *(f"[{i + 1}/{n}] {STAGES[i]}: skipped" for i in range(7, n))]  # the stages never reached
    assert set(prog.timings) == {"load data", "cross-validate CNN", "train CNN"}  # skipped stages take no time


def test_the_fit_summary_line_says_what_the_search_trained() -> None:
    from trainer.cli import _search_line

    base = {"trials_run": 1, "trials_pruned": 1, "budget_used_s": 48.2, "best_trial": None}
    assert _search_line(base) == ("search: 1 trials (1 pruned) in 48 s, no trial finished its cross-validation: the "
                                  "configured recipe is trained as is")
    cut = _search_line({**base, "budget_note": "the 1 min budget did not hold one cross-validation"})
    assert cut.endswith("no trial finished its cross-validation; the 1 min budget did not hold one cross-validation")
    assert "None" not in cut
    best = _search_line({**base, "best_trial": 0, "best_is_configured": True, "best_score": 0.1})
    assert best == "search: 1 trials (1 pruned) in 48 s, best trial 0 (the configured recipe); score 0.1"


def test_warning_log_keeps_each_warning_once_with_its_stage_and_never_breaks_the_caller(
        capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from trainer.pipeline.progress import WarningLog

    prog = Progress(None)
    name = "spectrolite-test-warnings"  # outside the configured loggers: nothing else handles it
    logger = logging.getLogger(name)
    logger.propagate = False
    warned = WarningLog(prog)
    with warned.attached(name):
        logger.info("not collected")
        prog.stage("PLS baseline")
        logger.warning("capped at %d", 20)
        prog.stage("OOD + intervals")
        logger.warning("capped at %d", 20)  # the same message again, in another stage: kept once, first stage
        logger.error("bad %d", "x")  # a malformed call is reported by logging, not raised into the fit
    logger.warning("after the block")
    assert warned.records == [{"stage": "PLS baseline", "logger": name, "level": "WARNING",
                               "message": "capped at 20"},
                              {"stage": "OOD + intervals", "logger": name, "level": "ERROR", "message": "bad %d"}]
    assert logger.handlers == []
    # Unconfigured logging: the warnings still reach stderr through Python's last-resort handler, as without us.
    err = capsys.readouterr().err
    assert "capped at 20" in err and "after the block" in err and "not collected" not in err
    # Once a handler appears mid-fit (absl's first log call configures logging), each record is printed once.
    late = logging.StreamHandler()  # on stderr, as logging.basicConfig's
    with WarningLog(prog).attached(name):
        logger.warning("before configuring")
        logger.addHandler(late)
        logger.warning("once only")
    logger.removeHandler(late)
    err = capsys.readouterr().err
    assert err.count("once only") == 1 and err.count("before configuring") == 1
