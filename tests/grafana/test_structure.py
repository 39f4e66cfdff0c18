"""Structure of the Grafana provisioning: dashboards, datasource, alert rules, contact points
and notification policy, checked without a running Grafana (none can run here)."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from collector.config import SiteConfig
from collector.settings import load
from tests.support import grafana_queries as gq

UNITS = {"watt", "kwatt", "kwatth", "watth", "currencyEUR", "amp", "volt", "percent", "short", "s"}
ENTRYPOINT = gq.GRAFANA / "entrypoint.sh"
CHANNEL_ENV = {
    "IRVE_ALERT_NTFY_URL": "https://ntfy.example/topic?template=grafana",
    "IRVE_ALERT_TELEGRAM_BOT_TOKEN": "123:abc",
    "IRVE_ALERT_TELEGRAM_CHAT_ID": "-1001234567",
    "IRVE_ALERT_PUSHOVER_APP_TOKEN": "azGDORePK8gMaC0QOYAMyEEuzJnyUi",
    "IRVE_ALERT_PUSHOVER_USER_KEY": "uQiRzpo4DXghDmr9QzzfQu27cmVRsG",
    "IRVE_ALERT_EMAIL_TO": "owner@example.org",
}

DASHBOARDS = gq.load_dashboards()


def test_three_dashboards_with_unique_uids_and_french_titles() -> None:
    titles = {d["uid"]: d["title"] for d in DASHBOARDS.values()}
    assert titles == {
        "irve-live": "Bornes en direct",
        "irve-energy": "Énergie et coûts",
        "irve-sessions": "Sessions de recharge",
    }


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_settings(name: str) -> None:
    dashboard = DASHBOARDS[name]
    assert dashboard["timezone"] == "Europe/Paris"
    assert dashboard["time"]["to"] == "now"
    assert re.fullmatch(r"now-\d+[hd]", dashboard["time"]["from"])
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["site"]["query"].startswith('SHOW TAG VALUES FROM "reading" WITH KEY = "site"')
    socket = variables["socket"]
    assert socket["query"].startswith('SHOW TAG VALUES FROM "reading" WITH KEY = "point"')
    assert socket["multi"] and socket["includeAll"]
    for var in variables.values():
        if var["type"] == "query":
            assert var["datasource"]["uid"] == gq.DATASOURCE_UID


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panels_ids_datasource_units(name: str) -> None:
    panels = list(gq.iter_panels(DASHBOARDS[name]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {name}"
    for panel in panels:
        where = f"{name} / {panel['title']}"
        assert panel["datasource"] == {"type": "influxdb", "uid": gq.DATASOURCE_UID}, where
        assert panel["targets"], where
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == gq.DATASOURCE_UID, where
            assert target["rawQuery"] is True, where
            assert "$timeFilter" in target["query"], f"{where}: query ignores the time range"
        assert panel["fieldConfig"]["defaults"]["unit"] in UNITS, where
        for override in panel["fieldConfig"]["overrides"]:
            for prop in override["properties"]:
                if prop["id"] == "unit":
                    assert prop["value"] in UNITS | {"dateTimeAsSystem"}, where


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_panels_do_not_overlap(name: str) -> None:
    boxes = [(p["title"], p["gridPos"]) for p in gq.iter_panels(DASHBOARDS[name])]
    for _, pos in boxes:
        assert pos["x"] >= 0 and pos["y"] >= 0 and pos["w"] > 0 and pos["h"] > 0
        assert pos["x"] + pos["w"] <= 24
    for (ta, a), (tb, b) in itertools.combinations(boxes, 2):
        apart = (
            a["x"] + a["w"] <= b["x"]
            or b["x"] + b["w"] <= a["x"]
            or a["y"] + a["h"] <= b["y"]
            or b["y"] + b["h"] <= a["y"]
        )
        assert apart, f"{ta!r} overlaps {tb!r}"


def test_no_flux_and_local_days() -> None:
    for query in gq.dashboard_queries():
        assert "|>" not in query.query and "from(bucket" not in query.query
        if re.search(r"GROUP BY time\((1d|1w)", query.query):
            assert query.query.endswith("tz('Europe/Paris')"), query.title


def test_every_select_has_its_own_time_filter() -> None:
    """InfluxDB bounds an outer query that has no time condition by now(), not by the inner
    query's range: with fill() it returns empty buckets from the dashboard's end up to now."""
    texts = [(q.key, q.query) for q in gq.dashboard_queries()]
    texts += [
        (f"{rule.uid} / {ref}", step.query)
        for rule in gq.alert_rules()
        for ref, step in rule.reduced.items()
    ]
    for key, text in texts:
        assert text.count("$timeFilter") == text.count("SELECT"), key


def site_values() -> set[float]:
    """Every limit and price the example site files set (the reference hotel's 32 A, 36,000 W,
    32,400 W, 0.1927 EUR/kWh..., the gîte's 16 A and 9,000 W), and 80 % of each rating: none
    may be written in the provisioning, which serves every site."""
    found: set[float] = set()
    for path in sorted((gq.REPO / "config" / "examples").glob("*.yaml")):
        site = load(SiteConfig, path)
        for meter in site.meters:
            if meter.socket is not None:
                found |= {meter.socket.rated_current_a, meter.socket.rated_current_a * 0.8}
        limit = site.subscribed_power_w
        found |= {limit, limit * site.alerts.warning_share, site.site.subscribed_power_kva}
        for row in site.tariff.prices:
            found |= {float(p) for p in (row.base, row.hp, row.hc) if p is not None}
    return found


def numbers_in(text: str) -> set[float]:
    return {float(n) for n in re.findall(r"(?<![\w.$])\d+(?:\.\d+)?(?![\w.])", text)}


def test_no_site_specific_value_in_the_dashboards() -> None:
    """Limits come from the data (each reading carries its site's limits): no text-box or
    constant variable to set per site, fixed thresholds only in % (of the series' own limit),
    and no site's number in any query."""
    values = site_values()
    assert {32, 36000, 32400, 0.1927, 16, 9000} <= values
    for name, dashboard in DASHBOARDS.items():
        for var in dashboard["templating"]["list"]:
            if var["name"] == "desk":  # the front desk's address: the installation's, no limit
                assert var["type"] == "textbox" and not numbers_in(var["query"]) & values
                continue
            assert var["type"] == "query", f"{name}: variable {var['name']} set by hand"
        for panel in gq.iter_panels(dashboard):
            where = f"{name} / {panel['title']}"
            defaults = panel["fieldConfig"]["defaults"]
            steps = defaults.get("thresholds", {}).get("steps", [])
            fixed = {step["value"] for step in steps if step["value"] is not None}
            if fixed:
                assert defaults["unit"] == "percent" and fixed <= {80, 90, 100}, where
            for target in panel["targets"]:
                assert not numbers_in(target["query"]) & values, where


def test_no_site_specific_value_in_the_alert_rules() -> None:
    values = site_values()
    for path in gq.alert_rule_files():
        for group in gq.load_yaml(path).get("groups", []):
            for rule in group["rules"]:
                for step in rule["data"]:
                    model = step["model"]
                    assert not numbers_in(model.get("query", "")) & values, rule["uid"]
                    for condition in model.get("conditions", []):
                        assert not set(condition["evaluator"]["params"]) & values, rule["uid"]
                for text in rule["annotations"].values():
                    assert not numbers_in(text) & values, rule["uid"]


def test_datasource_is_influxql_with_token_header_from_environment() -> None:
    doc = gq.load_yaml(gq.PROVISIONING / "datasources" / "influxdb.yaml")
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    assert ds["uid"] == gq.DATASOURCE_UID and ds["type"] == "influxdb"
    assert ds["jsonData"]["version"] == "InfluxQL"
    assert ds["jsonData"]["httpHeaderName1"] == "Authorization"
    assert ds["secureJsonData"]["httpHeaderValue1"] == "Token ${GRAFANA_INFLUX_TOKEN}"
    assert ds["url"] == "${GRAFANA_INFLUX_URL}"
    assert ds["database"] == ds["jsonData"]["dbName"] == "${GRAFANA_INFLUX_DB}"


def test_dashboard_provider_points_at_the_mounted_dashboards() -> None:
    doc = gq.load_yaml(gq.PROVISIONING / "dashboards" / "irve.yaml")
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/etc/irve-grafana/dashboards"
    assert "IRVE_GRAFANA_DIR:-/etc/irve-grafana" in ENTRYPOINT.read_text()


RULES = {rule.uid: rule for rule in gq.alert_rules()}


def test_alert_rules_reference_datasource_and_panels() -> None:
    assert set(RULES) == {
        "irve-socket-overcurrent",
        "irve-site-overload",
        "irve-site-overload-warning",
        "irve-meter-offline",
        "irve-collector-offline",
    }
    panels = {(d["uid"], str(p["id"])) for d in DASHBOARDS.values() for p in gq.iter_panels(d)}
    for rule in RULES.values():
        for step in rule.raw["data"]:
            assert step["datasourceUid"] in (gq.DATASOURCE_UID, "__expr__"), rule.uid
        annotations = rule.annotations
        assert (annotations["__dashboardUid__"], annotations["__panelId__"]) in panels
        assert rule.labels["severity"] in ("critical", "warning")
        # Grafana expands environment variables in labels: a `$` there would be eaten.
        assert all("$" not in v for v in rule.labels.values())


def test_alert_thresholds_are_ratios_to_each_series_own_limit() -> None:
    """Each overload rule divides the measured value by the limit the same reading carries
    and fires above 1, with the collector's durations for the reference site."""
    limits = {
        "irve-socket-overcurrent": ('max("current_a") / max("rated_current_a")', 60),
        "irve-site-overload": ('mean("power_w") / max("limit_w")', 30),
        "irve-site-overload-warning": ('mean("power_w") / max("warning_w")', 30),
    }
    for uid, (ratio, for_s) in limits.items():
        rule = RULES[uid]
        assert rule.query.startswith(f"SELECT {ratio} FROM"), uid
        assert (rule.operator, rule.threshold, rule.for_s) == ("gt", 1, for_s), uid
        assert rule.interval_s == 10, uid
        # The summary's figures come from the same series: D and F grouped like A.
        group_by = rule.query[rule.query.index("GROUP BY") :]
        groups = {step.query[step.query.index("GROUP BY") :] for step in rule.reduced.values()}
        assert groups == {group_by}, uid


def test_offline_rules_look_back_long_and_are_quiet_without_data() -> None:
    """The offline rules keep a silent meter's series for 400 days (it stays firing) and say
    nothing on an empty database (new installation): NoData is OK."""
    for uid in ("irve-meter-offline", "irve-collector-offline"):
        rule = RULES[uid]
        assert rule.range_s >= 400 * 86400, uid
        assert 'time > now() - 2m GROUP BY "site"' in rule.query, uid
        assert 'last("power_w") * 0' in rule.query, uid
        assert (rule.operator, rule.threshold, rule.for_s) == ("lt", 1, 30), uid
        assert rule.interval_s == 30, uid
        assert rule.no_data_state == "OK", uid


def test_alert_summaries_in_french_with_value_limit_and_socket() -> None:
    for rule in RULES.values():
        summary = rule.annotations["summary"]
        assert "$labels.site" in summary, rule.uid
        if rule.uid in (
            "irve-socket-overcurrent",
            "irve-site-overload",
            "irve-site-overload-warning",
        ):
            # E: the measured value, G: the site's limit, both from the readings.
            assert "$values.E.Value" in summary and "$values.G.Value" in summary, rule.uid
    assert "$labels.point" in RULES["irve-socket-overcurrent"].annotations["summary"]
    assert "$labels.point" in RULES["irve-meter-offline"].annotations["summary"]
    assert "autorisés" in RULES["irve-socket-overcurrent"].annotations["summary"]
    for rule in RULES.values():  # only template actions the query tests can render
        values = dict.fromkeys(rule.reduced, 1.0)
        text = gq.render_summary(rule.annotations["summary"], {"site": "s", "point": "p"}, values)
        assert "{{" not in text and "$" not in text, rule.uid


def run_entrypoint(tmp_path: Path, env: dict[str, str]) -> tuple[Any, str]:
    dest = tmp_path / "provisioning"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IRVE_ALERT_")}
    done = subprocess.run(
        ["sh", str(ENTRYPOINT), "true"],
        env={
            **clean,
            **env,
            "IRVE_GRAFANA_DIR": str(gq.GRAFANA),
            "GF_PATHS_PROVISIONING": str(dest),
        },
        capture_output=True,
        text=True,
        check=True,
    )
    for sub in ("datasources/influxdb.yaml", "dashboards/irve.yaml", "alerting/rules.yaml"):
        assert (dest / sub).is_file(), sub
    generated = dest / "alerting" / "irve-notifications.yaml"
    return gq.load_yaml(generated), done.stderr


@pytest.mark.process
def test_no_contact_point_without_environment(tmp_path: Path) -> None:
    doc, log = run_entrypoint(tmp_path, {})
    assert doc == {"apiVersion": 1, "resetPolicies": [1]}
    assert "no alert notification channel" in log


@pytest.mark.process
def test_every_channel_switched_on_by_its_variables(tmp_path: Path) -> None:
    doc, log = run_entrypoint(tmp_path, CHANNEL_ENV)
    (point,) = doc["contactPoints"]
    assert point["name"] == "irve-telephone"
    receivers = {r["type"]: r for r in point["receivers"]}
    assert set(receivers) == {"webhook", "telegram", "pushover", "email"}
    assert len({r["uid"] for r in point["receivers"]}) == 4
    # Secrets stay references for Grafana to expand: nothing of their values is written.
    text = (tmp_path / "provisioning" / "alerting" / "irve-notifications.yaml").read_text()
    for value in CHANNEL_ENV.values():
        assert value not in text
    assert receivers["telegram"]["settings"]["bottoken"] == "${IRVE_ALERT_TELEGRAM_BOT_TOKEN}"
    assert receivers["webhook"]["settings"]["url"] == "${IRVE_ALERT_NTFY_URL}"
    assert "authorization_credentials" not in receivers["webhook"]["settings"]
    templates = gq.load_yaml(gq.PROVISIONING / "alerting" / "templates.yaml")["templates"]
    defined = set(re.findall(r'define "([^"]+)"', templates[0]["template"]))
    for receiver in point["receivers"]:
        for used in re.findall(r'template "([^"]+)"', str(receiver["settings"])):
            assert used in defined
    (policy,) = doc["policies"]
    names = {point["name"]}
    assert policy["receiver"] in names
    assert all(route["receiver"] in names for route in policy["routes"])
    assert {"alertname", "point"} <= set(policy["group_by"])
    hours = {"1h": 1, "4h": 4}
    assert hours[policy["repeat_interval"]] >= 4
    assert all(hours[r["repeat_interval"]] >= 1 for r in policy["routes"])
    assert "enabled: ntfy telegram pushover email" in log


@pytest.mark.process
def test_incomplete_channel_is_left_off_with_a_warning(tmp_path: Path) -> None:
    doc, log = run_entrypoint(
        tmp_path,
        {"IRVE_ALERT_TELEGRAM_BOT_TOKEN": "123:abc", "IRVE_ALERT_EMAIL_TO": "a@example.org"},
    )
    (point,) = doc["contactPoints"]
    assert [r["type"] for r in point["receivers"]] == ["email"]
    assert "telegram notifications NOT enabled: missing IRVE_ALERT_TELEGRAM_CHAT_ID" in log


@pytest.mark.process
def test_ntfy_token_adds_bearer_authorization(tmp_path: Path) -> None:
    doc, _ = run_entrypoint(
        tmp_path, {"IRVE_ALERT_NTFY_URL": "http://n/t", "IRVE_ALERT_NTFY_TOKEN": "tk_x"}
    )
    (receiver,) = doc["contactPoints"][0]["receivers"]
    assert receiver["settings"]["authorization_scheme"] == "Bearer"
    assert receiver["settings"]["authorization_credentials"] == "${IRVE_ALERT_NTFY_TOKEN}"


def test_provisioned_dashboards_stay_authoritative_and_the_docs_say_how_to_copy_one() -> None:
    (provider,) = gq.load_yaml(gq.PROVISIONING / "dashboards" / "irve.yaml")["providers"]
    assert provider["allowUiUpdates"] is False and provider["folder"] == "IRVE"
    docs = (gq.REPO / "docs" / "grafana.md").read_text(encoding="utf-8")
    section = docs[docs.index("## Customising a dashboard") :]
    section = section[: section.index("\n## ", 1)]
    for words in ("Save as copy", "another folder", "survives an upgrade", "grafana-data"):
        assert words in section, words
