# ngx_exchange_esp: build, test, demo.
#
#   make                 build ngx_exchange_esp_module.so for Debian's nginx
#   make NGINX_SRC=DIR   build against an upstream nginx source tree instead
#   make install         copy the module where Debian's nginx looks for it
#   make test            install what the tests need, build, run every test
#   make demo            install, build, start the demo (make demo-stop)

MODULE      := ngx_exchange_esp_module.so
BUILD       := $(CURDIR)/build
NGINX_SRC   ?= /usr/share/nginx/src
NGINX       ?= /usr/sbin/nginx
MODULES_DIR ?= /usr/lib/nginx/modules
CC_OPT      ?= -g -O2 -fstack-protector-strong -Wformat \
               -Werror=format-security -fPIC -Wdate-time -D_FORTIFY_SOURCE=2
LD_OPT      ?= -Wl,-z,relro -Wl,-z,now -fPIC
EXTRA_CC    ?=

SOURCES := config ngx_exchange_esp_module.c $(wildcard src/*.c src/*.h)

.PHONY: all install deps test demo demo-stop bench clean

all: $(MODULE)

# The module is built by nginx's own build system, from a private copy of
# the configure tree, with the same flags the nginx binary was built with,
# so that the binary signature matches and "load_module" accepts it.
$(BUILD)/nginx/Makefile: $(NGINX_SRC)/configure config
	rm -rf $(BUILD)/nginx
	mkdir -p $(BUILD)
	cp -r $(NGINX_SRC) $(BUILD)/nginx
	cd $(BUILD)/nginx && bash -c ' \
	    flags=(); \
	    if [ -f conf_flags ]; then . ./conf_flags; \
	        flags=("$${NGX_CONF_FLAGS[@]}"); \
	    else flags=(--with-compat --with-http_ssl_module --with-threads); \
	    fi; \
	    ./configure "$${flags[@]}" \
	        --with-cc-opt="$(CC_OPT) $(EXTRA_CC)" --with-ld-opt="$(LD_OPT) $(EXTRA_CC)" \
	        --add-dynamic-module=$(CURDIR)' > $(BUILD)/configure.log 2>&1 \
	    || { tail -30 $(BUILD)/configure.log; exit 1; }

$(MODULE): $(BUILD)/nginx/Makefile $(SOURCES)
	$(MAKE) -C $(BUILD)/nginx -f objs/Makefile modules
	cp $(BUILD)/nginx/objs/$(MODULE) $(MODULE)

install: $(MODULE)
	install -d $(MODULES_DIR)
	install -m 644 $(MODULE) $(MODULES_DIR)/$(MODULE)
	@echo "installed $(MODULES_DIR)/$(MODULE); add to nginx.conf:"
	@echo "    load_module modules/$(MODULE);"

# Debian packages the build, the tests and the demo need.
deps:
	@t/setup/deps.sh

test: deps
	$(MAKE) all
	ESP_MODULE=$(CURDIR)/$(MODULE) t/run.sh

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
	rm -rf $(BUILD) $(MODULE)

# more targets (fuzzing, sanitizers) live in mk/
-include mk/*.mk
