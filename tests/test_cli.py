"""`irve COMMAND` loads only that command's module: what one command imports is not paid by
the others (the front desk's memory budget, every command's start)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from collector.cli import COMMANDS, asked_command, build_parser, command_name

# Libraries only the collector, the simulator or the notifier need.
HEAVY = ("pymodbus", "xknx", "apprise", "ocpp", "websockets")
PROBE = """
import sys
from collector.cli import main
code = main(sys.argv[1:])
print(code, *sorted(m for m in {heavy} if m in sys.modules))
"""


@pytest.mark.process
@pytest.mark.parametrize("argv", [["desk", "--help"], ["--log-level", "DEBUG", "bill", "--help"]])
def test_the_desk_and_bill_do_not_load_the_collectors_libraries(argv: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip().splitlines()[-1] == "0"  # --help's exit code, none loaded


def test_every_command_is_found_by_its_name_and_help_lists_them_all() -> None:
    names = [command_name(module) for module in COMMANDS]
    assert "demo-history" in names and "desk" in names
    for name in names:
        assert asked_command(["--log-level", "INFO", name, "-c", "site.yaml"]) == name
        with pytest.raises(SystemExit) as exit_:  # its own parser alone knows the command
            build_parser(name).parse_args([name, "--help"])
        assert exit_.value.code == 0
    assert asked_command(["--version"]) is None
    help_text = build_parser().format_help()
    assert all(name in help_text for name in names)
