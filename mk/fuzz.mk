# ngx_exchange_esp: libFuzzer targets for every parser of client bytes
# (fuzz/README.md).  Included by the Makefile.
#
#   make fuzz              build, then fuzz each target FUZZ_SECONDS (60)
#   make fuzz-smoke        build, replay seeds and regressions, fuzz 10 s each
#   make fuzz-replay       build, replay seeds and regressions only
#   make fuzz-build        only build (build/fuzz/bin/fuzz_*)
#   make fuzz-seeds        rewrite the seeds made with the real seal function
#   make fuzz-run-TARGET / fuzz-smoke-TARGET     one target
#
#   ESP_FUZZ_STRICT=1      also check the open findings (fuzz/README.md),
#                          and no UBSan suppressions
#
# Needs clang with libFuzzer (Debian: clang libclang-rt-14-dev llvm) and
# lld: the targets include the module's .c files and rely on the linker's
# --gc-sections to drop the nginx functions they do not call (GNU ld keeps
# them when coverage instrumentation is on).

FUZZ_CC            ?= clang
FUZZ_SECONDS       ?= 60
FUZZ_SMOKE_SECONDS ?= 10
FUZZ_BUILD         := $(BUILD)/fuzz
FUZZ_NGINX         := $(FUZZ_BUILD)/nginx
FUZZ_TARGETS       := session_open session_plain form_body form_headers \
                      return_url basic_logon path glob_hosts ldap_response \
                      http_headers jwt radius_reply cluster_msg
FUZZ_BINS          := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/bin/fuzz_%)

FUZZ_INCS  := -I $(FUZZ_NGINX)/objs $(addprefix -I $(FUZZ_NGINX)/src/, \
              core event event/modules os/unix http http/modules http/v2) \
              -I src -I fuzz
FUZZ_FLAGS := -g -O1 -fno-omit-frame-pointer \
              -fsanitize=address,undefined -fno-sanitize-recover=all \
              -fsanitize-recover=nonnull-attribute \
              -ffunction-sections -fdata-sections \
              -W -Wall -Wpointer-arith -Wno-unused-parameter -Werror
FUZZ_LIBS  := -fuse-ld=lld -Wl,--gc-sections -lldap -llber -lcrypto -lhiredis

# the longest input worth trying, per target (libFuzzer's -max_len)
FUZZ_MAX_LEN               := 4096
FUZZ_MAX_LEN_session_open  := 4200
FUZZ_MAX_LEN_session_plain := 3000
FUZZ_MAX_LEN_form_body     := 8300
FUZZ_MAX_LEN_jwt           := 9000

FUZZ_UBSAN := $(if $(ESP_FUZZ_STRICT),,suppressions=$(CURDIR)/fuzz/ubsan.supp:)
FUZZ_ENV   := UBSAN_OPTIONS=$(FUZZ_UBSAN)halt_on_error=1:print_stacktrace=1 \
              ASAN_OPTIONS=detect_leaks=1:abort_on_error=0

# -timeout: one input taking seconds is a finding too (say, a glob that
# backtracks); -rss_limit_mb: the ASan quarantine grows to ~700 MB
FUZZ_ARGS   = -timeout=10 -rss_limit_mb=2048 -print_final_stats=0 \
              -max_len=$(or $(FUZZ_MAX_LEN_$*),$(FUZZ_MAX_LEN)) \
              -artifact_prefix=$(FUZZ_BUILD)/artifacts/$*/
FUZZ_INPUTS = fuzz/corpus/$* $(wildcard fuzz/regressions/$*)

.PHONY: fuzz fuzz-build fuzz-smoke fuzz-replay fuzz-seeds fuzz-clean \
        fuzz-check fuzz-list

fuzz-list:
	@echo $(FUZZ_TARGETS)

fuzz-check:
	@command -v $(FUZZ_CC) >/dev/null && command -v ld.lld >/dev/null || { \
	    echo "fuzz: needs $(FUZZ_CC) and lld (Debian: apt-get install" \
	         "clang libclang-rt-14-dev llvm lld)" >&2; exit 1; }

# headers only: nginx's configure, run with clang, for objs/ngx_auto_*.h
$(FUZZ_NGINX)/objs/ngx_auto_config.h: | fuzz-check
	rm -rf $(FUZZ_NGINX)
	mkdir -p $(FUZZ_BUILD)
	cp -r $(NGINX_SRC) $(FUZZ_NGINX)
	cd $(FUZZ_NGINX) && bash -c ' \
	    flags=(--with-compat --with-http_ssl_module --with-threads); \
	    if [ -f conf_flags ]; then . ./conf_flags; \
	        flags=("$${NGX_CONF_FLAGS[@]}"); fi; \
	    conf=./configure; [ -x $$conf ] || conf=auto/configure; \
	    $$conf "$${flags[@]}" --with-cc=$(FUZZ_CC) \
	        --add-dynamic-module=$(CURDIR)' > $(FUZZ_BUILD)/configure.log 2>&1 \
	    || { tail -30 $(FUZZ_BUILD)/configure.log; rm -rf $(FUZZ_NGINX); exit 1; }

$(FUZZ_BUILD)/ngx_shim.o: fuzz/ngx_shim.c $(FUZZ_NGINX)/objs/ngx_auto_config.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link $(FUZZ_INCS) \
	    -c $< -o $@

$(FUZZ_BUILD)/bin/fuzz_%: fuzz/fuzz_%.c $(FUZZ_BUILD)/ngx_shim.o \
        $(wildcard fuzz/*.h src/*.c src/*.h) | fuzz-check
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer $(FUZZ_INCS) \
	    $< $(FUZZ_BUILD)/ngx_shim.o $(FUZZ_LIBS) -o $@

fuzz-build: $(FUZZ_BINS)

# fuzz: a working corpus per target in build/fuzz/corpus/, kept between
# runs; a crash stops the run and leaves its input in build/fuzz/artifacts/
fuzz-run-%: $(FUZZ_BUILD)/bin/fuzz_%
	@mkdir -p $(FUZZ_BUILD)/corpus/$* $(FUZZ_BUILD)/artifacts/$*
	@echo "fuzz: $* for $(FUZZ_SECONDS) s"
	@$(FUZZ_ENV) $< $(FUZZ_ARGS) -max_total_time=$(FUZZ_SECONDS) \
	    $(FUZZ_BUILD)/corpus/$* $(FUZZ_INPUTS) \
	    > $(FUZZ_BUILD)/$*.log 2>&1 \
	    && grep -h "^Done" $(FUZZ_BUILD)/$*.log \
	    || { tail -60 $(FUZZ_BUILD)/$*.log; \
	         echo "fuzz: $* FAILED (log $(FUZZ_BUILD)/$*.log, input in" \
	              "$(FUZZ_BUILD)/artifacts/$*/)"; exit 1; }

fuzz: $(FUZZ_TARGETS:%=fuzz-run-%)

# the smoke run: the seeds and regressions, then a short fuzz from the
# seeds alone (a fresh corpus each time)
fuzz-smoke-%: $(FUZZ_BUILD)/bin/fuzz_%
	@rm -rf $(FUZZ_BUILD)/smoke/$*
	@mkdir -p $(FUZZ_BUILD)/smoke/$* $(FUZZ_BUILD)/artifacts/$*
	@$(FUZZ_ENV) $< $(FUZZ_ARGS) -runs=0 $(FUZZ_INPUTS) \
	    > $(FUZZ_BUILD)/$*.smoke.log 2>&1 \
	 && $(FUZZ_ENV) $< $(FUZZ_ARGS) -max_total_time=$(FUZZ_SMOKE_SECONDS) \
	    $(FUZZ_BUILD)/smoke/$* fuzz/corpus/$* \
	    >> $(FUZZ_BUILD)/$*.smoke.log 2>&1 \
	 && echo "fuzz-smoke: $* ok ($$(grep -h '^Done' \
	        $(FUZZ_BUILD)/$*.smoke.log | tail -1))" \
	 || { tail -60 $(FUZZ_BUILD)/$*.smoke.log; \
	      echo "fuzz-smoke: $* FAILED (log $(FUZZ_BUILD)/$*.smoke.log)"; \
	      exit 1; }

fuzz-smoke: $(FUZZ_TARGETS:%=fuzz-smoke-%)

fuzz-replay-%: $(FUZZ_BUILD)/bin/fuzz_%
	@mkdir -p $(FUZZ_BUILD)/artifacts/$*
	@$(FUZZ_ENV) $< $(FUZZ_ARGS) -runs=0 $(FUZZ_INPUTS) \
	    > $(FUZZ_BUILD)/$*.replay.log 2>&1 \
	 && echo "fuzz-replay: $* ok" \
	 || { grep -h -B2 -A12 "ERROR\|property failed" \
	          $(FUZZ_BUILD)/$*.replay.log | head -40; \
	      echo "fuzz-replay: $* FAILED (log $(FUZZ_BUILD)/$*.replay.log)"; \
	      exit 1; }

fuzz-replay: $(FUZZ_TARGETS:%=fuzz-replay-%)

# the seeds that need the real seal function and the fixed keys
fuzz-seeds: $(FUZZ_BUILD)/bin/fuzz_session_open \
        $(FUZZ_BUILD)/bin/fuzz_session_plain $(FUZZ_BUILD)/bin/fuzz_form_headers
	rm -f fuzz/corpus/session_open/* fuzz/corpus/session_plain/* \
	    fuzz/corpus/form_headers/*
	mkdir -p fuzz/corpus/session_open fuzz/corpus/session_plain \
	    fuzz/corpus/form_headers
	ESP_FUZZ_SEEDS=fuzz/corpus/session_open $(FUZZ_BUILD)/bin/fuzz_session_open
	ESP_FUZZ_SEEDS=fuzz/corpus/session_plain \
	    $(FUZZ_BUILD)/bin/fuzz_session_plain
	ESP_FUZZ_SEEDS=fuzz/corpus/form_headers \
	    $(FUZZ_BUILD)/bin/fuzz_form_headers

fuzz-clean:
	rm -rf $(FUZZ_BUILD)
