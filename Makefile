# CacheWarp build. `make` builds, `make run` runs the daemon on the example config,
# `make lint` checks the house rules a machine can (scripts/lint.sh: core/ includes only
# core/ headers, core/ objects call no I/O, clock or environment function, clang-format),
# `make check` runs the lint and then every test, `make check SAN=1` does so under ASan+UBSan, `make bench`
# compares CacheWarp with nginx, Varnish and nginx static files. Each target first installs missing
# Debian packages.

CC      ?= gcc
PKGS    := libmicrohttpd lmdb hiredis libconfig libcurl libsystemd libcares
WARN    := -Wall -Wextra -Wshadow -Wformat=2 -Wmissing-prototypes -Wvla -Werror
CSTD    := -std=c11 -D_GNU_SOURCE
ifeq ($(SAN),1)
BUILD   ?= build/san
OPT     := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDSAN   := -fsanitize=address,undefined
else
BUILD   ?= build/rel
OPT     := -O2 -g
LDSAN   :=
endif

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) check 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null)
CFLAGS  += $(CSTD) $(OPT) $(WARN) -I. $(PKG_CFLAGS) -MMD -MP
LDFLAGS += $(LDSAN)
LDLIBS  := $(PKG_LIBS) -lpthread -lm

LIB_SRC  := $(wildcard core/*.c shm/*.c workers/*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CORE_OBJ := $(filter $(BUILD)/core/%,$(LIB_OBJ))
LIB      := $(BUILD)/libcw.a
CMD_SRC  := $(wildcard cmd/*.c)
BINS     := $(CMD_SRC:cmd/%.c=$(BUILD)/bin/%)
TEST_ORIGIN := $(BUILD)/bin/cw-test-origin
LOCK_HOLD   := $(BUILD)/bin/cw-test-lockhold
L2_DRIVE    := $(BUILD)/bin/cw-test-l2drive
FILL        := $(BUILD)/bin/cw-test-fill
OPENLOOP    := $(BUILD)/bin/cw-openloop
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNITS    := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)

.PHONY: all deps run check lint unit integration bench clean format fuzz
all: $(BINS) $(TEST_ORIGIN) $(LOCK_HOLD) $(L2_DRIVE) $(FILL) $(OPENLOOP) $(UNITS)

deps:
	@scripts/deps.sh

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/bin/%: $(BUILD)/cmd/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(TEST_ORIGIN): $(BUILD)/tests/origin/test_origin.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# The integration test of "hits never wait on the write lock" stops this holder of the lock.
$(LOCK_HOLD): $(BUILD)/tests/lockhold/lock_hold.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# tests/integration/test_l2.py drives the L2 client through this, against its own redis-servers.
$(L2_DRIVE): $(BUILD)/tests/l2/l2_drive.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# tests/integration/test_purge.py fills L1 with 100,000 entries through this, in seconds.
$(FILL): $(BUILD)/tests/fill/fill.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/test_%: $(BUILD)/tests/unit/test_%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(CHECK_LIBS) $(LDLIBS)

# run, check and bench build in a fresh $(MAKE) after deps: PKG_LIBS and friends are
# computed when a Makefile is parsed, so on a fresh machine this one has them empty.
run: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) ORIGIN="$(ORIGIN)" scripts/run.sh

check: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory lint
	@BUILD=$(BUILD) SAN=$(SAN) scripts/check.sh

# The deny-list of I/O, clock and environment functions, and the reason for each rule, are
# in scripts/lint.sh. It runs nm on the core objects of $(BUILD), so it builds those first.
lint: $(CORE_OBJ)
	@BUILD=$(BUILD) scripts/lint.sh

unit: all
	@BUILD=$(BUILD) SAN=$(SAN) ONLY=unit scripts/check.sh

integration: all
	@BUILD=$(BUILD) SAN=$(SAN) ONLY=integration scripts/check.sh

# bench: CacheWarp against nginx proxy_cache, Varnish and nginx static files in one run, with
# the open-loop generator tests/bench/openloop.c (built by all; test_openloop checks it); see
# docs/PERFORMANCE.md. Not part of check.
bench: deps
	@nice $(MAKE) --no-print-directory all
	@BENCH_DEPS=1 scripts/deps.sh
	@BUILD=$(BUILD) tests/bench/bench.sh
$(OPENLOOP): $(BUILD)/tests/bench/openloop.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ -lpthread -lm
-include $(BUILD)/tests/bench/openloop.d

# hit-instr: instructions per hot 1 KiB hit under callgrind, 1 worker (tests/bench/hit_instr.py);
# with BENCH_CW_BASE=DIR, that build's cachewarpd beside this one's. Not in all, check or bench.
.PHONY: hit-instr
hit-instr: deps
	@nice $(MAKE) --no-print-directory all
	@BUILD=$(BUILD) python3 tests/bench/hit_instr.py cw=$(BUILD) \
		$(if $(BENCH_CW_BASE),cw-base=$(BENCH_CW_BASE))

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(BINS:$(BUILD)/bin/%=$(BUILD)/cmd/%.d)
-include $(UNITS:$(BUILD)/tests/%=$(BUILD)/tests/unit/%.d)
-include $(BUILD)/tests/l2/l2_drive.d
-include $(BUILD)/tests/fill/fill.d
.SECONDARY:

# ---- sim: the eviction simulator (`make sim`), not part of `all`, `check` or `bench` --------
# Replays a Zipf trace through the real store and eviction code and through exact LRU, and
# prints both hit ratios: build/rel/bin/cw-evict-sim [keys [requests [cache [s]]]].
SIM := $(BUILD)/bin/cw-evict-sim
.PHONY: sim
sim: $(SIM)
$(SIM): $(BUILD)/tests/bench/evict_sim.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)
-include $(BUILD)/tests/bench/evict_sim.d

# ---- wake-bench: fill -> coalesced waiter resume latency (`make wake-bench`), not in `all` ----
# build/rel/bin/cw-wake-bench [futex|poll] [rounds] [waiters]: see tests/bench/wake_lat.c.
WAKE_BENCH := $(BUILD)/bin/cw-wake-bench
.PHONY: wake-bench
wake-bench: $(WAKE_BENCH)
	$(WAKE_BENCH) futex 2000 2
	$(WAKE_BENCH) poll 2000 2
$(WAKE_BENCH): $(BUILD)/tests/bench/wake_lat.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)
-include $(BUILD)/tests/bench/wake_lat.d

# ---- fuzz: the libFuzzer harnesses (`make fuzz [FUZZ_SECONDS=30]`), not part of `all`/`check` --
# Builds tests/fuzz/fuzz_<m>.c with clang and libFuzzer+ASan+UBSan into build/fuzz/fuzz_<m>,
# linked with only the core/ sources that harness needs (not the whole library: core/ is pure,
# so no I/O module comes in), then runs each for FUZZ_SECONDS on build/fuzz/corpus_<m>, which
# persists between runs (FUZZ_SEEDS_<m> files are copied in as seeds). A crash or hang leaves
# its input in build/fuzz/<m>-<kind>-<sha1> and the log in build/fuzz/fuzz_<m>.log; every
# harness runs, and the target fails if any crashed. UBSan findings abort
# (-fno-sanitize-recover) so that they count as crashes.
FUZZ_SECONDS ?= 30
FUZZ_CC      ?= clang
FUZZ_DIR     := build/fuzz
FUZZ_NAMES   := $(FUZZ_SRC:tests/fuzz/fuzz_%.c=%)
FUZZ_BINS    := $(FUZZ_NAMES:%=$(FUZZ_DIR)/fuzz_%)
FUZZ_CFLAGS   = -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=undefined $(CSTD) -I. $(shell pkg-config --cflags libconfig)
FUZZ_CORE_cc     := core/cc.c core/common.c
FUZZ_CORE_fresh  := core/fresh.c core/cc.c core/common.c
FUZZ_CORE_cond   := core/cond.c core/fresh.c core/cc.c core/common.c
FUZZ_CORE_entry  := core/entry.c core/common.c
FUZZ_CORE_key    := core/key.c core/common.c
FUZZ_CORE_policy := core/policy.c core/fresh.c core/cc.c core/cond.c core/adaptive.c \
                    core/entry.c core/common.c
FUZZ_LIBS_policy  = -lm
FUZZ_CORE_path   := core/path.c core/common.c
FUZZ_CORE_reqscan := core/reqscan.c
FUZZ_CORE_ctlmsg := core/ctlmsg.c core/common.c
FUZZ_CORE_fleetmsg := core/fleetmsg.c core/ban.c core/common.c
FUZZ_CORE_config := core/config.c core/config_schema.c core/config_redis.c core/config_value.c \
                    core/common.c core/log.c
FUZZ_LIBS_config  = $(shell pkg-config --libs libconfig)
FUZZ_SEEDS_config := etc/cachewarp.conf

.PHONY: fuzz fuzz-deps
fuzz: $(FUZZ_BINS)
	@$(foreach m,$(FUZZ_NAMES),mkdir -p $(FUZZ_DIR)/corpus_$(m) && \
	    $(if $(FUZZ_SEEDS_$(m)),cp $(FUZZ_SEEDS_$(m)) $(FUZZ_DIR)/corpus_$(m)/ &&)) true
	@failed=""; \
	for m in $(FUZZ_NAMES); do \
	    echo "fuzz: $$m for $(FUZZ_SECONDS)s" >&2; \
	    if $(FUZZ_DIR)/fuzz_$$m $(FUZZ_DIR)/corpus_$$m -max_total_time=$(FUZZ_SECONDS) \
	        -max_len=65536 -timeout=10 -print_final_stats=1 \
	        -artifact_prefix=$(FUZZ_DIR)/$$m- >$(FUZZ_DIR)/fuzz_$$m.log 2>&1; then \
	        grep -h '^stat::\(number_of_executed_units\|average_exec_per_sec\|new_units\)' \
	            $(FUZZ_DIR)/fuzz_$$m.log | sed "s/^stat::/fuzz: $$m: /" >&2; \
	    else \
	        failed="$$failed $$m"; \
	        sed -n '/ERROR: \|runtime error: \|deadly signal/,/Test unit written/p' \
	            $(FUZZ_DIR)/fuzz_$$m.log | head -80 >&2; \
	        echo "fuzz: $$m FAILED, log in $(FUZZ_DIR)/fuzz_$$m.log" >&2; \
	    fi; \
	done; \
	[ -z "$$failed" ] || { echo "fuzz: failed:$$failed" >&2; exit 1; }

# Base deps give pkg-config and libconfig-dev; FUZZ_DEPS gives clang and libFuzzer.
fuzz-deps: deps
	@FUZZ_DEPS=1 scripts/deps.sh

.SECONDEXPANSION:
$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c $$(FUZZ_CORE_$$*) $(wildcard core/*.h) | fuzz-deps
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $< $(FUZZ_CORE_$*) -o $@ $(FUZZ_LIBS_$*)

# ---- mutate: the mutation harness (`make mutate`), not part of `all`/`check` -----------------
# Applies each tests/mutate/mutants/<name>.mut (one named edit that breaks one behaviour,
# found by anchor text, not line number) to a scratch copy of the tree, builds it (release,
# reusing this build's objects), runs only the tests the mutant lists, and fails if any mutant
# survives or its anchor is gone; prints the table (mutant, tests that caught it). .ci/run
# runs it with MUTATE=1. MUTATE_ARGS=--only NAME runs one mutant.
.PHONY: mutate
mutate: deps
	@$(MAKE) --no-print-directory all BUILD=build/rel SAN=
	@python3 tests/mutate/mutate.py --build build/rel $(MUTATE_ARGS)

# ---- flake-check: `make check` RUNS times (5) with both cores loaded; not part of `check` -----
.PHONY: flake-check
flake-check:
	@RUNS=$(or $(RUNS),5) SAN=$(SAN) scripts/flake-check.sh

# ---- install, uninstall, deb, check-package ----------------------------------------------------
# `make install [PREFIX=/usr/local] [DESTDIR=]` copies the release binaries, the systemd unit (its /usr/sbin and /usr/bin paths rewritten to SBINDIR
# and BINDIR), the sysusers.d, tmpfiles.d and logrotate snippets, the man pages, the Grafana
# dashboard and the alerting rules, and the example config into /etc/cachewarp/ unless a
# config is already there. `make uninstall` removes them again, but never the config, the cache
# or the logs. `make deb` builds build/pkg/cachewarp_<version>-1_<arch>.deb (scripts/deb.sh)
# and `make check-package` checks it (scripts/check-package.sh: lintian, systemd-analyze,
# the man pages, promtool, make install and uninstall into a scratch root, an unpack of the
# package into another).
PREFIX      ?= /usr/local
SBINDIR     ?= $(PREFIX)/sbin
BINDIR      ?= $(PREFIX)/bin
MANDIR      ?= $(PREFIX)/share/man
DATADIR     ?= $(PREFIX)/share/cachewarp
SYSCONFDIR  ?= /etc
# Debian 12 keeps packaged units in /lib (not yet merged /usr); systemd also reads
# /usr/local/lib/systemd/system, /usr/local/lib/sysusers.d and /usr/local/lib/tmpfiles.d.
ifeq ($(PREFIX),/usr)
UNITDIR     ?= /lib/systemd/system
else
UNITDIR     ?= $(PREFIX)/lib/systemd/system
endif
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
INSTALL     ?= install
MAN8        := man/cachewarpd.8
MAN5        := man/cachewarp.conf.5

.PHONY: install uninstall deb check-package check-package-clean pkg-deps
install: $(BINS)
	$(INSTALL) -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) \
	    $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(SYSCONFDIR)/cachewarp \
	    $(DESTDIR)$(SYSCONFDIR)/logrotate.d $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 \
	    $(DESTDIR)$(DATADIR)/grafana $(DESTDIR)$(DATADIR)/prometheus
	$(INSTALL) -m 0755 $(BUILD)/bin/cachewarpd $(DESTDIR)$(SBINDIR)/cachewarpd
	$(INSTALL) -d $(DESTDIR)$(BINDIR)
	$(INSTALL) -m 0755 $(BUILD)/bin/cwctl $(DESTDIR)$(BINDIR)/cwctl
	$(INSTALL) -m 0644 man/cwctl.8 $(DESTDIR)$(MANDIR)/man8/
	sed -e 's|/usr/sbin/|$(SBINDIR)/|g' -e 's|/usr/bin/cwctl|$(BINDIR)/cwctl|g' \
	    -e 's|/etc/cachewarp/|$(SYSCONFDIR)/cachewarp/|g' \
	    systemd/cachewarp.service >$(DESTDIR)$(UNITDIR)/cachewarp.service.tmp
	chmod 0644 $(DESTDIR)$(UNITDIR)/cachewarp.service.tmp
	mv $(DESTDIR)$(UNITDIR)/cachewarp.service.tmp $(DESTDIR)$(UNITDIR)/cachewarp.service
	$(INSTALL) -m 0644 systemd/cachewarp.sysusers $(DESTDIR)$(SYSUSERSDIR)/cachewarp.conf
	$(INSTALL) -m 0644 systemd/cachewarp.tmpfiles $(DESTDIR)$(TMPFILESDIR)/cachewarp.conf
	$(INSTALL) -m 0644 systemd/cachewarp.logrotate $(DESTDIR)$(SYSCONFDIR)/logrotate.d/cachewarp
	$(INSTALL) -m 0644 $(MAN8) $(DESTDIR)$(MANDIR)/man8/
	$(INSTALL) -m 0644 $(MAN5) $(DESTDIR)$(MANDIR)/man5/
	$(INSTALL) -m 0644 etc/grafana/cachewarp.json $(DESTDIR)$(DATADIR)/grafana/cachewarp.json
	$(INSTALL) -m 0644 etc/prometheus/cachewarp-alerts.yml \
	    $(DESTDIR)$(DATADIR)/prometheus/cachewarp-alerts.yml
	$(INSTALL) -m 0644 etc/cachewarp.conf $(DESTDIR)$(DATADIR)/cachewarp.conf.example
	if [ -e $(DESTDIR)$(SYSCONFDIR)/cachewarp/cachewarp.conf ]; then \
	    echo "install: kept $(DESTDIR)$(SYSCONFDIR)/cachewarp/cachewarp.conf; the example is" \
	         "$(DESTDIR)$(DATADIR)/cachewarp.conf.example" >&2; \
	else $(INSTALL) -m 0644 etc/cachewarp.conf $(DESTDIR)$(SYSCONFDIR)/cachewarp/cachewarp.conf; fi
	@[ -n "$(DESTDIR)" ] || echo "install: now run systemd-sysusers; systemd-tmpfiles --create;" \
	    "systemctl daemon-reload; systemctl enable --now cachewarp" >&2

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/cachewarpd $(DESTDIR)$(BINDIR)/cwctl \
	    $(DESTDIR)$(UNITDIR)/cachewarp.service $(DESTDIR)$(SYSUSERSDIR)/cachewarp.conf \
	    $(DESTDIR)$(TMPFILESDIR)/cachewarp.conf $(DESTDIR)$(SYSCONFDIR)/logrotate.d/cachewarp \
	    $(DESTDIR)$(MANDIR)/man8/cachewarpd.8 $(DESTDIR)$(MANDIR)/man8/cwctl.8 \
	    $(DESTDIR)$(MANDIR)/man5/cachewarp.conf.5 \
	    $(DESTDIR)$(DATADIR)/grafana/cachewarp.json \
	    $(DESTDIR)$(DATADIR)/prometheus/cachewarp-alerts.yml \
	    $(DESTDIR)$(DATADIR)/cachewarp.conf.example
	-rmdir $(DESTDIR)$(DATADIR)/grafana $(DESTDIR)$(DATADIR)/prometheus $(DESTDIR)$(DATADIR) \
	    2>/dev/null
	@echo "uninstall: left $(DESTDIR)$(SYSCONFDIR)/cachewarp/, /var/cache/cachewarp and" \
	    "/var/log/cachewarp (and the cachewarp user) in place" >&2

pkg-deps: deps
	@PKG_DEPS=1 scripts/deps.sh

# The package is built from its own tree (build/deb) with Debian's hardening flags.
deb: pkg-deps
	@scripts/deb.sh

check-package: pkg-deps
	@scripts/check-package.sh

# The same, with the apt-get install test on a fresh debootstrap of Debian 12 (not in .ci/run:
# the root takes minutes to make; see scripts/check-package-clean.sh).
check-package-clean: pkg-deps
	@scripts/check-package-clean.sh
