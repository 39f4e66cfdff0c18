"""The installer's path outside Docker and `make` (docs/deployment.md, "Without Docker: install
with pipx"): a real, non-editable `pip install .` of the repository into a fresh venv (its
dependencies from PyPI or pip's cache), then the installed `irve` run from outside the source
tree: `--version` from the package metadata, `irve check` on every example site file; and the
systemd units of deploy/systemd, checked by `systemd-analyze verify` against that install.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.cli import build_parser
from collector.config import SiteConfig
from collector.settings import ENV_DELIMITER, ENV_PREFIX
from tests.support.schema_paths import key_paths

# A venv with every dependency is minutes of CPU on a loaded 2-core machine (make test builds
# it beside the other workers): more than the suite's 180 s per test.
pytestmark = [pytest.mark.install, pytest.mark.process, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parent.parent
UNITS = REPO / "deploy" / "systemd"
EXAMPLES = sorted((REPO / "config" / "examples").glob("*.yaml"))
# A local version label no release has: `--version` must show what was installed.
VERSION = "0.0.0+installtest"
# What an installer's copy of the repository holds (no venv, caches or build leftovers).
NOT_SHIPPED = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)


@pytest.fixture(scope="module")
def irve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The `irve` of a fresh venv holding `pip install .` of a copy of the repository."""
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "irve-telemetry"
    shutil.copytree(REPO, source, ignore=NOT_SHIPPED)
    pyproject = source / "pyproject.toml"
    text, count = re.subn(r'(?m)^version = ".*"$', f'version = "{VERSION}"', pyproject.read_text())
    assert count == 1, "no `version = ...` line in pyproject.toml"
    pyproject.write_text(text)
    target = tmp / "venv"
    venv.create(target, with_pip=True)
    subprocess.run(
        [target / "bin" / "pip", "install", "--quiet", "--disable-pip-version-check", "."],
        cwd=source,
        check=True,
        timeout=540,
    )
    shutil.rmtree(source)  # nothing may still come from the source tree
    yield target / "bin" / "irve"


def run_installed(irve: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run from an empty folder with a bare environment (no IRVE_ variables, no PYTHONPATH)."""
    result = subprocess.run(
        [str(irve), *args],
        cwd=irve.parent.parent,
        env={"PATH": "/usr/bin:/bin", "HOME": str(irve.parent.parent), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_installed_irve_prints_the_installed_version(irve: Path) -> None:
    assert run_installed(irve, "--version") == f"irve {VERSION}\n"


def test_installed_irve_has_the_tariff_table(irve: Path) -> None:
    # The table is package data: without it in the wheel, `irve tariffs` cannot answer.
    out = run_installed(irve, "tariffs", "--at", "2026-03-01", "--kva", "9", "--option", "base")
    assert "   9 kVA  BASE 0.19266 EUR/kWh [cre-base-csv-2026-02]" in out


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_installed_irve_checks_every_example(irve: Path, example: Path) -> None:
    # The collector's environment file as deploy/systemd ships it.
    env = environment(UNITS / "collect.env.example")
    output = run_installed(irve, "check", "-c", str(example), env=env)
    assert re.match(r"Site [\w-]+: ", output), output
    assert "Meters:" in output and "Tariff:" in output


# systemd units -------------------------------------------------------------------------------


def units() -> list[Path]:
    return sorted(UNITS.glob("*.service"))


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(encoding="utf-8"))
    return parser


def environment(path: Path) -> dict[str, str]:
    """The variables an EnvironmentFile sets (comments and blank lines skipped)."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {name: value for name, value in pairs if not name.startswith("#")}


def test_units_are_shipped_for_collect_and_ingest() -> None:
    commands = {}
    for path in units():
        service = unit(path)["Service"]
        argv = shlex.split(service["ExecStart"])
        assert argv[0] == "/usr/local/bin/irve", path.name
        args = build_parser().parse_args(argv[1:])  # irve's own parser: real options only
        commands[args.command] = service
        assert service["User"] == "irve" and service["NoNewPrivileges"] == "yes"
        env_file = Path(service["EnvironmentFile"])
        assert env_file.parent == Path("/etc/irve")
        assert (UNITS / f"{env_file.name}.example").exists(), f"{path.name}: no {env_file.name}"
        assert service["RestartPreventExitStatus"] == "2"  # a bad site file does not loop
    assert set(commands) == {"collect", "ingest"}
    # The collector's energy state and outbox, in the folder systemd makes for its user.
    assert commands["collect"]["StateDirectory"] == "irve"
    assert commands["collect"]["Environment"] == "IRVE_STATE_DIR=/var/lib/irve"


def test_environment_file_examples_name_real_keys() -> None:
    paths = key_paths(SiteConfig)
    for path in UNITS.glob("*.env.example"):
        for line in path.read_text().splitlines():
            name = line.lstrip("#").split("=", 1)[0]
            if "=" not in line or not name.startswith(ENV_PREFIX):
                continue
            key = name.removeprefix(ENV_PREFIX).lower().replace(ENV_DELIMITER, ".")
            assert key in paths, f"{path.name}: {name} is no key"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="Debian package systemd")
def test_units_pass_systemd_analyze_verify(irve: Path, tmp_path: Path) -> None:
    """The units as shipped, but for the program's place: the fresh install's `irve`
    (verify checks that the command exists and is executable)."""
    checked = []
    for path in units():
        text = path.read_text(encoding="utf-8").replace("/usr/local/bin/irve", str(irve))
        (tmp_path / path.name).write_text(text, encoding="utf-8")
        checked.append(str(tmp_path / path.name))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *checked],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
    )
    # Unknown keys and bad values are only warnings (exit 0): no output at all is the bar.
    assert (result.returncode, result.stdout + result.stderr) == (0, ""), result.stderr


def test_a_typo_in_a_unit_is_caught(tmp_path: Path) -> None:
    """The bar above is not too low: systemd-analyze reports an unknown key."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("Debian package systemd")
    bad = tmp_path / "bad.service"
    bad.write_text(f"[Service]\nExecStart={sys.executable} -V\nUsr=irve\n")
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(bad)], capture_output=True, text=True
    )
    assert "Unknown key 'Usr'" in result.stderr
