#!/usr/bin/env bash
# The module compiled into nginx (--add-module): the binary says so, takes a
# configuration with the module's directives without load_module, and gates
# requests.  Runs in a network namespace of its own (loopback only); needs
# no directory (the one DC it names refuses connections).
#
#   t/static-smoke.sh NGINX_BINARY
#
# Prints TAP and "N passed, N failed"; exits non-zero on a failure.
set -uo pipefail

nginx=${1:?usage: t/static-smoke.sh NGINX_BINARY}
nginx=$(realpath "$nginx")

if [[ -z ${ESP_SMOKE_NS:-} ]]; then
    exec env ESP_SMOKE_NS=1 unshare --net --fork "$0" "$nginx"
fi
ip link set lo up

prefix=$(mktemp -d /tmp/esp-static.XXXXXX)
trap '[[ -s $prefix/nginx.pid ]] && kill -QUIT "$(<"$prefix/nginx.pid")"; sleep 0.3; rm -rf "$prefix"' EXIT

pass=0
fail=0
n=0
check() {       # DESCRIPTION COMMAND...
    local what=$1
    shift
    n=$((n + 1))
    if "$@"; then
        echo "ok $n - $what"
        pass=$((pass + 1))
    else
        echo "not ok $n - $what"
        fail=$((fail + 1))
    fi
}

mkdir -p "$prefix/logs" "$prefix/html/owa" "$prefix/html/Microsoft-Server-ActiveSync"
echo through > "$prefix/html/owa/index.html"
echo through > "$prefix/html/Microsoft-Server-ActiveSync/index.html"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=smoke-ca \
    -keyout "$prefix/ca.key" -out "$prefix/ca.pem" >/dev/null 2>&1
(umask 077; openssl rand -hex 32 > "$prefix/session.key")

cat > "$prefix/nginx.conf" <<EOF
error_log $prefix/logs/error.log info;
pid $prefix/nginx.pid;
events {
}
http {
    access_log off;
    esp_sso_domain contoso {
        ldap_server ldaps://127.0.0.1:1;
        ldap_ca_certificate $prefix/ca.pem;
        logon_domain contoso.local;
        ldap_timeout 1s;
    }
    esp_session_key $prefix/session.key;
    esp_shared_zone esp:1m;
    server {
        listen 127.0.0.1:8080;
        root $prefix/html;
        esp contoso;
        esp_allowed_hosts mail.contoso.com;
        location /owa/ {
            esp_client_auth form;
        }
        location /Microsoft-Server-ActiveSync/ {
            esp_client_auth basic;
        }
    }
}
EOF

get() {         # HOST PATH [curl args...] -> "STATUS LOCATION|WWW-AUTHENTICATE"
    local host=$1 path=$2
    shift 2
    curl -s -o /dev/null -H "Host: $host" \
        -w '%{http_code} %header{location}%header{www-authenticate}' \
        "$@" "http://127.0.0.1:8080$path"
}

version=$("$nginx" -V 2>&1)
check "nginx -V names the module compiled in" \
    grep -q -- '--add-module=[^ ]*' <<<"$version"
check "nginx -t takes the module's directives without load_module" \
    "$nginx" -p "$prefix" -c "$prefix/nginx.conf" -t -q
check "nginx starts" "$nginx" -p "$prefix" -c "$prefix/nginx.conf"
for _ in $(seq 50); do [[ -s $prefix/nginx.pid ]] && break; sleep 0.1; done

r=$(get mail.contoso.com /owa/)
check "form: no session -> 302 to the login page ($r)" \
    grep -q '^302 .*/_esp/login' <<<"$r"
r=$(get mail.contoso.com '/_esp/login?url=/owa/')
check "the login page is served ($r)" grep -q '^200 ' <<<"$r"
r=$(get mail.contoso.com /Microsoft-Server-ActiveSync/)
check "Basic: no credentials -> 401 with a challenge ($r)" \
    grep -q '^401 Basic' <<<"$r"
r=$(get mail.contoso.com /Microsoft-Server-ActiveSync/ -u 'alice:wrong')
check "Basic: the only DC is down -> 503, never through ($r)" \
    grep -q '^503 ' <<<"$r"
r=$(get evil.example /owa/)
check "a host not allowed -> 403 ($r)" grep -q '^403 ' <<<"$r"
check "no worker crashed" \
    bash -c "! grep -q 'exited on signal' '$prefix/logs/error.log'"

echo "1..$n"
echo "$pass passed, $fail failed"
((fail == 0))
