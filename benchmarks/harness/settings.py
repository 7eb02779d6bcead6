"""What every part of the harness shares: the daemon's identity, the deadlines, the levels of raw frames."""

from __future__ import annotations

__all__ = ["DARK_COUNTS", "DEVICE", "IDLE_END_S", "LINE", "SITE", "START_TIMEOUT_S", "STOP_GRACE_S", "TOPIC_PREFIX",
           "TRAIN_TIMEOUT_S", "WHITE_COUNTS"]

#: Identity of the daemon in every harness run (the MQTT topic levels).
SITE, LINE, DEVICE = "bench", "line-1", "sim-01"
TOPIC_PREFIX = "spectrolite"
#: Liveness deadlines (a part that never gets there is a failure with a message, not a figure), seconds.
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 15.0
TRAIN_TIMEOUT_S = 3600.0
#: After the simulator exits, a loop ends when no prediction arrived for this long (or all arrived), seconds.
IDLE_END_S = 4.0
#: Dark and white levels (counts) of noise-free raw frames made from absorbance (a 16-bit detector).
DARK_COUNTS = 1000.0
WHITE_COUNTS = 60000.0
