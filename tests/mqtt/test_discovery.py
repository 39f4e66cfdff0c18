"""Home Assistant discovery payloads: devices, sensor classes and units, availability."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import jinja2
import pytest

from collector.config import SiteConfig
from collector.meters.profile import Profile
from collector.mqtt.discovery import discovery_messages, former_discovery_topics
from collector.site import load_site
from collector.wire.messages import LimitMessage, LimitReason
from collector.wire.topics import Topics
from tests.support.paths import EXAMPLES

Configs = dict[str, dict[str, Any]]

# What HA needs for each quantity (device_class, state_class, unit): from the HA sensor docs.
EXPECTED = {
    "power": ("power", "measurement", "W"),
    "energy": ("energy", "total_increasing", "Wh"),
    "export_energy": ("energy", "total_increasing", "Wh"),
    "voltage": ("voltage", "measurement", "V"),
    "current": ("current", "measurement", "A"),
    "frequency": ("frequency", "measurement", "Hz"),
    "power_factor": ("power_factor", "measurement", None),
    "current_l1": ("current", "measurement", "A"),
    "voltage_l3": ("voltage", "measurement", "V"),
}


@pytest.fixture(scope="module")
def hotel() -> tuple[SiteConfig, dict[str, Profile]]:
    return load_site(str(EXAMPLES / "hotel-vda.yaml"))


def configs(site: SiteConfig, profiles: dict[str, Profile], charging: bool = False) -> Configs:
    topics = Topics(site.mqtt.topic_prefix, site.site.id)
    pairs = discovery_messages(site, profiles, topics, with_charging=charging)
    assert len({t for t, _ in pairs}) == len(pairs), "two configs on one topic"
    return dict(pairs)


def test_one_device_per_meter_via_the_site(hotel: tuple[SiteConfig, dict[str, Profile]]) -> None:
    site, profiles = hotel
    found = configs(site, profiles)
    devices = {json.dumps(c["device"], sort_keys=True) for c in found.values()}
    by_id = {json.loads(d)["identifiers"][0]: json.loads(d) for d in devices}
    assert set(by_id) == {"irve_hotel-vda", "irve_hotel-vda_main", "irve_hotel-vda_cp1",
                          "irve_hotel-vda_cp2"}  # fmt: skip
    cp1 = by_id["irve_hotel-vda_cp1"]
    assert cp1["name"] == "Borne 1"
    assert (cp1["manufacturer"], cp1["model"]) == (
        profiles["eastron-sdm120"].manufacturer,
        profiles["eastron-sdm120"].model,
    )
    for meter in ("main", "cp1", "cp2"):
        assert by_id[f"irve_hotel-vda_{meter}"]["via_device"] == "irve_hotel-vda"
    collector = found["homeassistant/binary_sensor/hotel-vda/collector/config"]
    assert collector["state_topic"] == "irve/hotel-vda/status"
    assert (collector["payload_on"], collector["payload_off"]) == ("online", "offline")


def test_sensor_classes_units_and_templates(hotel: tuple[SiteConfig, dict[str, Profile]]) -> None:
    site, profiles = hotel
    found = configs(site, profiles)
    main = {t.split("/")[3].removeprefix("main_"): c for t, c in found.items() if "/main_" in t}
    for key, (device_class, state_class, unit) in EXPECTED.items():
        config = main[key]
        assert config["device_class"] == device_class, key
        assert config["state_class"] == state_class, key
        assert config.get("unit_of_measurement") == unit, key
        assert config["state_topic"] == "irve/hotel-vda/main/state"
        assert "value_json" in config["value_template"]
    assert main["power"]["value_template"] == "{{ value_json.power_w }}"
    assert main["energy"]["value_template"] == "{{ value_json.energy_wh }}"
    assert "currents_a" in main["current_l2"]["value_template"]
    assert "[1]" in main["current_l2"]["value_template"]
    # A single-phase SDM120 has no per-phase sensors.
    cp1 = {t.split("/")[3].removeprefix("cp1_") for t in found if "/cp1_" in t}
    assert cp1 == {"power", "energy", "export_energy", "current", "voltage", "frequency",
                   "power_factor"}  # fmt: skip


def test_availability_needs_collector_and_meter(
    hotel: tuple[SiteConfig, dict[str, Profile]],
) -> None:
    site, profiles = hotel
    for topic, config in configs(site, profiles).items():
        if "/collector/" in topic:
            continue
        point = topic.split("/")[3].split("_")[0]
        assert config["availability"] == [
            {"topic": "irve/hotel-vda/status"},
            {"topic": f"irve/hotel-vda/{point}/availability"},
        ]
        assert config["availability_mode"] == "all"
        assert (config["payload_available"], config["payload_not_available"]) == (
            "online",
            "offline",
        )


def test_unique_ids_are_stable_and_unique(hotel: tuple[SiteConfig, dict[str, Profile]]) -> None:
    site, profiles = hotel
    first = configs(site, profiles)
    again = configs(site, profiles)
    ids = [c["unique_id"] for c in first.values()]
    assert len(set(ids)) == len(ids)
    assert ids == [c["unique_id"] for c in again.values()]
    assert first["homeassistant/sensor/hotel-vda/cp1_energy/config"]["unique_id"] == (
        "irve_hotel-vda_cp1_energy"
    )


def test_prefix_and_charging_sensor(tmp_path: Path) -> None:
    text = (EXAMPLES / "hotel-vda.yaml").read_text(encoding="utf-8")
    path = tmp_path / "site.yaml"
    path.write_text(text.replace("  topic_prefix: irve\n",
                                 "  topic_prefix: irve\n  discovery_prefix: ha\n"))  # fmt: skip
    site, profiles = load_site(str(path))
    found = configs(site, profiles, charging=True)
    assert all(t.startswith("ha/") for t in found)
    charging = {t for t in found if t.endswith("_charging/config")}
    assert charging == {"ha/binary_sensor/hotel-vda/cp1_charging/config",
                        "ha/binary_sensor/hotel-vda/cp2_charging/config"}  # fmt: skip
    assert found["ha/binary_sensor/hotel-vda/cp1_charging/config"]["device_class"] == (
        "battery_charging"
    )


def test_limit_and_reason_sensors_under_load_management() -> None:
    """Sockets of a site with load management get their limit and its reason, read from the
    retained `limit` topic; the templates, rendered as Home Assistant renders them (Jinja), give
    the amps, `None` (HA's unknown) for no limit, and the reason among the enum's options."""
    site, profiles = load_site(str(EXAMPLES / "hotel-vda-load.yaml"))
    topics = Topics(site.mqtt.topic_prefix, site.site.id)
    found = dict(discovery_messages(site, profiles, topics, with_limit=True))
    limits = sorted(t for t in found if "_limit" in t)
    assert limits == [f"homeassistant/sensor/{site.site.id}/{p}_{k}/config"
                      for p in ("cp1", "cp2") for k in ("limit", "limit_reason")]  # fmt: skip
    limit = found[limits[0]]
    reason = found[limits[1]]
    assert limit["state_topic"] == reason["state_topic"] == f"irve/{site.site.id}/cp1/limit"
    assert (limit["device_class"], limit["unit_of_measurement"]) == ("current", "A")
    assert reason["device_class"] == "enum" and "unit_of_measurement" not in reason
    assert (
        limit["availability"]
        == found[f"homeassistant/sensor/{site.site.id}/cp1_power/config"]["availability"]
    )
    ts = datetime(2026, 12, 6, 18, 0, tzinfo=UTC)
    jinja = jinja2.Environment()
    for current_a, why, shown in [(16.0, "overload", "16.0"), (0.0, "schedule", "0.0"),
                                  (None, "none", "None"), (6.0, "failsafe", "6.0")]:  # fmt: skip
        payload = json.loads(LimitMessage(ts=ts, current_a=current_a, reason=why).to_json())
        assert jinja.from_string(limit["value_template"]).render(value_json=payload) == shown
        rendered = jinja.from_string(reason["value_template"]).render(value_json=payload)
        assert rendered == why and rendered in reason["options"]
    assert set(reason["options"]) == set(get_args(LimitReason))


def test_no_limit_sensors_without_load_management(
    hotel: tuple[SiteConfig, dict[str, Profile]],
) -> None:
    site, profiles = hotel
    topics = Topics(site.mqtt.topic_prefix, site.site.id)
    assert not any("_limit" in t for t, _ in discovery_messages(site, profiles, topics))
    assert not any("_limit" in t for t in former_discovery_topics(site, profiles, topics, True))
