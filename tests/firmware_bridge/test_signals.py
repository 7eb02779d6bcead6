"""events_on_signals: a signal sets its event even when it lands while the main thread holds that event's lock."""

from __future__ import annotations

import os
import signal
import threading
import time

from firmware_bridge.signals import events_on_signals


def test_a_signal_sets_its_event_and_handlers_are_restored() -> None:
    before = signal.getsignal(signal.SIGUSR1)
    stop, other = threading.Event(), threading.Event()
    with events_on_signals({signal.SIGUSR1: stop, signal.SIGUSR2: other}):
        os.kill(os.getpid(), signal.SIGUSR1)
        assert stop.wait(10.0)
        assert not other.is_set()
    assert signal.getsignal(signal.SIGUSR1) is before
    assert signal.set_wakeup_fd(-1) == -1  # the wakeup fd was given back too


def test_a_signal_arriving_inside_event_wait_does_not_deadlock() -> None:
    # A Python handler calling stop.set() here would wait forever for the lock this thread holds (the
    # spectro-sim hang on SIGTERM); the watcher thread simply sets the event once the lock is free.
    stop = threading.Event()
    with events_on_signals({signal.SIGUSR1: stop}):
        with stop._cond:  # where Event.wait() holds it, between entering and releasing in Condition.wait
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.2)  # the Python-level handler runs in this thread meanwhile
            assert not stop.is_set()
        assert stop.wait(10.0)


def test_outside_the_main_thread_it_installs_nothing() -> None:
    seen: list[object] = []

    def worker() -> None:
        with events_on_signals({signal.SIGUSR1: threading.Event()}):
            seen.append(signal.getsignal(signal.SIGUSR1))

    before = signal.getsignal(signal.SIGUSR1)
    t = threading.Thread(target=worker)
    t.start()
    t.join(10.0)
    assert seen == [before]
