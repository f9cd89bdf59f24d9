# CacheWarp build. `make` builds, `make run` runs the daemon on the example config,
# `make check` runs every test, `make check SAN=1` does so under ASan+UBSan, `make bench`
# compares the hit path against nginx. Each target first installs missing Debian packages.

CC      ?= gcc
PKGS    := libmicrohttpd lmdb hiredis libconfig libcurl libsystemd
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
LIB      := $(BUILD)/libcw.a
CMD_SRC  := $(wildcard cmd/*.c)
BINS     := $(CMD_SRC:cmd/%.c=$(BUILD)/bin/%)
TEST_ORIGIN := $(BUILD)/bin/cw-test-origin
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNITS    := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)

.PHONY: all deps run check unit integration bench clean format fuzz
all: $(BINS) $(TEST_ORIGIN) $(UNITS)

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

$(BUILD)/tests/test_%: $(BUILD)/tests/unit/test_%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ -o $@ $(CHECK_LIBS) $(LDLIBS)

run: deps all
	@BUILD=$(BUILD) ORIGIN="$(ORIGIN)" scripts/run.sh

check: deps all
	@BUILD=$(BUILD) SAN=$(SAN) scripts/check.sh

unit: all
	@BUILD=$(BUILD) SAN=$(SAN) ONLY=unit scripts/check.sh

integration: all
	@BUILD=$(BUILD) SAN=$(SAN) ONLY=integration scripts/check.sh

bench: deps all
	@BENCH_DEPS=1 scripts/deps.sh
	@BUILD=$(BUILD) tests/bench/bench.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(BINS:$(BUILD)/bin/%=$(BUILD)/cmd/%.d)
-include $(UNITS:$(BUILD)/tests/%=$(BUILD)/tests/unit/%.d)
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
