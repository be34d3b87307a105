# NTLM / Negotiate connection pinning (design step 7, "esp_ntlm").
#
# Exchange binds an NTLM handshake, then the authenticated user, to one TCP
# connection.  The stand-in Exchange does the same: type 1 -> 401 with a
# challenge on that connection; a type 3 answering it on the same connection
# -> 200, and the connection stays authenticated as that user.
#
# The flows prove, with raw keep-alive client connections:
#   1. stock nginx without upstream keepalive: the handshake fails;
#   2. stock nginx with "keepalive": another client is served as the user
#      (the hole this directive closes);
#   3. with esp_ntlm (and keepalive 16): the client connection that did the
#      handshake stays authenticated, no other client connection ever is,
#      several clients at once, both backends, two workers;
#   4. a type 3 sent on another client connection gets 401;
#   5. the pinned upstream connection closes with its client connection,
#      and after the idle timeout;
#   6. when Exchange closes the pinned connection, the next request opens a
#      new one and the handshake restarts;
#   7. clients that never did NTLM still share the keepalive pool;
#   8. a one-leg Negotiate (no challenge at all) is pinned as well;
#   9. so is a connection that answered with a challenge (Authorization
#      set by the configuration, not by the client);
#  10. HTTP/2 clients get no pin, and their NTLM connections are closed;
# plus the configuration errors and the proxy_http_version 1.0 warning.

use strict;
use warnings;
use lib 't/lib';
use EspTest;

use File::Temp qw(tempdir);
use IO::Select;
use IO::Socket::INET;
use JSON::PP ();
use MIME::Base64 qw(encode_base64 decode_base64);
use POSIX ();
use Time::HiRes qw(sleep time);

run_blocks();

# ---------------------------------------------------------------------------
# A small HTTP/1.1 client on raw keep-alive connections

sub client {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => nginx_port(),
                                  Proto => 'tcp', Timeout => 5)
        or die "cannot connect to nginx: $!\n";
    return $s;
}

sub read_response {
    my ($s) = @_;
    my $sel = IO::Select->new($s);
    my $buf = '';
    my $fill = sub {
        return 0 unless $sel->can_read(10);
        my $n = sysread($s, $buf, 65536, length $buf);
        return $n ? 1 : 0;
    };
    until ($buf =~ /\r\n\r\n/) {
        return { status => ($buf eq '' ? 'closed' : 'truncated') } unless $fill->();
    }
    my ($head, $rest) = split /\r\n\r\n/, $buf, 2;
    my ($status_line, @lines) = split /\r\n/, $head;
    my ($status) = $status_line =~ m{^HTTP/1\.[01] (\d{3})} or return { status => 'bad' };
    my %h;
    for (@lines) {
        my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
        push @{ $h{lc $k} }, $v;
    }
    my $body = $rest;
    if (($h{'transfer-encoding'}[0] // '') =~ /chunked/i) {
        my $out = '';
        while (1) {
            $fill->() or last until $body =~ /\r\n/;
            my ($len) = $body =~ /^([0-9a-fA-F]+)/ or last;
            $len = hex $len;
            $fill->() or last until length($body) >= index($body, "\r\n") + 2 + $len + 2;
            $body =~ s/^[^\r]*\r\n//;
            $out .= substr($body, 0, $len, '');
            $body =~ s/^\r\n//;
            last if $len == 0;
        }
        $body = $out;
    } else {
        my $len = $h{'content-length'}[0] // 0;
        while (length($body) < $len) { $fill->() or last }
    }
    my $json = eval { JSON::PP::decode_json($body) };
    return { status => $status, headers => \%h, body => $body, json => $json };
}

sub request {
    my ($s, $uri, @headers) = @_;
    my $req = "GET $uri HTTP/1.1\r\nHost: mail.contoso.com\r\n"
        . join('', map { "$_\r\n" } @headers) . "\r\n";
    local $SIG{PIPE} = 'IGNORE';
    syswrite($s, $req) or return { status => 'closed' };
    return read_response($s);
}

sub user_of { my ($r) = @_; return $r->{json} ? $r->{json}{auth_user} // '' : '' }
sub conn_of { my ($r) = @_; return $r->{headers}{'x-conn'}[0] // '' }
sub auth_error { my ($r) = @_; return $r->{headers}{'x-standin-auth-error'}[0] // '' }

# NTLM messages as the stand-in reads them
sub type1 {
    my ($scheme) = @_;
    return 'Authorization: ' . ($scheme // 'NTLM') . ' '
        . encode_base64("NTLMSSP\0" . pack('V', 1), '');
}

sub type3 {
    my ($challenge, $user, $scheme) = @_;
    return 'Authorization: ' . ($scheme // 'NTLM') . ' '
        . encode_base64("NTLMSSP\0" . pack('V', 3) . $challenge . $user, '');
}

sub challenge_of {
    my ($r) = @_;
    for my $v (@{ $r->{headers}{'www-authenticate'} || [] }) {
        my ($b64) = $v =~ /^(?:NTLM|Negotiate)\s+(\S+)/i or next;
        my $m = decode_base64($b64);
        return substr($m, 12, 8)
            if length $m >= 20 && substr($m, 0, 8) eq "NTLMSSP\0"
               && unpack('V', substr($m, 8, 4)) == 2;
    }
    return undef;
}

# type 1 then type 3 on one connection: (final response, the 401)
sub handshake {
    my ($s, $uri, $user, $scheme) = @_;
    my $r1 = request($s, $uri, type1($scheme));
    my $challenge = challenge_of($r1);
    return ($r1, $r1) unless defined $challenge;
    return (request($s, $uri, type3($challenge, $user, $scheme)), $r1);
}

# nginx -> backend connections established to this port, in our namespace
sub upstream_conns {
    my ($port) = @_;
    my $n = 0;
    for my $file ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $fh, '<', $file or next;
        <$fh>;
        while (<$fh>) {
            my @f = split ' ';
            my ($rport) = $f[2] =~ /:([0-9A-F]{4})$/ or next;
            $n++ if hex($rport) == $port && $f[3] eq '01';
        }
    }
    return $n;
}

sub wait_for {
    my ($secs, $cond) = @_;
    my $end = time + $secs;
    while (time < $end) {
        return 1 if $cond->();
        sleep 0.05;
    }
    return $cond->();
}

# ---------------------------------------------------------------------------
# A tiny backend of our own (plain HTTP), for what the stand-in cannot do:
# close an idle connection, and a one-leg Negotiate ("Negotiate
# b64(KRB5:user)") that authenticates the connection with no challenge.
# Same NTLM rules as the stand-in otherwise; request header
# "X-Mini-Close: idle" closes the connection 0.3 s after the answer, "now"
# answers with "Connection: close".

my @kids;

sub mini_backend {
    my $ls = IO::Socket::INET->new(Listen => 64, LocalAddr => '127.0.0.1',
                                   LocalPort => 0, Proto => 'tcp', ReuseAddr => 1)
        or die "mini backend: $!\n";
    my $pid = fork // die "fork: $!\n";
    if ($pid) {
        push @kids, $pid;
        return $ls->sockport;
    }
    $SIG{CHLD} = 'IGNORE';
    my $n = 0;
    while (1) {
        my $c = $ls->accept or next;
        $n++;
        my $h = fork;
        if (defined $h && $h == 0) {
            mini_serve($c, "mini-$n");
            POSIX::_exit(0);
        }
        close $c;
    }
}

sub mini_serve {
    my ($c, $id) = @_;
    my ($challenge, $user) = (undef, undef);
    my $buf = '';
    while (1) {
        until ($buf =~ /\r\n\r\n/) {
            my $n = sysread($c, $buf, 65536, length $buf);
            return unless $n;
        }
        my ($head, $rest) = split /\r\n\r\n/, $buf, 2;
        $buf = $rest;
        my %h = map { /^([^:]+):\s*(.*)$/ ? (lc $1 => $2) : () } split /\r\n/, $head;
        my ($status, @extra) = (200);
        my $auth = $h{authorization} // '';
        if ($auth =~ /^(?:NTLM|Negotiate)\s+(\S+)/i) {
            my $m = decode_base64($1);
            my $type = length $m >= 12 ? unpack('V', substr($m, 8, 4)) : 0;
            if ($m =~ /^KRB5:(.+)$/s) {
                # one leg, like Kerberos: no challenge, yet IIS keeps the
                # connection authenticated (authPersistNonNTLM)
                ($user, $challenge) = ($1, undef);
            } elsif ($type == 1) {
                $user = undef;
                $challenge = join '', map { chr int rand 256 } 1 .. 8;
                $status = 401;
                push @extra, 'WWW-Authenticate: NTLM '
                    . encode_base64("NTLMSSP\0" . pack('V', 2) . $challenge, '');
            } elsif ($type == 3 && defined $challenge
                     && substr($m, 12, 8) eq $challenge && length $m > 20) {
                $user = substr($m, 20);
                $challenge = undef;
            } else {
                ($user, $challenge, $status) = (undef, undef, 401);
            }
        } elsif (!defined $user) {
            $status = 401;
            push @extra, 'WWW-Authenticate: NTLM';
        }
        my $close = $h{'x-mini-close'} // '';
        push @extra, 'Connection: close' if $close eq 'now';
        my $body = JSON::PP::encode_json({ conn => $id,
                                           auth_user => $status == 200 ? $user : undef });
        syswrite($c, "HTTP/1.1 $status X\r\nX-Conn: $id\r\n"
                     . join('', map { "$_\r\n" } @extra)
                     . "Content-Type: application/json\r\n"
                     . "Content-Length: " . length($body) . "\r\n\r\n$body");
        return if $close eq 'now';
        if ($close eq 'idle') {
            sleep 0.3;
            return;
        }
    }
}

END {
    kill 'KILL', @kids if @kids;
}

# ---------------------------------------------------------------------------

if (!exchange_present()) {
    Test::More->builder->skip('no stand-in Exchange: flows skipped');
    done_testing();
    exit 0;
}

my $mini = mini_backend();

my $http_config = <<"_EOC_";
esp_session_key \$ESP_RUN/keys/session.key;
esp_sso_domain contoso {
    ldap_server ldaps://127.0.0.2:636;
    ldap_ca_certificate \$ESP_CA;
    ldap_timeout 2s;
}

# stock nginx: no keepalive, then keepalive alone (one server: deterministic)
upstream ex_plain { server 127.0.0.1:8443; }
upstream ex_pool  { server 127.0.0.1:8443; keepalive 16; }

# pinning, in front of both stand-ins and a shared keepalive pool
upstream ex_ntlm {
    server 127.0.0.1:8443;
    server 127.0.0.1:8444;
    keepalive 16;
    esp_ntlm;
}

# pinning before keepalive: the order does not matter
upstream ex_order {
    server 127.0.0.1:8443;
    esp_ntlm timeout=30s;
    keepalive 16;
}

# one server, for exact connection accounting
upstream ex_one   { server 127.0.0.1:8443; keepalive 16; esp_ntlm; }
upstream ex_count { server 127.0.0.1:8444; esp_ntlm; }
upstream ex_short { server 127.0.0.1:8444; esp_ntlm timeout=1s; }
upstream ex_mini  { server 127.0.0.1:$mini; keepalive 4; esp_ntlm; }
_EOC_

my $config = <<'_EOC_';
esp contoso;
esp_allowed_hosts mail.contoso.com;
location /plain/ { esp_client_auth delegate; proxy_pass https://ex_plain/; }
location /pool/  { esp_client_auth delegate; proxy_pass https://ex_pool/; }
location /ntlm/  { esp_client_auth delegate; proxy_pass https://ex_ntlm/; }
location /order/ { esp_client_auth delegate; proxy_pass https://ex_order/; }
location /one/   { esp_client_auth delegate; proxy_pass https://ex_one/; }
location /count/ { esp_client_auth delegate; proxy_pass https://ex_count/; }
location /short/ { esp_client_auth delegate; proxy_pass https://ex_short/; }
location /mini/  { esp_client_auth delegate; proxy_pass http://ex_mini/; }
location /setauth/ {
    esp_client_auth delegate;
    proxy_set_header Authorization $http_x_auth;
    proxy_set_header Connection "";
    proxy_pass http://ex_mini/;
}
location /v10/ {
    esp_client_auth delegate;
    proxy_http_version 1.0;
    proxy_pass https://ex_ntlm/;
}
_EOC_

# HTTP/2 clients get no pin (IIS refuses NTLM over HTTP/2 anyway)
my $h2_port = do {
    my $l = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => 0, Proto => 'tcp') or die "$!\n";
    $l->sockport;
};
# nginx 1.25.1 moved HTTP/2 from "listen ... http2" to "http2 on;"
my $h2_listen = nginx_version_ge('1.25.1')
    ? "listen 127.0.0.1:$h2_port ssl;\n    http2 on;"
    : "listen 127.0.0.1:$h2_port ssl http2;";
my $server_config = <<"_EOC_";
server {
    $h2_listen
    ssl_certificate \$ESP_RUN/pki/front.pem;
    ssl_certificate_key \$ESP_RUN/pki/front.key;
    server_name mail.contoso.com;
    esp contoso;
    esp_allowed_hosts mail.contoso.com;
    location /one/ { esp_client_auth delegate; proxy_pass https://ex_one/; }
}
_EOC_

my %conf = (http_config => $http_config, config => $config,
            server_config => $server_config);

ok(nginx_start({ %conf, restart => 1 }), 'nginx starts with esp_ntlm upstreams')
    or BAIL_OUT('nginx does not start: ' . nginx_error());

# ---- 1. the problem, without keepalive -----------------------------------
# (nginx 1.29.7 and later give every upstream {} "keepalive" by default: the
# guard below keeps this case as it is on nginx 1.22)

{
    my $a = client();
    my ($r, $r1) = handshake($a, '/plain/mapi/emsmdb/', 'alice');
    is($r1->{status}, 401, '1: no esp_ntlm, no keepalive: type 1 gets a challenge');
    ok(defined challenge_of($r1), '1: ... with a type 2 message');
    is($r->{status}, 401, '1: the type 3 gets 401: the handshake fails');
    like(auth_error($r), qr/without a challenge on this connection/,
         '1: ... because it reached Exchange on another connection');
}

# ---- 2. keepalive without esp_ntlm: guarded --------------------------------
# Stock nginx with keepalive answers another client connection as alice
# (the hole, measured on nginx 1.22: see DESIGN.md). With the module loaded,
# every upstream {} without esp_ntlm is guarded: a connection that carried
# NTLM/Negotiate is closed after its response, never cached.

{
    error_log_mark();
    my $a = client();
    my ($r, $r1) = handshake($a, '/pool/mapi/emsmdb/', 'alice');
    is($r1->{status}, 401, '2: keepalive, no esp_ntlm: type 1 gets a challenge');
    is($r->{status}, 401, '2: the type 3 gets 401: the challenged connection was closed');
    like(auth_error($r), qr/without a challenge on this connection/,
         '2: ... the type 3 reached Exchange on another connection');
    my $b = client();
    my $rb = request($b, '/pool/mapi/emsmdb/');
    is($rb->{status}, 401, '2: another client connection without credentials: 401');
    isnt(user_of($rb), 'alice', '2: ... never served as alice');
    ok(error_log_wait('esp_ntlm: upstream "ex_pool" carried an NTLM or Negotiate handshake'
                      . ' but has no "esp_ntlm"', 1),
       '2: the error log says which upstream {} needs esp_ntlm');

    # connections that carried no NTLM are cached as before
    my $h1 = request(client(), '/pool/mapi/healthcheck.htm');
    my $h2 = request(client(), '/pool/mapi/healthcheck.htm');
    is($h1->{status}, 200, '2: a health check through the guarded upstream: 200');
    ok(conn_of($h1) ne '' && conn_of($h2) eq conn_of($h1),
       '2: ... and the next one reuses its upstream connection (keepalive unchanged)');
}

# ---- 3. pinning -----------------------------------------------------------

my ($alice, $bob) = (client(), client());
my ($ra) = handshake($alice, '/ntlm/mapi/emsmdb/', 'alice@contoso.local');
is($ra->{status}, 200, '3: esp_ntlm: the handshake succeeds');
is(user_of($ra), 'alice@contoso.local', '3: ... as alice');
my ($rb) = handshake($bob, '/ntlm/ews/exchange.asmx', 'bob@contoso.local', 'Negotiate');
is($rb->{status}, 200, '3: a second client does a Negotiate handshake');
is(user_of($rb), 'bob@contoso.local', '3: ... as bob');
isnt($ra->{headers}{'x-backend'}[0], $rb->{headers}{'x-backend'}[0],
     '3: the two handshakes went to the two backends');

{
    my (%bad, %conns);
    for my $i (1 .. 20) {
        for my $who ([$alice, 'alice@contoso.local', $ra], [$bob, 'bob@contoso.local', $rb]) {
            my ($s, $user, $first) = @$who;
            my $r = request($s, $i % 2 ? '/ntlm/mapi/emsmdb/' : '/ntlm/ews/exchange.asmx');
            $bad{$user}++ unless $r->{status} eq '200' && user_of($r) eq $user
                                 && conn_of($r) eq conn_of($first);
        }
        my $x = client();
        for (1 .. 2) {
            my $r = request($x, '/ntlm/mapi/emsmdb/');
            $bad{intruder}++ unless $r->{status} eq '401';
            $conns{ $r->{headers}{'x-backend'}[0] // '' }++;
        }
    }
    ok(!$bad{'alice@contoso.local'},
       '3: 20 more requests on alice\'s connection: all alice, on her pinned connection');
    ok(!$bad{'bob@contoso.local'}, '3: same for bob');
    ok(!$bad{intruder}, '3: 40 requests of 20 other client connections: all 401');
    ok($conns{ex1} && $conns{ex2}, '3: ... on both backends');
}

{
    my $o = client();
    my ($r) = handshake($o, '/order/mapi/emsmdb/', 'carol');
    is(user_of($r), 'carol', '3: esp_ntlm before keepalive: handshake succeeds');
    my @fail = grep { $_->{status} ne '401' }
               map { request(client(), '/order/mapi/emsmdb/') } 1 .. 10;
    ok(!@fail, '3: ... and other clients get 401 (pinning is outermost)');
    is(user_of(request($o, '/order/mapi/emsmdb/')), 'carol', '3: ... carol still carol');
}

# ---- 4. a handshake split over two client connections -----------------------

{
    my ($c1, $c2) = (client(), client());
    my $r1 = request($c1, '/ntlm/mapi/emsmdb/', type1());
    my $challenge = challenge_of($r1);
    ok(defined $challenge, '4: type 1 on client connection 1 gets a challenge');
    my $r2 = request($c2, '/ntlm/mapi/emsmdb/', type3($challenge, 'mallory'));
    is($r2->{status}, 401, '4: its type 3 on client connection 2 gets 401');
    close $c1;
    my ($r3) = handshake($c2, '/ntlm/mapi/emsmdb/', 'dave');
    is($r3->{status}, 200, '4: a fresh handshake on connection 2 succeeds');
    is(user_of($r3), 'dave', '4: ... as dave');
    is(user_of(request($c2, '/ntlm/mapi/emsmdb/')), 'dave', '4: ... and stays');
}

# ---- 7. clients that never did NTLM share the keepalive pool ---------------

{
    my $d1 = client();
    my $p1 = request($d1, '/one/echo/1');
    is($p1->{status}, 200, '7: a request without NTLM passes');
    my $e = client();
    my ($re) = handshake($e, '/one/mapi/emsmdb/', 'erin');
    is(user_of($re), 'erin', '7: erin authenticates on the same upstream');
    my $pinned = conn_of($re);
    my %seen;
    for my $i (1 .. 6) {
        my $d = client();
        my $r = request($d, "/one/echo/$i");
        $seen{ conn_of($r) }++;
        my $r2 = request($d, "/one/mapi/emsmdb/");
        $seen{ conn_of($r2) }++;
        $seen{401}++ if $r2->{status} eq '401';
    }
    is($seen{401}, 6, '7: other clients are never erin');
    ok(!$seen{$pinned}, '7: ... never on erin\'s pinned connection');
    is(scalar(grep { $_ ne '401' } keys %seen), 1,
       '7: 12 requests of 6 client connections shared one pooled connection');
    is(conn_of(request($e, '/one/mapi/emsmdb/')), $pinned,
       '7: erin is still on her pinned connection');
}

# ---- 10. HTTP/2: no pinning, and the NTLM connection is not pooled ----------

{
    error_log_mark();
    my $out = `curl -s --http2 --max-time 10 --cacert $ENV{ESP_CA} \\
        --resolve mail.contoso.com:$h2_port:127.0.0.1 -D - -o /dev/null \\
        -H '@{[ type1() ]}' https://mail.contoso.com:$h2_port/one/mapi/emsmdb/`;
    like($out, qr{^HTTP/2 401}m, '10: HTTP/2: type 1 gets 401');
    like($out, qr{^www-authenticate: NTLM \S+}mi, '10: ... with a challenge');
    ok(error_log_wait(qr/esp ntlm: connection \S+ cannot be pinned, closed/, 2),
       '10: the connection that issued it is closed, not pooled');
    my @leak = grep { $_->{status} ne '401' } map { request(client(), '/one/mapi/emsmdb/') } 1 .. 4;
    ok(!@leak, '10: other clients get 401');
}

# ---- warning: proxy_http_version 1.0 --------------------------------------

{
    error_log_mark();
    my $v = client();
    my ($r) = handshake($v, '/v10/mapi/emsmdb/', 'frank');
    is($r->{status}, 401, 'warning: with proxy_http_version 1.0 the handshake fails');
    ok(error_log_wait(qr/\[warn\].*esp_ntlm: the request to the upstream closes its connection.*proxy_http_version 1\.1/, 2),
       'warning: ... and the error log says why');
}

close $_ for $alice, $bob;

# ---- 5. the pinned connection closes with its client ----------------------

ok(nginx_start({ %conf, restart => 1 }), '5: nginx restarted (no idle connections)');
{
    is(upstream_conns(8444), 0, '5: no connection to ex2 yet');
    my $c = client();
    my ($r) = handshake($c, '/count/mapi/emsmdb/', 'gina');
    is(user_of($r), 'gina', '5: handshake through an upstream without keepalive');
    is(user_of(request($c, '/count/mapi/emsmdb/')), 'gina', '5: ... pinned');
    is(upstream_conns(8444), 1, '5: one upstream connection is open');
    error_log_mark();
    close $c;
    ok(wait_for(3, sub { upstream_conns(8444) == 0 }),
       '5: the client closes: the pinned upstream connection is closed');
    ok(error_log_wait('esp ntlm: client closed, closing pinned connection', 2),
       '5: ... by the client connection\'s cleanup');

    my $t = client();
    ($r) = handshake($t, '/short/mapi/emsmdb/', 'hank');
    is(user_of($r), 'hank', '5: timeout=1s: handshake');
    is(upstream_conns(8444), 1, '5: ... one pinned connection');
    ok(wait_for(3, sub { upstream_conns(8444) == 0 }),
       '5: idle for 1 s: the pinned connection is closed');
    $r = request($t, '/short/mapi/emsmdb/');
    is($r->{status}, 401, '5: the client\'s next request gets 401: the handshake restarts');
    ($r) = handshake($t, '/short/mapi/emsmdb/', 'hank');
    is(user_of($r), 'hank', '5: ... and succeeds again');
}

# ---- 6. Exchange closes the pinned connection -------------------------------

{
    my $c = client();
    my ($r) = handshake($c, '/mini/mapi/', 'ivan');
    is(user_of($r), 'ivan', '6: handshake through our own backend');
    my $first = conn_of($r);
    $r = request($c, '/mini/mapi/', 'X-Mini-Close: idle');
    is(user_of($r), 'ivan', '6: a request on the pinned connection');
    is(conn_of($r), $first, '6: ... the same upstream connection');
    error_log_mark();
    ok(error_log_wait('esp ntlm: closing idle pinned connection', 3),
       '6: the backend closes it while idle: nginx notices');
    $r = request($c, '/mini/mapi/');
    is($r->{status}, 401, '6: the next request gets 401 (the handshake restarts)');
    isnt(conn_of($r), $first, '6: ... on a new upstream connection');
    ($r) = handshake($c, '/mini/mapi/', 'ivan');
    is(user_of($r), 'ivan', '6: a new handshake succeeds');
    my $second = conn_of($r);
    $r = request($c, '/mini/mapi/', 'X-Mini-Close: now');
    is(user_of($r), 'ivan', '6: an answer with "Connection: close"');
    $r = request($c, '/mini/mapi/');
    is($r->{status}, 401, '6: then 401 again');
    isnt(conn_of($r), $second, '6: ... on yet another connection');
    my $x = client();
    is(request($x, '/mini/mapi/')->{status}, 401, '6: another client: 401');
}

# ---- 8. a one-leg Negotiate (Kerberos-like) is pinned too ------------------

{
    my $k = client();
    my $r = request($k, '/mini/ews/', 'Authorization: Negotiate '
                    . encode_base64('KRB5:kim', ''));
    is(user_of($r), 'kim', '8: a one-leg Negotiate authenticates with no 401');
    my $pinned = conn_of($r);
    my @leak = grep { $_->{status} ne '401' || conn_of($_) eq $pinned }
               map { request(client(), '/mini/ews/') } 1 .. 6;
    ok(!@leak, '8: other clients get 401, never kim\'s connection '
               . '(pinned on the Authorization alone)');
    $r = request($k, '/mini/ews/');
    is(user_of($r), 'kim', '8: kim\'s next request without credentials: still kim');
    is(conn_of($r), $pinned, '8: ... on the pinned connection');
}

# ---- 9. a challenge pins even when nginx set the Authorization ------------

{
    my $c = client();
    my $r1 = request($c, '/setauth/mapi/', 'X-Auth: ' . (type1() =~ s/^Authorization: //r));
    my $challenge = challenge_of($r1);
    ok(defined $challenge, '9: Authorization from proxy_set_header: a challenge');
    my $r = request($c, '/setauth/mapi/',
                    'X-Auth: ' . (type3($challenge, 'lena') =~ s/^Authorization: //r));
    is(user_of($r), 'lena', '9: ... answered on the same connection');
    my $pinned = conn_of($r);
    my @leak = grep { $_->{status} ne '401' || conn_of($_) eq $pinned }
               map { request(client(), '/setauth/mapi/') } 1 .. 6;
    ok(!@leak, '9: other clients get 401 (pinned by the challenge in the answer)');
    is(user_of(request($c, '/setauth/mapi/')), 'lena', '9: lena stays lena');
}

# ---- 3b. several clients at once, two workers -------------------------------

ok(nginx_start({ %conf, workers => 2, restart => 1 }), '3b: nginx with 2 workers');
{
    my $dir = tempdir(CLEANUP => 1);
    my @pids;
    my $spawn = sub {
        my ($name, $code) = @_;
        my $pid = fork // die "fork: $!\n";
        if (!$pid) {
            my $err = eval { $code->() } // "died: $@";
            open my $fh, '>', "$dir/$name";
            print $fh $err;
            close $fh;
            POSIX::_exit(0);
        }
        push @pids, $pid;
    };
    for my $i (1 .. 4) {
        $spawn->("user$i", sub {
            my $s = client();
            my $user = "user$i\@contoso.local";
            my ($r) = handshake($s, '/ntlm/mapi/emsmdb/', $user);
            return "handshake: $r->{status}" unless user_of($r) eq $user;
            my $conn = conn_of($r);
            for my $j (1 .. 30) {
                $r = request($s, '/ntlm/mapi/emsmdb/');
                return "request $j: $r->{status} as '" . user_of($r) . "'"
                    unless user_of($r) eq $user && conn_of($r) eq $conn;
            }
            return 'ok';
        });
        $spawn->("intruder$i", sub {
            for my $j (1 .. 30) {
                my $s = client();
                for (1 .. 2) {
                    my $r = request($s, '/ntlm/mapi/emsmdb/');
                    return "try $j: $r->{status} as '" . user_of($r) . "'"
                        unless $r->{status} eq '401';
                }
            }
            return 'ok';
        });
    }
    waitpid $_, 0 for @pids;
    for my $i (1 .. 4) {
        for my $who ("user$i", "intruder$i") {
            my $got = do { local (@ARGV, $/) = ("$dir/$who"); <> } // 'no result';
            is($got, 'ok', "3b: $who: "
               . ($who =~ /user/ ? '30 requests all as itself, on one connection'
                                 : '60 requests on 30 connections all 401'));
        }
    }
    my @bad = grep { /\[(?:alert|crit|emerg)\]|exited on signal/ }
              split /\n/, error_log_since_mark();
    ok(!@bad, '3b: no alert or crash in the error log') or diag(join "\n", grep { defined } @bad[0 .. 9]);
}

# ---- reload and shutdown with pinned connections: no leak, no alert ---------

{
    my $c = client();
    my ($r) = handshake($c, '/ntlm/mapi/emsmdb/', 'kate');
    is(user_of($r), 'kate', 'reload: a pinned connection');
    my $mark = error_log_mark();
    ok(nginx_reload(), 'reload: nginx reloads');
    is(request($c, '/ntlm/mapi/emsmdb/')->{status}, 'closed',
       'reload: the old worker closed the idle client connection');
    ($r) = handshake(client(), '/ntlm/mapi/emsmdb/', 'kate');
    is(user_of($r), 'kate', 'reload: a new handshake on the new workers');
    my @bad = grep { /\[(?:alert|crit|emerg)\]|open socket|exited on signal/ }
              split /\n/, error_log_since_mark($mark);
    ok(!@bad, 'reload: no alert') or diag(join "\n", @bad);
}


{
    my $c = client();
    my ($r) = handshake($c, '/ntlm/mapi/emsmdb/', 'judy');
    is(user_of($r), 'judy', 'exit: a pinned connection at shutdown');
    my $mark = error_log_mark();
    nginx_stop();
    my $log = error_log_since_mark($mark);
    ok($log !~ /\[alert\]|open socket|exited on signal/,
       'exit: graceful stop without "open socket" alerts')
        or diag(join "\n", grep { /alert|open socket|signal/ } split /\n/, $log);
}


my @bad = grep { /\[(?:alert|crit)\]|exited on signal/ } split /\n/, error_log_since_mark(0);
ok(!@bad, 'the whole error log has no alert, crit or crash') or diag(join "\n", grep { defined } @bad[0 .. 9]);

done_testing();

__DATA__

=== TEST 1: esp_ntlm outside an upstream block: nginx -t fails with file:line
--- http_config
esp_ntlm;
--- must_die
--- error_log eval
[qr/"esp_ntlm" directive is not allowed here in \S*nginx\.conf:\d+/]



=== TEST 2: esp_ntlm in a location: nginx -t fails with file:line
--- config
location /mapi/ { esp_ntlm; proxy_pass https://exchange; }
--- must_die
--- error_log eval
[qr/"esp_ntlm" directive is not allowed here in \S*nginx\.conf:\d+/]



=== TEST 3: an unknown parameter is refused with file:line
--- http_config
upstream bad { server 127.0.0.1:8443; esp_ntlm max=4; }
--- must_die
--- error_log eval
[qr/invalid parameter "max=4" in "esp_ntlm" in \S*nginx\.conf:\d+/]



=== TEST 4: a bad timeout is refused with file:line
--- http_config
upstream bad { server 127.0.0.1:8443; esp_ntlm timeout=soon; }
--- must_die
--- error_log eval
[qr/invalid timeout "timeout=soon" in "esp_ntlm" in \S*nginx\.conf:\d+/]



=== TEST 5: a zero timeout is refused
--- http_config
upstream bad { server 127.0.0.1:8443; esp_ntlm timeout=0; }
--- must_die
--- error_log eval
[qr/invalid timeout "timeout=0" in "esp_ntlm" in \S*nginx\.conf:\d+/]



=== TEST 6: esp_ntlm twice in one upstream is refused
--- http_config
upstream bad { server 127.0.0.1:8443; esp_ntlm; esp_ntlm timeout=5s; }
--- must_die
--- error_log eval
[qr/"esp_ntlm" directive is duplicate in \S*nginx\.conf:\d+/]



=== TEST 7: two parameters are refused
--- http_config
upstream bad { server 127.0.0.1:8443; esp_ntlm timeout=5s timeout=6s; }
--- must_die
--- error_log eval
[qr/invalid number of arguments in "esp_ntlm" directive in \S*nginx\.conf:\d+/]
