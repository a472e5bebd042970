"""Retained checkpoints under `flink.checkpoint_dir`: `completed_checkpoints` / `latest_checkpoint`.

A `chk-N/_metadata` file is the mark of a complete checkpoint: Flink writes it last, through a
temporary file renamed into place.
"""

from __future__ import annotations

from pathlib import Path


def checkpoint_number(path: Path) -> int:
    """N of a `chk-N` directory."""
    return int(path.name.split("-", 1)[1])


def completed_checkpoints(checkpoint_dir: Path | str) -> list[Path]:
    """Every complete `chk-N` directory under `checkpoint_dir` (all job ids), oldest first.

    A restored job continues the checkpoint numbering of the checkpoint it restored, so the number
    orders checkpoints across job ids; the modification time breaks ties.
    """
    root = Path(checkpoint_dir)
    found = []
    for metadata in root.glob("*/chk-*/_metadata"):
        try:
            found.append((checkpoint_number(metadata.parent), metadata.stat().st_mtime, metadata.parent))
        except (FileNotFoundError, ValueError):  # subsumed and deleted meanwhile, or not chk-<int>
            continue
    return [path for _, _, path in sorted(found)]


def latest_checkpoint(checkpoint_dir: Path | str) -> Path | None:
    found = completed_checkpoints(checkpoint_dir)
    return found[-1] if found else None
