# Extended Protection (EPA) through the gate (src/ngx_esp_epa.c).
#
# With Extended Protection on, Exchange checks the channel binding in the
# client's NTLM answer: a hash of the certificate the CLIENT saw (RFC 5929
# tls-server-end-point).  Through the gate the client sees nginx's
# certificate, so the handshake works only when Exchange presents the same
# one.  Two private stand-ins run with --channel-binding: "epsame" with the
# certificate nginx presents (front.pem), "epother" with its own
# (exchange.pem).  The client computes the binding from the certificate
# nginx presented on its connection.
#
# Proves: the same certificate -> the handshake passes; a different one ->
# it fails, and the gate has warned once with both fingerprints, and
# esp_status says epa_compatible false (per peer and overall), true for the
# matching peer, null before any handshake and after a reload; a plain-http
# listener is not judged (it has no certificate); and the stand-in does
# check (a wrong binding fails even with the same certificate).

use strict;
use warnings;
use lib 't/lib';
use EspTest;

use Digest::SHA qw(sha256 sha256_hex);
use IO::Select;
use IO::Socket::INET;
use IO::Socket::SSL;
use JSON::PP ();
use MIME::Base64 qw(encode_base64 decode_base64);
use POSIX ();

my $RUN = $ENV{ESP_RUN} || '/tmp/esp-run';
my $ROOT = $ENV{ESP_ROOT} || '.';
my $EXCHANGE_PY = $ENV{ESP_EXCHANGE_PY} || "$ROOT/t/fixtures/exchange.py";

if (!$ENV{ESP_MODULE} || $ENV{ESP_MODULE} eq '/dev/null' || !-f "$RUN/pki/front.pem") {
    Test::More::plan(skip_all => 'needs the module and the test PKI');
}

# ------------------------------------------------- private stand-ins

my $DIR = "$RUN/epa-055";
system('rm', '-rf', $DIR);
mkdir $DIR or die "$DIR: $!\n";

my ($SAME_PORT, $OTHER_PORT) = EspTest::free_ports(2);
my %EX;

sub ex_start {
    my ($name, $port, $cert) = @_;
    my $pid = fork // die "fork: $!\n";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', "$DIR/$name.out";
        open STDERR, '>&', \*STDOUT;
        exec('/usr/bin/python3', $EXCHANGE_PY, '--listen', "127.0.0.1:$port",
             '--name', $name, '--cert', "$RUN/pki/$cert.pem", '--key', "$RUN/pki/$cert.key",
             '--secret', 'epa-055', '--log', "$DIR/$name.jsonl",
             '--pidfile', "$DIR/$name.pid", '--channel-binding')
            or POSIX::_exit(127);
    }
    $EX{$name} = $pid;
    return EspTest::poll(10, sub { -s "$DIR/$name.pid" });
}

END {
    local $?;
    for (values %EX) { kill 'TERM', $_; waitpid $_, 0 }
}

ok(ex_start('epsame', $SAME_PORT, 'front'), 'stand-in with the certificate of nginx listens');
ok(ex_start('epother', $OTHER_PORT, 'exchange'), 'stand-in with another certificate listens');

# ------------------------------------------------- fingerprints

sub der_of_pem {
    my ($pem) = @_;
    my ($b64) = $pem =~ /-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----/s
        or return '';
    return decode_base64($b64);
}

sub fingerprint {
    return join ':', map { sprintf '%02X', $_ } unpack 'C*', sha256($_[0]);
}

my $FRONT_FP = fingerprint(der_of_pem(EspTest::slurp("$RUN/pki/front.pem")));
my $EXCHANGE_FP = fingerprint(der_of_pem(EspTest::slurp("$RUN/pki/exchange.pem")));
isnt($FRONT_FP, $EXCHANGE_FP, 'the two certificates differ');

# ------------------------------------------------- nginx

my $http_config = <<"_EOC_";
upstream epa_same  { server 127.0.0.1:$SAME_PORT;  keepalive 4; esp_ntlm; }
upstream epa_other { server 127.0.0.1:$OTHER_PORT; keepalive 4; esp_ntlm; }
upstream epa_plain { server 127.0.0.1:$OTHER_PORT; keepalive 4; }
_EOC_

my $config = <<'_EOC_';
location /same/ {
    proxy_ssl_name mail.contoso.com;
    proxy_pass https://epa_same/mapi/;
}
location /other/  { proxy_pass https://epa_other/mapi/; }
location /nopin/  { proxy_pass https://epa_plain/mapi/; }
location = /esp-status { esp_status; allow 127.0.0.1; deny all; }
_EOC_

ok(nginx_start({ http_config => $http_config, config => $config, workers => 2 }),
   'nginx starts with two esp_ntlm upstreams');

# ------------------------------------------------- a keep-alive client

sub connect_tls {
    my $s = IO::Socket::SSL->new(PeerAddr => '127.0.0.1', PeerPort => nginx_tls_port(),
                                SSL_hostname => 'mail.contoso.com',
                                SSL_verify_mode => SSL_VERIFY_PEER,
                                SSL_ca_file => $ENV{ESP_CA} || "$RUN/pki/ca.pem",
                                Timeout => 5);
    return $s || die "TLS to nginx: $SSL_ERROR\n";
}

sub connect_plain {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => nginx_port(),
                                  Proto => 'tcp', Timeout => 5);
    return $s || die "nginx: $!\n";
}

# RFC 5929 tls-server-end-point: the hash of the certificate this
# connection was given
sub binding_of {
    my ($s) = @_;
    return sha256(der_of_pem(Net::SSLeay::PEM_get_string_X509($s->peer_certificate)));
}

sub request {
    my ($s, $uri, @headers) = @_;
    my $req = "GET $uri HTTP/1.1\r\nHost: mail.contoso.com\r\n"
        . join('', map { "$_\r\n" } @headers) . "\r\n";
    local $SIG{PIPE} = 'IGNORE';
    print {$s} $req or return { status => 'closed' };
    my $buf = '';
    my $fill = sub {
        my $n = sysread($s, $buf, 65536, length $buf);
        return $n ? 1 : 0;
    };
    until ($buf =~ /\r\n\r\n/) { $fill->() or return { status => 'closed' } }
    my ($head, $body) = split /\r\n\r\n/, $buf, 2;
    my ($status_line, @lines) = split /\r\n/, $head;
    my ($status) = $status_line =~ m{^HTTP/1\.[01] (\d{3})};
    my %h;
    for (@lines) { push @{ $h{lc $1} }, $2 if /^([^:]+):\s*(.*)$/ }
    my $len = $h{'content-length'}[0] // 0;
    while (length($body) < $len) { $fill->() or last }
    my $json = eval { JSON::PP::decode_json($body) };
    return { status => $status, headers => \%h, json => $json };
}

sub challenge_of {
    my ($r) = @_;
    for my $v (@{ $r->{headers}{'www-authenticate'} || [] }) {
        my ($b64) = $v =~ /^NTLM\s+(\S+)/i or next;
        my $m = decode_base64($b64);
        return substr($m, 12, 8) if length $m >= 20 && unpack('V', substr($m, 8, 4)) == 2;
    }
    return undef;
}

# type 1, then type 3 with the challenge, the binding and the user
sub handshake {
    my ($s, $uri, $binding, $user) = @_;
    my $r1 = request($s, $uri, 'Authorization: NTLM '
                     . encode_base64("NTLMSSP\0" . pack('V', 1), ''));
    my $challenge = challenge_of($r1);
    return $r1 unless defined $challenge;
    return request($s, $uri, 'Authorization: NTLM '
                   . encode_base64("NTLMSSP\0" . pack('V', 3) . $challenge . $binding . $user, ''));
}

sub user_of { my ($r) = @_; return $r->{json} ? $r->{json}{auth_user} // '' : '' }
sub auth_error { my ($r) = @_; return $r->{headers}{'x-standin-auth-error'}[0] // '' }

sub status {
    my $s = connect_plain();
    my $r = request($s, '/esp-status?format=json', 'Connection: close');
    return $r->{json} // {};
}

sub prometheus {
    my $s = connect_plain();
    print {$s} "GET /esp-status?format=prometheus HTTP/1.1\r\nHost: mail.contoso.com\r\n"
        . "Connection: close\r\n\r\n";
    local $/;
    return scalar <$s>;
}

sub peer_entry {
    my ($doc, $upstream) = @_;
    my ($e) = grep { $_->{upstream} eq $upstream } @{ $doc->{epa} || [] };
    return $e;
}

# ------------------------------------------------- before any handshake

my $doc = status();
ok(exists $doc->{epa_compatible} && !defined $doc->{epa_compatible},
   'status: epa_compatible is null before the first handshake');
is_deeply($doc->{epa}, [], 'status: no peer judged yet');
unlike(prometheus(), qr/^esp_epa_compatible /m, 'prometheus: no EPA sample before any handshake');

# a plain-http listener presents no certificate: nothing to judge
{
    my $s = connect_plain();
    my $r = handshake($s, '/other/', "\0" x 32, 'alice');
    is($r->{status}, 401, 'plain http client: no binding to the certificate, 401');
    $doc = status();
    is_deeply($doc->{epa}, [], 'plain http client: the gate judged nothing');
}

# ------------------------------------------------- the same certificate

my $mark = error_log_mark();
{
    my $s = connect_tls();
    my $binding = binding_of($s);
    is(fingerprint(der_of_pem(Net::SSLeay::PEM_get_string_X509($s->peer_certificate))),
       $FRONT_FP, 'nginx presents front.pem to the client');

    my $r = handshake($s, '/same/', $binding, 'alice');
    is($r->{status}, 200, 'same certificate: the handshake passes through the gate');
    is(user_of($r), 'alice', 'same certificate: Exchange authenticated the user');

    $r = request($s, '/same/');
    is($r->{status}, 200, 'same certificate: the connection stays authenticated');

    # the stand-in really checks: a binding of another certificate fails
    my $s2 = connect_tls();
    $r = handshake($s2, '/same/', sha256('another certificate'), 'alice');
    is($r->{status}, 401, 'a wrong binding fails even with the same certificate');
    like(auth_error($r), qr/channel binding/, 'the stand-in says why');
}

$doc = status();
my $e = peer_entry($doc, 'epa_same');
ok($e, 'status: the matching peer is listed');
is($e && $e->{peer}, "127.0.0.1:$SAME_PORT", 'status: the peer address');
ok($e && $e->{epa_compatible}, 'status: the matching peer is epa_compatible true');
is($e && $e->{exchange_sha256}, $FRONT_FP, 'status: Exchange fingerprint of the matching peer');
is($e && $e->{listener_sha256}, $FRONT_FP, 'status: listener fingerprint');
is(JSON::PP::true eq ($doc->{epa_compatible} // ''), 1, 'status: overall true while every peer matches')
    or diag(explain($doc->{epa}));
ok(!error_log_wait('Extended Protection will fail', 0.5), 'no warning for the matching peer');

# ------------------------------------------------- another certificate

{
    my $s = connect_tls();
    my $r = handshake($s, '/other/', binding_of($s), 'bob');
    is($r->{status}, 401, 'another certificate: the handshake fails through the gate');
    like(auth_error($r), qr/channel binding does not match/,
         'another certificate: Exchange refused the channel binding');
    isnt(user_of($r), 'bob', 'another certificate: nobody authenticated');
}

ok(error_log_wait(qr/Extended Protection will fail: upstream "epa_other" server 127\.0\.0\.1:$OTHER_PORT/, 3),
   'the gate warned, naming the upstream and the peer');
my $log = error_log_since_mark();
my ($line) = grep { /Extended Protection will fail/ } split /\n/, $log;
like($line // '', qr/\[warn\]/, 'the warning is at level warn');
like($line // '', qr/presents the certificate SHA-256 \Q$EXCHANGE_FP\E/, 'the warning names the Exchange fingerprint');
like($line // '', qr/see SHA-256 \Q$FRONT_FP\E/, 'the warning names the listener fingerprint');

$doc = status();
$e = peer_entry($doc, 'epa_other');
ok($e, 'status: the mismatching peer is listed');
ok($e && !$e->{epa_compatible}, 'status: the mismatching peer is epa_compatible false');
is($e && $e->{exchange_sha256}, $EXCHANGE_FP, 'status: Exchange fingerprint of the mismatching peer');
is($e && $e->{listener_sha256}, $FRONT_FP, 'status: listener fingerprint of the mismatching peer');
ok(exists $doc->{epa_compatible} && defined $doc->{epa_compatible} && !$doc->{epa_compatible},
   'status: overall epa_compatible false');
ok((peer_entry($doc, 'epa_same') || {})->{epa_compatible}, 'status: the matching peer stays true');
ok(!peer_entry($doc, 'epa_plain'), 'status: an upstream without esp_ntlm is not judged');

my $prom = prometheus();
like($prom, qr/^esp_epa_compatible 0$/m, 'prometheus: overall 0');
like($prom, qr/^esp_epa_peer_compatible\{upstream="epa_other",peer="127\.0\.0\.1:$OTHER_PORT"\} 0$/m,
     'prometheus: the mismatching peer 0');
like($prom, qr/^esp_epa_peer_compatible\{upstream="epa_same",peer="127\.0\.0\.1:$SAME_PORT"\} 1$/m,
     'prometheus: the matching peer 1');

# checked once: more handshakes (either worker) do not warn again
for (1 .. 4) {
    my $s = connect_tls();
    handshake($s, '/other/', binding_of($s), 'bob');
}
my @warnings = grep { /Extended Protection will fail/ } split /\n/, error_log_since_mark();
is(scalar @warnings, 1, 'the warning is logged once, not per request or per worker');

# ------------------------------------------------- reload

ok(nginx_reload({ http_config => $http_config, config => $config, workers => 2 }), 'reload');
$doc = status();
ok(exists $doc->{epa_compatible} && !defined $doc->{epa_compatible},
   'after a reload: unknown again until the next handshake');
{
    my $s = connect_tls();
    handshake($s, '/other/', binding_of($s), 'bob');
}
$doc = status();
ok(peer_entry($doc, 'epa_other') && !peer_entry($doc, 'epa_other')->{epa_compatible},
   'after a reload: judged again at the next handshake');

done_testing();
