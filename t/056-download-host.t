# OWA download domains (CVE-2021-1730, src/ngx_esp_download.c): attachments
# on a host name of their own get the session through a one-time hand-off
# from the main host, never through a cookie shared with a parent domain.
#
#   download host, no session -> main host /_esp/download?url=PATH
#   main host, with session   -> download host /_esp/handoff?t=TOKEN
#   download host, the token  -> its own host-only cookie, 302 to PATH
#
# Proves: login on the mail host, then an attachment URL on the download
# host answers 200 without a second login; a replayed token, an expired
# one, one for another host, a tampered one, a session cookie passed off
# as a token are refused; open-redirect attempts are refused on both
# sides; logoff on the main host ends the download host's access; no
# cookie ever carries Domain=; the configuration errors.

use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;
use HTTP::Request::Common qw(GET POST);
use IPC::Open3 qw(open3);
use JSON::PP qw(decode_json encode_json);
use Symbol qw(gensym);
use URI;
use URI::Escape qw(uri_escape);

# ------------------------------------------------------- config errors

our $Zone = <<'_EOC_';
esp_session_key $ESP_RUN/keys/session.key;
esp_shared_zone esp:1m;
esp_sso_domain contoso {
    ldap_server ldaps://$AD_DC1:636;
    ldap_ca_certificate $ESP_CA;
}
_EOC_

our $Download = <<'_EOC_';
server {
    listen 127.0.0.1:$TEST_NGINX_TLS_PORT ssl;
    ssl_certificate $ESP_RUN/pki/front.pem;
    ssl_certificate_key $ESP_RUN/pki/front.key;
    server_name download.contoso.com;
    esp contoso;
    esp_allowed_hosts download.contoso.com;
    esp_download_for mail.contoso.com;
    location / { esp_client_auth form; proxy_pass https://exchange; }
}
_EOC_

add_block_preprocessor(sub {
    my $b = shift;
    $b->set_value(http_config => $Zone) unless defined $b->http_config;
    $b->set_value(server_config => $Download) unless defined $b->server_config;
});

run_blocks();

my $RUN = $ENV{ESP_RUN} || '/tmp/esp-run';

if (!ad_present() || !exchange_present() || !$ENV{ESP_MODULE} || $ENV{ESP_MODULE} eq '/dev/null') {
    Test::More->builder->skip('needs the AD fixture, the stand-in Exchange and the module');
    done_testing();
    exit 0;
}

my $USERS = ad_users();
my $ALICE = $USERS->{alice}{upn};
my $ALICE_PW = $USERS->{alice}{password};
my $KEY = "$RUN/keys/session.key";
my $TLS = nginx_tls_port();

# ------------------------------------------------------- the flows' nginx

my $http_config = "esp_session_key $KEY;\nesp_shared_zone esp:1m;\n" . sso_domain_config();

# the attachments path reaches the stand-in's echo (OWA itself needs cadata)
my $download_server = sub {
    my ($name) = @_;
    return <<"_EOC_";
server {
    listen 127.0.0.1:\$TEST_NGINX_TLS_PORT ssl;
    ssl_certificate \$ESP_RUN/pki/front.pem;
    ssl_certificate_key \$ESP_RUN/pki/front.key;
    server_name $name;
    esp contoso;
    esp_allowed_hosts $name;
    esp_download_for mail.contoso.com;
    location /owa/ {
        esp_client_auth form;
        esp_server_auth none;
        proxy_pass https://exchange/attachments/;
    }
}
_EOC_
};

my $config = <<'_EOC_';
esp contoso;
esp_allowed_hosts mail.contoso.com;
esp_download_host download.contoso.com;
location /owa/ {
    esp_client_auth form;
    esp_server_auth none;
    esp_logoff /owa/logoff.owa;
    proxy_pass https://exchange;
}
_EOC_

ok(nginx_start({ http_config => $http_config, config => $config,
                 server_config => $download_server->('download.contoso.com')
                                  . $download_server->('owa.contoso.com') }),
   'nginx starts with a main host and two download hosts') or BAIL_OUT(nginx_error());

# ------------------------------------------------------- helpers

my @SET_COOKIES;        # every Set-Cookie seen, for the Domain= check

sub get {
    my ($ua, $u) = @_;
    my $res = $ua->request(GET($u));
    push @SET_COOKIES, $res->header('Set-Cookie');
    return $res;
}

sub location_of {
    my ($res) = @_;
    my $loc = $res->header('Location') // return undef;
    return URI->new_abs($loc, $res->request->uri);
}

my $ATTACHMENT = '/owa/service.svc/s/GetFileAttachment?id=AAMk%2Bx&X-OWA-CANARY=c1';

sub dl_url { return url($_[0] // $ATTACHMENT, host => $_[1] // 'download.contoso.com') }

sub login {
    my ($ua) = @_;
    my ($form) = follow($ua, $ua->get(url('/owa/')));
    my $res = submit_form($ua, $form, username => $ALICE, password => $ALICE_PW);
    push @SET_COOKIES, $res->header('Set-Cookie');
    return $res;
}

# the browser binding the download host gives: a cookie only its
# /_esp/handoff sees, and the same value to the main host
our $LAST_B;

sub bind_browser {
    my ($ua, $hex, $host) = @_;
    $hex //= join '', map { sprintf '%02x', int rand 256 } 1 .. 16;
    $ua->cookie_jar->set_cookie(0, 'esp_handoff', $hex, '/_esp/handoff',
                                $host // 'download.contoso.com', undef, 0, 1, 60, 0);
    return $hex;
}

# a browser with that binding (and nothing else)
sub bua { my ($hex, $host) = @_; my $b = ua(); bind_browser($b, $hex // $LAST_B, $host); return $b }

# the hand-off URL the main host gives for the attachment (not followed),
# for a browser the download host bound as it would
sub handoff_url {
    my ($ua) = @_;
    $LAST_B = bind_browser($ua);
    my $res = get($ua, url('/_esp/download?url=' . uri_escape($ATTACHMENT) . "&b=$LAST_B"));
    return undef unless $res->code == 302;
    my $to = location_of($res);
    return $to->path eq '/_esp/handoff' ? $to : undef;
}

sub token_of { my ($u) = @_; return { URI->new($u)->query_form }->{t} }

sub with_token {
    my ($token, $host) = @_;
    return url('/_esp/handoff?t=' . uri_escape($token), host => $host // 'download.contoso.com');
}

sub cookie_tool {
    my ($cmd, $input) = @_;
    my $pid = open3(my $in, my $out, my $err = gensym, '/usr/bin/python3',
                    "$ENV{ESP_ROOT}/t/fixtures/esp-cookie.py", $cmd, $KEY);
    print $in $input;
    close $in;
    my ($o, $e) = do { local $/; (<$out> // '', <$err> // '') };
    waitpid $pid, 0;
    $o =~ s/\s+\z//;
    return ($o, $? >> 8, $e);
}

sub session_cookie {
    my ($ua, $host) = @_;
    my $v;
    $ua->cookie_jar->scan(sub { $v = $_[2] if $_[1] eq 'esp_session' && $_[4] =~ /^\Q$host\E/ });
    return $v;
}

# ------------------------------------------------------- no session yet

my $ua = ua();
my $res = get($ua, dl_url());
is($res->code, 302, 'download host without a session: 302');
my $to = location_of($res);
is($to && $to->host, 'mail.contoso.com', '... to the main host');
is($to && $to->path, '/_esp/download', '... its hand-off path');
is($to && { $to->query_form }->{url}, $ATTACHMENT, '... carrying the attachment path');
is($to && $to->port, $TLS, '... on the port the browser used');
ok(!backend_entries_for($res), '... and Exchange saw nothing');
my $B = $to ? { $to->query_form }->{b} // '' : '';
like($B, qr/^[0-9a-f]{32}$/, '... with a browser binding');
like($res->header('Set-Cookie') // '', qr{^esp_handoff=$B; Path=/_esp/handoff; Max-Age=60; Secure; HttpOnly; SameSite=Lax$},
     '... also given to the browser, for the hand-off path only');

$res = get($ua, $to);
is($res->code, 302, 'main host without a session: 302');
like($res->header('Location') // '', qr{/_esp/login\?url=%2Fowa%2F$}, '... to the login form');

# ------------------------------------------------------- the hand-off

$res = login($ua);
is($res->code, 302, 'alice logs in on the mail host');
ok(session_cookie($ua, 'mail.contoso.com'), '... and has a session cookie there');
ok(!session_cookie($ua, 'download.contoso.com'), '... but none on the download host');

$res = get($ua, dl_url());
is($res->code, 302, 'logged in on the main host, the attachment URL still leads to the main host');
$to = location_of($res);
$B = { $to->query_form }->{b} // '';
$res = get($ua, $to);
my $handoff = location_of($res);
ok($handoff && $handoff->path eq '/_esp/handoff', 'which answers with a hand-off');
is($handoff && $handoff->host, 'download.contoso.com', '... on the download host');
is($handoff && $handoff->port, $TLS, '... same port');
my $TOKEN = $handoff ? token_of($handoff) : '';
ok(length $TOKEN > 40, '... with a sealed token');
unlike($TOKEN, qr/alice/i, '... in which the user name is not readable');

$res = get(ua(), $handoff);
is($res->code, 403, 'the hand-off in another browser (without the binding) is refused');
ok(error_log_wait('download hand-off refused: the token is not for this browser'), '... as not for it');
$res = get(bua('00' x 16), $handoff);
is($res->code, 403, '... also with another binding');

$res = get($ua, $handoff);
is($res->code, 302, 'the hand-off is accepted in the browser that asked for it');
is(location_of($res) && location_of($res)->path_query, $ATTACHMENT, '... and leads to the attachment path');
is(location_of($res) && location_of($res)->host, 'download.contoso.com', '... on the download host');
my @sc = $res->header('Set-Cookie');
ok((grep { /^esp_session=[^;]+; Path=\/; Secure; HttpOnly/ } @sc),
   '... setting a session cookie on the download host');
ok((grep { m{^esp_handoff=; Path=/_esp/handoff; Max-Age=0} } @sc), '... and dropping the binding');
ok(session_cookie($ua, 'download.contoso.com'), '... the browser keeps it for the download host');
ok(error_log_wait(qr/esp: download hand-off accepted user="\Q$ALICE\E"/), '... logged');

$res = get($ua, location_of($res));
is($res->code, 200, 'the attachment: 200 without a second login');
my @e = backend_entries_for($res);
ok((grep { ($_->{uri} // '') =~ m{^/attachments/service\.svc/s/GetFileAttachment\?id=AAMk%2Bx} } @e),
   '... served by Exchange');
ok(!(grep { my $h = $_; grep { lc $_->[0] eq 'cookie' && $_->[1] =~ /esp_session/ } @{ $h->{headers} || [] } } @e),
   '... without the gate\'s cookie');

$res = get($ua, dl_url('/owa/service.svc/s/GetFileAttachment?id=second'));
is($res->code, 200, 'another attachment: 200 at once, with the download host\'s own cookie');

# the two cookies are one session: the same id, each host-only
{
    my ($m) = cookie_tool('open', session_cookie($ua, 'mail.contoso.com'));
    my ($d) = cookie_tool('open', session_cookie($ua, 'download.contoso.com'));
    $m = eval { decode_json($m) } || {};
    $d = eval { decode_json($d) } || {};
    ok($m->{id} && $m->{id} eq ($d->{id} // ''), 'both cookies carry the same session id');
    is($d->{issued}, $m->{issued}, '... and the same issue time (the same maximum lifetime)');
}

# ------------------------------------------------------- refused tokens

$res = get(bua($B), $handoff);
is($res->code, 403, 'a replayed token is refused, even with the binding');
ok(error_log_wait('download hand-off refused: the token was used already'), '... as used already');

$res = get($ua, $handoff);
is($res->code, 403, 'even by the browser that used it');

# for another host: refused there, and not spent by that
my $h2 = handoff_url($ua);
$res = get(bua($LAST_B, 'owa.contoso.com'), with_token(token_of($h2), 'owa.contoso.com'));
is($res->code, 403, 'a token for download.contoso.com is refused on owa.contoso.com');
ok(error_log_wait('download hand-off refused: the token is for another host'), '... as for another host');
$res = get(bua(), $h2);
is($res->code, 302, '... and is still good where it belongs (a refusal spends nothing)');

# tampered: every kind of change
my $h3 = handoff_url($ua);
my $t3 = token_of($h3);
for my $case (['one character changed', sub { my $t = shift; substr($t, 20, 1) = substr($t, 20, 1) eq 'A' ? 'B' : 'A'; $t }],
              ['truncated', sub { substr(shift, 0, -4) }],
              ['extended', sub { shift() . 'AAAA' }],
              ['not base64url', sub { my $t = shift; substr($t, 10, 1) = '!'; $t }],
              ['empty', sub { '' }],
              ['huge', sub { 'A' x 5000 }]) {
    my ($name, $f) = @$case;
    my $r = get(bua(), with_token($f->($t3)));
    is($r->code, 403, "a tampered token ($name) is refused");
}
ok(error_log_wait('download hand-off refused: does not authenticate'), '... as not authentic');
$res = get(bua(), url('/_esp/handoff', host => 'download.contoso.com'));
is($res->code, 403, 'no token at all: refused');
$res = get(bua(), $h3);
is($res->code, 302, 'the untampered token still works');

# a session cookie is not a token, nor a token a cookie
$res = get(bua(), with_token(session_cookie($ua, 'mail.contoso.com')));
is($res->code, 403, 'a session cookie passed off as a token is refused');
{
    my $h4 = handoff_url($ua);
    my $other = ua();
    $other->cookie_jar->set_cookie(0, 'esp_session', token_of($h4), '/', 'download.contoso.com', $TLS,
                                   0, 1, 3600, 0);
    $res = get($other, dl_url());
    is($res->code, 302, 'a token passed off as a session cookie is no session');
    is(location_of($res)->path, '/_esp/download', '... the hand-off starts again');
}

# forged with the key: expired, for another host, with a foreign return URL
my ($plain, $rc, $err) = cookie_tool('open-handoff', token_of(handoff_url($ua)));
is($rc, 0, 'esp-cookie.py opens a hand-off token with the key file') or diag($err);
my $T = eval { decode_json($plain) } || {};
is($T->{host}, 'download.contoso.com', '... sealed for the download host');
is($T->{url}, $ATTACHMENT, '... and the attachment path');
ok($T->{expires} - time <= 31 && $T->{expires} - time >= 25, '... for 30 seconds');
is($T->{binding}, $LAST_B, '... and bound to the browser\'s binding');
my $TB = $T->{binding} // '';

sub forged {
    my (%o) = @_;
    my %t = (%$T, nonce => join('', map { sprintf '%02x', int rand 256 } 1 .. 16), %o);
    my ($tok, $rc, $e) = cookie_tool('seal-handoff', encode_json(\%t));
    die "esp-cookie.py seal-handoff: $e" if $rc;
    return $tok;
}

$res = get(bua($TB), with_token(forged()));
is($res->code, 302, 'a token sealed with the key, as the gate makes them: accepted (the forger works)');
$res = get(bua($TB), with_token(forged(expires => time - 1)));
is($res->code, 403, 'an expired token is refused');
ok(error_log_wait('download hand-off refused: the token expired'), '... as expired');
$res = get(bua($TB), with_token(forged(expires => time + 3600)));
is($res->code, 403, 'a token that lives an hour is refused');
$res = get(bua($TB), with_token(forged(host => 'owa.contoso.com')), );
is($res->code, 403, 'a token for another host is refused');
$res = get(bua($TB, 'owa.contoso.com'), with_token(forged(host => 'owa.contoso.com'), 'owa.contoso.com'));
is($res->code, 302, '... and accepted by that host');
for my $bad ('https://evil.example/x', '//evil.example/x', '/\\evil.example', 'evil', '/_esp/login',
             "/owa/\r\nSet-Cookie: x=1") {
    (my $shown = $bad) =~ s/\r\n/\\r\\n/g;
    $res = get(bua($TB), with_token(forged(url => $bad)));
    is($res->code, 403, "a token with the return URL \"$shown\" is refused");
    is($res->header('Location'), undef, '... and redirects nowhere');
}
$res = get(bua($TB), with_token(forged(domain => unpack('H*', 'other'))));
is($res->code, 403, 'a token for another esp domain is refused');
$res = get(bua($TB), with_token(forged(version => 2)));
is($res->code, 403, 'a token of an unknown version is refused');
$res = get(bua($TB), with_token(forged(binding => 'ab' x 16)));
is($res->code, 403, 'a token bound to another browser is refused');

# ------------------------------------------------------- open redirects on the main host

for my $bad ('https://evil.example/', '//evil.example/', '/\\evil.example/', '%2F%2Fevil.example',
             'javascript:alert(1)', '', '/_esp/logout') {
    $res = get($ua, url('/_esp/download?url=' . uri_escape($bad) . '&b=' . ('0' x 32)));
    is($res->code, 400, "main host: return URL \"$bad\" refused");
    is($res->header('Location'), undef, '... no redirect at all');
}
$res = get($ua, url('/_esp/download'));
is($res->code, 400, 'main host: no return URL refused');
for my $b (undef, '', 'xyz', '0' x 31, '0' x 33, 'g' x 32) {
    my $q = defined $b ? "&b=$b" : '';
    $res = get($ua, url("/_esp/download?url=%2Fowa%2Fx$q"));
    is($res->code, 400, 'main host: browser binding ' . ($b // 'missing') . ': refused');
}
ok(error_log_wait('download hand-off refused: no browser binding'), '... as unbound');
$res = $ua->request(POST(url('/_esp/download?url=%2Fowa%2F')));
is($res->code, 405, 'main host: only GET');

# the target host is the configured one, whatever the request says
$res = get($ua, url('/_esp/download?url=%2Fowa%2Fx&host=evil.example&t=1&b=' . ('0' x 32)));
is(location_of($res)->host, 'download.contoso.com', 'the hand-off goes to the configured host only');
$res = $ua->request(GET(url('/_esp/download?url=%2Fowa%2Fx&b=' . ('0' x 32)), Host => "mail.contoso.com:$TLS"));
is(location_of($res)->host, 'download.contoso.com', '... whatever the Host header');

# a server without esp_download_host has no hand-off to give
$res = get($ua, url('/_esp/download?url=%2Fowa%2F', host => 'download.contoso.com'));
isnt($res->code, 302, 'the download host gives no hand-off itself');
$res = get($ua, url('/_esp/handoff?t=' . uri_escape(token_of(handoff_url($ua)))));
ok($res->code == 403 || $res->code == 404, 'the main host takes no hand-off');
unlike($res->header('Set-Cookie') // '', qr/esp_session=[^;]/, '... and sets no session from one');

# ------------------------------------------------------- logoff ends both

$res = get($ua, dl_url());
is($res->code, 200, 'before logoff: the download host serves');
$res = get($ua, url('/owa/logoff.owa'));
ok(error_log_wait(qr/esp: logoff user="\Q$ALICE\E"/), 'logoff on the main host');
$res = get($ua, dl_url());
is($res->code, 302, 'after logoff: the download host no longer serves with its cookie');
is(location_of($res)->path, '/_esp/download', '... it sends the browser to the main host');
ok(error_log_wait('was ended by logoff'), '... since the session id is revoked');
$res = get($ua, location_of($res));
like($res->header('Location') // '', qr{/_esp/login}, '... which asks for a login');

# a hand-off made before the logoff is void too
{
    my $ua2 = ua();
    login($ua2);
    my $h = handoff_url($ua2);
    get($ua2, url('/owa/logoff.owa'));
    $res = get(bua(), $h);
    is($res->code, 403, 'a hand-off of a session ended since is refused');
    ok(error_log_wait('download hand-off refused: the session was ended by logoff'), '... as ended');
}

# ------------------------------------------------------- never Domain=

my @all = grep { defined } @SET_COOKIES;
ok(scalar @all >= 3, 'cookies were set along the way');
ok(!(grep { /;\s*domain\s*=/i } @all), 'no cookie ever carries Domain=')
    or diag(join "\n", grep { /domain=/i } @all);

done_testing();

__DATA__

=== TEST 1: esp_download_host with a port
--- config
esp contoso;
esp_download_host download.contoso.com:443;
--- must_die
--- error_log eval
[qr/"download\.contoso\.com:443" is not a host name .* in "esp_download_host"/]

=== TEST 2: esp_download_host with a scheme
--- config
esp contoso;
esp_download_host https://download.contoso.com;
--- must_die
--- error_log eval
[qr/is not a host name/]

=== TEST 3: esp_download_host with a wildcard
--- config
esp contoso;
esp_download_host *.contoso.com;
--- must_die
--- error_log eval
[qr/"\*\.contoso\.com" is not a host name/]

=== TEST 4: esp_download_host twice
--- config
esp contoso;
esp_download_host download.contoso.com;
esp_download_host download.contoso.com;
--- must_die
--- error_log eval
[qr/"esp_download_host" directive is duplicate/]

=== TEST 5: esp_download_host and esp_download_for in one server
--- config
esp contoso;
esp_download_host download.contoso.com;
esp_download_for mail.contoso.com;
--- must_die
--- error_log eval
[qr/"esp_download_for" directive cannot be used with/]

=== TEST 6: esp_download_host without a download server
--- config
esp contoso;
esp_allowed_hosts mail.contoso.com;
esp_download_host files.contoso.com;
--- must_die
--- error_log eval
[qr/esp_download_host "files\.contoso\.com": no server\{\} named so has "esp_download_for"/]

=== TEST 7: esp_download_for whose main host has no esp_download_host
--- config
esp contoso;
esp_allowed_hosts mail.contoso.com;
--- must_die
--- error_log eval
[qr/esp_download_for "mail\.contoso\.com": no server\{\} named so has "esp_download_host"/]

=== TEST 8: the hand-off needs the shared zone (no "esp" anywhere: none)
--- http_config
esp_session_key $ESP_RUN/keys/session.key;
--- server_config
server {
    listen 127.0.0.1:$TEST_NGINX_TLS_PORT ssl;
    ssl_certificate $ESP_RUN/pki/front.pem;
    ssl_certificate_key $ESP_RUN/pki/front.key;
    server_name download.contoso.com;
    esp_download_for mail.contoso.com;
}
--- config
esp_download_host download.contoso.com;
--- must_die
--- error_log eval
[qr/"esp_download_(host|for)" needs "esp_shared_zone"/]

=== TEST 9: a valid pair passes nginx -t
--- config
esp contoso;
esp_allowed_hosts mail.contoso.com;
esp_download_host DOWNLOAD.contoso.com;
location / { return 204; }
--- request
GET /
--- error_code: 204
