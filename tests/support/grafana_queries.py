"""What Grafana would send to InfluxDB, without Grafana: the queries of every provisioned panel
and alert rule, Grafana's macro and template-variable substitution, an InfluxQL /query call,
and Grafana's reduce + threshold + `for` alert evaluation.

Substitution follows Grafana's InfluxQL datasource (backend mode, Grafana 9+):
- `$timeFilter` / `$__timeFilter` -> `time >= {from}ms and time <= {to}ms` (epoch milliseconds);
- `$__interval` -> the range divided by the panel's max data points, rounded to Grafana's
  "nice" intervals and never below the datasource's minimum interval (`timeInterval`);
  `$__interval_ms` -> the same in milliseconds;
- template variables: a single-value variable is inserted as is (so `= '$site'` becomes
  `= 'hotel-vda'`); a multi-value or include-all variable is regex-escaped and, with more than
  one value, joined as `(a|b)` (so `=~ /^$socket$/` becomes `=~ /^(cp1|cp2)$/`);
- `now()`, which InfluxDB reads from its clock when the query arrives, is written as the end
  of the range: Grafana sends its queries with the range ending now, and the tests evaluate
  rules at chosen instants (an hour, two days after the data ends) with the same meaning.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from collector.store.influxql import Series

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
PROVISIONING = GRAFANA / "provisioning"
DATASOURCE_UID = "irve-influx"

# ---------------------------------------------------------------------------------------------
# Provisioned objects


def load_dashboards() -> dict[str, dict[str, Any]]:
    """File name -> dashboard JSON."""
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(DASHBOARDS.glob("*.json"))
    }


def iter_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in (collapsed) rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def datasource_settings() -> dict[str, Any]:
    doc = load_yaml(PROVISIONING / "datasources" / "influxdb.yaml")
    found: dict[str, Any] = doc["datasources"][0]
    return found


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str  # uid
    panel_id: int
    title: str
    ref_id: str
    query: str
    result_format: str
    time_from: str | None  # the panel's relative time override (e.g. "now/d")
    alias: str | None

    @property
    def key(self) -> str:
        return f"{self.dashboard} / {self.title} / {self.ref_id}"


def dashboard_queries() -> list[PanelQuery]:
    found: list[PanelQuery] = []
    for dashboard in load_dashboards().values():
        for panel in iter_panels(dashboard):
            for target in panel.get("targets", []):
                found.append(
                    PanelQuery(
                        dashboard=dashboard["uid"],
                        panel_id=panel["id"],
                        title=panel["title"],
                        ref_id=target["refId"],
                        query=target["query"],
                        result_format=target.get("resultFormat", "time_series"),
                        time_from=panel.get("timeFrom"),
                        alias=target.get("alias"),
                    )
                )
    return found


def query_keys() -> set[str]:
    """A name for every InfluxQL query Grafana would run: panel targets, template variables
    and alert rules (what the query tests must each check)."""
    keys = {q.key for q in dashboard_queries()}
    keys |= {variable_key(uid, name) for uid, name, _ in variable_queries()}
    for rule in alert_rules():
        keys |= {rule_key(rule.uid, ref) for ref in rule.value_refs} | {rule_key(rule.uid)}
    return keys


def variable_key(dashboard_uid: str, name: str) -> str:
    return f"{dashboard_uid} / ${name}"


def rule_key(uid: str, ref: str | None = None) -> str:
    """A rule's condition query, or (with `ref`) one of the queries its summary shows."""
    return f"alert {uid}" if ref is None else f"alert {uid} / {ref}"


def panel_query(dashboard_uid: str, title: str, ref_id: str = "A") -> PanelQuery:
    for query in dashboard_queries():
        if query.dashboard == dashboard_uid and query.title == title and query.ref_id == ref_id:
            return query
    raise KeyError(f"no query {ref_id} in panel {title!r} of dashboard {dashboard_uid}")


def variable_queries() -> list[tuple[str, str, str]]:
    """(dashboard uid, variable name, query) of every query-type template variable."""
    return [
        (dashboard["uid"], var["name"], var["query"])
        for dashboard in load_dashboards().values()
        for var in dashboard.get("templating", {}).get("list", [])
        if var.get("type") == "query"
    ]


def variable_defaults(dashboard_uid: str) -> dict[str, str]:
    """Values of the dashboard's textbox and constant variables (site limits, prices)."""
    for dashboard in load_dashboards().values():
        if dashboard["uid"] == dashboard_uid:
            return {
                var["name"]: str(var["query"])
                for var in dashboard["templating"]["list"]
                if var["type"] in ("textbox", "constant")
            }
    raise KeyError(dashboard_uid)


@dataclass(frozen=True)
class Reduced:
    """A reduce step of a rule over one of its InfluxQL queries."""

    query: str
    range_s: int
    reducer: str


@dataclass(frozen=True)
class AlertRule:
    uid: str
    title: str
    query: str
    range_s: int
    reducer: str
    operator: str  # gt | lt
    threshold: float
    for_s: float
    no_data_state: str
    interval_s: float  # the group's evaluation interval
    # refId of every reduce step -> what it reduces (the condition's own B included): what
    # `$values.REF.Value` shows in the summary.
    reduced: dict[str, Reduced] = field(default_factory=dict)
    condition_ref: str = "B"  # the reduce step the threshold reads

    @property
    def value_refs(self) -> list[str]:
        """The reduce steps only the summary uses."""
        return sorted(ref for ref in self.reduced if ref != self.condition_ref)

    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def condition(self, value: float) -> bool:
        if self.operator == "gt":
            return value > self.threshold
        if self.operator == "lt":
            return value < self.threshold
        raise ValueError(f"{self.uid}: operator {self.operator} not handled")


def parse_duration(text: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)", text)
    if not match:
        raise ValueError(f"bad duration {text!r}")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return int(match.group(1)) * scale


def alert_rule_files() -> list[Path]:
    return sorted((PROVISIONING / "alerting").glob("*.yaml"))


def alert_rules() -> list[AlertRule]:
    """Every provisioned rule, in the shape these rules use: the condition is a threshold (C)
    on a reduce (B) of an InfluxQL query (A); other query + reduce pairs only give the
    summary its figures."""
    rules: list[AlertRule] = []
    for path in alert_rule_files():
        for group in load_yaml(path).get("groups", []):
            for rule in group["rules"]:
                steps = {step["refId"]: step for step in rule["data"]}
                cond = steps[rule["condition"]]["model"]
                reduce_step = steps[cond["expression"]]["model"]
                query_step = steps[reduce_step["expression"]]
                evaluator = cond["conditions"][0]["evaluator"]
                reduced = {
                    ref: Reduced(
                        query=steps[step["model"]["expression"]]["model"]["query"],
                        range_s=int(
                            steps[step["model"]["expression"]]["relativeTimeRange"]["from"]
                        ),
                        reducer=step["model"]["reducer"],
                    )
                    for ref, step in steps.items()
                    if step["model"].get("type") == "reduce"
                }
                rules.append(
                    AlertRule(
                        uid=rule["uid"],
                        title=rule["title"],
                        query=query_step["model"]["query"],
                        range_s=int(query_step["relativeTimeRange"]["from"]),
                        reducer=reduce_step["reducer"],
                        operator=evaluator["type"],
                        threshold=float(evaluator["params"][0]),
                        for_s=parse_duration(rule.get("for", "0s")),
                        no_data_state=rule.get("noDataState", "NoData"),
                        interval_s=parse_duration(group["interval"]),
                        reduced=reduced,
                        condition_ref=cond["expression"],
                        labels=rule.get("labels", {}),
                        annotations=rule.get("annotations", {}),
                        raw=rule,
                    )
                )
    return rules


# ---------------------------------------------------------------------------------------------
# Macro and variable substitution

# Grafana's gtime.RoundInterval (backend): (largest interval in ms, rounded interval in ms).
_NICE_INTERVALS: tuple[tuple[int, int], ...] = (
    (10, 1),
    (15, 10),
    (35, 20),
    (75, 50),
    (150, 100),
    (350, 200),
    (750, 500),
    (1_500, 1_000),
    (3_500, 2_000),
    (7_500, 5_000),
    (12_500, 10_000),
    (17_500, 15_000),
    (25_000, 20_000),
    (45_000, 30_000),
    (90_000, 60_000),
    (210_000, 120_000),
    (450_000, 300_000),
    (750_000, 600_000),
    (1_050_000, 900_000),
    (1_500_000, 1_200_000),
    (2_700_000, 1_800_000),
    (5_400_000, 3_600_000),
    (9_000_000, 7_200_000),
    (16_200_000, 10_800_000),
    (32_400_000, 21_600_000),
    (86_400_000, 43_200_000),
    (604_800_000, 86_400_000),
    (1_814_400_000, 604_800_000),
    (3_628_799_999, 2_592_000_000),
)


def round_interval(ms: float) -> int:
    for bound, interval in _NICE_INTERVALS:
        if ms <= bound:
            return interval
    return 31_536_000_000


def interval_ms(start: datetime, end: datetime, max_data_points: int, min_interval_ms: int) -> int:
    """Grafana's interval calculator: the range over the max data points, the datasource's
    minimum interval when below it, else rounded to a nice interval."""
    raw = (end - start).total_seconds() * 1000 / max_data_points
    return min_interval_ms if raw < min_interval_ms else round_interval(raw)


def format_interval(ms: int) -> str:
    """Grafana's gtime.FormatInterval: the count of the largest unit that fits (d, h, m, s, ms),
    truncated; Grafana writes a week as `7d`."""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size:
            return f"{ms // size}{unit}"
    return f"{max(ms, 1)}ms"


def _regex_escape(value: str) -> str:
    # Grafana's influx datasource escapes the regex specials (and `/`, the InfluxQL delimiter).
    return re.sub(r"([\\/^$*+?.()|\[\]{}])", r"\\\1", value)


@dataclass(frozen=True)
class Variable:
    value: str | Sequence[str]
    multi: bool = False  # multi-value or include-all: regex-escaped, (a|b) when several


def format_variable(var: Variable) -> str:
    if not var.multi:
        if not isinstance(var.value, str):
            raise ValueError("a single-value variable takes one string")
        if "'" in var.value:
            raise ValueError(f"variable value {var.value!r} would break the quoted query")
        return var.value
    values = [var.value] if isinstance(var.value, str) else list(var.value)
    escaped = [_regex_escape(v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def render(
    query: str,
    start: datetime,
    end: datetime,
    variables: dict[str, Variable] | None = None,
    max_data_points: int = 1000,
    min_interval_ms: int | None = None,
) -> str:
    """The query text Grafana sends to InfluxDB for this time range and these variables."""
    if min_interval_ms is None:
        min_interval_ms = int(
            parse_duration(datasource_settings()["jsonData"]["timeInterval"]) * 1000
        )
    step = interval_ms(start, end, max_data_points, min_interval_ms)
    time_filter = (
        f"time >= {int(start.timestamp() * 1000)}ms and time <= {int(end.timestamp() * 1000)}ms"
    )
    macros = {
        "__timeFilter": time_filter,
        "timeFilter": time_filter,
        "__interval_ms": str(step),
        "__interval": format_interval(step),
        "interval": format_interval(step),
    }
    for name, var in (variables or {}).items():
        macros[name] = format_variable(var)

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name not in macros:
            raise KeyError(f"unknown variable ${name} in {query!r}")
        return macros[name]

    # ${name}, [[name]] and $name; longest names first so $__interval_ms wins over $__interval.
    names = "|".join(sorted((re.escape(n) for n in macros), key=len, reverse=True))
    pattern = rf"\$\{{({names})\}}|\[\[({names})\]\]|\$({names})(?![A-Za-z0-9_])"
    text = re.sub(pattern, substitute, query)
    text = re.sub(r"\bnow\(\)", f"{int(end.timestamp() * 1000)}ms", text, flags=re.IGNORECASE)
    leftover = re.search(r"\$[A-Za-z_]\w*", text)
    if leftover:
        raise KeyError(f"unsubstituted {leftover.group(0)} in {text!r}")
    return text


def start_of_day(now: datetime, tz: Any) -> datetime:
    local = now.astimezone(tz)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def start_of_month(now: datetime, tz: Any) -> datetime:
    return start_of_day(now, tz).replace(day=1)


def panel_range(
    query: PanelQuery, start: datetime, end: datetime, tz: Any
) -> tuple[datetime, datetime]:
    """The range Grafana uses for a panel: the dashboard's, or the panel's relative override
    ("now/d": since local midnight, "now/M": since the 1st of the month, in the dashboard's zone)."""
    if query.time_from is None:
        return start, end
    if query.time_from == "now/d":
        return start_of_day(end, tz), end
    if query.time_from == "now/M":
        return start_of_month(end, tz), end
    raise ValueError(f"time override {query.time_from} not handled")


# ---------------------------------------------------------------------------------------------
# Alert evaluation (Grafana's reduce, threshold and pending period)


def reduce(values: Sequence[Any], reducer: str) -> float | None:
    """Grafana's Reduce expression in "drop non-numeric" mode; None when nothing is left."""
    numbers = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not numbers:
        return None
    if reducer == "last":
        return numbers[-1]
    if reducer == "min":
        return min(numbers)
    if reducer == "max":
        return max(numbers)
    if reducer == "mean":
        return sum(numbers) / len(numbers)
    if reducer == "sum":
        return sum(numbers)
    if reducer == "count":
        return float(len(numbers))
    raise ValueError(f"reducer {reducer} not handled")


Labels = tuple[tuple[str, str], ...]
NO_DATA: Labels = (("__no_data__", "true"),)
Run = Callable[[str], list[Series]]


def column(series: Series, name: str) -> list[Any]:
    index = series.columns.index(name)
    return [row[index] for row in series.values]


def labels_of(series: Series) -> Labels:
    """An alert instance's labels: the series' tags (Grafana turns GROUP BY tags into labels)."""
    return tuple(sorted(series.tags.items()))


def evaluate(rule: AlertRule, series: list[Series]) -> dict[Labels, bool]:
    """One evaluation: alert instance (series labels) -> condition met.

    A query returning no series is Grafana's NoData state; with noDataState Alerting it counts
    as one met condition under the label set NO_DATA."""
    if not series:
        return {NO_DATA: True} if rule.no_data_state == "Alerting" else {}
    met: dict[Labels, bool] = {}
    for s in series:
        value = reduce(column(s, s.columns[1]), rule.reducer)
        met[labels_of(s)] = value is not None and rule.condition(value)
    return met


def run_rule(rule: AlertRule, at: datetime, run: Run) -> dict[Labels, bool]:
    text = render(rule.query, at - timedelta(seconds=rule.range_s), at)
    return evaluate(rule, run(text))


def firing(rule: AlertRule, times: Sequence[datetime], run: Run) -> set[Labels]:
    """Instances in state Alerting after evaluating the rule at each of `times` in order: an
    instance fires once its condition has held at every evaluation for at least `for`."""
    pending_since: dict[Labels, datetime] = {}
    alerting: set[Labels] = set()
    for at in times:
        met = run_rule(rule, at, run)
        for labels, ok in met.items():
            if not ok:
                pending_since.pop(labels, None)
                alerting.discard(labels)
                continue
            since = pending_since.setdefault(labels, at)
            if (at - since).total_seconds() >= rule.for_s:
                alerting.add(labels)
        for gone in set(pending_since) - set(met):  # series vanished: resolved
            pending_since.pop(gone)
            alerting.discard(gone)
    return alerting


_TEMPLATE_ACTION = re.compile(r"\{\{(.*?)\}\}")


def render_summary(template: str, labels: dict[str, str], values: dict[str, float]) -> str:
    """An annotation as Grafana's Go template would print it, for the two actions the IRVE
    rules use: `{{ $labels.NAME }}` and `{{ printf "%.Nf" $values.REF.Value }}`. Any other
    action raises, so a rule using more than this is noticed here."""

    def action(match: re.Match[str]) -> str:
        text = match.group(1).strip()
        if found := re.fullmatch(r"\$labels\.(\w+)", text):
            return labels[found.group(1)]
        if found := re.fullmatch(r'printf "(%\.\d+f)" \$values\.(\w+)\.Value', text):
            return found.group(1) % values[found.group(2)]
        raise ValueError(f"template action {{{{{text}}}}} not handled")

    return " ".join(_TEMPLATE_ACTION.sub(action, template).split())


def evaluation_times(end: datetime, rule: AlertRule) -> list[datetime]:
    """Evaluations at the rule group's interval over the rule's pending period (+ one), ending
    at `end`."""
    count = int(rule.for_s // rule.interval_s) + 2
    return [end - timedelta(seconds=rule.interval_s * i) for i in reversed(range(count))]
