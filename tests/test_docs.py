"""The user docs cannot drift from the code: keys, snippets, payloads, commands and texts.

- every key of the site file models is in docs/configuration.md;
- every YAML snippet of the docs loads as a site file (a fragment on top of the reference
  example), and the example site files pass `irve check`'s validation;
- every JSON payload example validates with its message model and uses only its keys; the
  Home Assistant discovery example is what the collector publishes;
- every payload example (docs/mqtt.md has one of each) shows its model's required keys, and only keys and the
  decimals of messages the collector really publishes (simulator, collector app, mosquitto);
- how sessions are stored is what docs/energy-and-billing.md says;
- every `IRVE_A__B` variable the docs name is a real key;
- the README's command table lists every `irve` subcommand;
- the alert sentences in docs/alerts.md are the ones the collector writes.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.alerts.text import AlertState, describe
from collector.cli import build_parser
from collector.collect import Collector
from collector.config import SiteConfig
from collector.meters.profile import load_profiles
from collector.mqtt.client import MqttLink
from collector.mqtt.discovery import discovery_messages
from collector.settings import ENV_DELIMITER, ENV_PREFIX, load
from collector.simulator.server import SimulatedSite
from collector.site import load_site
from collector.wire import lines
from collector.wire import messages as schema
from collector.wire.topics import Topics
from tests.support import servers
from tests.support.alert_helpers import Subscriber, run_collector, until
from tests.support.schema_paths import key_paths
from tests.support.sim_helpers import main_meter, tcp_bus, write_site

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
OWN = [ROOT / "README.md", *(DOCS / f"{n}.md" for n in ("configuration", "mqtt", "alerts"))]
EXAMPLE = ROOT / "config" / "examples" / "hotel-vda.yaml"

FENCE = re.compile(
    r"^(?:<!-- (?P<tag>[^>]*) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)^```", re.M | re.S
)


def blocks(path: Path, lang: str) -> list[tuple[str | None, str]]:
    """(marker comment or None, body) of every fenced block in `lang`."""
    text = path.read_text(encoding="utf-8")
    return [(m["tag"], m["body"]) for m in FENCE.finditer(text) if m["lang"] == lang]


@pytest.fixture(autouse=True)
def _no_irve_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


# Site file keys ------------------------------------------------------------------------------


def test_every_site_file_key_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    missing = sorted(p for p in key_paths(SiteConfig) if f"`{p}`" not in text)
    assert not missing, f"keys missing from docs/configuration.md: {missing}"


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        old = merged.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            value = _merge(old, value)
        merged[key] = value
    return merged


def yaml_snippets() -> list[tuple[str, str]]:
    return [(f"{p.name}#{i}", body) for p in OWN for i, (_, body) in enumerate(blocks(p, "yaml"))]


@pytest.mark.parametrize(("where", "body"), yaml_snippets(), ids=lambda v: str(v)[:40])
def test_yaml_snippet_is_a_valid_site_file(where: str, body: str, tmp_path: Path) -> None:
    data = yaml.safe_load(body)
    assert isinstance(data, dict), where
    if "site" not in data:  # a fragment: on top of the reference example
        data = _merge(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8")), data)
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    load_site(str(path))


@pytest.mark.parametrize("path", sorted((ROOT / "config" / "examples").glob("*.yaml")))
def test_example_site_files_are_valid(path: Path) -> None:
    load_site(str(path))


# Payloads ------------------------------------------------------------------------------------


def json_examples() -> list[tuple[str, str | None, str]]:
    return [
        (f"{p.name}#{i}", tag, body) for p in OWN for i, (tag, body) in enumerate(blocks(p, "json"))
    ]


@pytest.mark.parametrize(("where", "tag", "body"), json_examples(), ids=lambda v: str(v)[:40])
def test_json_example_matches_its_model(where: str, tag: str | None, body: str) -> None:
    assert tag is not None, f"{where}: say what the example is (<!-- model: Name -->)"
    kind, _, name = tag.partition(":")
    data = json.loads(body)
    if kind == "discovery":
        _check_discovery(name.strip(), data)
        return
    assert kind == "model", where
    model = getattr(schema, name.strip())
    model.model_validate(data)
    unknown = set(data) - set(model.model_fields)
    assert not unknown, f"{where}: keys the model does not have: {unknown}"


def _check_discovery(topic: str, documented: dict[str, Any]) -> None:
    site = load(SiteConfig, EXAMPLE)
    topics = Topics(site.mqtt.topic_prefix, site.site.id)
    configs = dict(discovery_messages(site, load_profiles(), topics, with_charging=True))
    actual = configs[topic]
    # The version moves with every release; the rest must be what Home Assistant receives.
    assert {k: v for k, v in documented.items() if k != "origin"} == {
        k: v for k, v in actual.items() if k != "origin"
    }
    assert documented["origin"]["name"] == actual["origin"]["name"]


# Environment variables -----------------------------------------------------------------------


def test_documented_environment_variables_are_real_keys() -> None:
    paths = key_paths(SiteConfig)
    secret_files = {
        "mqtt.password",
        "influx.token",
        "influx.password",
        "notify.urls",
        "chargers[].password",
    }
    names: set[str] = set()
    for page in OWN:
        names |= set(re.findall(r"\bIRVE_[A-Z0-9_]*[A-Z0-9]", page.read_text(encoding="utf-8")))
    checked = 0
    for name in sorted(names):
        if ENV_DELIMITER not in name:
            continue  # IRVE_LOG_LEVEL and the Docker stack's own variables (.env)
        # A list item (IRVE_METERS__1__UNIT) names the key of every item (meters[].unit).
        key = re.sub(r"__\d+(?=__)", "[]", name.removeprefix(ENV_PREFIX))
        key = key.lower().replace(ENV_DELIMITER, ".")
        if key.endswith("_file") and key not in paths:
            key = key.removesuffix("_file")
            assert key in secret_files, f"{name}: _FILE only works for secrets"
        assert key in paths, f"{name}: no key {key}"
        checked += 1
    assert checked >= 10


# Commands and texts --------------------------------------------------------------------------


def test_readme_lists_every_command() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert sub.choices is not None
    missing = [name for name in sub.choices if f"| `irve {name}" not in readme]
    assert not missing, f"commands missing from the README's table: {missing}"


ALERT_CASES: list[tuple[schema.AlertName, str, str, float, float, float]] = [
    ("socket_overcurrent", "Borne 1", "Borne 1", 35.2, 30.1, 32.0),
    ("site_overload", "général", "main", 38400.0, 33900.0, 36000.0),
    ("site_overload_warning", "général", "main", 33100.0, 30500.0, 32400.0),
    ("meter_offline", "Borne 2", "Borne 2", 3.0, 42.0, 3.0),
]


@pytest.mark.parametrize("case", ALERT_CASES, ids=lambda c: c[0])
def test_alert_texts_in_the_docs_are_the_collectors(
    case: tuple[schema.AlertName, str, str, float, float, float],
) -> None:
    alert, label_fr, label_en, firing, resolved, limit = case
    text = (DOCS / "alerts.md").read_text(encoding="utf-8")
    states: list[tuple[AlertState, float]] = [("firing", firing), ("resolved", resolved)]
    for state, value in states:
        row = (
            f"| `{alert}` | {state} | {describe(alert, state, label_fr, value, limit, 'fr')} "
            f"| {describe(alert, state, label_en, value, limit, 'en')} |"
        )
        assert row in text


# Links ---------------------------------------------------------------------------------------

LINK = re.compile(r"\]\((?!https?://)(?P<path>[^)#\s]*)(?:#(?P<anchor>[^)\s]+))?\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))  # not the comments in code
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


def test_links_point_at_pages_and_headings() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for page in OWN:
        for match in LINK.finditer(page.read_text(encoding="utf-8")):
            target = (page.parent / match["path"]).resolve() if match["path"] else page
            where = f"{page.name}: {match[0]}"
            if not target.exists():
                # Pages other people write: at least listed in the README's docs index.
                relative = target.relative_to(ROOT).as_posix()
                assert f"]({relative})" in readme, f"{where}: no such page"
                continue
            if match["anchor"]:
                assert match["anchor"] in anchors(target), f"{where}: no such heading"


# Payloads against real output ----------------------------------------------------------------
#
# The payload examples of the docs are compared with messages the collector really publishes: the
# simulator (Modbus TCP) -> the real collector app -> real mosquitto -> a subscriber, on the
# hotel's tariff, with a charge on cp1 (session start and end, energy windows, an index jump),
# an overcurrent on cp2 and an overload of the site (alerts and the shed request).

REAL_KINDS = {
    "StateMessage": ("cp1/state", "main/state"),
    "EnergyMessage": ("cp1/energy", "cp2/energy", "main/energy"),
    "SessionMessage": ("cp1/session",),
    "EventMessage": ("cp1/event",),
    "AlertMessage": ("alert",),
    "ShedMessage": ("shed",),
}


def _real_site(tmp_path: Path, broker_port: int) -> tuple[SiteConfig, dict[str, Any]]:
    hotel = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    sockets = [m for m in hotel["meters"] if m["role"] == "socket"]
    path = write_site(
        tmp_path,
        buses=[tcp_bus("board")],
        meters=[main_meter("main", "board", 10), *({**m, "bus": "board"} for m in sockets)],
        tariff=hotel["tariff"],
        mqtt={"host": "127.0.0.1", "port": broker_port, "discovery": False},
        poll_interval_s=0.2,
        state_dir=str(tmp_path / "state"),
        energy={"window_s": 10},
        sessions={"start_after_s": 2, "end_after_s": 1},
        alerts={"overcurrent_for_s": 0, "overload_for_s": 0, "resolve_for_s": 0},
    )
    return load_site(str(path))


@pytest.fixture(scope="module")
def real_messages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Real payloads by model name (see REAL_KINDS)."""
    tmp_path = tmp_path_factory.mktemp("real")
    broker = servers.mosquitto(tmp_path / "mosquitto")
    broker.start()
    site, profiles = _real_site(tmp_path, broker.port)
    sub = Subscriber(broker.port)

    async def scenario() -> None:
        async with SimulatedSite(site, profiles, seed=3) as sim:
            main, cp1, cp2 = sim.meter("main"), sim.meter("cp1"), sim.meter("cp2")
            main.force_power(20_000)
            cp1.force_current(0.0)
            cp2.force_current(0.0)

            async def body(app: Collector[MqttLink]) -> None:
                cp1.force_current(39.5)
                await until(lambda: sub.payloads("cp1/session") != [], "session start", 10)
                cp2.force_current(35.2)
                main.force_power(40_000)
                await until(lambda: len(sub.alerts()) >= 2, "alerts firing")
                await until(lambda: sub.payloads("shed")[-1]["active"], "shed request")
                cp2.force_current(0.0)
                main.force_power(20_000)
                # The meter's index leaps (a meter swapped for one with a higher index).
                cp1.state.phases[0].import_wh += 5000
                sim.model.refresh()
                await until(lambda: sub.payloads("cp1/event") != [], "index event")
                await until(lambda: len(sub.payloads("cp1/energy")) >= 2, "energy windows", 25)
                cp1.force_current(0.0)
                await until(lambda: len(sub.payloads("cp1/session")) >= 2, "session end")
                await until(lambda: not sub.payloads("shed")[-1]["active"], "shed lifted")

            await run_collector(site, profiles, body)

    try:
        asyncio.run(scenario())
    finally:
        sub.close()
        broker.stop()
    return {
        name: [p for kind in kinds for p in sub.payloads(kind)]
        for name, kinds in REAL_KINDS.items()
    }


def decimals(value: float) -> int:
    """Digits after the point as the number is written in JSON (`20.0` has none)."""
    exponent = Decimal(repr(value)).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def numbers(data: Any, path: str = "") -> dict[str, float]:
    """Every number of a payload by its path (`periods.*.cost_eur`, `currents_a[]`): which
    tariff periods a session crosses depends on the hour it runs."""
    found: dict[str, float] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            key = "*" if path == "periods" else key
            found |= numbers(value, f"{path}.{key}" if path else key)
    elif isinstance(data, list):
        for value in data:
            found |= numbers(value, f"{path}[]")
    elif isinstance(data, float | int) and not isinstance(data, bool):
        found[path] = float(data)
    return found


def _variant(model: str, payload: dict[str, Any]) -> Any:
    """What makes two payloads of a model comparable: a socket's reading and the main meter's
    have different keys, a session start and end different totals, events different details."""
    return {
        "StateMessage": payload.get("role"),
        "SessionMessage": payload.get("event"),
        "EventMessage": payload.get("event"),
    }.get(model)


def model_examples(name: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{page.name}#{i}", json.loads(body))
        for page in OWN
        for i, (tag, body) in enumerate(blocks(page, "json"))
        if tag == f"model: {name}"
    ]


@pytest.mark.parametrize("model", sorted(REAL_KINDS))
def test_mqtt_examples_have_the_keys_and_decimals_of_real_messages(
    model: str, real_messages: dict[str, list[dict[str, Any]]]
) -> None:
    examples = model_examples(model)
    assert any(where.startswith("mqtt.md") for where, _ in examples), f"mqtt.md: no {model}"
    fields = getattr(schema, model).model_fields
    required = {name for name, field in fields.items() if field.is_required()}
    for where, example in examples:
        real = [p for p in real_messages[model] if _variant(model, p) == _variant(model, example)]
        assert real, f"{where}: no real {model} like it was published"
        sample = json.dumps(real[-1], separators=(",", ":"))
        missing = required - set(example)
        assert not missing, f"{where}: required keys not shown: {missing}; real: {sample}"
        published = {path for p in real for path in numbers(p)} | {k for p in real for k in p}
        for path, value in numbers(example).items():
            assert path in published, f"{where}: {path} is never published; real: {sample}"
            # A value the collector rounds to a fixed number of decimals (a cost is energy x
            # price to 9 decimals) has them nearly always (a trailing zero or two may drop):
            # the example shows as many. Values read from meters keep the meter's precision,
            # which varies from value to value.
            seen = [decimals(n[path]) for n in map(numbers, real) if n.get(path)]
            most = max(seen, default=0)
            if most >= 6 and sum(d >= most - 2 for d in seen) >= 0.9 * len(seen):
                assert most - 2 <= decimals(value) <= most, (
                    f"{where}: {path}={value!r}: the collector writes {most} decimals; "
                    f"real: {sample}"
                )


def test_session_points_are_as_energy_and_billing_says() -> None:
    """One point per session when the badge does not change, two when it came during it."""
    text = " ".join((DOCS / "energy-and-billing.md").read_text(encoding="utf-8").split())
    assert "the end's final totals overwrite the start's" in text
    assert "the end (tagged with the badge) are two points in two series" in text
    start: dict[str, Any] = {
        "event": "start",
        "session_id": "cp1-20261123T173924Z",
        "ts": "2026-11-23T17:39:24Z",
    }
    start |= {"energy_wh": 0, "cost_eur": 0, "duration_s": 0, "max_power_w": 7000}
    end = start | {"event": "end", "ts": "2026-11-23T19:39:24Z", "energy_wh": 14000}
    end |= {"cost_eur": 2.9, "duration_s": 7200, "start": start["ts"]}

    def where(message: dict[str, Any]) -> tuple[str, str]:
        line = lines.session("hotel", "cp1", schema.SessionMessage.model_validate(message))
        assert line is not None
        series, _, rest = line.partition(" ")
        return series, rest.rsplit(" ", 1)[1]

    assert where(start) == where(end)
    assert where(start | {"badge": "room-12"}) == where(end | {"badge": "room-12"})
    (start_series, start_time), (end_series, end_time) = where(start), where(end | {"badge": "12"})
    assert start_time == end_time and start_series != end_series
