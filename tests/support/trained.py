"""The trainer-built artefacts committed in tests/data/trained/ for the edge and firmware_bridge tests, which run
without TensorFlow (``make test-edge``): where each file is, the settings that made it, and the tablets test
material (real spectra, the edge pipeline fitted on them, and the committed ``.tflite`` models).

tests/data/trained/make_trained.py writes every file named here (by hand, with the trainer installed); the tests
only read them, and tests/integration/test_committed_artefacts.py checks, with TensorFlow, that they are still what
the trainer writes today. Importing this module loads numpy and (in the functions) ``edge`` only.
"""

from __future__ import annotations

import functools
from pathlib import Path

from tests.support.bundles import CLASS_LABELS, TabletModels, tablets_material

REPO = Path(__file__).resolve().parents[2]
TRAINED = REPO / "tests" / "data" / "trained"
#: The command that writes the files below.
GENERATOR = "python tests/data/trained/make_trained.py"

#: ``spectro-train fit examples/demo.toml`` (model_version 1.0.0): counts in, the simulator's synthetic stream.
DEMO_V1 = TRAINED / "synthetic-demo-1.0.0.spectrolite"
#: The same config with model_version 1.1.0 (a good bundle to reload).
DEMO_V2 = TRAINED / "synthetic-demo-1.1.0.spectrolite"
#: The demo config with ``[instrument] signal = "absorbance"``, model_version 2.0.0-absorbance, 5 epochs.
DEMO_ABSORBANCE = TRAINED / "synthetic-demo-absorbance.spectrolite"
#: The demo config with ``--model cnn`` and model_version 1.2.0: fits the same device as 1.0.0 (a PLS), predicts
#: otherwise (a shadow-mode challenger).
DEMO_CNN = TRAINED / "synthetic-demo-1.2.0-cnn.spectrolite"
#: The demo config with ``[ood] autoencoder = true`` (``autoencoder_epochs = 150``), ``--model pls`` and
#: model_version 1.3.0-ae: the same device contract as 1.0.0, with the int8 autoencoder (format 3).
DEMO_AE = TRAINED / "synthetic-demo-1.3.0-ae.spectrolite"
#: The demo config on the synthetic FTIR dataset below (axis in cm-1), ``--model pls``, 3 epochs.
FTIR_BUNDLE = TRAINED / "synthetic-ftir.spectrolite"
#: The synthetic FTIR dataset (``make_synthetic_dataset(FTIR_ROWS, seed=FTIR_SEED, n_channels=FTIR_PIXELS,
#: wavelength_range_nm=FTIR_RANGE_CM1, axis_unit="cm-1")``): rebuilt by the tests, deterministic.
FTIR_ROWS, FTIR_PIXELS, FTIR_RANGE_CM1, FTIR_SEED = 200, 128, (900.0, 1800.0), 0

#: A per-target bundle (format 4): the two-target mixtures of tests/support/per_target.py (counts in), where PLS
#: serves ``linear_pct`` (model.tflite, float) and the CNN ``curved_pct`` (model_2.tflite, int8).
PER_TARGET_BUNDLE = TRAINED / "mix-per-target.spectrolite"

#: The tiny Keras models of tests/support/bundles.py (real tablets spectra), converted by trainer.quantize.
TABLETS_INT8 = TRAINED / "tablets-assay-int8.tflite"
TABLETS_FLOAT = TRAINED / "tablets-assay-float.tflite"
TABLETS_CLASS_INT8 = TRAINED / "tablets-class-int8.tflite"
#: ``write_regression_bundle`` of the int8 model (absorbance in, OOD, intervals), signed with a key made for the
#: occasion: its public half is committed, its private half thrown away.
TABLETS_BUNDLE = TRAINED / "tablets-assay.spectrolite"
TABLETS_PUBLIC_KEY = TRAINED / "tablets-assay.pub.pem"

#: Every committed artefact, for the staleness check and the generator's summary.
ALL = (DEMO_V1, DEMO_V2, DEMO_ABSORBANCE, DEMO_CNN, DEMO_AE, FTIR_BUNDLE, PER_TARGET_BUNDLE, TABLETS_INT8,
       TABLETS_FLOAT, TABLETS_CLASS_INT8, TABLETS_BUNDLE, TABLETS_PUBLIC_KEY)


def committed(path: Path) -> Path:
    """``path`` when the committed artefact is there, else a clear error naming the generator."""
    if not path.is_file():
        raise FileNotFoundError(f"expected the committed trainer-built artefact {path.relative_to(REPO)}, found "
                                f"none; regenerate tests/data/trained with `{GENERATOR}`")
    return path


@functools.lru_cache(maxsize=None)
def tablet_models(datasets_dir: Path) -> TabletModels:
    """The tablets material with the committed models (once per process; no TensorFlow)."""
    data = tablets_material(datasets_dir)
    return TabletModels(
        **data,
        int8_bytes=committed(TABLETS_INT8).read_bytes(),
        float_bytes=committed(TABLETS_FLOAT).read_bytes(),
        class_int8_bytes=committed(TABLETS_CLASS_INT8).read_bytes(),
        class_labels=CLASS_LABELS,
    )
