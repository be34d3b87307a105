# Sessions (src/ngx_esp_session.c, the session half of src/ngx_esp_form.c):
# AES-256-GCM sealed cookies that survive reloads and key rotation, idle
# and maximum lifetimes (public and private), cookies that are tampered
# with, truncated, empty, oversized, sealed with another key or sent twice,
# 440 for scripts, and Exchange ending its own session first.  No redirect
# ever loops.

use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;
use Digest::SHA qw(sha256);
use HTTP::Request::Common qw(GET POST PUT);
use MIME::Base64 qw(decode_base64 encode_base64);
use Time::HiRes qw(sleep time);
use URI;

if (!ad_present() || !exchange_present() || !$ENV{ESP_MODULE}) {
    Test::More::plan(skip_all => 'needs the AD fixture, the stand-in Exchange and the module');
}

my $RUN = $ENV{ESP_RUN} || '/tmp/esp-run';
my $USERS = ad_users();
my $ALICE = $USERS->{alice}{upn};
my $ALICE_PW = $USERS->{alice}{password};

my %KEY = (
    A => "$RUN/keys/session-old.key",
    B => "$RUN/keys/session.key",
    F => "$RUN/keys/foreign.key",
);

sub http_config {
    my ($keys) = @_;
    return "esp_session_key " . join(' ', map { $KEY{$_} } split //, $keys) . ";\n"
        . sso_domain_config()
        . sso_domain_config(name => 'short',
                            session_timeout => ['public idle=3s max=6s',
                                                'private idle=20s max=30s']);
}

my $SERVER = <<'CONF';
esp contoso;
esp_allowed_hosts mail.contoso.com;
location /owa/ {
    esp_client_auth form;
    esp_server_auth form;
    esp_logoff /owa/logoff.owa;
    proxy_pass https://exchange;
}
location /plain/ {
    esp_client_auth form;
    proxy_pass https://exchange;
}
location /short/ {
    esp short;
    esp_client_auth form;
    proxy_pass https://exchange;
}
location /short-nochoice/ {
    esp short;
    esp_client_auth form;
    esp_public_private off;
    proxy_pass https://exchange;
}
CONF

sub conf { return { http_config => http_config($_[0] // 'B'), config => $SERVER } }

ok(nginx_start(conf('B')), 'nginx starts') or BAIL_OUT('nginx does not start: ' . nginx_error());

# ---------------------------------------------------------------- helpers

sub login {
    my ($ua, $path, %f) = @_;
    my ($form) = follow($ua, $ua->get(url($path)));
    return submit_form($ua, $form, username => $ALICE, password => $ALICE_PW, %f);
}

sub session_of { return cookies($_[0])->{esp_session} }

sub b64url_decode {
    my ($s) = @_;
    $s =~ tr/-_/+\//;
    return decode_base64($s . '=' x (-length($s) % 4));
}

sub b64url_encode {
    my $s = encode_base64($_[0], '');
    $s =~ tr/+\//-_/;
    $s =~ s/=+$//;
    return $s;
}

sub key_id {
    my ($file) = @_;
    open my $fh, '<', $file or die "$file: $!";
    my $hex = <$fh>;
    $hex =~ s/\s+//g;
    return substr(sha256('ngx_exchange_esp key id' . pack('H*', $hex)), 0, 4);
}

sub sealed_with {
    my ($cookie) = @_;
    my $id = substr(b64url_decode($cookie // ''), 0, 4);
    my ($name) = grep { key_id($KEY{$_}) eq $id } sort keys %KEY;
    return $name // '?';
}

# a request with exactly this Cookie header, no jar
sub with_cookie {
    my ($cookie, $path, $method) = @_;
    my $ua = ua(cookie_jar => {});
    $ua->cookie_jar(undef);
    my $req = HTTP::Request->new($method // 'GET', url($path // '/plain/x'));
    $req->header(Cookie => $cookie) if defined $cookie;
    return $ua->request($req);
}

sub cleared {
    my ($res) = @_;
    return scalar grep { /^esp_session=; Path=\/; Max-Age=0/ } $res->header('Set-Cookie');
}

sub to_login_form {
    my ($res, $what) = @_;
    is($res->code, 302, "$what: 302");
    like($res->header('Location') // '', qr{/_esp/login\?url=}, "$what: to the login form");
    is(scalar backend_entries_for($res, wait => 0.2), 0, "$what: nothing reached Exchange");
}

sub expired_message {
    my ($ua, $res, $what) = @_;
    like($res->header('Location') // '', qr/[?&]reason=timeout\b/, "$what: the login URL says why");
    my ($page) = follow($ua, $res);
    like($page->decoded_content // '', qr{<div id="msg" class="msg info"[^>]*>Your session has expired\.},
         "$what: the form says \"Your session has expired\"");
}

# ----------------------------------------------------- a valid session

my $ua = ua();
my $res = login($ua, '/plain/x');
is($res->code, 302, 'login: 302 back');
my $valid = session_of($ua);
ok($valid, 'login: session cookie');
is(sealed_with($valid), 'B', 'login: sealed with the first esp_session_key');
is($ua->get(url('/plain/x'))->code, 200, 'session: opens the location');

# ------------------------------------------------------ broken cookies

{
    my $raw = b64url_decode($valid);
    # 4 key id + 12 nonce, then the plaintext: 42 fixed bytes, the domain
    # (1 + "contoso"), the user name's length (2) and the user name
    my $user_at = 4 + 12 + 42 + 1 + length('contoso') + 2;
    my %reason = (
        'a flipped byte in the user name'  => 'does not authenticate',
        'a flipped byte in the ciphertext' => 'does not authenticate',
        'a flipped byte in the tag'        => 'does not authenticate',
        'a flipped byte in the nonce'      => 'does not authenticate',
        'truncated to the key id'          => 'truncated',
        'empty'                            => 'bad length',
        'oversized (5000 bytes)'           => 'bad length',
        'an unknown key id'                => 'sealed with an unknown key',
    );
    my %bad = (
        'a flipped byte in the user name'  => do { my $t = $raw; substr($t, $user_at + 1, 1) ^= "\x04"; b64url_encode($t) },
        'a flipped byte in the ciphertext' => do { my $t = $raw; substr($t, 30, 1) ^= "\x01"; b64url_encode($t) },
        'a flipped byte in the tag'        => do { my $t = $raw; substr($t, -1, 1) ^= "\x80"; b64url_encode($t) },
        'a flipped byte in the nonce'      => do { my $t = $raw; substr($t, 6, 1) ^= "\x01"; b64url_encode($t) },
        'a flipped character'              => do { my $t = $valid; substr($t, 20, 1) = substr($t, 20, 1) eq 'A' ? 'B' : 'A'; $t },
        'truncated by one byte'            => b64url_encode(substr($raw, 0, -1)),
        'truncated to half'                => substr($valid, 0, int(length($valid) / 2)),
        'truncated to the key id'          => b64url_encode(substr($raw, 0, 4)),
        'empty'                            => '',
        'oversized (5000 bytes)'           => 'A' x 5000,
        'not base64url'                    => 'a!b@c#d$e%' x 8,
        'quoted garbage'                   => '"' . ('x' x 60) . '"',
        'an unknown key id'                => b64url_encode("\0\0\0\0" . substr($raw, 4)),
    );
    for my $what (sort keys %bad) {
        error_log_mark();
        my $res = with_cookie("esp_session=$bad{$what}");
        to_login_form($res, "cookie $what");
        ok(cleared($res), "cookie $what: cleared");
        ok(error_log_wait('esp: session cookie refused: ' . ($reason{$what} // '')),
           "cookie $what: the refusal is logged" . ($reason{$what} ? " ($reason{$what})" : ''));
    }
    unlike(EspTest::slurp(nginx_prefix() . '/logs/error.log'), qr/\[(?:alert|crit|emerg)\]|exited on signal/,
           'broken cookies: no alert, no crash');
}

# ------------------------------------------------------ duplicate cookies

{
    my $stale = b64url_encode(do { my $t = b64url_decode($valid); substr($t, 30, 1) ^= "\x01"; $t });
    is(with_cookie("esp_session=$stale; esp_session=$valid")->code, 200,
       'duplicates: a stale cookie before a valid one passes');
    is(with_cookie("esp_session=$valid; esp_session=$stale")->code, 200,
       'duplicates: a valid cookie before a stale one passes');
    is(with_cookie("other=1; esp_session=$stale; x=y; esp_session=$valid")->code, 200,
       'duplicates: among other cookies, too');
    my $res = with_cookie("esp_session=$stale; esp_session=xyz");
    to_login_form($res, 'two stale cookies');
    is(scalar(cleared($res)), 1, 'two stale cookies: cleared once');

    # the classic loop: stale duplicates under two paths, as a browser keeps them
    my $ua = ua();
    my $jar = $ua->cookie_jar;
    $jar->set_cookie(0, 'esp_session', $stale, '/', 'mail.contoso.com', undef, 1, 1, 3600);
    $jar->set_cookie(0, 'esp_session', 'x' . $stale, '/owa', 'mail.contoso.com', undef, 1, 1, 3600);
    my ($end, @hops) = follow($ua, $ua->get(url('/owa/')), max => 10);
    ok(@hops <= 3, 'two stale cookies: at most 3 hops (' . scalar(@hops) . ')');
    is($end->code, 200, 'two stale cookies: ends with 200');
    like($end->decoded_content // '', qr/name="csrf"/, 'two stale cookies: at the login form');
    is(URI->new($end->request->uri)->path, '/_esp/login', 'two stale cookies: at /_esp/login');
    # and the login then works although the /owa one is still there
    my $f = form_of($end);
    $res = submit_form($ua, $end, username => $ALICE, password => $ALICE_PW);
    ($end, @hops) = follow($ua, $res, max => 10);
    is($end->code, 200, 'two stale cookies: after the login the stale one next to the new one passes');
    like($end->decoded_content // '', qr/content="owa"/, 'two stale cookies: OWA is reached');
    ok(@hops <= 3, 'two stale cookies: no loop after the login');
}

# ---------------------------------------------------------- 440 for scripts

{
    for my $m (qw(POST PUT DELETE)) {
        my $res = with_cookie(undef, '/owa/service.svc?action=GetItem', $m);
        is($res->code, 440, "no session: $m gets 440");
        is($res->message, 'Login Timeout', "no session: $m: 440 Login Timeout");
        is(scalar backend_entries_for($res, wait => 0.2), 0, "no session: $m never reaches Exchange");
    }
    my $stale = 'A' x 80;
    $res = with_cookie("esp_session=$stale", '/plain/x', 'POST');
    is($res->code, 440, 'stale session: POST gets 440');
    ok(cleared($res), 'stale session: and the cookie is cleared');
    $res = with_cookie("esp_session=$valid", '/plain/x', 'POST');
    is($res->code, 200, 'valid session: POST passes');
    is(scalar backend_entries_for($res), 1, 'valid session: POST reaches Exchange');
    $res = with_cookie(undef, '/plain/x', 'HEAD');
    is($res->code, 302, 'no session: HEAD gets the redirect as GET does');
}

# -------------------------------------------- Exchange ends its session first

{
    my $ua = ua();
    $res = login($ua, '/owa/');
    ($res) = follow($ua, $res);
    is($res->code, 200, 'bounce: logged in to OWA');
    my $old = session_of($ua);
    $ua->cookie_jar->clear('mail.contoso.com', '/', $_) for qw(cadata cadataTTL cadataKey cadataIV cadataSig);
    error_log_mark();
    $res = $ua->get(url('/owa/?x=1'));
    is($res->code, 302, 'bounce: Exchange sends the user to logon.aspx');
    my $loc = URI->new_abs($res->header('Location') // '', url('/'));
    is($loc->path, '/_esp/login', 'bounce: rewritten to our login');
    is({ $loc->query_form }->{url}, '/owa/?x=1', 'bounce: with the URL the user wanted');
    ok(cleared($res), 'bounce: our cookie is cleared');
    ok(error_log_wait('Exchange asks "alice@contoso.local" to sign in again'), 'bounce: logged');
    my ($end, @hops) = follow($ua, $res);
    ok(@hops <= 3, 'bounce: no loop');
    like($end->decoded_content // '', qr/name="csrf"/, 'bounce: ends at our login form');
    to_login_form(with_cookie("esp_session=$old", '/plain/x'), 'bounce: the ended session replayed');

    # signing in again works
    ($end) = follow($ua, submit_form($ua, $end, username => $ALICE, password => $ALICE_PW));
    like($end->decoded_content // '', qr/content="owa"/, 'bounce: signing in again reaches OWA');
}

# ------------------------------------------------------- lifetimes

{
    my ($pub, $priv, $nochoice) = (ua(), ua(), ua());
    my $t0 = time;
    login($pub, '/short/p');
    my $r = $pub->get(url('/short/p'));
    is($r->code, 200, 'lifetimes: public session valid right after the login');
    login($priv, '/short/p', trusted => 1);

    # no re-issue right away (private idle=20s: not before 2 s)
    my $tp = time;
    $r = $priv->get(url('/short/p'));
    is($r->code, 200, 'lifetimes: private session valid right after the login');
    ok(!grep({ /^esp_session=/ } $r->header('Set-Cookie')) || time - $tp >= 1,
       'lifetimes: not re-issued on every request');

    login($nochoice, '/short-nochoice/p', trusted => 1);
    my $tn = time;
    ok(session_of($_), 'lifetimes: logged in') for $pub, $priv, $nochoice;

    # more than 3 whole seconds after the last use of each
    my $until = $t0 + 4.2 > $tn + 3.2 ? $t0 + 4.2 : $tn + 3.2;
    sleep($until - time) if $until > time;
    error_log_mark();
    $r = $pub->get(url('/short/p'));
    to_login_form($r, 'idle (public idle=3s, 4s later)');
    ok(cleared($r), 'idle: cookie cleared');
    ok(error_log_wait('esp: session of "alice@contoso.local" expired (idle)'), 'idle: logged as idle');
    expired_message($pub, $r, 'idle');

    $r = $priv->get(url('/short/p'));
    is($r->code, 200, 'private: still valid after 4s (private idle=20s)');
    ok(grep({ /^esp_session=[A-Za-z0-9_-]{40,};/ } $r->header('Set-Cookie')), 'private: re-issued after more than idle/10');

    $r = $nochoice->get(url('/short-nochoice/p'));
    to_login_form($r, 'esp_public_private off: trusted=1 ignored, public idle applies');

    # the maximum: touched every second, it still ends after 6 s
    my $ua = ua();
    login($ua, '/short/m');
    my $t1 = time;
    my ($ended, $reissued, $passed) = (0, 0, 0);
    while (time - $t1 < 10) {
        sleep 1;
        error_log_mark();
        $r = $ua->get(url('/short/m'));
        if ($r->code == 200) {
            $passed++;
            $reissued++ if grep { /^esp_session=[A-Za-z0-9_-]{40,};/ } $r->header('Set-Cookie');
            next;
        }
        $ended = time - $t1;
        last;
    }
    ok($passed >= 4, "max: kept alive past the idle timeout by use ($passed requests passed)");
    ok($reissued >= 2, "max: the cookie was re-issued on the way ($reissued times)");
    ok($ended >= 5 && $ended < 8.5, sprintf('max: ended about 6 s after the login (%.1f s)', $ended));
    is($r->code, 302, 'max: then 302');
    ok(error_log_wait('expired (maximum lifetime)'), 'max: logged as maximum lifetime');
    expired_message($ua, $r, 'max');

    # a session of domain "short" opens nothing of domain "contoso"
    $ua = ua();
    login($ua, '/short/d');
    error_log_mark();
    to_login_form($ua->get(url('/plain/d')), 'another domain\'s session');
    ok(error_log_wait('is for domain "short"'), 'another domain\'s session: logged');
}

# -------------------------------------------------------- reload, keys

{
    # logoff, then a reload: the revocation stays
    my $ua = ua();
    login($ua, '/owa/');
    my $gone = session_of($ua);
    follow($ua, $ua->get(url('/owa/logoff.owa')));
    to_login_form(with_cookie("esp_session=$gone", '/plain/x'), 'logoff before a reload');

    ok(nginx_reload(conf('B')), 'reload: same config');
    is(with_cookie("esp_session=$valid")->code, 200, 'reload: the session is still valid');
    to_login_form(with_cookie("esp_session=$gone", '/plain/x'), 'reload: the logged-off session stays revoked');

    # rotation: A seals, then B A, then B alone
    ok(nginx_reload(conf('A')), 'rotation: esp_session_key A');
    $ua = ua();
    login($ua, '/plain/x');
    my $ca = session_of($ua);
    is(sealed_with($ca), 'A', 'rotation: sealed with A');
    to_login_form(with_cookie("esp_session=$valid"), 'rotation: a cookie of B while only A is listed');

    ok(nginx_reload(conf('BA')), 'rotation: esp_session_key B A');
    is(with_cookie("esp_session=$ca")->code, 200, 'rotation: the cookie sealed by A is accepted');
    is(with_cookie("esp_session=$valid")->code, 200, 'rotation: and one sealed by B');
    $ua = ua();
    login($ua, '/plain/x');
    my $cb = session_of($ua);
    is(sealed_with($cb), 'B', 'rotation: new cookies are sealed with B');

    ok(nginx_reload(conf('B')), 'rotation: esp_session_key B (A retired)');
    error_log_mark();
    my $r = with_cookie("esp_session=$ca");
    to_login_form($r, 'rotation: the cookie of the retired key A');
    ok(cleared($r), 'rotation: cleared');
    ok(error_log_wait('sealed with an unknown key'), 'rotation: logged as an unknown key');
    is(with_cookie("esp_session=$cb")->code, 200, 'rotation: B\'s cookie still valid');

    # a stranger's key
    ok(nginx_reload(conf('F')), 'foreign: a server with another key');
    $ua = ua();
    login($ua, '/plain/x');
    my $cf = session_of($ua);
    is(sealed_with($cf), 'F', 'foreign: sealed with the foreign key');
    ok(nginx_reload(conf('B')), 'foreign: back to our key');
    to_login_form(with_cookie("esp_session=$cf"), 'foreign: its cookie');
    my $forged = b64url_encode(key_id($KEY{B}) . substr(b64url_decode($cf), 4));
    error_log_mark();
    to_login_form(with_cookie("esp_session=$forged"), 'foreign: its cookie under our key id');
    ok(error_log_wait('does not authenticate'), 'foreign: under our key id it does not authenticate');
}

done_testing();
