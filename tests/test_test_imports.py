"""Test modules share helpers only through tests/support: a test module never imports another
test module (nor conftest), so moving, renaming or deleting one cannot break another, and
running one file collects only that file's tests. Checked with `ast` over tests/ and bench/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHECKED = sorted([*(REPO / "tests").rglob("*.py"), *(REPO / "bench").rglob("*.py")])


def _package(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])


def _shared(module: str) -> bool:
    return module == "tests.support" or module.startswith("tests.support.")


def forbidden_imports(source: str, package: str) -> list[str]:
    """The test modules other than tests/support that `source` imports (relative imports
    resolved against `package`), anywhere in the file."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            # `from tests import x` imports the module tests.x.
            modules = [f"{base}.{a.name}" for a in node.names] if base == "tests" else [base]
        else:
            continue
        found += [m for m in modules if (m == "tests" or m.startswith("tests.")) and not _shared(m)]
    return found


@pytest.mark.parametrize("path", CHECKED, ids=lambda p: str(p.relative_to(REPO)))
def test_only_support_is_imported_from_tests(path: Path) -> None:
    found = forbidden_imports(path.read_text(encoding="utf-8"), _package(path))
    assert not found, f"{path.relative_to(REPO)} imports {found}: move the helper to tests/support/"


@pytest.mark.parametrize(
    ("source", "package", "expected"),
    [
        (
            "from tests.ingest.test_service import rows",
            "tests.billing",
            ["tests.ingest.test_service"],
        ),
        ("from tests.conftest import EXAMPLES", "tests.load", ["tests.conftest"]),
        ("import tests.test_docs", "tests", ["tests.test_docs"]),
        ("from tests import test_docs, support", "bench", ["tests.test_docs"]),
        ("from .test_tls import USERS", "tests.mqtt", ["tests.mqtt.test_tls"]),
        ("from ..test_collect_e2e import Recorder", "tests.mqtt", ["tests.test_collect_e2e"]),
        ("def f():\n    from tests.test_config import irve\n", "tests", ["tests.test_config"]),
        ("from tests.support.influx_db import rows\nfrom tests import support", "tests", []),
        ("from . import servers", "tests.support", []),
        ("from collector.tests import x", "tests", []),
    ],
)
def test_the_check_sees_every_form_of_import(
    source: str, package: str, expected: list[str]
) -> None:
    assert forbidden_imports(source, package) == expected
