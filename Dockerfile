# One image for the collector, the ingestor and the simulator (`irve collect|ingest|simulate`).
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    IRVE_STATE_DIR=/var/lib/irve

# Pango and a font for the PDF guest statements (WeasyPrint, `irve bill --pdf`).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

# The package only: config, docs and tests stay out of the image (.dockerignore).
WORKDIR /src
COPY pyproject.toml README.md ./
COPY collector ./collector
RUN pip install . \
    && rm -rf /src

COPY scripts/healthcheck.py /usr/local/bin/irve-healthcheck
RUN chmod 0755 /usr/local/bin/irve-healthcheck

# Non-root. `dialout` owns serial ports: an RS-485 adapter passed with `devices:` is usable.
RUN useradd --system --uid 10001 --user-group --groups dialout --home-dir /var/lib/irve \
        --shell /usr/sbin/nologin irve \
    && mkdir -p /var/lib/irve \
    && chown irve:irve /var/lib/irve
USER irve
WORKDIR /var/lib/irve
VOLUME ["/var/lib/irve"]

# Checks what the container runs: ingest -> /healthz, collect -> MQTT status online,
# simulate -> Modbus TCP ports open (scripts/healthcheck.py).
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["irve-healthcheck"]

ENTRYPOINT ["irve"]
CMD ["--help"]
