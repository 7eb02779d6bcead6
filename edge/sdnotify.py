"""systemd's notification protocol (``sd_notify``): ``READY=1`` and ``WATCHDOG=1`` datagrams to ``$NOTIFY_SOCKET``.

A plain ``AF_UNIX`` datagram socket, no dependency.  Outside systemd (no ``NOTIFY_SOCKET``) every call is a no-op.
With ``WatchdogSec=`` in the unit, systemd sets ``WATCHDOG_USEC``; :meth:`SdNotifier.ping_watchdog` then sends
``WATCHDOG=1`` at most every half of it, and the daemon calls it only while all its stages are healthy, so a hung
or broken daemon stops pinging and systemd restarts it (``Restart=always``).

>>> n = SdNotifier.from_environ({})
>>> n.enabled, n.watchdog_interval_s, n.notify("READY=1"), n.ping_watchdog()
(False, None, False, False)
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

__all__ = ["SdNotifier"]

log = logging.getLogger(__name__)


class SdNotifier:
    """Sends notification datagrams to the service manager.

    Parameters
    ----------
    address : str or None
        ``$NOTIFY_SOCKET``: a socket path, or ``@name`` for an abstract socket; None disables notifications.
    watchdog_usec : int or None
        ``$WATCHDOG_USEC``: systemd's watchdog timeout, microseconds; None when the unit has no ``WatchdogSec=``.
    clock : callable
        Monotonic time, seconds (tests).
    """

    def __init__(self, address: str | None, watchdog_usec: int | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.address = address or None
        self.watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._clock = clock
        self._last_ping = -float("inf")
        self._sock: socket.socket | None = None

    @classmethod
    def from_environ(cls, env: Mapping[str, str] | None = None) -> SdNotifier:
        """Read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` (the watchdog is ours only when
        ``WATCHDOG_PID`` is unset or this process's id)."""
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET") or None
        usec: int | None = None
        pid = env.get("WATCHDOG_PID")
        if pid is None or pid.strip() == str(os.getpid()):
            try:
                usec = int(env.get("WATCHDOG_USEC", ""))
            except ValueError:
                usec = None
        return cls(address, usec)

    @property
    def enabled(self) -> bool:
        """Whether a service manager listens."""
        return self.address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """Seconds between two ``WATCHDOG=1`` pings (half systemd's timeout), None without a watchdog."""
        if self.address is None or self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2e6

    def notify(self, state: str) -> bool:
        """Send one ``KEY=value`` notification; return whether it was sent (errors are logged, never raised)."""
        if self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(state.encode("utf-8"), target)
            return True
        except OSError as exc:
            log.debug("sd_notify %s to %s failed: %s", state, self.address, exc)
            return False

    def ping_watchdog(self) -> bool:
        """Send ``WATCHDOG=1`` when half the watchdog timeout has passed since the last ping; return whether sent."""
        interval = self.watchdog_interval_s
        if interval is None:
            return False
        now = self._clock()
        if now - self._last_ping < interval:
            return False
        sent = self.notify("WATCHDOG=1")
        if sent:
            self._last_ping = now
        return sent

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
