# The gate's own cookies and login bodies, whatever their spelling (issue
# 10: one HTTP layer; issue 15 item 5).
#
# - A session works, and none of the gate's cookies (esp_session,
#   esp_csrf) reaches Exchange, however the Cookie headers are written:
#   a tab or no space after ";", two Cookie headers, a header left empty,
#   and after the client's Authorization header was removed (in either
#   order of the two headers), on excluded paths and Basic locations too.
#   FOUND (fixed): the cookie stripper did not skip a tab after ";", the
#   session reader did: "a=1;<TAB>esp_session=..." was a session and was
#   also forwarded.  FOUND (fixed): removing Authorization copied the header
#   list, and the cookies were then stripped from the old elements, which
#   the proxy no longer sends: esp_session reached Exchange.
# - A chunked login post works (FOUND (fixed): it got 413), and a chunked
#   body over 8 KiB gets 413 as soon as that much has arrived, before
#   nginx writes anything to a temporary file (FOUND (fixed): written to
#   disk up to client_max_body_size first); exactly 8 KiB still logs in.
# - HTTP/2 has no framing of its own for a body: a login post without
#   Content-Length logs in, 64 KiB of it get 413 the same way.
# - The status page's admin POST reads its body the same way.

use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use Time::HiRes qw(sleep);
use URI::Escape qw(uri_escape_utf8);

if (!ad_present() || !exchange_present() || !$ENV{ESP_MODULE}) {
    Test::More::plan(skip_all => 'needs the AD fixture, the stand-in Exchange and the module');
}

my $USERS = ad_users();
my $ALICE = $USERS->{alice}{upn};
my $ALICE_PW = $USERS->{alice}{password};
my $CAROL_BASIC = basic_auth($USERS->{carol}{upn}, $USERS->{carol}{password});
my $ALICE_BASIC = basic_auth($ALICE, $ALICE_PW);
my $CSRF = 'c0ffee' x 5 . 'c0';             # a double-submit pair we choose

my $HTTP = sso_domain_config() . <<'CONF';
esp_session_key $ESP_RUN/keys/session.key;
esp_shared_zone esp044:1m;
CONF

my $SERVER = <<'CONF';
esp contoso;
esp_allowed_hosts mail.contoso.com;
location /owa/ {
    esp_client_auth form;
    esp_server_auth form;
    esp_preauth_excluded_dirs /owa/healthcheck.htm;
    proxy_pass https://exchange;
}
location /plain/ {
    esp_client_auth form;
    proxy_set_header X-Seen-Host $http_host;
    proxy_set_header X-Seen-Cookie $http_cookie;
    proxy_pass https://exchange;
}
location /eas/ {
    esp_client_auth basic;
    proxy_pass https://exchange;
}
location = /esp-status { esp_status; allow 127.0.0.1; deny all; }
CONF

# a server with HTTP/2 (nginx 1.22: "listen ... http2")
$ENV{TEST_NGINX_H2_PORT} = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                                 LocalPort => 0)->sockport;
my $H2_SERVER = <<'CONF';
server {
    listen 127.0.0.1:$TEST_NGINX_H2_PORT ssl http2;
    ssl_certificate $ESP_RUN/pki/front.pem;
    ssl_certificate_key $ESP_RUN/pki/front.key;
    server_name mail.contoso.com;
    esp contoso;
    esp_allowed_hosts mail.contoso.com;
    location /plain/ {
        esp_client_auth form;
        proxy_pass https://exchange;
    }
}
CONF

ok(nginx_start({ http_config => $HTTP, config => $SERVER, server_config => $H2_SERVER }),
   'nginx starts') or BAIL_OUT(nginx_error());

# ------------------------------------------------------------- helpers

# a raw HTTP/1.1 request on the plain port, with a test id; the answer
# and what Exchange saw of it
sub send_raw {
    my ($line, @h) = @_;
    my $body = ref $h[-1] ? ${ pop @h } : undef;
    my $id = EspTest::new_test_id();
    my %given = map { /^([^:]+):/ ? (lc $1 => 1) : () } @h;
    push @h, 'Content-Length: ' . length($body)
        if defined $body && !$given{'transfer-encoding'};
    my $data = join('', map { "$_\r\n" } "$line HTTP/1.1", 'Host: mail.contoso.com',
                    'Connection: close', test_id_header() . ": $id", @h)
               . "\r\n" . ($body // '');
    my $x = EspTest::http_exchange(data => $data, methods => [(split ' ', $line)[0]],
                                   timeout => 10);
    return ($x->{responses}[0], $id);
}

sub chunked {
    my ($body, $size) = @_;
    my $out = '';
    for (my $i = 0; $i < length $body; $i += $size) {
        my $c = substr $body, $i, $size;
        $out .= sprintf "%x\r\n%s\r\n", length $c, $c;
    }
    return "${out}0\r\n\r\n";
}

# the Cookie and Authorization headers Exchange received for a test id
sub seen {
    my ($id) = @_;
    my @e = backend_entries_for($id);
    return (scalar @e, map { "$_->[0]: $_->[1]" } map { @{ $_->{headers} || [] } } @e);
}

# a session of alice's, by a real form login
my $ua = ua();
my ($page) = follow($ua, $ua->get(url('/plain/x')));
my $res = submit_form($ua, $page, username => $ALICE, password => $ALICE_PW);
is($res->code, 302, 'alice logs in with the form');
my $S = cookies($ua)->{esp_session} // '';
ok(length $S, 'alice has a session cookie');

# a request with these headers must pass as alice's and reach Exchange
# with exactly these cookies, none of the gate's, and no Authorization
sub passes {
    my ($what, $path, $want, @headers) = @_;
    my ($r, $id) = send_raw("GET $path", @headers);
    is($r ? $r->code : 'none', 200, "$what: 200, the session counts");
    my ($n, @lines) = seen($id);
    ok($n >= 1, "$what: reached Exchange");
    my @cookies = grep { /^cookie:/i } @lines;
    ok(!grep({ /esp_session|esp_csrf/ } @cookies), "$what: none of the gate's cookies reach Exchange")
        or diag(mask(join "\n", @cookies));
    ok(!grep({ /^authorization:/i } @lines), "$what: no Authorization reaches Exchange")
        or diag(mask(join "\n", @lines));
    my @values = map { /^cookie:\s*(.*)$/i ? $1 : () } @cookies;
    my @pairs = sort map { s/^\s+|\s+$//gr } map { split /;/ } @values;
    is("@pairs", join(' ', sort @$want), "$what: the other cookies reach Exchange")
        or diag(mask(join "\n", @cookies));
    ok(!grep({ /^\s*$/ } @values), "$what: no empty Cookie header");
    if ($path =~ m{^/plain/}) {
        # nginx's own view: its pointer to Host, its list of cookie headers
        ok(grep({ /^x-seen-host: mail\.contoso\.com$/i } @lines), "$what: \$http_host is intact");
        ok(!grep({ /^x-seen-cookie:.*esp_(?:session|csrf)/i } @lines),
           "$what: \$http_cookie has none of the gate's cookies");
    }
    return @lines;
}

# --------------------------------------------- the spellings of a Cookie

passes('a tab after ";"', '/plain/t1', ['a=1'], "Cookie: a=1;\tesp_session=$S");
passes('no space after ";"', '/plain/t2', ['a=1'], "Cookie: a=1;esp_session=$S");
passes('the session first, a tab before the next', '/plain/t3', ['a=1'],
       "Cookie: esp_session=$S;\ta=1");
passes('spaces and tabs around ";"', '/plain/t4', ['a=1', 'b=2'],
       "Cookie: a=1 \t; \tesp_session=$S\t ;b=2");
passes('the token cookie too', '/plain/t5', ['a=1'],
       "Cookie: esp_csrf=$CSRF;\ta=1; esp_session=$S");
passes('two Cookie headers', '/plain/t6', ['a=1', 'b=2'],
       'Cookie: a=1', "Cookie: esp_session=$S; b=2");
passes('two Cookie headers, one left empty', '/plain/t7', ['c=3'],
       "Cookie: esp_session=$S", 'Cookie: c=3');
passes('three Cookie headers, the middle one left empty', '/plain/t8', ['a=1', 'c=3'],
       'Cookie: a=1', "Cookie: esp_session=$S;\tesp_csrf=$CSRF", 'Cookie: c=3');

# ------------------------------- a cookie after Authorization was removed

passes('Authorization, then the cookies', '/plain/t9', ['x=1'],
       "Authorization: $CAROL_BASIC", "Cookie: x=1; esp_session=$S");
passes('the cookies, then Authorization', '/plain/t10', ['x=1'],
       "Cookie: x=1; esp_session=$S", "Authorization: $CAROL_BASIC");
passes('Authorization between two Cookie headers', '/plain/t11', ['x=1', 'y=2'],
       "Cookie: esp_session=$S;\tx=1", "Authorization: $CAROL_BASIC", 'Cookie: y=2');
{
    my @lines = passes('Authorization, then a Cookie header left empty, then more',
                       '/plain/t12', ['z=3'],
                       'X-Before: 1', "Authorization: $CAROL_BASIC", "Cookie: esp_session=$S",
                       'X-After: 2', 'Cookie: z=3', 'X-Last: 3');
    is(join(',', map { /^(X-\w+): (\d)$/i ? "$1=$2" : () } @lines), 'X-Before=1,X-After=2,X-Last=3',
       'Authorization and an emptied Cookie header removed: the other headers reach Exchange, in order');
}
passes('an excluded path, Authorization first', '/owa/healthcheck.htm', ['y=2'],
       "Authorization: $CAROL_BASIC", "Cookie: esp_session=$S;\ty=2;esp_csrf=$CSRF");
passes('a Basic location: Authorization checked, then removed', '/eas/t13', ['z=3'],
       "Authorization: $ALICE_BASIC", "Cookie: esp_csrf=$CSRF;\tz=3", "Cookie: esp_session=$S");

# --------------------------------------------------- chunked login bodies

sub login_body {
    my ($url, $pad) = @_;
    my $b = "csrf=$CSRF&username=" . uri_escape_utf8($ALICE) . '&password='
            . uri_escape_utf8($ALICE_PW) . '&url=' . uri_escape_utf8($url);
    $b .= '&pad=' . ('p' x ($pad - length($b) - 5)) if $pad;
    return $b;
}

sub post_login {
    my ($body, $chunk) = @_;
    error_log_mark();
    return send_raw('POST /_esp/login', "Cookie: esp_csrf=$CSRF",
                    'Content-Type: application/x-www-form-urlencoded',
                    'Transfer-Encoding: chunked', \chunked($body, $chunk));
}

{
    my ($r, $id) = post_login(login_body('/plain/c1'), 40);
    is($r ? $r->code : 'none', 302, 'chunked login post: logged in');
    like($r ? $r->header('Location') // '' : '', qr{^(?:http://mail\.contoso\.com:\d+)?/plain/c1$},
         'chunked login post: to the return URL');
    ok($r && grep({ /^esp_session=[^;]+/ } $r->header('Set-Cookie')), 'chunked login post: a session');
    ok(error_log_wait(qr/esp: login user="\Q$ALICE\E" .* result=ok/), 'chunked login post: the login is logged');
    my ($n) = seen($id);
    is($n, 0, 'chunked login post: the post itself did not reach Exchange');
}

{
    # the hand-off to OWA: Exchange gets its forms login, not our token
    my ($r, $id) = post_login(login_body('/owa/'), 100);
    ok($r && $r->code != 413 && $r->code < 500, 'chunked login post to OWA: handed off (' . ($r ? $r->code : 'none') . ')');
    my @e = backend_entries_for($id);
    is(join(' ', map { "$_->{method} $_->{uri}" } @e), 'POST /owa/auth.owa',
       'chunked login post to OWA: Exchange gets POST /owa/auth.owa');
    like($e[0] ? $e[0]{body} // '' : '', qr/(?:^|&)username=alice%40contoso\.local(?:&|$)/,
         'chunked login post to OWA: with the user name');
    my @h = map { "$_->[0]: $_->[1]" } @{ $e[0] ? $e[0]{headers} || [] : [] };
    ok(!grep({ /^cookie:.*esp_csrf/i } @h), 'chunked login post to OWA: no esp_csrf reaches Exchange')
        or diag(mask(join "\n", @h));
    ok(!grep({ /^transfer-encoding:/i } @h), 'chunked login post to OWA: no Transfer-Encoding to Exchange');
}

{
    # exactly 8 KiB, in chunks of 1000: the limit itself is allowed
    my $body = login_body('/plain/c2', 8192);
    is(length $body, 8192, 'the body of the next post is 8192 bytes');
    my ($r) = post_login($body, 1000);
    is($r ? $r->code : 'none', 302, 'chunked body of exactly 8 KiB: logged in');
}

for my $case ([8193, 1000, 'one byte over 8 KiB'], [65536, 1000, '64 KiB in chunks of 1000'],
              [65536, 65536, '64 KiB in one chunk']) {
    my ($size, $chunk, $what) = @$case;
    my ($r, $id) = post_login(login_body('/plain/c3', $size), $chunk);
    is($r ? $r->code : 'none', 413, "chunked login body, $what: 413");
    ok(error_log_wait('esp: login refused: body too large'), "chunked login body, $what: the reason is logged");
    sleep 0.2;
    my $log = error_log_since_mark();
    unlike($log, qr/buffered to a temporary file/, "chunked login body, $what: nothing written to a file");
    unlike($log, qr/esp: login user=/, "chunked login body, $what: no bind");
    unlike($log, qr/\[(?:alert|crit|emerg)\]|exited on signal/, "chunked login body, $what: the worker is fine");
    my ($n) = seen($id);
    is($n, 0, "chunked login body, $what: nothing reached Exchange");
}

{
    my ($r) = send_raw('GET /plain/after', "Cookie: esp_session=$S");
    is($r ? $r->code : 'none', 200, 'after the refused bodies: the same worker serves the session');
}

# --------------------------------------------------------------- HTTP/2

SKIP: {
    my $v = `curl -V 2>/dev/null` // '';
    skip 'no curl with HTTP/2', 9 unless $v =~ /\bHTTP2\b/;

    my $dir = tempdir(CLEANUP => 1);

    # a POST of unknown length (-T from a pipe): no Content-Length
    my $h2 = sub {
        my ($body) = @_;
        open my $fh, '>', "$dir/body" or die "$dir/body: $!";
        print $fh $body;
        close $fh;
        my $port = $ENV{TEST_NGINX_H2_PORT};
        error_log_mark();
        my $out = `cat $dir/body | curl -s --http2 --cacert $ENV{ESP_CA} \\
            --resolve mail.contoso.com:$port:127.0.0.1 -X POST -T - \\
            -H 'Cookie: esp_csrf=$CSRF' \\
            -H 'Content-Type: application/x-www-form-urlencoded' \\
            -D $dir/headers -o /dev/null -w '%{http_code} %{http_version}' \\
            https://mail.contoso.com:$port/_esp/login 2>&1`;
        open $fh, '<', "$dir/headers" or return ($out, '');
        local $/;
        my $headers = <$fh> // '';
        return ($out, $headers);
    };

    my ($out, $headers) = $h2->(login_body('/plain/h2'));
    is($out, '302 2', 'HTTP/2 login post without Content-Length: logged in');
    like($headers, qr/^set-cookie: esp_session=/mi, 'HTTP/2 login post: a session');
    ok(error_log_wait(qr/esp: login user="\Q$ALICE\E" .* result=ok/), 'HTTP/2 login post: the login is logged');

    ($out) = $h2->(login_body('/plain/h2', 65536));
    is($out, '413 2', 'HTTP/2 login post of 64 KiB: 413');
    ok(error_log_wait('esp: login refused: body too large'), 'HTTP/2 login post of 64 KiB: the reason is logged');
    sleep 0.2;
    my $log = error_log_since_mark();
    unlike($log, qr/buffered to a temporary file/, 'HTTP/2 login post of 64 KiB: nothing written to a file');
    unlike($log, qr/esp: login user=/, 'HTTP/2 login post of 64 KiB: no bind');
    unlike($log, qr/\[(?:alert|crit|emerg)\]|exited on signal/, 'HTTP/2 login post of 64 KiB: the worker is fine');

    ($out) = $h2->(login_body('/plain/h2'));
    is($out, '302 2', 'HTTP/2: the next login post on a new connection works');
}

# ----------------------------------------------- the status page's bodies

{
    error_log_mark();
    my ($r) = send_raw('POST /esp-status', 'Content-Type: application/x-www-form-urlencoded',
                       'Transfer-Encoding: chunked',
                       \chunked('action=unblock&domain=contoso&user=nobody', 7));
    is($r ? $r->code : 'none', 200, 'status: a chunked admin post is read');
    like($r ? $r->content : '', qr/"ok":true/, 'status: and carried out');

    ($r) = send_raw('POST /esp-status', 'Content-Type: application/x-www-form-urlencoded',
                    'Transfer-Encoding: chunked',
                    \chunked('action=unblock&domain=contoso&user=' . ('x' x 5000), 1000));
    is($r ? $r->code : 'none', 413, 'status: a chunked body over 4 KiB: 413');
    ok(error_log_wait('esp: status request refused: body too large'), 'status: the reason is logged');
    unlike(error_log_since_mark(), qr/buffered to a temporary file/, 'status: nothing written to a file');
}

done_testing();
