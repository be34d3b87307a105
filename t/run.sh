#!/usr/bin/env bash
# Runs the test suite inside private namespaces, with its fixtures.
#
#   t/run.sh                      prove -I t/lib -r t/
#   t/run.sh [prove args...]      prove -I t/lib ARGS   (e.g. -v t/000-harness.t)
#   t/run.sh --shell              fixtures up, then an interactive bash inside
#   t/run.sh --exec CMD [ARGS]    fixtures up, then CMD inside (make bench)
#
# Environment:
#   ESP_MODULE       the built module (make test sets it); required, unless
#                    ESP_MODULE=/dev/null or ESP_NO_MODULE_OK=1: then blocks
#                    that need the module are skipped
#   ESP_RUN          run folder (default /tmp/esp-run)
#   ESP_NO_AD=1      no Samba AD (blocks with --- skip_no_ad are skipped)
#   ESP_KEEP=1       keep $ESP_RUN/nginx and $ESP_RUN/exchange for inspection
#   ESP_NGINX        nginx binary for the harness (default /usr/sbin/nginx)
#   ESP_PKI_SH, ESP_AD_SH, ESP_EXCHANGE_PY
#                    use other fixture scripts than t/fixtures/*
#
# Inside: a network namespace (loopback with 127.0.0.1-4, so ports never clash
# with the host or another run), a mount namespace (our hosts file over
# /etc/hosts) and a PID namespace (whatever is left dies with the run).
# shellcheck disable=SC2317  # (functions called from traps)
set -euo pipefail

ESP_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export ESP_ROOT
export ESP_RUN=${ESP_RUN:-/tmp/esp-run}

PKI_SH=${ESP_PKI_SH:-$ESP_ROOT/t/fixtures/pki.sh}
AD_SH=${ESP_AD_SH:-$ESP_ROOT/t/fixtures/ad.sh}
EXCHANGE_PY=${ESP_EXCHANGE_PY:-$ESP_ROOT/t/fixtures/exchange.py}
PYTHON=/usr/bin/python3
EXCHANGES=("ex1 8443" "ex2 8444")

say() { echo "run.sh: $*" >&2; }
die() { say "$*"; exit 2; }

# ---------------------------------------------------------------- outside
if [[ -z ${ESP_IN_NAMESPACE:-} ]]; then
    [[ $(id -u) == 0 ]] || die "needs root (namespaces, mounts)"
    if [[ ${ESP_MODULE:-} == /dev/null ]]; then
        export ESP_NO_MODULE_OK=1 ESP_MODULE=
    elif [[ -n ${ESP_MODULE:-} && -f $ESP_MODULE ]]; then
        ESP_MODULE=$(realpath "$ESP_MODULE")
        export ESP_MODULE
    elif [[ ${ESP_NO_MODULE_OK:-} == 1 ]]; then
        export ESP_MODULE=
    else
        die "ESP_MODULE='${ESP_MODULE:-}' is not a file (make test builds it;" \
            "ESP_MODULE=/dev/null runs without the module)"
    fi
    mkdir -p "$ESP_RUN"
    exec 9>"$ESP_RUN/.lock"
    flock -n 9 || die "another run uses $ESP_RUN (set ESP_RUN to run side by side)"
    export ESP_IN_NAMESPACE=1
    ns=(unshare --net --mount --pid --fork --mount-proc --kill-child=TERM
        "$ESP_ROOT/t/run.sh" "$@")
    [[ ${1:-} == --shell ]] && exec "${ns[@]}"
    # unshare itself ignores INT and TERM: pass them on to the run inside
    # (its PID 1), which stops the fixtures and then exits.
    "${ns[@]}" &
    pid=$!
    trap 'kill -TERM $(pgrep -P "$pid") 2>/dev/null' INT TERM HUP
    while :; do
        wait "$pid"
        rc=$?
        kill -0 "$pid" 2>/dev/null || exit "$rc"
    done
fi

# ----------------------------------------------------------------- inside
(($$ == 1)) || die "already inside a run: use prove -I t/lib ... here"
SHELL_MODE=0
EXEC_MODE=0
if [[ ${1:-} == --shell ]]; then
    SHELL_MODE=1
    shift
elif [[ ${1:-} == --exec ]]; then
    EXEC_MODE=1
    shift
fi

AD_STARTED=0
EX_PIDS=()

alive() {
    local st
    st=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $st != Z* ]]
}

# stop_pids SIGNAL SECONDS PID...: signal, wait, then SIGKILL what is left.
stop_pids() {
    local sig=$1 secs=$2 pid left i
    shift 2
    (($#)) || return 0
    kill "-$sig" "$@" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do
        left=0
        for pid; do alive "$pid" && left=1; done
        ((left)) || return 0
        sleep 0.1
    done
    for pid; do
        alive "$pid" && { say "pid $pid did not stop on SIG$sig, killing"; kill -KILL "$pid"; }
    done
    return 0
}

cleanup() {
    local rc=$? f pids=()
    set +e
    trap - EXIT INT TERM
    [[ -n ${PROVE_PID:-} ]] && stop_pids TERM 5 "$PROVE_PID"
    for f in "$ESP_RUN"/nginx/*/logs/nginx.pid; do
        [[ -s $f ]] && pids+=("$(<"$f")")
    done
    stop_pids QUIT 5 "${pids[@]}"
    pids=("${EX_PIDS[@]}")
    for f in "$ESP_RUN"/exchange/*.pid; do
        [[ -s $f ]] && pids+=("$(<"$f")")
    done
    stop_pids TERM 5 "${pids[@]}"
    ((AD_STARTED)) && "$AD_SH" stop
    if [[ ${ESP_KEEP:-} == 1 ]]; then
        say "kept $ESP_RUN for inspection"
    else
        rm -rf "$ESP_RUN/nginx" "$ESP_RUN/exchange"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Network and names.
mount --make-rprivate /
ip link set lo up
for a in 2 3 4; do
    ip addr add "127.0.0.$a/8" dev lo
done
cat >"$ESP_RUN/hosts" <<'EOF'
127.0.0.1 localhost mail.contoso.com autodiscover.contoso.com owa.contoso.com download.contoso.com ex1.contoso.local ex2.contoso.local exchange.contoso.local
127.0.0.2 dc1.contoso.local
127.0.0.3 dc2.contoso.local
127.0.0.4 dc3.contoso.local
EOF
mount --bind "$ESP_RUN/hosts" /etc/hosts

rm -rf "$ESP_RUN/nginx" "$ESP_RUN/exchange"
mkdir -p "$ESP_RUN/nginx" "$ESP_RUN/exchange"

# PKI.
[[ -x $PKI_SH ]] || die "$PKI_SH is missing"
"$PKI_SH" || die "pki.sh failed"

# session keys: the one that seals, an older one that still opens, and a
# stranger's (tests of key rotation and of foreign cookies)
mkdir -p "$ESP_RUN/keys"
for k in session session-old foreign; do
    [[ -s $ESP_RUN/keys/$k.key ]] ||
        (umask 077; openssl rand -hex 32 > "$ESP_RUN/keys/$k.key")
done
export ESP_CA=$ESP_RUN/pki/ca.pem

# Active Directory.
if [[ ${ESP_NO_AD:-} == 1 ]]; then
    say "WARNING: ESP_NO_AD=1: no Active Directory; blocks with skip_no_ad are skipped"
elif [[ ! -x $AD_SH ]]; then
    die "$AD_SH is missing (ESP_NO_AD=1 runs without AD)"
else
    AD_STARTED=1
    "$AD_SH" setup || die "ad.sh setup failed"
    "$AD_SH" start || die "ad.sh start failed"
    [[ -f $ESP_RUN/ad/env ]] || die "ad.sh did not write $ESP_RUN/ad/env"
    set -a
    # shellcheck disable=SC1091
    . "$ESP_RUN/ad/env"
    set +a
fi

# Stand-in Exchange servers.
export ESP_BACKENDS="127.0.0.1:8443 127.0.0.1:8444"
if [[ ! -f $EXCHANGE_PY ]]; then
    say "WARNING: $EXCHANGE_PY is missing: no stand-in Exchange (ESP_NO_EXCHANGE=1)"
    export ESP_NO_EXCHANGE=1
else
    ESP_EXCHANGE_SECRET=$(openssl rand -hex 16)
    export ESP_EXCHANGE_SECRET
    for ex in "${EXCHANGES[@]}"; do
        read -r name port <<<"$ex"
        "$PYTHON" "$EXCHANGE_PY" --listen "127.0.0.1:$port" --name "$name" \
            --cert "$ESP_RUN/pki/exchange.pem" --key "$ESP_RUN/pki/exchange.key" \
            --secret "$ESP_EXCHANGE_SECRET" --log "$ESP_RUN/exchange/$name.jsonl" \
            --pidfile "$ESP_RUN/exchange/$name.pid" \
            </dev/null >"$ESP_RUN/exchange/$name.out" 2>&1 &
        EX_PIDS+=($!)
    done
    for i in "${!EXCHANGES[@]}"; do
        read -r name port <<<"${EXCHANGES[$i]}"
        url="https://$name.contoso.local:$port/owa/healthcheck.htm"
        pidf=$ESP_RUN/exchange/$name.pid
        for ((t = 0; ; t++)); do
            curl -fsS -o /dev/null --max-time 2 --cacert "$ESP_CA" "$url" 2>/dev/null && break
            if ! alive "${EX_PIDS[$i]}" && ! { [[ -s $pidf ]] && alive "$(<"$pidf")"; }; then
                tail -20 "$ESP_RUN/exchange/$name.out" >&2
                die "exchange.py $name exited"
            fi
            ((t < 150)) || die "exchange.py $name does not answer $url after 15 s"
            sleep 0.1
        done
    done
fi

cd "$ESP_ROOT"
if ((SHELL_MODE)); then
    say "fixtures are up; this shell is inside the test namespaces (exit to stop them)"
    say "run a file with: prove -I t/lib -v t/000-harness.t"
    trap '' INT
    set +e
    PS1='(esp-ns) \w\$ ' bash --norc -i
    exit $?
fi

set +e
if ((EXEC_MODE)); then
    "$@" &
    PROVE_PID=$!
    wait "$PROVE_PID"
    exit $?
fi

(($#)) || set -- -r t/
prove -I t/lib "$@" &
PROVE_PID=$!
wait "$PROVE_PID"       # returns at once on INT/TERM, so the trap runs
exit $?
