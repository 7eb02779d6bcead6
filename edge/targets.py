"""Target names and units of a bundle, as the messages carry them (the inference stage and the benchmarks)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

__all__ = ["bundle_targets"]


def _target_entry(item: Any, i: int) -> tuple[str, str]:
    if isinstance(item, Mapping):
        return str(item.get("name", f"y{i}")), str(item.get("unit", item.get("units", "")))
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return str(item[0]), str(item[1])
    name = getattr(item, "name", None)
    if name is not None:
        return str(name), str(getattr(item, "unit", getattr(item, "units", "")))
    return str(item), ""


def bundle_targets(bundle: Any, n_outputs: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Target names and units of a bundle (``bundle.targets``: names, ``{"name", "unit"}`` dicts or pairs).

    Falls back to ``y0, y1, ...`` without units when the bundle does not say, so a message is always complete.
    """
    if getattr(bundle, "task", "regression") == "classification":
        labels = tuple(str(x) for x in getattr(bundle, "class_labels", ()))
        if len(labels) == n_outputs:
            return labels, ("probability",) * n_outputs
    raw = getattr(bundle, "targets", None)
    if raw is None:
        raw = bundle.manifest.get("targets") if isinstance(getattr(bundle, "manifest", None), Mapping) else None
    if isinstance(raw, Mapping):  # {"names": [...], "units": [...]}
        names_raw = raw.get("names", ())
        units_raw = raw.get("units", ())
        pairs = [(str(n), str(u)) for n, u in zip(names_raw, list(units_raw) + [""] * len(names_raw))]
    elif isinstance(raw, Sequence) and not isinstance(raw, (str, bytes)):
        pairs = [_target_entry(item, i) for i, item in enumerate(raw)]
    else:
        pairs = []
    if len(pairs) != n_outputs:
        pairs = [(f"y{i}", "") for i in range(n_outputs)]
    return tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)
