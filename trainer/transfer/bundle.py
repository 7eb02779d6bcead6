"""A slave instrument's bundle: the master bundle with the transfer's ``linear`` step inserted, then re-written."""

from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path
from typing import Any

import numpy.typing as npt

from trainer.errors import CalibrationError
from trainer.transfer.ds_pds import fit_transfer
from trainer.transfer.model import TransferModel


def insert_transfer(pipeline: Any, transfer: TransferModel) -> Any:
    """New edge pipeline with the transfer's ``linear`` step at ``pipeline.transfer_index``.

    The step sees absorbance on the model grid (after any ``counts`` and ``resample`` steps) and comes before
    every step the trainer fitted, so the model and its preprocessing are reused unchanged.

    Raises
    ------
    CalibrationError
        When the pipeline already has a ``linear`` step, or its width at the insertion point differs.
    """
    from edge.errors import SpecError
    from edge.preprocess import LinearTransfer

    if any(isinstance(s, LinearTransfer) for s in pipeline.steps):
        raise CalibrationError("the pipeline already holds a linear (transfer) step; start from the master bundle")
    try:
        return pipeline.insert(pipeline.transfer_index, transfer.to_edge_step())
    except SpecError as exc:
        raise CalibrationError(f"cannot insert the transfer step: {exc}") from exc


def _next_version(version: str) -> str:
    """``1.0.0`` -> ``1.0.0-inst2``-style successor that stays a valid id (``[A-Za-z0-9._-]``, 64 chars)."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d%H%M%S")  # not datetime.UTC (Python 3.10)
    v = re.sub(r"[^A-Za-z0-9._-]", "_", f"{version}-transfer.{stamp}")
    return v[:64]


def transfer_bundle(
    bundle_path: str | Path,
    slave_X: npt.ArrayLike,
    master_X: npt.ArrayLike,
    out_path: str | Path,
    *,
    method: str = "pds",
    window: int | None = None,
    model_version: str | None = None,
    public_key: bytes | str | Path | None = None,
    private_key_path: str | Path | None = None,
    **fit_kwargs: Any,
) -> Path:
    """Write a bundle for a second instrument: same model, a fitted transfer step inserted, a new model version.

    Parameters
    ----------
    bundle_path : str or Path
        The master instrument's bundle (loaded and self-tested with :func:`edge.bundle.load_bundle`).
    slave_X, master_X : ndarray, shape (n, n_channels)
        The same ``n`` transfer samples (rows paired) on the slave and on the master, as the bundle's frames carry
        them on the model grid: absorbance when the bundle reads absorbance. For a counts bundle, pass the
        absorbance on the model grid (the transfer step sits after the counts conversion).
    out_path : str or Path
        New bundle path (``.spectrolite``).
    method : {"pds", "ds"}
    window : int, optional
        PDS window; chosen by cross-validation when None.
    model_version : str, optional
        Version of the new bundle (default: the old one with a ``-transfer.<UTC stamp>`` suffix).
    public_key : optional
        Verify the input bundle's signature with this key.
    private_key_path : optional
        Sign the new bundle.
    **fit_kwargs
        Passed to :func:`fit_transfer` (``rcond``, ``windows``, ...).

    Returns
    -------
    Path
        The written bundle (re-loaded and self-tested by :func:`trainer.bundle.write_bundle`).

    Notes
    -----
    The golden vectors keep their raw inputs and get new expected outputs computed by the edge code through the
    new pipeline. Metrics gain a ``transfer`` entry (method, window, n_transfer, parent model version).
    """
    from edge.bundle import MODEL, load_bundle, read_members
    from edge.errors import EdgeError
    from trainer.bundle import BundleIdentity, FitArtefacts, GoldenInputs, write_bundle

    try:
        old = load_bundle(bundle_path, public_key=public_key)
    except EdgeError as exc:
        raise CalibrationError(f"input bundle {bundle_path}: {exc}") from exc
    transfer = fit_transfer(master_X, slave_X, method=method, window=window, **fit_kwargs)
    new_pipeline = insert_transfer(old.pipeline, transfer)
    m = old.manifest
    metrics = dict(old.metrics)
    metrics["transfer"] = {
        **transfer.to_dict(), "parent_model_version": old.model_version, "parent_sha256": old.file_sha256
    }
    members, _ = read_members(old.path)
    tflite = members[MODEL]
    g = old.golden
    tol = {k: v for k, v in m["golden"].items() if k != "count"}
    identity = BundleIdentity(
        model_id=old.model_id,
        model_version=model_version or _next_version(old.model_version),
        task=old.task,
        targets=[t.to_dict() for t in old.targets],
        training_data_sha256=m["training_data_sha256"],
        seed=int(m["seed"]),
        class_labels=list(old.class_labels) or None,
        library_versions=m.get("library_versions"),
    )
    artefacts = FitArtefacts(
        tflite_bytes=tflite,
        pipeline=new_pipeline,
        wavelengths=old.wavelengths,
        wavelength_unit=m["wavelength_grid"]["unit"],
        input_contract=m["input_contract"],
        ood=old.ood,
        intervals=old.intervals,
    )
    golden = GoldenInputs(inputs=g.raw, dark=g.dark, reference=g.reference, wavelengths=g.wavelengths, tolerance=tol)
    return write_bundle(out_path, identity=identity, artefacts=artefacts, golden=golden, metrics=metrics,
                        private_key_path=private_key_path)
