"""Spectra wider than a device can send are refused before anything trains: the bundle takes at least as many pixels
as the training axis, and one SPECTRUM frame carries at most 2,807 float32 or 5,614 uint16 pixels."""

from __future__ import annotations

import pytest

from firmware_bridge.codec import MAX_PIXELS, max_spectrum_pixels
from firmware_bridge.frames import PixelFormat
from tests.support.tiny_fit import TINY_DATA
from trainer.config import parse_config
from trainer.errors import TrainConfigError
from trainer.pipeline.fit import check_fit

MODEL = """[preprocessing.candidates]
center = [{ op = "center" }]
[model]
filters = [4]
kernel_sizes = [5]
strides = [2]
dense_units = []
epochs = 2
"""


def _cfg(channels: int, signal: str) -> object:
    data = TINY_DATA.replace("channels = 32", f"channels = {channels}")
    assert data != TINY_DATA
    quantity = "reflectance" if signal == "reflectance" else "absorbance"
    return parse_config(data + MODEL + f'[instrument]\nsignal = "{signal}"\nquantity = "{quantity}"\n', base_dir=".")


def test_the_protocol_limits_follow_the_pixel_format() -> None:
    assert max_spectrum_pixels("counts") == MAX_PIXELS[PixelFormat.UINT16] == 5614
    assert max_spectrum_pixels("absorbance") == max_spectrum_pixels("reflectance") == MAX_PIXELS[PixelFormat.FLOAT32]
    assert MAX_PIXELS[PixelFormat.FLOAT32] == 2807


@pytest.mark.parametrize("signal", ["absorbance", "reflectance"])
def test_a_processed_signal_wider_than_a_float32_frame_is_refused_before_training(signal: str) -> None:
    with pytest.raises(TrainConfigError, match=rf"data: expected at most 2807 channels for a device that sends "
                                               rf"{signal} .*float32 pixels.*got 2808 in .*\(nothing was trained\)"):
        check_fit(_cfg(2808, signal))  # type: ignore[arg-type]  # a TrainConfig
    assert any("2807 channels" in line for line in check_fit(_cfg(2807, signal)))  # type: ignore[arg-type]


def test_counts_go_up_to_a_uint16_frame() -> None:
    check_fit(_cfg(5614, "counts"))  # type: ignore[arg-type]  # a TrainConfig
    with pytest.raises(TrainConfigError, match=r"expected at most 5614 channels for a device that sends counts "
                                               r".*uint16 pixels.*got 5615"):
        check_fit(_cfg(5615, "counts"))  # type: ignore[arg-type]
