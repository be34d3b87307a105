# The login endpoint against bad input: return URLs that try to leave the
# site, forged and cross-site posts (double-submit cookie, Origin,
# Sec-Fetch-Site), oversized, mistyped and malformed bodies.  Each gets a
# clear answer, never a bind ("esp: login" line) and never Exchange.

use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;
use HTTP::Request::Common qw(GET POST);
use URI;
use URI::Escape qw(uri_escape_utf8);

if (!ad_present() || !exchange_present() || !$ENV{ESP_MODULE}) {
    Test::More::plan(skip_all => 'needs the AD fixture, the stand-in Exchange and the module');
}

my $USERS = ad_users();
my $ALICE = $USERS->{alice}{upn};
my $ALICE_PW = $USERS->{alice}{password};

our $HTTP = "esp_session_key \$ESP_RUN/keys/session.key;\n" . sso_domain_config();
our $SERVER = <<'CONF';
esp contoso;
esp_allowed_hosts mail.contoso.com;
esp_default_url /plain/home;
esp_greeting 'It\'s "ours" <b>only</b> & more';
location /owa/ {
    esp_client_auth form;
    esp_server_auth form;
    proxy_pass https://exchange;
}
location /plain/ {
    esp_client_auth form;
    proxy_pass https://exchange;
}
CONF

add_block_preprocessor(sub {
    my $b = shift;
    $b->set_value(http_config => $::HTTP) unless defined $b->http_config;
    $b->set_value(config => $::SERVER) unless defined $b->config;
});

my $FORM_EXPIRED = 'The sign-in form has expired or was sent from another site.';

run_blocks();

# ---------------------------------------------------------------- helpers

ok(nginx_start({ http_config => $HTTP, config => $SERVER }), 'nginx starts')
    or BAIL_OUT(nginx_error());

# a browser that has the form: (ua, token)
sub with_form {
    my ($path) = @_;
    my $ua = ua();
    my ($form) = follow($ua, $ua->get(url($path // '/plain/x')));
    return ($ua, form_of($form)->value('csrf'), $form);
}

sub enc { return join '&', map { uri_escape_utf8($_->[0]) . '=' . $_->[1] } @_ }

# POST a raw body to the login endpoint
sub post_raw {
    my ($ua, $body, @headers) = @_;
    error_log_mark();
    return $ua->request(POST(url('/_esp/login'),
                             Content_Type => 'application/x-www-form-urlencoded',
                             @headers, Content => $body));
}

sub message_of {
    my ($res) = @_;
    return ($res->decoded_content // '') =~ m{<div id="msg" class="[^"]*"[^>]*>([^<]*)</div>} ? $1 : '';
}

sub no_bind {
    my ($res, $what) = @_;
    sleep 0.3;
    unlike(error_log_since_mark(), qr/esp: login user=/, "$what: no bind");
    is(scalar backend_entries_for($res, wait => 0.1), 0, "$what: nothing reached Exchange");
    ok(!cookies($_[2])->{esp_session}, "$what: no session") if $_[2];
}

# same-site: the redirect stays on mail.contoso.com, on a path
sub same_site {
    my ($location, $what) = @_;
    my $u = URI->new_abs($location // '', url('/'));
    ok($u->scheme eq 'https' && lc($u->host) eq 'mail.contoso.com' && $u->path =~ m{^/(?![/\\])},
       "$what: stays on the site ($location)");
}

# ------------------------------------------------------- open redirects

my @evil = (
    '//evil.example/x',
    '/\\evil.example/x',
    '\\\\evil.example',
    'https://evil.example/x',
    'http:evil.example',
    '/%2F%2Fevil.example',
    '%2F%2Fevil.example',
    '/%5Cevil.example',
    '///evil.example',
    ' //evil.example',
    "/\t/evil.example",
    'javascript:alert(1)',
    'JaVaScRiPt:alert(1)',
    "/owa/\r\nSet-Cookie: evil=1",
    "/owa/%0d%0aSet-Cookie:%20evil=1",
    "/\x{e9}vil",
    '/_esp/login?url=//evil.example',
    '/%5F%65sp/login',
);

for my $u (@evil) {
    my $name = "open redirect " . ($u =~ s/([\x00-\x1f])/sprintf('\\x%02x', ord $1)/ger);

    # the url= of the GET
    my $ua = ua();
    my $res = $ua->get(url('/_esp/login?url=' . uri_escape_utf8($u)));
    is($res->code, 200, "$name: GET: the form");
    my $field = eval { form_of($res)->value('url') } // '';
    like($field, qr{^/(?![/\\])[^\s\\]*$}, "$name: GET: the form returns to a path on this site ($field)");

    # the url field posted (a hand-made form)
    my $token = form_of($res)->value('csrf');
    $res = post_raw($ua, enc([url => uri_escape_utf8($u)], [csrf => $token],
                             [username => uri_escape_utf8($ALICE)], [password => uri_escape_utf8($ALICE_PW)]));
    if ($res->code == 302) {
        same_site($res->header('Location'), "$name: POST");
    } else {
        ok($res->code == 400, "$name: POST: refused (" . $res->code . ")");
    }
    ok(!grep({ /evil/ } $res->header('Set-Cookie')), "$name: no header injected");
    unlike($res->headers->as_string, qr/^Set-Cookie: evil/mi, "$name: no Set-Cookie: evil");
}

{
    # the hand-off's destination stays on the site, too
    my ($ua, $token) = with_form('/owa/');
    my $res = post_raw($ua, enc([url => uri_escape_utf8('//evil.example/owa/')], [csrf => $token],
                                [username => uri_escape_utf8($ALICE)], [password => uri_escape_utf8($ALICE_PW)]));
    my @e = backend_entries_for($res);
    my ($dest) = ($e[0]{body} // '') =~ /(?:^|&)destination=([^&]*)/;
    $dest = URI::Escape::uri_unescape($dest // '');
    same_site($dest, 'hand-off destination for url=//evil.example');
}

{
    # an absolute request line with another Host header: the destination
    # is built from the host that was checked, not from the Host header
    my ($ua, $token) = with_form('/owa/');
    my ($csrf) = map { /esp_csrf=([0-9a-f]{32})/ ? $1 : () } $ua->cookie_jar->as_string;
    my $body = enc([url => '%2Fowa%2F'], [csrf => $token],
                   [username => uri_escape_utf8($ALICE)], [password => uri_escape_utf8($ALICE_PW)]);
    my $id = 'esp-abs-' . $$ . '-' . int(rand 1e9);
    my $x = EspTest::http_exchange(tls => 1, sni => 'mail.contoso.com', timeout => 10,
        methods => ['POST'],
        data => 'POST https://mail.contoso.com:' . nginx_tls_port() . "/_esp/login HTTP/1.1\r\n"
              . "Host: evil.example:1234\r\nConnection: close\r\nX-Esp-Test-Id: $id\r\n"
              . "Cookie: esp_csrf=$csrf\r\nContent-Type: application/x-www-form-urlencoded\r\n"
              . 'Content-Length: ' . length($body) . "\r\n\r\n$body");
    my @e = backend_entries_for($id);
    my ($dest) = ($e[0]{body} // '') =~ /(?:^|&)destination=([^&]*)/;
    $dest = URI::Escape::uri_unescape($dest // '');
    like($dest, qr{^https://mail\.contoso\.com(?::\d+)?/owa/$},
         "absolute request line, Host evil.example: the destination stays on the checked host ($dest)");
}

# ------------------------------------------------------------ CSRF

{
    my @creds = ([username => uri_escape_utf8($ALICE)], [password => uri_escape_utf8($ALICE_PW)],
                 [url => '%2Fplain%2Fx']);

    my $refused = sub {
        my ($res, $what, $ua) = @_;
        is($res->code, 403, "$what: 403");
        like(message_of($res), qr/^\Q$FORM_EXPIRED\E/, "$what: \"the form has expired\"");
        like($res->decoded_content // '', qr/name="csrf" value="[0-9a-f]{32}"/, "$what: with a fresh form");
        no_bind($res, $what, $ua);
    };

    # no cookie at all (a cross-site post in a browser that never saw us)
    my (undef, $token) = with_form();
    my $ua = ua();
    my $res = post_raw($ua, enc(@creds, [csrf => $token]));
    $refused->($res, 'CSRF: no cookie, a token from someone else');
    ok(error_log_wait('missing or foreign form token'), 'CSRF: the reason is logged');

    # a cookie, but a foreign token in the form
    ($ua, $token) = with_form();
    my (undef, $other) = with_form();
    $res = post_raw($ua, enc(@creds, [csrf => $other]));
    $refused->($res, 'CSRF: our cookie, a foreign token');

    # a planted cookie and a matching token (cookie tossing), without Origin: passes only
    # because nothing tells us otherwise; with a cross-site Origin it does not
    ($ua, $token) = with_form();
    $res = post_raw($ua, enc(@creds, [csrf => $token]), Origin => 'https://evil.example');
    $refused->($res, 'CSRF: matching pair, Origin https://evil.example');
    ok(error_log_wait('posted from another site ("Origin: https://evil.example")'), 'CSRF: Origin logged');

    ($ua, $token) = with_form();
    $res = post_raw($ua, enc(@creds, [csrf => $token]), Origin => 'https://evil.contoso.com');
    $refused->($res, 'CSRF: matching pair, Origin of a sibling host');

    ($ua, $token) = with_form();
    $res = post_raw($ua, enc(@creds, [csrf => $token]), Origin => 'http://mail.contoso.com');
    $refused->($res, 'CSRF: matching pair, Origin with http instead of https');

    ($ua, $token) = with_form();
    $res = post_raw($ua, enc(@creds, [csrf => $token]), 'Sec-Fetch-Site' => 'cross-site');
    $refused->($res, 'CSRF: matching pair, Sec-Fetch-Site: cross-site');

    # a mismatching pair
    ($ua, $token) = with_form();
    my $bad = $token =~ s/^(.)/$1 eq 'a' ? 'b' : 'a'/er;
    $res = post_raw($ua, enc(@creds, [csrf => $bad]));
    $refused->($res, 'CSRF: cookie and field differ in one digit');

    # no token field
    ($ua, $token) = with_form();
    $res = post_raw($ua, enc(@creds));
    $refused->($res, 'CSRF: no token field');

    # a token in the right shape, cookie set by hand to the same value: the
    # pair must also be ours... it is, by construction of double submit: passes
    # (positive controls: what a browser sends)
    ($ua, $token) = with_form();
    $res = post_raw($ua, enc(@creds, [csrf => $token]),
                    Origin => url(''), 'Sec-Fetch-Site' => 'same-origin');
    is($res->code, 302, 'CSRF: our own origin passes');
    ($ua, $token) = with_form();
    $res = post_raw($ua, enc(@creds, [csrf => $token]), Origin => 'null');
    is($res->code, 302, 'CSRF: Origin: null (our pages send no referrer) passes');
    ($ua, $token) = with_form();
    $res = post_raw($ua, enc(@creds, [csrf => $token]), Origin => 'https://MAIL.contoso.com');
    is($res->code, 302, 'CSRF: Origin host compares case-insensitively');
}

# ------------------------------------------------------- malformed bodies

{
    my ($ua, $token) = with_form();
    my $t = "csrf=$token&url=%2Fplain%2Fx";
    my $u = 'username=' . uri_escape_utf8($ALICE);
    my $p = 'password=' . uri_escape_utf8($ALICE_PW);
    my %bad = (
        'malformed percent-encoding in the password' => "$t&$u&password=%zz" . uri_escape_utf8($ALICE_PW),
        'a truncated escape'                         => "$t&$u&$p%4",
        'a lone percent sign'                        => "$t&username=al%&$p",
        'the user name twice'                        => "$t&$u&$u&$p",
        'the password twice'                         => "$t&$u&$p&$p",
        'the url twice'                              => "$t&url=%2Fa&$u&$p",
        'the token twice'                            => "$t&csrf=$token&$u&$p",
        'invalid UTF-8 in the user name'             => "$t&username=%ff%fealice&$p",
        'an overlong UTF-8 sequence'                 => "$t&username=alice%c0%afx&$p",
        'a NUL in the user name'                     => "$t&username=alice%00\@contoso.local&$p",
        'a NUL in the password'                      => "$t&$u&password=x%00y",
        'a newline in the user name'                 => "$t&username=alice%0d%0a&$p",
        'a user name of 300 characters'              => "$t&username=" . ('a' x 300) . "&$p",
        'a password of 300 characters'               => "$t&$u&password=" . ('p' x 300),
    );
    for my $what (sort keys %bad) {
        my $res = post_raw($ua, $bad{$what});
        ok($res->code == 400 || ($res->code == 200 && message_of($res) ne ''),
           "$what: 400 or a message (" . $res->code . ")");
        no_bind($res, $what, $ua);
        ok(error_log_wait('esp: login refused:'), "$what: the reason is logged") if $res->code == 400;
    }

    for my $case (['an empty password', "$t&$u&password="],
                  ['no password field', "$t&$u"],
                  ['an empty user name', "$t&username=&$p"],
                  ['nothing but the token', $t]) {
        my ($what, $body) = @$case;
        my $res = post_raw($ua, $body);
        is($res->code, 200, "$what: the form again");
        like(message_of($res), qr/^Please enter your user name and password\./, "$what: asks for both");
        no_bind($res, $what, $ua);
    }

    # unknown fields are ignored (browsers add some)
    my $res = post_raw($ua, "$t&$u&$p&trusted=0&submit=Sign+in&x");
    is($res->code, 302, 'unknown fields: ignored, the login works');

    # the user name is shown back escaped
    ($ua, $token) = with_form();
    $res = post_raw($ua, "csrf=$token&username=%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E&password=Xx-123456");
    is($res->code, 200, 'markup in the user name: the form again');
    unlike($res->decoded_content, qr/<script>alert/, 'markup in the user name: escaped');
    like($res->decoded_content, qr/value="&quot;&gt;&lt;script&gt;alert\(1\)&lt;\/script&gt;"/,
         'markup in the user name: shown as text');
    like($res->decoded_content, qr{<p class="greeting">It's &quot;ours&quot; &lt;b&gt;only&lt;/b&gt; &amp; more</p>},
         'a greeting with quotes and markup is shown as text');
}

done_testing();

__DATA__

=== TEST 1: a login post that is not a form: 415
--- request
POST /_esp/login
username=alice&password=x
--- more_headers
Content-Type: text/plain
--- error_code: 415
--- backend: none
--- error_log
esp: login refused: not a form post
--- no_error_log
esp: login user=



=== TEST 2: multipart is not a login form: 415
--- request
POST /_esp/login
--x
--- more_headers
Content-Type: multipart/form-data; boundary=x
--- error_code: 415
--- backend: none
--- no_error_log
esp: login user=



=== TEST 3: a type that only starts like a form: 415
--- request
POST /_esp/login
username=alice&password=x
--- more_headers
Content-Type: application/x-www-form-urlencoded-evil
--- error_code: 415
--- backend: none



=== TEST 4: no content type: 415
--- request
POST /_esp/login
username=alice&password=x
--- error_code: 415
--- backend: none



=== TEST 5: a form with parameters is a form (no token: 403, no bind)
--- request
POST /_esp/login
username=alice&password=x
--- more_headers
Content-Type: application/x-www-form-urlencoded; charset=UTF-8
--- error_code: 403
--- backend: none
--- no_error_log
esp: login user=



=== TEST 6: a body over 8 KiB by Content-Length: 413 before it is read
--- request eval
"POST /_esp/login\n" . ('a' x 9000)
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 413
--- backend: none
--- error_log
esp: login refused: body of 9000 bytes



=== TEST 7: a chunked body over 8 KiB: 413
--- raw_request eval
my $chunk = 'username=alice&password=' . ('x' x 12000);
"POST /_esp/login HTTP/1.1\r\nHost: mail.contoso.com\r\nConnection: close\r\n"
. "Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
. sprintf("%x\r\n%s\r\n0\r\n\r\n", length $chunk, $chunk)
--- error_code: 413
--- backend: none
--- error_log
esp: login refused: body too large
--- no_error_log
esp: login user=



=== TEST 8: a chunked body large enough for a temp file: 413
--- raw_request eval
my $chunk = 'username=alice&password=' . ('x' x 40000);
"POST /_esp/login HTTP/1.1\r\nHost: mail.contoso.com\r\nConnection: close\r\n"
. "Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
. sprintf("%x\r\n%s\r\n0\r\n\r\n", length $chunk, $chunk)
--- error_code: 413
--- backend: none
--- no_error_log
esp: login user=



=== TEST 9: an empty body: 400
--- request
POST /_esp/login
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 400
--- backend: none
--- error_log
esp: login refused: empty body



=== TEST 10: other methods on the login endpoint: 405
--- request
PUT /_esp/login
username=alice&password=x
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 405
--- backend: none



=== TEST 11: the signed-out page takes no posts: 405
--- request
POST /_esp/logout
x=1
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 405
--- backend: none



=== TEST 12: the login endpoint answers over plain HTTP too, case-insensitively
--- request
GET /_ESP/Login?url=%2Fowa%2F
--- error_code: 200
--- response_body_like: name="url" value="/owa/"
--- backend: none
