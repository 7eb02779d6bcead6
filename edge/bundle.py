"""Model bundle reader of the device: verify a ``.spectrolite`` zip, build its pipeline and runtime, self-test it.

A bundle is a zip (see ``docs/bundle.md``) holding ``manifest.json``, ``model.tflite``, ``preprocessing.json``,
``metrics.json``, ``golden.npz``, optionally ``ood.json``, ``intervals.json`` and ``manifest.sig`` (an Ed25519
signature over the exact bytes of ``manifest.json``). The manifest records the SHA-256 and size of every other
member, so a valid signature covers the whole bundle.

:func:`load_bundle` refuses, with a :class:`~edge.errors.BundleError` naming what failed: a file that is not a zip
or is truncated, a member that is unknown, has a path in its name, is larger than its cap (zip bombs) or fails its
CRC, SHA-256 or size; a manifest that does not follow the schema or has a newer ``format_version``; a missing or
bad signature when a public key is configured; and golden vectors that the edge's own preprocessing and runtime
do not reproduce within the manifest's tolerances.

Only the standard library and numpy are used here, plus the ``cryptography`` package imported lazily when a
signature has to be verified (hand-written Ed25519 would be a liability), and the TFLite runtime through
:mod:`edge.runtime`.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final

import numpy as np
import numpy.typing as npt

from edge.drift import TrainingStats
from edge.errors import BundleError, InputContractError
from edge.runtime import ModelRuntime
from firmware_bridge.frames import AxisUnit

if TYPE_CHECKING:
    from edge.intervals import IntervalModel
    from edge.ood import OodModel
    from edge.preprocess import Pipeline

__all__ = [
    "BUNDLE_SUFFIX",
    "FORMAT_VERSION",
    "SUPPORTED_FORMAT_VERSIONS",
    "TargetStats",
    "MANIFEST",
    "SIGNATURE",
    "MODEL",
    "PREPROCESSING",
    "OOD",
    "INTERVALS",
    "METRICS",
    "GOLDEN",
    "MEMBER_LIMITS_BYTES",
    "REQUIRED_MEMBERS",
    "OPTIONAL_MEMBERS",
    "MAX_BUNDLE_BYTES",
    "TASKS",
    "FRAME_SIGNALS",
    "PIXEL_FORMATS",
    "OFFLINE_DARK_COUNTS",
    "OFFLINE_WHITE_COUNTS",
    "counts_from_signal",
    "DEFAULT_GOLDEN_TOLERANCE",
    "GOLDEN_MAX_ARRAY_BYTES",
    "Target",
    "FrameContract",
    "GoldenTolerance",
    "GoldenVectors",
    "SelfTestReport",
    "Bundle",
    "load_bundle",
    "read_members",
    "validate_manifest",
    "verify_signature",
    "load_public_key",
    "run_golden",
    "sha256_hex",
    "pipeline_reads_counts",
    "check_command",
]

#: Version of the bundle format this code writes; every version in SUPPORTED_FORMAT_VERSIONS still loads.
FORMAT_VERSION: Final[int] = 2
#: Version 2 adds ``targets[i].training`` (the training targets' statistics) and the ``reflectance`` frame signal.
SUPPORTED_FORMAT_VERSIONS: Final[tuple[int, ...]] = (1, 2)
#: Suffix of a bundle file.
BUNDLE_SUFFIX: Final[str] = ".spectrolite"

MANIFEST: Final[str] = "manifest.json"
SIGNATURE: Final[str] = "manifest.sig"
MODEL: Final[str] = "model.tflite"
PREPROCESSING: Final[str] = "preprocessing.json"
OOD: Final[str] = "ood.json"
INTERVALS: Final[str] = "intervals.json"
METRICS: Final[str] = "metrics.json"
GOLDEN: Final[str] = "golden.npz"

_MiB: Final[int] = 1024 * 1024
#: Largest uncompressed size accepted for each member (a zip bomb or a hostile file stops at its cap).
MEMBER_LIMITS_BYTES: Final[Mapping[str, int]] = {
    MANIFEST: 1 * _MiB,
    SIGNATURE: 1024,
    MODEL: 64 * _MiB,
    PREPROCESSING: 16 * _MiB,
    OOD: 16 * _MiB,
    INTERVALS: 1 * _MiB,
    METRICS: 4 * _MiB,
    GOLDEN: 16 * _MiB,
}
REQUIRED_MEMBERS: Final[tuple[str, ...]] = (MANIFEST, MODEL, PREPROCESSING, METRICS, GOLDEN)
OPTIONAL_MEMBERS: Final[tuple[str, ...]] = (OOD, INTERVALS, SIGNATURE)
#: Largest bundle file accepted (sum of the member caps plus zip overhead).
MAX_BUNDLE_BYTES: Final[int] = sum(MEMBER_LIMITS_BYTES.values()) + _MiB

TASKS: Final[tuple[str, ...]] = ("regression", "classification")
#: What raw frames carry, as the device announces it (``firmware_bridge.frames.SignalKind``, lower case): ``counts``
#: are raw detector counts that the pipeline's leading ``counts`` step converts with dark and white reference
#: spectra; ``absorbance`` and ``reflectance`` frames carry an already processed signal and need no references.
FRAME_SIGNALS: Final[tuple[str, ...]] = ("counts", "absorbance", "reflectance")
#: Flat dark and white levels (counts) with which :meth:`Bundle.frames_from_signal` expresses spectra as counts.
OFFLINE_DARK_COUNTS: Final[float] = 1000.0
OFFLINE_WHITE_COUNTS: Final[float] = 50000.0
#: Pixel formats a contract may accept (names of ``firmware_bridge.frames.PixelFormat``, lower case).
PIXEL_FORMATS: Final[tuple[str, ...]] = ("uint16", "uint32", "float32")
#: Largest total size of the arrays inside ``golden.npz`` once inflated.
GOLDEN_MAX_ARRAY_BYTES: Final[int] = 64 * _MiB
#: Tolerances written by the trainer unless told otherwise (justified in docs/bundle.md).
DEFAULT_GOLDEN_TOLERANCE: Final[Mapping[str, float]] = {
    "preprocessed_atol": 1e-9,
    "preprocessed_rtol": 1e-7,
    "output_int8_lsb": 1.0,
    "output_float_atol": 1e-5,
    "output_float_rtol": 1e-4,
}

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
_ED25519_SIGNATURE_BYTES: Final[int] = 64
_ED25519_PUBLIC_BYTES: Final[int] = 32


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def counts_from_signal(
    X: npt.ArrayLike, quantity: str
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Counts (and the flat dark and white references) that a ``counts`` step with ``quantity`` turns back into
    ``X``: ``dark + (white - dark) * ratio``, the ratio being ``10 ** -X`` for absorbance, ``X`` otherwise."""
    A = np.asarray(X, dtype=np.float64)
    n = A.shape[-1]
    dark, white = np.full(n, OFFLINE_DARK_COUNTS), np.full(n, OFFLINE_WHITE_COUNTS)
    ratio = np.power(10.0, -A) if quantity == "absorbance" else A
    return dark + (white - dark) * ratio, dark, white


# ------------------------------------------------------------------------------------------------ typed manifest
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


@dataclass(frozen=True)
class FrameContract:
    """What a raw frame must look like for this bundle (the daemon checks every frame against it).

    Attributes
    ----------
    pixel_count_min, pixel_count_max : int
        Accepted number of pixels (channels) per frame, inclusive.
    wavelength_min, wavelength_max : float
        Range (in ``wavelength_unit``) that the instrument's wavelength axis must cover.
    wavelength_unit : str
        ``nm`` or ``cm-1``: the unit of the bundle's wavelength grid (``wavelength_grid.unit``), in which a device's
        axis is judged (:meth:`axis_from_nm` converts one given in nm).
    pixel_formats : tuple of str
        Accepted pixel formats (see :data:`PIXEL_FORMATS`).
    frame_signal : str
        One of :data:`FRAME_SIGNALS`; ``counts`` needs dark and white reference spectra.
    """

    pixel_count_min: int
    pixel_count_max: int
    wavelength_min: float
    wavelength_max: float
    wavelength_unit: str
    pixel_formats: tuple[str, ...]
    frame_signal: str

    @property
    def needs_references(self) -> bool:
        """True when frames are raw counts that need dark and white reference spectra."""
        return self.frame_signal == "counts"

    def axis_from_nm(self, wavelengths_nm: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """A device axis given in nm (``Status.wavelengths_nm()``) in ``wavelength_unit`` (``1e7 / nm`` for cm-1).

        >>> c = FrameContract(1, 10, 900.0, 1800.0, "cm-1", ("uint16",), "counts")
        >>> c.axis_from_nm([10_000.0, 5_000.0]).tolist()
        [1000.0, 2000.0]
        """
        return AxisUnit.from_symbol(self.wavelength_unit).from_nm(wavelengths_nm)

    def check(
        self,
        n_pixels: int,
        *,
        wavelengths: npt.ArrayLike | None = None,
        pixel_format: str | None = None,
        wavelengths_nm: npt.ArrayLike | None = None,
    ) -> None:
        """Raise :class:`~edge.errors.InputContractError` when a frame does not match this contract.

        Parameters
        ----------
        n_pixels : int
            Number of pixels in the frame.
        wavelengths : ndarray, shape (n_pixels,), optional
            The instrument's wavelength axis in ``wavelength_unit``; it must cover the contract's range.
        pixel_format : str, optional
            Pixel format name of the frame (case-insensitive, e.g. ``UINT16``).
        wavelengths_nm : ndarray, shape (n_pixels,), optional
            The instrument's axis in nm instead (``Status.wavelengths_nm()``), converted with :meth:`axis_from_nm`
            and checked as ``wavelengths``; the message then also names the axis in nm.  Not both.
        """
        if wavelengths_nm is not None:
            if wavelengths is not None:
                raise TypeError("expected wavelengths= (in wavelength_unit) or wavelengths_nm=, got both")
            nm = np.asarray(wavelengths_nm, dtype=np.float64)
            try:
                self.check(n_pixels, wavelengths=self.axis_from_nm(nm), pixel_format=pixel_format)
            except InputContractError as exc:
                if self.wavelength_unit == "nm" or "wavelength" not in str(exc) or nm.size == 0:
                    raise
                with np.errstate(all="ignore"):
                    lo, hi = float(np.nanmin(nm)), float(np.nanmax(nm))
                raise InputContractError(
                    f"{exc} (the device's axis, {lo:g}-{hi:g} nm, in the bundle's {self.wavelength_unit})"
                ) from None
            return
        if not self.pixel_count_min <= n_pixels <= self.pixel_count_max:
            want = (
                f"{self.pixel_count_min}"
                if self.pixel_count_min == self.pixel_count_max
                else f"{self.pixel_count_min} to {self.pixel_count_max}"
            )
            raise InputContractError(f"expected {want} pixels, got {n_pixels}")
        if pixel_format is not None and pixel_format.lower() not in self.pixel_formats:
            raise InputContractError(f"expected pixel format in {list(self.pixel_formats)}, got {pixel_format.lower()}")
        if wavelengths is not None:
            wl = np.asarray(wavelengths, dtype=np.float64)
            if wl.shape != (n_pixels,):
                raise InputContractError(f"expected {n_pixels} wavelengths, got shape {wl.shape}")
            if not np.isfinite(wl).all():
                raise InputContractError("expected finite wavelengths, got NaN or inf")
            lo, hi = float(wl.min()), float(wl.max())
            slack = 1e-9 * max(1.0, abs(self.wavelength_max))
            if lo > self.wavelength_min + slack or hi < self.wavelength_max - slack:
                raise InputContractError(
                    f"expected a wavelength axis covering {self.wavelength_min:g}-{self.wavelength_max:g} "
                    f"{self.wavelength_unit}, got {lo:g}-{hi:g} {self.wavelength_unit}"
                )

    def unmet_by_devices_of(self, other: FrameContract) -> str | None:
        """Why a device that meets ``other`` may not meet this contract, or None when every such device does.

        The daemon uses it for a reload before the device has announced itself: what the bundle in service accepts
        is then the best knowledge of the device, and a bundle that accepts less may refuse every frame.

        >>> a = FrameContract(256, 256, 900.0, 1700.0, "nm", ("uint16",), "counts")
        >>> a.unmet_by_devices_of(a) is None
        True
        >>> FrameContract(512, 512, 900.0, 1700.0, "nm", ("uint16",), "counts").unmet_by_devices_of(a)
        'expected 512 pixels, the bundle in service takes 256'
        """

        def count(c: FrameContract) -> str:
            lo, hi = c.pixel_count_min, c.pixel_count_max
            return f"{lo}" if lo == hi else f"{lo} to {hi}"

        if self.frame_signal != other.frame_signal:
            return f"expected {self.frame_signal} frames, the bundle in service takes {other.frame_signal}"
        if not (self.pixel_count_min <= other.pixel_count_min and other.pixel_count_max <= self.pixel_count_max):
            return f"expected {count(self)} pixels, the bundle in service takes {count(other)}"
        missing = sorted(set(other.pixel_formats) - set(self.pixel_formats))
        if missing:
            return f"expected pixel formats {list(self.pixel_formats)}, the bundle in service also takes {missing}"
        if self.wavelength_unit != other.wavelength_unit:
            return f"expected an axis in {self.wavelength_unit}, the bundle in service has {other.wavelength_unit}"
        slack = 1e-9 * max(1.0, abs(self.wavelength_max))
        if self.wavelength_min < other.wavelength_min - slack or self.wavelength_max > other.wavelength_max + slack:
            return (f"expected an axis covering {self.wavelength_min:g}-{self.wavelength_max:g} "
                    f"{self.wavelength_unit}, the bundle in service needs only {other.wavelength_min:g}-"
                    f"{other.wavelength_max:g} {other.wavelength_unit}")
        return None

    def to_dict(self) -> dict[str, Any]:
        """Manifest form (without the unit, which lives in ``wavelength_grid``)."""
        return {
            "pixel_count_min": self.pixel_count_min,
            "pixel_count_max": self.pixel_count_max,
            "wavelength_min": self.wavelength_min,
            "wavelength_max": self.wavelength_max,
            "pixel_formats": list(self.pixel_formats),
            "frame_signal": self.frame_signal,
        }


@dataclass(frozen=True)
class GoldenTolerance:
    """How closely the golden vectors must be reproduced (see docs/bundle.md for the reasoning).

    Attributes
    ----------
    preprocessed_atol, preprocessed_rtol : float
        ``|got - expected| <= atol + rtol * |expected|`` for every preprocessed value (float64).
    output_int8_lsb : float
        Allowed output difference of an int8 model in units of the output tensor's scale (one LSB).
    output_float_atol, output_float_rtol : float
        Allowed output difference of a float model, as for the preprocessed values.
    """

    preprocessed_atol: float
    preprocessed_rtol: float
    output_int8_lsb: float
    output_float_atol: float
    output_float_rtol: float

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GoldenTolerance:
        """Read the tolerance keys of the manifest's ``golden`` section."""
        values = {}
        for key in DEFAULT_GOLDEN_TOLERANCE:
            v = d.get(key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise BundleError(f"manifest: expected golden.{key} to be a finite number >= 0, got {v!r}")
            values[key] = float(v)
        return cls(**values)

    def to_dict(self) -> dict[str, float]:
        """Manifest form."""
        return {key: float(getattr(self, key)) for key in DEFAULT_GOLDEN_TOLERANCE}


# ------------------------------------------------------------------------------------------------ zip layer
def _check_member_name(name: str) -> None:
    if not name or "/" in name or "\\" in name or "\x00" in name or name in (".", "..") or ":" in name:
        raise BundleError(f"member name {name!r} is not allowed (no paths, only plain file names)")
    if name not in MEMBER_LIMITS_BYTES:
        raise BundleError(f"unknown member {name!r}; expected only {sorted(MEMBER_LIMITS_BYTES)}")


def read_members(path: str | Path) -> tuple[dict[str, bytes], str]:
    """Read every member of a bundle file with the structural checks, nothing else.

    Parameters
    ----------
    path : str or Path
        The ``.spectrolite`` file.

    Returns
    -------
    members : dict of str to bytes
        Uncompressed bytes of each member, CRC-checked and within its size cap.
    file_sha256 : str
        SHA-256 of the whole bundle file as read.

    Raises
    ------
    BundleError
        Missing or oversized file, not a zip (e.g. truncated), unknown or path-like member names, duplicates,
        encrypted or oversized members, CRC or decompression failures, missing required members.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_BUNDLE_BYTES:
            raise BundleError(f"bundle {p.name}: {size} bytes exceeds the limit of {MAX_BUNDLE_BYTES} bytes")
        chunks: list[bytes] = []
        total = 0
        with p.open("rb") as fh:  # in chunks: a file growing while read is still cut at the limit
            while total <= MAX_BUNDLE_BYTES and (chunk := fh.read(_MiB)):
                chunks.append(chunk)
                total += len(chunk)
        raw = b"".join(chunks)
    except OSError as exc:
        raise BundleError(f"bundle {p}: cannot be read: {exc.strerror or exc}") from exc
    if len(raw) > MAX_BUNDLE_BYTES:
        raise BundleError(f"bundle {p.name}: more than {MAX_BUNDLE_BYTES} bytes")
    file_sha = sha256_hex(raw)
    try:
        zf = zipfile.ZipFile(io.BytesIO(raw))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise BundleError(f"bundle {p.name}: not a valid zip archive (truncated or corrupt): {exc}") from exc
    members: dict[str, bytes] = {}
    with zf:
        infos = zf.infolist()
        seen: set[str] = set()
        for info in infos:
            _check_member_name(info.filename)
            if info.filename in seen:
                raise BundleError(f"member {info.filename}: appears twice in the archive")
            seen.add(info.filename)
        for info in infos:
            name = info.filename
            limit = MEMBER_LIMITS_BYTES[name]
            if info.flag_bits & 0x1:
                raise BundleError(f"member {name}: is encrypted")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise BundleError(
                    f"member {name}: expected stored or deflated, got compression method {info.compress_type}"
                )
            if info.file_size > limit:
                raise BundleError(f"member {name}: {info.file_size} bytes exceeds the limit of {limit} bytes")
            try:
                with zf.open(info) as fh:
                    data = fh.read(limit + 1)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError) as exc:
                raise BundleError(f"member {name}: corrupted ({exc})") from exc
            if len(data) > limit:
                raise BundleError(f"member {name}: more than {limit} bytes once uncompressed")
            if len(data) != info.file_size:
                raise BundleError(f"member {name}: expected {info.file_size} bytes, got {len(data)}")
            members[name] = data
    missing = [m for m in REQUIRED_MEMBERS if m not in members]
    if missing:
        raise BundleError(f"bundle {p.name}: missing member(s) {', '.join(missing)}")
    return members, file_sha


# ------------------------------------------------------------------------------------------------ manifest
def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name} is not allowed")


def _parse_json(name: str, data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
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


def _check_member_hashes(manifest: Mapping[str, Any], members: Mapping[str, bytes]) -> None:
    listed: Mapping[str, Any] = manifest["members"]
    present = {n for n in members if n not in (MANIFEST, SIGNATURE)}
    for name in sorted(present - set(listed)):
        raise BundleError(f"member {name}: present in the archive but not listed in the manifest")
    for name in sorted(set(listed) - present):
        raise BundleError(f"member {name}: listed in the manifest but missing from the archive")
    for name in sorted(present):
        data = members[name]
        entry = listed[name]
        if len(data) != entry["size"]:
            raise BundleError(f"member {name}: size mismatch (manifest says {entry['size']} bytes, got {len(data)})")
        if sha256_hex(data) != entry["sha256"]:
            raise BundleError(f"member {name}: sha256 mismatch")


# ------------------------------------------------------------------------------------------------ signature
def load_public_key(public_key: Any) -> Any:
    """Turn a configured public key into an Ed25519 public key object of ``cryptography``.

    Parameters
    ----------
    public_key : bytes, str, Path or Ed25519PublicKey
        PEM bytes or text (``-----BEGIN PUBLIC KEY-----``), 32 raw key bytes, or the path of a PEM file.

    Raises
    ------
    BundleError
        Unreadable file, not an Ed25519 key, or ``cryptography`` not installed.
    """
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        from cryptography.hazmat.primitives.serialization import load_pem_public_key
    except ImportError as exc:  # pragma: no cover - cryptography is a dependency
        raise BundleError("signature verification needs the 'cryptography' package, which is not installed") from exc
    if isinstance(public_key, Ed25519PublicKey):
        return public_key
    data: bytes
    if isinstance(public_key, (str, Path)):
        text = str(public_key)
        if text.lstrip().startswith("-----BEGIN"):
            data = text.encode("ascii", errors="replace")
        else:
            try:
                data = Path(text).read_bytes()
            except OSError as exc:
                raise BundleError(f"public key {text}: cannot be read: {exc.strerror or exc}") from exc
    elif isinstance(public_key, (bytes, bytearray)):
        data = bytes(public_key)
    else:
        raise BundleError(f"expected the public key as PEM bytes/text or a file path, got {type(public_key).__name__}")
    if len(data) == _ED25519_PUBLIC_BYTES and not data.startswith(b"-----"):
        return Ed25519PublicKey.from_public_bytes(data)
    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise BundleError(f"public key: not a PEM public key ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(f"expected an Ed25519 public key, got {type(key).__name__}")
    return key


def verify_signature(manifest_bytes: bytes, signature: bytes | None, public_key: Any) -> None:
    """Check the Ed25519 signature of ``manifest.json`` with the configured key.

    Raises
    ------
    BundleError
        The signature is missing, malformed or does not verify.
    """
    key = load_public_key(public_key)
    if signature is None:
        raise BundleError(f"member {SIGNATURE}: missing, but a public key is configured (the bundle is not signed)")
    if len(signature) != _ED25519_SIGNATURE_BYTES:
        raise BundleError(
            f"member {SIGNATURE}: expected a {_ED25519_SIGNATURE_BYTES}-byte Ed25519 signature, "
            f"got {len(signature)} bytes"
        )
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(signature, manifest_bytes)
    except InvalidSignature as exc:
        raise BundleError(
            f"member {SIGNATURE}: bad signature (manifest.json was not signed by the configured key)"
        ) from exc


# ------------------------------------------------------------------------------------------------ golden vectors
@dataclass(frozen=True)
class GoldenVectors:
    """Golden vectors of a bundle (``golden.npz``).

    Attributes
    ----------
    raw : ndarray, shape (n, n_channels), float64
        Raw inputs, as a frame delivers them (counts or absorbance, per the input contract).
    preprocessed : ndarray, shape (n, *pipeline output), float64
        Expected output of the bundle's pipeline.
    outputs : ndarray, shape (n, *model output), float32
        Expected (dequantised) model outputs.
    dark, reference : ndarray, shape (n_channels,) or (n, n_channels), or None
        Dark and white reference spectra passed to the pipeline (counts modes only).
    wavelengths : ndarray, shape (n_channels,), or None
        Wavelength axis of the raw inputs, passed to the pipeline when present.
    """

    raw: npt.NDArray[np.float64]
    preprocessed: npt.NDArray[np.float64]
    outputs: npt.NDArray[np.float32]
    dark: npt.NDArray[np.float64] | None = None
    reference: npt.NDArray[np.float64] | None = None
    wavelengths: npt.NDArray[np.float64] | None = None

    @property
    def count(self) -> int:
        """Number of golden vectors."""
        return int(self.raw.shape[0])

    def context(self, i: int) -> dict[str, npt.NDArray[np.float64]]:
        """Keyword context (dark, reference, wavelengths) of vector ``i`` for ``Pipeline.transform``."""
        ctx: dict[str, npt.NDArray[np.float64]] = {}
        for key in ("dark", "reference"):
            arr = getattr(self, key)
            if arr is not None:
                ctx[key] = arr[i] if arr.ndim == 2 else arr
        if self.wavelengths is not None:
            ctx["wavelengths"] = self.wavelengths
        return ctx

    def to_npz_bytes(self) -> bytes:
        """Serialise as ``golden.npz`` (no pickles; fixed timestamps, so equal arrays give equal bytes)."""
        arrays: dict[str, np.ndarray] = {"raw": self.raw, "preprocessed": self.preprocessed, "outputs": self.outputs}
        for key in ("dark", "reference", "wavelengths"):
            arr = getattr(self, key)
            if arr is not None:
                arrays[key] = arr
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for key, arr in arrays.items():
                member = io.BytesIO()
                np.lib.format.write_array(member, np.ascontiguousarray(arr), allow_pickle=False)
                info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, member.getvalue())
        return buf.getvalue()

    @classmethod
    def from_npz_bytes(cls, data: bytes) -> GoldenVectors:
        """Parse ``golden.npz``; raises BundleError naming the member on any problem.

        The ``.npz`` is itself a zip: its entries are checked (known names, declared sizes within
        :data:`GOLDEN_MAX_ARRAY_BYTES` in total) before numpy inflates anything, so it cannot be a zip bomb.
        """
        allowed = {"raw", "preprocessed", "outputs", "dark", "reference", "wavelengths"}
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as inner:
                infos = inner.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError) as exc:
            raise BundleError(f"member {GOLDEN}: unreadable ({exc})") from exc
        names = [i.filename[:-4] if i.filename.endswith(".npy") else i.filename for i in infos]
        unknown = sorted(set(names) - allowed)
        if unknown or len(set(names)) != len(names):
            raise BundleError(
                f"member {GOLDEN}: unknown or repeated array(s) {unknown or names}; expected {sorted(allowed)}"
            )
        total = sum(i.file_size for i in infos)
        if total > GOLDEN_MAX_ARRAY_BYTES:
            raise BundleError(
                f"member {GOLDEN}: arrays of {total} bytes exceed the limit of {GOLDEN_MAX_ARRAY_BYTES} bytes"
            )
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {k: np.asarray(npz[k]) for k in npz.files}
        except Exception as exc:  # noqa: BLE001 - hostile input: numpy may raise anything; never escape as non-BundleError
            raise BundleError(f"member {GOLDEN}: unreadable ({exc})") from exc
        for key in ("raw", "preprocessed", "outputs"):
            if key not in arrays:
                raise BundleError(f"member {GOLDEN}: missing array {key!r}")
        for key, arr in arrays.items():
            if arr.dtype.kind not in "fiu":
                raise BundleError(f"member {GOLDEN}: expected numeric array {key!r}, got dtype {arr.dtype}")
        raw = arrays["raw"].astype(np.float64)
        if raw.ndim != 2 or raw.shape[0] < 1:
            raise BundleError(f"member {GOLDEN}: expected raw of shape (n, n_channels), got {raw.shape}")
        n, ch = raw.shape
        pre = arrays["preprocessed"].astype(np.float64)
        out = arrays["outputs"].astype(np.float32)
        if pre.ndim < 2 or pre.shape[0] != n or out.ndim < 2 or out.shape[0] != n:
            raise BundleError(
                f"member {GOLDEN}: expected {n} preprocessed and output rows, got shapes {pre.shape} and {out.shape}"
            )
        ctx: dict[str, npt.NDArray[np.float64] | None] = {}
        for key in ("dark", "reference"):
            given = arrays.get(key)
            if given is not None and given.shape not in ((ch,), (n, ch)):
                raise BundleError(f"member {GOLDEN}: expected {key} of shape ({ch},) or ({n}, {ch}), got {given.shape}")
            ctx[key] = None if given is None else given.astype(np.float64)
        wl = arrays.get("wavelengths")
        if wl is not None and wl.shape != (ch,):
            raise BundleError(f"member {GOLDEN}: expected wavelengths of shape ({ch},), got {wl.shape}")
        return cls(
            raw=raw,
            preprocessed=pre,
            outputs=out,
            dark=ctx["dark"],
            reference=ctx["reference"],
            wavelengths=None if wl is None else wl.astype(np.float64),
        )


@dataclass(frozen=True)
class SelfTestReport:
    """Result of running the golden vectors through this device's preprocessing and runtime.

    Attributes
    ----------
    n_vectors : int
        Number of golden vectors checked (all passed when a report exists).
    max_preprocessed_abs_diff : float
        Largest ``|got - expected|`` over all preprocessed values.
    max_output_abs_diff : float
        Largest ``|got - expected|`` over all outputs, in target units.
    max_output_lsb : float or None
        The same in int8 output LSBs (None for a float model).
    bitwise_identical : bool
        True when every preprocessed value and output matched exactly.
    """

    n_vectors: int
    max_preprocessed_abs_diff: float
    max_output_abs_diff: float
    max_output_lsb: float | None
    bitwise_identical: bool

    def summary(self) -> str:
        """One line for logs and ``spectro-edge check``."""
        if self.bitwise_identical:
            detail = "bitwise identical"
        else:
            lsb = "" if self.max_output_lsb is None else f" ({self.max_output_lsb:g} int8 LSB)"
            detail = (
                f"max |diff| preprocessed {self.max_preprocessed_abs_diff:.3g}, "
                f"outputs {self.max_output_abs_diff:.3g}{lsb}"
            )
        return f"PASSED, {self.n_vectors} golden vectors, {detail}"


def run_golden(
    golden: GoldenVectors,
    pipeline: Any,
    runtime: ModelRuntime,
    tolerance: GoldenTolerance,
) -> SelfTestReport:
    """Run every golden vector through ``pipeline`` and ``runtime`` and compare with the expected values.

    Each vector goes through the single-spectrum path the daemon uses (one spectrum, then one model call).

    Raises
    ------
    BundleError
        ``golden vector i: ...`` naming the first vector, stage and value that is out of tolerance.
    """
    step = runtime.output_step
    max_lsb = 0.0
    max_pre = 0.0
    max_out = 0.0
    bitwise = True
    for i in range(golden.count):
        try:
            pre = np.asarray(pipeline.transform(golden.raw[i], **golden.context(i)), dtype=np.float64)
        except Exception as exc:  # noqa: BLE001 - see _TRUST_BOUNDARY
            raise BundleError(f"golden vector {i}: preprocessing failed: {exc}") from exc
        want_pre = golden.preprocessed[i]
        if pre.shape != want_pre.shape:
            raise BundleError(f"golden vector {i}: expected preprocessed shape {want_pre.shape}, got {pre.shape}")
        diff = np.abs(pre - want_pre)
        bound = tolerance.preprocessed_atol + tolerance.preprocessed_rtol * np.abs(want_pre)
        bad = np.flatnonzero(~(diff <= bound))
        if bad.size:
            j = int(bad[0])
            raise BundleError(
                f"golden vector {i}: preprocessed value {j} is {pre.flat[j]!r}, expected {want_pre.flat[j]!r} "
                f"(differs by more than atol {tolerance.preprocessed_atol:g} + rtol {tolerance.preprocessed_rtol:g})"
            )
        max_pre = max(max_pre, float(diff.max(initial=0.0)))
        bitwise = bitwise and bool(np.array_equal(pre, want_pre))
        try:
            out = np.asarray(runtime.predict(pre), dtype=np.float32)
        except Exception as exc:  # noqa: BLE001 - see _TRUST_BOUNDARY
            raise BundleError(f"golden vector {i}: model failed: {exc}") from exc
        want_out = golden.outputs[i]
        if out.shape != want_out.shape:
            raise BundleError(f"golden vector {i}: expected output shape {want_out.shape}, got {out.shape}")
        odiff = np.abs(out.astype(np.float64) - want_out.astype(np.float64))
        if step is not None and np.all(step > 0):
            limits = tolerance.output_int8_lsb * step.reshape(odiff.shape) * (1 + 1e-6)
            obad = np.flatnonzero(~(odiff <= limits))
            what = f"{tolerance.output_int8_lsb:g} int8 LSB ({float(limits.flat[obad[0]]) if obad.size else 0.0:.4g})"
        else:
            obound = tolerance.output_float_atol + tolerance.output_float_rtol * np.abs(want_out.astype(np.float64))
            obad = np.flatnonzero(~(odiff <= obound))
            what = f"atol {tolerance.output_float_atol:g} + rtol {tolerance.output_float_rtol:g}"
        if obad.size:
            j = int(obad[0])
            raise BundleError(
                f"golden vector {i}: output {j} is {float(out.flat[j]):.6g}, expected {float(want_out.flat[j]):.6g} "
                f"(differs by {float(odiff.flat[j]):.4g}, more than {what})"
            )
        max_out = max(max_out, float(odiff.max(initial=0.0)))
        if step is not None and np.all(step > 0):
            max_lsb = max(max_lsb, float((odiff / step.reshape(odiff.shape)).max(initial=0.0)))
        bitwise = bitwise and bool(np.array_equal(out, want_out))
    return SelfTestReport(
        n_vectors=golden.count,
        max_preprocessed_abs_diff=max_pre,
        max_output_abs_diff=max_out,
        max_output_lsb=max_lsb if step is not None and np.all(step > 0) else None,
        bitwise_identical=bitwise,
    )


# ------------------------------------------------------------------------------------------------ bundle
@dataclass(frozen=True)
class Bundle:
    """A verified model bundle, ready to serve.

    Attributes
    ----------
    path : Path
        File it was loaded from.
    file_sha256 : str
        SHA-256 of the whole file as loaded.
    manifest : dict
        Parsed and validated ``manifest.json``.
    pipeline : edge.preprocess.Pipeline
        Preprocessing built from ``preprocessing.json``.
    runtime : ModelRuntime
        The model, loaded by the device's TFLite runtime.
    ood : edge.ood.OodModel or None
        Drift / out-of-distribution statistics and limits.
    intervals : edge.intervals.IntervalModel or None
        Prediction-interval calibration.
    metrics : dict
        Training metrics (``metrics.json``).
    golden : GoldenVectors
        The golden vectors.
    signature_verified : bool
        True when the signature was checked against a configured public key.
    signed : bool
        True when the bundle carries ``manifest.sig`` (verified or not).
    self_test : SelfTestReport or None
        Result of the golden-vector self-test (None when it was skipped).
    """

    path: Path
    file_sha256: str
    manifest: dict[str, Any]
    pipeline: Pipeline
    runtime: ModelRuntime
    ood: OodModel | None
    intervals: IntervalModel | None
    metrics: dict[str, Any]
    golden: GoldenVectors
    signature_verified: bool
    signed: bool
    self_test: SelfTestReport | None = field(default=None)

    @property
    def model_id(self) -> str:
        """Model id from the manifest."""
        return str(self.manifest["model_id"])

    @property
    def model_version(self) -> str:
        """Model version from the manifest."""
        return str(self.manifest["model_version"])

    @property
    def task(self) -> str:
        """``regression`` or ``classification``."""
        return str(self.manifest["task"])

    @property
    def targets(self) -> tuple[Target, ...]:
        """Targets in the order of the model outputs (names, units, class labels)."""
        return tuple(Target.from_dict(t) for t in self.manifest["targets"])

    @property
    def training_stats(self) -> TrainingStats | None:
        """The training targets' distribution for the prediction-drift monitor, or None when the bundle has none
        (classification, or a format-1 bundle)."""
        targets = self.targets
        if self.task != "regression" or any(t.training is None for t in targets):
            return None
        return TrainingStats(
            names=tuple(t.name for t in targets),
            mean=tuple(t.training.mean for t in targets if t.training is not None),
            std=tuple(t.training.std for t in targets if t.training is not None),
        )

    @property
    def class_labels(self) -> tuple[str, ...]:
        """Class labels of a classification bundle, in output order (empty for regression)."""
        return self.targets[0].labels if self.task == "classification" else ()

    @property
    def wavelengths(self) -> npt.NDArray[np.float64]:
        """The model's wavelength grid, shape (n_points,), in ``input_contract.wavelength_unit``."""
        return np.asarray(self.manifest["wavelength_grid"]["values"], dtype=np.float64)

    @property
    def input_contract(self) -> FrameContract:
        """Raw-frame input contract."""
        c = self.manifest["input_contract"]
        return FrameContract(
            pixel_count_min=int(c["pixel_count_min"]),
            pixel_count_max=int(c["pixel_count_max"]),
            wavelength_min=float(c["wavelength_min"]),
            wavelength_max=float(c["wavelength_max"]),
            wavelength_unit=str(self.manifest["wavelength_grid"]["unit"]),
            pixel_formats=tuple(c["pixel_formats"]),
            frame_signal=str(c["frame_signal"]),
        )

    @property
    def golden_tolerance(self) -> GoldenTolerance:
        """Tolerances of the golden self-test."""
        return GoldenTolerance.from_dict(self.manifest["golden"])

    def preprocess(self, X: npt.ArrayLike, **context: Any) -> npt.NDArray[np.float64]:
        """Run the bundle's pipeline on one spectrum (n_channels,) or a batch (n, n_channels)."""
        return np.asarray(self.pipeline.transform(np.asarray(X, dtype=np.float64), **context))

    def predict_features(self, X_pre: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Run the model on already preprocessed features (one or a batch)."""
        return self.runtime.predict(X_pre)

    def predict_spectra(self, X: npt.ArrayLike, **context: Any) -> npt.NDArray[np.float32]:
        """Preprocess raw spectra and run the model.

        Parameters
        ----------
        X : ndarray, shape (n_channels,) or (n, n_channels)
            Raw inputs per the input contract (absorbance, or counts with ``dark=`` and ``reference=``).
        **context
            ``dark``, ``reference``, ``wavelengths`` passed to the pipeline.

        Returns
        -------
        ndarray of float32, shape (n_outputs,) or (n, n_outputs)
            Predictions in target units, or class probabilities.
        """
        return self.predict_features(self.preprocess(X, **context))

    def frames_from_signal(
        self, X: npt.ArrayLike, wavelengths: npt.ArrayLike | None = None
    ) -> tuple[npt.NDArray[np.float64], dict[str, Any]]:
        """What a device would send for spectra given in the bundle's processed signal, for offline evaluation.

        A counts bundle gets counts against flat references (:data:`OFFLINE_DARK_COUNTS`,
        :data:`OFFLINE_WHITE_COUNTS`), which its leading ``counts`` step turns back into the same signal; any other
        bundle gets the spectra unchanged. ``wavelengths`` (the spectra's axis; default the axis of the golden vectors,
        i.e. the training axis, else the model grid) goes into the context, as the device's STATUS axis does on the
        line.

        Parameters
        ----------
        X : ndarray, shape (n_channels,) or (n, n_channels)
            Absorbance (or reflectance, as the counts step computes) on ``wavelengths``.
        wavelengths : ndarray, shape (n_channels,), optional

        Returns
        -------
        frames : ndarray of float64, shape of ``X``
        context : dict
            ``dark``, ``reference`` and ``wavelengths`` keywords for :meth:`predict_spectra` / :meth:`preprocess`.
        """
        from edge.preprocess import CountsConversion

        A = np.asarray(X, dtype=np.float64)
        if wavelengths is None:
            wl = self.golden.wavelengths if self.golden.wavelengths is not None else self.wavelengths
        else:
            wl = np.asarray(wavelengths, dtype=np.float64)
        ctx: dict[str, Any] = {"wavelengths": wl}
        steps = getattr(self.pipeline, "steps", ())
        if steps and isinstance(steps[0], CountsConversion):
            A, dark, white = counts_from_signal(A, steps[0].quantity)
            ctx.update(dark=dark, reference=white)
        return A, ctx

    def preprocess_signal(self, X: npt.ArrayLike, wavelengths: npt.ArrayLike | None = None) -> npt.NDArray[np.float64]:
        """:meth:`preprocess` on spectra given in the processed signal (see :meth:`frames_from_signal`)."""
        frames, ctx = self.frames_from_signal(X, wavelengths)
        return self.preprocess(frames, **ctx)

    def predict_signal(self, X: npt.ArrayLike, wavelengths: npt.ArrayLike | None = None) -> npt.NDArray[np.float32]:
        """:meth:`predict_spectra` on spectra given in the processed signal (see :meth:`frames_from_signal`)."""
        frames, ctx = self.frames_from_signal(X, wavelengths)
        return self.predict_spectra(frames, **ctx)

    def describe(self) -> str:
        """Multi-line human summary of the manifest (what ``spectro-edge check`` prints)."""
        m = self.manifest
        c = self.input_contract
        wl = self.wavelengths
        lines = [
            f"bundle: {self.path} ({self.path.stat().st_size if self.path.exists() else '?'} bytes, "
            f"sha256 {self.file_sha256})",
            f"format_version: {m['format_version']}",
            f"model: {self.model_id} {self.model_version} ({self.task}), created {m['created_utc']}",
        ]
        for t in self.targets:
            lines.append(
                f"target: {t.name}"
                + (f" [{t.unit}]" if t.unit else "")
                + (f" classes {list(t.labels)}" if t.labels else "")
            )
        lines += [
            f"wavelength grid: {wl.size} points, {wl.min():g}-{wl.max():g} {c.wavelength_unit}",
            f"input contract: {c.pixel_count_min}-{c.pixel_count_max} pixels covering {c.wavelength_min:g}-"
            f"{c.wavelength_max:g} {c.wavelength_unit}, pixel formats {', '.join(c.pixel_formats)}, "
            f"frames carry {c.frame_signal}",
            f"training data sha256: {m['training_data_sha256']}",
            f"seed: {m['seed']}",
            "libraries: " + ", ".join(f"{k} {v}" for k, v in sorted(m["library_versions"].items())),
        ]
        for name, entry in sorted(m["members"].items()):
            lines.append(f"member: {name} {entry['size']} bytes sha256 {entry['sha256']}")
        if self.signature_verified:
            sig = "verified with the configured public key"
        elif self.signed:
            sig = "present, NOT verified (no public key given)"
        else:
            sig = "none (unsigned bundle)"
        lines.append(f"signature: {sig}")
        kind = "int8" if self.runtime.is_quantized else "float32"
        lines.append(
            f"runtime: {self.runtime.runtime_description}, {kind} model, input {self.runtime.input_shape}, "
            f"output {self.runtime.output_shape}"
        )
        lines.append(f"ood statistics: {'yes' if self.ood is not None else 'no'}")
        lines.append(f"prediction intervals: {'yes' if self.intervals is not None else 'no'}")
        return "\n".join(lines)


#: _TRUST_BOUNDARY: a bundle is untrusted input (unless signed). The parsers behind it (the pipeline spec, OOD
#: and interval readers, numpy's npz reader, the interpreter) are written for well-formed data and may raise any
#: exception type on crafted content, so the reader turns *every* exception raised while building from a member
#: into a BundleError naming that member: a daemon reloading a hostile bundle sees one error type and keeps
#: serving the old model. (A crafted .tflite could still crash the native interpreter; configure a public key
#: so that only signed bundles reach it.)
_TRUST_BOUNDARY: Final[str] = "every exception while building from a member becomes a BundleError"


def _build_pipeline(data: bytes) -> Pipeline:
    from edge.preprocess import Pipeline

    try:
        return Pipeline.from_json(data.decode("utf-8"))
    except Exception as exc:  # noqa: BLE001 - see _TRUST_BOUNDARY
        raise BundleError(f"member {PREPROCESSING}: {exc}") from exc


def _build_ood(data: bytes) -> OodModel:
    from edge.ood import OodModel

    d = _parse_json(OOD, data)
    try:
        return OodModel.from_dict(d)
    except Exception as exc:  # noqa: BLE001 - see _TRUST_BOUNDARY
        raise BundleError(f"member {OOD}: {exc}") from exc


def _build_intervals(data: bytes) -> IntervalModel:
    from edge.intervals import IntervalModel

    d = _parse_json(INTERVALS, data)
    try:
        return IntervalModel.from_dict(d)
    except Exception as exc:  # noqa: BLE001 - see _TRUST_BOUNDARY
        raise BundleError(f"member {INTERVALS}: {exc}") from exc


def _pipeline_output_shape(pipeline: Any) -> tuple[int, ...] | None:
    shape = getattr(pipeline, "output_shape", None)
    if shape is None:
        return None
    try:
        return tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        return None


def pipeline_reads_counts(pipeline: Any) -> bool:
    """True when ``pipeline`` starts with a counts conversion (frames must then carry raw counts)."""
    from edge.preprocess import CountsConversion

    steps: tuple[Any, ...] = tuple(getattr(pipeline, "steps", ()))
    return len(steps) > 0 and isinstance(steps[0], CountsConversion)


def _check_consistency(
    manifest: Mapping[str, Any],
    pipeline: Any,
    runtime: ModelRuntime,
    ood: Any = None,
    intervals: Any = None,
) -> None:
    """Contract vs pipeline, model input vs pipeline output, model outputs vs targets, OOD and interval shapes."""
    contract = manifest["input_contract"]
    counts = pipeline_reads_counts(pipeline)
    if counts != (contract["frame_signal"] == "counts"):
        raise BundleError(
            f"manifest: input_contract.frame_signal is {contract['frame_signal']!r} but the pipeline "
            + ("starts with a counts conversion" if counts else "has no counts conversion")
        )
    pc = getattr(pipeline, "input_contract", None)
    # The edge converts a device's axis into the grid's unit once, for every check and the resampling: the
    # pipeline's axis must be in that unit too.
    unit = manifest["wavelength_grid"]["unit"]
    axis_units = [(f"resample step {i}", getattr(s, "unit", unit)) for i, s in enumerate(getattr(pipeline, "steps", ()))
                  if getattr(s, "op", None) == "resample"]
    if getattr(pc, "wavelength_min", None) is not None:
        axis_units.append(("input contract", getattr(pc, "wavelength_unit", unit)))
    for where, got in axis_units:
        if got != unit:
            raise BundleError(
                f"member {PREPROCESSING}: the pipeline's {where} is in {got!r}, the wavelength grid in {unit!r}"
            )
    n_channels = getattr(pc, "n_channels", None)
    if n_channels is not None and not (contract["pixel_count_min"] == contract["pixel_count_max"] == n_channels):
        raise BundleError(
            f"manifest: input_contract pixel count {contract['pixel_count_min']}-{contract['pixel_count_max']} "
            f"does not match the pipeline's {n_channels} channels"
        )
    out_size = int(np.prod(runtime.output_shape))
    if manifest["task"] == "classification":
        n_labels = len(manifest["targets"][0]["labels"])
        if out_size != n_labels:
            raise BundleError(f"member {MODEL}: expected {n_labels} outputs (one per class label), got {out_size}")
    elif out_size != len(manifest["targets"]):
        raise BundleError(
            f"member {MODEL}: expected {len(manifest['targets'])} outputs (one per target), got {out_size}"
        )
    pshape = _pipeline_output_shape(pipeline)
    if pshape is not None:
        ishape = runtime.input_shape
        squeezed = ishape[:-1] if ishape and ishape[-1] == 1 else None
        if pshape != ishape and pshape != squeezed:
            raise BundleError(
                f"member {PREPROCESSING}: pipeline output shape {pshape} does not match the model input {ishape}"
            )
        if ood is not None and tuple(ood.feature_shape) != pshape:
            raise BundleError(
                f"member {OOD}: expected feature shape {pshape} (the pipeline's output), got {ood.feature_shape}"
            )
    if intervals is not None:
        want = 1 if manifest["task"] == "classification" else len(manifest["targets"])
        if manifest["task"] == "regression" and intervals.n_targets != want:
            raise BundleError(
                f"member {INTERVALS}: expected {want} half-widths (one per target), got {intervals.n_targets}"
            )


def load_bundle(
    path: str | Path,
    *,
    public_key: bytes | str | Path | None = None,
    self_test: bool = True,
    num_threads: int = 1,
) -> Bundle:
    """Verify and load a ``.spectrolite`` bundle.

    Parameters
    ----------
    path : str or Path
        Bundle file.
    public_key : bytes, str, Path or None
        Ed25519 public key (PEM bytes/text, 32 raw bytes, or a PEM file path). When given, the bundle must carry
        a valid ``manifest.sig``.
    self_test : bool
        Run the golden vectors through this device's preprocessing and runtime (default True).
    num_threads : int
        Interpreter threads.

    Returns
    -------
    Bundle

    Raises
    ------
    BundleError
        Whatever fails, named: zip structure, member names and sizes, signature, manifest schema and version,
        member SHA-256, pipeline / model / OOD / interval members, consistency, golden vectors.
    """
    p = Path(path)
    members, file_sha = read_members(p)
    manifest_bytes = members[MANIFEST]
    signature = members.get(SIGNATURE)
    if public_key is not None:
        verify_signature(manifest_bytes, signature, public_key)
    manifest = _parse_json(MANIFEST, manifest_bytes)
    validate_manifest(manifest)
    _check_member_hashes(manifest, members)

    pipeline = _build_pipeline(members[PREPROCESSING])
    try:
        ot = manifest.get("output_transform")
        affine = (ot["scale"], ot["offset"]) if ot is not None else None
        runtime = ModelRuntime(members[MODEL], num_threads=num_threads, output_affine=affine)
    except Exception as exc:  # noqa: BLE001 - see _TRUST_BOUNDARY (RuntimeLoadError when merely invalid)
        raise BundleError(f"member {MODEL}: cannot be loaded: {exc}") from exc
    ood = _build_ood(members[OOD]) if OOD in members else None
    intervals = _build_intervals(members[INTERVALS]) if INTERVALS in members else None
    _check_consistency(manifest, pipeline, runtime, ood, intervals)
    metrics = _parse_json(METRICS, members[METRICS])
    if not isinstance(metrics, dict):
        raise BundleError(f"member {METRICS}: expected a JSON object, got {type(metrics).__name__}")
    golden = GoldenVectors.from_npz_bytes(members[GOLDEN])
    if golden.count != manifest["golden"]["count"]:
        raise BundleError(f"member {GOLDEN}: manifest says {manifest['golden']['count']} vectors, got {golden.count}")
    report = None
    if self_test:
        report = run_golden(golden, pipeline, runtime, GoldenTolerance.from_dict(manifest["golden"]))
    return Bundle(
        path=p,
        file_sha256=file_sha,
        manifest=manifest,
        pipeline=pipeline,
        runtime=runtime,
        ood=ood,
        intervals=intervals,
        metrics=metrics,
        golden=golden,
        signature_verified=public_key is not None,
        signed=signature is not None,
        self_test=report,
    )


def check_command(path: str | Path, public_key: bytes | str | Path | None = None) -> int:
    """``spectro-edge check``: verify a bundle, print its manifest summary and self-test result to stdout.

    Parameters
    ----------
    path : str or Path
        Bundle file.
    public_key : bytes, str, Path or None
        Public key (PEM file path or PEM text); when given, a valid signature is required.

    Returns
    -------
    int
        0 when the bundle verifies and passes its self-test, 1 otherwise (the reason is printed).
    """
    try:
        bundle = load_bundle(path, public_key=public_key, self_test=True)
    except BundleError as exc:
        print(f"bundle: {path}")
        print(f"result: FAILED: {exc}")
        return 1
    print(bundle.describe())
    assert bundle.self_test is not None
    print(f"self-test: {bundle.self_test.summary()}")
    print("result: OK")
    return 0
