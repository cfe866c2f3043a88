# berth: build, test, demo. `make setup` is a prerequisite of everything, so a
# fresh clone on Debian 12 needs nothing done by hand.
DENO_VERSION := 2.9.6
DENO := $(CURDIR)/.tools/node_modules/deno/deno
# make install: PREFIX, and DESTDIR for staging (see scripts/install.sh).
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
DESTDIR ?=
SOURCES := $(shell find mod.ts deno.json src ffi -name '*.ts' -o -name '*.json' 2>/dev/null)

.PHONY: setup build proto test unit check demo bench stress clean install uninstall check-fresh

setup: .tools/setup.stamp

.tools/setup.stamp: scripts/setup.sh Makefile deno.json
	./scripts/setup.sh
	@touch $@

build: setup bin/berth

bin/berth: $(SOURCES) scripts/build.sh
	./scripts/build.sh

proto: setup
	./scripts/gen-proto.sh

check: setup
	$(DENO) check mod.ts

test: build
	./scripts/test.sh

demo: build
	./scripts/demo.sh

# The long forms of the reliability suite (README: What berth survives).
stress: build
	./scripts/stress.sh

bench: build
	$(DENO) run -A bench/main.ts

install: build
	PREFIX="$(PREFIX)" SYSCONFDIR="$(SYSCONFDIR)" DESTDIR="$(DESTDIR)" ./scripts/install.sh install

uninstall:
	PREFIX="$(PREFIX)" SYSCONFDIR="$(SYSCONFDIR)" DESTDIR="$(DESTDIR)" ./scripts/install.sh uninstall

# make setup on a bare Debian 12 in a debootstrap chroot (root; see the script).
check-fresh:
	./scripts/check-fresh.sh

clean:
	rm -rf bin .demo
