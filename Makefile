# ngx_exchange_esp: build, test, demo.
#
#   make                 build ngx_exchange_esp_module.so for Debian's nginx
#   make NGINX_SRC=DIR   build against an upstream nginx source tree instead
#   make install         copy the module where Debian's nginx looks for it
#   make test            install what the tests need, build, run every test
#   make test NGINX_SRC=DIR
#                        build nginx itself from DIR (with the module), run
#                        every test against that binary (= make test-nginx)
#   make test-all-nginx  the whole suite on every nginx at hand (mk/nginx.mk)
#   make demo            install, build, start the demo (make demo-stop)

MODULE      := ngx_exchange_esp_module.so
DEBIAN_SRC  := /usr/share/nginx/src
NGINX_SRC   ?= $(DEBIAN_SRC)
override NGINX_SRC := $(abspath $(NGINX_SRC))

# Debian's tree builds into build/; an upstream tree into a folder of its
# own, build/nginx-VERSION, so that several versions sit side by side.
ifeq ($(NGINX_SRC),$(DEBIAN_SRC))
BUILD       := $(CURDIR)/build
NGINX       ?= /usr/sbin/nginx
MODULE_OUT  := $(MODULE)
else
NGX_VERSION := $(shell sed -n 's/^\#define NGINX_VERSION *"\(.*\)"/\1/p' \
                   $(NGINX_SRC)/src/core/nginx.h 2>/dev/null)
ifeq ($(NGX_VERSION),)
$(error NGINX_SRC=$(NGINX_SRC) is not an nginx source tree (no src/core/nginx.h))
endif
BUILD       := $(CURDIR)/build/nginx-$(NGX_VERSION)$(if $(STATIC),-static)
NGINX       := $(BUILD)/nginx/objs/nginx
# the .so for another nginx stays in its build folder: the one at the top
# is always Debian's, which make test loads
MODULE_OUT  := $(BUILD)/nginx/objs/$(MODULE)
endif

# How an upstream tree is configured: NGINX_CONFIGURE_ARGS, when given (the
# "configure arguments" of your nginx -V), else what the test suite needs;
# a Debian tree brings its own (conf_flags).
NGINX_CONFIGURE_ARGS ?= --with-compat --with-debug --with-pcre-jit \
    --with-http_ssl_module --with-http_v2_module --with-http_realip_module \
    --with-http_stub_status_module --with-http_auth_request_module \
    --with-threads
MODULES_DIR ?= /usr/lib/nginx/modules
CC_OPT      ?= -g -O2 -fstack-protector-strong -Wformat \
               -Werror=format-security -fPIC -Wdate-time -D_FORTIFY_SOURCE=2
LD_OPT      ?= -Wl,-z,relro -Wl,-z,now -fPIC
EXTRA_CC    ?=

SOURCES := config ngx_exchange_esp_module.c $(wildcard src/*.c src/*.h)

.PHONY: all install deps test demo demo-stop bench clean

all: $(MODULE_OUT)

# The module is built by nginx's own build system, from a private copy of
# the configure tree, with the same flags the nginx binary was built with,
# so that the binary signature matches and "load_module" accepts it.
$(BUILD)/nginx/Makefile: $(NGINX_SRC)/src/core/nginx.h config
	rm -rf $(BUILD)/nginx
	mkdir -p $(BUILD)
	cp -r $(NGINX_SRC) $(BUILD)/nginx
	cd $(BUILD)/nginx && bash -c ' \
	    if [ -f conf_flags ]; then . ./conf_flags; \
	        flags=("$${NGX_CONF_FLAGS[@]}"); \
	    else eval "flags=($(NGINX_CONFIGURE_ARGS))"; \
	    fi; \
	    conf=./configure; [ -x $$conf ] || conf=auto/configure; \
	    $$conf "$${flags[@]}" \
	        --with-cc-opt="$(CC_OPT) $(EXTRA_CC)" --with-ld-opt="$(LD_OPT) $(EXTRA_CC)" \
	        --$(if $(STATIC),add-module,add-dynamic-module)=$(CURDIR)' \
	    > $(BUILD)/configure.log 2>&1 \
	    || { tail -30 $(BUILD)/configure.log; exit 1; }

$(MODULE_OUT): $(BUILD)/nginx/Makefile $(SOURCES)
	$(MAKE) -C $(BUILD)/nginx -f objs/Makefile modules
	$(if $(filter $(MODULE),$(MODULE_OUT)),cp $(BUILD)/nginx/objs/$(MODULE) $(MODULE))
	@echo "built $(MODULE_OUT)"

# nginx itself from an upstream tree (with the module), for the tests
$(BUILD)/nginx/objs/nginx: $(BUILD)/nginx/Makefile $(SOURCES)
	$(MAKE) -C $(BUILD)/nginx -f objs/Makefile

install: $(MODULE_OUT)
	install -d $(MODULES_DIR)
	install -m 644 $(MODULE) $(MODULES_DIR)/$(MODULE)
	@echo "installed $(MODULES_DIR)/$(MODULE); add to nginx.conf:"
	@echo "    load_module modules/$(MODULE);"

# Debian packages the build, the tests and the demo need.
deps:
	@t/setup/deps.sh

ifeq ($(NGINX_SRC),$(DEBIAN_SRC))
test: deps
	$(MAKE) all
	ESP_MODULE=$(CURDIR)/$(MODULE) t/run.sh
else
test: deps
	$(MAKE) NGINX_SRC=$(NGINX_SRC) $(NGINX)
	@echo "test: the whole suite on $$($(NGINX) -v 2>&1) ($(NGINX))"
	ESP_NGINX=$(NGINX) ESP_MODULE=$(BUILD)/nginx/objs/$(MODULE) \
	    ESP_RUN=$${ESP_RUN:-/tmp/esp-run-$(NGX_VERSION)} t/run.sh
endif

# The demo: Samba AD, two stand-in Exchange servers and nginx with the module
# in a network namespace of their own, reached on the host's 127.0.0.1:8443.
demo: deps
	$(MAKE) all
	ESP_MODULE=$(CURDIR)/$(MODULE) demo/run.sh

demo-stop:
	@demo/stop.sh

# Requests/s and latency against plain nginx, measured in one run.
bench: deps
	$(MAKE) all
	@command -v wrk >/dev/null || ESP_EXTRA_PKGS=wrk t/setup/deps.sh
	ESP_RUN=/tmp/esp-bench ESP_MODULE=$(CURDIR)/$(MODULE) \
	    t/run.sh --exec perl bench/bench.pl

clean:
	rm -rf $(CURDIR)/build $(MODULE)

# more targets (fuzzing, sanitizers) live in mk/
-include mk/*.mk
