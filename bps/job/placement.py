"""Where a job's files live outside its scratch directory. Standard library only."""

from __future__ import annotations

from pathlib import Path

from ..staging import StagedFile


class Placement:
    """Where a job's files live outside scratch.

    Shared staging (``--repo``): inputs are read from, and outputs copied to, their
    datastore paths under ``root``. Transfer staging (``--inputs-dir`` /
    ``--outputs-dir``, for Pegasus or HTCondor file transfer): the workflow system put
    each input in ``inputs_dir`` under its logical file name and takes each output
    from ``outputs_dir`` under its logical file name; the final job puts it in place.
    """

    __slots__ = ("root", "inputs_dir", "outputs_dir")

    def __init__(
        self, root: Path | None = None, inputs_dir: Path | None = None, outputs_dir: Path | None = None
    ):
        self.root = root
        self.inputs_dir = inputs_dir
        self.outputs_dir = outputs_dir

    def __repr__(self) -> str:
        return (
            f"Placement(root={self.root!r}, inputs_dir={self.inputs_dir!r}, outputs_dir={self.outputs_dir!r})"
        )

    @property
    def transfer(self) -> bool:
        """True for transfer staging (the workflow system moves the files)."""
        return self.outputs_dir is not None

    def manifest_root(self) -> str:
        """The root manifest paths are relative to ('' in transfer mode: finalize knows the datastore)."""
        return "" if self.transfer or self.root is None else str(self.root)

    def input_source(self, relative: str, lfn: str) -> Path:
        """Where an input is: ``inputs_dir/lfn`` (transfer) or ``root/relative`` (shared)."""
        if self.inputs_dir is not None:
            return self.inputs_dir / lfn
        assert self.root is not None
        return self.root / relative

    def output_target(self, relative: str, lfn: str) -> Path:
        """Where an output goes: ``outputs_dir/lfn`` (transfer) or ``root/relative`` (shared)."""
        if self.outputs_dir is not None:
            return self.outputs_dir / lfn
        assert self.root is not None
        return self.root / relative

    def recorded_path(self, relative: str) -> str:
        """The path written in the manifest: datastore-relative in shared mode, '' (by lfn) in transfer mode."""
        return "" if self.transfer else relative

    def staged_file(self, f: StagedFile) -> Path:
        """Where a file the manifest lists was staged to."""
        if self.outputs_dir is not None:
            return self.outputs_dir / f.lfn
        return Path(self.manifest_root()) / f.path
