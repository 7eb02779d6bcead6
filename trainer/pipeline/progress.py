"""Numbered stage lines of a fit on the ``trainer.pipeline`` logger (shown by the CLI), their timings, and the
warnings the fit logged (:class:`WarningLog`, for ``metrics.json`` and the report)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: Where the stage lines go: the package's logger, whichever stage module announces them.
log = logging.getLogger("trainer.pipeline")

STAGES = ("load data", "split rows", "PLS baseline", "search CNN recipe", "cross-validate CNN", "pretrain CNN trunk",
          "train CNN", "prune",
          "int8 conversion", "choose the deployed model", "OOD + intervals",
          "bundle", "evaluate through the edge runtime", "report")


class Progress:
    """Numbered stage lines on the ``trainer.pipeline`` logger (the CLI shows them on stderr)."""

    def __init__(self, callback: Callable[[str], None] | None) -> None:
        self.t0 = time.perf_counter()
        self.stage_t0 = self.t0
        self.timings: dict[str, float] = {}
        self.current: str | None = None
        self.callback = callback
        self.last = -1  # index of the last stage announced

    def stage(self, name: str) -> None:
        """Announce stage ``name``; the stages between the last one announced and it are announced as skipped
        (their work was not needed: e.g. the search's cross-validation already made the CNN's out-of-fold
        predictions), so the numbers run without gaps."""
        self.end()
        index = STAGES.index(name)
        for i in range(self.last + 1, index):
            self._say(f"[{i + 1}/{len(STAGES)}] {STAGES[i]}: skipped")
        self.last = max(self.last, index)
        self.current = name
        self.stage_t0 = time.perf_counter()
        self._say(f"[{index + 1}/{len(STAGES)}] {name}")

    def _say(self, msg: str) -> None:
        log.info(msg)
        if self.callback is not None:
            self.callback(msg)

    def finish(self) -> None:
        """End the last stage and announce the stages after it as skipped (``report`` without a report)."""
        self.end()
        for i in range(self.last + 1, len(STAGES)):
            self._say(f"[{i + 1}/{len(STAGES)}] {STAGES[i]}: skipped")
        self.last = len(STAGES) - 1

    def end(self) -> None:
        if self.current is not None:
            self.timings[self.current] = round(time.perf_counter() - self.stage_t0, 3)
            self.current = None

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.t0


class WarningLog(logging.Handler):
    """The WARNING (and worse) records of the ``trainer`` loggers during one fit, each with the stage it first came
    in, once per logger and message: ``metrics.json`` ``warnings`` and the report's first section, since a user
    reads the report long after the log has scrolled away (a PLS at its latent-variable cap, a line detector that
    costs accuracy, a search cut short by its budget)."""

    def __init__(self, progress: Progress) -> None:
        super().__init__(logging.WARNING)
        self.progress = progress
        self.records: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # as the standard handlers do: a malformed call elsewhere must not break the fit
            self.handleError(record)
            message = str(record.msg)
        if not any(r["logger"] == record.name and r["message"] == message for r in self.records):
            self.records.append({"stage": self.progress.current, "logger": record.name,
                                 "level": record.levelname, "message": message})

    @contextmanager
    def attached(self, logger_name: str = "trainer") -> Iterator[WarningLog]:
        """Collect while the block runs. Where logging is not configured (a script calling ``fit`` with no handler
        anywhere), Python's last-resort handler would print warnings on stderr; this handler would silence it, so it
        is attached beside this one for the block."""
        logger = logging.getLogger(logger_name)
        extra = [] if logger.hasHandlers() else [_LastResortWhileUnconfigured(logger, self)]
        for handler in (self, *extra):
            logger.addHandler(handler)
        try:
            yield self
        finally:
            for handler in (self, *extra):
                logger.removeHandler(handler)


class _LastResortWhileUnconfigured(logging.Handler):
    """Python's last-resort stderr handler for ``logger``, for as long as no other handler on its way up would see
    the record: something may configure logging during the fit (absl's first log call does), and the record would
    then be printed twice."""

    def __init__(self, logger: logging.Logger, collector: logging.Handler) -> None:
        super().__init__(logging.WARNING)
        self.logger, self.collector = logger, collector

    def emit(self, record: logging.LogRecord) -> None:
        node: logging.Logger | None = self.logger
        while node is not None:
            if any(h is not self and h is not self.collector for h in node.handlers):
                return
            node = node.parent if node.propagate else None
        if logging.lastResort is not None:
            logging.lastResort.handle(record)
