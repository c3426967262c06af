"""Write an image as an 8-bit greyscale PNG with an asinh stretch (numpy and the standard library only).

Enough to look at a coadd or a calexp without a plotting package: the asinh
stretch shows faint sky noise and bright star cores in one picture.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray


def stretch(image: ArrayLike, soften: float | None = None, max_sigma: float = 50.0) -> np.ndarray:
    """Map an image to 0-255 with ``asinh((pixel - sky) / soften)``.

    ``soften`` defaults to the sky noise (so noise is visible) and the top of the
    scale is ``max_sigma`` noise units; NaN pixels (no data) come out black.
    """
    img = np.asarray(image, dtype=float)
    good = np.isfinite(img)
    if not good.any():
        return np.zeros(img.shape, dtype=np.uint8)
    sky = float(np.median(img[good]))
    noise = float(1.4826 * np.median(np.abs(img[good] - sky))) or 1.0
    soften = soften or noise
    scaled = np.arcsinh((np.where(good, img, sky) - sky) / soften) / np.arcsinh(max_sigma * noise / soften)
    out: NDArray[np.uint8] = np.clip(scaled * 200.0 + 40.0, 0, 255).astype(np.uint8)
    out[~good] = 0
    return out


def save_png(image: ArrayLike, path: str | Path, **kwargs: float) -> Path:
    """Write ``image`` (indexed ``[y, x]``) to ``path`` as a PNG, north (+y) up."""
    pixels = stretch(image, **kwargs)[::-1]  # PNG rows go top to bottom
    height, width = pixels.shape
    raw = b"".join(b"\x00" + row.tobytes() for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )
    path = Path(path)
    path.write_bytes(png)
    return path
