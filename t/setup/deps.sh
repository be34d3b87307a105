#!/bin/bash
# Installs the Debian packages the build, the tests and the demo need,
# running apt-get only when something is missing.
set -euo pipefail

pkgs=(
    # build
    gcc make nginx nginx-dev libldap2-dev libssl-dev libpcre2-dev zlib1g-dev
    # a real Active Directory
    samba samba-ad-dc samba-ad-provision samba-dsdb-modules python3-samba
    ldap-utils faketime
    # harness, stand-in Exchange, namespaces
    perl libtest-base-perl libwww-perl liblwp-protocol-https-perl
    libio-socket-ssl-perl libhttp-cookies-perl libjson-pp-perl libhtml-form-perl
    python3 python3-cryptography openssl iproute2 util-linux procps curl
    # the login page in a real browser
    chromium libnss3-tools
    # load for the fault tests and make bench; the fail2ban filter's test
    wrk fail2ban
    # the cluster store (issue 12) and the second factor (issue 13)
    libhiredis-dev redis-server redis-tools libqrencode-dev
    freeradius freeradius-utils
    zbar-tools                   # t/049: the enrolment QR code, decoded
    # fuzzing (libFuzzer) and the sanitizer / memcheck runs
    clang libclang-rt-14-dev llvm lld valgrind
)
# Node.js for playwright-core: Debian's, unless one is there already
command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
pkgs+=(${ESP_EXTRA_PKGS:-})

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null \
            | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

browser() {
    # playwright-core drives Debian's chromium; it downloads no browser
    local dir
    dir=$(dirname "$0")/../browser
    if [ ! -d "$dir/node_modules/playwright-core" ]; then
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) ||
            echo "deps: npm ci failed: the browser test will be skipped" >&2
    fi
}

if [ ${#missing[@]} -eq 0 ]; then
    browser
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    echo "deps: missing packages: ${missing[*]}; run as root" >&2
    exit 1
fi

echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null

# Debian starts the packaged servers; the tests run their own.
for s in nginx samba-ad-dc smbd nmbd winbind redis-server freeradius; do
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now "$s" >/dev/null 2>&1 || true
    fi
    service "$s" stop >/dev/null 2>&1 || true
done

browser
