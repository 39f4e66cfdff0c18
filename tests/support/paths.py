"""Where the repository and its example site files are, for tests and benches alike."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "config" / "examples"
