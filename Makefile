# berth: build, test, demo. `make setup` is a prerequisite of everything, so a
# fresh clone on Debian 12 needs nothing done by hand.
DENO_VERSION := 2.9.6
DENO := $(CURDIR)/.tools/node_modules/deno/deno
# make install: PREFIX, and DESTDIR for staging (see scripts/install.sh).
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
DESTDIR ?=
SOURCES := $(shell find mod.ts deno.json src ffi -name '*.ts' -o -name '*.json' 2>/dev/null)

.PHONY: setup build proto test check demo bench stress critest clean install uninstall check-fresh

setup: .tools/setup.stamp

.tools/setup.stamp: scripts/setup.sh Makefile deno.json
	./scripts/setup.sh
	@touch $@

build: setup bin/berth

bin/berth: $(SOURCES) scripts/build.sh
	./scripts/build.sh

proto: setup
	./scripts/gen-proto.sh

# The style gate: formatting, lint, types of every entry point (the
# program, tests, benches, scripts) and no import cycle.
check: setup
	$(DENO) fmt --check
	$(DENO) lint
	$(DENO) check mod.ts $$(find src ffi tests bench scripts -name '*_test.ts' -not -path 'src/gen/*') bench/main.ts scripts/check_cycles.ts
	$(DENO) run --allow-read scripts/check_cycles.ts

test: check build
	./scripts/test.sh

demo: build
	./scripts/demo.sh

# The long forms of the reliability suite (README: What berth survives).
stress: build
	./scripts/stress.sh

# cri-tools' conformance suite against the CRI plugin, offline (README:
# Kubernetes (CRI)); not part of `make test`.
critest: build
	./scripts/critest.sh

# Arguments for bench/main.ts: make bench ARGS="--quick --only 1,3"
bench: build
	$(DENO) run -A bench/main.ts $(ARGS)

install: build
	PREFIX="$(PREFIX)" SYSCONFDIR="$(SYSCONFDIR)" DESTDIR="$(DESTDIR)" ./scripts/install.sh install

uninstall:
	PREFIX="$(PREFIX)" SYSCONFDIR="$(SYSCONFDIR)" DESTDIR="$(DESTDIR)" ./scripts/install.sh uninstall

# make setup on a bare Debian 12 in a debootstrap chroot (root; see the script).
check-fresh:
	./scripts/check-fresh.sh

clean:
	rm -rf bin .demo
