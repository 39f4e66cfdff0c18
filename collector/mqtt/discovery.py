"""Home Assistant MQTT discovery: (topic, payload) pairs, pure.

One HA device for the collector (the site, with a connectivity sensor on the status topic) and
one per meter (`via_device` the site). Each meter gets a sensor per quantity its profile
measures, reading the retained JSON `state` topic through a `value_template`; an entity is
available only when both the collector (`status`) and the meter (`availability`) are online
(availability_mode all). Sockets also get a `charging` binary sensor when sessions are
tracked, and, under load management or charging schedules, their current limit and its reason,
read from the retained `limit` topic. Discovery configs are retained and re-sent on every
connection and whenever Home Assistant announces `online` on `<discovery_prefix>/status`.

Format: https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery (per-entity configs
on `<prefix>/<component>/<node_id>/<object_id>/config`, which every HA version since 2021
understands). The node id is the site id, so that the broker's ACL confines each site's
collector to its own configs (`pattern write homeassistant/+/%u/#`); the object id is
`<meter id>_<quantity>` (`collector` for the site's connectivity sensor).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, get_args

from collector import __version__
from collector.config import MeterSettings, SiteConfig
from collector.meters.profile import Profile
from collector.meters.reading import PHASES
from collector.wire.messages import LimitReason
from collector.wire.topics import Topics

ORIGIN = {"name": "irve-telemetry", "sw_version": __version__}


@dataclass(frozen=True)
class Quantity:
    key: str  # object id, unique per meter
    name: str
    template: str  # Jinja, evaluated by HA on the state JSON
    device_class: str
    unit: str | None
    state_class: str
    precision: int
    needs: tuple[str, ...]  # present when the profile has any of these values


def _core(key: str) -> str:
    # The four core keys are always in the state JSON (null when unknown -> HA "unknown").
    return f"{{{{ value_json.{key} }}}}"


def _optional(key: str) -> str:
    return f"{{{{ value_json.{key} | default(None) }}}}"


def _phase(key: str, index: int) -> str:
    return f"{{{{ (value_json.{key} | default([None, None, None]))[{index}] }}}}"


QUANTITIES: tuple[Quantity, ...] = (
    Quantity(
        "power", "Power", _core("power_w"), "power", "W", "measurement", 0,
        ("power_w", "power_l1_w", "power_l2_w", "power_l3_w"),
    ),
    Quantity(
        "energy", "Energy", _core("energy_wh"), "energy", "Wh", "total_increasing", 0,
        ("energy_wh",),
    ),
    Quantity(
        "export_energy", "Export energy", _optional("export_energy_wh"), "energy", "Wh",
        "total_increasing", 0, ("export_energy_wh",),
    ),
    Quantity(
        "current", "Current", _core("current_a"), "current", "A", "measurement", 2,
        ("current_a", "current_l1_a", "current_l2_a", "current_l3_a"),
    ),
    Quantity(
        "voltage", "Voltage", _core("voltage_v"), "voltage", "V", "measurement", 1,
        ("voltage_v", "voltage_l1_v", "voltage_l2_v", "voltage_l3_v"),
    ),
    Quantity(
        "frequency", "Frequency", _optional("frequency_hz"), "frequency", "Hz", "measurement", 2,
        ("frequency_hz",),
    ),
    Quantity(
        "power_factor", "Power factor", _optional("power_factor"), "power_factor", None,
        "measurement", 2, ("power_factor",),
    ),
    *(
        Quantity(
            f"current_{p}", f"Current {p.upper()}", _phase("currents_a", i), "current", "A",
            "measurement", 2, (f"current_{p}_a",),
        )
        for i, p in enumerate(PHASES)
    ),
    *(
        Quantity(
            f"voltage_{p}", f"Voltage {p.upper()}", _phase("voltages_v", i), "voltage", "V",
            "measurement", 1, (f"voltage_{p}_v",),
        )
        for i, p in enumerate(PHASES)
    ),
)  # fmt: skip

CHARGING_TEMPLATE = (
    "{% if value_json.charging is defined and value_json.charging is not none %}"
    "{{ 'ON' if value_json.charging else 'OFF' }}{% else %}None{% endif %}"
)


def site_device_id(site_id: str) -> str:
    return f"irve_{site_id}"


def meter_device_id(site_id: str, meter_id: str) -> str:
    return f"irve_{site_id}_{meter_id}"


def quantities_of(profile: Profile) -> list[Quantity]:
    return [q for q in QUANTITIES if any(name in profile.values for name in q.needs)]


def discovery_messages(
    site: SiteConfig,
    profiles: dict[str, Profile],
    topics: Topics,
    with_charging: bool = False,
    with_limit: bool = False,
) -> list[tuple[str, dict[str, Any]]]:
    """Every discovery config of the site; `with_charging` adds a charging sensor per socket,
    `with_limit` its current limit and the limit's reason."""
    prefix = site.mqtt.discovery_prefix
    site_id = site.site.id
    status = topics.site_topic("status")
    node = site_device_id(site_id)
    site_device = {
        "identifiers": [node],
        "name": site.site.name or site_id,
        "manufacturer": "irve-telemetry",
        "model": "EV charging telemetry collector",
        "sw_version": __version__,
    }
    messages: list[tuple[str, dict[str, Any]]] = [
        (
            f"{prefix}/binary_sensor/{site_id}/collector/config",
            {
                "name": "Collector",
                "unique_id": f"{node}_collector",
                "state_topic": status,
                "payload_on": "online",
                "payload_off": "offline",
                "device_class": "connectivity",
                "entity_category": "diagnostic",
                "qos": 1,
                "device": site_device,
                "origin": ORIGIN,
            },
        )
    ]
    for meter in site.meters:
        messages += [
            (f"{prefix}/{component}/{site_id}/{meter.id}_{key}/config", config)
            for component, key, config in _meter_entities(
                meter, profiles[meter.profile], topics, with_charging, with_limit
            )
        ]
    return messages


def former_discovery_topics(
    site: SiteConfig, profiles: dict[str, Profile], topics: Topics, with_charging: bool = False
) -> list[str]:
    """The config topics of the layout before the site id became the node id
    (`<prefix>/<component>/irve_<site>_<meter>/<quantity>/config`): cleared once, so that Home
    Assistant keeps no stale copy of an entity. (The limit sensors came after that layout.)"""
    prefix = site.mqtt.discovery_prefix
    node = site_device_id(site.site.id)
    found = [f"{prefix}/binary_sensor/{node}/collector/config"]
    for meter in site.meters:
        old_node = meter_device_id(site.site.id, meter.id)
        found += [
            f"{prefix}/{component}/{old_node}/{key}/config"
            for component, key, _ in _meter_entities(
                meter, profiles[meter.profile], topics, with_charging, with_limit=False
            )
        ]
    return found


def _meter_entities(
    meter: MeterSettings, profile: Profile, topics: Topics, with_charging: bool, with_limit: bool
) -> list[tuple[str, str, dict[str, Any]]]:
    """(component, quantity key, config) of each entity of a meter."""
    node = meter_device_id(topics.site, meter.id)
    device = {
        "identifiers": [node],
        "name": meter.socket.label if meter.socket else f"Main meter ({meter.id})",
        "manufacturer": profile.manufacturer,
        "model": profile.model,
        "via_device": site_device_id(topics.site),
    }
    common: dict[str, Any] = {
        "state_topic": topics.point(meter.id, "state"),
        "availability": [
            {"topic": topics.site_topic("status")},
            {"topic": topics.point(meter.id, "availability")},
        ],
        "availability_mode": "all",
        "payload_available": "online",
        "payload_not_available": "offline",
        "qos": 1,
        "device": device,
        "origin": ORIGIN,
    }
    entities: list[tuple[str, str, dict[str, Any]]] = []
    for q in quantities_of(profile):
        config = {
            "name": q.name,
            "unique_id": f"{node}_{q.key}",
            "value_template": q.template,
            "device_class": q.device_class,
            "state_class": q.state_class,
            "suggested_display_precision": q.precision,
            **common,
        }
        if q.unit is not None:
            config["unit_of_measurement"] = q.unit
        entities.append(("sensor", q.key, config))
    if with_charging and meter.role == "socket":
        config = {
            "name": "Charging",
            "unique_id": f"{node}_charging",
            "value_template": CHARGING_TEMPLATE,
            "device_class": "battery_charging",
            "payload_on": "ON",
            "payload_off": "OFF",
            **common,
        }
        entities.append(("binary_sensor", "charging", config))
    if with_limit and meter.role == "socket":
        on_limit = {**common, "state_topic": topics.point(meter.id, "limit")}
        limit = {
            "name": "Current limit",
            "unique_id": f"{node}_limit",
            # null: no limit (HA shows unknown); 0: paused.
            "value_template": "{{ value_json.current_a }}",
            "device_class": "current",
            "state_class": "measurement",
            "unit_of_measurement": "A",
            "suggested_display_precision": 1,
            **on_limit,
        }
        reason = {
            "name": "Limit reason",
            "unique_id": f"{node}_limit_reason",
            "value_template": "{{ value_json.reason }}",
            "device_class": "enum",
            "options": list(get_args(LimitReason)),
            **on_limit,
        }
        entities += [("sensor", "limit", limit), ("sensor", "limit_reason", reason)]
    return entities
