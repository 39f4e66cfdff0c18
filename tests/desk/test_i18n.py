"""The desk's web pages in French (the default) and English (`desk.language: en`): no text
hard-coded in a template, every text the code and templates use has its English, and every
page rendered by a real `irve desk` in each language shows none of the other's words."""

from __future__ import annotations

import ast
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import pytest
import yaml

from collector.desk import app as desk_app
from collector.desk.i18n import ENGLISH, Translator
from collector.language import Lang
from tests.support import servers
from tests.support.desk import OWNER_PASSWORD, Client, desk_process, desk_site
from tests.support.influx_db import create_database

TEMPLATES = Path(str(resources.files("collector.desk").joinpath("templates")))
DESK_CODE = Path(desk_app.__file__).parent
# What may stay outside `_()` in a template: punctuation, symbols, numbers.
NOT_WORDS = re.compile(r"^[\s·:;,.()\[\]–—/€%|&#0-9-]*$")
KEY_IN_TEMPLATE = re.compile(r"""\b_\(\s*"((?:[^"\\]|\\.)*)"|\b_\(\s*'((?:[^'\\]|\\.)*)'""")


def visible_text(page: str) -> str:
    """What a reader sees (and a screen reader says): tags, scripts and styles left out."""
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S | re.I)
    page = re.sub(r"<[^>]+>", " ", page)
    return html.unescape(page)


def test_templates_have_no_text_outside_the_catalogue() -> None:
    for template in sorted(TEMPLATES.glob("*.html")):
        text = template.read_text(encoding="utf-8")
        text = re.sub(r"<(script|style)\b.*?</\1>", " ", text, flags=re.S | re.I)
        text = re.sub(r"\{#.*?#\}|\{%.*?%\}|\{\{.*?\}\}", " ", text, flags=re.S)
        text = re.sub(r"<[^>]+>", " ", text)
        left = [chunk for chunk in re.split(r"\n", text) if not NOT_WORDS.match(chunk)]
        assert not left, f"{template.name}: text outside _(): {left}"


def used_keys() -> set[str]:
    """Every French text given to `_` in the templates, to `t(...)` in the desk's code, and the
    names of policies, roles and statuses the templates translate."""
    keys = set()
    for template in TEMPLATES.glob("*.html"):
        for match in KEY_IN_TEMPLATE.finditer(template.read_text(encoding="utf-8")):
            keys.add(match.group(1) or match.group(2))
    for module in DESK_CODE.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "t"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                keys.add(node.args[0].value)
    for names in (desk_app.POLICY_NAMES, desk_app.ROLE_NAMES, desk_app.STATUS_NAMES):
        keys.update(names.values())
    return keys


def test_every_text_the_desk_uses_has_its_english() -> None:
    keys = used_keys()
    assert len(keys) > 100  # the search found the desk's texts
    missing = sorted(keys - ENGLISH.keys())
    assert not missing, f"no English for: {missing}"
    # Placeholders are the same in both languages.
    for key in keys:
        assert set(re.findall(r"\{(\w+)\}", key)) == set(re.findall(r"\{(\w+)\}", ENGLISH[key]))


def test_the_translator_fills_placeholders_and_the_decimal_mark() -> None:
    assert Translator("en")("chambre {room}", room="12") == "room 12"
    assert Translator("fr")("chambre {room}", room="12") == "chambre 12"
    assert Translator("fr").number("4.50") == "4,50"
    assert Translator("en").number("4.50") == "4.50"


# ---- every page, rendered by irve desk in each language ---------------------------------------


# Words of the other language, as whole phrases: the catalogue's texts that differ between
# the two, placeholders left out (what is around them is checked).
def other_words(lang: Lang) -> list[str]:
    def pieces(texts: list[str]) -> set[str]:
        return {p.strip(" .:()") for text in texts for p in re.split(r"\{\w+\}", text)}

    french, english = pieces(list(ENGLISH)), pieces(list(ENGLISH.values()))
    foreign = french - english if lang == "en" else english - french
    # Short pieces are words of both languages ("Base", "au" in "auto"): phrases of two
    # words or more only, and single words of 6 letters or more.
    return sorted(p for p in foreign if " " in p or len(p) >= 6)


@dataclass(frozen=True)
class Desk:
    lang: Lang
    url: str


@pytest.fixture(scope="module", params=["fr", "en"])
def desk(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Desk]:
    lang: Lang = request.param
    tmp = tmp_path_factory.mktemp(f"desk-{lang}")
    broker = servers.mosquitto(tmp / "mosquitto")
    influx = servers.influxd(tmp / "influxd")
    broker.start()
    influx.start()
    try:
        create_database(influx)
        site = desk_site(tmp, broker, influx)
        data = yaml.safe_load(site.read_text(encoding="utf-8"))
        data["desk"]["language"] = lang
        site.write_text(yaml.safe_dump(data), encoding="utf-8")
        with desk_process(site, tmp / "desk.log") as url:
            yield Desk(lang, url)
    finally:
        influx.stop()
        broker.stop()


def pages(desk: Desk) -> Iterator[tuple[str, str]]:
    """(what, page) for every page of the desk a user can see, error pages and a form with
    errors included."""
    anonymous = Client(desk.url)
    yield "/login", anonymous.get("/login").text
    client = Client(desk.url)
    yield "wrong password", client.login("owner", "not the password").text
    assert client.login("owner", OWNER_PASSWORD).status == 303
    now = datetime.now(UTC)
    form = {
        "room": "12",
        "guest": "",
        "arrival": (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
        "departure": (now + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
        "badges": "04A1B2C3",
        "policy": "flat",
        "fee_eur": "4.5",
        "kwh_per_night": "8",
    }
    created = client.submit("/stays/new", form)
    assert created.status == 303, created.text
    stay = created.location
    refused = client.submit("/stays/new", {**form, "room": "", "departure": "soon"}, "/stays/new")
    assert refused.status == 422
    yield "stay form with errors", refused.text
    overlapping = client.submit("/stays/new", {**form, "badges": ""}, "/stays/new")
    assert overlapping.status == 422
    yield "room already taken", overlapping.text
    for path in (
        "/",
        "/stays",
        "/stays?all=1",
        "/stays/new",
        stay,
        f"{stay}/statement",
        "/sessions",
        "/users",
        "/settings",
        "/logout",
        "/stays/999",
    ):
        reply = client.get(path)
        assert reply.status in (200, 404), (path, reply.status)
        yield path, reply.text
    yield "no CSRF", client.post(f"{stay}/close", {}).text


@pytest.mark.broker
@pytest.mark.influx
@pytest.mark.process
def test_every_page_is_in_the_desks_language(desk: Desk) -> None:
    foreign = other_words(desk.lang)
    assert len(foreign) > 50
    seen = 0
    for what, page in pages(desk):
        assert f'<html lang="{desk.lang}">' in page, what
        text = visible_text(page)
        found = [word for word in foreign if re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text)]
        assert not found, f"{desk.lang}: {what} shows {found}"
        seen += 1
    assert seen == 16
    own = Translator(desk.lang)
    assert own("Connexion") in visible_text(Client(desk.url).get("/login").text)
