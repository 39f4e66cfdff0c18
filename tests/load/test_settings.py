"""The site file's load_management, schedules and knx sections: valid forms and clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.config import SiteConfig
from collector.settings import ConfigError, load
from tests.support.paths import EXAMPLES


def hotel(**sections: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((EXAMPLES / "hotel-vda.yaml").read_text())
    data.update(sections)
    return data


def site(tmp_path: Path, data: dict[str, Any]) -> SiteConfig:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    return load(SiteConfig, path)


def problems(tmp_path: Path, data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        site(tmp_path, data)
    return caught.value.problems


def test_spec_example_is_valid_with_defaults(tmp_path: Path) -> None:
    config = site(
        tmp_path,
        hotel(
            load_management={"enabled": True, "margin_w": 1000, "priority": ["cp1", "cp2"]},
            schedules=[
                {"sockets": ["cp1", "cp2"], "allowed": ["22:00-07:00"]},
                {"sockets": ["cp2"], "allowed": "offpeak", "days": ["sat", "sun"]},
            ],
            knx={"gateway": "192.168.1.60:3671", "switches": {"cp1": "1/1/1", "cp2": "1/1/2"}},
        ),
    )
    assert config.load_management is not None
    lm = config.load_management
    assert (lm.min_current_a, lm.failsafe_a, lm.hysteresis_w) == (6, 6, 500)
    assert (lm.raise_after_s, lm.min_change_interval_s, lm.failsafe_after_polls) == (60, 30, 3)
    assert config.schedules[0].days == ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    assert config.schedules[1].allowed == "offpeak"
    assert config.knx is not None
    assert config.knx.host_port == ("192.168.1.60", 3671)
    assert config.knx.on_stop == "keep"


def test_sections_are_optional(tmp_path: Path) -> None:
    config = site(tmp_path, hotel())
    assert (config.load_management, config.schedules, config.knx) == (None, [], None)


def test_routing_needs_no_gateway(tmp_path: Path) -> None:
    config = site(tmp_path, hotel(knx={"routing": True, "switches": {"cp1": "1/1/1"}}))
    assert config.knx is not None
    assert config.knx.host_port == ("224.0.23.12", 3671)


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        (
            {"load_management": {"priority": ["cp1", "main"]}},
            "load_management.priority[1]: no meter with role socket has id 'main'",
        ),
        (
            {"load_management": {"priority": ["cp1", "cp1"]}},
            "load_management.priority: 'cp1' is listed twice",
        ),
        (
            {"load_management": {"min_current_a": 5}},
            "load_management.min_current_a: Input should be greater than or equal to 6",
        ),
        (
            {"load_management": {"failsafe_current_a": 3}},
            "load_management.failsafe_current_a: 3 A is below min_current_a (6 A): a charger cannot deliver it (0 pauses)",
        ),
        ({"load_management": {"margin": 3}}, "load_management.margin: unknown key"),
        (
            {"schedules": [{"sockets": ["cp3"], "allowed": ["22:00-07:00"]}]},
            "schedules[0].sockets[0]: no meter with role socket has id 'cp3'",
        ),
        ({"schedules": [{"sockets": ["cp1"], "allowed": ["22h-07h"]}]}, "schedules[0].allowed"),
        (
            {"schedules": [{"sockets": ["cp1"], "allowed": ["25:00-07:00"]}]},
            "schedules[0].allowed[0]: '25:00-07:00': not a time of day",
        ),
        (
            {"schedules": [{"sockets": ["cp1"], "allowed": ["22:00-22:00"]}]},
            "schedules[0].allowed[0]: '22:00-22:00': empty range",
        ),
        (
            {"schedules": [{"sockets": ["cp1"], "allowed": ["22:00-07:00"], "days": ["monday"]}]},
            "schedules[0].days[0]",
        ),
        ({"schedules": [{"sockets": ["cp1"], "allowed": []}]}, "schedules[0].allowed"),
        (
            {"knx": {"switches": {"cp1": "1/1/1"}}},
            "knx.gateway: required for tunnelling (HOST:PORT), or set routing: true",
        ),
        (
            {"knx": {"gateway": "192.168.1.60", "switches": {"cp1": "1/1/1"}}},
            "knx.gateway: '192.168.1.60': expected HOST:PORT (192.168.1.60:3671)",
        ),
        (
            {"knx": {"gateway": "h:3671", "switches": {"cp1": "1/8/1"}}},
            "knx.switches.cp1: '1/8/1': out of range (main 0..31, middle 0..7, sub 0..255)",
        ),
        (
            {"knx": {"gateway": "h:3671", "switches": {"cp1": "on"}}},
            "knx.switches.cp1: 'on': expected a KNX group address such as 1/1/1",
        ),
        (
            {"knx": {"gateway": "h:3671", "switches": {"cp1": "0/0/0"}}},
            "knx.switches.cp1: '0/0/0': 0/0/0 is the broadcast address",
        ),
        (
            {"knx": {"gateway": "h:3671", "switches": {"main": "1/1/1"}}},
            "knx.switches.main: no meter with role socket has id 'main'",
        ),
    ],
)
def test_errors_name_the_path(tmp_path: Path, sections: dict[str, Any], expected: str) -> None:
    lines = problems(tmp_path, hotel(**sections))
    assert any(line.startswith(expected) for line in lines), lines


def test_offpeak_needs_hc_ranges(tmp_path: Path) -> None:
    data = hotel(schedules=[{"sockets": ["cp1"], "allowed": "offpeak"}])
    data["tariff"] = {"option": "base", "prices": [{"since": "2026-01-01", "base": 0.2}]}
    assert problems(tmp_path, data) == [
        "schedules[0].allowed: offpeak follows the tariff's HC ranges, but tariff.option is 'base' (not hphc or tempo)"
    ]


def test_load_management_needs_a_main_meter(tmp_path: Path) -> None:
    data = hotel(load_management={"margin_w": 1000})
    data["meters"] = [m for m in data["meters"] if m.get("role") != "main"]
    (problem,) = problems(tmp_path, data)
    assert problem.startswith("load_management: needs a meter with role main")
    data["load_management"] = {"enabled": False}
    data["schedules"] = [{"sockets": ["cp1"], "allowed": ["22:00-07:00"]}]
    assert site(tmp_path, data).load_management is not None
