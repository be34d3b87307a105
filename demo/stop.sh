#!/usr/bin/env bash
# Stops the ngx_exchange_esp demo (make demo-stop): the supervisor first,
# which stops nginx, the Exchange stand-ins and the domain controllers;
# then whatever its pid files show is still left (e.g. after a kill -9).
# Idempotent: with nothing running it says so and succeeds. The folder
# (ESP_DEMO_RUN, default /var/tmp/esp-demo) is kept for a quick restart;
# delete it to remove every trace.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN=${ESP_DEMO_RUN:-/var/tmp/esp-demo}
export ESP_RUN=$RUN

say() { echo "demo: $*" >&2; }

[[ $(id -u) == 0 ]] || { say "needs root (the demo runs as root); try: sudo make demo-stop"; exit 1; }

alive() {
    local st
    st=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $st != Z* ]]
}

# pid_from FILE [PATTERN]: the live pid in FILE whose command line has PATTERN
pid_from() {
    local pid
    [[ -s $1 ]] || return 1
    pid=$(head -c 20 "$1" | tr -dc 0-9)
    [[ -n $pid ]] && alive "$pid" || return 1
    if [[ -n ${2:-} ]]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2" || return 1
    fi
    echo "$pid"
}

wait_gone() { # seconds pid...
    local secs=$1 i p left
    shift
    for ((i = 0; i < secs * 10; i++)); do
        left=0
        for p; do alive "$p" && left=1; done
        ((left)) || return 0
        sleep 0.1
    done
    return 1
}

stopped=0

if sup=$(pid_from "$RUN/demo.pid" 'run.sh --inside'); then
    say "stopping the demo (pid $sup)"
    kill -TERM "$sup"
    if ! wait_gone 60 "$sup"; then
        say "the supervisor did not stop within 60 s; killing it"
        kill -KILL "$sup"
        wait_gone 5 "$sup"
    fi
    stopped=1
fi
rm -f "$RUN/demo.pid" "$RUN/demo.ready"

# leftovers, by their pid files
if pid=$(pid_from "$RUN/nginx/nginx.pid" nginx); then
    say "stopping nginx (pid $pid)"
    kill -QUIT "$pid"
    wait_gone 5 "$pid" || { kill -KILL "$pid"; wait_gone 2 "$pid"; }
    stopped=1
fi
rm -f "$RUN/nginx/nginx.pid"
for f in "$RUN"/exchange/*.pid; do
    if pid=$(pid_from "$f" exchange.py); then
        say "stopping a stand-in Exchange (pid $pid)"
        kill -TERM "$pid"
        wait_gone 5 "$pid" || kill -KILL "$pid"
        stopped=1
    fi
done
# a domain controller still running keeps its namespace alive: stop it
# there, with ad.sh, which knows its process group
for d in "$RUN"/ad/dc*/; do
    [[ -s $d/esp.pid ]] || continue
    if pid=$(pid_from "$d/esp.pid" samba); then
        say "stopping the domain controller in $d (pid $pid)"
        nsenter --target "$pid" --net --mount "$ROOT/t/fixtures/ad.sh" stop ||
            kill -KILL -- "-$pid" 2>/dev/null
        stopped=1
    fi
done

if ((stopped)); then
    say "stopped (files kept in $RUN; delete it for a fresh start)"
else
    say "the demo is not running"
fi
exit 0
