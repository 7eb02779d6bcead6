"""The whole run (:class:`TrainConfig`) and reading it from a dict, TOML text or a file."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from trainer.config.outputs import BundleConfig, IntervalConfig, OodConfig, QuantizeConfig
from trainer.config.pretrain import PretrainConfig
from trainer.config.selection import PreprocessingConfig, SearchConfig, SelectionConfig
from trainer.config.sources import DataConfig, InstrumentConfig
from trainer.config.split import CVConfig, SplitConfig
from trainer.config.tables import _check_keys, _get, _table
from trainer.errors import TrainConfigError


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run; see the module docstring and ``examples/*.toml``."""

    data: DataConfig
    split: SplitConfig
    cv: CVConfig
    preprocessing: PreprocessingConfig
    augment: Mapping[str, Any]
    model: Mapping[str, Any]
    pruning: Mapping[str, Any]
    quantize: QuantizeConfig
    ood: OodConfig
    intervals: IntervalConfig
    bundle: BundleConfig
    instrument: InstrumentConfig = field(default_factory=InstrumentConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    seed: int = 0
    report: bool = True
    source: str = "<string>"
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def task(self) -> str:
        """``"regression"`` or ``"classification"``."""
        return self.data.task


_TOP_KEYS = frozenset(
    {"seed", "report", "data", "instrument", "selection", "search", "split", "cv", "preprocessing", "augment",
     "model", "pruning", "quantize", "ood", "intervals", "bundle", "pretrain"}
)


def config_from_dict(d: Mapping[str, Any], *, base_dir: str | Path = ".", source: str = "<dict>") -> TrainConfig:
    """Validate a parsed TOML document and build the :class:`TrainConfig`."""
    _check_keys(d, "", _TOP_KEYS)
    base = Path(base_dir)
    seed = _get(d, "seed", "", int, 0)
    if seed < 0:
        raise TrainConfigError(f"seed: expected an integer >= 0, got {seed}")
    return TrainConfig(
        data=DataConfig.from_dict(_table(d, "data", "", required=True), base),
        split=SplitConfig.from_dict(_table(d, "split", "", required=True)),
        cv=CVConfig.from_dict(_table(d, "cv", "")),
        preprocessing=PreprocessingConfig.from_dict(_table(d, "preprocessing", "", required=True)),
        augment=_table(d, "augment", ""),
        model=_table(d, "model", ""),
        pruning=_table(d, "pruning", ""),
        quantize=QuantizeConfig.from_dict(_table(d, "quantize", "")),
        ood=OodConfig.from_dict(_table(d, "ood", "")),
        intervals=IntervalConfig.from_dict(_table(d, "intervals", "")),
        bundle=BundleConfig.from_dict(_table(d, "bundle", "")),
        instrument=InstrumentConfig.from_dict(_table(d, "instrument", "")),
        selection=SelectionConfig.from_dict(_table(d, "selection", "")),
        search=SearchConfig.from_dict(_table(d, "search", "") if "search" in d else None),
        pretrain=PretrainConfig.from_dict(_table(d, "pretrain", ""), base),
        seed=seed,
        report=_get(d, "report", "", bool, True),
        source=source,
        raw=dict(d),
    )


def parse_config(text: str, *, base_dir: str | Path = ".", source: str = "<string>") -> TrainConfig:
    """Parse TOML text; syntax errors become :class:`TrainConfigError` naming the line."""
    try:
        d = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TrainConfigError(f"{source}: invalid TOML: {exc}") from exc
    return config_from_dict(d, base_dir=base_dir, source=source)


def load_config(path: str | Path) -> TrainConfig:
    """Read and validate a TOML training config; relative data paths resolve against its folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TrainConfigError(f"{path}: cannot read config ({exc.strerror or exc})") from exc
    return parse_config(text, base_dir=path.parent, source=str(path))
