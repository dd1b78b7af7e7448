# make demo  - the MQTT-over-QUIC demo (venv, extension, embedded broker, gateway, clients)
# make test  - lint, type-check, and the tests (both codec twins, real mosquitto and QUIC)
# make bench - codec benchmarks against paho-mqtt, gmqtt, amqtt and mqtt5, and QUIC vs TCP
# make docs  - the API reference from the docstrings, in docs/api (pdoc)
# make wheels - Linux wheels for x86_64, aarch64 and armv7l (qemu-user), repaired and tested

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HASH   := $(shell cat pyproject.toml setup.py | cksum | cut -d' ' -f1)
# Two steps: what the demo runs, then what tests, benchmarks and docs add to it.
STAMP  := $(VENV)/.installed-$(HASH)
DEV    := $(VENV)/.dev-$(HASH)

SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all venv dev build test lint bench demo mosquitto clean wheels docs

all: build

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The package (editable) and the demo's embedded broker: all the demo uses. The editable
# install compiles nothing (it would build the codec in a folder of its own); `build`
# compiles it in place, once.
$(STAMP): $(BIN)/python pyproject.toml setup.py
	$(BIN)/python -m pip install -q "setuptools>=77" "Cython>=3.0"
	MQTTQUIC_NO_EXTENSIONS=1 $(BIN)/python -m pip install -q --no-build-isolation -e ".[demo]"
	rm -f $(VENV)/.installed-*
	touch $@

# The test, bench and docs extras, installed by the package's name: pip takes the editable
# install above as it is and adds only what the extras need (no second build).
$(DEV): $(STAMP)
	$(BIN)/python -m pip install -q "mqttquic[demo,test,bench,docs]"
	rm -f $(VENV)/.dev-*
	touch $@

venv: $(STAMP)
dev: $(DEV)

# Recompiles the extension when _codec.pyx or the packet sources changed.
build: $(STAMP)
	$(BIN)/python setup.py -q build_ext --inplace

# The integration tests start mosquitto themselves; it has to be installed.
mosquitto:
	@command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || { \
	  echo "installing mosquitto (Debian package) for the integration tests"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq mosquitto >/dev/null; }

lint: $(DEV)
	$(BIN)/ruff check mqttquic tests bench examples
	$(BIN)/mypy

test: build dev lint mosquitto
	MQTTQUIC_EXPECT_EXTENSION=1 $(BIN)/python -m pytest -q
	MQTTQUIC_NO_EXTENSIONS=1 $(BIN)/python -m pytest -q -m "not packaging"

demo: build
	$(BIN)/python -m mqttquic demo

bench: build dev mosquitto
	$(BIN)/python bench/compare_codecs.py
	$(BIN)/python bench/quic_vs_tcp.py
	$(BIN)/python bench/connect_times.py
	$(BIN)/python bench/connect_times.py --delay-ms 25
	$(BIN)/python bench/device_cost.py
	$(BIN)/python bench/gateway_capacity.py
	$(BIN)/python bench/outbox_cost.py
	@# Network namespaces and TUN need root: the script says so and skips otherwise.
	$(BIN)/python bench/network.py
	$(BIN)/python -m pytest -q bench --benchmark-only --benchmark-columns=ops,mean

# The public modules; the private ones (_codec, _wire, ...) are left out by pdoc.
docs: $(DEV)
	$(BIN)/pdoc -o docs/api mqttquic mqttquic.client mqttquic.config mqttquic.changes \
	  mqttquic.message mqttquic.errors mqttquic.codec mqttquic.gateway mqttquic.topics
	@echo "API reference: docs/api/index.html"

# Needs root (debootstrap, chroot, binfmt_misc); installs debootstrap and qemu-user when missing.
wheels:
	@command -v debootstrap >/dev/null && command -v qemu-aarch64-static >/dev/null || { \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	    debootstrap qemu-user-static binfmt-support >/dev/null; }
	$(SUDO) tools/build-wheels.sh

clean:
	rm -rf build *.egg-info mqttquic/*.so mqttquic/_codec.c mqttquic/_packets_c.c
