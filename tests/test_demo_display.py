"""The stdlib PNG writer used to look at coadds."""

import struct
import zlib

import numpy as np
from demo_drp.display import save_png, stretch


def _read_png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    idat_len = struct.unpack(">I", data[33:37])[0]
    raw = zlib.decompress(data[41 : 41 + idat_len])
    rows = [raw[i * (width + 1) + 1 : (i + 1) * (width + 1)] for i in range(height)]
    return np.array([list(r) for r in rows], dtype=np.uint8)


def test_png_has_the_image_size_and_north_up(tmp_path):
    image = np.zeros((30, 40))
    image[25, 5] = 1000.0  # a bright pixel near the top (large y)
    image += np.random.default_rng(0).normal(0, 1, image.shape)
    pixels = _read_png(save_png(image, tmp_path / "a.png"))
    assert pixels.shape == (30, 40)
    assert np.unravel_index(pixels.argmax(), pixels.shape) == (30 - 1 - 25, 5)


def test_stretch_shows_noise_and_blacks_out_missing_pixels():
    image = np.random.default_rng(1).normal(100.0, 5.0, (50, 50))
    image[:5] = np.nan
    out = stretch(image)
    assert np.all(out[:5] == 0)
    assert out[5:].std() > 10  # sky noise is visible, not flattened to one grey
