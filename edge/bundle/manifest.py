"""The bundle manifest (``manifest.json``): format versions, its schema and the typed target entries.

:func:`validate_manifest` checks a parsed manifest against the schema of its ``format_version`` and names the
field that is wrong; :class:`Target` and :class:`TargetStats` are its ``targets`` entries as frozen values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import numpy as np

from edge.bundle.archive import AUTOENCODER, MANIFEST, MEMBER_LIMITS_BYTES, MODEL_2, PREPROCESSING_2, SIGNATURE
from edge.bundle.contract import FRAME_SIGNALS, PIXEL_FORMATS
from edge.bundle.golden import DEFAULT_GOLDEN_TOLERANCE, GoldenTolerance
from edge.bundle.serving import BLEND_FORMAT_VERSION, SERVING_FORMAT_VERSION, check_output_transform, validate_serving
from edge.errors import BundleError
from edge.jsonstrict import loads_strict
from edge.validation import (
    is_number,
    require,
    require_enum,
    require_int,
    require_keys,
    require_mapping,
    require_number,
    require_str,
)

__all__ = [
    "FORMAT_VERSION",
    "AUTOENCODER_FORMAT_VERSION",
    "SERVING_FORMAT_VERSION",
    "BLEND_FORMAT_VERSION",
    "SUPPORTED_FORMAT_VERSIONS",
    "TASKS",
    "TargetStats",
    "Target",
    "parse_json_member",
    "validate_manifest",
]

#: Version of the bundle format this code writes; every version in SUPPORTED_FORMAT_VERSIONS still loads.
FORMAT_VERSION: Final[int] = 2
#: Version 2 adds ``targets[i].training`` (the training targets' statistics) and the ``reflectance`` frame signal.
#: Version 3 adds the optional autoencoder (member ``autoencoder.tflite``, manifest ``autoencoder``); a bundle
#: without one is still written as version 2, so devices that read version 2 keep loading it.
AUTOENCODER_FORMAT_VERSION: Final[int] = 3
#: Version 4 (:data:`~edge.bundle.serving.SERVING_FORMAT_VERSION`) adds ``serving``: two models, each target served
#: by one of them (:mod:`edge.bundle.serving`); a one-model bundle is still written as version 2 or 3.
#: Version 5 (:data:`~edge.bundle.serving.BLEND_FORMAT_VERSION`) adds ``serving.weights``: a target may be served by
#: a weighted average of both models; a two-model bundle without a blend is still written as version 4.
SUPPORTED_FORMAT_VERSIONS: Final[tuple[int, ...]] = (1, 2, 3, SERVING_FORMAT_VERSION, BLEND_FORMAT_VERSION)

TASKS: Final[tuple[str, ...]] = ("regression", "classification")

_ID_RE: Final[re.Pattern[str]] = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SHA_RE: Final[re.Pattern[str]] = re.compile(r"^[0-9a-f]{64}$")
_UTC_RE: Final[re.Pattern[str]] = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
_MANIFEST_KEYS: Final[frozenset[str]] = frozenset(
    {
        "format_version",
        "model_id",
        "model_version",
        "created_utc",
        "task",
        "targets",
        "wavelength_grid",
        "input_contract",
        "training_data_sha256",
        "library_versions",
        "seed",
        "golden",
        "members",
    }
)
#: Optional manifest fields of format 2: ``output_transform`` {scale, offset} per model output (the model emits
#: standardised targets; the edge turns them into units in float).
_OPTIONAL_KEYS_V2: Final[frozenset[str]] = frozenset({"output_transform"})
#: Optional manifest field of format 3: ``autoencoder`` {limit, alpha, held_out_rows, score} of the member
#: ``autoencoder.tflite`` (checked by :func:`edge.autoencoder.autoencoder_from_manifest`).
_OPTIONAL_KEYS_V3: Final[frozenset[str]] = _OPTIONAL_KEYS_V2 | {"autoencoder"}
#: Optional manifest field of format 4: ``serving`` (checked by :func:`edge.bundle.serving.validate_serving`).
_OPTIONAL_KEYS_V4: Final[frozenset[str]] = _OPTIONAL_KEYS_V3 | {"serving"}


@dataclass(frozen=True)
class TargetStats:
    """In-control distribution of one regression target's predictions (manifest ``targets[i].training``).

    Written by the trainer, read by the edge's prediction-drift monitor (a CUSUM of each prediction's z-score
    against ``mean`` and ``std``).  ``spectro-train fit`` writes the mean and spread of the deployed model's
    held-out predictions of the training rows, with the declared line detector's noise added to each
    (``trainer.prediction_stats``), so that the CUSUM is centred on what it will see; older bundles carry those of
    the training reference values.

    Attributes
    ----------
    mean, std : float
        Mean and standard deviation (ddof 0), in the target's unit; ``std > 0``.
    n : int
        Training rows they were computed on.
    """

    mean: float
    std: float
    n: int

    _KEYS: ClassVar[frozenset[str]] = frozenset({"mean", "std", "n"})

    def to_dict(self) -> dict[str, Any]:
        """Manifest form."""
        return {"mean": float(self.mean), "std": float(self.std), "n": int(self.n)}

    @classmethod
    def from_dict(cls, d: Any, where: str = "training") -> TargetStats:
        """Parse and check the manifest form; :class:`~edge.errors.BundleError` names the field that is wrong."""
        E = BundleError
        d = require_mapping(d, _at(where), E)
        require_keys(d, _at(where), E, sorted(cls._KEYS))
        mean = require_number(d["mean"], _at(f"{where}.mean"), E)
        std = require_number(d["std"], _at(f"{where}.std"), E, minimum=0.0, min_exclusive=True)
        n = require_int(d["n"], _at(f"{where}.n"), E, minimum=2)
        return cls(mean=mean, std=std, n=n)


@dataclass(frozen=True)
class Target:
    """One model output: name and unit (regression), or the class labels (classification).

    Attributes
    ----------
    name : str
        Target name, e.g. ``assay_mg``.
    unit : str
        Unit of the predicted values, e.g. ``mg``; empty for classification.
    labels : tuple of str
        Class labels in the order of the model's outputs (classification only, else empty).
    training : TargetStats or None
        Distribution of the training reference values (format 2, regression only; None when not recorded).
    """

    name: str
    unit: str
    labels: tuple[str, ...] = ()
    training: TargetStats | None = None

    def to_dict(self) -> dict[str, Any]:
        """Manifest form."""
        d: dict[str, Any] = {"name": self.name, "unit": self.unit}
        if self.labels:
            d["labels"] = list(self.labels)
        if self.training is not None:
            d["training"] = self.training.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Target:
        """From the manifest form (validated by :func:`validate_manifest`)."""
        stats = d.get("training")
        return cls(
            name=str(d["name"]),
            unit=str(d["unit"]),
            labels=tuple(d.get("labels", ())),
            training=TargetStats.from_dict(stats) if stats is not None else None,
        )


def parse_json_member(name: str, data: bytes) -> Any:
    """Parse the JSON member ``name`` strictly (:func:`edge.jsonstrict.loads_strict`), or raise a BundleError."""
    try:
        return loads_strict(data)
    except ValueError as exc:
        raise BundleError(f"member {name}: not valid JSON: {exc}") from exc


_M = "manifest"  # the prefix of every manifest message


def _at(field: str) -> str:
    return f"{_M}: {field}"


def validate_manifest(manifest: Any) -> None:
    """Check a parsed manifest against the schema of its ``format_version``.

    Parameters
    ----------
    manifest : Any
        The parsed ``manifest.json``.

    Raises
    ------
    BundleError
        A newer ``format_version`` than :data:`SUPPORTED_FORMAT_VERSIONS` (the message names the supported ones),
        or any field missing, unknown, of the wrong type or out of range (the message names the field).
    """
    E = BundleError
    manifest = require_mapping(manifest, _M, E)
    version = manifest.get("format_version")
    require_int(version, _at("format_version"), E)
    if version not in SUPPORTED_FORMAT_VERSIONS:
        newer = " is newer than this code supports" if version > max(SUPPORTED_FORMAT_VERSIONS) else " is not supported"
        raise BundleError(
            f"manifest: format_version {version}{newer} (supported: "
            f"{', '.join(map(str, SUPPORTED_FORMAT_VERSIONS))}); upgrade spectrolite on this device"
        )
    optional = (_OPTIONAL_KEYS_V4 if version >= SERVING_FORMAT_VERSION else _OPTIONAL_KEYS_V3 if version >= 3
                else _OPTIONAL_KEYS_V2 if version >= 2 else frozenset())
    require_keys(manifest, _M, E, sorted(_MANIFEST_KEYS), optional)

    for key in ("model_id", "model_version"):
        require_str(manifest[key], _at(key), E, pattern=_ID_RE)
    require_str(manifest["created_utc"], _at("created_utc"), E, pattern=_UTC_RE,
                pattern_doc="a UTC time like 2026-01-31T12:00:00Z")
    task = require_enum(manifest["task"], _at("task"), E, TASKS)

    targets = manifest["targets"]
    require(isinstance(targets, list) and len(targets) >= 1, E, _at("targets"), "a non-empty list of targets", targets)
    for i, t in enumerate(targets):
        where = f"targets[{i}]"
        require_mapping(t, _at(where), E)
        require_keys(t, _at(where), E, ("name", "unit"), ("labels",) + (("training",) if version >= 2 else ()))
        if "training" in t:
            require(task == "regression", E, _at(f"{where}.training"), "only for regression")
            TargetStats.from_dict(t["training"], f"{where}.training")
        require_str(t["name"], _at(f"{where}.name"), E, non_empty=True)
        require_str(t["unit"], _at(f"{where}.unit"), E)
        labels = t.get("labels")
        if task == "classification":
            require(
                isinstance(labels, list) and len(labels) >= 2 and all(isinstance(x, str) for x in labels),
                E, _at(f"{where}.labels"), "at least 2 class labels", labels,
            )
            require(len(set(labels)) == len(labels), E, _at(f"{where}.labels"), "distinct class labels", labels)
        else:
            require(labels is None, E, _at(f"{where}.labels"), "no labels for regression", labels)
    if task == "classification":
        require(len(targets) == 1, E, _at("targets"), "exactly 1 target for classification", len(targets))

    grid = require_mapping(manifest["wavelength_grid"], _at("wavelength_grid"), E)
    require_keys(grid, _at("wavelength_grid"), E, ("unit", "values"))
    require_enum(grid["unit"], _at("wavelength_grid.unit"), E, ("nm", "cm-1"))
    values = grid["values"]
    require(
        isinstance(values, list) and len(values) >= 2 and all(is_number(v) for v in values),
        E, _at("wavelength_grid.values"), "a list of at least 2 finite numbers",
    )
    diffs = np.diff(np.asarray(values, dtype=np.float64))
    require(bool(np.all(diffs > 0) or np.all(diffs < 0)), E, _at("wavelength_grid.values"), "strictly monotonic values")

    contract = require_mapping(manifest["input_contract"], _at("input_contract"), E)
    require_keys(contract, _at("input_contract"), E, ("pixel_count_min", "pixel_count_max", "wavelength_min",
                                                      "wavelength_max", "pixel_formats", "frame_signal"))
    for key in ("pixel_count_min", "pixel_count_max"):
        require_int(contract[key], _at(f"input_contract.{key}"), E, minimum=1)
    require(contract["pixel_count_min"] <= contract["pixel_count_max"], E, _at("input_contract"),
            "pixel_count_min <= pixel_count_max", f"{contract['pixel_count_min']} > {contract['pixel_count_max']}")
    for key in ("wavelength_min", "wavelength_max"):
        require_number(contract[key], _at(f"input_contract.{key}"), E)
    require(contract["wavelength_min"] < contract["wavelength_max"], E, _at("input_contract"),
            "wavelength_min < wavelength_max")
    fmts = contract["pixel_formats"]
    require(
        isinstance(fmts, list) and len(fmts) >= 1 and all(f in PIXEL_FORMATS for f in fmts),
        E, _at("input_contract.pixel_formats"), f"a non-empty subset of {list(PIXEL_FORMATS)}", fmts,
    )
    signals = FRAME_SIGNALS if version >= 2 else ("counts", "absorbance")
    require_enum(contract["frame_signal"], _at("input_contract.frame_signal"), E, signals)

    if "output_transform" in manifest:
        ot = require_mapping(manifest["output_transform"], _at("output_transform"), E)
        require_keys(ot, _at("output_transform"), E, ("scale", "offset"))
        require(task == "regression", E, _at("output_transform"), "only for regression")
        check_output_transform(ot, "output_transform", len(targets))

    require_str(manifest["training_data_sha256"], _at("training_data_sha256"), E, pattern=_SHA_RE,
                pattern_doc="64 hex digits")
    libs = manifest["library_versions"]
    require(
        isinstance(libs, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in libs.items()),
        E, _at("library_versions"), "an object mapping names to version strings",
    )
    require_int(manifest["seed"], _at("seed"), E)

    golden = require_mapping(manifest["golden"], _at("golden"), E)
    require_keys(golden, _at("golden"), E, sorted({*DEFAULT_GOLDEN_TOLERANCE, "count"}))
    require_int(golden["count"], _at("golden.count"), E, minimum=1)
    GoldenTolerance.from_dict(golden)

    members = require_mapping(manifest["members"], _at("members"), E)
    for name, entry in members.items():
        where = f"members[{name!r}]"
        require(name in MEMBER_LIMITS_BYTES and name not in (MANIFEST, SIGNATURE), E, _at("members"),
                "known bundle members", name)
        require_mapping(entry, _at(where), E)
        require_keys(entry, _at(where), E, ("sha256", "size"))
        require_str(entry["sha256"], _at(f"{where}.sha256"), E, pattern=_SHA_RE, pattern_doc="64 hex digits")
        require_int(entry["size"], _at(f"{where}.size"), E, minimum=0)
    if "serving" in manifest:
        validate_serving(manifest["serving"], task, len(targets), members, version)
    second = sorted(m for m in (MODEL_2, PREPROCESSING_2) if m in members)
    if second and "serving" not in manifest:
        raise BundleError(f"{_at('members')}: expected {' and '.join(second)} only with a serving section, got no "
                          "serving section")
    has_ae, declared_ae = AUTOENCODER in members, "autoencoder" in manifest
    require(has_ae == declared_ae, E, _at("autoencoder"),
            f"the autoencoder section and the member {AUTOENCODER} together or neither",
            f"{'the member' if has_ae else 'the section'} alone")
