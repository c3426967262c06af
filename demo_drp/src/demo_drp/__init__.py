"""The demo: a small data-release production over simulated DemoCam data (see docs/tutorial.md).

Geometry: `camera` (DemoCam's detectors and filters), `skymap` (tracts and patches),
`wcs` (the tangent-plane WCS). Data: `refcat` (the injected stars), `simulate`
(raw exposures, bias, flat, observing plan), `data` (registration in a repository).
Algorithms, each free of I/O: `isr`, `calibrate` (with `measure`), `warp`, `coadd`.
SuperTasks wrapping them: `tasks`. Checking and looking: `validate`, `display`.
`main_job` runs the whole system end to end (``make demo``).

Nothing is imported here, so ``import demo_drp.tasks`` in a batch job loads
only what that job needs.
"""
