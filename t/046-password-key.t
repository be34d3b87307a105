# The password inside the session cookie (esp_client_auth form with
# esp_server_auth basic), sealed a second time under esp_password_key
# (src/ngx_esp_session.c): the session key files and a captured cookie do
# not give the password; Exchange still gets the right Basic; password keys
# rotate; a dropped password key, or a random one and a reload, mean a new
# login for the sessions that carry a password, and only for them; a
# sealed password moved into another session does not open; version 2
# cookies (the password in the clear) no longer send one; bad key files
# fail "nginx -t" with file:line.
#
# The cookies are read with t/fixtures/esp-cookie.py, an independent
# reading of the format documented in src/ngx_esp_session.c, holding the
# session key file as a thief would.

use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;
use Digest::SHA qw(sha256);
use HTTP::Request::Common qw(GET POST);
use IPC::Open3 qw(open3);
use JSON::PP qw(decode_json encode_json);
use MIME::Base64 qw(decode_base64 encode_base64);
use Symbol qw(gensym);

our $RUN = $ENV{ESP_RUN} || '/tmp/esp-run';
our %PWKEY = (
    N => "$RUN/keys/password.key",         # new: seals
    O => "$RUN/keys/password-old.key",     # old: opens while listed
);
my $SESSION_KEY = "$RUN/keys/session.key";

# key files: ours (mode 600), and bad ones for the config checks
{
    my $umask = umask 077;
    for my $f (values %PWKEY) {
        next if -s $f;
        open my $r, '<:raw', '/dev/urandom' or die $!;
        read($r, my $b, 32) == 32 or die 'urandom';
        EspTest::spurt($f, unpack('H*', $b) . "\n");
    }
    EspTest::spurt("$RUN/keys/password-short.key", "0123456789abcdef\n");
    EspTest::spurt("$RUN/keys/password-empty.key", '');
    umask $umask;
}

if (ad_present() && $ENV{ESP_MODULE}) {
    run_blocks();
}

if (!ad_present() || !exchange_present() || !$ENV{ESP_MODULE}) {
    Test::More::plan(skip_all => 'needs the AD fixture, the stand-in Exchange and the module');
}

my $USERS = ad_users();
my $ALICE = $USERS->{alice}{upn};
my $ALICE_PW = $USERS->{alice}{password};

sub http_config {
    my ($pw) = @_;
    return "esp_session_key $SESSION_KEY;\n"
        . ($pw ? 'esp_password_key ' . join(' ', map { $PWKEY{$_} } split //, $pw) . ";\n" : '')
        . sso_domain_config();
}

my $SERVER = <<'CONF';
esp contoso;
esp_allowed_hosts mail.contoso.com;
location /basic/ {
    esp_client_auth form;
    esp_server_auth basic;
    proxy_pass https://exchange;
}
location /basic2/ {
    esp_client_auth form;
    esp_server_auth basic;
    proxy_pass https://exchange;
}
location /plain/ {
    esp_client_auth form;
    esp_server_auth none;
    proxy_pass https://exchange;
}
location /eas/ {
    esp_client_auth basic;
    esp_server_auth basic;
    proxy_pass https://exchange;
}
CONF

# the same without a location that carries passwords in sessions
(my $SERVER_NO_PW = $SERVER) =~ s{location /basic2?/ \{.*?\}\n}{}gs;

sub conf { return { http_config => http_config($_[0]), config => $_[1] // $SERVER } }

my $WARNING = '"esp_password_key" is not set';

# ---------------------------------------------------------------- helpers

# esp-cookie.py CMD KEYFILE < input: (stdout, exit code)
sub cookie_tool {
    my ($cmd, $key, $input) = @_;
    my $pid = open3(my $in, my $out, my $err = gensym,
                    '/usr/bin/python3', "$ENV{ESP_ROOT}/t/fixtures/esp-cookie.py", $cmd, $key);
    print $in $input;
    close $in;
    my ($o, $e) = do { local $/; (<$out> // '', <$err> // '') };
    waitpid $pid, 0;
    $o =~ s/\s+\z//;
    return ($o, $? >> 8, $e);
}

# the plaintext of a cookie, opened with the session key file alone
sub open_cookie {
    my ($cookie) = @_;
    my ($o, $rc) = cookie_tool('open', $SESSION_KEY, $cookie);
    return $rc == 0 ? decode_json($o) : undef;
}

sub seal_cookie {
    my ($s) = @_;
    my ($o, $rc, $e) = cookie_tool('seal', $SESSION_KEY, encode_json($s));
    die "esp-cookie.py seal: $e" if $rc;
    return $o;
}

# the password of an opened session with a password key file, or undef
# (why in $WHY)
our $WHY = '';

sub open_password {
    my ($s, $key) = @_;
    my ($o, $rc, $e) = cookie_tool('open-password', $key, encode_json($s));
    $WHY = $e;
    return $rc == 0 ? pack('H*', $o) : undef;
}

sub key_id {
    my ($file) = @_;
    my $hex = EspTest::slurp($file);
    $hex =~ s/\s+//g;
    return unpack('H*', substr(sha256('ngx_exchange_esp key id' . pack('H*', $hex)), 0, 4));
}

sub login {
    my ($ua, $path) = @_;
    my ($form) = follow($ua, $ua->get(url($path)));
    return submit_form($ua, $form, username => $ALICE, password => $ALICE_PW);
}

sub session_of { return cookies($_[0])->{esp_session} }

# a request with exactly this session cookie, no jar
sub with_cookie {
    my ($cookie, $path, $method) = @_;
    my $ua = ua();
    $ua->cookie_jar(undef);
    my $req = HTTP::Request->new($method // 'GET', url($path));
    $req->header(Cookie => "esp_session=$cookie");
    return $ua->request($req);
}

# what Exchange received as Basic for this response: (user, password)
sub basic_seen {
    my ($res) = @_;
    my @e = backend_entries_for($res);
    my ($auth) = map { $_->[1] } grep { lc $_->[0] eq 'authorization' } map { @{ $_->{headers} || [] } } @e;
    return () unless defined $auth && $auth =~ /^Basic (\S+)$/;
    return split /:/, decode_base64($1), 2;
}

# 200 and Exchange got alice's user name and password as Basic
sub basic_ok {
    my ($res, $what) = @_;
    is($res->code, 200, "$what: 200");
    my ($u, $p) = basic_seen($res);
    is($u // '', $ALICE, "$what: Exchange got Basic with the user's UPN");
    ok(defined $p && $p eq $ALICE_PW, "$what: and the right password");
}

sub to_login_form {
    my ($res, $what) = @_;
    is($res->code, 302, "$what: 302");
    like($res->header('Location') // '', qr{/_esp/login\?url=}, "$what: to the login form");
    is(scalar backend_entries_for($res, wait => 0.2), 0, "$what: nothing reached Exchange");
}

sub warnings_since_mark {
    return scalar(() = error_log_since_mark() =~ /\[warn\][^\n]*\Q$WARNING\E/g);
}

# ------------------------------------------------- the reader works at all

{
    my ($o, $rc, $e) = cookie_tool('open', $SESSION_KEY, 'AAAA');
    ok($rc == 1 && $e =~ /another key|authenticate/, 'esp-cookie.py runs (python3-cryptography)')
        or BAIL_OUT("t/fixtures/esp-cookie.py does not run: $e");
}

# --------------------------------- a login under the (old) password key O

my $flow_from = error_log_mark();     # after the config errors of the blocks
ok(nginx_start({ %{ conf('O') }, restart => 1 }), 'nginx starts with esp_password_key O')
    or BAIL_OUT('nginx does not start: ' . nginx_error());
is(warnings_since_mark(), 0, 'esp_password_key set: no warning');

my $ua_o = ua();
my $res = login($ua_o, '/basic/x');
is($res->code, 302, 'login: 302 back');
my $c_o = session_of($ua_o);
ok($c_o, 'login: a session cookie');
basic_ok($ua_o->get(url('/basic/x')), 'login under O');

my $s_o = open_cookie($c_o);
ok($s_o, 'the session key file alone opens the cookie');
$s_o ||= {};
is(pack('H*', $s_o->{user} // ''), $ALICE, 'the opened cookie holds the user name (the reader reads it right)');
is($s_o->{version}, 3, 'the cookie is of version 3');
{
    my $plain = pack('H*', $s_o->{plaintext} // '');
    my $pw = $ALICE_PW;
    utf8::encode($pw);
    ok(length $plain > 42, 'the plaintext is there');
    ok(index($plain, $pw) < 0, 'the plaintext does not hold the password');
    ok(index($plain, encode_base64("$ALICE:$pw", '')) < 0, 'nor the Basic credentials');
    ok(index(lc $plain, lc unpack('H*', $pw)) < 0, 'nor the password in hex');
    is(length(pack('H*', $s_o->{password_field} // '')), 4 + 12 + length($pw) + 16,
       'the password field: key id, nonce, the sealed password, tag');
}
is(substr($s_o->{password_field} // '', 0, 8), key_id($PWKEY{O}), 'the password is sealed with password key O');
{
    my $pw = open_password($s_o, $PWKEY{O});
    ok(defined $pw && $pw eq $ALICE_PW, 'password key O and the session id open it, as documented')
        or diag("esp-cookie.py open-password: $WHY");
}
ok(!defined open_password($s_o, $PWKEY{N}), 'another password key does not');
ok(!defined open_password($s_o, $SESSION_KEY), 'nor the session key');

# a session without a password: opens /plain/, carries nothing
my $ua_plain = ua();
login($ua_plain, '/plain/x');
my $c_plain = session_of($ua_plain);
is(with_cookie($c_plain, '/plain/x')->code, 200, 'a session made at a location without a password opens /plain/');
is((open_cookie($c_plain) || {})->{password_field}, '', 'and carries no password');
error_log_mark();
to_login_form(with_cookie($c_plain, '/basic/x'), 'that session at /basic/');
ok(error_log_wait('esp: the session of "' . $ALICE . '" carries no password for esp_server_auth basic: sign in again'),
   'that session at /basic/: logged');

# the session refreshed (idle tracking) keeps its sealed password as it is
{
    my $res = with_cookie($c_o, '/basic2/y');
    basic_ok($res, 'another basic location');
}

# ------------------------------ moved into another session, it does not open

{
    my %moved = (
        'another session id' => sub { my %s = %{ $_[0] }; substr($s{id}, 0, 2) = substr($s{id}, 0, 2) eq '00' ? '01' : '00'; \%s },
        'another user'       => sub { my %s = %{ $_[0] }; $s{user} = unpack('H*', 'bob@contoso.local'); \%s },
        'a flipped bit'      => sub { my %s = %{ $_[0] }; substr($s{password_field}, -2, 2) = sprintf '%02x', hex(substr($s{password_field}, -2, 2)) ^ 1; \%s },
        'an unknown key id'  => sub { my %s = %{ $_[0] }; substr($s{password_field}, 0, 8) = '00000000'; \%s },
        'cut short'          => sub { my %s = %{ $_[0] }; $s{password_field} = substr($s{password_field}, 0, 60); \%s },
    );
    my %reason = (
        'another session id' => 'has a password that does not authenticate',
        'another user'       => 'has a password that does not authenticate',
        'a flipped bit'      => 'has a password that does not authenticate',
        'an unknown key id'  => 'has a password sealed with an unknown password key',
        'cut short'          => 'has a malformed password',
    );
    for my $what (sort keys %moved) {
        my $forged = seal_cookie($moved{$what}->($s_o));
        error_log_mark();
        is(with_cookie($forged, '/plain/x')->code, 200, "forged with $what: a valid session at /plain/ (the thief has the session key)");
        to_login_form(with_cookie($forged, '/basic/x'), "forged with $what: at /basic/ a new login");
        ok(error_log_wait(qr/esp: the session of "[^"]*" \Q$reason{$what}\E: sign in again/),
           "forged with $what: logged ($reason{$what})");
        my $post = with_cookie($forged, '/basic/x', 'POST');
        is($post->code, 440, "forged with $what: a POST gets 440");
        is(scalar backend_entries_for($post, wait => 0.2), 0, "forged with $what: the POST never reaches Exchange");
    }
    my $same = seal_cookie($s_o);
    basic_ok(with_cookie($same, '/basic/x'), 'resealed unchanged by the reader: still opens (the forgeries failed for what was changed)');
}

# ---------------------- version 2 cookies: the password in the clear, unused

{
    my $pw = $ALICE_PW;
    utf8::encode($pw);
    my $v2 = seal_cookie({ %$s_o, version => 2, password_field => unpack('H*', $pw) });
    is(with_cookie($v2, '/plain/x')->code, 200, 'a version 2 cookie still opens /plain/');
    error_log_mark();
    to_login_form(with_cookie($v2, '/basic/x'), 'a version 2 cookie at /basic/: its clear password is not used');
    ok(error_log_wait('carries no password for esp_server_auth basic'), 'version 2 at /basic/: logged as no password');
}

# ----------------------------------------------------- rotation: N, then O

ok(nginx_reload(conf('NO')), 'rotation: esp_password_key N O');
basic_ok(with_cookie($c_o, '/basic/x'), 'rotation: the session sealed under O still works');

my $ua_n = ua();
login($ua_n, '/basic/x');
my $c_n = session_of($ua_n);
my $s_n = open_cookie($c_n) || {};
is(substr($s_n->{password_field} // '', 0, 8), key_id($PWKEY{N}), 'rotation: new logins seal with N');
basic_ok($ua_n->get(url('/basic/x')), 'rotation: the session sealed under N');

ok(nginx_reload(conf('N')), 'rotation: esp_password_key N (O dropped)');
error_log_mark();
to_login_form(with_cookie($c_o, '/basic/x'), 'O dropped: the session sealed under O at /basic/');
ok(error_log_wait('esp: the session of "' . $ALICE . '" has a password sealed with an unknown password key: sign in again'),
   'O dropped: logged');
is(with_cookie($c_o, '/basic/x', 'POST')->code, 440, 'O dropped: a POST gets 440');
is(with_cookie($c_o, '/plain/x')->code, 200, 'O dropped: the same session still opens /plain/');
is(with_cookie($c_plain, '/plain/x')->code, 200, 'O dropped: a session without a password is untouched');
basic_ok(with_cookie($c_n, '/basic/x'), 'O dropped: the session sealed under N');
{
    # the user signs in again, with the jar that holds the old cookie
    my ($form) = follow($ua_o, $ua_o->get(url('/basic/again')));
    like($form->decoded_content // '', qr/name="csrf"/, 'O dropped: the login form');
    submit_form($ua_o, $form, username => $ALICE, password => $ALICE_PW);
    basic_ok($ua_o->get(url('/basic/again')), 'O dropped: after a new login');
}

# --------------------------- no esp_password_key: a random key, a warning

error_log_mark();
ok(nginx_reload(conf('')), 'random: no esp_password_key');
ok(error_log_wait($WARNING), 'random: a warning says so');
is(warnings_since_mark(), 1, 'random: once, for two locations that need it');
like(error_log_since_mark(), qr/\[warn\][^\n]*\Q$WARNING\E[^\n]*nginx\.conf:\d+/, 'random: the warning names the config file');

my $ua_r = ua();
login($ua_r, '/basic/x');
my $c_r = session_of($ua_r);
basic_ok($ua_r->get(url('/basic/x')), 'random: a new login works');
to_login_form(with_cookie($c_n, '/basic/x'), 'random: the session sealed under N (no longer listed)');

ok(nginx_reload(conf('')), 'random: reload, the same config');
error_log_mark();
to_login_form(with_cookie($c_r, '/basic/x'), 'random, reloaded: the session sealed under the old random key at /basic/');
ok(error_log_wait('has a password sealed with an unknown password key'), 'random, reloaded: logged');
is(with_cookie($c_r, '/plain/x')->code, 200, 'random, reloaded: the same session still opens /plain/');
is(with_cookie($c_plain, '/plain/x')->code, 200, 'random, reloaded: a session without a password is untouched');
is($ua_plain->get(url('/plain/x'))->code, 200, 'random, reloaded: and so is its user');
is($ua_plain->get(url('/eas/x'), Authorization => basic_auth($ALICE, $ALICE_PW))->code, 200,
   'random, reloaded: Basic clients (no session) are untouched');

error_log_mark();
ok(nginx_reload(conf('', $SERVER_NO_PW)), 'no location carries passwords, no esp_password_key');
is(warnings_since_mark(), 0, 'no location needs it: no warning');

error_log_mark();
ok(nginx_start({ %{ conf('') }, restart => 1 }), 'start with no esp_password_key');
is(warnings_since_mark(), 1, 'start: the warning, once');

unlike(EspTest::slurp(nginx_prefix() . '/logs/error.log'), qr/\Q$ALICE_PW\E/, 'the password is in no log line');
unlike(error_log_since_mark($flow_from), qr/\[(?:alert|crit|emerg)\]|exited on signal/,
       'no alert, no crash');

nginx_stop();
done_testing();

__DATA__

=== TEST 1: esp_password_key with two files loads
--- http_config
esp_session_key $ESP_RUN/keys/session.key;
esp_password_key $ESP_RUN/keys/password.key $ESP_RUN/keys/password-old.key;
esp_sso_domain contoso {
    ldap_server ldaps://$AD_DC1:636;
    ldap_ca_certificate $ESP_CA;
}
--- config
esp contoso;
esp_allowed_hosts mail.contoso.com;
location / { esp_server_auth basic; proxy_pass https://exchange; }
--- request
GET /owa/
--- error_code: 302
--- no_error_log
esp_password_key



=== TEST 2: a password key file that does not exist
--- http_config
esp_password_key $ESP_RUN/keys/password.key $ESP_RUN/keys/nope.key;
--- must_die
--- error_log eval
qr/open\(\) "\S+\/keys\/nope\.key" failed \(2: No such file or directory\) in \S+nginx\.conf:\d+/



=== TEST 3: a password key file that holds too little
--- http_config
esp_password_key $ESP_RUN/keys/password-short.key;
--- must_die
--- error_log eval
qr/password key "\S+\/keys\/password-short\.key" must hold 32 random bytes: raw, as 64 hex digits or in base64 \(make one with "openssl rand -hex 32"\) in \S+nginx\.conf:\d+/



=== TEST 4: an empty password key file
--- http_config
esp_password_key $ESP_RUN/keys/password-empty.key;
--- must_die
--- error_log eval
qr/password key "\S+\/keys\/password-empty\.key" must hold 32 random bytes\b.* in \S+nginx\.conf:\d+/



=== TEST 5: a password key listed twice
--- http_config
esp_password_key $ESP_RUN/keys/password.key $ESP_RUN/keys/password.key;
--- must_die
--- error_log eval
qr/password key "\S+\/keys\/password\.key" is listed twice in \S+nginx\.conf:\d+/



=== TEST 6: the session key as the password key (after esp_session_key)
--- http_config
esp_session_key $ESP_RUN/keys/session.key;
esp_password_key $ESP_RUN/keys/password.key $ESP_RUN/keys/session.key;
--- must_die
--- error_log eval
qr/password key "\S+\/keys\/session\.key" holds the same key as "\S+\/keys\/session\.key": "esp_session_key" and "esp_password_key" must be separate secrets in \S+nginx\.conf:\d+/



=== TEST 7: a password key as a session key (before esp_session_key)
--- http_config
esp_password_key $ESP_RUN/keys/password.key;
esp_session_key $ESP_RUN/keys/session-old.key $ESP_RUN/keys/password.key;
--- must_die
--- error_log eval
qr/session key "\S+\/keys\/password\.key" holds the same key as "\S+\/keys\/password\.key": "esp_session_key" and "esp_password_key" must be separate secrets in \S+nginx\.conf:\d+/



=== TEST 8: esp_password_key twice
--- http_config
esp_password_key $ESP_RUN/keys/password.key;
esp_password_key $ESP_RUN/keys/password-old.key;
--- must_die
--- error_log eval
qr/"esp_password_key" directive is duplicate in \S+nginx\.conf:\d+/



=== TEST 9: esp_password_key without a file
--- http_config
esp_password_key;
--- must_die
--- error_log eval
qr/invalid number of arguments in "esp_password_key" directive in \S+nginx\.conf:\d+/



=== TEST 10: esp_password_key in a server block
--- config
esp_password_key $ESP_RUN/keys/password.key;
--- must_die
--- error_log eval
qr/"esp_password_key" directive is not allowed here in \S+nginx\.conf:\d+/
