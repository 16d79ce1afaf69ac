"""One run's folder under an ``--out`` root, and the ``latest`` pointer to it (see :mod:`edge.recording`).

The folder name is the run id: ``NNNN-YYYYmmddTHHMMSSZ``, a sequence number
first so folders sort in run order even when a device without a real-time
clock boots with the wrong date.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from edge.atomic import write_text
from edge.sinks import StorageError

__all__ = ["RunFolder", "latest_run", "RESERVE_NAME"]

log = logging.getLogger(__name__)

RESERVE_NAME = ".space-reserve"  # the space a run sets aside for summary.json (edge.recording)
_RUN_NAME = re.compile(r"(\d{4,})-\d{8}T\d{6}Z")


@dataclass(frozen=True)
class RunFolder:
    """One run's folder under an output root, and the ``latest`` pointer to it.

    Example:
        >>> folder = RunFolder.create("runs/live")  # doctest: +SKIP
        >>> folder.path.name == folder.run_id  # doctest: +SKIP
        True
    """

    root: Path
    run_id: str
    path: Path

    @classmethod
    def create(cls, root: str | os.PathLike[str], now: _dt.datetime | None = None) -> "RunFolder":
        """Make ``root/NNNN-YYYYmmddTHHMMSSZ`` (never an existing folder) and point ``root/latest`` at it.

        Raises:
            StorageError: the folder cannot be created (no space, read-only, no permission).
        """
        root = Path(root)
        stamp = (now or _dt.datetime.now(_dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
        try:
            root.mkdir(parents=True, exist_ok=True)
            for stale in root.glob(f"*/{RESERVE_NAME}"):  # left by a killed run: free it
                stale.unlink(missing_ok=True)
            numbers = [int(m.group(1)) for p in root.iterdir() if (m := _RUN_NAME.fullmatch(p.name))]
            seq = max(numbers, default=0) + 1
            while True:  # mkdir is the lock: two runs started at once get different folders
                run_id = f"{seq:04d}-{stamp}"
                try:
                    (root / run_id).mkdir()
                    break
                except FileExistsError:
                    seq += 1
        except OSError as exc:
            raise StorageError.from_os_error("cannot create a run folder in", root, exc) from exc
        _point_latest(root, run_id)
        return cls(root, run_id, root / run_id)


def latest_run(root: str | os.PathLike[str]) -> Path:
    """The folder of the newest run under ``root`` (through ``root/latest``, a link or a file naming it).

    Raises:
        StorageError: no run has been recorded under ``root``.
    """
    link = Path(root) / "latest"
    if link.is_symlink() or link.is_dir():
        return link.resolve()
    if link.is_file():
        return Path(root) / link.read_text().strip()
    raise StorageError(f"expected a run folder under {root} (with a 'latest' pointer); found none")


def _point_latest(root: Path, name: str) -> None:
    link = root / "latest"
    if link.is_dir() and not link.is_symlink():
        log.warning("%s is a folder, not a pointer; leaving it alone (this run is %s)", link, name)
        return
    tmp = root / f".latest-{os.getpid()}"
    try:
        tmp.unlink(missing_ok=True)
        os.symlink(name, tmp)
        os.replace(tmp, link)  # atomic: a reader sees the old run or the new one
    except OSError:
        tmp.unlink(missing_ok=True)
        try:  # FAT and exFAT (many SD cards) have no symlinks: a file naming the run instead
            write_text(link, name + "\n")
        except OSError as exc:
            log.warning("could not point %s at %s: %s", link, name, exc)
