"""The bundle manifest (``manifest.json``): format versions, its schema and the typed target entries.

:func:`validate_manifest` checks a parsed manifest against the schema of its ``format_version`` and names the
field that is wrong; :class:`Target` and :class:`TargetStats` are its ``targets`` entries as frozen values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import numpy as np

from edge.bundle.archive import MANIFEST, MEMBER_LIMITS_BYTES, SIGNATURE
from edge.bundle.contract import FRAME_SIGNALS, PIXEL_FORMATS
from edge.bundle.golden import DEFAULT_GOLDEN_TOLERANCE, GoldenTolerance
from edge.errors import BundleError
from edge.jsonstrict import loads_strict

__all__ = [
    "FORMAT_VERSION",
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
SUPPORTED_FORMAT_VERSIONS: Final[tuple[int, ...]] = (1, 2)

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


@dataclass(frozen=True)
class TargetStats:
    """Distribution of one regression target over the training rows (manifest ``targets[i].training``).

    Written by the trainer, read by the edge's prediction-drift monitor (a CUSUM of each prediction's z-score
    against ``mean`` and ``std``).

    Attributes
    ----------
    mean, std : float
        Mean and standard deviation (ddof 0) of the training reference values, in the target's unit; ``std > 0``.
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
        _expect(isinstance(d, dict) and set(d) == cls._KEYS, f"expected {where} fields {sorted(cls._KEYS)}, got {d!r}")
        _expect(_is_number(d["mean"]), f"expected {where}.mean to be a finite number, got {d['mean']!r}")
        _expect(_is_number(d["std"]) and d["std"] > 0, f"expected {where}.std > 0, got {d['std']!r}")
        n = d["n"]
        _expect(isinstance(n, int) and not isinstance(n, bool) and n >= 2, f"expected {where}.n >= 2, got {n!r}")
        return cls(mean=float(d["mean"]), std=float(d["std"]), n=int(n))


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


def _expect(cond: bool, message: str) -> None:
    if not cond:
        raise BundleError(f"manifest: {message}")


def _is_number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


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
    _expect(isinstance(manifest, dict), f"expected a JSON object, got {type(manifest).__name__}")
    version = manifest.get("format_version")
    _expect(
        isinstance(version, int) and not isinstance(version, bool),
        f"expected an integer format_version, got {version!r}",
    )
    if version not in SUPPORTED_FORMAT_VERSIONS:
        newer = " is newer than this code supports" if version > max(SUPPORTED_FORMAT_VERSIONS) else " is not supported"
        raise BundleError(
            f"manifest: format_version {version}{newer} (supported: "
            f"{', '.join(map(str, SUPPORTED_FORMAT_VERSIONS))}); upgrade spectrolite on this device"
        )
    keys = set(manifest)
    missing = sorted(_MANIFEST_KEYS - keys)
    unknown = sorted(keys - _MANIFEST_KEYS - (_OPTIONAL_KEYS_V2 if version >= 2 else frozenset()))
    _expect(not missing, f"missing field(s) {', '.join(missing)}")
    _expect(not unknown, f"unknown field(s) {', '.join(unknown)}; expected only {sorted(_MANIFEST_KEYS)}")

    for key in ("model_id", "model_version"):
        v = manifest[key]
        _expect(isinstance(v, str) and bool(_ID_RE.match(v)), f"expected {key} matching {_ID_RE.pattern}, got {v!r}")
    created = manifest["created_utc"]
    _expect(
        isinstance(created, str) and bool(_UTC_RE.match(created)),
        f"expected created_utc like 2026-01-31T12:00:00Z, got {created!r}",
    )
    task = manifest["task"]
    _expect(task in TASKS, f"expected task in {list(TASKS)}, got {task!r}")

    targets = manifest["targets"]
    _expect(isinstance(targets, list) and len(targets) >= 1, f"expected a non-empty list of targets, got {targets!r}")
    for i, t in enumerate(targets):
        _expect(isinstance(t, dict), f"expected targets[{i}] to be an object, got {t!r}")
        allowed = {"name", "unit", "labels"} | ({"training"} if version >= 2 else set())
        extra = set(t) - allowed
        _expect(not extra, f"unknown field(s) {sorted(extra)} in targets[{i}]")
        if "training" in t:
            _expect(task == "regression", f"targets[{i}].training is only allowed for regression")
            TargetStats.from_dict(t["training"], f"targets[{i}].training")
        _expect(
            isinstance(t.get("name"), str) and bool(t.get("name")),
            f"expected targets[{i}].name, got {t.get('name')!r}",
        )
        _expect(isinstance(t.get("unit"), str), f"expected targets[{i}].unit to be a string, got {t.get('unit')!r}")
        labels = t.get("labels")
        if task == "classification":
            _expect(
                isinstance(labels, list) and len(labels) >= 2 and all(isinstance(x, str) for x in labels),
                f"expected targets[{i}].labels to list at least 2 class labels, got {labels!r}",
            )
            _expect(len(set(labels)) == len(labels), f"expected distinct class labels in targets[{i}], got {labels!r}")
        else:
            _expect(labels is None, f"targets[{i}].labels is only allowed for classification")
    if task == "classification":
        _expect(len(targets) == 1, f"expected exactly 1 target for classification, got {len(targets)}")

    grid = manifest["wavelength_grid"]
    _expect(isinstance(grid, dict) and set(grid) == {"unit", "values"}, "expected wavelength_grid {unit, values}")
    _expect(grid["unit"] in ("nm", "cm-1"), f"expected wavelength_grid.unit nm or cm-1, got {grid['unit']!r}")
    values = grid["values"]
    _expect(
        isinstance(values, list) and len(values) >= 2 and all(_is_number(v) for v in values),
        "expected wavelength_grid.values to be a list of at least 2 finite numbers",
    )
    diffs = np.diff(np.asarray(values, dtype=np.float64))
    _expect(bool(np.all(diffs > 0) or np.all(diffs < 0)), "expected wavelength_grid.values to be strictly monotonic")

    contract = manifest["input_contract"]
    want = {"pixel_count_min", "pixel_count_max", "wavelength_min", "wavelength_max", "pixel_formats", "frame_signal"}
    _expect(isinstance(contract, dict), "expected input_contract to be an object")
    _expect(set(contract) == want, f"expected input_contract fields {sorted(want)}, got {sorted(contract)}")
    for key in ("pixel_count_min", "pixel_count_max"):
        v = contract[key]
        _expect(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1,
            f"expected input_contract.{key} >= 1, got {v!r}",
        )
    _expect(
        contract["pixel_count_min"] <= contract["pixel_count_max"],
        "expected input_contract.pixel_count_min <= pixel_count_max",
    )
    for key in ("wavelength_min", "wavelength_max"):
        _expect(
            _is_number(contract[key]),
            f"expected input_contract.{key} to be a finite number, got {contract[key]!r}",
        )
    _expect(
        contract["wavelength_min"] < contract["wavelength_max"],
        "expected input_contract.wavelength_min < wavelength_max",
    )
    fmts = contract["pixel_formats"]
    _expect(
        isinstance(fmts, list) and len(fmts) >= 1 and all(f in PIXEL_FORMATS for f in fmts),
        f"expected input_contract.pixel_formats to be a non-empty subset of {list(PIXEL_FORMATS)}, got {fmts!r}",
    )
    signals = FRAME_SIGNALS if version >= 2 else ("counts", "absorbance")
    _expect(
        contract["frame_signal"] in signals,
        f"expected input_contract.frame_signal in {list(signals)}, got {contract['frame_signal']!r}",
    )

    if "output_transform" in manifest:
        ot = manifest["output_transform"]
        _expect(isinstance(ot, dict) and set(ot) == {"scale", "offset"}, "expected output_transform {scale, offset}")
        n_out = len(targets) if task == "regression" else None
        _expect(task == "regression", "output_transform is only allowed for regression")
        for key in ("scale", "offset"):
            v = ot[key]
            _expect(
                isinstance(v, list) and len(v) == n_out and all(_is_number(x) for x in v),
                f"expected output_transform.{key} to list {n_out} finite numbers (one per target), got {v!r}",
            )
        _expect(all(x != 0 for x in ot["scale"]), "expected non-zero output_transform.scale values")

    sha = manifest["training_data_sha256"]
    _expect(
        isinstance(sha, str) and bool(_SHA_RE.match(sha)),
        f"expected training_data_sha256 as 64 hex digits, got {sha!r}",
    )
    libs = manifest["library_versions"]
    _expect(
        isinstance(libs, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in libs.items()),
        "expected library_versions to map names to version strings",
    )
    seed = manifest["seed"]
    _expect(isinstance(seed, int) and not isinstance(seed, bool), f"expected an integer seed, got {seed!r}")

    golden = manifest["golden"]
    _expect(isinstance(golden, dict), "expected golden to be an object")
    gkeys = set(DEFAULT_GOLDEN_TOLERANCE) | {"count"}
    _expect(set(golden) == gkeys, f"expected golden fields {sorted(gkeys)}, got {sorted(golden)}")
    count = golden["count"]
    _expect(
        isinstance(count, int) and not isinstance(count, bool) and count >= 1,
        f"expected golden.count >= 1, got {count!r}",
    )
    GoldenTolerance.from_dict(golden)

    members = manifest["members"]
    _expect(isinstance(members, dict), "expected members to be an object")
    for name, entry in members.items():
        _expect(
            name in MEMBER_LIMITS_BYTES and name not in (MANIFEST, SIGNATURE),
            f"unknown entry {name!r} in members",
        )
        _expect(
            isinstance(entry, dict) and set(entry) == {"sha256", "size"},
            f"expected members[{name!r}] to be {{sha256, size}}",
        )
        _expect(
            isinstance(entry["sha256"], str) and bool(_SHA_RE.match(entry["sha256"])),
            f"expected members[{name!r}].sha256 as 64 hex digits",
        )
        size = entry["size"]
        _expect(
            isinstance(size, int) and not isinstance(size, bool) and size >= 0,
            f"expected members[{name!r}].size >= 0",
        )
