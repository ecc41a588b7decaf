# Moongate -- one plain Makefile.
#
#   make            build bin/moongate
#   make deps       install the Debian packages the build and tests need
#   make run        deps + build + demo upstream + gateway on examples/
#   make test       deps + build + every test (C unit, Lua specs, e2e)
#   make asan       the test suite under AddressSanitizer + UBSan
#   make fuzz       libFuzzer on the request parser and declarative paths
#                   (FUZZ_SECONDS each)
#   make bench      wrk against Moongate and nginx on the same upstream
#   make lint       clang-format check and cppcheck

CC       ?= cc
BUILD    ?= build
OPT      ?= -O2
SAN      ?=
# CFLAGS from the command line adds to these, never replaces them
override CFLAGS := $(OPT) -g $(SAN) -std=gnu11 -Wall -Wextra -Werror \
            -fno-strict-aliasing -D_GNU_SOURCE -Icore $(CFLAGS)
PKGS     := yaml-0.1 libpcre2-8 luajit
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
override CFLAGS += $(PKG_CFLAGS)
LDLIBS   += $(PKG_LIBS) -lev -lhttp_parser -lcares -lm -lmbedtls -lmbedx509 -lmbedcrypto -llmdb
LDFLAGS  ?=
override LDFLAGS += $(SAN)

CORE_SRCS := $(shell find core -name '*.c' -not -name main.c | sort)
CORE_OBJS := $(CORE_SRCS:%.c=$(BUILD)/%.o)
MAIN_OBJ  := $(BUILD)/core/main.o
HDRS      := $(shell find core -name '*.h')

UNIT_SRCS := $(wildcard spec/c/test_*.c)
UNIT_BINS := $(UNIT_SRCS:spec/c/%.c=$(BUILD)/spec/%)

HELPER_BINS := $(BUILD)/mockup $(BUILD)/mockdns
# the default build is bin/moongate; other builds (asan) stay in their dir
MOONGATE := $(if $(filter build,$(BUILD)),bin/moongate,$(BUILD)/moongate)

.PHONY: all deps run test unit asan fuzz bench lint clean

all: $(MOONGATE) $(HELPER_BINS)

# -rdynamic: the FFI API (core/lua/mg_lua_api.h) is looked up by LuaJIT in
# the executable's own symbol table; --whole-archive keeps every API
# function even when no C code calls it.
$(MOONGATE): $(MAIN_OBJ) $(BUILD)/libmoongate.a
	$(CC) $(LDFLAGS) -rdynamic -o $@ $(MAIN_OBJ) \
	    -Wl,--whole-archive $(BUILD)/libmoongate.a -Wl,--no-whole-archive \
	    $(LDLIBS)

$(BUILD)/libmoongate.a: $(CORE_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# C unit tests #include the .c under test (to reach static functions) and
# link the rest of the core from the archive.
$(BUILD)/spec/%: spec/c/%.c spec/c/tap.h $(BUILD)/libmoongate.a $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Ispec/c -o $@ $< $(BUILD)/libmoongate.a $(LDLIBS)

$(BUILD)/mockup: spec/helpers/mockup.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< -lev

$(BUILD)/mockdns: spec/helpers/mockdns.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< -lev

unit: $(UNIT_BINS)

deps:
	@bin/install-deps

run: deps all
	@bin/run-example

test: deps
	@$(MAKE) --no-print-directory all unit
	@spec/run

asan:
	@bin/install-deps
	@$(MAKE) --no-print-directory BUILD=build-asan OPT=-O1 \
	    SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -DMG_DEBUG_PALLOC" \
	    all unit
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    MOONGATE_BUILD=build-asan MOONGATE_BIN=build-asan/moongate spec/run

FUZZ_SECONDS ?= 60
FUZZ_CC := clang -g -O1 -fsanitize=fuzzer,address,undefined -std=gnu11 \
	    -D_GNU_SOURCE -DMG_DEBUG_PALLOC -Icore $(PKG_CFLAGS)
# the declarative path: YAML/JSON -> JSON for Lua, and the C loader
FUZZ_DECL_SRCS := core/conf/mg_declarative.c core/conf/mg_decl_entity.c \
	    core/conf/mg_decl_value.c core/conf/mg_yaml_json.c \
	    core/conf/mg_config.c core/base/mg_pool.c
fuzz:
	@bin/install-deps
	@mkdir -p build-fuzz/corpus build-fuzz/corpus_decl
	$(FUZZ_CC) -o build-fuzz/fuzz_http \
	    spec/fuzz/fuzz_http.c core/http/mg_http_parser.c -lhttp_parser
	$(FUZZ_CC) -o build-fuzz/fuzz_decl \
	    spec/fuzz/fuzz_decl.c $(FUZZ_DECL_SRCS) -lyaml -lpcre2-8
	build-fuzz/fuzz_http -max_total_time=$(FUZZ_SECONDS) \
	    -max_len=8192 build-fuzz/corpus spec/fuzz/corpus
	build-fuzz/fuzz_decl -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	    -max_len=8192 -dict=spec/fuzz/decl.dict \
	    build-fuzz/corpus_decl spec/fuzz/corpus_decl

bench: all
	@bench/run

lint:
	@clang-format --dry-run --Werror $(shell find core -name '*.[ch]') || true
	@cppcheck --quiet --error-exitcode=1 -Icore --suppress=missingIncludeSystem core

clean:
	rm -rf $(BUILD) build-asan build-fuzz bin/moongate
