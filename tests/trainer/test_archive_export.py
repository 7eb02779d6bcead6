"""The lab side reads what the device archived (issue 16): ``spectro-edge export`` writes the ``../shared/datasets``
layout, the lab joins its reference values on the sample id, and ``trainer.data.load_npz`` loads the result."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from edge.archive import Archive, ArchivePolicy
from edge.inference import Prediction
from edge.references import ReferenceKind, ReferenceSet, ReferenceSpectrum
from firmware_bridge.frames import Spectrum
from trainer.data import load_npz

PIXELS = 40
#: The lab's reference value of each sample (what it measured), joined on the sample id.
LAB_VALUES = {f"LAB-{k}": 10.0 + k for k in range(6)}


#: What the archive reads of the bundle in service.
BUNDLE = SimpleNamespace(model_id="demo", model_version="1.0.0", file_sha256="cd" * 32,
                         wavelengths=np.linspace(900.0, 1700.0, PIXELS))


def test_an_export_joined_with_lab_values_on_the_sample_id_loads_as_a_training_set(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "archive.sqlite", ArchivePolicy("every_nth", every_n=5), max_bytes=1 << 24,
                      max_age_days=30.0)
    refs = ReferenceSet(dark=ReferenceSpectrum(ReferenceKind.DARK, np.full(PIXELS, 50.0), captured_at_s=1.0),
                        reference=ReferenceSpectrum(ReferenceKind.WHITE, np.full(PIXELS, 3000.0), captured_at_s=1.0))
    archive.start()
    rng = np.random.default_rng(0)
    seq = 0
    for sample in LAB_VALUES:
        archive.tag(sample, frames=2)  # two spectra of each lab sample
        for _ in range(4):
            counts = rng.integers(100, 3000, PIXELS).astype(np.uint16)
            frame = Spectrum(seq=seq, timestamp_us=seq * 1000, integration_time_us=4000, counts=counts)
            pred = Prediction(seq=seq, timestamp_us=seq * 1000, names=("moisture",), units=("%",), values=(12.5,),
                              lower=None, upper=None, interval_coverage=None, ood=None, flags=(), reasons=(),
                              compute_us=1.0, model_id="demo", model_version="1.0.0")
            archive.offer(frame, pred, refs, signal="counts", boot_id=3, wavelengths_nm=None, bundle=BUNDLE)
            seq += 1
    archive.close()

    out = tmp_path / "line.npz"
    proc = subprocess.run([sys.executable, "-m", "edge.cli", "export", str(archive.path), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with np.load(out, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    tagged = arrays["sample_id"] != ""
    assert int(tagged.sum()) == 2 * len(LAB_VALUES)
    # the lab's join: its value for each tagged row, NaN (dropped) for the untagged ones kept by every_nth
    arrays["y"][:, 0] = [LAB_VALUES.get(str(s), np.nan) for s in arrays["sample_id"]]
    joined = tmp_path / "joined.npz"
    np.savez(joined, **arrays)

    ds = load_npz(joined, missing_reference="drop")
    assert ds.X.shape == (2 * len(LAB_VALUES), PIXELS) and ds.target_names == ("moisture",)
    np.testing.assert_allclose(ds.wavelengths, BUNDLE.wavelengths)
    np.testing.assert_allclose(ds.y[:, 0], [LAB_VALUES[str(s)] for s in ds.column("sample_id")])
    assert list(ds.column("seq")) == [0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21]
    # raw counts, convertible with the references exported beside them
    dark = arrays["dark_spectra"][arrays["dark_index"][tagged]]
    assert dark.shape == (2 * len(LAB_VALUES), PIXELS) and np.all(dark == 50.0)
