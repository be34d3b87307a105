# make faults: t/081-faults-under-load.t with every phase three times
# longer (ESP_FAULTS_SCALE=N for another factor), in its own run folder.
# The suite (make test) runs the same file at scale 1 (about 40 s).

.PHONY: faults

faults: deps
	$(MAKE) all
	@command -v wrk >/dev/null || ESP_EXTRA_PKGS=wrk t/setup/deps.sh
	ESP_RUN=/tmp/esp-faults ESP_FAULTS_SCALE=$${ESP_FAULTS_SCALE:-3} \
	    ESP_MODULE=$(CURDIR)/$(MODULE) t/run.sh -v t/081-faults-under-load.t
