# ngx_exchange_esp: the test suite against a module built with ASan and
# UBSan, and under valgrind memcheck.  Included by the Makefile.
#
#   make test-asan         build/asan: the module with -fsanitize=address,
#                          undefined; every test with nginx run by
#                          t/asan-nginx.sh; fails on any ASan error, any
#                          UBSan report, any leak with a frame of the module
#   make test-valgrind     build/valgrind: the module as released; every
#                          test (VALGRIND_TESTS) with nginx under memcheck
#                          (t/valgrind-nginx.sh); fails on any memcheck error
#                          or definite leak with a frame of the module
#
#   (t/sanitizer-check.pl reads the reports; leaks that are nginx's own,
#   such as its cycle and event arrays kept until exit, are listed only)
#
#   ESP_RUN=DIR            run folder (default /tmp/esp-run-asan and
#                          /tmp/esp-run-valgrind); reports in DIR/sanitizer,
#                          DIR/valgrind
#   SAN_TESTS=t/x.t ...    another selection of tests (prove arguments)
#
# Debian's nginx is not built with ASan: the wrapper preloads gcc's
# libasan. ASan then checks every access the module's code makes to heap
# blocks (ngx_alloc(), libraries), to its stack and globals, but not
# overflows inside nginx's pools, nor accesses made by nginx or the
# libraries themselves; the fuzz targets cover the parsers (mk/fuzz.mk).

ASAN_BUILD   := $(BUILD)/asan
ASAN_MODULE  := $(ASAN_BUILD)/nginx/objs/$(MODULE)
ASAN_CC      := -fsanitize=address,undefined -fsanitize-recover=address \
                -fno-omit-frame-pointer
ASAN_RUN     ?= /tmp/esp-run-asan
SAN_TESTS    ?=

VG_BUILD     := $(BUILD)/valgrind
VG_MODULE    := $(VG_BUILD)/nginx/objs/$(MODULE)
VG_RUN       ?= /tmp/esp-run-valgrind

# The whole suite holds its timing under memcheck (measured: 8 min on 2
# cores, against 4.5 min for test-asan); VALGRIND_TESTS=... for a part.
VALGRIND_TESTS ?= -r t/

.PHONY: test-asan test-valgrind asan-module valgrind-module

# the module, built by nginx's build system in a tree of its own (the
# Makefile's configure rule with another BUILD), never copied over the
# released ngx_exchange_esp_module.so
asan-module:
	$(MAKE) BUILD=$(ASAN_BUILD) EXTRA_CC='$(ASAN_CC)' \
	    $(ASAN_BUILD)/nginx/Makefile
	$(MAKE) -C $(ASAN_BUILD)/nginx -f objs/Makefile modules

valgrind-module:
	$(MAKE) BUILD=$(VG_BUILD) $(VG_BUILD)/nginx/Makefile
	$(MAKE) -C $(VG_BUILD)/nginx -f objs/Makefile modules

test-asan: deps asan-module
	@run=$${ESP_RUN:-$(ASAN_RUN)}; log=$$run/sanitizer; \
	rm -rf $$log; start=$$(date +%s); \
	ESP_RUN=$$run ESP_SAN_LOG=$$log ESP_FUZZ_SMOKE=0 \
	    ESP_NGINX=$(CURDIR)/t/asan-nginx.sh ESP_MODULE=$(ASAN_MODULE) \
	    t/run.sh $(if $(SAN_TESTS),$(SAN_TESTS),-r t/); rc=$$?; \
	echo "test-asan: tests exit $$rc after $$(( $$(date +%s) - start )) s"; \
	perl t/sanitizer-check.pl asan $$log || exit 1; exit $$rc

test-valgrind: deps valgrind-module
	@command -v valgrind >/dev/null || \
	    ESP_EXTRA_PKGS=valgrind t/setup/deps.sh
	@run=$${ESP_RUN:-$(VG_RUN)}; log=$$run/valgrind; \
	rm -rf $$log; start=$$(date +%s); \
	ESP_RUN=$$run ESP_VG_LOG=$$log ESP_FUZZ_SMOKE=0 \
	    ESP_NGINX=$(CURDIR)/t/valgrind-nginx.sh ESP_MODULE=$(VG_MODULE) \
	    t/run.sh $(or $(SAN_TESTS),$(VALGRIND_TESTS)); rc=$$?; \
	echo "test-valgrind: tests exit $$rc after $$(( $$(date +%s) - start )) s"; \
	perl t/sanitizer-check.pl valgrind $$log || exit 1; exit $$rc
