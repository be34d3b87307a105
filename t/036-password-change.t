# The gate's own change-password page (/_esp/password, src/ngx_esp_password.c)
# and what it asks of the directory client (ngx_esp_ldap_modify(), an LDAP
# Modify of unicodePwd: delete the old value, add the new one), against the
# Samba AD: the page and its links, the form token, the checks made before any
# directory (empty fields, new ones that differ), a wrong old password (a
# failed login for the gate's lockout and for AD's badPwdCount), a password
# too simple, one used before, one changed too recently, a success (the new
# password binds, the old one no longer does, and the user is signed in), the
# users who cannot bind (expired 532, must change 773: changed through the
# service account), the lockout, the page turned off, and a modify that times
# out (not sent again).
#
# The users and the fine-grained password policies (PSOs) are this file's
# own, made on dc1 only and removed at the end: the DCs do not replicate, so
# every domain block here names dc1 alone.

use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;
use EspTest::Mfa qw(mfa_ad totp step totp_key_file);
use HTTP::Request::Common qw(GET POST);
use MIME::Base64 qw(encode_base64);
use URI::Escape qw(uri_escape);

if (!ad_present() || !$ENV{ESP_MODULE} || !-f $ENV{ESP_MODULE}) {
    Test::More::plan(skip_all => 'needs the module (ESP_MODULE) and the AD fixture');
}

my $RUN = $ENV{ESP_RUN} || '/tmp/esp-run';
my $AD_SH = ($ENV{ESP_ROOT} || '.') . '/t/fixtures/ad.sh';
my $DC1 = ad_env('AD_DC1');
my $CONF = "$RUN/ad/dc1/etc/smb.conf";
my $SAM = "tdb://$RUN/ad/dc1/private/sam.ldb";
my $REALM = ad_env('AD_REALM');

my %PW = (
    pwalice  => 'Esp-036-Alice-1a!',
    pwbob    => 'Esp-036-Bob-2b!x',
    pwcarl   => 'Esp-036-Carl-3c!x',
    pwmust   => 'Esp-036-Must-4d!x',
    pwold    => 'Esp-036-Old-5e!xy',
    pwyoung  => 'Esp-036-Young-6f!',
    pwlock   => 'Esp-036-Lock-7g!x',
    pwmfa    => 'Esp-036-Mfa-8h!xy',
);
my @PSOS;

sub tool {
    my (@args) = @_;
    my $out = `samba-tool @args -s $CONF -H $SAM 2>&1`;
    diag("samba-tool @args: $out") if $?;
    return $? == 0;
}

sub q_ { my ($s) = @_; $s =~ s/'/'\\''/g; return "'$s'" }

END {
    local $?;
    for my $u (keys %PW) {
        `samba-tool user delete $u -s $CONF -H $SAM 2>&1`;
    }
    for my $p (@PSOS) {
        `samba-tool domain passwordsettings pso delete $p -s $CONF -H $SAM 2>&1`;
    }
}

# the test policy: no minimum age (the domain's is 1 day), history 3,
# 8 characters, complexity; one with a minimum age, one with 1 day maximum
sub pso {
    my ($name, $prec, @opts) = @_;
    `samba-tool domain passwordsettings pso delete $name -s $CONF -H $SAM 2>&1`;
    push @PSOS, $name;
    return tool("domain passwordsettings pso create $name $prec @opts");
}

ok(pso('esp036', 10, '--min-pwd-age=0', '--max-pwd-age=42', '--history-length=3',
       '--min-pwd-length=8', '--complexity=on'), 'PSO esp036 created');
ok(pso('esp036young', 5, '--min-pwd-age=1', '--max-pwd-age=42', '--history-length=3',
       '--min-pwd-length=8', '--complexity=on'), 'PSO esp036young created');

for my $u (sort keys %PW) {
    `samba-tool user delete $u -s $CONF -H $SAM 2>&1`;
    my @extra = $u eq 'pwmust' ? ('--must-change-at-next-login') : ();
    my $cmd = "samba-tool user create $u " . q_($PW{$u}) . " @extra -s $CONF -H $SAM 2>&1";
    # pwold's password was set 50 days ago: past the maximum age (42 days)
    $cmd = "faketime -f -50d $cmd" if $u eq 'pwold';
    my $out = `$cmd`;
    ok($? == 0, "user $u created") or diag($out);
    my $p = $u eq 'pwyoung' ? 'esp036young' : 'esp036';
    ok(tool("domain passwordsettings pso apply $p $u"), "$p applies to $u");
}

# fake DCs (t/fixtures/fake-dc.py): one that never answers a modify
my $FAKE = '127.0.0.4';
my $FBASE = 7801;
my $fake_ca = start_fake_dcs($FBASE);
ok($fake_ca, 'the fake DCs listen');

# pwmfa has a TOTP secret: a change on its way to an esp_mfa location
my $TOTP_KEY = totp_key_file();
my $MFA_SECRET = join '', map { chr int rand 256 } 1 .. 20;
{
    my $v = `/usr/bin/python3 @{[ $ENV{ESP_ROOT} || '.' ]}/t/fixtures/esp-totp.py seal $TOTP_KEY pwmfa\@$REALM @{[ unpack('H*', $MFA_SECRET) ]}`;
    chomp $v;
    mfa_ad(set => 'pwmfa', 'carLicense', $v);
}

my $HTTP = "esp_session_key \$ESP_RUN/keys/session.key;\n"
    . "esp_shared_zone esp036:1m;\n"
    . sso_domain_config(name => 'silent', ldap_timeout => '1s', ldap_ca_certificate => $fake_ca,
                        ldap_server => ["ldaps://$FAKE:" . ($FBASE + 16), "ldaps://$DC1:636"])
    . sso_domain_config(name => 'failover', ldap_timeout => '1s', ldap_ca_certificate => $fake_ca,
                        ldap_server => ["ldaps://$FAKE:" . ($FBASE + 17), "ldaps://$DC1:636"])
    . sso_domain_config(ldap_server => "ldaps://$DC1:636", max_failed_auths => 3,
                        reset_fail_timeout => '10m', unblock_timeout => '10m',
                        totp_attribute => 'carLicense', totp_key_file => $TOTP_KEY)
    . sso_domain_config(name => 'nosvc', ldap_server => "ldaps://$DC1:636",
                        ldap_bind_dn => undef, ldap_bind_password_file => undef);

my $SERVER = <<"CONF";
esp contoso;
esp_client_auth form;
esp_allowed_hosts mail.contoso.com;
esp_basic_cache 0;
location /owa/ {
    esp_client_auth form;
    esp_server_auth basic;
    proxy_pass http://127.0.0.1:\$TEST_NGINX_PORT/ok/;
}
location /nosvc/ {
    esp nosvc;
    esp_client_auth form;
    esp_server_auth basic;
    proxy_pass http://127.0.0.1:\$TEST_NGINX_PORT/ok/;
}
location /mfa/ {
    esp_client_auth form;
    esp_mfa totp;
    proxy_pass http://127.0.0.1:\$TEST_NGINX_PORT/ok/;
}
location /off/ {
    esp_client_auth form;
    esp_password_change off;
    proxy_pass http://127.0.0.1:\$TEST_NGINX_PORT/ok/;
}
location /silent/ {
    esp silent;
    esp_client_auth form;
    esp_server_auth basic;
    proxy_pass http://127.0.0.1:\$TEST_NGINX_PORT/ok/;
}
location /failover/ {
    esp failover;
    esp_client_auth form;
    esp_server_auth basic;
    proxy_pass http://127.0.0.1:\$TEST_NGINX_PORT/ok/;
}
location /basic/ {
    esp_client_auth basic;
    proxy_pass http://127.0.0.1:\$TEST_NGINX_PORT/ok/;
}
location /ok/ {
    esp off;
    return 200 "ok\\n";
}
CONF

ok(nginx_start({ http_config => $HTTP, config => $SERVER }), 'nginx starts')
    or BAIL_OUT('nginx does not start: ' . nginx_error());

my $UPN = sub { "$_[0]\@$REALM" };

sub message_of {
    my ($res) = @_;
    my $c = $res->decoded_content // '';
    return $c =~ m{<div id="msg" class="([^"]*)"[^>]*>([^<]*)</div>}s ? ($2, $1) : ('', '');
}

sub basic_code {
    my ($user, $pw) = @_;
    return ua()->get(url('/basic/x?r=' . rand()), Authorization => basic_auth($user, $pw))->code;
}

# the page, then the form filled in
sub change {
    my ($user, $old, $new, $new2, %o) = @_;
    my $ua = $o{ua} // ua();
    my $page = $ua->request(GET(url('/_esp/password?url=' . uri_escape($o{url} // '/owa/inbox'))));
    my $res = submit_form($ua, $page, username => $user, oldpassword => $old,
                          newpassword => $new, newpassword2 => $new2 // $new);
    return ($res, $ua, $page);
}

# ------------------------------------------------------------------ the page

{
    my $ua = ua();
    my $res = $ua->request(GET(url('/_esp/password?url=%2Fowa%2Fx')));
    is($res->code, 200, 'GET /_esp/password: the page');
    my $c = $res->decoded_content // '';
    like($c, qr/name="oldpassword"/, 'the page asks for the current password');
    like($c, qr/name="newpassword"/, 'and the new one');
    like($c, qr/name="newpassword2"/, 'and the new one again');
    like($c, qr/name="url" value="\/owa\/x"/, 'it keeps the return URL');
    like($c, qr{href="/_esp/login\?url=%2Fowa%2Fx"}, 'a link back to the sign-in page');
    like(join("\n", $res->header('Set-Cookie')), qr/esp_csrf=[0-9a-f]{32}; Path=\/_esp\/password;.*HttpOnly; SameSite=Strict/,
         'its form token cookie, for this path');
    my $de = $ua->request(GET(url('/_esp/password'), 'Accept-Language' => 'de-DE'));
    like($de->decoded_content // '', qr/Aktuelles Kennwort/, 'German with Accept-Language: de');
    is($ua->request(POST(url('/_esp/password'), Content_Type => 'text/plain', Content => 'x'))->code,
       415, 'a post that is no form: 415');
    is($ua->request(HTTP::Request->new(PUT => url('/_esp/password')))->code, 405, 'PUT: 405');

    my ($login) = follow($ua, $ua->request(GET(url('/owa/inbox'))));
    like($login->decoded_content // '', qr{<a href="/_esp/password\?url=%2Fowa%2Finbox"\s+id="change-password">Change password</a>},
         'the login page links to the page, with its return URL');
    my $out = ua()->request(GET(url('/_esp/logout')));
    like($out->decoded_content // '', qr{<a href="/_esp/password\?url=%2Fowa%2F"\s+id="change-password">Change password</a>},
         'so does the signed-out page');
    my ($off) = follow(ua(), ua()->request(GET(url('/off/x'))));
    like($off->decoded_content // '', qr{class="footer hidden"><a href="#"}, 'esp_password_change off: the link is hidden');
}

# ---------------------------------------------- refused before any directory

{
    error_log_mark();
    my ($res) = change($UPN->('pwalice'), $PW{pwalice}, 'Esp-036-New-Aa1!', 'Esp-036-New-Bb1!');
    is($res->code, 200, 'new passwords that differ: the page again');
    like((message_of($res))[0], qr/^The two new passwords do not match\./, 'saying they differ');
    ok(!error_log_wait(qr/esp: login user=/, 1), 'no directory was asked');

    ($res) = change($UPN->('pwalice'), $PW{pwalice}, '');
    like((message_of($res))[0], qr/^Please fill in every field\./, 'an empty field: said so');

    ($res) = change($UPN->('pwalice'), $PW{pwalice}, $PW{pwalice});
    like((message_of($res))[0], qr/^The new password must differ/, 'the same password again: said so');

    # the form token: missing, then wrong
    my $ua = ua();
    my $page = $ua->request(GET(url('/_esp/password')));
    error_log_mark();
    $res = submit_form($ua, $page, username => $UPN->('pwalice'), oldpassword => $PW{pwalice},
                       newpassword => 'Esp-036-New-Cc1!', newpassword2 => 'Esp-036-New-Cc1!', csrf => '');
    is($res->code, 403, 'no form token: 403');
    like((message_of($res))[0], qr/^The form has expired/, 'saying the form expired');
    ok(error_log_wait('password change refused: missing or foreign form token', 2), 'logged');
    $res = submit_form($ua, $page, username => $UPN->('pwalice'), oldpassword => $PW{pwalice},
                       newpassword => 'Esp-036-New-Cc1!', newpassword2 => 'Esp-036-New-Cc1!',
                       csrf => 'f' x 32);
    is($res->code, 403, 'a wrong form token: 403');
    $res = submit_form(ua(), $page, username => $UPN->('pwalice'), oldpassword => $PW{pwalice},
                       newpassword => 'Esp-036-New-Cc1!', newpassword2 => 'Esp-036-New-Cc1!');
    is($res->code, 403, 'the token without its cookie: 403');
    $res = $ua->request(POST(url('/_esp/password'), Origin => 'https://evil.example',
                             Content => [username => 'x', oldpassword => 'y', newpassword => 'z',
                                         newpassword2 => 'z', csrf => form_of($page)->value('csrf')]));
    is($res->code, 403, 'posted from another site: 403');
    ok(basic_code($UPN->('pwalice'), $PW{pwalice}) == 200, 'the password is unchanged');
}

# ---------------------------------------------------- the directory refuses

{
    my $before = `$AD_SH badpwd pwbob dc1 2>/dev/null` =~ /(\d+)\s*$/ ? $1 : -1;
    error_log_mark();
    my ($res) = change($UPN->('pwbob'), 'Wrong-036-Old-9!', 'Esp-036-Bob-New-1!');
    is($res->code, 200, 'a wrong old password: the page again');
    like((message_of($res))[0], qr/^The user name or the current password is incorrect\./, 'saying so');
    ok(error_log_wait(qr/esp: login user="pwbob\@contoso\.local" .* result=bad_credentials /, 2),
       'logged as a failed login');
    my $after = `$AD_SH badpwd pwbob dc1 2>/dev/null` =~ /(\d+)\s*$/ ? $1 : -1;
    is($after, $before + 1, 'AD counted one bad password');

    error_log_mark();
    ($res) = change($UPN->('pwbob'), $PW{pwbob}, 'aaaaaaaaaaaa');
    is($res->code, 200, 'too simple: the page again');
    like((message_of($res))[0], qr/^The new password is too simple: use at least three of/, 'saying it is too simple');
    ok(error_log_wait(qr/password change refused user="pwbob\@contoso\.local" .* code=19 ad_code=52d /, 2),
       'logged with AD\'s code');
    my $ua2;
    ($res, $ua2) = change($UPN->('pwbob'), $PW{pwbob}, 'Ab1!');
    like((message_of($res))[0], qr/^The new password is too short\./, 'too short: said so');
    ok(!cookies($ua2)->{esp_session}, 'too short: no session');

    ($res) = change($UPN->('pwyoung'), $PW{pwyoung}, 'Esp-036-Young-New-1!');
    like((message_of($res))[0], qr/^Your password was changed too recently/,
         'changed too recently (minimum age 1 day): said so');
    is(basic_code($UPN->('pwyoung'), $PW{pwyoung}), 200, 'and the old password still binds');

    my $ua = ua();
    error_log_mark();
    ($res, $ua) = change($UPN->('pwbob'), $PW{pwbob}, "Esp-036-Bob-\x{e4}-Neu-1!", undef,
                         url => '/owa/after?x=1');
    is($res->code, 302, 'a good new password (with a non-ASCII letter): 302');
    like($res->header('Location') // '', qr{^(?:https://[^/]+)?/owa/after\?x=1$}, 'to where the user was going');
    ok(cookies($ua)->{esp_session}, 'signed in: a session cookie');
    ok(error_log_wait(qr/esp: password changed user="pwbob\@contoso\.local" client=\S+ domain=contoso dc=ldaps:\S+ as=user/, 2),
       'logged, as the user');
    my $got = $ua->request(GET(url('/owa/after?x=1')));
    is($got->code, 200, 'the session opens the mailbox');
    my $new = "Esp-036-Bob-\x{e4}-Neu-1!";
    utf8::encode(my $new_bytes = $new);
    is(basic_code($UPN->('pwbob'), $new_bytes), 200, 'the new password binds');
    is(basic_code($UPN->('pwbob'), $PW{pwbob}), 401, 'the old one no longer does');

    # history 3: the first password again
    ($res) = change($UPN->('pwbob'), $new, $PW{pwbob});
    like((message_of($res))[0], qr/^The new password was used before\./, 'reused (history 3): said so');
    is(basic_code($UPN->('pwbob'), $new_bytes), 200, 'the password is still the new one');
}

# ----------------------------------------------- users who cannot bind: 773, 532

for my $case (['pwmust', 'must_change', '773'], ['pwold', 'password_expired', '532']) {
    my ($who, $result, $code) = @$case;
    my $ua = ua();
    my ($form) = follow($ua, $ua->request(GET(url('/owa/x'))));
    error_log_mark();
    my $res = submit_form($ua, $form, username => $UPN->($who), password => $PW{$who});
    is($res->code, 200, "$code: the change-password page");
    my ($text, $class) = message_of($res);
    like($text, qr/^Your password has expired or must be changed/, "$code: saying why");
    is($class, 'msg info', "$code: as information");
    like($res->decoded_content // '', qr/name="username" value="\Q$who\E\@contoso\.local"/, "$code: the user name filled in");
    ok(error_log_wait(qr/esp: login user=.* result=\Q$result\E /, 2), "$code: the login logged as $result");

    error_log_mark();
    $res = submit_form($ua, $res, oldpassword => 'Wrong-036-Old-9!', newpassword => 'Esp-036-Neu-Zz9!',
                       newpassword2 => 'Esp-036-Neu-Zz9!');
    like((message_of($res))[0], qr/^The user name or the current password is incorrect\./,
         "$code: a wrong old password: incorrect");
    ok(error_log_wait(qr/esp: login user=.* result=bad_credentials ad_code=52e/, 2),
       "$code: logged as a failed login (AD answers 532/773 only to the right password)");

    error_log_mark();
    $res = submit_form($ua, $res, oldpassword => $PW{$who}, newpassword => 'Esp-036-Neu-Zz9!',
                       newpassword2 => 'Esp-036-Neu-Zz9!');
    is($res->code, 302, "$code: changed, and signed in");
    ok(cookies($ua)->{esp_session}, "$code: a session cookie");
    ok(error_log_wait(qr/esp: password changed user="\Q$who\E\@contoso\.local" .* as=service/, 2),
       "$code: changed through the service account");
    is(basic_code($UPN->($who), 'Esp-036-Neu-Zz9!'), 200, "$code: the new password binds");
    is(basic_code($UPN->($who), $PW{$who}), 401, "$code: the old one does not");
}

{
    # without a service account, a user who cannot bind cannot change here
    my $ua = ua();
    `samba-tool user setpassword pwmust --newpassword=@{[q_($PW{pwmust})]} --must-change-at-next-login -s $CONF -H $SAM 2>&1`;
    my ($form) = follow($ua, $ua->request(GET(url('/nosvc/x'))));
    my $res = submit_form($ua, $form, username => $UPN->('pwmust'), password => $PW{pwmust});
    $res = submit_form($ua, $res, oldpassword => $PW{pwmust}, newpassword => 'Esp-036-Neu-Yy8!',
                       newpassword2 => 'Esp-036-Neu-Yy8!');
    like((message_of($res))[0], qr/^Your password cannot be changed here/,
         '773 without ldap_bind_dn: cannot be changed here');
}

# --------------------------------------------------------------- the lockout

{
    # max_failed_auths 3: wrong old passwords count as failed logins
    for my $i (1 .. 3) {
        change($UPN->('pwlock'), "Wrong-036-$i-Old!", 'Esp-036-Lock-New-1!');
    }
    error_log_mark();
    my ($res, $ua) = change($UPN->('pwlock'), $PW{pwlock}, 'Esp-036-Lock-New-1!');
    ok(error_log_wait(qr/esp: login user="pwlock\@contoso\.local" .* result=blocked /, 2),
       'after 3 wrong old passwords the user is blocked, right password or not');
    ok(!cookies($ua)->{esp_session}, 'no session');
    is(basic_code($UPN->('pwlock'), $PW{pwlock}), 401, 'and blocked for logins too');
}

# ------------------------------------------------- failover and time-out

{
    # the first DC refuses connections: the change goes to the next one
    error_log_mark();
    my ($res, $ua) = change($UPN->('pwcarl'), $PW{pwcarl}, 'Esp-036-Carl-New-1!', undef, url => '/failover/x');
    is($res->code, 302, 'first DC down: changed on the next one');
    ok(error_log_wait(qr/domain controller ldaps:\/\/127\.0\.0\.4:\d+ of domain failover is down/, 2),
       'the first DC was tried');
    is(basic_code($UPN->('pwcarl'), 'Esp-036-Carl-New-1!'), 200, 'the new password binds');

    # a DC that takes the modify and never answers: not sent again elsewhere
    error_log_mark();
    ($res) = change($UPN->('pwcarl'), 'Esp-036-Carl-New-1!', 'Esp-036-Carl-New-2!', undef, url => '/silent/x');
    is($res->code, 503, 'the modify timed out: 503');
    like((message_of($res))[0], qr/^The service is temporarily unavailable/, 'saying so');
    my $log = error_log_since_mark();
    my $n = () = $log =~ /esp ldap: modify "/g;
    is($n, 1, 'the modify was sent once, never to the next DC');
    is(basic_code($UPN->('pwcarl'), 'Esp-036-Carl-New-1!'), 200, 'the password on dc1 is unchanged');
}

# ------------------------------------- on the way to a second factor

{
    # the new password is the first factor; the code is still asked for
    my $new = 'Esp-036-Mfa-New-9i!';
    my ($res, $ua) = change($UPN->('pwmfa'), $PW{pwmfa}, $new, undef, url => '/mfa/x');
    is($res->code, 200, 'a change on its way to an esp_mfa location: a page');
    my ($pending) = ($res->decoded_content // '') =~ /name="mfa" value="([^"]+)"/;
    ok($pending, '... the second factor\'s code page') or diag(mask($res->as_string));
    ok(!cookies($ua)->{esp_session}, '... and no session yet');
    is(basic_code($UPN->('pwmfa'), $new), 200, 'the new password binds');
    sleep 1 while time() % 30 > 26;
    $res = submit_form($ua, $res, code => totp($MFA_SECRET, step()));
    is($res->code, 302, 'the code: on to where the user was going');
    ok(cookies($ua)->{esp_session}, '... with a session');
}

# ------------------------------------------------------------ turned off

{
    my ($res) = change($UPN->('pwalice'), $PW{pwalice}, 'Esp-036-Off-1!', undef, url => '/off/x');
    is($res->code, 403, 'a change on its way to a location with esp_password_change off: 403');
    is(basic_code($UPN->('pwalice'), $PW{pwalice}), 200, 'nothing changed');
}

nginx_stop();
done_testing();
