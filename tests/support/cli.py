"""`irve` as an installer runs it: a subprocess with a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys


def irve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`irve ARGS` in a subprocess, as an installer runs it (no traceback may escape)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("IRVE_")}
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        env=environ | (env or {}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
