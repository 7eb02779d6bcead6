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

Layout: :mod:`edge.bundle.archive` (zip reading, member caps and hashes), :mod:`edge.bundle.manifest` (schema and
typed targets), :mod:`edge.bundle.contract` (the bundle's input contract), :mod:`edge.bundle.signature` (Ed25519),
:mod:`edge.bundle.golden` (golden vectors and the self-test), :mod:`edge.bundle.serving` (per-target bundles: a
second model and which model serves each target) and :mod:`edge.bundle.loader` (:class:`Bundle`,
:func:`load_bundle`, :func:`check_command`). Every public name is importable from :mod:`edge.bundle` itself.
"""

from __future__ import annotations

from edge.bundle.archive import (
    AUTOENCODER,
    BUNDLE_SUFFIX,
    GOLDEN,
    INTERVALS,
    MANIFEST,
    MAX_BUNDLE_BYTES,
    MEMBER_LIMITS_BYTES,
    METRICS,
    MODEL,
    MODEL_2,
    OOD,
    OPTIONAL_MEMBERS,
    PREPROCESSING,
    PREPROCESSING_2,
    REQUIRED_MEMBERS,
    SIGNATURE,
    read_members,
    sha256_hex,
)
from edge.bundle.contract import (
    FRAME_SIGNALS,
    OFFLINE_DARK_COUNTS,
    OFFLINE_WHITE_COUNTS,
    PIXEL_FORMATS,
    InputContract,
    bundle_input_contract,
    counts_from_signal,
)
from edge.bundle.golden import (
    DEFAULT_GOLDEN_TOLERANCE,
    GOLDEN_MAX_ARRAY_BYTES,
    GoldenTolerance,
    GoldenVectors,
    SelfTestReport,
    run_golden,
)
from edge.bundle.loader import Bundle, check_command, load_bundle, pipeline_reads_counts
from edge.bundle.manifest import (
    AUTOENCODER_FORMAT_VERSION,
    BLEND_FORMAT_VERSION,
    FORMAT_VERSION,
    SERVING_FORMAT_VERSION,
    SUPPORTED_FORMAT_VERSIONS,
    TASKS,
    Target,
    TargetStats,
    validate_manifest,
)
from edge.bundle.serving import Serving, ServingMember
from edge.bundle.signature import load_public_key, verify_signature

__all__ = [
    "BUNDLE_SUFFIX",
    "FORMAT_VERSION",
    "AUTOENCODER_FORMAT_VERSION",
    "AUTOENCODER",
    "SERVING_FORMAT_VERSION",
    "BLEND_FORMAT_VERSION",
    "MODEL_2",
    "PREPROCESSING_2",
    "Serving",
    "ServingMember",
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
    "InputContract",
    "bundle_input_contract",
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
