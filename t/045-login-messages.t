# What a refused login tells the client (issue 15, item 4).  AD answers
# 530, 531, 533 and 701 only to the right password, and 775 (locked)
# whatever the password: a message that names them confirms a password or
# an account.  With "esp_login_messages generic" (the default) every
# refusal but the password-change path (532/773) shows the one
# wrong-user-or-password page (form) or 401 (Basic), exactly as a wrong
# password does; the error log keeps the detail.  "detailed" shows each
# outcome's own message.  Real Samba users (disabled, expired, locked,
# hours, not in a group), the gate's own lockout, and a fake DC for 531.
#
# And timing: the gate's lockout (and a name refused before any bind)
# answers without the directory; it must not answer measurably sooner
# than a bind.  Checked through the module's debug line (the delay it
# chose, and from how many refusals of the directory) and a lower bound
# on the time the answer took, never an upper one.

use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;
use HTTP::Request::Common qw(GET);
use Time::HiRes qw(time);

if (!ad_present() || !exchange_present() || !$ENV{ESP_MODULE}) {
    Test::More::plan(skip_all => 'needs the AD fixture, the stand-in Exchange and the module');
}

my $USERS = ad_users();
my $PW = sub { $USERS->{ $_[0] }{password} };
my $UPN = sub { $USERS->{ $_[0] }{upn} };
my $GROUP = 'CN=grp-outer,CN=Users,DC=contoso,DC=local';

# a fake DC for the codes Samba cannot make (531: workstation)
my $FAKE = '127.0.0.4';
my $BASE = 7701;
my $ADCODES = $BASE + 15;
my $ca = start_fake_dcs($BASE);
ok($ca, 'the fake DCs listen');

my $HTTP = "esp_session_key \$ESP_RUN/keys/session.key;\n"
    . sso_domain_config(max_failed_auths => 2, reset_fail_timeout => '10m',
                        unblock_timeout => '10m')
    . sso_domain_config(name => 'fake', ldap_server => "ldaps://$FAKE:$ADCODES",
                        ldap_ca_certificate => $ca, ldap_timeout => '2s');

my $SERVER = <<"CONF";
esp contoso;
esp_allowed_hosts mail.contoso.com;
esp_basic_cache 0;
location /owa/ {
    esp_client_auth form;
    esp_password_form /owa/auth/expiredpassword.aspx?url=/owa/auth.owa;
    esp_preauth_excluded_dirs /owa/auth/expiredpassword.aspx*;
    proxy_pass https://exchange;
}
location /detailed/ {
    esp_client_auth form;
    esp_login_messages detailed;
    esp_password_form /owa/auth/expiredpassword.aspx?url=/owa/auth.owa;
    proxy_pass https://exchange;
}
location /groups/ {
    esp_client_auth form;
    esp_permitted_groups "$GROUP";
    proxy_pass https://exchange;
}
location /groups-detailed/ {
    esp_client_auth form;
    esp_permitted_groups "$GROUP";
    esp_login_messages detailed;
    proxy_pass https://exchange;
}
location /as/ {
    esp_client_auth basic;
    proxy_pass https://exchange;
}
location /as-groups/ {
    esp_client_auth basic;
    esp_permitted_groups "$GROUP";
    proxy_pass https://exchange;
}
location /as-groups-detailed/ {
    esp_client_auth basic;
    esp_permitted_groups "$GROUP";
    esp_login_messages detailed;
    proxy_pass https://exchange;
}
location /fake/ {
    esp fake;
    esp_client_auth form;
    proxy_pass https://exchange;
}
location /fake-detailed/ {
    esp fake;
    esp_client_auth form;
    esp_login_messages detailed;
    proxy_pass https://exchange;
}
CONF

my %MSG = (
    bad      => 'The user name or password is incorrect.',
    blocked  => 'Too many failed sign-in attempts.',
    disabled => 'Your account is disabled.',
    expired  => 'Your account has expired.',
    locked   => 'Your account is locked.',
    hours    => 'You are not permitted to sign in at this time.',
    station  => 'You are not permitted to sign in from this computer.',
    denied   => 'You are not permitted to use this service.',
);

ok(nginx_start({ http_config => $HTTP, config => $SERVER }), 'nginx starts')
    or BAIL_OUT('nginx does not start: ' . nginx_error());

# ---------------------------------------------------------------- helpers

sub login {
    my ($path, $user, $password) = @_;
    my $ua = ua();
    my ($form) = follow($ua, $ua->request(GET(url($path))));
    my $res = submit_form($ua, $form, username => $user, password => $password);
    return ($res, $ua);
}

sub message_of {
    my ($res) = @_;
    my $c = $res->decoded_content // '';
    return $c =~ m{<div id="msg" class="([^"]*)"[^>]*>([^<]*)</div>}s ? ($2, $1) : ('', '');
}

# the page without what differs between any two posts: the form token, the
# user name typed and the page asked for
sub page_shape {
    my ($res) = @_;
    my $c = $res->decoded_content // '';
    $c =~ s/\b(name="(?:csrf|username|url)"[^>]*?value=")[^"]*"/$1"/g;
    $c =~ s/\b(value=")[^"]*("[^>]*?name="(?:csrf|username|url)")/$1$2/g;
    # the change-password link carries the page asked for too
    $c =~ s{(href="/_esp/password\?url=)[^"]*"}{$1"}g;
    return $c;
}

sub result_logged {
    my ($result) = @_;
    return error_log_wait(qr/esp: login user=.* result=\Q$result\E /, 3);
}

# the reference: a wrong password, as every refusal must look in generic mode
my ($WRONG) = login('/owa/', $UPN->('bob'), 'not-' . $PW->('bob'));
is($WRONG->code, 200, 'wrong password: the form again');
like((message_of($WRONG))[0], qr/^\Q$MSG{bad}\E/, 'wrong password: the wrong-user-or-password message');

# ------------------------------------------------- every outcome, both modes

my @CASES = (
    # name, path (generic), path (detailed), user, password, detailed message, result
    ['disabled (533)', '/owa/x', '/detailed/x', $UPN->('disabled'), $PW->('disabled'), 'disabled', 'disabled'],
    ['account expired (701)', '/owa/x', '/detailed/x', $UPN->('expired'), $PW->('expired'), 'expired', 'account_expired'],
    ['locked (775)', '/owa/x', '/detailed/x', $UPN->('locked'), $PW->('locked'), 'locked', 'locked'],
    ['logon hours (530)', '/owa/x', '/detailed/x', $UPN->('hours'), $PW->('hours'), 'hours', 'logon_hours'],
    ['workstation (531)', '/fake/x', '/fake-detailed/x', 'code531@contoso.local', 'Right-1x', 'station', 'workstation'],
    ['not in a permitted group', '/groups/x', '/groups-detailed/x', $UPN->('carol'), $PW->('carol'), 'denied', 'not_permitted'],
    ['unknown user', '/owa/x', '/detailed/x', 'nosuchuser-045@contoso.local', 'Wrong-1x', 'bad', 'bad_credentials'],
);

for my $c (@CASES) {
    my ($name, $generic, $detailed, $user, $pw, $msg, $result) = @$c;

    error_log_mark();
    my ($res, $ua) = login($generic, $user, $pw);
    is($res->code, 200, "generic, $name: the form again, as for a wrong password");
    my ($text, $class) = message_of($res);
    like($text, qr/^\Q$MSG{bad}\E/, "generic, $name: the wrong-user-or-password message");
    is($class, 'msg', "generic, $name: shown as an error");
    is(page_shape($res), page_shape($WRONG), "generic, $name: the very page a wrong password gets");
    ok(!cookies($ua)->{esp_session}, "generic, $name: no session");
    ok(result_logged($result), "generic, $name: the log keeps result=$result");

    error_log_mark();
    ($res, $ua) = login($detailed, $user, $pw);
    is($res->code, 200, "detailed, $name: the form again");
    like((message_of($res))[0], qr/^\Q$MSG{$msg}\E/, "detailed, $name: says \"$MSG{$msg}\"");
    ok(!cookies($ua)->{esp_session}, "detailed, $name: no session");
    ok(result_logged($result), "detailed, $name: logged as $result");
}

# the password-change path stays: only a right password gets there, and
# Exchange's own forms login says as much
for my $case (['pwdexpired', 'password_expired'], ['mustchange', 'must_change']) {
    my ($who, $result) = @$case;
    error_log_mark();
    my ($res) = login('/owa/x', $UPN->($who), $PW->($who));
    is($res->code, 302, "generic, $result: still to the password form");
    like($res->header('Location') // '', qr{/owa/auth/expiredpassword\.aspx\?url=/owa/auth\.owa$},
         "generic, $result: the configured password form");
    ok(result_logged($result), "generic, $result: logged");
}

# ------------------------------------------------------------ Basic

{
    my $get = sub {
        my ($path, $user, $pw) = @_;
        error_log_mark();
        return ua()->get(url($path . '?r=' . rand()), Authorization => basic_auth($user, $pw));
    };
    my $res = $get->('/as-groups/x', $UPN->('carol'), $PW->('carol'));
    is($res->code, 401, 'Basic, generic, not in a permitted group: 401, as a wrong password');
    like($res->header('WWW-Authenticate') // '', qr/^Basic realm=/, 'Basic, generic: with the challenge');
    ok(result_logged('not_permitted'), 'Basic, generic: the log says not_permitted');
    $res = $get->('/as-groups-detailed/x', $UPN->('carol'), $PW->('carol'));
    is($res->code, 403, 'Basic, detailed, not in a permitted group: 403');
    for my $who (qw(disabled expired locked hours)) {
        $res = $get->('/as/x', $UPN->($who), $PW->($who));
        is($res->code, 401, "Basic, generic, $who: 401");
    }
    $res = $get->('/as-groups/x', $UPN->('nested'), $PW->('nested'));
    is($res->code, 200, 'Basic, generic: a permitted user still gets in');
}

# ------------------------------------- the gate's lockout, both modes

sub lock_out {
    my ($path, $user) = @_;
    login($path, $user, 'Wrong-1x') for 1 .. 2;      # max_failed_auths 2
    error_log_mark();
    return login($path, $user, 'Wrong-1x');
}

{
    my ($res, $ua) = lock_out('/owa/x', 'ghost-045-a@contoso.local');
    ok(result_logged('blocked'), 'generic, blocked by the gate: logged as blocked');
    is($res->code, 200, 'generic, blocked by the gate: the form again');
    like((message_of($res))[0], qr/^\Q$MSG{bad}\E/, 'generic, blocked by the gate: the wrong-user-or-password message');
    is(page_shape($res), page_shape($WRONG), 'generic, blocked by the gate: the very page a wrong password gets');

    ($res) = lock_out('/detailed/x', 'ghost-045-b@contoso.local');
    ok(result_logged('blocked'), 'detailed, blocked by the gate: logged as blocked');
    like((message_of($res))[0], qr/^\Q$MSG{blocked}\E/, 'detailed, blocked by the gate: "Too many failed sign-in attempts"');
}

# ------------------------------------------------------------ timing

sub basic_timed {
    my ($user, $pw) = @_;
    error_log_mark();
    my $t0 = time;
    my $res = ua()->get(url('/as/x?r=' . rand()), Authorization => basic_auth($user, $pw));
    return ($res, time - $t0);
}

{
    my $user = 'ghost-045-t@contoso.local';
    my @binds = map { my ($r, $t) = basic_timed($user, 'Wrong-1x'); [$r->code, $t] } 1 .. 2;
    is("$binds[0][0] $binds[1][0]", '401 401', 'timing: two refusals by the directory');
    my ($res, $took) = basic_timed($user, 'Wrong-1x');
    is($res->code, 401, 'timing: the third is refused by the gate, with the same 401');
    ok(result_logged('blocked'), 'timing: it was the gate (result=blocked, dc=none)');
    like(error_log_since_mark(), qr/result=blocked ad_code=none/, 'timing: no DC was asked');
    my ($ms, $seen) = error_log_since_mark()
        =~ /esp: refused without the directory: answering in (\d+)ms, as a bind would \((\d+) refusals seen\)/;
    ok(defined $ms, 'timing: the gate delayed its own refusal (debug line)')
        or diag(mask(error_log_since_mark()));
    $ms //= 0;
    cmp_ok($ms, '>=', 1, 'timing: by a delay of at least 1 ms');
    cmp_ok($seen // 0, '>=', 2, 'timing: drawn from the refusals this worker saw the directory make');
    # a lower bound only: the answer came no sooner than the delay chosen
    cmp_ok($took * 1000, '>=', $ms - 1, "timing: the answer took at least the $ms ms chosen");
    like(error_log_since_mark(), qr/esp: the refusal's wait is over/, 'timing: a timer woke the request');

    # a login refused before any bind waits too
    ($res) = basic_timed('nosuchuser-045-empty@contoso.local', '');
    is($res->code, 401, 'timing: an empty password: 401');
    ok(result_logged('invalid'), 'timing: an empty password is refused before any bind');
    like(error_log_since_mark(), qr/esp: refused without the directory: answering in \d+ms/,
         'timing: an empty password is answered no sooner than a bind either');

    # and a right password is never delayed by it
    ($res) = basic_timed($UPN->('alice'), $PW->('alice'));
    is($res->code, 200, 'timing: a right password gets in');
    unlike(error_log_since_mark(), qr/refused without the directory/, 'timing: with no delay of the gate');
}

# ------------------------------------------------------------ config

{
    my $nginx = $ENV{ESP_NGINX} || '/usr/sbin/nginx';
    # nginx's own enum slot: it names the value and the line
    for my $case (['an unknown value', 'verbose', qr/\[emerg\] .*invalid value "verbose" in \S+messages\.conf:\d+/],
                  ['twice', "generic;\n    esp_login_messages detailed",
                   qr/"esp_login_messages" directive is duplicate in \S+messages\.conf:\d+/]) {
        my ($what, $value, $re) = @$case;
        my $file = nginx_prefix() . '/conf/messages.conf';
        my $text = config_with({ http_config => $HTTP, config => <<"CONF" });
    esp contoso;
    esp_allowed_hosts mail.contoso.com;
    esp_login_messages $value;
CONF
        $text =~ s/^pid .*$/pid logs\/messages.pid;/m;
        EspTest::spurt($file, $text);
        my $out = `$nginx -t -p @{[ nginx_prefix() ]}/ -c $file 2>&1`;
        isnt($?, 0, "config: esp_login_messages, $what: nginx -t fails");
        like($out, $re, "config: esp_login_messages, $what: says why, with the file and line");
    }
}

done_testing();
