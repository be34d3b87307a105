#!/usr/bin/env bash
# Walks through the running demo with curl, as a browser and a phone would:
# the login form (as alice, or the user given), Outlook on the web behind
# it, ActiveSync with Basic, a health page without login, a host that is
# not allowed, and the logoff.
#
#   demo/try.sh [USER]        (a name from the list "make demo" printed)
#
# Needs no /etc/hosts entry (curl --resolve). Passwords never appear on a
# command line.
set -euo pipefail

RUN=${ESP_DEMO_RUN:-/var/tmp/esp-demo}
PORT=${ESP_DEMO_PORT:-8443}
H=mail.contoso.com
BASE=https://$H:$PORT
USER_=${1:-alice}
CA=$RUN/pki/ca.pem

die() { echo "try: $*" >&2; exit 1; }
[[ -e $RUN/demo.ready ]] || die "the demo is not running (make demo)"
[[ -r $RUN/ad/users.json ]] || die "cannot read $RUN/ad/users.json (run as root)"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
chmod 700 "$TMP"
JAR=$TMP/cookies
# the user's UPN and password, into files
python3 - "$RUN/ad/users.json" "$USER_" "$TMP" <<'PY' || die "no user \"$USER_\" in $RUN/ad/users.json"
import json, os, sys
u = json.load(open(sys.argv[1], encoding="utf-8"))[sys.argv[2]]
d = sys.argv[3]
os.umask(0o077)
open(os.path.join(d, "upn"), "w").write(u["upn"])
open(os.path.join(d, "password"), "w").write(u["password"])
# curl -K: Basic credentials, quoted for curl's config syntax
q = (u["upn"] + ":" + u["password"]).replace("\\", "\\\\").replace('"', '\\"')
open(os.path.join(d, "basic"), "w").write('user = "%s"\n' % q)
PY
UPN=$(<"$TMP/upn")

c() { curl -sS --resolve "$H:$PORT:127.0.0.1" --cacert "$CA" -b "$JAR" -c "$JAR" "$@"; }
step() { printf '\n== %s\n' "$*"; }
show() { # status + location of a response written with -D
    awk 'NR == 1 { printf "   %s\n", $0 } tolower($1) == "location:" { printf "   %s\n", $0 }' "$1" | tr -d '\r'
}
expect() { # file code
    head -1 "$1" | grep -q " $2 " || die "expected HTTP $2, got: $(head -1 "$1" | tr -d '\r')"
}

step "GET $BASE/owa/ without a session: to the gate's login form"
c -D "$TMP/h1" -o /dev/null "$BASE/owa/"
show "$TMP/h1"; expect "$TMP/h1" 302
LOGIN=$(awk 'tolower($1) == "location:" { print $2 }' "$TMP/h1" | tr -d '\r')
[[ $LOGIN == /* ]] && LOGIN=$BASE$LOGIN

step "GET the login form"
c -D "$TMP/h2" -o "$TMP/form.html" "$LOGIN"
show "$TMP/h2"; expect "$TMP/h2" 200
ACTION=$(grep -o '<form[^>]*action="[^"]*"' "$TMP/form.html" | sed 's/.*action="//; s/"$//; s/&amp;/\&/g' | head -1)
CSRF=$(grep -o 'name="csrf"[^>]*' "$TMP/form.html" | grep -o 'value="[^"]*"' | sed 's/value="//; s/"$//' | head -1)
URL=$(grep -o 'name="url"[^>]*' "$TMP/form.html" | grep -o 'value="[^"]*"' | sed 's/value="//; s/"$//; s/&amp;/\&/g; s/&#x2F;/\//g; s/&#47;/\//g' | head -1)
[[ -n $ACTION && -n $CSRF ]] || die "no form with a csrf field in the login page"
[[ $ACTION == /* ]] && ACTION=$BASE$ACTION
echo "   form posts to $ACTION (url=$URL)"

step "POST the credentials of $UPN"
c -D "$TMP/h3" -o "$TMP/body3" --data-urlencode "url=$URL" --data-urlencode "csrf=$CSRF" \
    --data-urlencode "username=$UPN" --data-urlencode "password@$TMP/password" \
    --data-urlencode "trusted=0" "$ACTION"
show "$TMP/h3"
awk 'tolower($1) == "set-cookie:" { split($2, a, "="); printf "   sets cookie %s\n", a[1] }' "$TMP/h3"
head -1 "$TMP/h3" | grep -q ' 302 ' || {
    sed -n 's/.*class="msg[^"]*"[^>]*>\([^<]*\)<.*/   the form says: \1/p' "$TMP/body3"
    die "the login did not succeed (see $RUN/nginx/logs/error.log: esp: login user=...)"
}

step "follow it to Outlook on the web (the stand-in Exchange answers)"
NEXT=$(awk 'tolower($1) == "location:" { print $2 }' "$TMP/h3" | tr -d '\r')
[[ $NEXT == /* ]] && NEXT=$BASE$NEXT
c -D "$TMP/h4" -o "$TMP/owa.html" -L --max-redirs 5 "$NEXT"
show "$TMP/h4"; expect "$TMP/h4" 200
grep -o '<title>[^<]*</title>' "$TMP/owa.html" | head -1 | sed 's/^/   /'
grep -io "${USER_}[^<]*" "$TMP/owa.html" | head -1 | sed 's/^/   page mentions: /' || true

step "ActiveSync: OPTIONS /Microsoft-Server-ActiveSync without and with Basic"
c -D "$TMP/h5" -o /dev/null -X OPTIONS "$BASE/Microsoft-Server-ActiveSync"
show "$TMP/h5"; expect "$TMP/h5" 401
c -D "$TMP/h6" -o /dev/null -X OPTIONS -K "$TMP/basic" "$BASE/Microsoft-Server-ActiveSync"
show "$TMP/h6"; expect "$TMP/h6" 200

step "a health page needs no login"
curl -sS --resolve "$H:$PORT:127.0.0.1" --cacert "$CA" -D "$TMP/h7" -o /dev/null "$BASE/mapi/healthcheck.htm"
show "$TMP/h7"; expect "$TMP/h7" 200

step "a host name that is not allowed: 403, Exchange never sees it"
curl -sS --resolve "$H:$PORT:127.0.0.1" --cacert "$CA" -H 'Host: evil.example' -D "$TMP/h8" -o /dev/null "$BASE/owa/healthcheck.htm"
show "$TMP/h8"; expect "$TMP/h8" 403

step "log off: /owa/logoff.owa ends the session"
c -D "$TMP/h9" -o /dev/null "$BASE/owa/logoff.owa"
show "$TMP/h9"
c -D "$TMP/h10" -o /dev/null "$BASE/owa/"
show "$TMP/h10"; expect "$TMP/h10" 302

printf '\nall as expected. The gate logged (%s):\n' "$RUN/nginx/logs/error.log"
grep -a 'esp: ' "$RUN/nginx/logs/error.log" | grep -a -e 'login user=' -e 'not allowed' -e 'logoff' | tail -4 | sed 's/^/   /'
