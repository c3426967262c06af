"""Instrument signature removal: bias subtraction, gain and flat-field correction, variance plane."""

from __future__ import annotations

import numpy as np

from .exposure import Exposure


def run_isr(raw: Exposure, bias: Exposure, flat: Exposure) -> Exposure:
    """Turn a raw detector image (ADU) into a flat-fielded image in electrons with its variance.

    The variance is computed from the image itself (Poisson) plus the read noise
    recorded in the raw metadata, and divided by the flat squared like the image.

    Raises
    ------
    ValueError
        If the calibration frames do not match the raw (shape or detector), which
        is what happens when a wrong calibration collection is searched first.
    """
    for name, frame in (("bias", bias), ("flat", flat)):
        if frame.image.shape != raw.image.shape:
            raise ValueError(f"{name} shape {frame.image.shape} does not match raw shape {raw.image.shape}")
        frame_det, raw_det = frame.metadata.get("detector"), raw.metadata.get("detector")
        if frame_det is not None and raw_det is not None and frame_det != raw_det:
            raise ValueError(f"{name} is for detector {frame_det} but the raw is detector {raw_det}")
    flat_image = np.asarray(flat.image, dtype=float)
    if np.any(flat_image <= 0):
        raise ValueError("flat has non-positive pixels; it cannot be divided by (is it a bias?)")
    gain = float(raw.metadata.get("gain", 1.0))
    read_noise = float(raw.metadata.get("read_noise", 0.0))
    electrons = (np.asarray(raw.image, dtype=float) - bias.image) * gain
    variance = (np.clip(electrons, 0.0, None) + read_noise**2) / flat_image**2
    image = electrons / flat_image
    metadata = dict(raw.metadata, isr_done=True)
    return Exposure(
        image=image.astype(np.float32), wcs=raw.wcs, variance=variance.astype(np.float32), metadata=metadata
    )
