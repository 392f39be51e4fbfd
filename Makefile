# The telematics unit simulator. Quick start (Debian 12 with a Swift 6 toolchain):
#   make demo    replay a recorded drive through telematicsd and watch the vehicle state
#   make test    unit tests, the integration tests (cantools cross-check, broker, PSAP), the
#                vcan bench and the power-cut test
# Both install the Debian packages they need first (make deps).

SWIFT        ?= swift
CONFIG       ?= debug
BIN          := .build/$(CONFIG)
VENV         := .build/venv
PY           := $(VENV)/bin/python3
PREFIX       ?= /usr/local
# Release builds carry the Swift runtime inside each binary (only the parts they use): a head
# unit needs no Swift toolchain, and the daemon stays under 20 MB resident.
RELEASE      := -c release --static-swift-stdlib

# C libraries the package links, and the bench's tools: can-utils and iproute2 for vcan, the
# mosquitto broker for the backend link, gpsd for the position, tmux to type into the menu,
# qemu, busybox and cpio to boot a guest kernel with vcan where the host has no CAN (and to
# pull its power), e2fsprogs for the guest's disk.
DEB_PACKAGES := libsocketcan-dev libgps-dev libsqlite3-dev libmosquitto-dev pkg-config \
                can-utils iproute2 kmod qemu-system-x86 busybox-static cpio xz-utils mosquitto \
                openssl python3 python3-venv e2fsprogs mosquitto-clients gpsd tmux
PY_PACKAGES  := cantools==45.1.0 pytest

.PHONY: all deps build release test unit-test integration-test vcan-bench power-cut demo bench clean

all: build

deps: $(VENV)/.installed
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing $$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Python tools for the tests (cantools for the cross-check) live in a venv under .build.
$(VENV)/.installed:
	@command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq python3 python3-venv; }
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check $(PY_PACKAGES)
	@touch $@

build: deps
	$(SWIFT) build -c $(CONFIG)

release: deps
	$(SWIFT) build $(RELEASE)

test: unit-test integration-test vcan-bench power-cut

unit-test: build
	$(SWIFT) test

integration-test: build
	TCUCTL=$(abspath $(BIN))/tcuctl $(PY) -m pytest -q Tests/integration

vcan-bench: build
	hw/bench/vcan-bench $(BIN)

power-cut: build
	hw/bench/power-cut $(BIN)

demo: build
	hw/bench/demo $(BIN)

bench: release
	hw/bench/benchmarks .build/release $(PY)

clean:
	rm -rf .build
