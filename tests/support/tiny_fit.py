"""The data, split and cross-validation of trainer configs small enough for a CNN fit in seconds (60 synthetic
spectra of 32 channels, two CNN folds), shared by the trainer tests that fit one: they add their own model tables."""

from __future__ import annotations

__all__ = ["TINY_DATA"]

#: The ``[data]``, ``[split]``, ``[selection]`` and ``[cv]`` tables (TOML, ending in a newline).
TINY_DATA = """[data]
synthetic = { samples = 60, channels = 32, seed = 0 }
targets = ["analyte_a_pct", "analyte_b_pct"]
[split]
train = { split = "calibration" }
select = { holdout_fraction = 0.25 }
[split.test]
test = { split = "test" }
[selection]
cnn_cv_folds = 2
[cv]
folds = 3
max_components = 4
"""
