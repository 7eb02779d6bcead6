"""The TOML training configuration of ``spectro-train fit``: frozen dataclasses, validated with messages naming the key.

A config names the data, the targets, which rows train, which select (early stopping, model choice) and which
test, the grouping column for cross-validation, the preprocessing candidates, and the settings of augmentation,
the CNN (``[model]``), pruning, quantisation, drift statistics, intervals and the bundle. Relative paths are
resolved against the config file's folder. The ``augment``, ``model`` and ``pruning`` tables are handed unchanged
to the model code (:mod:`trainer.augment`, :mod:`trainer.models`, :mod:`trainer.pruning`), which validates them
itself.

Layout: :mod:`~trainer.config.tables` (reading tables), :mod:`~trainer.config.sources` (``[data]``,
``[instrument]``), :mod:`~trainer.config.split` (``[split]``, ``[cv]``), :mod:`~trainer.config.selection`
(``[preprocessing]``, ``[selection]``, ``[search]``), :mod:`~trainer.config.pretrain` (``[pretrain]``),
:mod:`~trainer.config.outputs` (``[ood]``, ``[intervals]``,
``[quantize]``, ``[bundle]``) and :mod:`~trainer.config.train` (the whole run and its readers).

Examples
--------
>>> cfg = parse_config('''
... seed = 1
... [data]
... path = "spectra.npz"
... targets = ["fat_pct"]
... [split]
... train = {split = "calibration"}
... select = {holdout_fraction = 0.2}
... [split.test]
... test = {split = "test"}
... [preprocessing.candidates]
... snv = [{op = "snv"}]
... ''', base_dir=".")
>>> cfg.split.tests[0].name, cfg.preprocessing.cnn
('test', 'snv')
"""

from __future__ import annotations

from trainer.config.outputs import BundleConfig, IntervalConfig, OodConfig, QuantizeConfig
from trainer.config.pretrain import PRETRAIN_TASKS, PretrainConfig
from trainer.config.selection import PreprocessingConfig, SearchConfig, SelectionConfig
from trainer.config.sources import QUANTITIES, SIGNALS, DataConfig, InstrumentConfig, LineNoiseConfig, SyntheticConfig
from trainer.config.split import CVConfig, Selector, SplitConfig, TestSet
from trainer.config.train import TrainConfig, config_from_dict, load_config, parse_config

__all__ = [
    "DataConfig",
    "SyntheticConfig",
    "InstrumentConfig",
    "LineNoiseConfig",
    "SelectionConfig",
    "SearchConfig",
    "PretrainConfig",
    "PRETRAIN_TASKS",
    "Selector",
    "TestSet",
    "SplitConfig",
    "CVConfig",
    "PreprocessingConfig",
    "OodConfig",
    "IntervalConfig",
    "QuantizeConfig",
    "BundleConfig",
    "TrainConfig",
    "load_config",
    "parse_config",
    "config_from_dict",
    "SIGNALS",
    "QUANTITIES",
]
