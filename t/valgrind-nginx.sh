#!/bin/sh
# nginx under valgrind memcheck ("make test-valgrind"): the harness runs it
# as ESP_NGINX. nginx forks its master and workers without exec, which
# valgrind follows; --trace-children=yes also covers an exec (binary
# upgrade). One log per process in ESP_VG_LOG (default $ESP_RUN/valgrind):
# vg.PID.log. Known start-up leaks of nginx, OpenSSL and libldap are
# suppressed by t/valgrind.supp; t/sanitizer-check.pl then fails on any
# error or definite leak with a frame of the module.
set -e

dir=${ESP_VG_LOG:-${ESP_RUN:-/tmp/esp-run}/valgrind}
mkdir -p "$dir"
chmod 1777 "$dir"

exec valgrind --tool=memcheck --trace-children=yes \
    --log-file="$dir/vg.%p.log" \
    --suppressions="$(dirname "$0")/valgrind.supp" \
    --leak-check=full --show-leak-kinds=definite \
    --errors-for-leak-kinds=definite --num-callers=30 \
    --error-limit=no --track-fds=no ${ESP_VG_OPTS:-} \
    "${ESP_REAL_NGINX:-/usr/sbin/nginx}" "$@"
