"""Golden vectors of a bundle (``golden.npz``) and the self-test that runs them through this device's code.

The trainer computes the golden vectors with the edge's own preprocessing and the model; :func:`run_golden`
checks that this device's pipeline and runtime reproduce them within the manifest's :class:`GoldenTolerance`.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from edge.bundle.archive import GOLDEN
from edge.errors import BundleError
from edge.validation import require_number

if TYPE_CHECKING:
    from edge.runtime import ModelRuntime

__all__ = [
    "DEFAULT_GOLDEN_TOLERANCE",
    "GOLDEN_MAX_ARRAY_BYTES",
    "GoldenTolerance",
    "GoldenVectors",
    "SelfTestReport",
    "run_golden",
]

_MiB: Final[int] = 1024 * 1024
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
        values = {
            key: require_number(d.get(key), f"manifest: golden.{key}", BundleError, minimum=0.0)
            for key in DEFAULT_GOLDEN_TOLERANCE
        }
        return cls(**values)

    def to_dict(self) -> dict[str, float]:
        """Manifest form."""
        return {key: float(getattr(self, key)) for key in DEFAULT_GOLDEN_TOLERANCE}


@dataclass(frozen=True)
class GoldenVectors:
    """Golden vectors of a bundle (``golden.npz``).

    Attributes
    ----------
    raw : ndarray, shape (n, n_channels), float64
        Raw inputs, as a frame delivers them (counts, absorbance or reflectance, per the input contract).
    preprocessed : ndarray, shape (n, *pipeline output), float64
        Expected output of the bundle's pipeline.
    outputs : ndarray, shape (n, *model output), float32
        Expected (dequantised) model outputs.
    dark, reference : ndarray, shape (n_channels,) or (n, n_channels), or None
        Dark and white reference spectra passed to the pipeline (counts modes only).
    wavelengths : ndarray, shape (n_channels,), or None
        Wavelength axis of the raw inputs, passed to the pipeline when present.
    ae_outputs : ndarray, shape (n, n_features), float32, or None
        Expected (dequantised) reconstructions of the preprocessed vectors by the bundle's autoencoder (format 3,
        only with an ``autoencoder.tflite``).
    preprocessed_2, outputs_2 : ndarray or None
        The same as ``preprocessed`` and ``outputs`` for the second serving member of a per-target bundle (format
        4, :mod:`edge.bundle.serving`): its own preprocessing and model; None in a one-model bundle.
    """

    raw: npt.NDArray[np.float64]
    preprocessed: npt.NDArray[np.float64]
    outputs: npt.NDArray[np.float32]
    dark: npt.NDArray[np.float64] | None = None
    reference: npt.NDArray[np.float64] | None = None
    wavelengths: npt.NDArray[np.float64] | None = None
    ae_outputs: npt.NDArray[np.float32] | None = None
    preprocessed_2: npt.NDArray[np.float64] | None = None
    outputs_2: npt.NDArray[np.float32] | None = None

    def second_member(self) -> GoldenVectors | None:
        """These vectors with the second serving member's expected values in place of the primary's (None when
        there are none), for :func:`run_golden` on that member."""
        if self.preprocessed_2 is None or self.outputs_2 is None:
            return None
        return replace(self, preprocessed=self.preprocessed_2, outputs=self.outputs_2, preprocessed_2=None,
                       outputs_2=None)

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
        for key in ("dark", "reference", "wavelengths", "ae_outputs", "preprocessed_2", "outputs_2"):
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
        allowed = {"raw", "preprocessed", "outputs", "dark", "reference", "wavelengths", "ae_outputs",
                   "preprocessed_2", "outputs_2"}
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
        except Exception as exc:  # hostile input: numpy may raise anything; never escape as non-BundleError
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
        ae = arrays.get("ae_outputs")
        if ae is not None and (ae.ndim != 2 or ae.shape[0] != n):
            raise BundleError(f"member {GOLDEN}: expected ae_outputs of shape ({n}, n_features), got {ae.shape}")
        pre2, out2 = arrays.get("preprocessed_2"), arrays.get("outputs_2")
        if (pre2 is None) != (out2 is None):
            raise BundleError(f"member {GOLDEN}: expected preprocessed_2 and outputs_2 together, got one alone")
        if pre2 is not None and out2 is not None and (pre2.ndim < 2 or pre2.shape[0] != n or out2.ndim < 2
                                                      or out2.shape[0] != n):
            raise BundleError(f"member {GOLDEN}: expected {n} preprocessed_2 and outputs_2 rows, got shapes "
                              f"{pre2.shape} and {out2.shape}")
        return cls(
            raw=raw,
            preprocessed=pre,
            outputs=out,
            dark=ctx["dark"],
            reference=ctx["reference"],
            wavelengths=None if wl is None else wl.astype(np.float64),
            ae_outputs=None if ae is None else ae.astype(np.float32),
            preprocessed_2=None if pre2 is None else pre2.astype(np.float64),
            outputs_2=None if out2 is None else out2.astype(np.float32),
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

    def merged(self, other: SelfTestReport) -> SelfTestReport:
        """One report for two serving members checked on the same vectors (the worst of each figure)."""
        lsb = [v for v in (self.max_output_lsb, other.max_output_lsb) if v is not None]
        return SelfTestReport(
            n_vectors=self.n_vectors,
            max_preprocessed_abs_diff=max(self.max_preprocessed_abs_diff, other.max_preprocessed_abs_diff),
            max_output_abs_diff=max(self.max_output_abs_diff, other.max_output_abs_diff),
            max_output_lsb=max(lsb) if lsb else None,
            bitwise_identical=self.bitwise_identical and other.bitwise_identical,
        )


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
        except Exception as exc:  # see edge.bundle.loader._TRUST_BOUNDARY
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
        except Exception as exc:  # see edge.bundle.loader._TRUST_BOUNDARY
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
