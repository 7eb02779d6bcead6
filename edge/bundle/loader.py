"""The loaded bundle and its loader: :func:`load_bundle` verifies a ``.spectrolite`` file and builds a :class:`Bundle`.

Verification order: the archive (:mod:`edge.bundle.archive`), the signature when a key is configured
(:mod:`edge.bundle.signature`), the manifest schema (:mod:`edge.bundle.manifest`), the member hashes, the
members built (pipeline, model, OOD, intervals) and checked against each other, then the golden-vector self-test
(:mod:`edge.bundle.golden`). :func:`check_command` is ``spectro-edge check``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from edge.bundle.archive import (
    AUTOENCODER,
    GOLDEN,
    INTERVALS,
    MANIFEST,
    METRICS,
    MODEL,
    OOD,
    PREPROCESSING,
    PREPROCESSING_2,
    SIGNATURE,
    check_member_hashes,
    read_members,
)
from edge.bundle.contract import InputContract, bundle_input_contract, counts_from_signal
from edge.bundle.golden import GoldenTolerance, GoldenVectors, SelfTestReport, run_golden
from edge.bundle.manifest import Target, parse_json_member, validate_manifest
from edge.bundle.serving import Serving, build_second_member
from edge.bundle.signature import verify_signature
from edge.drift import TrainingStats
from edge.errors import BundleError
from edge.runtime import ModelRuntime
from edge.validation import require_mapping

if TYPE_CHECKING:
    from edge.autoencoder import AutoencoderModel
    from edge.intervals import IntervalModel
    from edge.ood import OodModel
    from edge.preprocess import Pipeline

__all__ = ["Bundle", "load_bundle", "pipeline_reads_counts", "check_command"]


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
    autoencoder : edge.autoencoder.AutoencoderModel or None
        The reconstruction-error OOD statistic and its limit (format 3; None when the bundle has none).
    serving : edge.bundle.serving.Serving or None
        A per-target bundle's second model and which member serves each target (format 4; None in a one-model
        bundle). ``pipeline`` and ``runtime`` are then the primary member's, whose features feed ``ood`` and
        ``autoencoder``; :meth:`predict_spectra` assembles each target from its member.
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
    autoencoder: AutoencoderModel | None = field(default=None)
    serving: Serving | None = field(default=None)

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
    def input_contract(self) -> InputContract:
        """The bundle's one input contract (:func:`~edge.bundle.contract.bundle_input_contract`): the pipeline's,
        with what the manifest says raw frames must look like; the daemon judges every device against it."""
        pipeline_contract = getattr(self.pipeline, "input_contract", None)
        if not isinstance(pipeline_contract, InputContract):
            pipeline_contract = InputContract()
        return bundle_input_contract(self.manifest, pipeline_contract)

    @property
    def golden_tolerance(self) -> GoldenTolerance:
        """Tolerances of the golden self-test."""
        return GoldenTolerance.from_dict(self.manifest["golden"])

    def preprocess(self, X: npt.ArrayLike, **context: Any) -> npt.NDArray[np.float64]:
        """Run the bundle's pipeline on one spectrum (n_channels,) or a batch (n, n_channels)."""
        return np.asarray(self.pipeline.transform(np.asarray(X, dtype=np.float64), **context))

    def predict_features(self, X_pre: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Run the model on already preprocessed features (one or a batch); in a per-target bundle, the primary
        member's outputs for every target (:meth:`predict_spectra` serves each target from its member)."""
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
            Predictions in target units, or class probabilities; in a per-target bundle each target from the
            member that serves it.
        """
        y = self.predict_features(self.preprocess(X, **context))
        if self.serving is None:
            return y
        return self.serving.assemble(y, self.serving.second.predict(X, **context))

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
        kind = self.runtime.arithmetic
        lines.append(
            f"runtime: {self.runtime.runtime_description}, {kind} model, input {self.runtime.input_shape}, "
            f"output {self.runtime.output_shape}"
        )
        whole, refusal = self.runtime.batches_invoked_whole, self.runtime.batch_refusal
        lines.append("batches: " + ("one invoke per chunk of rows" if whole else "not checked" if whole is None
                                    else f"row by row, each prediction as for one spectrum alone (this model refused "
                                         f"a batch: {refusal})"))
        lines.append(f"ood statistics: {'yes' if self.ood is not None else 'no'}")
        ae = self.autoencoder
        lines.append("autoencoder: " + ("no" if ae is None else
                                        f"{ae.n_features} features, limit {ae.limit:.4g} (alpha {ae.alpha:g})"))
        lines.append(f"prediction intervals: {'yes' if self.intervals is not None else 'no'}")
        if self.serving is not None:
            rt2 = self.serving.second.runtime
            lines.append(f"serving per target: {self.serving.describe([t.name for t in self.targets])} (member 0 "
                         f"{self.serving.member_names[0]}: {MODEL}; member 1 {self.serving.second.name}: "
                         f"{rt2.arithmetic} model_2.tflite, input {rt2.input_shape})")
        return "\n".join(lines)


#: _TRUST_BOUNDARY: a bundle is untrusted input (unless signed). The parsers behind it (the pipeline spec, OOD
#: and interval readers, numpy's npz reader, the interpreter) are written for well-formed data and may raise any
#: exception type on crafted content, so the reader turns *every* exception raised while building from a member
#: into a BundleError naming that member: a daemon reloading a hostile bundle sees one error type and keeps
#: serving the old model. (A crafted .tflite could still crash the native interpreter; configure a public key
#: so that only signed bundles reach it.)
_TRUST_BOUNDARY: Final[str] = "every exception while building from a member becomes a BundleError"


def _build_pipeline(data: bytes, name: str = PREPROCESSING) -> Pipeline:
    from edge.preprocess import Pipeline

    try:
        return Pipeline.from_json(data.decode("utf-8"))
    except Exception as exc:  # see _TRUST_BOUNDARY
        raise BundleError(f"member {name}: {exc}") from exc


def _build_ood(data: bytes) -> OodModel:
    from edge.ood import OodModel

    d = parse_json_member(OOD, data)
    try:
        return OodModel.from_dict(d)
    except Exception as exc:  # see _TRUST_BOUNDARY
        raise BundleError(f"member {OOD}: {exc}") from exc


def _build_intervals(data: bytes) -> IntervalModel:
    from edge.intervals import IntervalModel

    d = parse_json_member(INTERVALS, data)
    try:
        return IntervalModel.from_dict(d)
    except Exception as exc:  # see _TRUST_BOUNDARY
        raise BundleError(f"member {INTERVALS}: {exc}") from exc


def _build_autoencoder(manifest: Mapping[str, Any], data: bytes, pipeline: Any, num_threads: int) -> AutoencoderModel:
    from edge.autoencoder import autoencoder_from_manifest

    try:
        runtime = ModelRuntime(data, num_threads=num_threads, probe=True)
    except Exception as exc:  # see _TRUST_BOUNDARY (RuntimeLoadError when merely invalid)
        raise BundleError(f"member {AUTOENCODER}: cannot be loaded: {exc}") from exc
    shape = _pipeline_output_shape(pipeline)
    return autoencoder_from_manifest(manifest["autoencoder"], runtime, None if shape is None else int(np.prod(shape)))


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
    # One input contract judges a device: a pipeline that does not resample matches the device's axis to its own
    # range, which must then be the range the manifest says frames cover.
    lo, hi = getattr(pc, "wavelength_min", None), getattr(pc, "wavelength_max", None)
    if lo is not None and hi is not None and not getattr(pc, "resamples", True):
        slack = 1e-9 * max(1.0, abs(hi))
        m_lo, m_hi = contract["wavelength_min"], contract["wavelength_max"]
        if abs(m_lo - lo) > slack or abs(m_hi - hi) > slack:
            raise BundleError(
                f"manifest: input_contract wavelength range {m_lo:g}-{m_hi:g} {unit} does not match the pipeline's "
                f"{lo:g}-{hi:g} {unit} (a pipeline that does not resample takes only its own axis)"
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
    manifest = parse_json_member(MANIFEST, manifest_bytes)
    validate_manifest(manifest)
    check_member_hashes(manifest, members)

    pipeline = _build_pipeline(members[PREPROCESSING])
    try:
        ot = manifest.get("output_transform")
        affine = (ot["scale"], ot["offset"]) if ot is not None else None
        runtime = ModelRuntime(members[MODEL], num_threads=num_threads, output_affine=affine, probe=True)
    except Exception as exc:  # see _TRUST_BOUNDARY (RuntimeLoadError when merely invalid)
        raise BundleError(f"member {MODEL}: cannot be loaded: {exc}") from exc
    ood = _build_ood(members[OOD]) if OOD in members else None
    intervals = _build_intervals(members[INTERVALS]) if INTERVALS in members else None
    _check_consistency(manifest, pipeline, runtime, ood, intervals)
    autoencoder = (_build_autoencoder(manifest, members[AUTOENCODER], pipeline, num_threads)
                   if AUTOENCODER in members else None)
    serving = _build_serving(manifest, members, num_threads, pipeline) if "serving" in manifest else None
    metrics = parse_json_member(METRICS, members[METRICS])
    require_mapping(metrics, f"member {METRICS}", BundleError, "a JSON object")
    golden = GoldenVectors.from_npz_bytes(members[GOLDEN])
    if golden.count != manifest["golden"]["count"]:
        raise BundleError(f"member {GOLDEN}: manifest says {manifest['golden']['count']} vectors, got {golden.count}")
    if serving is None and golden.preprocessed_2 is not None:
        raise BundleError(f"member {GOLDEN}: expected no second-member vectors in a one-model bundle")
    report = None
    if self_test:
        report = run_golden(golden, pipeline, runtime, GoldenTolerance.from_dict(manifest["golden"]))
        runtime.check_batching(golden.preprocessed)  # batches run whole only if bit-exact on these rows too
        if autoencoder is not None:
            if golden.ae_outputs is None:
                raise BundleError(f"member {GOLDEN}: the bundle has an autoencoder but no ae_outputs to test it on")
            tol = GoldenTolerance.from_dict(manifest["golden"])
            autoencoder.check_golden(golden.preprocessed, golden.ae_outputs, tol.output_int8_lsb)
            autoencoder.runtime.check_batching(golden.preprocessed.reshape(golden.count, -1))
        if serving is not None:
            report = report.merged(_self_test_second(golden, serving, GoldenTolerance.from_dict(manifest["golden"])))
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
        autoencoder=autoencoder,
        serving=serving,
    )


def _build_serving(manifest: Mapping[str, Any], members: Mapping[str, bytes], num_threads: int,
                   primary: Any) -> Serving:
    """Member 1 of a per-target bundle, checked against the manifest as member 0 is: both take the same frames
    (counts or not, resampled or not) and emit one output per target."""
    serving = build_second_member(manifest, members, num_threads, _build_pipeline)
    second = serving.second
    try:
        _check_consistency(manifest, second.pipeline, second.runtime)
    except BundleError as exc:
        raise BundleError(f"serving member {second.name}: {exc}") from exc

    def resamples(p: Any) -> bool:
        return any(getattr(s, "op", None) == "resample" for s in getattr(p, "steps", ()))

    if resamples(primary) != resamples(second.pipeline):
        raise BundleError(f"member {PREPROCESSING_2}: expected a pipeline that "
                          f"{'resamples' if resamples(primary) else 'does not resample'} the device axis as "
                          f"{PREPROCESSING} does, got one that "
                          f"{'does' if resamples(second.pipeline) else 'does not'}")
    return serving


def _self_test_second(golden: GoldenVectors, serving: Serving, tolerance: GoldenTolerance) -> SelfTestReport:
    """The golden self-test of member 1 on its own expected values (``preprocessed_2``, ``outputs_2``)."""
    vectors = golden.second_member()
    if vectors is None:
        raise BundleError(f"member {GOLDEN}: the bundle has a second serving member but no preprocessed_2 and "
                          "outputs_2 to test it on")
    try:
        report = run_golden(vectors, serving.second.pipeline, serving.second.runtime, tolerance)
    except BundleError as exc:
        raise BundleError(f"serving member {serving.second.name}: {exc}") from exc
    serving.second.runtime.check_batching(vectors.preprocessed)
    return report


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
