#!/usr/bin/env bash
# The ngx_exchange_esp demo: nginx with the module in front of two stand-in
# Exchange servers, users logging in against a real Samba Active Directory.
#
#   demo/run.sh                 start in the background (make demo does this)
#   demo/run.sh --foreground    start and stay; Ctrl-C stops everything
#   demo/stop.sh                stop (make demo-stop)
#
# Needs root, the packages of t/setup/deps.sh and the built module
# (ESP_MODULE, default ./ngx_exchange_esp_module.so).
#
# How it is wired: the domain controllers (127.0.0.2, 127.0.0.3), the
# Exchange stand-ins (127.0.0.1:9443, :9444) and nginx run in a network
# namespace of their own, so nothing touches the host's network. Only
# nginx's listening sockets are the host's: they are opened here, on the
# host's 127.0.0.1:8443 (https) and :8080 (http -> https), before entering
# the namespace, and nginx inherits them (the NGINX variable of its binary
# upgrade). The host reaches the demo on its loopback and nothing else.
#
# Environment: ESP_DEMO_RUN (folder, default /var/tmp/esp-demo; kept after
# a stop, so the next start is quick: delete it for a fresh directory),
# ESP_DEMO_PORT (8443), ESP_DEMO_HTTP_PORT (8080), ESP_MODULE.
# shellcheck disable=SC2317  # (functions called from traps)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN=${ESP_DEMO_RUN:-/var/tmp/esp-demo}
PORT=${ESP_DEMO_PORT:-8443}
HTTP_PORT=${ESP_DEMO_HTTP_PORT:-8080}
MODULE=${ESP_MODULE:-$ROOT/ngx_exchange_esp_module.so}
HOSTNAME_=mail.contoso.com
PKI_SH=$ROOT/t/fixtures/pki.sh
AD_SH=$ROOT/t/fixtures/ad.sh
EXCHANGE_PY=$ROOT/t/fixtures/exchange.py
NGINX_BIN=${ESP_NGINX:-/usr/sbin/nginx}
PY=/usr/bin/python3
export ESP_RUN=$RUN

say() { echo "demo: $*" >&2; }
die() { echo "demo: ERROR: $*" >&2; exit 1; }

alive() { # pid: exists and is no zombie
    local st
    st=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $st != Z* ]]
}

# the supervisor of a running demo, if any
demo_pid() {
    local pid
    [[ -s $RUN/demo.pid ]] || return 1
    pid=$(<"$RUN/demo.pid")
    [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- 'run.sh --inside' &&
        echo "$pid"
}

banner() {
    local ca=$RUN/pki/ca.pem
    cat <<EOF

  ngx_exchange_esp demo is running.

  URL:      https://$HOSTNAME_:$PORT/owa/      (and http://$HOSTNAME_:$HTTP_PORT/)

  The name must lead to 127.0.0.1. Either add this line to /etc/hosts
  (the demo does not edit it for you):
      127.0.0.1 $HOSTNAME_ autodiscover.contoso.com
  or use curl --resolve $HOSTNAME_:$PORT:127.0.0.1 ...
  The certificate is issued by the demo's own CA: $ca
  (import it in the browser, or accept the warning; curl --cacert $ca).

  Users (log in as user@contoso.local, CONTOSO\\user or just user):
EOF
    $PY - "$RUN/ad/users.json" <<'EOF'
import json, sys
users = json.load(open(sys.argv[1], encoding="utf-8"))
what = {"ok": "logs in", "773": "must change password -> password form",
        "532": "password expired -> password form", "533": "disabled",
        "701": "account expired", "775": "locked out in AD",
        "530": "outside logon hours"}
order = ["alice", "bob", "carol", "nested", "j\u00fcrgen", "mustchange",
         "pwdexpired", "disabled", "expired", "locked", "hours"]
for name in order + sorted(set(users) - set(order)):
    u = users.get(name)
    if not u or name == "svc-esp":
        continue
    note = what.get(u["expect"], u["expect"])
    if name == "nested":
        note += " (member of grp-outer through two nested groups)"
    print("    %-12s %-24s %s" % (name, u["password"], note))
EOF
    cat <<EOF

  Try it:   demo/try.sh        (curl through the login, as alice)
  Config:   $RUN/nginx/conf/nginx.conf   (written by tools/esp-config from
            $RUN/demo.facts)
  Logs:     $RUN/nginx/logs/error.log, esp-access.log; $RUN/demo.log
  Inside:   nsenter -t \$(cat $RUN/demo.pid) -n -m   (a shell in the namespace)
  Stop:     make demo-stop     (or demo/stop.sh; Ctrl-C if started with --foreground)

EOF
}

# ======================================================================
# inside the namespace: the supervisor
# ======================================================================

inside() {
    local fds=${ESP_DEMO_FDS:?} ex_pids=() nginx_pid='' stopping=0

    # children other than nginx must not hold the host's listening sockets:
    # nofds_exec replaces the (sub)shell it runs in, closefds runs a command
    nofds_exec() {
        for fd in $fds; do eval "exec $fd>&-"; done
        exec "$@"
    }
    closefds() {
        ( nofds_exec "$@" )
    }

    cleanup() {
        local rc=$? pid i f
        ((stopping)) && return
        stopping=1
        set +e
        trap '' INT TERM HUP
        say "stopping"
        if [[ -n $nginx_pid ]] && alive "$nginx_pid"; then
            kill -QUIT "$nginx_pid"
            for ((i = 0; i < 50; i++)); do alive "$nginx_pid" || break; sleep 0.1; done
            alive "$nginx_pid" && kill -KILL "$nginx_pid"
        fi
        for f in "$RUN"/exchange/*.pid; do
            [[ -s $f ]] && ex_pids+=("$(<"$f")")
        done
        for pid in "${ex_pids[@]}"; do alive "$pid" && kill -TERM "$pid"; done
        "$AD_SH" stop
        rm -f "$RUN/demo.pid" "$RUN/demo.ready" "$RUN/nginx/nginx.pid"
        say "stopped"
        exit "$rc"
    }
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM HUP

    echo $$ >"$RUN/demo.pid"

    # the namespace's network and names
    mount --make-rprivate /
    ip link set lo up
    ip addr add 127.0.0.2/8 dev lo
    ip addr add 127.0.0.3/8 dev lo
    cat >"$RUN/hosts" <<'EOF'
127.0.0.1 localhost mail.contoso.com autodiscover.contoso.com exchange.contoso.local
127.0.0.2 dc1.contoso.local
127.0.0.3 dc2.contoso.local
EOF
    mount --bind "$RUN/hosts" /etc/hosts

    say "test PKI"
    closefds "$PKI_SH" || die "pki.sh failed"
    mkdir -p "$RUN/keys"
    [[ -s $RUN/keys/session.key ]] || (umask 077; openssl rand -hex 32 >"$RUN/keys/session.key")

    if [[ ! -s $RUN/ad/users.json || ! -s $RUN/ad/env ]]; then
        say "provisioning Samba AD (contoso.local, two DCs, demo users; a minute or so)"
        closefds "$AD_SH" setup || die "ad.sh setup failed"
    fi
    say "starting the domain controllers"
    closefds "$AD_SH" start || die "ad.sh start failed"
    set -a
    # shellcheck disable=SC1091
    . "$RUN/ad/env"
    set +a

    say "starting two stand-in Exchange servers"
    rm -rf "$RUN/exchange"
    mkdir -p "$RUN/exchange"
    local secret name port
    secret=$(openssl rand -hex 16)
    for ex in "ex1 9443" "ex2 9444"; do
        read -r name port <<<"$ex"
        nofds_exec "$PY" "$EXCHANGE_PY" --listen "127.0.0.1:$port" --name "$name" \
            --cert "$RUN/pki/exchange.pem" --key "$RUN/pki/exchange.key" \
            --secret "$secret" --log "$RUN/exchange/$name.jsonl" \
            --pidfile "$RUN/exchange/$name.pid" \
            </dev/null >"$RUN/exchange/$name.out" 2>&1 &
        ex_pids+=($!)
    done
    local t
    for ex in "ex1 9443" "ex2 9444"; do
        read -r name port <<<"$ex"
        for ((t = 0; ; t++)); do
            curl -fsS -o /dev/null --max-time 2 --cacert "$RUN/pki/ca.pem" \
                "https://exchange.contoso.local:$port/owa/healthcheck.htm" 2>/dev/null && break
            ((t < 150)) || { tail "$RUN/exchange/$name.out" >&2; die "stand-in $name does not answer"; }
            sleep 0.1
        done
    done

    say "writing nginx.conf with tools/esp-config"
    mkdir -p "$RUN/nginx/conf" "$RUN/nginx/logs" "$RUN/nginx/temp"
    cat >"$RUN/demo.facts" <<EOF
# The demo's facts for tools/esp-config (demo/run.sh writes this file).
mail-host=$HOSTNAME_
autodiscover-host=autodiscover.contoso.com
exchange=127.0.0.1:9443
exchange=127.0.0.1:9444
exchange-ca=$RUN/pki/ca.pem
# the stand-ins' certificate is for exchange.contoso.local
exchange-name=exchange.contoso.local
smtp-domain=contoso.com
arbitration-guid=9c9f0f4b-1c1a-4d7e-9a61-0b3f9c3c1e55
mapi-auth=delegate
dc=$AD_DC1
dc=$AD_DC2
dc-ca=$AD_CA
ad-domain=contoso.local
bind-dn=$AD_BIND_DN
bind-password-file=$AD_BIND_PASSWORD_FILE
max-failed-auths=5
cert=$RUN/pki/front.pem
key=$RUN/pki/front.key
session-key=$RUN/keys/session.key
listen=127.0.0.1:$PORT
http-listen=127.0.0.1:$HTTP_PORT
greeting=ngx_exchange_esp demo: the users and their passwords are in the output of "make demo".
module=$MODULE
log-dir=$RUN/nginx/logs
temp-dir=$RUN/nginx/temp
pid=$RUN/nginx/nginx.pid
EOF
    local extra=()
    grep -q esp_ntlm "$MODULE" || {
        say "note: this module build has no esp_ntlm yet: NTLM through /mapi, /ews... will fail (safely)"
        extra=(--no-esp-ntlm)
    }
    "$ROOT/tools/esp-config" --input "$RUN/demo.facts" "${extra[@]}" \
        --output "$RUN/nginx/conf/nginx.conf" || die "esp-config failed"
    "$NGINX_BIN" -p "$RUN/nginx/" -c conf/nginx.conf -t -q || die "nginx -t failed"

    say "starting nginx on https://127.0.0.1:$PORT (host loopback)"
    # nginx finds the host's sockets in NGINX ("3;4;"), uses them instead
    # of binding, and, since it inherited them, stays in the foreground
    # shellcheck disable=SC2086  # (one word per descriptor)
    NGINX="$(printf '%s;' $fds)" "$NGINX_BIN" -p "$RUN/nginx/" -c conf/nginx.conf &
    nginx_pid=$!
    # only nginx keeps the host's sockets: if it dies, the ports are free
    for fd in $fds; do eval "exec $fd>&-"; done
    # (its sockets are the host's: the launcher outside tries them)
    for ((t = 0; ; t++)); do
        pgrep -P "$nginx_pid" >/dev/null && break
        alive "$nginx_pid" || die "nginx exited (see $RUN/nginx/logs/error.log)"
        ((t < 100)) || die "nginx started no worker in 10 s"
        sleep 0.1
    done
    : >"$RUN/demo.ready"
    say "ready"

    # until stopped, or until a part of it dies
    while :; do
        alive "$nginx_pid" || { say "nginx exited"; exit 1; }
        for pid in "${ex_pids[@]}"; do
            alive "$pid" || { say "a stand-in Exchange exited"; exit 1; }
        done
        sleep 1 &
        wait $! || true
    done
}

# ======================================================================
# outside: checks, the host's sockets, the namespace
# ======================================================================

if [[ ${1:-} == --inside ]]; then
    inside
    exit
fi

FOREGROUND=0
case ${1:-} in
    --foreground) FOREGROUND=1 ;;
    "") ;;
    -h|--help) sed -n '2,/^# shellcheck/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo/run.sh: unknown argument '$1' (--foreground or nothing)" >&2; exit 2 ;;
esac

[[ $(id -u) == 0 ]] || die "needs root (a network namespace, Samba); try: sudo make demo"
[[ -f $MODULE ]] || die "no module at $MODULE: build it first (make), or run: make demo"
for c in "$NGINX_BIN" "$PY" unshare nsenter ip curl openssl samba perl; do
    command -v "$c" >/dev/null || die "$c is missing: run t/setup/deps.sh (make demo does)"
done
(( ${#RUN} <= 60 )) || die "ESP_DEMO_RUN is too long (Samba's socket paths): at most 60 characters"

if pid=$(demo_pid); then
    say "already running (pid $pid); make demo-stop stops it"
    banner
    exit 0
fi

mkdir -p "$RUN"
rm -f "$RUN/demo.ready" "$RUN/demo.pid"

# Opens the host's listening sockets, leaves them open across exec, and
# enters the namespace with them: run.sh --inside becomes the same process.
launch() {
    exec perl -MIO::Socket::INET -MFcntl -e '
        my @fds;
        for my $port (@ARGV[0, 1]) {
            my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $port,
                                          Listen => 511, ReuseAddr => 1, Proto => "tcp")
                or die "demo: ERROR: cannot listen on 127.0.0.1:$port: $@\n";
            fcntl($s, F_SETFD, fcntl($s, F_GETFD, 0) & ~FD_CLOEXEC) or die "fcntl: $!\n";
            push @fds, fileno $s;
            push @main::keep, $s;
        }
        $ENV{ESP_DEMO_FDS} = "@fds";
        exec "unshare", "--net", "--mount", @ARGV[2 .. $#ARGV]
            or die "demo: ERROR: unshare: $!\n";
    ' "$PORT" "$HTTP_PORT" "$ROOT/demo/run.sh" --inside
}

# from the host, as a user would: the health page through nginx
check() {
    local t
    for ((t = 0; t < 50; t++)); do
        curl -fsS -o /dev/null --max-time 3 --resolve "$HOSTNAME_:$PORT:127.0.0.1" \
            --cacert "$RUN/pki/ca.pem" "https://$HOSTNAME_:$PORT/owa/healthcheck.htm" && return 0
        sleep 0.2
    done
    return 1
}

if ((FOREGROUND)); then
    say "starting in the foreground (Ctrl-C stops it); folder $RUN"
    ( launch ) &
    sup=$!
    trap 'kill -TERM $sup 2>/dev/null' INT TERM HUP
    for ((t = 0; t < 600; t++)); do
        [[ -e $RUN/demo.ready ]] && {
            if check; then banner; else say "the demo does not answer: Ctrl-C stops it"; fi
            break
        }
        alive "$sup" || break
        sleep 0.5
    done
    while alive "$sup"; do wait "$sup" || true; done
    exit 0
fi

say "starting in the background; folder $RUN, log $RUN/demo.log"
setsid bash -c "$(declare -f launch); PORT=$PORT HTTP_PORT=$HTTP_PORT ROOT=$ROOT launch" \
    </dev/null >"$RUN/demo.log" 2>&1 &
sup=$!
for ((t = 0; ; t++)); do
    [[ -e $RUN/demo.ready ]] && break
    if ! alive "$sup"; then
        tail -25 "$RUN/demo.log" >&2
        die "the demo did not start (log above, all of it in $RUN/demo.log)"
    fi
    ((t % 20 == 0)) && [[ -s $RUN/demo.log ]] && say "... $(tail -1 "$RUN/demo.log" | sed 's/^demo: //')"
    ((t < 600)) || { "$ROOT/demo/stop.sh"; die "not ready after 5 minutes; see $RUN/demo.log"; }
    sleep 0.5
done
check || { "$ROOT/demo/stop.sh"; die "the demo started but does not answer (see $RUN/demo.log)"; }
banner
