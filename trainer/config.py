"""The TOML training configuration of ``spectro-train fit``: frozen dataclasses, validated with messages naming the key.

A config names the data, the targets, which rows train, which select (early stopping, model choice) and which
test, the grouping column for cross-validation, the preprocessing candidates, and the settings of augmentation,
the CNN (``[model]``), pruning, quantisation, drift statistics, intervals and the bundle. Relative paths are
resolved against the config file's folder. The ``augment``, ``model`` and ``pruning`` tables are handed unchanged
to the model code (:mod:`trainer.augment`, :mod:`trainer.models`, :mod:`trainer.pruning`), which validates them
itself.

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

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from trainer.errors import TrainConfigError

__all__ = [
    "DataConfig",
    "SyntheticConfig",
    "InstrumentConfig",
    "SelectionConfig",
    "SearchConfig",
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
]

_TASKS = ("regression", "classification")
_FORMATS = ("npz", "csv", "jcamp")
_SPLIT_METHODS = ("explicit", "grouped_kfold")
_SELECTOR_VALUE = (str, int, float, bool)


def _table(d: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> dict[str, Any]:
    full = f"{where}.{key}" if where else key
    if key not in d:
        if required:
            raise TrainConfigError(f"{full}: missing required table")
        return {}
    v = d[key]
    if not isinstance(v, Mapping):
        raise TrainConfigError(f"{full}: expected a table, got {type(v).__name__}")
    return dict(v)


def _check_keys(d: Mapping[str, Any], where: str, known: set[str] | frozenset[str]) -> None:
    unknown = sorted(set(d) - set(known))
    if unknown:
        prefix = f"{where}." if where else ""
        raise TrainConfigError(
            f"{prefix}{unknown[0]}: unknown key; expected one of {', '.join(sorted(known))}"
        )


def _get(d: Mapping[str, Any], key: str, where: str, types: type | tuple[type, ...], default: Any = ...) -> Any:
    full = f"{where}.{key}" if where else key
    if key not in d:
        if default is ...:
            raise TrainConfigError(f"{full}: missing required key")
        return default
    v = d[key]
    types_t = types if isinstance(types, tuple) else (types,)
    if isinstance(v, bool) and bool not in types_t:
        raise TrainConfigError(f"{full}: expected {_type_names(types_t)}, got {v!r}")
    if float in types_t and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if not isinstance(v, types_t):
        raise TrainConfigError(f"{full}: expected {_type_names(types_t)}, got {type(v).__name__} {v!r}")
    return v


def _type_names(types: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true/false", list: "an array",
             dict: "a table"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def _group(d: Mapping[str, Any], where: str) -> str:
    """A grouping column name, or several joined by ``+`` (from an array or a ``+`` string)."""
    g = _get(d, "group", where, (str, list), "row")
    parts = g if isinstance(g, list) else g.split("+")
    if not parts or not all(isinstance(p, str) and p.strip() for p in parts):
        raise TrainConfigError(f"{where}.group: expected a column name or an array of column names, got {g!r}")
    return "+".join(p.strip() for p in parts)


def _positive(v: float, full: str, *, allow_zero: bool = False) -> None:
    if v < 0 or (v == 0 and not allow_zero):
        raise TrainConfigError(f"{full}: expected a number {'>=' if allow_zero else '>'} 0, got {v!r}")


def _fraction(v: float, full: str) -> None:
    if not 0.0 < v < 1.0:
        raise TrainConfigError(f"{full}: expected a number strictly between 0 and 1, got {v!r}")


@dataclass(frozen=True)
class DataConfig:
    """Where the spectra are and which targets to learn.

    Parameters
    ----------
    path : Path or None
        Data file (``.npz``, ``.csv``) or JCAMP-DX file/folder, resolved against the config's folder; None when
        ``synthetic`` is given instead.
    targets : tuple of str
        Target names (columns of ``y``) to learn, in order.
    format : str or None
        ``"npz"``, ``"csv"`` or ``"jcamp"``; None infers it from the suffix.
    task : str
        ``"regression"`` or ``"classification"``.
    targets_path : Path or None
        CSV of reference values joined to the spectra (CSV or JCAMP-DX) on ``join_on``.
    axis_unit : str or None
        Unit of the wavelength axis, ``"nm"`` or ``"cm-1"`` (labels plots and the bundle); None takes the unit
        written in the CSV header cells, else nm.
    min_samples : int
        Fewest rows accepted.
    synthetic : SyntheticConfig or None
        Generated spectra instead of a file (the demo's data).
    join_on : str or None
        Column of the spectra and of ``targets_path`` that pairs them; None means ``"sample_id"`` (CSV) or
        ``"file"`` (JCAMP-DX).
    delimiter : str
        CSV field separator: ``"auto"``, ``","``, ``";"`` or ``"\\t"`` (``"tab"`` is accepted for it).
    decimal : str
        CSV decimal mark: ``"auto"`` (a comma too when the delimiter is not a comma), ``"."`` or ``","``.
    exclude : mapping of str to tuple
        Rows to drop before splitting: per-row column name to the values whose rows go.
    missing_reference : str
        Rows without a reference value: ``"error"`` refuses them, ``"drop"`` drops them with a logged count.
    """

    path: Path | None
    targets: tuple[str, ...]
    format: str | None = None
    task: str = "regression"
    targets_path: Path | None = None
    axis_unit: str | None = None
    min_samples: int = 10
    synthetic: SyntheticConfig | None = None
    join_on: str | None = None
    delimiter: str = "auto"
    decimal: str = "auto"
    exclude: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    missing_reference: str = "error"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], base_dir: Path) -> DataConfig:
        w = "data"
        _check_keys(d, w, {"path", "targets", "format", "task", "targets_path", "axis_unit", "min_samples",
                           "synthetic", "join_on", "delimiter", "decimal", "exclude", "missing_reference"})
        if ("path" in d) == ("synthetic" in d):
            raise TrainConfigError(
                "data: expected exactly one of path (a data file) or synthetic (the simulator's generated spectra), "
                f"got {'both' if 'path' in d else 'neither'}"
            )
        synthetic = SyntheticConfig.from_dict(_table(d, "synthetic", w)) if "synthetic" in d else None
        path = base_dir / os.path.expandvars(_get(d, "path", w, str)) if synthetic is None else None
        targets = _get(d, "targets", w, (list, str))
        targets = [targets] if isinstance(targets, str) else targets
        if not targets or not all(isinstance(t, str) and t for t in targets):
            raise TrainConfigError(f"data.targets: expected a non-empty array of target names, got {targets!r}")
        if len(set(targets)) != len(targets):
            raise TrainConfigError(f"data.targets: expected distinct names, got {targets!r}")
        fmt = _get(d, "format", w, str, None)
        if fmt is not None and fmt not in _FORMATS:
            raise TrainConfigError(f"data.format: expected one of {', '.join(_FORMATS)}, got {fmt!r}")
        task = _get(d, "task", w, str, "regression")
        if task not in _TASKS:
            raise TrainConfigError(f"data.task: expected one of {', '.join(_TASKS)}, got {task!r}")
        if task == "classification" and len(targets) != 1:
            raise TrainConfigError(f"data.targets: classification expects exactly one target, got {len(targets)}")
        tp = _get(d, "targets_path", w, str, None)
        unit = _get(d, "axis_unit", w, str, None)
        if unit is not None and unit not in ("nm", "cm-1"):
            raise TrainConfigError(f"data.axis_unit: expected 'nm' or 'cm-1', got {unit!r}")
        min_samples = _get(d, "min_samples", w, int, 10)
        if min_samples < 2:
            raise TrainConfigError(f"data.min_samples: expected an integer >= 2, got {min_samples}")
        join_on = _get(d, "join_on", w, str, None)
        if join_on is not None and not tp:
            raise TrainConfigError(
                f"data.join_on: expected targets_path (the CSV to join) beside it, got {join_on!r} alone"
            )
        if join_on is not None and not join_on.strip():
            raise TrainConfigError("data.join_on: expected a column name, got ''")
        delimiter = _get(d, "delimiter", w, str, "auto")
        delimiter = "\t" if delimiter == "tab" else delimiter
        if delimiter not in ("auto", ",", ";", "\t"):
            raise TrainConfigError(f"data.delimiter: expected 'auto', ',', ';' or '\\t' (tab), got {delimiter!r}")
        decimal = _get(d, "decimal", w, str, "auto")
        if decimal not in ("auto", ".", ","):
            raise TrainConfigError(f"data.decimal: expected 'auto', '.' or ',', got {decimal!r}")
        if decimal == "," and delimiter == ",":
            raise TrainConfigError(
                "data.decimal: expected delimiter ';' or '\\t' with decimal = ',', got delimiter ','"
            )
        exclude: dict[str, tuple[Any, ...]] = {}
        for col, v in _table(d, "exclude", w).items():
            values = v if isinstance(v, list) else [v]
            if not values or not all(isinstance(x, _SELECTOR_VALUE) for x in values):
                raise TrainConfigError(
                    f"data.exclude.{col}: expected a string, number, true/false or a non-empty array of them, got {v!r}"
                )
            exclude[col] = tuple(values)
        missing_reference = _get(d, "missing_reference", w, str, "error")
        if missing_reference not in ("error", "drop"):
            raise TrainConfigError(f"data.missing_reference: expected 'error' or 'drop', got {missing_reference!r}")
        return cls(
            path=path,
            targets=tuple(targets),
            format=fmt,
            task=task,
            targets_path=base_dir / os.path.expandvars(tp) if tp else None,
            axis_unit=unit,
            min_samples=min_samples,
            synthetic=synthetic,
            join_on=join_on,
            delimiter=delimiter,
            decimal=decimal,
            exclude=exclude,
            missing_reference=missing_reference,
        )


@dataclass(frozen=True)
class SyntheticConfig:
    """``[data] synthetic = {samples, channels, seed}``: train on the spectra ``spectro-sim`` streams without
    ``--dataset`` (:func:`firmware_bridge.synthetic.make_synthetic_dataset` with the same arguments as its
    ``--synthetic-samples``, ``--synthetic-channels`` and ``--seed``); rows carry a ``split`` column
    (``calibration`` / ``test``)."""

    samples: int = 500
    channels: int = 256
    seed: int = 0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SyntheticConfig:
        w = "data.synthetic"
        _check_keys(d, w, {"samples", "channels", "seed"})
        samples = _get(d, "samples", w, int, 500)
        channels = _get(d, "channels", w, int, 256)
        seed = _get(d, "seed", w, int, 0)
        if samples < 20:
            raise TrainConfigError(f"data.synthetic.samples: expected an integer >= 20, got {samples}")
        if channels < 16:
            raise TrainConfigError(f"data.synthetic.channels: expected an integer >= 16, got {channels}")
        if seed < 0:
            raise TrainConfigError(f"data.synthetic.seed: expected an integer >= 0, got {seed}")
        return cls(samples=samples, channels=channels, seed=seed)


#: What an instrument on the line may send (``firmware_bridge.frames.SignalKind`` in lower case).
SIGNALS = ("counts", "absorbance", "reflectance")
#: What the training spectra may hold (and what a counts bundle computes from counts).
QUANTITIES = ("absorbance", "reflectance")


@dataclass(frozen=True)
class InstrumentConfig:
    """``[instrument]``: what the spectrometer on the line sends, and what the training spectra hold.

    Parameters
    ----------
    signal : {"counts", "absorbance", "reflectance"}
        What the device's SPECTRUM frames carry (it announces it in STATUS). ``counts`` (the default, what the
        protocol's firmware and ``spectro-sim`` send): the bundle's preprocessing starts with the counts ->
        ``quantity`` conversion and needs the device's DARK and REFERENCE frames. Otherwise the device sends the
        processed signal itself, which must then equal ``quantity``.
    quantity : {"absorbance", "reflectance"}
        What the training spectra hold (absorbance = log10(1/T) or log10(1/R); reflectance = R as a fraction).
    """

    signal: str = "counts"
    quantity: str = "absorbance"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> InstrumentConfig:
        w = "instrument"
        _check_keys(d, w, {"signal", "quantity"})
        signal = _get(d, "signal", w, str, "counts")
        if signal not in SIGNALS:
            raise TrainConfigError(f"instrument.signal: expected one of {', '.join(SIGNALS)}, got {signal!r}")
        quantity = _get(d, "quantity", w, str, "absorbance")
        if quantity not in QUANTITIES:
            raise TrainConfigError(f"instrument.quantity: expected one of {', '.join(QUANTITIES)}, got {quantity!r}")
        if signal != "counts" and signal != quantity:
            raise TrainConfigError(
                f"instrument.signal: the device sends {signal} but the training spectra hold {quantity}; expected "
                f"signal = \"counts\" or signal = \"{quantity}\""
            )
        return cls(signal=signal, quantity=quantity)


@dataclass(frozen=True)
class Selector:
    """Rows picked by per-row column values, e.g. ``{split = "test", instrument = 1}`` (all conditions hold).

    A value may be a list (any of). ``holdout_fraction`` instead carves a grouped, seeded share out of the
    training rows (only for the selection rows).
    """

    where: Mapping[str, Any] = field(default_factory=dict)
    holdout_fraction: float | None = None

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Selector:
        if not isinstance(d, Mapping):
            raise TrainConfigError(f"{where}: expected a table of column = value conditions, got {d!r}")
        d = dict(d)
        frac = d.pop("holdout_fraction", None)
        if frac is not None:
            if isinstance(frac, bool) or not isinstance(frac, (int, float)):
                raise TrainConfigError(f"{where}.holdout_fraction: expected a number, got {frac!r}")
            _fraction(float(frac), f"{where}.holdout_fraction")
            if d:
                raise TrainConfigError(f"{where}: holdout_fraction cannot be combined with column conditions")
            return cls(where={}, holdout_fraction=float(frac))
        if not d:
            raise TrainConfigError(f"{where}: expected at least one column = value condition, got an empty table")
        for k, v in d.items():
            values = v if isinstance(v, list) else [v]
            if not values or not all(isinstance(x, _SELECTOR_VALUE) for x in values):
                raise TrainConfigError(f"{where}.{k}: expected a string, number or array of them, got {v!r}")
        return cls(where=d)

    def describe(self) -> str:
        """Short text such as ``split=test, instrument=1``."""
        if self.holdout_fraction is not None:
            return f"holdout {self.holdout_fraction:g} of train"
        return ", ".join(f"{k}={v}" for k, v in self.where.items())


@dataclass(frozen=True)
class TestSet:
    """A named set of test rows, reported under ``name`` in ``metrics.json``."""

    name: str
    selector: Selector


@dataclass(frozen=True)
class SplitConfig:
    """Which rows train, select and test.

    ``method = "explicit"`` uses selectors over per-row columns; ``"grouped_kfold"`` assigns whole groups to
    ``folds`` folds (seeded) and takes fold ``test_fold`` as test and fold ``select_fold`` as selection rows.
    ``group`` names the column keeping replicates together (``"row"``: every row is its own group); several
    columns together form the group when given as an array or joined by ``+`` (``"meta_sample+meta_supplier"``).
    """

    method: str = "explicit"
    group: str = "row"
    train: Selector | None = None
    select: Selector | None = None
    tests: tuple[TestSet, ...] = ()
    folds: int = 5
    test_fold: int = 0
    select_fold: int = 1

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SplitConfig:
        w = "split"
        _check_keys(d, w, {"method", "group", "train", "select", "test", "folds", "test_fold", "select_fold"})
        method = _get(d, "method", w, str, "explicit")
        if method not in _SPLIT_METHODS:
            raise TrainConfigError(f"split.method: expected one of {', '.join(_SPLIT_METHODS)}, got {method!r}")
        group = _group(d, w)
        folds = _get(d, "folds", w, int, 5)
        test_fold = _get(d, "test_fold", w, int, 0)
        select_fold = _get(d, "select_fold", w, int, 1)
        if method == "grouped_kfold":
            if folds < 3:
                raise TrainConfigError(f"split.folds: expected an integer >= 3, got {folds}")
            for key, v in (("test_fold", test_fold), ("select_fold", select_fold)):
                if not 0 <= v < folds:
                    raise TrainConfigError(f"split.{key}: expected an integer in [0, {folds - 1}], got {v}")
            if test_fold == select_fold:
                raise TrainConfigError(f"split.select_fold: must differ from split.test_fold ({test_fold})")
            for key in ("train", "select", "test"):
                if key in d:
                    raise TrainConfigError(f"split.{key}: not used with method = 'grouped_kfold'; remove it")
            return cls(method=method, group=group, folds=folds, test_fold=test_fold, select_fold=select_fold,
                       tests=(TestSet("test", Selector()),))
        if "train" not in d:
            raise TrainConfigError("split.train: missing required table (e.g. train = {split = \"calibrate\"})")
        train = Selector.from_dict(d["train"], "split.train")
        if train.holdout_fraction is not None:
            raise TrainConfigError("split.train: holdout_fraction is only allowed for split.select")
        select = Selector.from_dict(d["select"], "split.select") if "select" in d else Selector(holdout_fraction=0.2)
        tests_d = _table(d, "test", w, required=True)
        if not tests_d:
            raise TrainConfigError("split.test: expected at least one named test set, e.g. [split.test] test = {...}")
        tests = []
        for name, sel in tests_d.items():
            s = Selector.from_dict(sel, f"split.test.{name}")
            if s.holdout_fraction is not None:
                raise TrainConfigError(f"split.test.{name}: holdout_fraction is only allowed for split.select")
            tests.append(TestSet(name=name, selector=s))
        return cls(method=method, group=group, train=train, select=select, tests=tuple(tests), folds=folds)


@dataclass(frozen=True)
class CVConfig:
    """Cross-validation on the training rows for the PLS baseline (latent variables, preprocessing choice)."""

    folds: int = 10
    group: str | None = None
    max_components: int = 20

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CVConfig:
        w = "cv"
        _check_keys(d, w, {"folds", "group", "max_components"})
        folds = _get(d, "folds", w, int, 10)
        if folds < 2:
            raise TrainConfigError(f"cv.folds: expected an integer >= 2, got {folds}")
        mc = _get(d, "max_components", w, int, 20)
        if mc < 1:
            raise TrainConfigError(f"cv.max_components: expected an integer >= 1, got {mc}")
        return cls(folds=folds, group=_group(d, w) if "group" in d else None, max_components=mc)


@dataclass(frozen=True)
class PreprocessingConfig:
    """Named preprocessing candidates (lists of step tables) and which one the CNN uses.

    ``cnn`` names a candidate or is ``"pls_best"`` (the candidate PLS cross-validation chose on training rows).
    """

    candidates: Mapping[str, tuple[Mapping[str, Any], ...]]
    cnn: str

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PreprocessingConfig:
        w = "preprocessing"
        _check_keys(d, w, {"candidates", "cnn"})
        cands_d = _table(d, "candidates", w, required=True)
        if not cands_d:
            raise TrainConfigError("preprocessing.candidates: expected at least one named candidate")
        cands: dict[str, tuple[Mapping[str, Any], ...]] = {}
        for name, steps in cands_d.items():
            full = f"preprocessing.candidates.{name}"
            if not isinstance(steps, list):
                raise TrainConfigError(f"{full}: expected an array of step tables, got {type(steps).__name__}")
            for i, s in enumerate(steps):
                if not isinstance(s, Mapping) or not isinstance(s.get("op"), str):
                    raise TrainConfigError(f"{full}[{i}]: expected a table with an 'op' string, got {s!r}")
            cands[name] = tuple(dict(s) for s in steps)
        cnn = _get(d, "cnn", w, str, next(iter(cands)) if len(cands) == 1 else "pls_best")
        if cnn != "pls_best" and cnn not in cands:
            raise TrainConfigError(
                f"preprocessing.cnn: expected 'pls_best' or a candidate name ({', '.join(cands)}), got {cnn!r}"
            )
        return cls(candidates=cands, cnn=cnn)


@dataclass(frozen=True)
class SelectionConfig:
    """``[selection]``: which model the bundle carries (:mod:`trainer.champion`).

    Parameters
    ----------
    model : {"auto", "cnn", "pls"}
        ``auto`` (default) applies the champion rule; ``cnn``/``pls`` force one (``spectro-train fit --model``).
    cnn_cv_folds : int
        Grouped folds of the CNN's cross-validation (each trains the recipe once more); the PLS figure uses
        ``[cv] folds``.
    tie_margin : float
        The CNN must beat PLS by more than this share (geometric mean over targets) to be deployed.
    """

    model: str = "auto"
    cnn_cv_folds: int = 5
    tie_margin: float = 0.02

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SelectionConfig:
        w = "selection"
        _check_keys(d, w, {"model", "cnn_cv_folds", "tie_margin"})
        model = _get(d, "model", w, str, "auto")
        if model not in ("auto", "cnn", "pls"):
            raise TrainConfigError(f"selection.model: expected auto, cnn or pls, got {model!r}")
        folds = _get(d, "cnn_cv_folds", w, int, 5)
        if folds < 2:
            raise TrainConfigError(f"selection.cnn_cv_folds: expected an integer >= 2, got {folds}")
        margin = _get(d, "tie_margin", w, float, 0.02)
        if not 0.0 <= margin < 0.5:
            raise TrainConfigError(f"selection.tie_margin: expected a number in [0, 0.5), got {margin}")
        return cls(model=model, cnn_cv_folds=folds, tie_margin=float(margin))


@dataclass(frozen=True)
class SearchConfig:
    """``[search]``: the Optuna search of the CNN recipe (:mod:`trainer.search`), scored by the champion rule's
    grouped cross-validation.

    Without a ``[search]`` table the search is off and the configured recipe (``[model]``, ``[augment]``,
    ``[preprocessing] cnn``) is trained, as before; a table (even an empty one) turns it on with these defaults.

    Parameters
    ----------
    enabled : bool
        ``false`` keeps the configured recipe.
    trials : int
        Most trials this process runs (0: no search). Trials already in the study (an earlier run into the same
        output folder, or other workers) are not counted.
    budget_min : float
        Wall-clock minutes this process spends on the search, the seed-spread retraining included (0: no search).
        ``spectro-train fit --budget-min`` overrides it.
    storage : str
        An Optuna storage URL (``postgresql://...``, ``mysql+pymysql://...``, ``sqlite:///...``) shared by several
        workers, or a SQLite file name, relative to the output folder (default ``search.db``).
    study_name : str or None
        None: derived from the config and the training data (a changed config or data starts a new study).
    folds : int or None
        Grouped folds of each trial's cross-validation; None: ``[selection] cnn_cv_folds`` (the champion's, so the
        best trial's out-of-fold predictions are reused by the champion rule).
    spread_seeds : int
        Training seeds the chosen recipe is cross-validated with (its own included) to report seed-to-seed spread.
    seed : int or None
        Seed of the TPE sampler; None: the top-level ``seed``.
    """

    enabled: bool = False
    trials: int = 40
    budget_min: float = 8.0
    storage: str = "search.db"
    study_name: str | None = None
    folds: int | None = None
    spread_seeds: int = 3
    seed: int | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> SearchConfig:
        """``None`` (no ``[search]`` table): the search is off."""
        if d is None:
            return cls(enabled=False)
        w = "search"
        _check_keys(d, w, {"enabled", "trials", "budget_min", "storage", "study_name", "folds", "spread_seeds",
                           "seed"})
        trials = _get(d, "trials", w, int, 40)
        if trials < 0:
            raise TrainConfigError(f"search.trials: expected an integer >= 0, got {trials}")
        budget = _get(d, "budget_min", w, float, 8.0)
        if not budget >= 0 or budget == float("inf"):
            raise TrainConfigError(f"search.budget_min: expected a finite number >= 0, got {budget!r}")
        storage = _get(d, "storage", w, str, "search.db")
        if not storage.strip():
            raise TrainConfigError("search.storage: expected a storage URL or a file name, got ''")
        name = _get(d, "study_name", w, str, None)
        if name is not None and not name.strip():
            raise TrainConfigError("search.study_name: expected a non-empty name, got ''")
        folds = _get(d, "folds", w, int, None)
        if folds is not None and folds < 2:
            raise TrainConfigError(f"search.folds: expected an integer >= 2, got {folds}")
        spread = _get(d, "spread_seeds", w, int, 3)
        if spread < 1:
            raise TrainConfigError(f"search.spread_seeds: expected an integer >= 1, got {spread}")
        seed = _get(d, "seed", w, int, None)
        if seed is not None and seed < 0:
            raise TrainConfigError(f"search.seed: expected an integer >= 0, got {seed}")
        return cls(enabled=_get(d, "enabled", w, bool, True), trials=trials, budget_min=float(budget),
                   storage=storage, study_name=name, folds=folds, spread_seeds=spread, seed=seed)

    @property
    def active(self) -> bool:
        """Whether a search runs: enabled, with a budget and at least one trial."""
        return self.enabled and self.trials > 0 and self.budget_min > 0


@dataclass(frozen=True)
class OodConfig:
    """PCA drift statistics: components by count or explained-variance share, and the limits' false-alarm rate."""

    n_components: int | None = None
    variance: float = 0.99
    alpha: float = 0.01
    max_components: int = 20

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OodConfig:
        w = "ood"
        _check_keys(d, w, {"n_components", "variance", "alpha", "max_components"})
        nc = _get(d, "n_components", w, int, None)
        if nc is not None and nc < 1:
            raise TrainConfigError(f"ood.n_components: expected an integer >= 1, got {nc}")
        var = _get(d, "variance", w, float, 0.99)
        _fraction(var, "ood.variance")
        alpha = _get(d, "alpha", w, float, 0.01)
        _fraction(alpha, "ood.alpha")
        mc = _get(d, "max_components", w, int, 20)
        if mc < 1:
            raise TrainConfigError(f"ood.max_components: expected an integer >= 1, got {mc}")
        return cls(n_components=nc, variance=var, alpha=alpha, max_components=mc)


@dataclass(frozen=True)
class IntervalConfig:
    """Split-conformal prediction intervals calibrated on the selection rows."""

    coverage: float = 0.9

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IntervalConfig:
        _check_keys(d, "intervals", {"coverage"})
        cov = _get(d, "coverage", "intervals", float, 0.9)
        _fraction(cov, "intervals.coverage")
        return cls(coverage=cov)


@dataclass(frozen=True)
class QuantizeConfig:
    """Full-integer int8 conversion: how many preprocessed training spectra form the representative set."""

    representative_samples: int = 200
    subprocess: bool = True

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QuantizeConfig:
        w = "quantize"
        _check_keys(d, w, {"representative_samples", "subprocess"})
        n = _get(d, "representative_samples", w, int, 200)
        if n < 10:
            raise TrainConfigError(f"quantize.representative_samples: expected an integer >= 10, got {n}")
        return cls(representative_samples=n, subprocess=_get(d, "subprocess", w, bool, True))


@dataclass(frozen=True)
class BundleConfig:
    """Identity of the model bundle written to the output folder."""

    model_id: str = "model"
    model_version: str = "0.1.0"
    description: str = ""
    units: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BundleConfig:
        w = "bundle"
        _check_keys(d, w, {"model_id", "model_version", "description", "units"})
        import re  # noqa: PLC0415

        ident = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # the bundle manifest's rule (docs/bundle.md)
        mid = _get(d, "model_id", w, str, "model")
        version = _get(d, "model_version", w, str, "0.1.0")
        for key, value in (("model_id", mid), ("model_version", version)):
            if not ident.match(value):
                raise TrainConfigError(
                    f"bundle.{key}: expected 1-64 letters, digits, '.', '_' or '-' starting with a letter or digit, "
                    f"got {value!r}"
                )
        units = _table(d, "units", w)
        for k, v in units.items():
            if not isinstance(v, str):
                raise TrainConfigError(f"bundle.units.{k}: expected a string, got {v!r}")
        return cls(
            model_id=mid,
            model_version=version,
            description=_get(d, "description", w, str, ""),
            units=units,
        )


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run; see the module docstring and ``examples/*.toml``."""

    data: DataConfig
    split: SplitConfig
    cv: CVConfig
    preprocessing: PreprocessingConfig
    augment: Mapping[str, Any]
    model: Mapping[str, Any]
    pruning: Mapping[str, Any]
    quantize: QuantizeConfig
    ood: OodConfig
    intervals: IntervalConfig
    bundle: BundleConfig
    instrument: InstrumentConfig = field(default_factory=InstrumentConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    seed: int = 0
    report: bool = True
    source: str = "<string>"
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def task(self) -> str:
        """``"regression"`` or ``"classification"``."""
        return self.data.task


_TOP_KEYS = frozenset(
    {"seed", "report", "data", "instrument", "selection", "search", "split", "cv", "preprocessing", "augment",
     "model", "pruning", "quantize", "ood", "intervals", "bundle"}
)


def config_from_dict(d: Mapping[str, Any], *, base_dir: str | Path = ".", source: str = "<dict>") -> TrainConfig:
    """Validate a parsed TOML document and build the :class:`TrainConfig`."""
    _check_keys(d, "", _TOP_KEYS)
    base = Path(base_dir)
    seed = _get(d, "seed", "", int, 0)
    if seed < 0:
        raise TrainConfigError(f"seed: expected an integer >= 0, got {seed}")
    return TrainConfig(
        data=DataConfig.from_dict(_table(d, "data", "", required=True), base),
        split=SplitConfig.from_dict(_table(d, "split", "", required=True)),
        cv=CVConfig.from_dict(_table(d, "cv", "")),
        preprocessing=PreprocessingConfig.from_dict(_table(d, "preprocessing", "", required=True)),
        augment=_table(d, "augment", ""),
        model=_table(d, "model", ""),
        pruning=_table(d, "pruning", ""),
        quantize=QuantizeConfig.from_dict(_table(d, "quantize", "")),
        ood=OodConfig.from_dict(_table(d, "ood", "")),
        intervals=IntervalConfig.from_dict(_table(d, "intervals", "")),
        bundle=BundleConfig.from_dict(_table(d, "bundle", "")),
        instrument=InstrumentConfig.from_dict(_table(d, "instrument", "")),
        selection=SelectionConfig.from_dict(_table(d, "selection", "")),
        search=SearchConfig.from_dict(_table(d, "search", "") if "search" in d else None),
        seed=seed,
        report=_get(d, "report", "", bool, True),
        source=source,
        raw=dict(d),
    )


def parse_config(text: str, *, base_dir: str | Path = ".", source: str = "<string>") -> TrainConfig:
    """Parse TOML text; syntax errors become :class:`TrainConfigError` naming the line."""
    try:
        d = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TrainConfigError(f"{source}: invalid TOML: {exc}") from exc
    return config_from_dict(d, base_dir=base_dir, source=source)


def load_config(path: str | Path) -> TrainConfig:
    """Read and validate a TOML training config; relative data paths resolve against its folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TrainConfigError(f"{path}: cannot read config ({exc.strerror or exc})") from exc
    return parse_config(text, base_dir=path.parent, source=str(path))
