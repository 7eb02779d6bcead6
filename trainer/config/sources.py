"""``[data]``, ``[data] synthetic`` and ``[instrument]``: where the spectra are, and what the instrument sends."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.config.split import _SELECTOR_VALUE
from trainer.config.tables import _check_keys, _get, _table
from trainer.errors import TrainConfigError

_TASKS = ("regression", "classification")
_FORMATS = ("npz", "csv", "jcamp")
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
        if synthetic is not None:
            # The simulator's spectra are a regression on an nm axis with every reference value: these keys describe a
            # data file and would be ignored.
            file_only = [k for k in ("format", "targets_path", "join_on", "axis_unit", "delimiter", "decimal",
                                     "missing_reference") if k in d]
            if file_only:
                raise TrainConfigError(
                    f"data.{file_only[0]}: describes a data file (path), expected nothing of the kind beside synthetic "
                    f"(the simulator's spectra), got {', '.join(file_only)}")
            if d.get("task", "regression") != "regression":
                raise TrainConfigError(f"data.task: the synthetic spectra are a regression, got {d['task']!r}")
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
            raise TrainConfigError(f"data.join_on: expected a column name, got {join_on!r}")
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
class LineNoiseConfig:
    """``[instrument.noise]``: the detector noise of the line instrument, declared so that the OOD limits are set on
    spectra as the line will measure them (``trainer.line_noise``).

    The training spectra already carry the lab instrument's noise; a line spectrometer that sends counts adds its
    own (shot and read noise, one exposure per spectrum). The model is ``firmware_bridge.physics.DetectorModel``,
    the detector of ``spectro-sim``, with its default parameters unless given here.

    Parameters
    ----------
    averages : int
        Scans the line instrument averages per spectrum (``spectro-sim --averages``; noise falls as 1/sqrt).
    copies : int
        Noisy copies of each training spectrum the limits are fitted on.
    reference_averages : int
        Scans averaged into each dark and white reference (``spectro-sim --reference-averages``, 64 by default):
        a session's references are shared by all its spectra, so instruments average them more than samples.
    calibration_copies : int
        Line copies of each training spectrum added to the PLS calibration (same groups), so that the
        preprocessing and latent variables chosen by cross-validation, and the coefficients, are those that predict
        best as the line measures (``trainer.line_noise.with_line_copies``); 0 (the default) calibrates on the
        training rows alone.
    cnn_copies : int
        Line copies of each training spectrum added to the CNN's training set, after ``[augment]`` (in every
        cross-validation fold, every search trial and the final fit): a network that has seen the line's noise
        predicts the line's spectra (``trainer.line_noise.cnn_augment_fn``); 0 (the default) trains on the
        training rows and their ``[augment]`` copies alone.
    read_noise_counts, electrons_per_count, white_peak_counts_per_ms : float, optional
        Detector parameters (``DetectorModel``); None keeps the simulator's.
    """

    averages: int = 1
    copies: int = 5
    reference_averages: int = 64
    calibration_copies: int = 0
    cnn_copies: int = 0
    read_noise_counts: float | None = None
    electrons_per_count: float | None = None
    white_peak_counts_per_ms: float | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LineNoiseConfig:
        w = "instrument.noise"
        detector = ("read_noise_counts", "electrons_per_count", "white_peak_counts_per_ms")
        _check_keys(d, w, {"averages", "copies", "reference_averages", "calibration_copies", "cnn_copies",
                           *detector})
        averages = _get(d, "averages", w, int, 1)
        copies = _get(d, "copies", w, int, 5)
        reference_averages = _get(d, "reference_averages", w, int, 64)
        calibration_copies = _get(d, "calibration_copies", w, int, 0)
        cnn_copies = _get(d, "cnn_copies", w, int, 0)
        for key, v in (("calibration_copies", calibration_copies), ("cnn_copies", cnn_copies)):
            if v < 0:
                raise TrainConfigError(f"{w}.{key}: expected an integer >= 0, got {v}")
        for key, v in (("averages", averages), ("copies", copies), ("reference_averages", reference_averages)):
            if v < 1:
                raise TrainConfigError(f"{w}.{key}: expected an integer >= 1, got {v}")
        values = {}
        for key in detector:
            v = _get(d, key, w, float, None)
            if v is not None and not (0.0 < v < float("inf")) and not (key == "read_noise_counts" and v == 0.0):
                floor = ">= 0" if key == "read_noise_counts" else "> 0"
                raise TrainConfigError(f"{w}.{key}: expected a finite number {floor}, got {v!r}")
            values[key] = v
        return cls(averages=averages, copies=copies, reference_averages=reference_averages,
                   calibration_copies=calibration_copies, cnn_copies=cnn_copies,
                   **values)

    def detector_parameters(self) -> dict[str, float]:
        """The ``DetectorModel`` keyword arguments set here."""
        return {k: v for k in ("read_noise_counts", "electrons_per_count", "white_peak_counts_per_ms")
                if (v := getattr(self, k)) is not None}


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
    noise : LineNoiseConfig, optional
        ``[instrument.noise]``, only with ``signal = "counts"``: the line detector's noise, which the OOD limits
        then hold their false-alarm rate under. None (no table): the limits are set on the training spectra as
        they are.
    """

    signal: str = "counts"
    quantity: str = "absorbance"
    noise: LineNoiseConfig | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> InstrumentConfig:
        w = "instrument"
        _check_keys(d, w, {"signal", "quantity", "noise"})
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
        noise = LineNoiseConfig.from_dict(_table(d, "noise", w)) if "noise" in d else None
        if noise is not None and signal != "counts":
            raise TrainConfigError(f"instrument.noise: expected signal = \"counts\" (a detector to model), got "
                                   f"signal = {signal!r}; a device that sends {signal} itself has no detector "
                                   f"noise to declare: remove [instrument.noise]")
        return cls(signal=signal, quantity=quantity, noise=noise)
