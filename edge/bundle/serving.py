"""Per-target serving (bundle format 4): two models in one bundle, each target served by the one that won it.

The trainer's champion rule is chosen per target (``docs/training.md``); when the CNN wins some targets and PLS the
others, the bundle carries both as *members*, each with its own preprocessing, and the manifest's ``serving``
section says which member serves each target::

    "serving": {
      "members": [
        {"name": "cnn", "model": "model.tflite", "preprocessing": "preprocessing.json"},
        {"name": "pls", "model": "model_2.tflite", "preprocessing": "preprocessing_2.json"}
      ],
      "targets": ["cnn", "cnn", "pls"]
    }

Member 0 (the *primary*) is the bundle's ``model.tflite`` behind ``preprocessing.json`` with the manifest's
``output_transform``, exactly as in a one-model bundle; its features feed the OOD statistics and the autoencoder.
Member 1 is ``model_2.tflite`` behind ``preprocessing_2.json``, with its own optional ``output_transform``. Each
member emits every target (one output per target, in target order); the edge runs both on the frame and takes
each target's value from the member ``targets`` names. A bundle without ``serving`` is a one-model bundle, as
before.

Format 5 (:data:`BLEND_FORMAT_VERSION`) adds an optional ``weights``: member 1's weight per target, in [0, 1].
A target's value is then ``(1 - w) * member 0 + w * member 1`` (a *blend* of the two models, which the trainer
deploys where the average beats both in cross-validation); ``targets`` still names, per target, the member with
the larger weight (member 0 on an even split), so ``w`` is 0 or 1 exactly where one model serves a target alone::

      "targets": ["cnn", "cnn", "cnn"],
      "weights": [0.0, 0.0, 0.4]

:func:`validate_serving` checks the section (called by :func:`edge.bundle.validate_manifest`);
:func:`build_second_member` builds member 1 from the archive.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from edge.bundle.archive import MODEL, MODEL_2, PREPROCESSING, PREPROCESSING_2
from edge.errors import BundleError
from edge.runtime import ModelRuntime
from edge.validation import describe, is_number, require, require_keys, require_mapping, require_str

if TYPE_CHECKING:
    from edge.preprocess import Pipeline

__all__ = ["SERVING_FORMAT_VERSION", "BLEND_FORMAT_VERSION", "MEMBER_FILES", "ServingMember", "Serving",
           "check_output_transform", "validate_serving", "build_second_member"]

#: Format version that adds the ``serving`` section (and the members ``model_2.tflite``, ``preprocessing_2.json``).
SERVING_FORMAT_VERSION: Final[int] = 4
#: Format version that adds ``serving.weights`` (a target served by a weighted average of both members).
BLEND_FORMAT_VERSION: Final[int] = 5
#: The archive members of each serving member, in member order.
MEMBER_FILES: Final[tuple[tuple[str, str], ...]] = ((MODEL, PREPROCESSING), (MODEL_2, PREPROCESSING_2))

_NAME_RE: Final[re.Pattern[str]] = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_E = BundleError


def _at(field: str) -> str:
    return f"manifest: {field}"


def check_output_transform(ot: Any, where: str, n_out: int) -> None:
    """Check an ``output_transform`` {scale, offset} of ``n_out`` outputs sitting at ``where`` in the manifest."""
    ot = require_mapping(ot, _at(where), _E)
    require_keys(ot, _at(where), _E, ("scale", "offset"))
    for key in ("scale", "offset"):
        v = ot[key]
        require(
            isinstance(v, list) and len(v) == n_out and all(is_number(x) for x in v),
            _E, _at(f"{where}.{key}"), f"{n_out} finite numbers (one per target)", v,
        )
    require(all(x != 0 for x in ot["scale"]), _E, _at(f"{where}.scale"), "non-zero values", ot["scale"])


def validate_serving(section: Any, task: str, n_targets: int, members: Mapping[str, Any],
                     version: int = SERVING_FORMAT_VERSION) -> None:
    """Check the manifest's ``serving`` section against the bundle's task, target count and member list.

    Raises
    ------
    BundleError
        Naming the field: exactly two members named ``[a-z][a-z0-9_]*`` and distinct, each on its fixed files
        (:data:`MEMBER_FILES`, both listed in the manifest's ``members``), an ``output_transform`` only on member 1,
        one member name per target, every member serving at least one target; regression only; from format 5 an
        optional ``weights`` (member 1's weight per target, in [0, 1], with ``targets`` naming the member of the
        larger weight).
    """
    s = require_mapping(section, _at("serving"), _E)
    require_keys(s, _at("serving"), _E, ("members", "targets"),
                 ("weights",) if version >= BLEND_FORMAT_VERSION else ())
    require(task == "regression", _E, _at("serving"), "only for regression", task)
    entries = s["members"]
    require(isinstance(entries, list) and len(entries) == len(MEMBER_FILES), _E, _at("serving.members"),
            f"a list of {len(MEMBER_FILES)} members", entries)
    names = []
    for i, (entry, (model, pre)) in enumerate(zip(entries, MEMBER_FILES)):
        where = f"serving.members[{i}]"
        e = require_mapping(entry, _at(where), _E)
        require_keys(e, _at(where), _E, ("name", "model", "preprocessing"), ("output_transform",) if i else ())
        names.append(require_str(e["name"], _at(f"{where}.name"), _E, pattern=_NAME_RE,
                                 pattern_doc="a name like cnn or pls"))
        require(e["model"] == model, _E, _at(f"{where}.model"), repr(model), e["model"])
        require(e["preprocessing"] == pre, _E, _at(f"{where}.preprocessing"), repr(pre), e["preprocessing"])
        for f in (model, pre):
            if f not in members:
                raise BundleError(f"{_at('members')}: expected the member {f} of serving member {e['name']!r}, "
                                  "got none")
        if "output_transform" in e:
            check_output_transform(e["output_transform"], f"{where}.output_transform", n_targets)
    if len(set(names)) != len(names):
        raise BundleError(f"{_at('serving.members')}: expected distinct member names, got {names}")
    served = s["targets"]
    if not (isinstance(served, list) and len(served) == n_targets and all(isinstance(t, str) for t in served)):
        raise BundleError(f"{_at('serving.targets')}: expected {n_targets} member names (one per target), got "
                          f"{served!r:.200}")
    for j, name in enumerate(served):
        require(name in names, _E, _at(f"serving.targets[{j}]"), f"one of the members {names}", name)
    if "weights" in s:
        w = s["weights"]
        if not (isinstance(w, list) and len(w) == n_targets):
            raise BundleError(f"{_at('serving.weights')}: expected a list of {n_targets} numbers (member 1's weight "
                              f"per target), got {f'{len(w)}' if isinstance(w, list) else describe(w)}")
        for j, wj in enumerate(w):
            require(is_number(wj) and 0.0 <= wj <= 1.0, _E, _at(f"serving.weights[{j}]"), "a number in [0, 1]", wj)
        for j, (name, wj) in enumerate(zip(served, w)):
            larger = names[1] if wj > 0.5 else names[0]
            require(name == larger, _E, _at(f"serving.targets[{j}]"),
                    f"{larger!r}, the member of the larger weight (weights[{j}] = {wj:g})", name)
        idle = [n for n, total in zip(names, (sum(1.0 - x for x in w), sum(w))) if total == 0.0]
    else:
        idle = [n for n in names if n not in served]
    require(not idle, _E, _at("serving.targets"), "every member serving at least one target",
            f"{', '.join(idle)} serving none")


@dataclass(frozen=True)
class ServingMember:
    """One serving member: its ``pipeline`` (from its preprocessing member) and its ``runtime``."""

    name: str
    pipeline: Pipeline
    runtime: ModelRuntime

    def predict(self, X: npt.ArrayLike, **context: Any) -> npt.NDArray[np.float32]:
        """The member's outputs (every target) for raw spectra (one or a batch), with the frame's ``context``."""
        return self.runtime.predict(self.pipeline.transform(np.asarray(X, dtype=np.float64), **context))

    def predict_rows(self, X: npt.ArrayLike, **context: Any) -> npt.NDArray[np.float32]:
        """:meth:`predict` on a batch through :meth:`edge.preprocess.Pipeline.transform_rows` (bit for bit the
        single-spectrum results)."""
        return self.runtime.predict(self.pipeline.transform_rows(np.asarray(X, dtype=np.float64), **context))


@dataclass(frozen=True)
class Serving:
    """Which member serves each target of a per-target bundle.

    Attributes
    ----------
    member_names : tuple of str
        Names of member 0 (the primary, the bundle's ``pipeline`` and ``runtime``) and member 1.
    by_target : tuple of str
        The serving member's name per target, in target order.
    second : ServingMember
        Member 1.
    weights : tuple of float or None
        Member 1's weight per target (format 5); None: each target from the member ``by_target`` names.
    """

    member_names: tuple[str, ...]
    by_target: tuple[str, ...]
    second: ServingMember
    weights: tuple[float, ...] | None = None

    @property
    def second_targets(self) -> npt.NDArray[np.intp]:
        """Indices of the targets member 1 serves."""
        return np.flatnonzero(np.asarray(self.by_target) == self.second.name)

    def assemble(self, y_primary: npt.ArrayLike, y_second: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Each target's value from its member, or the weighted average of both members (``weights``): shape
        (n_targets,) or (n, n_targets), as the inputs."""
        if self.weights is not None:
            w = np.asarray(self.weights, dtype=np.float64)
            y0 = np.asarray(y_primary, dtype=np.float64)
            y1 = np.asarray(y_second, dtype=np.float64).reshape(y0.shape)
            return np.asarray((1.0 - w) * y0 + w * y1, dtype=np.float32)
        y = np.array(y_primary, dtype=np.float32, copy=True)
        idx = self.second_targets
        y[..., idx] = np.asarray(y_second, dtype=np.float32).reshape(y.shape)[..., idx]
        return y

    def describe(self, target_names: Sequence[str]) -> str:
        """One line: ``fat <- cnn, moisture <- cnn, protein <- pls`` (a blend: ``protein <- 0.6 cnn + 0.4 pls``)."""
        if self.weights is None:
            return ", ".join(f"{t} <- {m}" for t, m in zip(target_names, self.by_target))
        first, second = self.member_names[0], self.second.name
        return ", ".join(f"{t} <- {first if w == 0 else second}" if w in (0.0, 1.0) else
                         f"{t} <- {1 - w:.3g} {first} + {w:.3g} {second}"
                         for t, w in zip(target_names, self.weights))


def build_second_member(
    manifest: Mapping[str, Any],
    members: Mapping[str, bytes],
    num_threads: int,
    build_pipeline: Callable[[bytes, str], Pipeline],
) -> Serving:
    """Member 1 of a bundle whose (validated) manifest has ``serving``: its pipeline and runtime, unchecked against
    the rest (the loader does that)."""
    section = manifest["serving"]
    entry = section["members"][1]
    pipeline = build_pipeline(members[PREPROCESSING_2], PREPROCESSING_2)
    ot = entry.get("output_transform")
    try:
        runtime = ModelRuntime(members[MODEL_2], num_threads=num_threads, probe=True,
                               output_affine=None if ot is None else (ot["scale"], ot["offset"]))
    except Exception as exc:  # LiteRT raises anything on a malformed model: refused, never served
        raise BundleError(f"member {MODEL_2}: cannot be loaded: {exc}") from exc
    weights = section.get("weights")
    return Serving(member_names=tuple(str(m["name"]) for m in section["members"]),
                   by_target=tuple(str(t) for t in section["targets"]),
                   second=ServingMember(name=str(entry["name"]), pipeline=pipeline, runtime=runtime),
                   weights=None if weights is None else tuple(float(x) for x in weights))
