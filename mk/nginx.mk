# Every supported nginx.  Included by the Makefile.
#
#   make test-nginx NGINX_SRC=DIR
#                          the whole suite against nginx built from DIR
#                          (with --with-compat, SSL, HTTP/2, threads and the
#                          module, in build/nginx-VERSION); = make test
#                          NGINX_SRC=DIR
#   make test-static NGINX_SRC=DIR
#                          nginx from DIR with the module compiled in
#                          (--add-module, build/nginx-VERSION-static), and
#                          t/static-smoke.sh against it
#   make nginx-sources     unpack the trees below into build/src
#                          (tools/nginx-sources says where each comes from)
#   make test-all-nginx    Debian's nginx (1.22), then 1.26.3, 1.30.4 and
#                          1.31.4: the whole suite on each, and each built
#                          with the module compiled in (1.22.1 too); says
#                          which trees it could not have and skipped
#
# None of this is needed by "make test", which uses Debian's nginx only.

SRC_TREES   := $(CURDIR)/build/src
ALL_NGINX   := 1.26.3 1.30.4 1.31.4
ALL_STATIC  := 1.22.1 1.26.3 1.30.4 1.31.4

.PHONY: test-nginx test-static nginx-sources test-all-nginx

test-nginx:
	@[ "$(NGINX_SRC)" != "$(DEBIAN_SRC)" ] || \
	    { echo "test-nginx: set NGINX_SRC=DIR (an nginx source tree)"; exit 2; }
	$(MAKE) test NGINX_SRC=$(NGINX_SRC)

test-static:
	@[ "$(NGINX_SRC)" != "$(DEBIAN_SRC)" ] || \
	    { echo "test-static: set NGINX_SRC=DIR (an nginx source tree)"; exit 2; }
	$(MAKE) STATIC=1 NGINX_SRC=$(NGINX_SRC) \
	    $(CURDIR)/build/nginx-$(NGX_VERSION)-static/nginx/objs/nginx
	t/static-smoke.sh $(CURDIR)/build/nginx-$(NGX_VERSION)-static/nginx/objs/nginx

nginx-sources:
	@tools/nginx-sources $(SRC_TREES)

# One line per version in the summary; a failed version does not stop the
# others, but fails the target.
test-all-nginx: deps
	@tools/nginx-sources $(SRC_TREES) | tee $(CURDIR)/build/sources.txt
	@rc=0; sum=""; \
	say() { sum="$$sum$$1\n"; }; \
	if $(MAKE) test; then say "1.22 (Debian) suite: passed"; \
	else say "1.22 (Debian) suite: FAILED"; rc=1; fi; \
	for v in $(ALL_NGINX); do \
	    t=$(SRC_TREES)/nginx-$$v; \
	    if [ ! -f $$t/src/core/nginx.h ]; then \
	        say "$$v suite: skipped (no source tree)"; continue; fi; \
	    if $(MAKE) test NGINX_SRC=$$t; then say "$$v suite: passed"; \
	    else say "$$v suite: FAILED"; rc=1; fi; \
	done; \
	for v in $(ALL_STATIC); do \
	    t=$(SRC_TREES)/nginx-$$v; \
	    if [ ! -f $$t/src/core/nginx.h ]; then \
	        say "$$v compiled in: skipped (no source tree)"; continue; fi; \
	    if $(MAKE) test-static NGINX_SRC=$$t; then \
	        say "$$v compiled in: passed"; \
	    else say "$$v compiled in: FAILED"; rc=1; fi; \
	done; \
	printf "\ntest-all-nginx:\n$$sum"; exit $$rc
