"""Trainer configs small enough for a CNN fit in seconds, shared by the trainer tests that fit one: the data, split
and cross-validation tables of 60 synthetic spectra of 32 channels (:data:`TINY_DATA`, the tests add their own model
tables), and a whole config (:data:`CONFIG`) on the mixtures :func:`write_synthetic` writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["CLASS_CONFIG", "CONFIG", "N_CHANNELS", "SMALL_CNN", "SYNTHETIC_SPLIT", "TINY_DATA", "write_classes",
           "write_synthetic"]

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

#: Channels of the spectra :func:`write_synthetic` writes.
N_CHANNELS = 64


def write_synthetic(path: Path, n: int = 150, seed: int = 0) -> None:
    """Beer-Lambert mixtures of three bands with baseline offsets; replicates of 50 samples x 3; split column."""
    rng = np.random.default_rng(seed)
    wl = np.linspace(900.0, 1100.0, N_CHANNELS)
    bands = np.stack([np.exp(-((wl - c) ** 2) / 300.0) for c in (950.0, 1000.0, 1050.0)])
    n_samples = n // 3
    conc = rng.uniform(0.1, 1.0, size=(n_samples, 3))
    X = np.repeat(conc @ bands, 3, axis=0)
    X += rng.normal(0, 0.05, size=(n, 1)) + rng.normal(0, 0.002, size=(n, N_CHANNELS))
    y = np.repeat(conc[:, :1] * 10.0, 3, axis=0)
    sample_id = np.repeat(np.array([f"s{i:03d}" for i in range(n_samples)]), 3)
    split = np.repeat(np.where(np.arange(n_samples) < 30, "cal", np.where(np.arange(n_samples) < 40, "val", "test")), 3)
    np.savez(path, X=X.astype(np.float32), wavelengths=wl, y=y.astype(np.float32),
             target_names=np.array(["conc_pct"]), split=split, sample_id=sample_id)


#: The ``[split]`` of :func:`write_synthetic`'s rows (its ``split`` and ``sample_id`` columns; TOML).
SYNTHETIC_SPLIT = """[split]
group = "sample_id"
train = {split = "cal"}
select = {split = "val"}
[split.test]
test = {split = "test"}
"""

#: The layers of the small CNN of :data:`CONFIG` (TOML keys of ``[model]``, ending in a newline).
SMALL_CNN = """filters = [4]
kernel_sizes = [5]
strides = [2]
dense_units = [8]
"""

#: A whole training config (PLS and a small CNN, pruning, int8) on ``synthetic.npz`` from :func:`write_synthetic`.
CONFIG = """
seed = 1
[data]
path = "synthetic.npz"
targets = ["conc_pct"]
""" + SYNTHETIC_SPLIT + """[cv]
folds = 5
max_components = 8
[preprocessing]
cnn = "pls_best"
[preprocessing.candidates]
snv = [{op = "snv"}]
sg1 = [{op = "savgol", window = 7, polyorder = 2, deriv = 1}]
[augment]
n_copies = 1
offset_sd_abs = 0.01
[model]
""" + SMALL_CNN + """epochs = 3
batch_size = 16
log_every = 1
[pruning]
target_sparsity = 0.5
epochs = 2
min_weights = 8
[quantize]
representative_samples = 40
subprocess = false
[ood]
n_components = 3
[intervals]
coverage = 0.8
[bundle]
model_id = "synthetic-conc"
model_version = "0.0.1"
units = {conc_pct = "%"}
"""


#: A three-class config on :func:`write_synthetic`'s mixtures (their concentration binned).
CLASS_CONFIG = """
seed = 0
[data]
path = "classes.npz"
targets = ["grade"]
task = "classification"
""" + SYNTHETIC_SPLIT + """[preprocessing]
cnn = "snv"
[preprocessing.candidates]
snv = [{op = "snv"}]
[augment]
n_copies = 0
[model]
""" + SMALL_CNN + """epochs = 30
batch_size = 16
[quantize]
representative_samples = 40
[ood]
n_components = 3
[bundle]
model_id = "synthetic-grade"
model_version = "0.0.1"
"""


def write_classes(path: Path) -> Path:
    """:func:`write_synthetic`'s mixtures with their concentration binned into three classes (:data:`CLASS_CONFIG`)."""
    write_synthetic(path)
    d = dict(np.load(path))
    d["y"] = np.digitize(d["y"], [3.7, 6.4]).astype(np.int64)  # 0 low, 1 mid, 2 high (index into class_names)
    d["class_names"], d["target_names"] = np.array(["low", "mid", "high"]), np.array(["grade"])
    np.savez(path, **d)
    return path
