# The second factor of the login form (esp_mfa totp, src/ngx_esp_mfa.c,
# src/ngx_esp_totp.c): after the password a page asks for the code, and
# only a good code gets the session; codes computed here (RFC 6238); a
# code is good once; one step either side passes, two do not; wrong codes
# count toward a lockout of their own; a tampered secret, or one copied
# from another user, opens nothing; the pending login between the steps
# is good once, for its lifetime, with its own browser's form token, for
# its own user; esp_server_auth form hands the password to Exchange once,
# after the code; enrolment off refuses a user without a secret clearly;
# nginx -t warns where esp_mfa is set on a Basic location; bad input.
#
# The users are this file's own (t/fixtures/ad/mfa-user.py on dc1, which
# the config alone uses: the fixture's DCs do not replicate); the secret
# is in carLicense (Samba has no Exchange schema, so no
# extensionAttribute15), sealed by t/fixtures/esp-totp.py, an independent
# reading of the format.

use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;
use EspTest::Mfa;
use HTTP::Request::Common qw(GET POST);
use POSIX ();

if (!ad_present() || !exchange_present() || !$ENV{ESP_MODULE}) {
    Test::More::plan(skip_all => 'needs the AD fixture, the stand-in Exchange and the module');
}

our $RUN = $ENV{ESP_RUN} || '/tmp/esp-run';
my $ROOT = $ENV{ESP_ROOT} || '.';
my $ATTR = 'carLicense';
my $TOTP_KEY = totp_key_file();
my $MAX = 5;


# ---------------------------------------------------------------- helpers


sub seal {
    my ($user, $secret) = @_;
    my $v = `/usr/bin/python3 $ROOT/t/fixtures/esp-totp.py seal $TOTP_KEY $user\@contoso.local @{[ unpack('H*', $secret) ]}`;
    chomp $v;
    return $v;
}



# a step with room on both sides: not within 3 s of its end
sub fresh_step {
    sleep 1 while time() % 30 > 26;
    return step();
}

my @USERS = qw(mfa-a mfa-b mfa-c mfa-t mfa-lock mfa-sso mfa-none mfa-x);
my %PW = mfa_users(@USERS);
my %SECRET = map { ($_ => join '', map { chr int rand 256 } 1 .. 20) } @USERS;

for my $u (qw(mfa-a mfa-b mfa-lock mfa-sso mfa-x)) {
    mfa_ad(set => $u, $ATTR, seal($u, $SECRET{$u}));
}

# tampered: one byte of the ciphertext flipped
{
    my $v = seal('mfa-t', $SECRET{'mfa-t'});
    my $raw = MIME::Base64::decode_base64(substr($v, 5));
    substr($raw, 20, 1) = chr(ord(substr($raw, 20, 1)) ^ 1);
    mfa_ad(set => 'mfa-t', $ATTR, 'esp1:' . MIME::Base64::encode_base64($raw, ''));
}

# copied: mfa-b's sealed secret on mfa-c's entry
mfa_ad(set => 'mfa-c', $ATTR, mfa_ad(get => 'mfa-b', $ATTR));

use MIME::Base64 ();

my $DOMAIN = sso_domain_config(
    ldap_server => 'ldaps://' . ad_env('AD_DC1') . ':636',
    max_failed_auths => $MAX, reset_fail_timeout => '10m', unblock_timeout => '10m',
    totp_attribute => $ATTR, totp_key_file => $TOTP_KEY);

my $HTTP = "esp_session_key $RUN/keys/session.key;\n"
    . "esp_shared_zone esp048:1m;\n" . $DOMAIN;

my $SERVER = <<'CONF';
esp contoso;
esp_allowed_hosts mail.contoso.com;
esp_mfa totp;
location /owa/ {
    esp_client_auth form;
    esp_server_auth form;
    proxy_pass https://exchange;
}
location /ecp/ {
    esp_client_auth form;
    esp_server_auth none;
    proxy_pass https://exchange;
}
location /basic/ {
    esp_client_auth form;
    esp_server_auth basic;
    proxy_pass https://exchange;
}
location /short/ {
    esp_client_auth form;
    esp_mfa_timeout 2s;
    proxy_pass https://exchange;
}
location /nomfa/ {
    esp_client_auth form;
    esp_mfa off;
    proxy_pass https://exchange;
}
location /Microsoft-Server-ActiveSync {
    esp_client_auth basic;
    esp_server_auth basic;
    proxy_pass https://exchange;
}
CONF

ok(nginx_start({ http_config => $HTTP, config => $SERVER }), 'nginx starts with esp_mfa totp')
    or Test::More::BAIL_OUT('nginx: ' . nginx_error());

# the password step: the code page (or whatever came instead)
sub password_step {
    my ($ua, $path, $user, $pw) = @_;
    my $res = $ua->get(url($path));
    return $res unless $res->code == 302;
    ($res) = follow($ua, $res);
    return submit_form($ua, $res, username => "$user\@contoso.local", password => $pw // $PW{$user});
}

sub pending_of {
    my ($res) = @_;
    return ($res->decoded_content // '') =~ /name="mfa" value="([^"]*)"/ ? $1 : undef;
}

sub code_step {
    my ($ua, $res, $code) = @_;
    return submit_form($ua, $res, code => $code);
}

sub session_of { return cookies($_[0])->{esp_session} }

sub is_code_page {
    my ($res, $name) = @_;
    ok($res->code == 200 && defined pending_of($res)
       && $res->decoded_content =~ /Verify your identity/, "$name: the code page")
        or diag(mask($res->as_string));
}

# ------------------------------------------------------ right code: session

my $S = fresh_step();

{
    my $ua = ua();
    error_log_mark();
    my $res = password_step($ua, '/ecp/', 'mfa-a');
    is_code_page($res, 'right password');
    ok(!session_of($ua), 'right password: no session cookie yet');
    ok(!backend_entries_for($res), 'right password: Exchange saw nothing');
    my $r2 = $ua->get(url('/ecp/'));
    is($r2->code, 302, 'between the steps: the mailbox is still closed');

    $res = code_step($ua, $res, totp($SECRET{'mfa-a'}, $S));
    is($res->code, 302, 'right code: on to the return URL');
    ok(session_of($ua), 'right code: the session cookie');
    is(URI->new($res->header('Location'))->path, '/ecp/', 'right code: back to /ecp/');
    ok(error_log_wait(qr/second factor ok user="mfa-a\@contoso\.local" client=\S+ domain=contoso method=totp/),
       'right code: logged');
    $r2 = $ua->get(url('/ecp/'));
    unlike($r2->header('Location') // '', qr{/_esp/login}, 'right code: the session opens /ecp/');
    ok(scalar backend_entries_for($r2), 'right code: Exchange is reached');

    # ---------------------------------------------- replay: used once
    my $ua2 = ua();
    $res = password_step($ua2, '/ecp/', 'mfa-a');
    is_code_page($res, 'replay');
    $res = code_step($ua2, $res, totp($SECRET{'mfa-a'}, $S));
    is($res->code, 200, 'replay: a used code gets the page again');
    like($res->decoded_content, qr/This code was used already/, 'replay: says so');
    ok(!session_of($ua2), 'replay: no session');
    ok(error_log_wait(qr/user "mfa-a\@contoso\.local" sent a TOTP code that was used already/),
       'replay: logged');

    # ---------------------------------------------- the window: +-1, not +-2
    for my $d (2, -2) {
        $res = code_step($ua2, $res, totp($SECRET{'mfa-a'}, $S + $d));
        is($res->code, 200, "step $d: refused");
        like($res->decoded_content, qr/The code is not valid/, "step $d: wrong code");
        ok(!session_of($ua2), "step $d: no session");
    }
    # two wrong codes so far: one right one resets the counter
    $res = code_step($ua2, $res, totp($SECRET{'mfa-a'}, $S + 1));
    is($res->code, 302, 'step +1: accepted');
    ok(session_of($ua2), 'step +1: session');

    my $ua3 = ua();
    $res = password_step($ua3, '/ecp/', 'mfa-a');
    $res = code_step($ua3, $res, totp($SECRET{'mfa-a'}, $S - 1));
    is($res->code, 302, 'step -1: accepted');
    ok(session_of($ua3), 'step -1: session');
}

# ---------------------------------------------------------- another user's

{
    my $ua = ua();
    my $res = password_step($ua, '/ecp/', 'mfa-x');
    is_code_page($res, 'another user');
    $res = code_step($ua, $res, totp($SECRET{'mfa-b'}, step()));
    is($res->code, 200, "another user's code: refused");
    like($res->decoded_content, qr/The code is not valid/, "another user's code: wrong code");
    ok(!session_of($ua), "another user's code: no session");
}

# ------------------------------------------------- tampered and copied secrets

for my $case (['mfa-t', 'tampered'], ['mfa-c', 'copied from another user']) {
    my ($u, $what) = @$case;
    my $ua = ua();
    error_log_mark();
    my $res = password_step($ua, '/ecp/', $u);
    is($res->code, 403, "$what secret: refused");
    like($res->decoded_content, qr/cannot be used\. Contact your help desk/, "$what secret: says why");
    like($res->decoded_content, qr/<form [^>]*class="hidden"/, "$what secret: no code form");
    unlike($res->decoded_content, qr/name="mfa" value="[^"]/, "$what secret: no pending login");
    ok(!session_of($ua), "$what secret: no session");
    ok(error_log_wait(qr/the TOTP secret of user "\Q$u\E\@contoso\.local" in "carLicense" does not open/),
       "$what secret: logged");
}

# --------------------------------------------------------- enrolment off

{
    my $ua = ua();
    error_log_mark();
    my $res = password_step($ua, '/ecp/', 'mfa-none');
    is($res->code, 403, 'no secret, enrolment off: refused');
    like($res->decoded_content, qr/Your account has no second sign-in factor set up/, 'no secret: a clear message');
    ok(!session_of($ua), 'no secret: no session');
    ok(error_log_wait(qr/user "mfa-none\@contoso\.local" has no TOTP secret and esp_mfa_enroll is off/),
       'no secret: logged');
    # a wrong password never reaches the second step
    $res = password_step(ua(), '/ecp/', 'mfa-none', 'Wrong-Password-1!');
    unlike($res->decoded_content, qr/second sign-in factor|name="mfa"/, 'wrong password: the login form, no second step');
}

# ---------------------------------------------------- the pending login

{
    # used twice
    my $ua = ua();
    my $res = password_step($ua, '/ecp/', 'mfa-b');
    is_code_page($res, 'pending');
    my $form = $res;
    error_log_mark();
    my $r1 = code_step($ua, $form, '000000');
    is($r1->code, 200, 'pending: a wrong code, a new page');
    isnt(pending_of($r1), pending_of($form), 'pending: the new page has a new pending login');
    my $r2 = code_step($ua, $form, totp($SECRET{'mfa-b'}, step()));
    is($r2->code, 403, 'pending: the first one again, even with a right code: refused');
    like($r2->decoded_content, qr/name="password"/, 'pending used twice: back to the login form');
    ok(!session_of($ua), 'pending used twice: no session');
    ok(error_log_wait(qr/the pending login of user "mfa-b\@contoso\.local" was used already/),
       'pending used twice: logged');

    # another browser's token: both the cookie and the field of another form
    my $other = ua();
    my $login = $other->get(url('/_esp/login?url=/ecp/'));
    my ($csrf) = $login->decoded_content =~ /name="csrf" value="([0-9a-f]+)"/;
    ok($csrf && $csrf ne cookies($ua)->{esp_csrf}, 'another browser has another token');
    my $post = POST(url('/_esp/login'), Origin => url(''),
                    Content => [mfa => pending_of($r1), code => totp($SECRET{'mfa-b'}, step()), csrf => $csrf]);
    error_log_mark();
    $r2 = $other->request($post);
    is($r2->code, 403, "another browser's token: refused");
    ok(!session_of($other), "another browser's token: no session");
    ok(error_log_wait(qr/the pending login of user "mfa-b\@contoso\.local" came with another browser's form token/),
       "another browser's token: logged");
    # a stolen pending login with no token at all
    $r2 = $other->request(POST(url('/_esp/login'), Content => [mfa => pending_of($r1), code => '123456']));
    is($r2->code, 403, 'no token: refused');

    # after its lifetime (esp_mfa_timeout 2s)
    my $ua3 = ua();
    $res = password_step($ua3, '/short/', 'mfa-b');
    is_code_page($res, 'short lifetime');
    sleep 3;
    error_log_mark();
    $r2 = code_step($ua3, $res, totp($SECRET{'mfa-b'}, step()));
    is($r2->code, 403, 'pending after its lifetime: refused');
    ok(!session_of($ua3), 'pending after its lifetime: no session');
    ok(error_log_wait(qr/user "mfa-b\@contoso\.local" took too long \(esp_mfa_timeout\)/),
       'pending after its lifetime: logged');

    # a tampered pending login
    my $p = pending_of($r1);
    substr($p, 30, 1) = substr($p, 30, 1) eq 'A' ? 'B' : 'A';
    error_log_mark();
    $r2 = $ua->request(POST(url('/_esp/login'), Origin => url(''),
                            Content => [mfa => $p, code => '123456', csrf => cookies($ua)->{esp_csrf}]));
    is($r2->code, 403, 'a tampered pending login: refused');
    ok(error_log_wait('the pending login does not authenticate'), 'a tampered pending login: logged');

    # a session at /nomfa/ does not need the second factor there, nor give it
    my $ua4 = ua();
    $res = password_step($ua4, '/nomfa/', 'mfa-b');
    is($res->code, 302, 'esp_mfa off: the password alone');
    ok(session_of($ua4), 'esp_mfa off: a session');
}

# ----------------------------------------- German; the same pending twice at once

{
    my $ua = ua();
    $ua->default_header('Accept-Language' => 'de-DE,de;q=0.9,en;q=0.5');
    my $res = password_step($ua, '/ecp/', 'mfa-x');
    like($res->decoded_content, qr{<html lang="de">}, 'German: the code page in German');
    like($res->decoded_content, qr{<h1>Identit\x{e4}t best\x{e4}tigen</h1>}, 'German: its heading');
    $res = code_step($ua, $res, 'x');
    like($res->decoded_content, qr/Der Code ist nicht g\x{fc}ltig/, 'German: a wrong code');

    # two posts of one pending login with a right code, at the same time:
    # the shared zone lets one through
    my $ua2 = ua();
    $res = password_step($ua2, '/ecp/', 'mfa-x');
    my $req = POST(url('/_esp/login'), Origin => url(''),
                   Content => [mfa => pending_of($res), code => totp($SECRET{'mfa-x'}, step()),
                               csrf => cookies($ua2)->{esp_csrf}]);
    my @kids;
    for my $i (1 .. 2) {
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            my $r = $ua2->request($req->clone);
            POSIX::_exit($r->code == 302 && ($r->header('Set-Cookie') // '') =~ /esp_session=/ ? 0 : 1);
        }
        push @kids, $pid;
    }
    my $sessions = 0;
    for my $pid (@kids) {
        waitpid $pid, 0;
        $sessions++ if $? == 0;
    }
    is($sessions, 1, 'the same pending login twice at once: one session, not two');
}

# ------------------------------------------------------------ bad input

{
    my $ua = ua();
    my $res = password_step($ua, '/ecp/', 'mfa-b');
    my $tok = cookies($ua)->{esp_csrf};
    my $pend = pending_of($res);
    my @bad = (
        ['a code of 65 bytes', [mfa => $pend, code => '1' x 65, csrf => $tok], 400],
        ['the code twice', "mfa=$pend&code=1&code=2&csrf=$tok", 400],
        ['a broken escape', "mfa=$pend&code=%zz&csrf=$tok", 400],
        ['an empty pending login', [mfa => '', code => '123456', csrf => $tok], 403],
        ['a pending login of garbage', [mfa => 'x' x 7000, code => '123456', csrf => $tok], 403],
    );
    for my $b (@bad) {
        my ($what, $content, $code) = @$b;
        my $req = POST(url('/_esp/login'), Origin => url(''), Content => $content);
        my $r = $ua->request($req);
        is($r->code, $code, "bad input: $what: $code");
        ok(!session_of($ua), "bad input: $what: no session");
    }
    # letters count as a wrong code (fresh page each time)
    $res = password_step($ua, '/ecp/', 'mfa-b');
    my $r = code_step($ua, $res, 'abcdef');
    is($r->code, 200, 'letters: the page again');
    like($r->decoded_content, qr/The code is not valid/, 'letters: a wrong code');
}

# ------------------------------------------------------------- lockout

{
    my $ua = ua();
    my $res = password_step($ua, '/ecp/', 'mfa-lock');
    is_code_page($res, 'lockout');
    error_log_mark();
    for my $i (1 .. $MAX) {
        $res = code_step($ua, $res, sprintf('%06d', (totp($SECRET{'mfa-lock'}, step()) + 500000 + $i) % 1000000));
        is($res->code, 200, "lockout: wrong code $i");
    }
    ok(error_log_wait(qr/user "mfa-lock\@contoso\.local" of domain contoso is blocked for 600 s after $MAX failed second factors/),
       'lockout: the block is logged');
    $res = code_step($ua, $res, totp($SECRET{'mfa-lock'}, step()));
    is($res->code, 403, 'lockout: then even the right code is refused');
    like($res->decoded_content, qr/Too many wrong codes/, 'lockout: says so');
    ok(!session_of($ua), 'lockout: no session');

    # the password counter is another: the password still passes
    my $ua2 = ua();
    $res = password_step($ua2, '/ecp/', 'mfa-lock');
    is_code_page($res, 'lockout: the password still passes');
    $res = code_step($ua2, $res, totp($SECRET{'mfa-lock'}, step()));
    is($res->code, 403, 'lockout: a new login is refused at the code');
}

# ------------------------------------------- esp_server_auth form: hand-off

{
    my $ua = ua();
    my $res = password_step($ua, '/owa/', 'mfa-sso');
    is_code_page($res, 'server auth form');
    ok(!backend_entries_for($res), 'server auth form: no hand-off before the code');
    unlike($res->decoded_content, qr/\Q$PW{'mfa-sso'}\E/, 'server auth form: the password is not in the page');
    $res = code_step($ua, $res, totp($SECRET{'mfa-sso'}, step()));
    my @e = backend_entries_for($res);
    is(scalar(@e), 1, 'server auth form: one request to Exchange after the code');
    is($e[0] && "$e[0]{method} $e[0]{uri}", 'POST /owa/auth.owa', 'server auth form: the hand-off');
    my %f = map { my ($k, $v) = split /=/, $_, 2; ($k => URI::Escape::uri_unescape($v // '')) }
            split /&/, ($e[0] ? $e[0]{body} : '');
    is($f{username}, 'mfa-sso@contoso.local', 'server auth form: the user');
    ok(defined $f{password} && $f{password} eq $PW{'mfa-sso'}, 'server auth form: the password, once');
    ok(session_of($ua), 'server auth form: our session too');
}

use URI::Escape ();

# -------------------------------- esp_server_auth basic: the password kept

{
    my $ua = ua();
    my $res = password_step($ua, '/basic/', 'mfa-sso');
    is_code_page($res, 'server auth basic');
    $res = code_step($ua, $res, totp($SECRET{'mfa-sso'}, step() - 1));
    is($res->code, 302, 'server auth basic: the code passes');
    ok(session_of($ua), 'server auth basic: the session');
    $res = $ua->get(url('/basic/'));
    my @e = backend_entries_for($res);
    my ($auth) = map { $_->[1] } grep { lc($_->[0]) eq 'authorization' } @{ $e[0] ? $e[0]{headers} : [] };
    ok(defined $auth && $auth eq basic_auth('mfa-sso@contoso.local', $PW{'mfa-sso'}),
       'server auth basic: Exchange gets the user\'s Basic, the password from the pending login');
}

# --------------------------------------------------- nginx -t: Basic warns

{
    my $file = nginx_prefix() . '/conf/basic-mfa.conf';
    my $text = config_with({ http_config => $HTTP, config => <<'CONF' });
    esp contoso;
    esp_allowed_hosts mail.contoso.com;
    location /owa/ {
        esp_mfa totp;
        proxy_pass https://exchange;
    }
    location /Microsoft-Server-ActiveSync {
        esp_client_auth basic;
        esp_mfa totp;
        proxy_pass https://exchange;
    }
    location /mapi/ {
        esp_client_auth delegate;
        esp_mfa totp;
        proxy_pass https://exchange;
    }
CONF
    $text =~ s/^pid .*$/pid logs\/basic-mfa.pid;/m;
    EspTest::spurt($file, $text);
    my @lines = split /\n/, $text;
    my @mfa = grep { $lines[$_ - 1] =~ /^\s*esp_mfa totp;$/ } 1 .. @lines;
    my $nginx = $ENV{ESP_NGINX} || '/usr/sbin/nginx';
    my $out = `$nginx -t -p @{[ nginx_prefix() ]}/ -c $file 2>&1`;
    is($?, 0, 'nginx -t: esp_mfa on a Basic location is a warning, not an error') or diag($out);
    like($out, qr{\[warn\] (?:\d+#\d+: )?"esp_mfa" in \Q$file\E:$mfa[1] has no effect where "esp_client_auth" is basic: Basic and delegate clients \(ActiveSync, Outlook\) cannot do a second factor},
         'nginx -t: the Basic location is warned about, with file:line');
    like($out, qr{"esp_mfa" in \Q$file\E:$mfa[2] has no effect where "esp_client_auth" is delegate}, 'nginx -t: the delegate one too');
    unlike($out, qr{\Q$file\E:$mfa[0] has no effect}, 'nginx -t: not the form location');

    # and without what it needs: errors
    for my $case (['totp_attribute', qr/"esp_mfa totp" needs "totp_attribute" and "totp_key_file"/],
                  ['totp_key_file', qr/"esp_mfa totp" needs "totp_attribute" and "totp_key_file"/]) {
        (my $h = $HTTP) =~ s/^\s*$case->[0] .*\n//m;
        my $t = config_with({ http_config => $h, config => $SERVER });
        $t =~ s/^pid .*$/pid logs\/basic-mfa.pid;/m;
        EspTest::spurt($file, $t);
        $out = `$nginx -t -p @{[ nginx_prefix() ]}/ -c $file 2>&1`;
        isnt($?, 0, "nginx -t: without $case->[0]: an error");
        like($out, $case->[1], "nginx -t: without $case->[0]: says what is missing");
    }
}

# ActiveSync with esp_mfa inherited from the server: Basic works as before
{
    my $ua = ua();
    my $res = $ua->get(url('/Microsoft-Server-ActiveSync'),
                       Authorization => basic_auth('mfa-b@contoso.local', $PW{'mfa-b'}));
    is($res->code, 200, 'Basic location under esp_mfa: Basic as before');
}

nginx_stop();
done_testing();
