"""The two-target mixture data and config of a fit whose champion rule is split per target: PLS wins the linear
target, the CNN the curved one (a trainer test fits it; tests/data/trained/make_trained.py commits its bundle for
the edge tests). numpy only."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["N_CHANNELS", "TARGETS", "CONFIG", "write_mixtures"]

N_CHANNELS = 48
#: PLS serves the first, the CNN the second.
TARGETS = ("linear_pct", "curved_pct")

#: The config (``{data}``: the dataset file name beside it; ``{model_version}``). Its CNN stays full int8
#: (``[quantize] int16x8 = "never"``): the edge tests of its bundle check a second member's int8 output step.
CONFIG = """
seed = 3
report = false
[data]
path = "{data}"
targets = ["linear_pct", "curved_pct"]
[instrument]
signal = "counts"
quantity = "absorbance"
[split]
train = {{split = "cal"}}
select = {{split = "val"}}
[split.test]
test = {{split = "test"}}
[selection]
cnn_cv_folds = 2
[cv]
folds = 3
max_components = 4
[preprocessing]
cnn = "raw"
[preprocessing.candidates]
raw = [{{op = "center"}}]
[augment]
n_copies = 1
offset_sd_abs = 0.001
[model]
filters = [8]
kernel_sizes = [5]
strides = [2]
dense_units = [32]
epochs = 80
batch_size = 16
[quantize]
representative_samples = 40
subprocess = false
int16x8 = "never"
[ood]
n_components = 3
[intervals]
coverage = 0.8
[bundle]
model_id = "mix-per-target"
model_version = "{model_version}"
units = {{linear_pct = "%", curved_pct = "%"}}
"""


def write_mixtures(path: Path, n: int = 240, seed: int = 0) -> None:
    """Two bands; ``linear_pct`` is the first band's concentration (what PLS models exactly), ``curved_pct`` a steep
    function of the second's (what a linear model cannot follow and a small CNN can). Rows 0-159 ``cal``, 160-199
    ``val``, the rest ``test``."""
    rng = np.random.default_rng(seed)
    wl = np.linspace(900.0, 1100.0, N_CHANNELS)
    bands = np.stack([np.exp(-((wl - c) ** 2) / 300.0) for c in (960.0, 1040.0)])
    conc = rng.uniform(0.1, 1.0, size=(n, 2))
    X = conc @ bands + 0.2 + rng.normal(0, 0.001, size=(n, N_CHANNELS))
    y = np.stack([10.0 * conc[:, 0], 10.0 / (1.0 + np.exp(-12.0 * (conc[:, 1] - 0.55)))], axis=1)
    split = np.where(np.arange(n) < 160, "cal", np.where(np.arange(n) < 200, "val", "test"))
    np.savez(path, X=X.astype(np.float32), wavelengths=wl, y=y.astype(np.float32),
             target_names=np.array(list(TARGETS)), split=split)
