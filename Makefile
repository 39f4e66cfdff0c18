# One entry point for developers and CI. `make test` builds the venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: test test-fast lint bench demo up down clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# Everything, in two pytest calls: the suite on TEST_WORKERS processes (pytest-xdist, one file
# per worker at a time, so a module's shared servers stay in one process), then the tests marked
# `timing` alone, so that CPU contention from the parallel run never makes them flaky. Both run
# even when the first fails; make fails if either did.
TEST_WORKERS ?= 4
test: $(BIN)/.installed
	@status=0; \
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not timing" || status=$$?; \
	$(BIN)/pytest -q -m timing || status=$$?; \
	exit $$status

# The pure tests: no real server, subprocess, Modbus socket, venv or browser, nothing slow (seconds).
FAST := not broker and not influx and not serial and not knx and not modbus and not process and not install and not browser and not slow
test-fast: $(BIN)/.installed
	$(BIN)/pytest -q -m "$(FAST)"

lint: $(BIN)/.installed
	$(BIN)/ruff check collector tests bench scripts
	$(BIN)/ruff format --check collector tests bench scripts
	$(BIN)/mypy

bench: $(BIN)/.installed
	$(BIN)/python -m bench

# The Docker stack. `up` first checks Docker Engine 25+ and Compose 2.20+ (writing nothing
# without them), then creates .env (random secrets), config/site.yaml and mosquitto/passwd
# when missing (scripts/init_env.py, standard library only).
up:
	$(PYTHON) scripts/init_env.py --require-docker
	docker compose up -d --build

down:
	docker compose down

# Without Docker (Debian/Ubuntu): mosquitto and influxd from the system packages, then the
# simulator, collector and ingestor as local processes; live readings until Ctrl-C.
# DEMO_SECONDS=N stops after N seconds; DEMO_INSTALL=1 lets it apt-get install what is missing;
# DEMO_KEEP_LOGS=1 keeps the run folder (logs); the rest in scripts/demo.py.
demo: $(BIN)/.installed
	$(BIN)/python -m scripts.demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
