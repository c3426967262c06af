"""`DemoCamRegions`: the sky box of a DemoCam raw, for ``supertask define-visits --regions``.

A DemoCam raw carries the telescope's nominal WCS in its metadata. The box is the
detector's footprint through that WCS, widened by `~demo_drp.data.REGION_MARGIN_DEG`
to cover the pointing error, exactly as the demo generator computes it, so visits
defined from ingested raws overlap the same patches.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from supertask.repo.formatters import get_formatter
from supertask.repo.visits import Box, RegionReader

from .exposure import Exposure

#: Visit-detector boxes are widened by this much (a few times the pointing error), degrees.
REGION_MARGIN_DEG = 10.0 / 3600.0


class DemoCamRegions(RegionReader):
    """Reads the WCS from a raw's metadata; the box covers the whole detector plus the margin."""

    def read(self, path: Path, dataId: Mapping[str, Any]) -> Box:
        exposure = Exposure.from_array_dict(get_formatter("ArrayDict").read(path))
        if exposure.wcs is None:
            raise ValueError("the raw has no WCS in its metadata")
        return exposure.wcs.sky_box(exposure.width, exposure.height, REGION_MARGIN_DEG)
