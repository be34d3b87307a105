#!/bin/sh
# nginx for a module built with -fsanitize=address,undefined ("make
# test-asan"): the harness runs it as ESP_NGINX. Debian's nginx is not
# built with ASan, so the ASan runtime must be loaded first (LD_PRELOAD);
# the module pulls in libubsan itself. Reports go to ESP_SAN_LOG (default
# $ESP_RUN/sanitizer), one file per process: asan.PID, ubsan.PID.
#
# The workers run as nobody: the report folder is world-writable (sticky).
# What ASan cannot see here: overflows inside nginx's pools, which are
# carved out of larger blocks by the uninstrumented nginx binary (the fuzz
# targets give every pool allocation its own block for that reason).
set -e

dir=${ESP_SAN_LOG:-${ESP_RUN:-/tmp/esp-run}/sanitizer}
mkdir -p "$dir"
chmod 1777 "$dir"

# "nginx -t" returns from main() with its cycle in a local variable: all of
# it would show as leaked
leaks=${ESP_ASAN_LEAKS:-1}
for a in "$@"; do
    case $a in -t|-T|-tq|-qt) leaks=0 ;; esac
done

libasan=${ESP_LIBASAN:-$(gcc -print-file-name=libasan.so 2>/dev/null)}
if [ ! -e "$libasan" ]; then
    echo "asan-nginx.sh: libasan.so not found (gcc's, package libasan8)" >&2
    exit 1
fi

# halt_on_error=0 with -fsanitize-recover=address: a worker reports and
# goes on, so that one run collects every report; leaks are checked at
# exit against t/lsan.supp (nginx, OpenSSL and libldap keep memory for the
# life of the process). nginx is built without frame pointers: the slow
# unwinder gives allocation stacks that reach the caller.
ASAN_OPTIONS="log_path=$dir/asan:halt_on_error=0:fast_unwind_on_malloc=0:malloc_context_size=30:detect_leaks=$leaks:detect_odr_violation=0:allow_user_segv_handler=1:${ASAN_OPTIONS:-}"
UBSAN_OPTIONS="log_path=$dir/ubsan:print_stacktrace=1:halt_on_error=0:${UBSAN_OPTIONS:-}"
LSAN_OPTIONS="suppressions=$(dirname "$0")/lsan.supp:print_suppressions=0:${LSAN_OPTIONS:-}"
if [ -x /usr/bin/llvm-symbolizer ]; then
    ASAN_SYMBOLIZER_PATH=/usr/bin/llvm-symbolizer
    export ASAN_SYMBOLIZER_PATH
fi
LD_PRELOAD="$libasan${LD_PRELOAD:+ $LD_PRELOAD}"
export ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS LD_PRELOAD

exec "${ESP_REAL_NGINX:-/usr/sbin/nginx}" "$@"
