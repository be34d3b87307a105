# ngx_exchange_esp: the login and logout pages, embedded into the module.
# Included by the Makefile.
#
#   make pages             rebuild src/ngx_esp_pages.h from templates/*.html
#                          (templates/embed.sh; the file is rewritten only
#                          when its content changes); commit both
#   make pages-check       fail when the checked-in header is out of date
#                          (t/001-generated-pages.t checks the same, so
#                          "make test" fails on a stale header)

.PHONY: pages pages-check

pages:
	templates/embed.sh

pages-check:
	templates/embed.sh --check
