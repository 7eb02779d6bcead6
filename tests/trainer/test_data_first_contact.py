"""Tests of trainer.data for a user's first contact (issue #12): CSV headers with units, delimiters, decimal commas,
byte order marks, joined references, exclusions, booleans, duplicate names, class order, cell positions in errors.

The loaders' basic behaviour and validation errors are in test_data.py."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from tests.trainer.test_data import N_ROWS, _dataset, _write_jdx
from trainer.config import parse_config
from trainer.data import load_configured, load_csv, load_dataset, load_jcamp, load_npz
from trainer.errors import DataError, SplitError, TrainConfigError
from trainer.splits import select_rows

#: Spectral values of the small CSVs below (exactly representable, so every layout compares equal).
SMALL_WL = (1100.0, 1102.0, 1104.0, 1106.0)


def _rows(n: int = 12) -> list[tuple[str, float, list[float]]]:
    """(sample id, fat, spectrum) per row: distinct, exact binary fractions."""
    return [(f"s{i}", 10.0 + i * 0.5, [0.25 * i + 0.125 * k for k in range(len(SMALL_WL))]) for i in range(n)]


def _text(header_wl: list[str], *, sep: str = ",", dec: str = ".", fat: bool = True, extra: str = "") -> str:
    """A small spectra file: sample_id, [fat], [extra column], then one column per header wavelength cell."""
    head = ["sample_id", *(["fat"] if fat else []), *([extra] if extra else []), *header_wl]
    lines = [sep.join(head)]
    for i, (sid, f, spec) in enumerate(_rows()):
        cells = [sid, *([repr(f)] if fat else []), *(["x"] if extra else []), *(repr(v) for v in spec)]
        lines.append(sep.join(c.replace(".", dec) if c[:1].isdigit() else c for c in cells))
    return "\n".join(lines) + "\n"


def _expected_X() -> np.ndarray:
    return np.array([spec for _, _, spec in _rows()])


@pytest.mark.parametrize(
    ("cells", "unit"),
    [
        (["1100", "1102", "1104", "1106"], "nm"),
        (["1100 nm", "1102 nm", "1104 nm", "1106 nm"], "nm"),
        (["1100nm", "1102nm", "1104nm", "1106nm"], "nm"),
        (["1100.00000cm-1", "1102.00000cm-1", "1104.00000cm-1", "1106.00000cm-1"], "cm-1"),
        (["1.10000e+03cm-1", "1.10200e+03cm-1", "1.10400e+03cm-1", "1.10600e+03cm-1"], "cm-1"),
        (["1.1E3 cm^-1", "1.102E3 cm^-1", "1.104E3 cm^-1", "1.106E3 cm^-1"], "cm-1"),
    ],
)
def test_csv_header_wavelengths_with_units_and_exponents(tmp_path: Path, cells: list[str], unit: str) -> None:
    path = tmp_path / "data.csv"
    path.write_text(_text(cells))
    got = load_csv(path, targets=["fat"])
    np.testing.assert_array_equal(got.wavelengths, SMALL_WL)
    np.testing.assert_array_equal(got.X, _expected_X())
    assert got.axis_unit == unit
    assert set(got.columns) == {"sample_id"}


def test_csv_header_unit_that_disagrees_with_axis_unit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text(_text(["675.00000cm-1", "677.00000cm-1", "679.00000cm-1", "681.00000cm-1"]))
    with pytest.raises(DataError, match=r"data.csv line 1, column 3 \(675.00000cm-1\): expected wavelengths in nm "
                                        r"\(\[data\] axis_unit\), got a header in cm-1"):
        load_csv(path, targets=["fat"], axis_unit="nm")
    assert load_csv(path, targets=["fat"], axis_unit="cm-1").axis_unit == "cm-1"


def test_csv_header_mixed_or_unsupported_units_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text(_text(["1100 nm", "1102 nm", "1104cm-1", "1106 nm"]))
    with pytest.raises(DataError, match=r"column 5 \(1104cm-1\): expected every wavelength header in one unit, "
                                        r"got cm-1 here and nm in column 3"):
        load_csv(path, targets=["fat"])
    path.write_text(_text(["1.1 um", "1.2 um", "1.3 um", "1.4 um"]))
    with pytest.raises(DataError, match=r"column 3 \(1.1 um\): expected a wavelength unit nm or cm-1, got 'um'"):
        load_csv(path, targets=["fat"])


@pytest.mark.parametrize(("sep", "dec"), [(",", "."), (";", "."), (";", ","), ("\t", "."), ("\t", ",")])
def test_csv_delimiters_and_decimal_commas_are_detected(tmp_path: Path, sep: str, dec: str) -> None:
    path = tmp_path / "data.csv"
    header = [f"{w:.1f}".replace(".", dec) for w in SMALL_WL]  # 1100,0 in a semicolon file is a wavelength too
    path.write_text(_text(header, sep=sep, dec=dec))
    got = load_csv(path, targets=["fat"])
    np.testing.assert_array_equal(got.wavelengths, SMALL_WL)
    np.testing.assert_array_equal(got.X, _expected_X())
    np.testing.assert_array_equal(got.y[:, 0], [f for _, f, _ in _rows()])
    assert got.column("sample_id")[3] == "s3"
    explicit = load_csv(path, targets=["fat"], delimiter=sep, decimal=dec)
    np.testing.assert_array_equal(explicit.X, got.X)


def test_csv_decimal_settings_are_enforced(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text(_text(["1100", "1102", "1104", "1106"], sep=";", dec=","))
    with pytest.raises(DataError, match=r"data.csv line 2, column 3 \(1100 nm\): expected a number, got '0,0'"):
        load_csv(path, targets=["fat"], decimal=".")
    comma = tmp_path / "comma.csv"
    comma.write_text(_text(["1100", "1102", "1104", "1106"]))
    with pytest.raises(DataError, match="decimal = ',' needs a ';' or tab delimiter, got a comma-separated file"):
        load_csv(comma, targets=["fat"], decimal=",")
    with pytest.raises(TrainConfigError, match="data.decimal: expected delimiter ';'"):
        parse_config(_config('path = "comma.csv"\ndelimiter = ","\ndecimal = ","'), base_dir=tmp_path)


def test_csv_with_one_field_per_line_says_which_delimiters_were_tried(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("sample_id|fat|1100|1102\n" + "s1|1|2|3\n" * 12)
    with pytest.raises(DataError, match="data.csv line 1: expected a header with fields separated by ',', ';' or tab"):
        load_csv(path, targets=["fat"])


@pytest.mark.parametrize("first", ["wavelength", "sample_id"])
def test_csv_byte_order_mark_is_removed(tmp_path: Path, first: str) -> None:
    """Excel's "CSV UTF-8" starts with a BOM: the first column keeps its name, or stays a channel."""
    path = tmp_path / "data.csv"
    text = _text(["1100", "1102", "1104", "1106"])
    if first == "wavelength":  # move the spectral columns to the front
        lines = [ln.split(",") for ln in text.splitlines()]
        text = "\n".join(",".join(c[2:] + c[:2]) for c in lines) + "\n"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    got = load_csv(path, targets=["fat"])
    assert got.n_channels == len(SMALL_WL)
    np.testing.assert_array_equal(got.wavelengths, SMALL_WL)
    assert set(got.columns) == {"sample_id"}
    utf16 = tmp_path / "unicode.txt"  # Excel's "Unicode Text": UTF-16 with a BOM, tab-separated
    utf16.write_text(text.replace(",", "\t"), encoding="utf-16")
    np.testing.assert_array_equal(load_dataset(utf16, targets=["fat"]).X, got.X)


def test_csv_not_utf8_is_refused_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(_text(["1100", "1102", "1104", "1106"]).replace("s3,", "s\xe93,").encode("latin-1"))
    with pytest.raises(DataError, match=r"data.csv line 5: expected UTF-8 text, got byte 0xe9"):
        load_csv(path, targets=["fat"])


def test_csv_duplicate_column_names_are_refused_with_both_positions(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text(_text(["1100", "1102", "1104", "1106"], extra="fat"))
    with pytest.raises(DataError, match=r"data.csv line 1: expected distinct column names, got 'fat' twice "
                                        r"\(columns 2 and 3\)"):
        load_csv(path, targets=["fat"])


def test_csv_trailing_delimiter_is_ignored_but_an_unnamed_column_with_values_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    base = _text(["1100", "1102", "1104", "1106"], sep=";")
    path.write_text("".join(ln + ";\n" for ln in base.splitlines()))
    assert load_csv(path, targets=["fat"]).n_channels == len(SMALL_WL)
    path.write_text("".join((";" if i == 0 else f"{i};") + ln + "\n" for i, ln in enumerate(base.splitlines())))
    with pytest.raises(DataError, match=r"data.csv line 1, column 1: expected a column name, got an empty header"):
        load_csv(path, targets=["fat"])


def test_csv_cell_errors_name_file_line_column_and_header(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    text = _text(["1100", "1102", "1104", "1106"]).splitlines()
    cells = text[6].split(",")
    cells[4] = "n/a"  # line 7, column 5: the 1104 nm channel
    text[6] = ",".join(cells)
    path.write_text("\n\n" + "\n".join(text) + "\n")  # two blank lines first: lines are file lines
    with pytest.raises(DataError, match=r"^data.csv line 9, column 5 \(1104 nm\): expected a number, got 'n/a'$"):
        load_csv(path, targets=["fat"])
    cells[4] = ""
    text[6] = ",".join(cells)
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(DataError, match=r"data.csv line 7, column 5 \(1104 nm\): expected a number, got an empty cell"):
        load_csv(path, targets=["fat"])
    cells[4], cells[1] = "1.0", "high"
    text[6] = ",".join(cells)
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(DataError, match=r"data.csv line 7, column 2 \(fat\): expected a number, got 'high'"):
        load_csv(path, targets=["fat"])


def test_csv_empty_reference_is_refused_or_dropped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "data.csv"
    text = _text(["1100", "1102", "1104", "1106"]).splitlines()
    text[3] = text[3].replace(",11.0,", ",,")
    text[5] = text[5].replace(",12.0,", ",NA,")
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(DataError, match=r"data.csv: expected a reference value for every row, got 2 of 12 rows "
                                        r"without: data.csv line 4, column 2 \(fat\): empty; data.csv line 6, "
                                        r"column 2 \(fat\): 'NA'"):
        load_csv(path, targets=["fat"])
    with caplog.at_level(logging.WARNING, logger="trainer.data"):
        got = load_csv(path, targets=["fat"], missing_reference="drop")
    assert got.n_samples == 10 and "s2" not in got.column("sample_id") and "s4" not in got.column("sample_id")
    assert "dropped 2 of 12 rows without a reference value" in caplog.text


def _refs(path: Path, rows: list[tuple[str, str]], *, sep: str = ",", bom: bool = False) -> None:
    text = "\n".join([sep.join(["sample_id", "fat", "batch"]), *(sep.join([s, f, "b" + s[-1]]) for s, f in rows)])
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + (text + "\n").encode())


def test_csv_references_joined_from_a_separate_file(tmp_path: Path) -> None:
    spectra = tmp_path / "spectra.csv"
    # two replicate scans of each of 12 samples; the references hold one row per sample, in another order
    lines = _text(["1100", "1102", "1104", "1106"], fat=False).splitlines()
    spectra.write_text("\n".join([lines[0], *lines[1:], *lines[1:]]) + "\n")
    rows = [(sid, repr(f)) for sid, f, _ in reversed(_rows())]
    _refs(tmp_path / "refs.csv", [*rows, ("unused", "1.0")], sep=";", bom=True)
    got = load_csv(spectra, targets=["fat"], targets_path=tmp_path / "refs.csv", join_on="sample_id")
    fat = [f for _, f, _ in _rows()]
    np.testing.assert_array_equal(got.y[:, 0], fat + fat)
    assert got.column("batch")[1] == "b1"
    assert got.n_samples == 24


def test_csv_references_missing_for_some_samples(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spectra = tmp_path / "spectra.csv"
    spectra.write_text(_text(["1100", "1102", "1104", "1106"], fat=False))
    rows = [(sid, repr(f)) for sid, f, _ in _rows()]
    del rows[9], rows[4]
    _refs(tmp_path / "refs.csv", rows)
    with pytest.raises(DataError, match=r"spectra.csv: expected a reference value for every row, got 2 of 12 rows "
                                        r"without: sample_id 's4': no row in refs.csv; sample_id 's9': no row"):
        load_csv(spectra, targets=["fat"], targets_path=tmp_path / "refs.csv")
    with caplog.at_level(logging.WARNING, logger="trainer.data"):
        dropped = load_csv(spectra, targets=["fat"], targets_path=tmp_path / "refs.csv", missing_reference="drop")
    assert dropped.n_samples == 10 and "dropped 2 of 12 rows" in caplog.text
    excluded = load_csv(spectra, targets=["fat"], targets_path=tmp_path / "refs.csv",
                        exclude={"sample_id": ["s4", "s9"]})
    assert excluded.n_samples == 10


def test_csv_references_file_mistakes_are_named(tmp_path: Path) -> None:
    spectra = tmp_path / "spectra.csv"
    spectra.write_text(_text(["1100", "1102", "1104", "1106"], fat=False))
    rows = [(sid, repr(f)) for sid, f, _ in _rows()]
    _refs(tmp_path / "refs.csv", [*rows[:5], rows[2], *rows[5:]])
    with pytest.raises(DataError, match=r"refs.csv lines 4 and 7: expected one row per sample_id, got 's2' twice"):
        load_csv(spectra, targets=["fat"], targets_path=tmp_path / "refs.csv")
    _refs(tmp_path / "refs.csv", rows)
    with pytest.raises(DataError, match=r"refs.csv: expected a column 'lab_id' to join on|spectra.csv: expected a "
                                        r"column 'lab_id' to join the reference values on"):
        load_csv(spectra, targets=["fat"], targets_path=tmp_path / "refs.csv", join_on="lab_id")
    with pytest.raises(DataError, match=r"refs.csv: target column\(s\) 'protein' not found; columns: sample_id, fat"):
        load_csv(spectra, targets=["protein"], targets_path=tmp_path / "refs.csv")
    with pytest.raises(DataError, match=r"refs.csv: target column\(s\) 'Fat' not found; did you mean 'fat'\?; col"):
        load_csv(spectra, targets=["Fat"], targets_path=tmp_path / "refs.csv")
    with pytest.raises(DataError, match=r"spectra.csv: expected a column 'sample_ID' to join the reference values on "
                                        r"\(\[data\] join_on\); did you mean 'sample_id'\?"):
        load_csv(spectra, targets=["fat"], targets_path=tmp_path / "refs.csv", join_on="sample_ID")
    both = tmp_path / "both.csv"
    both.write_text(_text(["1100", "1102", "1104", "1106"]))
    with pytest.raises(DataError, match=r"both.csv: target column\(s\) 'fat' are in both both.csv and refs.csv"):
        load_csv(both, targets=["fat"], targets_path=tmp_path / "refs.csv")
    refs = "sample_id,fat\n" + "".join(f"{s},{f}\n" for s, f in rows)
    (tmp_path / "refs.csv").write_text(refs.replace("s3,", "s3,?", 1))
    with pytest.raises(DataError, match=r"refs.csv line 5, column 2 \(fat\): expected a number, got '\?"):
        load_csv(spectra, targets=["fat"], targets_path=tmp_path / "refs.csv")


def test_npz_refuses_a_targets_file(tmp_path: Path) -> None:
    ds = _dataset()
    np.savez(tmp_path / "d.npz", X=ds.X, wavelengths=ds.wavelengths, y=ds.y, target_names=np.array(ds.target_names))
    with pytest.raises(DataError, match="targets_path is for CSV and JCAMP-DX spectra"):
        load_dataset(tmp_path / "d.npz", targets_path=tmp_path / "refs.csv")


def test_exclude_drops_rows_and_names_values_that_match_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "data.csv"
    path.write_text(_text(["1100", "1102", "1104", "1106"]))
    with caplog.at_level(logging.INFO, logger="trainer.data"):
        got = load_csv(path, targets=["fat"], exclude={"sample_id": ["s1", "s7"]})
    assert got.n_samples == 10 and not {"s1", "s7"} & set(got.column("sample_id"))
    assert "data.exclude dropped 2 of 12 rows" in caplog.text
    with pytest.raises(DataError, match=r"data.exclude.sample_id: expected values present in column 'sample_id', "
                                        r"got 2 that no row has: 's99', 's100'"):
        load_csv(path, targets=["fat"], exclude={"sample_id": ["s1", "s99", "s100"]})
    with pytest.raises(DataError, match=r"data.exclude.batch: data.csv has no per-row column 'batch'; available: "
                                        r"sample_id"):
        load_csv(path, targets=["fat"], exclude={"batch": [1]})
    with pytest.raises(DataError, match="expected at least 10 samples, got 9"):
        load_csv(path, targets=["fat"], exclude={"sample_id": ["s0", "s1", "s2"]})


def test_exclude_on_npz_numbers_and_booleans(tmp_path: Path) -> None:
    ds = _dataset()
    flag = np.arange(N_ROWS) % 4 == 0
    np.savez(tmp_path / "d.npz", X=ds.X, wavelengths=ds.wavelengths, y=ds.y, target_names=np.array(ds.target_names),
             batch=np.arange(N_ROWS) // 5, outlier=flag)
    got = load_dataset(tmp_path / "d.npz", exclude={"batch": [0], "outlier": [True]})
    assert got.n_samples == N_ROWS - 5 - 3  # batch 0 holds rows 0-4 (row 0 is also an outlier); rows 8, 12, 16
    assert not got.column("outlier").any() and 0 not in got.column("batch")


def _config(data_lines: str, split: str = 'train = { split = "cal" }\n[split.test]\nt = { split = "test" }') -> str:
    return (
        f'[data]\ntargets = ["fat"]\n{data_lines}\n[split]\n{split}\n'
        '[preprocessing.candidates]\nraw = []\n'
    )


def test_config_keys_reach_the_loader(tmp_path: Path) -> None:
    """delimiter, decimal, targets_path, join_on, exclude and missing_reference from a TOML [data] table."""
    spectra = tmp_path / "spectra.csv"
    lines = _text(["1100,0 nm", "1102,0 nm", "1104,0 nm", "1106,0 nm"], sep=";", dec=",", fat=False).splitlines()
    lines = [lines[0] + ";split", *(ln + (";test" if i % 3 == 0 else ";cal") for i, ln in enumerate(lines[1:]))]
    spectra.write_text("\n".join(lines) + "\n")
    rows = [(sid, repr(f).replace(".", ",")) for sid, f, _ in _rows()][:-1]  # s11 has no reference
    _refs(tmp_path / "refs.csv", rows, sep=";")
    cfg = parse_config(_config(
        'path = "spectra.csv"\ndelimiter = ";"\ndecimal = ","\ntargets_path = "refs.csv"\njoin_on = "sample_id"\n'
        'exclude = { sample_id = ["s1"] }\nmissing_reference = "drop"'
    ), base_dir=tmp_path)
    assert cfg.data.exclude == {"sample_id": ("s1",)} and cfg.data.axis_unit is None
    ds = load_configured(cfg.data)
    assert ds.n_samples == 10 and ds.axis_unit == "nm"
    assert not {"s1", "s11"} & set(ds.column("sample_id"))
    (tmp_path / "sub").mkdir()
    moved = parse_config(_config('path = "spectra.csv"\ntargets_path = "refs.csv"'), base_dir=tmp_path / "sub")
    with pytest.raises(DataError, match=r"data.path: no such file .*sub/spectra.csv \(a relative path in a config is "
                                        r"taken from the config file's folder\)"):
        load_configured(moved.data)
    np.testing.assert_array_equal(ds.y[:2, 0], [10.0, 11.0])
    tab = parse_config(_config('path = "x.tsv"\ndelimiter = "tab"'), base_dir=tmp_path)
    assert tab.data.delimiter == "\t"


@pytest.mark.parametrize(
    ("data_lines", "message"),
    [
        ('path = "d.csv"\ndelimiter = "|"', r"data.delimiter: expected 'auto', ',', ';' or '\\t' \(tab\), got '\|'"),
        ('path = "d.csv"\ndecimal = "dot"', "data.decimal: expected 'auto', '.' or ',', got 'dot'"),
        ('path = "d.csv"\njoin_on = "sample_id"', "data.join_on: expected targets_path"),
        ('path = "d.csv"\nexclude = { sample_id = [] }', "data.exclude.sample_id: expected a string, number"),
        ('path = "d.csv"\nexclude = ["s1"]', "data.exclude: expected a table"),
        ('path = "d.csv"\nmissing_reference = "skip"', "data.missing_reference: expected 'error' or 'drop'"),
    ],
)
def test_config_refuses_bad_data_keys(tmp_path: Path, data_lines: str, message: str) -> None:
    with pytest.raises(TrainConfigError, match=message):
        parse_config(_config(data_lines), base_dir=tmp_path)


def test_boolean_columns_match_toml_booleans(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    words = ["true", "FALSE", "yes", "No", "1", "0"] * 2
    lines = _text(["1100", "1102", "1104", "1106"]).splitlines()
    lines = [lines[0] + ",calibrate,fold", *(ln + f",{w},{i % 2}" for ln, w, i in zip(lines[1:], words, range(12)))]
    path.write_text("\n".join(lines) + "\n")
    ds = load_csv(path, targets=["fat"])
    assert ds.column("calibrate").dtype == np.bool_
    assert ds.column("fold").dtype == np.int64  # 0/1 alone stays a number column
    cfg = parse_config(_config('path = "data.csv"', split="train = { calibrate = true }\n[split.test]\n"
                                                        "t = { calibrate = false }"), base_dir=tmp_path)
    assert select_rows(ds, cfg.split.train).tolist() == [0, 2, 4, 6, 8, 10]
    assert select_rows(ds, cfg.split.tests[0].selector).tolist() == [1, 3, 5, 7, 9, 11]
    kept = load_csv(path, targets=["fat"], exclude={"calibrate": False}, min_samples=5)
    assert kept.column("calibrate").all() and kept.n_samples == 6


def test_a_quoted_boolean_says_how_to_write_it(tmp_path: Path) -> None:
    """A TRUE/FALSE column (R's write.csv) selected with the file's word in quotes matches nothing; the refusal
    says to write a TOML boolean, in a selector and in exclude."""
    path = tmp_path / "data.csv"
    lines = _text(["1100", "1102", "1104", "1106"]).splitlines()
    lines = [lines[0] + ",train", *(ln + (",TRUE" if i % 3 else ",FALSE") for i, ln in enumerate(lines[1:]))]
    path.write_text("\n".join(lines) + "\n")
    ds = load_csv(path, targets=["fat"])
    hint = r"; column 'train' holds booleans: write train = true or false \(TOML booleans, without quotes\)"
    with pytest.raises(SplitError, match=r"split.train.train: no row has train = 'TRUE'; values present: False, "
                                         r"True" + hint):
        select_rows(ds, {"train": "TRUE"}, where="split.train")
    with pytest.raises(DataError, match=r"got 1 that no row has: 'FALSE' \(values present: False, True\)" + hint):
        load_csv(path, targets=["fat"], exclude={"train": "FALSE"})
    assert select_rows(ds, {"train": True}).size == 8


def test_npz_boolean_column_matches_toml_booleans(tmp_path: Path) -> None:
    ds = _dataset()
    np.savez(tmp_path / "d.npz", X=ds.X, wavelengths=ds.wavelengths, y=ds.y, target_names=np.array(ds.target_names),
             calibrate=np.arange(N_ROWS) < 15, held=np.array(["true"] * 15 + ["false"] * 5))
    got = load_npz(tmp_path / "d.npz")
    assert got.column("held").dtype == np.bool_
    assert select_rows(got, {"calibrate": True}).tolist() == list(range(15))
    assert select_rows(got, {"held": False}).tolist() == list(range(15, 20))


def test_numeric_class_labels_are_ordered_by_value(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    grades = ["10", "2", "1", "2.0", "10", "1"] * 2
    lines = _text(["1100", "1102", "1104", "1106"], fat=False).splitlines()
    lines = [lines[0] + ",grade", *(ln + f",{g}" for ln, g in zip(lines[1:], grades))]
    path.write_text("\n".join(lines) + "\n")
    got = load_csv(path, targets=["grade"], task="classification")
    assert got.class_names == ("1", "2", "10")
    assert got.y[:6, 0].tolist() == [2, 1, 0, 1, 2, 0]
    text = path.read_text().replace(",10\n", ",ten\n")
    path.write_text(text)
    assert load_csv(path, targets=["grade"], task="classification").class_names == ("1", "2", "2.0", "ten")


def test_npz_integer_classes_are_named_without_a_decimal_point(tmp_path: Path) -> None:
    ds = _dataset()
    np.savez(tmp_path / "d.npz", X=ds.X, wavelengths=ds.wavelengths, y=(np.arange(N_ROWS) % 3).astype(np.float64))
    got = load_dataset(tmp_path / "d.npz", task="classification")
    assert got.class_names == ("0", "1", "2")
    assert got.y[:4, 0].tolist() == [0, 1, 2, 0]
    np.savez(tmp_path / "e.npz", X=ds.X, wavelengths=ds.wavelengths, y=np.array([12, 3] * 10))
    assert load_dataset(tmp_path / "e.npz", task="classification").class_names == ("3", "12")


def test_jcamp_targets_file_with_bom_and_semicolons(tmp_path: Path) -> None:
    pytest.importorskip("jcamp")
    ds = _dataset()
    lines = ["file;fat_pct;batch"]
    for i in range(ds.n_samples):
        _write_jdx(tmp_path / f"s{i:02d}.jdx", ds.wavelengths, ds.X[i])
        lines.append(f"s{i:02d}.jdx;{float(ds.y[i, 0])!r};{i // 5}".replace(".", ",", 1).replace(",jdx", ".jdx"))
    (tmp_path / "targets.csv").write_bytes(b"\xef\xbb\xbf" + ("\n".join(lines) + "\n").encode())
    got = load_jcamp(tmp_path, targets=["fat_pct"], targets_path=tmp_path / "targets.csv")
    np.testing.assert_allclose(got.y[:, 0], ds.y[:, 0])
    assert got.column("batch").tolist() == [i // 5 for i in range(N_ROWS)]
    with pytest.raises(DataError, match=r"expected a reference value for every row, got 1 of 19 rows without: "
                                        r"file 's03.jdx': no row in targets.csv"):
        (tmp_path / "targets.csv").write_text("\n".join(ln for ln in lines if not ln.startswith("s03")) + "\n")
        load_jcamp(tmp_path, targets=["fat_pct"], targets_path=tmp_path / "targets.csv", exclude={"file": "s04.jdx"})


def test_exclude_applies_to_synthetic_spectra(tmp_path: Path) -> None:
    cfg = parse_config(
        '[data]\nsynthetic = { samples = 40, channels = 16 }\ntargets = ["analyte_a_pct"]\n'
        'exclude = { split = "test" }\n[split]\ntrain = { split = "calibration" }\n[split.test]\n'
        't = { split = "calibration" }\n[preprocessing.candidates]\nraw = []\n',
        base_dir=tmp_path,
    )
    ds = load_configured(cfg.data)
    assert 0 < ds.n_samples < 40 and set(ds.column("split")) == {"calibration"}


def test_csv_a_unit_typo_between_channels_is_refused_not_dropped(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text(_text(["1100,00 nm", "1102,00 mn", "1104,00 nm", "1106,00 nm"], sep=";", dec=","))
    with pytest.raises(DataError, match=r"data.csv line 1, column 4 \(1102,00 mn\): expected a wavelength header "
                                        r"\(a number, then nm, cm-1 or nothing\) like its neighbours '1100,00 nm' "
                                        r"and '1104,00 nm', got '1102,00 mn'"):
        load_csv(path, targets=["fat"])
    path.write_text(_text(["1100 nm", "1102 nm", "1104 nm", "1106 nm"], extra="2nd_derivative"))
    got = load_csv(path, targets=["fat"])  # before the channels: a per-row column, as documented
    assert got.X.shape == (12, 4) and set(got.columns) == {"sample_id", "2nd_derivative"}
    # Between the channels, a header whose number is not between theirs, or a column the config names, stays one.
    text = _text(["1100 nm", "1102 nm", "1st_batch", "1104 nm"])
    path.write_text(text.replace("1st_batch", "1103_fat", 1).replace("fat,", "target,", 1))
    with pytest.raises(DataError, match=r"column 5 \(1103_fat\): expected a wavelength header"):
        load_csv(path, targets=["target"])
    assert load_csv(path, targets=["1103_fat"]).X.shape == (12, 3)  # a target: named in the config
    path.write_text(text)
    got = load_csv(path, targets=["fat"])
    assert got.X.shape == (12, 3) and "1st_batch" in got.columns


def test_csv_decimal_comma_headers_in_a_comma_separated_file_say_why_the_names_repeat(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("sample_id,fat,850,00 nm,852,00 nm\ns0,1.5,0,25,0,5\ns1,2.5,0,75,1,0\n")
    with pytest.raises(DataError, match=r"data.csv line 1: expected distinct column names, got '00 nm' twice "
                                        r"\(columns 4 and 6\); decimal commas in a comma-separated file split each "
                                        r"number in two: re-export with ';' or tab"):
        load_csv(path, targets=["fat"])
    path.write_text("sample_id,fat,1100,1100\ns0,1.5,0.25,0.5\ns1,2.5,0.75,1.0\n")  # a column repeated: no hint
    with pytest.raises(DataError, match=r"got '1100' twice \(columns 3 and 4\)$"):
        load_csv(path, targets=["fat"])
