# switchd build. Our code is built with strict warnings; llhttp is compiled
# from Debian's node-llhttp sources with relaxed warnings, never vendored.
#
#   make            build/switchd
#   make asan       build-asan/switchd (ASan + UBSan)
#   make test       unit + integration tests, plain and sanitizer builds
#   make deps       install the Debian packages the build and tests need
#   make format     apply .clang-format
#   make install    install under $(DESTDIR)$(PREFIX) (PREFIX=/usr/local)

CC       ?= cc
V        ?= 0
Q        := $(if $(filter 1,$(V)),,@)
BUILD    ?= build
LLHTTP_SRC ?= /usr/share/llhttp
LLHTTP_INC ?= /usr/share/include/llhttp

PKGS     := libuv libpq openssl jansson
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

OPT      ?= -O2 -g
WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wpointer-arith -Wformat=2 -Wno-unused-parameter -Werror
SAN      ?=
CFLAGS_ALL := -std=gnu11 $(OPT) $(SAN) -D_GNU_SOURCE -Iinclude -I$(LLHTTP_INC) \
            $(PKG_CFLAGS) -MMD -MP
LDFLAGS_ALL := $(SAN) $(LDFLAGS)
LIBS     := $(PKG_LIBS) -lm

PROXY_SRC  := $(wildcard proxy/*.c)
PROXY_OBJ  := $(PROXY_SRC:%.c=$(BUILD)/%.o)
LIB_OBJ    := $(filter-out $(BUILD)/proxy/main.o,$(PROXY_OBJ))
LLHTTP_OBJ := $(BUILD)/llhttp/api.o $(BUILD)/llhttp/http.o $(BUILD)/llhttp/llhttp.o
CTL_SRC    := $(wildcard switchctl/*.c)
CTL_OBJ    := $(CTL_SRC:switchctl/%.c=$(BUILD)/ctl/%.o)
UNIT_SRC   := $(wildcard tests/unit/test-*.c)
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all asan test unit integration deps format format-check clean bench bench-tls demo demo-simple \
        install

all: $(BUILD)/switchd $(if $(CTL_SRC),$(BUILD)/switchctl) $(UNIT_BIN)

$(BUILD)/switchd: $(PROXY_OBJ) $(LLHTTP_OBJ)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

$(BUILD)/switchctl: $(CTL_OBJ)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

# Unit tests link against an archive, so each pulls in only the modules it
# exercises (a pure module's test needs no event loop).
$(BUILD)/libswitchd.a: $(LIB_OBJ) $(LLHTTP_OBJ)
	@echo "  AR      $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libswitchd.a
	@mkdir -p $(dir $@)
	@echo "  TEST    $@"
	$(Q)$(CC) $(CFLAGS_ALL) $(WARN) -Itests/unit $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

$(BUILD)/proxy/%.o: CFLAGS_EXTRA = $(WARN)

# switchctl's objects live apart from its binary's name.
$(BUILD)/ctl/%.o: switchctl/%.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS_ALL) $(WARN) -c -o $@ $<
$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS_ALL) $(CFLAGS_EXTRA) -c -o $@ $<

$(BUILD)/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS_ALL) -w -c -o $@ $<

asan:
	$(Q)$(MAKE) --no-print-directory BUILD=build-asan OPT="-O1 -g -fno-omit-frame-pointer" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" all

unit: all
	$(Q)tests/run-unit $(BUILD)

integration: all
	$(Q)SWITCHD_BUILD=$(BUILD) /usr/bin/python3 tests/integration/run.py

# The whole suite: plain build, then the same tests under ASan+UBSan.
test: all asan
	$(Q)tests/run-all

deps:
	$(Q)tests/deps.sh

format:
	$(Q)clang-format -i include/*.h proxy/*.c $(wildcard switchctl/*.c) tests/unit/*.c tests/unit/*.h

format-check:
	$(Q)clang-format --dry-run --Werror include/*.h proxy/*.c $(wildcard switchctl/*.c) tests/unit/*.c tests/unit/*.h

demo: all
	$(Q)/usr/bin/python3 conf/django_demo.py

# The demo with two small demo upstreams instead of Django and PostgreSQL.
demo-simple: all
	$(Q)/usr/bin/python3 conf/demo.py

# Throughput, latency, instructions and memory against HAProxy and nginx,
# then a cutover under load through each and switchd's rollback; QUICK=1
# for a few seconds per cell. Reports and plots in bench/out/.
bench: all
	$(Q)bench/proxy-bench.sh $(if $(QUICK),--quick)
	$(Q)/usr/bin/python3 bench/cutover-bench.py $(if $(QUICK),--quick)
bench-tls: all ; $(Q)bench/tls-bench.sh $(if $(QUICK),--quick)

# The binaries, the man pages, and conf/switchd.conf as an example config (it
# documents every directive); nothing is written to /etc.
PREFIX   ?= /usr/local
DESTDIR  ?=
INSTALL  ?= install

install: all
	$(INSTALL) -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/bin \
	  $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5 \
	  $(DESTDIR)$(PREFIX)/share/man/man8 $(DESTDIR)$(PREFIX)/share/doc/switchd
	$(INSTALL) -m 755 $(BUILD)/switchd $(DESTDIR)$(PREFIX)/sbin/switchd
	$(INSTALL) -m 755 $(BUILD)/switchctl $(DESTDIR)$(PREFIX)/bin/switchctl
	$(INSTALL) -m 644 doc/switchctl.1 $(DESTDIR)$(PREFIX)/share/man/man1/switchctl.1
	$(INSTALL) -m 644 doc/switchd.conf.5 $(DESTDIR)$(PREFIX)/share/man/man5/switchd.conf.5
	$(INSTALL) -m 644 doc/switchd.8 $(DESTDIR)$(PREFIX)/share/man/man8/switchd.8
	$(INSTALL) -m 644 conf/switchd.conf $(DESTDIR)$(PREFIX)/share/doc/switchd/switchd.conf

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
