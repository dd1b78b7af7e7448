# make demo  - run the MQTT-over-QUIC demo (venv, extension, embedded broker)
# make test  - lint, type-check, and run the tests against both codec twins
# make bench - codec benchmarks against paho-mqtt, gmqtt, amqtt and mqtt5

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml setup.py | cksum | cut -d' ' -f1)

.PHONY: all venv build test test-fast lint bench demo clean

all: build

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml setup.py
	$(BIN)/python -m pip install -q "setuptools>=68" "Cython>=3.0" wheel
	$(BIN)/python -m pip install -q --no-build-isolation -e ".[test,bench]"
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

# Recompiles the extension when _codec.pyx or the packet sources changed.
build: $(STAMP)
	$(BIN)/python setup.py -q build_ext --inplace

lint: $(STAMP)
	$(BIN)/ruff check mqttquic tests bench
	$(BIN)/mypy

test: build lint
	MQTTQUIC_EXPECT_EXTENSION=1 $(BIN)/python -m pytest -q
	MQTTQUIC_NO_EXTENSIONS=1 $(BIN)/python -m pytest -q

bench: build
	$(BIN)/python bench/compare_codecs.py
	$(BIN)/python -m pytest -q bench --benchmark-only --benchmark-columns=ops,mean

clean:
	rm -rf build *.egg-info mqttquic/*.so mqttquic/_codec.c mqttquic/_packets_c.c
