"""InfluxDB 1.x (Debian's and Ubuntu's `influxdb` package, 1.6.7) in a folder of its own, for
`make demo` and the tests: every path inside the folder, HTTP and the backup service on the
given local ports, no telemetry, no internal monitoring database.

1.6 has no /api/v2/write: the ingestor writes to it with IRVE_INFLUX__API_VERSION=1.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path


def conf(workdir: Path, port: int, rpc_port: int) -> str:
    return (
        f'bind-address = "127.0.0.1:{rpc_port}"\n'
        "reporting-disabled = true\n"
        f'[meta]\n  dir = "{workdir}/meta"\n'
        f'[data]\n  dir = "{workdir}/data"\n  wal-dir = "{workdir}/wal"\n'
        "  query-log-enabled = false\n"
        f'[http]\n  bind-address = "127.0.0.1:{port}"\n  log-enabled = false\n'
        "[monitor]\n  store-enabled = false\n"
        "[continuous_queries]\n  enabled = false\n"
    )


def prepare(workdir: Path, port: int, rpc_port: int) -> Path:
    """Write `<workdir>/influxdb.conf`; returns its path."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "influxdb.conf"
    path.write_text(conf(workdir, port, rpc_port), encoding="utf-8")
    return path


def major_version(version_output: str) -> int | None:
    """Major version in `influxd version` output (`InfluxDB v1.6.7~rc0 (git: ...)`)."""
    match = re.search(r"\bv?(\d+)\.\d+", version_output)
    return int(match.group(1)) if match else None


def installed_major(binary: str) -> int | None:
    try:
        result = subprocess.run(
            [binary, "version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return major_version(result.stdout + result.stderr)
