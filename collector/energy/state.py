"""The energy state file: last index, open windows and open sessions per point (JSON).

Written atomically (temporary file, fsync, rename) so a crash leaves the old or the new state,
never half of one.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

VERSION = 1


def default_path(state_dir: Path, site_id: str) -> Path:
    return state_dir / f"energy-{site_id}.json"


def load_state(path: Path) -> dict[str, Any]:
    """The saved state, or an empty one (first start, or an unreadable file, which is logged)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.error("energy state %s unreadable (%s): starting from the next readings", path, exc)
        return {}
    if not isinstance(data, dict) or data.get("version") != VERSION:
        log.error("energy state %s has an unknown format: starting from the next readings", path)
        return {}
    return data


def save_state(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps({"version": VERSION, **data}, indent=1, sort_keys=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
