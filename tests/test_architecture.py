"""The pure core stays pure: read with `ast`, its modules import no network, thread, process or
file-system module, and no module of the project that does I/O; `wire` imports nothing but
pydantic and the standard library."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "collector"

PURE = [
    "wire/__init__.py",
    "wire/kinds.py",
    "wire/lines.py",
    "wire/messages.py",
    "wire/times.py",
    "wire/topics.py",
    "pipeline.py",
    "badges.py",
    "language.py",
    "energy/__init__.py",
    "energy/intervals.py",
    "energy/processor.py",
    "energy/sessions.py",
    "energy/tariff.py",
    "alerts/processor.py",
    "alerts/rules.py",
    "alerts/shed.py",
    "alerts/text.py",
    "billing/statement.py",
    "ingest/checks.py",
    "ingest/payloads.py",
    "meters/reading.py",
    "meters/registers.py",
    "mqtt/outbox.py",
    "ocpp/core.py",
    "ocpp/events.py",
    "ocpp/bridge.py",
    "load/allocate.py",
    "load/controller.py",
    "load/schedule.py",
    "load/settings.py",
    "simulator/profiles.py",
    "store/retention.py",
]
FORBIDDEN = {
    "paho", "pymodbus", "apprise", "influxdb_client", "urllib", "websockets", "socket",
    "threading", "subprocess", "asyncio", "os", "shutil", "tempfile", "io", "time", "serial",
}  # fmt: skip
FILE_CALLS = {"open", "read_text", "write_text", "read_bytes", "write_bytes", "mkdir", "unlink"}
# The project's modules a pure module may use besides the pure ones: the site file's models.
ALLOWED_PROJECT = {"collector.config"}


def module_name(relative: str) -> str:
    return "collector." + relative.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


PURE_MODULES = {module_name(p) for p in PURE}


def runtime_imports(tree: ast.Module, package: str) -> list[str]:
    """Every module imported outside `if TYPE_CHECKING:` blocks."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            if base == "collector" or (base and base + "." + node.names[0].name in PURE_MODULES):
                found.extend(f"{base}.{alias.name}" for alias in node.names)
            else:
                found.append(base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


@pytest.mark.parametrize("relative", PURE)
def test_pure_modules_do_no_io(relative: str) -> None:
    path = ROOT / relative
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = module_name(relative)
    package = name if relative.endswith("__init__.py") else name.rpartition(".")[0]
    for imported in runtime_imports(tree, package):
        root = imported.split(".")[0]
        assert root not in FORBIDDEN, f"{relative} imports {imported}"
        if root == "collector" and imported != "collector.__future__":
            assert imported in PURE_MODULES | ALLOWED_PROJECT or any(
                imported.startswith(m + ".") for m in PURE_MODULES
            ), f"{relative} imports {imported}, which does I/O"
        if relative.startswith("wire/"):
            allowed = root in sys.stdlib_module_names or root in ("pydantic", "__future__")
            assert allowed or imported.startswith("collector.wire"), f"{relative}: {imported}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            assert called not in FILE_CALLS, f"{relative}:{node.lineno} calls {called}()"


def test_the_list_of_pure_modules_names_real_files() -> None:
    assert all((ROOT / p).is_file() for p in PURE)
