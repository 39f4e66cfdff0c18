"""A tiny filesystem for full-disk faults (the `tiny_disk` fixture in tests/conftest.py mounts it)."""

from __future__ import annotations

from pathlib import Path


class TinyDisk:
    """A 64 KiB tmpfs: `fill()` takes every free byte, `free()` gives them back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._filler = path / "filler"

    def fill(self) -> None:
        chunk = b"\0" * 512
        with self._filler.open("ab", buffering=0) as handle:
            while True:
                try:
                    handle.write(chunk)
                except OSError:
                    if len(chunk) == 1:
                        return
                    chunk = chunk[: len(chunk) // 2]

    def free(self) -> None:
        self._filler.unlink(missing_ok=True)
