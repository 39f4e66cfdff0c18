"""The schema (collector.config) and the loader (collector.settings) apart: importing or building
the schema reads no file and no environment; `load` alone brings the environment and the site
file in, and gives an instance of the schema model asked for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.config import IngestorConfig, SiteConfig
from collector.settings import ConfigError, load
from tests.support.paths import EXAMPLES, REPO

HOTEL = EXAMPLES / "hotel-vda.yaml"


def hotel() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(HOTEL.read_text(encoding="utf-8"))
    return data


@pytest.mark.process
def test_importing_the_schema_imports_no_loader() -> None:
    probe = (
        "import sys, collector.config; "
        "print(sorted(m for m in ('collector.settings', 'pydantic_settings', 'dotenv')"
        " if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_building_the_schema_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IRVE_MQTT__PORT", "not-a-port")
    monkeypatch.setenv("IRVE_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("IRVE_INGEST__BATCH_SIZE", "7")
    site = SiteConfig(**hotel())
    assert site.mqtt.port == hotel()["mqtt"]["port"]
    assert site.log_level == "INFO"
    ingestor = IngestorConfig(mqtt={"host": "127.0.0.1", "port": 1884})
    assert ingestor.mqtt.port == 1884 and ingestor.ingest.batch_size == 5000


def test_load_brings_the_environment_in_and_gives_the_schema_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IRVE_LOG_LEVEL", "debug")
    monkeypatch.setenv("IRVE_INGEST__BATCH_SIZE", "7")
    site = load(SiteConfig, HOTEL)
    assert isinstance(site, SiteConfig)
    assert site.log_level == "DEBUG" and site.ingest.batch_size == 7
    # The ingestor reads a site file for its own keys and ignores the others.
    ingestor = load(IngestorConfig, HOTEL)
    assert isinstance(ingestor, IngestorConfig) and ingestor.ingest.batch_size == 7
    monkeypatch.setenv("IRVE_MQTT__PORT", "not-a-port")
    with pytest.raises(ConfigError, match="IRVE_MQTT__PORT"):
        load(SiteConfig, HOTEL)


def test_the_site_file_refuses_unknown_keys_through_load(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({**hotel(), "colour": "blue"}), encoding="utf-8")
    with pytest.raises(ConfigError, match="colour: unknown key"):
        load(SiteConfig, path)
    assert load(IngestorConfig, path).mqtt.port == hotel()["mqtt"]["port"]
