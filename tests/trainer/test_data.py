"""Tests of trainer.data: the .npz, CSV and JCAMP-DX loaders and the validation errors they raise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainer.config import parse_config
from trainer.data import (
    SpectralDataset,
    load_configured,
    load_csv,
    load_dataset,
    load_jcamp,
    load_npz,
    validate_dataset,
)
from trainer.errors import DataError

N_ROWS = 20
N_CHANNELS = 8


def _dataset(**changes: object) -> SpectralDataset:
    rng = np.random.default_rng(0)
    fields = dict(
        X=rng.normal(size=(N_ROWS, N_CHANNELS)),
        wavelengths=np.linspace(900.0, 1000.0, N_CHANNELS),
        y=rng.normal(size=(N_ROWS, 2)),
        target_names=("fat_pct", "protein_pct"),
        columns={"split": np.array(["cal"] * 15 + ["test"] * 5)},
        source="synthetic",
    )
    fields.update(changes)
    return SpectralDataset(**fields)  # type: ignore[arg-type]  # **fields of mixed types: SpectralDataset's fields


def _write_csv(path: Path, ds: SpectralDataset) -> None:
    header = ["sample", "split", *ds.target_names, *(repr(float(w)) for w in ds.wavelengths)]
    lines = [",".join(header)]
    for i in range(ds.n_samples):
        cells = [f"s{i}", str(ds.columns["split"][i]), *(repr(float(v)) for v in ds.y[i]),
                 *(repr(float(v)) for v in ds.X[i])]
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")


def test_real_tablets_npz_loads_with_metadata(datasets_dir: Path) -> None:
    ds = load_dataset(datasets_dir / "idrc2002_tablets.npz", targets=["assay_mg"])
    assert ds.X.shape == (1310, 650)
    assert ds.y.shape == (1310, 1)
    assert ds.target_names == ("assay_mg",)
    assert set(np.unique(ds.column("split"))) == {"calibrate", "test", "validate"}
    assert set(np.unique(ds.column("instrument"))) == {1, 2}
    assert not ds.is_classification


def test_real_classification_npz_has_class_names(datasets_dir: Path) -> None:
    ds = load_npz(datasets_dir / "fruit_puree_mir.npz", axis_unit="cm-1")
    assert ds.is_classification
    assert ds.class_names == ("Not Strawberry", "Strawberry")
    assert ds.y.dtype == np.int64 and ds.y.shape == (983, 1)


def test_missing_target_names_the_available_ones(datasets_dir: Path) -> None:
    with pytest.raises(DataError, match="target 'moisture' not found; available targets: weight_mg"):
        load_dataset(datasets_dir / "idrc2002_tablets.npz", targets=["moisture"])


def test_valid_synthetic_dataset_passes() -> None:
    assert validate_dataset(_dataset()).n_samples == N_ROWS


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"X": np.full((N_ROWS, N_CHANNELS), np.nan)}, "NaN/infinite values in 20 spectra"),
        ({"wavelengths": np.linspace(900.0, 1000.0, N_CHANNELS - 1)}, "expected 8 wavelengths"),
        ({"wavelengths": np.array([900.0, 910, 920, 915, 930, 940, 950, 960])}, "strictly monotonic"),
        ({"wavelengths": np.array([900.0, 910, 910, 920, 930, 940, 950, 960])}, "strictly monotonic"),
        ({"y": np.ones((N_ROWS - 1, 2))}, "expected y with 20 rows"),
        ({"target_names": ("fat_pct",)}, "expected 2 target names"),
        ({"X": np.ones((5, N_CHANNELS)), "y": np.ones((5, 2)), "columns": {}}, "expected at least 10 samples, got 5"),
        ({"columns": {"split": np.array(["a"] * 3)}}, "expected column 'split' with 20 rows"),
    ],
)
def test_bad_data_gives_clear_errors(changes: dict[str, object], message: str) -> None:
    with pytest.raises(DataError, match=message):
        validate_dataset(_dataset(**changes))


def test_a_constant_spectrum_is_refused_at_load_naming_its_row(tmp_path: Path) -> None:
    """A dead detector's flat spectrum (the last on-line spectra of a fermentation set are all one value) used to
    load, train for minutes, then stop with "SNV of a constant spectrum" naming no row."""
    ds = _dataset()
    ds.X[7] = 0.0
    path = tmp_path / "spectra.csv"
    _write_csv(path, ds)
    text = path.read_text().replace("sample,", "sample_id,", 1)
    path.write_text(text)
    with pytest.raises(DataError, match=r"spectra.csv: expected spectra that vary across channels, got 1 constant "
                                        r"spectra \(first at row 7, sample_id 's7': every channel 0\); remove them "
                                        r"or list them in \[data\] exclude"):
        load_csv(path, targets=["fat_pct"])
    # Excluded, the rest loads.
    cfg = parse_config('[data]\npath = "spectra.csv"\ntargets = ["fat_pct"]\nexclude = { sample_id = "s7" }\n'
                       '[split]\ntrain = { split = "cal" }\n[split.test]\nt = { split = "test" }\n'
                       '[preprocessing.candidates]\nsnv = [{ op = "snv" }]\n', base_dir=tmp_path)
    assert load_configured(cfg.data).n_samples == N_ROWS - 1


def test_missing_target_value_is_reported() -> None:
    y = np.ones((N_ROWS, 2))
    y[3, 1] = np.nan
    with pytest.raises(DataError, match=r"target 'protein_pct' is missing \(NaN\) for 1 of 20 samples"):
        validate_dataset(_dataset(y=y))


def test_descending_axis_is_accepted() -> None:
    ds = _dataset(wavelengths=np.linspace(1800.0, 900.0, N_CHANNELS))
    assert validate_dataset(ds).n_channels == N_CHANNELS


def test_csv_roundtrip_with_wavelength_header(tmp_path: Path) -> None:
    ds = _dataset()
    path = tmp_path / "spectra.csv"
    _write_csv(path, ds)
    got = load_csv(path, targets=["protein_pct"])
    np.testing.assert_allclose(got.X, ds.X)
    np.testing.assert_allclose(got.wavelengths, ds.wavelengths)
    np.testing.assert_allclose(got.y[:, 0], ds.y[:, 1])
    assert list(got.column("split")) == list(ds.columns["split"])
    assert got.column("sample")[0] == "s0"


def test_csv_missing_target_column(tmp_path: Path) -> None:
    path = tmp_path / "spectra.csv"
    _write_csv(path, _dataset())
    with pytest.raises(DataError, match="target column\\(s\\) 'moisture' not found"):
        load_dataset(path, targets=["moisture"])


def test_csv_ragged_row(tmp_path: Path) -> None:
    path = tmp_path / "spectra.csv"
    _write_csv(path, _dataset())
    path.write_text(path.read_text() + "s99,cal,1.0\n")
    with pytest.raises(DataError, match="line 22: expected 12 fields"):
        load_csv(path, targets=["fat_pct"])


def test_csv_classification_labels(tmp_path: Path) -> None:
    ds = _dataset()
    path = tmp_path / "spectra.csv"
    _write_csv(path, ds)
    got = load_csv(path, targets=["split"], task="classification")
    assert got.class_names == ("cal", "test")
    assert int(got.y.sum()) == 5


def _write_jdx(path: Path, wavelengths: np.ndarray, values: np.ndarray, **labels: float) -> None:
    """A JCAMP-DX 4.24 file with an (XY..XY) table, written by hand so the reader is tested against the format."""
    head = [
        "##TITLE=synthetic", "##JCAMP-DX=4.24", "##DATA TYPE=NEAR INFRARED SPECTRUM", "##XUNITS=NANOMETERS",
        "##YUNITS=ABSORBANCE", f"##NPOINTS={wavelengths.size}", "##XFACTOR=1.0", "##YFACTOR=1.0",
        *(f"##${k.upper()}={v!r}" for k, v in labels.items()),
        "##XYPOINTS=(XY..XY)",
    ]
    rows = [f"{float(w)!r}, {float(v)!r}" for w, v in zip(wavelengths, values)]
    path.write_text("\n".join([*head, *rows, "##END="]) + "\n")


def test_jcamp_folder_with_targets_file(tmp_path: Path) -> None:
    pytest.importorskip("jcamp")
    ds = _dataset()
    lines = ["file,fat_pct,batch"]
    for i in range(ds.n_samples):
        _write_jdx(tmp_path / f"s{i:02d}.jdx", ds.wavelengths, ds.X[i])
        lines.append(f"s{i:02d}.jdx,{float(ds.y[i, 0])!r},{i // 5}")
    (tmp_path / "targets.csv").write_text("\n".join(lines) + "\n")
    got = load_jcamp(tmp_path, targets=["fat_pct"], targets_path=tmp_path / "targets.csv")
    np.testing.assert_allclose(got.X, ds.X, rtol=1e-9)
    np.testing.assert_allclose(got.wavelengths, ds.wavelengths, rtol=1e-9)
    np.testing.assert_allclose(got.y[:, 0], ds.y[:, 0])
    assert got.column("batch").tolist() == [i // 5 for i in range(N_ROWS)]


def test_jcamp_targets_from_header_labels(tmp_path: Path) -> None:
    pytest.importorskip("jcamp")
    ds = _dataset()
    for i in range(ds.n_samples):
        _write_jdx(tmp_path / f"s{i:02d}.dx", ds.wavelengths, ds.X[i], fat_pct=float(ds.y[i, 0]))
    got = load_dataset(tmp_path, targets=["fat_pct"])
    np.testing.assert_allclose(got.y[:, 0], ds.y[:, 0])
    with pytest.raises(DataError, match="target\\(s\\) 'protein_pct' not found in the JCAMP-DX headers"):
        load_dataset(tmp_path, targets=["protein_pct"])


def test_jcamp_mismatched_axes(tmp_path: Path) -> None:
    pytest.importorskip("jcamp")
    ds = _dataset()
    for i in range(ds.n_samples):
        wl = ds.wavelengths + (5.0 if i == 7 else 0.0)
        _write_jdx(tmp_path / f"s{i:02d}.jdx", wl, ds.X[i], fat_pct=1.0)
    with pytest.raises(DataError, match="s07.jdx: wavelength axis differs"):
        load_jcamp(tmp_path, targets=["fat_pct"])


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot tell the format"):
        load_dataset(tmp_path / "x.parquet", targets=["a"])
    with pytest.raises(DataError, match="no such data file"):
        load_dataset(tmp_path / "x.npz")
