"""`Exposure`: an image, its variance, its WCS and metadata, as the demo algorithms pass them.

The repository stores images with the ``ArrayDict`` storage class (named arrays plus
JSON-able metadata, one ``.npz`` file). `Exposure.to_arrays` / `Exposure.from_arrays`
are the only place that knows that layout, so the algorithms never touch files and
the SuperTask wrappers stay one line per dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .wcs import TanWcs

# Arrays of an Exposure that are not the image itself; stored under these names.
EXTRA_PLANES = ("variance", "coverage", "n_inputs")


@dataclass
class Exposure:
    """An image with what is needed to interpret it.

    Parameters
    ----------
    image : `numpy.ndarray`
        Pixel values, indexed ``[y, x]``.
    wcs : `TanWcs` or `None`
        Pixel to sky mapping (``None`` for calibration frames such as bias and flat).
    variance : `numpy.ndarray`, optional
        Per-pixel variance of ``image``, same shape.
    planes : `dict` [`str`, `numpy.ndarray`]
        Further per-pixel planes, e.g. ``coverage`` of a warp or ``n_inputs`` of a coadd.
    metadata : `dict`
        JSON-able facts about the image (visit, band, zero point...).
    """

    image: NDArray[np.floating]
    wcs: TanWcs | None = None
    variance: NDArray[np.floating] | None = None
    planes: dict[str, NDArray[Any]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shape = np.shape(self.image)
        for name, plane in [("variance", self.variance), *self.planes.items()]:
            if plane is not None and np.shape(plane) != shape:
                raise ValueError(f"{name} plane has shape {np.shape(plane)}, image has {shape}")

    @property
    def height(self) -> int:
        return int(np.shape(self.image)[0])

    @property
    def width(self) -> int:
        return int(np.shape(self.image)[1])

    def to_arrays(self) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
        """``(arrays, metadata)`` for the ``ArrayDict`` storage class; the WCS goes into metadata."""
        arrays: dict[str, NDArray[Any]] = {"image": np.asarray(self.image)}
        if self.variance is not None:
            arrays["variance"] = np.asarray(self.variance)
        arrays.update(self.planes)
        metadata = dict(self.metadata)
        if self.wcs is not None:
            metadata["wcs"] = self.wcs.to_dict()
        return arrays, metadata

    def to_array_dict(self) -> dict[str, Any]:
        """The in-memory form of the ``ArrayDict`` storage class: arrays plus a ``"metadata"`` dict."""
        arrays, metadata = self.to_arrays()
        return {**arrays, "metadata": metadata}

    @classmethod
    def from_array_dict(cls, data: dict[str, Any]) -> Exposure:
        """Inverse of `to_array_dict` (what ``butler.get`` returns for an ``ArrayDict`` dataset)."""
        if not isinstance(data, dict):
            raise TypeError(f"expected an ArrayDict (a dict of arrays), got {type(data).__name__}")
        arrays = {k: v for k, v in data.items() if k != "metadata"}
        return cls.from_arrays(arrays, dict(data.get("metadata") or {}))

    @classmethod
    def from_arrays(cls, arrays: dict[str, NDArray[Any]], metadata: dict[str, Any]) -> Exposure:
        """Inverse of `to_arrays`."""
        if "image" not in arrays:
            raise ValueError(f"an Exposure needs an 'image' array; got {sorted(arrays)}")
        metadata = dict(metadata)
        wcs_dict = metadata.pop("wcs", None)
        planes = {k: np.asarray(v) for k, v in arrays.items() if k not in ("image", "variance")}
        return cls(
            image=np.asarray(arrays["image"]),
            wcs=TanWcs.from_dict(wcs_dict) if wcs_dict is not None else None,
            variance=np.asarray(arrays["variance"]) if "variance" in arrays else None,
            planes=planes,
            metadata=metadata,
        )
