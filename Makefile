# The telematics unit simulator. Quick start (Debian 12 with a Swift 6 toolchain):
#   make demo    replay a recorded drive through telematicsd and watch the vehicle state
#   make test    unit tests, the integration tests (cantools cross-check, broker, PSAP), the
#                vcan bench, the power-cut test and a short run of every fuzz target
# Both install the Debian packages they need first (make deps).

SWIFT        ?= swift
CONFIG       ?= debug
BIN          := .build/$(CONFIG)
VENV         := .build/venv
PY           := $(VENV)/bin/python3
# Installation (make install / uninstall, DESTDIR for staging); make deb uses PREFIX=/usr.
PREFIX       ?= /usr/local
BINDIR       ?= $(PREFIX)/bin
MANDIR       ?= $(PREFIX)/share/man
DATADIR      ?= $(PREFIX)/share/telematicsd
DOCDIR       ?= $(PREFIX)/share/doc/telematicsd
UNITDIR      ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR  ?= $(PREFIX)/lib/sysusers.d
SYSCONFDIR   ?= /etc
TOOLS        := telematicsd tcuctl tcu-backend tcu-psap tcu-car tcu-fleet
STRIP        ?=
# Release builds carry the Swift runtime inside each binary (only the parts they use): a head
# unit needs no Swift toolchain, and the daemon stays under 20 MB resident.
RELEASE      := -c release --static-swift-stdlib
LINTIAN      ?= lintian

# C libraries the package links (libcurl sends the backend's mail), and the bench's tools:
# can-utils and iproute2 for vcan, the mosquitto broker for the backend link, gpsd for the
# position, tmux to type into the menu,
# qemu, busybox and cpio to boot a guest kernel with vcan where the host has no CAN (and to
# pull its power), e2fsprogs for the guest's disk, chromium and its driver for the web portal's
# tests in a real browser; libre (the NG-eCall's SIP stack) and, for its tests, SIPp
# (sip-tester) as the PSAP, Kamailio as the emergency routing proxy, tcpdump to see the wire;
# Routino (the online services' routing engine) with osmium-tool to build its map, libxml2 for
# the DATEX II traffic records (and a fleet's SUMO trajectories); SUMO and its tools for the
# fleet's movement on the map's roads; libpq and Debian's PostgreSQL server for the backend's
# store on a server; debhelper and lintian to build and check the packages, debootstrap for the
# Debian system the packages are tested in under systemd.
DEB_PACKAGES := libsocketcan-dev libgps-dev libsqlite3-dev libmosquitto-dev libssl-dev pkg-config \
                can-utils iproute2 kmod qemu-system-x86 busybox-static cpio xz-utils mosquitto \
                openssl python3 python3-venv e2fsprogs mosquitto-clients gpsd tmux \
                systemd fakeroot libcurl4-openssl-dev chromium chromium-driver \
                libre-dev sip-tester kamailio tcpdump routino libroutino-dev osmium-tool libxml2-dev sumo sumo-tools \
                libpq-dev postgresql debhelper lintian debootstrap
# cantools for the decoder's cross-check, aiosmtpd as the mail server the accounts' tests receive
# on, schemathesis to hold the app API to docs/openapi.yaml, selenium to drive Debian's chromium,
# kubernetes-validate to hold the fleet's manifests (deploy/kubernetes) to Kubernetes' schemas offline.
PY_PACKAGES  := cantools==45.1.0 pytest pytest-xdist==3.8.0 aiosmtpd==1.4.6 schemathesis==4.32.5 selenium==4.42.0 kubernetes-validate==1.37.0

.PHONY: all deps build release test check-architecture background-builds unit-test postgres-test integration-test vcan-bench power-cut systemd-guest demo bench bench-fleet clean fuzz fuzz-short soak \
        install uninstall deb man golden map fleet-trajectories

all: build

deps: $(VENV)/.installed
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing $$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Python tools for the tests live in a venv under .build (installed again when this file changes).
$(VENV)/.installed: Makefile
	@command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq python3 python3-venv; }
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check $(PY_PACKAGES)
	@touch $@

build: deps
	$(SWIFT) build -c $(CONFIG)

# With deterministic hashing, as debian/rules and Fuzz/run build (why: debian/rules).
release: deps
	SWIFT_DETERMINISTIC_HASHING=1 $(SWIFT) build $(RELEASE)

test: check-architecture background-builds unit-test postgres-test integration-test vcan-bench power-cut systemd-guest fuzz-short

# What the last steps need and the first ones leave time for is made from the start in the
# background, at idle priority (SCHED_IDLE: swift build's compiler processes keep it, where they
# drop a nice value), so that it uses only what the tests leave idle (they mostly wait for their
# peers; the qemu guests keep one core busy): the previous version's package for the systemd
# guest's upgrade (hw/bench/previous-deb: a whole debug build of the old tree, built once),
# then tcu-fuzz for fuzz-short (Fuzz/run --build); beside them the guest's Debian system
# (hw/bench/system-base: debootstrap, mostly downloading, made once). Each takes a lock, and the
# step that needs it waits for it; each logs to .build/background-*.log.
background-builds: deps
	@mkdir -p .build && \
	(chrt --idle 0 sh -c 'hw/bench/previous-deb; Fuzz/run --build' > .build/background-builds.log 2>&1 &) && \
	(chrt --idle 0 hw/bench/system-base > .build/background-system.log 2>&1 &)

# The architecture's arrows (hw/check-architecture): Package.swift and every import.
check-architecture:
	hw/check-architecture

unit-test: build
	$(SWIFT) test

# The backend's own suites a second time, on a PostgreSQL server of their own (hw/postgres/cluster:
# a schema per test); the end-to-end tests on PostgreSQL are in Tests/integration/test_postgres.py.
BACKEND_SUITES := OutboxTests\.(Accounts|AppAPI|BackendStore|CarMessages|Portal|WebPortal|Database)
postgres-test: unit-test
	@dir=$$(mktemp -d /tmp/tcu-pg-XXXXXX) && url=$$(hw/postgres/cluster start "$$dir") || exit 1; \
	PGPASSFILE="$$dir/pgpass" TCU_TEST_POSTGRES="$$url" $(SWIFT) test --skip-build --filter '$(BACKEND_SUITES)'; rc=$$?; \
	hw/postgres/cluster stop "$$dir"; rm -rf "$$dir"; exit $$rc

# TEST_JOBS test files at a time (pytest-xdist; a file's tests on one worker, in order: they
# share its module fixtures). Each test starts its own peers on ports of its own; most of a
# test's time is waiting for them, so two at a time on two cores take 12 minutes, not 19. The
# map is built first, so that the tests that use it only read it. The files go in the order
# Tests/integration/conftest.py gives them (--no-loadscope-reorder: pytest-xdist would put the
# files with the most tests first), test_install.py first: its make deb, a release build of
# 8 to 14 minutes, then runs beside the other files' tests instead of alone after them (seen
# without the flag: it started last and ran alone for 12.5 of the step's 20.4 minutes).
TEST_JOBS ?= 2
integration-test: build map
	TCUCTL=$(abspath $(BIN))/tcuctl $(PY) -m pytest -q -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder Tests/integration

# The guests run the release build, as a head unit does (under emulation the car's registration
# took 76 s with it, 101 s with the debug build). make test's integration tests have just made
# it (make deb), so there it costs nothing more.
vcan-bench: release
	hw/bench/vcan-bench .build/release

power-cut: release
	hw/bench/power-cut .build/release

# The packages under a real systemd: a debootstrapped Debian 12 booted in the qemu guest with
# systemd as PID 1 (hw/bench/systemd-guest). make test's integration tests have just built the
# packages; alone, this target builds them when there are none.
systemd-guest: deps
	@ls .build/deb/telematicsd_*.deb >/dev/null 2>&1 || $(MAKE) --no-print-directory deb
	hw/bench/systemd-guest .build/deb

# libFuzzer on every parser that sees outside input (Fuzz/run; docs/security.md): a short run
# of each target in make test, long ones here (FUZZ_SECONDS each); one target per core at a
# time (FUZZ_JOBS).
FUZZ_SECONDS ?= 600
fuzz-short: deps
	Fuzz/run 20

fuzz: deps
	Fuzz/run $(FUZZ_SECONDS)

# Memory under load (hw/bench/soak): a burst of 300 000 door changes at full speed, the drive
# log looped at full speed for SOAK_LOOP_SECONDS, 1 000 changes a second for SOAK_RATE_SECONDS;
# resident memory must stay flat within 1 MiB after warm-up.
# Then leaks: valgrind's memcheck, or LeakSanitizer (the .build-asan build) where valgrind cannot run it.
SOAK_LOOP_SECONDS ?= 600
SOAK_RATE_SECONDS ?= 3600
soak: release
	$(SWIFT) build -c release --sanitize=address --product telematicsd --build-path .build-asan
	SOAK_ASAN_BIN=.build-asan/release hw/bench/soak .build/release $(SOAK_LOOP_SECONDS) $(SOAK_RATE_SECONDS)

demo: build map
	hw/bench/demo $(BIN)

# The online services' map (hw/maps/build-map): Routino's database, the POIs, the places, the
# traffic and the fuel prices for an OpenStreetMap extract that a PyPI wheel ships.
map: deps
	hw/maps/build-map .build/maps/kotka $(PY)

# A fleet's movement (hw/maps/build-fleet-trajectories): FLEET_VEHICLES random trips on the map's
# roads, departing over FLEET_DEPART seconds, simulated by SUMO; tcu-fleet run --trajectories
# .build/maps/fleet/fcd.xml drives the cars along them.
FLEET_VEHICLES ?= 1000
FLEET_DEPART   ?= 600
fleet-trajectories: map
	hw/maps/build-fleet-trajectories .build/maps/kotka .build/maps/fleet $(FLEET_VEHICLES) $(FLEET_DEPART)

# Rewrites the golden files from what the code does now: the recorded traces' end states
# (hw/traces/*.expected, hw/traces/golden) and the scenario library's traces (hw/scenarios/*.chk,
# tcu-car scenario check). make test checks both. Review the diff before committing it.
golden: build
	hw/traces/golden $(BIN) --update
	$(BIN)/tcu-car scenario check --update --dbc hw/vehicle.dbc hw/scenarios/*.scn

bench: release
	hw/bench/benchmarks .build/release $(PY)
	hw/bench/fleet-bench . .build/release $(FLEET_CARS) $(FLEET_SECONDS)

# A fleet under load (hw/bench/fleet-bench): FLEET_CARS cars (tcu-fleet, in as many shard processes
# as this machine's descriptor limit needs) against a local mosquitto and tcu-backend for
# FLEET_SECONDS once every car connected, then a broker restart in the middle of a second run;
# writes the "A fleet" section of docs/benchmarks.md.
FLEET_CARS    ?= 10000
FLEET_SECONDS ?= 60
bench-fleet: release
	hw/bench/fleet-bench . .build/release $(FLEET_CARS) $(FLEET_SECONDS)

# Binaries, the systemd unit and sysusers file, man pages, documentation, the systemd-networkd
# examples; the configuration with the DBC and the vehicle profile only where none is yet.
install: release
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(MANDIR)/man1 \
	  $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(DATADIR)/systemd-networkd $(DESTDIR)$(DOCDIR) \
	  $(DESTDIR)$(SYSCONFDIR)/telematicsd
	for t in $(TOOLS); do install -m 755 $(STRIP) .build/release/$$t $(DESTDIR)$(BINDIR)/$$t; done
	sed 's#@BINDIR@#$(BINDIR)#g' systemd/telematicsd.service > $(DESTDIR)$(UNITDIR)/telematicsd.service
	chmod 644 $(DESTDIR)$(UNITDIR)/telematicsd.service
	install -m 644 systemd/telematicsd.sysusers $(DESTDIR)$(SYSUSERSDIR)/telematicsd.conf
	install -m 644 docs/telematicsd.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 644 docs/tcuctl.1 docs/tcu-backend.1 docs/tcu-psap.1 docs/tcu-car.1 docs/tcu-fleet.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 644 systemd/80-*.net* $(DESTDIR)$(DATADIR)/systemd-networkd/
	install -m 644 README.md docs/*.md $(DESTDIR)$(DOCDIR)/
	for f in systemd/telematicsd.conf hw/vehicle.dbc hw/vehicle-profile.conf; do \
	  t=$(DESTDIR)$(SYSCONFDIR)/telematicsd/$$(basename $$f); [ -e $$t ] || install -m 644 $$f $$t; done

# Removes what install put in place except the configuration (it may hold the car's own).
uninstall:
	for t in $(TOOLS); do rm -f $(DESTDIR)$(BINDIR)/$$t; done
	rm -f $(DESTDIR)$(UNITDIR)/telematicsd.service $(DESTDIR)$(SYSUSERSDIR)/telematicsd.conf \
	  $(DESTDIR)$(MANDIR)/man8/telematicsd.8 $(DESTDIR)$(MANDIR)/man1/tcuctl.1 \
	  $(DESTDIR)$(MANDIR)/man1/tcu-backend.1 $(DESTDIR)$(MANDIR)/man1/tcu-psap.1 $(DESTDIR)$(MANDIR)/man1/tcu-car.1 $(DESTDIR)$(MANDIR)/man1/tcu-fleet.1
	rm -rf $(DESTDIR)$(DATADIR) $(DESTDIR)$(DOCDIR)

# The Debian packages the Debian way (debian/: debhelper, dpkg-buildpackage) from the release
# build, into .build/deb; then lintian on each, as a packager runs it: no error, no warning
# (an override in debian/*.lintian-overrides only with its reason). debian/rules makes the
# release build (dh's build step), as make release does: not twice (a build with nothing to do
# took up to 11 s).
deb: deps
	rm -rf .build/deb && mkdir -p .build/deb
	dpkg-buildpackage -b --no-sign --post-clean --buildinfo-option=-u.build/deb --changes-option=-u.build/deb \
	  --buildinfo-file=.build/deb/telematics-unit.buildinfo --changes-file=.build/deb/telematics-unit.changes
	$(LINTIAN) --fail-on error,warning .build/deb/*.deb

# The man pages of the tools, from their --help (swift-argument-parser's generator; builds the
# package in release mode). telematicsd.8 is written by hand.
man:
	$(SWIFT) package plugin generate-manual --authors "the telematics unit simulator's authors"
	for t in tcuctl tcu-backend tcu-psap tcu-car tcu-fleet; do cp .build/plugins/GenerateManual/outputs/$$t/$$t.1 docs/; done
	$(SWIFT) build --product telematicsd
	.build/debug/telematicsd --config-reference | hw/man-config-keys docs/telematicsd.8

clean:
	rm -rf .build
