"""``[ood]``, ``[intervals]``, ``[quantize]`` and ``[bundle]``: what the written bundle carries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from trainer.config.tables import _check_keys, _fraction, _get, _table
from trainer.errors import TrainConfigError


@dataclass(frozen=True)
class OodConfig:
    """PCA drift statistics: components by count or explained-variance share, and the limits' false-alarm rate;
    optionally the int8 autoencoder of :mod:`trainer.autoencoder` (``autoencoder``, trained for
    ``autoencoder_epochs`` epochs with a bottleneck of ``autoencoder_bottleneck`` units); ``include_select``: fit
    the PCA model and its limits on the selection rows too (calibration data of the same instrument), not the
    training rows alone."""

    n_components: int | None = None
    variance: float = 0.99
    alpha: float = 0.01
    max_components: int = 20
    autoencoder: bool = False
    autoencoder_epochs: int = 300
    autoencoder_bottleneck: int = 8
    include_select: bool = False

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OodConfig:
        w = "ood"
        _check_keys(d, w, {"n_components", "variance", "alpha", "max_components", "autoencoder", "autoencoder_epochs",
                           "autoencoder_bottleneck", "include_select"})
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
        if nc is not None and nc > mc:
            raise TrainConfigError(f"ood.n_components: expected at most ood.max_components = {mc}, got {nc}")
        ae = _get(d, "autoencoder", w, bool, False)
        ae_epochs = _get(d, "autoencoder_epochs", w, int, 300)
        ae_bottleneck = _get(d, "autoencoder_bottleneck", w, int, 8)
        for key, v in (("autoencoder_epochs", ae_epochs), ("autoencoder_bottleneck", ae_bottleneck)):
            if v < 1:
                raise TrainConfigError(f"ood.{key}: expected an integer >= 1, got {v}")
        return cls(n_components=nc, variance=var, alpha=alpha, max_components=mc, autoencoder=ae,
                   autoencoder_epochs=ae_epochs, autoencoder_bottleneck=ae_bottleneck,
                   include_select=_get(d, "include_select", w, bool, False))


@dataclass(frozen=True)
class IntervalConfig:
    """Split-conformal prediction intervals calibrated on the selection rows and the training rows out of fold."""

    coverage: float = 0.9

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IntervalConfig:
        _check_keys(d, "intervals", {"coverage"})
        cov = _get(d, "coverage", "intervals", float, 0.9)
        _fraction(cov, "intervals.coverage")
        return cls(coverage=cov)


#: ``[quantize] int16x8``: the 16-bit-activation conversion where the int8 model's rounding calls for it (the gap to
#: the float network; a classifier's changed classes: :mod:`trainer.pipeline.int8`), or full int8 only.
INT16X8_MODES = ("auto", "never")
#: ``[quantize] headroom``: default and largest value (each int8 range but the input's widened by that fraction;
#: 3 quadruples the step, two of the eight bits).
HEADROOM_DEFAULT = 0.25
HEADROOM_MAX = 3.0


@dataclass(frozen=True)
class QuantizeConfig:
    """Full-integer int8 conversion: how many preprocessed training spectra form the representative set, and
    whether the CNN may be converted with 16-bit activations instead (``int16x8``), and the headroom of
    a regression CNN's int8 ranges beyond what the calibration spectra reach (:mod:`trainer.quant_ranges`)."""

    representative_samples: int = 200
    subprocess: bool = True
    int16x8: str = "auto"
    headroom: float = HEADROOM_DEFAULT

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QuantizeConfig:
        w = "quantize"
        _check_keys(d, w, {"representative_samples", "subprocess", "int16x8", "headroom"})
        n = _get(d, "representative_samples", w, int, 200)
        if n < 10:
            raise TrainConfigError(f"quantize.representative_samples: expected an integer >= 10, got {n}")
        wide = _get(d, "int16x8", w, str, "auto")
        if wide not in INT16X8_MODES:
            raise TrainConfigError(f"quantize.int16x8: expected one of {', '.join(INT16X8_MODES)}, got {wide!r}")
        headroom = _get(d, "headroom", w, float, HEADROOM_DEFAULT)
        if not 0.0 <= headroom <= HEADROOM_MAX:
            raise TrainConfigError(f"quantize.headroom: expected a number from 0 to {HEADROOM_MAX:g} (a fraction of "
                                   f"each int8 range), got {headroom!r}")
        return cls(representative_samples=n, subprocess=_get(d, "subprocess", w, bool, True), int16x8=wide,
                   headroom=headroom)


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
        import re

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
