# Form login (design steps 4, 5 and 8): the login form, the return to the
# original URL, single sign-on to OWA and ECP by the hand-off to Exchange's
# own forms login, logoff, the password form for 532/773, the message of
# every directory outcome, permitted groups with nesting, German pages,
# Basic towards Exchange for form sessions, $esp_user, a custom login page.
#
# Flows with a cookie jar against the real Samba DCs and the stand-in
# Exchange; every check names the behaviour it pins.

use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;
use HTTP::Request::Common qw(GET POST);
use MIME::Base64 qw(decode_base64);
use URI;
use URI::Escape qw(uri_unescape);

if (!ad_present() || !exchange_present() || !$ENV{ESP_MODULE}) {
    Test::More::plan(skip_all => 'needs the AD fixture, the stand-in Exchange and the module');
}

my $USERS = ad_users();
my $PW = sub { $USERS->{ $_[0] }{password} };
my $UPN = sub { $USERS->{ $_[0] }{upn} };
my $GROUPS = 'CN=grp-outer,CN=Users,DC=contoso,DC=local';

my $HTTP = sso_domain_config(max_failed_auths => 3, reset_fail_timeout => '10m',
                             unblock_timeout => '10m')
    . <<'CONF';
esp_session_key $ESP_RUN/keys/session.key;
# every outcome's own message (the default, generic, is t/045's)
esp_login_messages detailed;
log_format esp_users '$esp_user|$esp_auth_result|$request_method $request_uri';
CONF

my $SERVER = <<'CONF';
esp contoso;
esp_allowed_hosts mail.contoso.com;
access_log logs/users.log esp_users;
location /owa/ {
    esp_client_auth form;
    esp_server_auth form;
    esp_preauth_excluded_dirs /owa/auth/expiredpassword.aspx*;
    esp_password_form /owa/auth/expiredpassword.aspx?url=/owa/auth.owa;
    esp_logoff /owa/logoff.owa;
    proxy_set_header X-User $esp_user;
    proxy_pass https://exchange;
}
location /ecp/ {
    esp_client_auth form;
    esp_server_auth form;
    proxy_pass https://exchange;
}
location /plain/ {
    esp_client_auth form;
    esp_server_auth none;
    proxy_set_header X-User $esp_user;
    proxy_pass https://exchange;
}
location /basic/ {
    esp_client_auth form;
    esp_server_auth basic;
    proxy_pass https://exchange;
}
location /groups/ {
    esp_client_auth form;
    esp_server_auth none;
    esp_permitted_groups "CN=grp-outer,CN=Users,DC=contoso,DC=local";
    proxy_pass https://exchange;
}
location /nochoice/ {
    esp_client_auth form;
    esp_server_auth form;
    esp_public_private off;
    proxy_pass https://exchange;
}
CONF

my %MSG = (
    bad      => 'The user name or password is incorrect.',
    empty    => 'Please enter your user name and password.',
    blocked  => 'Too many failed sign-in attempts.',
    disabled => 'Your account is disabled.',
    expired  => 'Your account has expired.',
    locked   => 'Your account is locked.',
    hours    => 'You are not permitted to sign in at this time.',
    denied   => 'You are not permitted to use this service.',
);

ok(nginx_start({ http_config => $HTTP, config => $SERVER }), 'nginx starts')
    or BAIL_OUT('nginx does not start: ' . nginx_error());

# ---------------------------------------------------------------- helpers

# GET $path, follow to the login form; returns (form page, hops...)
sub to_login {
    my ($ua, $path, @h) = @_;
    my $res = $ua->request(GET(url($path), @h));
    return follow($ua, $res);
}

# the whole login as a user would do it; returns the response to the POST
sub login {
    my ($ua, $path, $user, $password, %f) = @_;
    my ($form) = to_login($ua, $path);
    return submit_form($ua, $form, username => $user, password => $password, %f);
}

sub form_fields {
    my ($body) = @_;
    my %f;
    for my $pair (split /&/, $body // '') {
        my ($k, $v) = split /=/, $pair, 2;
        $_ = uri_unescape(($_ // '') =~ tr/+/ /r) for $k, $v;
        push @{ $f{$k} }, $v;
    }
    return \%f;
}

sub message_of {
    my ($res) = @_;
    my $c = $res->decoded_content // '';
    return $c =~ m{<div id="msg" class="([^"]*)"[^>]*>([^<]*)</div>}s ? ($2, $1) : ('', '');
}

# "esp: login" lines since the mark
sub login_lines {
    return scalar(() = error_log_since_mark() =~ /esp: login user=/g);
}

sub set_cookies {
    my ($res) = @_;
    my @all;
    for (my $r = $res; $r; $r = $r->previous) {
        push @all, $r->header('Set-Cookie');
    }
    return @all;
}

# -------------------------------------------------------- login + hand-off

my $ua = ua();
my $orig = '/owa/?path=/mail/inbox&x=a%20b';

{
    my $res = $ua->get(url($orig));
    is($res->code, 302, 'no session: GET gets 302');
    my $loc = URI->new_abs($res->header('Location'), url('/'));
    is($loc->path, '/_esp/login', 'no session: to the login endpoint');
    is({ $loc->query_form }->{url}, $orig,
       'no session: the login URL carries the original URL with its query string');

    my ($form) = follow($ua, $res);
    is($form->code, 200, 'login form: 200');
    like($form->decoded_content, qr/<form method="post" action="\/_esp\/login"/,
         'login form: posts to /_esp/login');
    my $f = form_of($form);
    is($f->value('url'), $orig, 'login form: hidden url field is the original URL, query string included');
    like($f->value('csrf') // '', qr/^[0-9a-f]{32}$/, 'login form: has a csrf token');
    like(join("\n", $form->header('Set-Cookie')),
         qr/esp_csrf=[0-9a-f]{32}; Path=\/_esp\/login;.*HttpOnly; SameSite=Strict/,
         'login form: sets the double-submit cookie for /_esp/login, SameSite=Strict');
    is($form->header('Cache-Control'), 'no-store', 'login form: not cached');
    like($form->header('Content-Security-Policy') // '', qr/frame-ancestors 'none'/,
         'login form: framing forbidden');

    error_log_mark();
    $res = submit_form($ua, $form, username => $UPN->('alice'), password => $PW->('alice'));
    is($res->code, 302, 'hand-off: the login answers 302 (Exchange\'s)');
    my $dest = url($orig);
    is($res->header('Location'), $dest,
       'hand-off: Exchange redirects to the original URL, absolute, with its query string');

    my @e = backend_entries_for($res);
    is(scalar @e, 1, 'hand-off: exactly one request reached Exchange for the login POST')
        or diag(mask(join "\n", map { "$_->{method} $_->{uri}" } @e));
    my $e = $e[0] // {};
    is("$e->{method} $e->{uri}", 'POST /owa/auth.owa',
       'hand-off: Exchange received POST /owa/auth.owa, not a POST to the original URL');
    my $fields = form_fields($e->{body});
    is_deeply($fields->{destination}, [$dest], 'hand-off: destination = the absolute original URL');
    is_deeply($fields->{flags}, ['0'], 'hand-off: flags=0 (public computer)');
    is_deeply($fields->{username}, [$UPN->('alice')], 'hand-off: username = the UPN');
    ok(@{ $fields->{password} || [] } == 1 && $fields->{password}[0] eq $PW->('alice'),
       'hand-off: password = the password typed, once');
    is_deeply($fields->{passwordText}, [''], 'hand-off: passwordText empty');
    is_deeply($fields->{isUtf8}, ['1'], 'hand-off: isUtf8=1');
    is_deeply($fields->{forcedownlevel}, ['0'], 'hand-off: forcedownlevel=0');
    ok(!grep({ !/^(?:destination|flags|username|password|passwordText|isUtf8|forcedownlevel)$/ }
             keys %$fields), 'hand-off: no other fields (no csrf, no url)');
    is(scalar(grep { $_->[0] =~ /^X-User$/i && $_->[1] eq $UPN->('alice') } @{ $e->{headers} }), 1,
       'hand-off: X-User $esp_user reaches Exchange');

    my $sc = join "\n", set_cookies($res);
    like($sc, qr/(?:^|\n)cadata=/, 'hand-off: Exchange\'s cadata cookie reaches the browser');
    like($sc, qr/(?:^|\n)cadataSig=/, 'hand-off: and its siblings');
    like($sc, qr/(?:^|\n)esp_session=[A-Za-z0-9_-]{40,}; Path=\/; Secure; HttpOnly; SameSite=Lax/,
         'hand-off: our esp_session cookie is set too (Secure, HttpOnly, SameSite=Lax)');
    my $c = cookies($ua);
    ok($c->{cadata} && $c->{esp_session}, 'hand-off: both are in the jar');
    ok(index(join("\n", values %$c), $PW->('alice')) < 0, 'hand-off: no cookie holds the password');
    ok(error_log_wait(qr/esp: login user="alice\@contoso\.local" .* result=ok/),
       'hand-off: the login is logged');
    unlike(error_log_since_mark(), qr/\Q@{[ $PW->('alice') ]}\E/, 'hand-off: the password is not in the error log');

    # the browser follows Exchange's redirect
    $res = $ua->get($res->header('Location'));
    is($res->code, 200, 'OWA: the original URL answers 200 with both sessions');
    my $page = $res->decoded_content // '';
    like($page, qr/<meta name="esp-standin" content="owa">/, 'OWA: the stand-in OWA page');
    like($page, qr/id="esp-standin-user">\Q@{[ $UPN->('alice') ]}\E</, 'OWA: signed in as alice');
    like($page, qr{id="esp-standin-uri">/owa/\?path=/mail/inbox&amp;x=a%20b<},
         'OWA: Exchange got the original URL, query string included');
    @e = backend_entries_for($res);
    ok((grep { $_->[0] =~ /^X-User$/i && $_->[1] eq $UPN->('alice') } @{ $e[0]{headers} || [] }),
       'session: X-User $esp_user reaches Exchange');

    # ECP with the same session
    $res = $ua->get(url('/ecp/'));
    is($res->code, 200, 'ECP: reachable with the same session, no second login');
    like($res->decoded_content // '', qr/<meta name="esp-standin-app" content="ecp">/, 'ECP: the ECP page');
    @e = backend_entries_for($res);
    is(scalar(grep { $_->{uri} =~ /auth\.owa/ } @e), 0, 'ECP: no second hand-off');

    # $esp_user in the access log
    my $log = '';
    EspTest::poll(2, sub { $log = EspTest::slurp(nginx_prefix() . '/logs/users.log'); $log =~ m{\|GET /ecp/} });
    like($log, qr{^\Qalice\E\@contoso\.local\|[^|]*\|GET /ecp/$}m, 'log_format: $esp_user of a session');
    like($log, qr{^alice\@contoso\.local\|ok\|POST /_esp/login$}m, 'log_format: $esp_user and $esp_auth_result of the login');
}

# ---------------------------------------------------------------- logoff

{
    my $old = cookies($ua)->{esp_session};
    error_log_mark();
    my $res = $ua->get(url('/owa/logoff.owa'));
    is($res->code, 302, 'logoff: 302');
    like($res->header('Location') // '', qr{^(?:https://mail\.contoso\.com:\d+)?/_esp/logout$},
         'logoff: Exchange\'s redirect is rewritten to the signed-out page');
    my @e = backend_entries_for($res);
    is(scalar(grep { $_->{uri} eq '/owa/logoff.owa' } @e), 1, 'logoff: Exchange still sees the logoff');
    like(join("\n", set_cookies($res)), qr/(?:^|\n)esp_session=; Path=\/; Max-Age=0/, 'logoff: our cookie is cleared');
    ok(!cookies($ua)->{esp_session}, 'logoff: the jar no longer holds esp_session');
    ok(error_log_wait('esp: logoff user="alice@contoso.local"'), 'logoff: logged');
    my ($page) = follow($ua, $res);
    is($page->code, 200, 'logoff: the signed-out page answers 200');
    like($page->decoded_content // '', qr/You have signed out/, 'logoff: the signed-out page');

    # replay of the old cookie
    my $thief = ua();
    $res = $thief->request(GET(url('/owa/'), Cookie => "esp_session=$old"));
    is($res->code, 302, 'logoff: the old cookie replayed is refused');
    like($res->header('Location') // '', qr{/_esp/login\?url=}, 'logoff: replay goes to the login form');
    is(scalar backend_entries_for($res, wait => 0.3), 0, 'logoff: the replay never reaches Exchange');
    ok(error_log_wait('was ended by logoff'), 'logoff: the refusal names the logoff');
}

# ------------------------------------------------ return without hand-off

{
    my $ua = ua();
    my $res = login($ua, '/plain/a/b?q=1&r=%2F', $UPN->('alice'), $PW->('alice'));
    is($res->code, 302, 'no hand-off: the login answers 302');
    is(URI->new_abs($res->header('Location'), url('/'))->path_query, '/plain/a/b?q=1&r=%2F',
       'no hand-off: back to the original URL with its query string');
    is(scalar backend_entries_for($res, wait => 0.3), 0, 'no hand-off: the login POST did not reach Exchange');
    $res = $ua->get(url('/plain/a/b?q=1&r=%2F'));
    is($res->code, 200, 'no hand-off: the session opens the location');
    my @e = backend_entries_for($res);
    is($e[0]{uri}, '/plain/a/b?q=1&r=%2F', 'no hand-off: Exchange got the URL unchanged');

    # a bare name works as well (logon_domain appended)
    $ua = ua();
    $res = login($ua, '/plain/', 'alice', $PW->('alice'));
    is($res->code, 302, 'bare user name: accepted');
    ok(cookies($ua)->{esp_session}, 'bare user name: session issued');
}

{
    # a non-ASCII user name, UTF-8 all the way to Exchange
    my $ua = ua();
    my ($upn, $pw) = ($UPN->('jürgen'), $PW->('jürgen'));    # UTF-8 bytes
    utf8::decode($_) for $upn, $pw;                            # characters
    my $res = login($ua, '/owa/', $upn, $pw);
    is($res->code, 302, 'non-ASCII user: signed in');
    my @e = backend_entries_for($res);
    my $got = form_fields($e[0]{body})->{username}[0] // '';
    utf8::decode($got);
    is($got, $upn, 'non-ASCII user: the hand-off carries the UTF-8 user name');
    my ($page) = follow($ua, $res);
    like($page->decoded_content // '', qr/id="esp-standin-user">\Q$upn\E</, 'non-ASCII user: OWA knows him');
}

# ---------------------------------------------------------- private flag

{
    my $ua = ua();
    my $res = login($ua, '/owa/', $UPN->('alice'), $PW->('alice'), trusted => 1);
    my @e = backend_entries_for($res);
    is_deeply(form_fields($e[0]{body})->{flags}, ['4'], 'private computer: flags=4 in the hand-off');

    $ua = ua();
    my ($form) = to_login($ua, '/nochoice/');
    unlike($form->decoded_content, qr/name="trusted"/, 'esp_public_private off: no choice shown');
    $res = submit_form($ua, $form, username => $UPN->('alice'), password => $PW->('alice'),
                       trusted => 1);
    @e = backend_entries_for($res);
    is_deeply(form_fields($e[0]{body})->{flags}, ['0'],
              'esp_public_private off: trusted=1 ignored, flags=0');
}

# -------------------------------------------------------- password form

for my $case (['pwdexpired', 532], ['mustchange', 773]) {
    my ($user, $code) = @$case;
    my $ua = ua();
    my $res = login($ua, '/owa/', $UPN->($user), $PW->($user));
    is($res->code, 302, "$user ($code): 302");
    is(URI->new_abs($res->header('Location') // '', url('/'))->path_query,
       '/owa/auth/expiredpassword.aspx?url=/owa/auth.owa',
       "$user ($code): to esp_password_form");
    ok(!cookies($ua)->{esp_session}, "$user ($code): no session");
    is(scalar backend_entries_for($res, wait => 0.3), 0, "$user ($code): nothing reached Exchange");
    ($res) = follow($ua, $res);
    like($res->decoded_content // '', qr/content="expiredpassword"/,
         "$user ($code): the password form is reachable without a session");
}

# ------------------------------------------------ every directory outcome

sub outcome {
    my ($name, $user, $password, $msg, $result) = @_;
    my $ua = ua();
    error_log_mark();
    my $res = login($ua, '/owa/', $user, $password);
    is($res->code, 200, "$name: the form again");
    my ($text, $class) = message_of($res);
    like($text, qr/^\Q$msg\E/, "$name: says \"$msg\"");
    is($class, 'msg', "$name: shown as an error");
    ok(!cookies($ua)->{esp_session}, "$name: no session");
    is(scalar backend_entries_for($res, wait => 0.2), 0, "$name: nothing reached Exchange");
    like($res->decoded_content, qr/name="username" value="\Q$user\E"/, "$name: the user name is kept")
        if $user =~ /^[\w.@-]+$/;
    unlike($res->decoded_content, qr/\Q$password\E/, "$name: the password is not sent back")
        if length $password >= 3;
    ok(error_log_wait(qr/esp: login user=.* result=\Q$result\E/), "$name: logged as $result")
        if $result;
}

outcome('wrong password', $UPN->('bob'), 'not-' . $PW->('bob'), $MSG{bad}, 'bad_credentials');
outcome('unknown user', 'nosuchuser@contoso.local', 'Whatever-123', $MSG{bad}, 'bad_credentials');
outcome('disabled (533)', $UPN->('disabled'), $PW->('disabled'), $MSG{disabled}, 'disabled');
outcome('account expired (701)', $UPN->('expired'), $PW->('expired'), $MSG{expired}, 'account_expired');
outcome('locked (775)', $UPN->('locked'), $PW->('locked'), $MSG{locked}, 'locked');
outcome('logon hours (530)', $UPN->('hours'), $PW->('hours'), $MSG{hours}, 'logon_hours');

{
    # bob has one failure from above; max_failed_auths 3
    my ($blocked_at, $binds_after);
    for my $n (2 .. 5) {
        my $ua = ua();
        error_log_mark();
        my $res = login($ua, '/owa/', $UPN->('bob'), 'not-' . $PW->('bob'));
        my ($text) = message_of($res);
        if (index($text, $MSG{blocked}) == 0) {
            $blocked_at = $n;
            error_log_wait('result=blocked');
            $binds_after = () = error_log_since_mark() =~ /dc=(?!none)\S+ result=/g;
            last;
        }
    }
    is($blocked_at, 4, 'blocked: the 4th attempt after 3 failures says "Too many failed sign-in attempts"');
    is($binds_after, 0, 'blocked: that attempt never reached a domain controller');
    my $ua = ua();
    my $res = login($ua, '/owa/', $UPN->('bob'), $PW->('bob'));
    like((message_of($res))[0], qr/^\Q$MSG{blocked}\E/, 'blocked: even the right password is refused');
    ok(!cookies($ua)->{esp_session}, 'blocked: no session');
}

# ------------------------------------------------------ permitted groups

{
    my $ua = ua();
    my $res = login($ua, '/groups/x', $UPN->('nested'), $PW->('nested'));
    is($res->code, 302, 'groups: nested (grp-inner < grp-middle < grp-outer) is let in');
    ok(cookies($ua)->{esp_session}, 'groups: nested gets a session');
    $res = $ua->get(url('/groups/x'));
    is($res->code, 200, 'groups: nested reaches the location');

    $ua = ua();
    $res = login($ua, '/groups/x', $UPN->('alice'), $PW->('alice'));
    is($res->code, 200, 'groups: alice gets the form again');
    like((message_of($res))[0], qr/^\Q$MSG{denied}\E/, 'groups: alice is "not permitted"');
    ok(!cookies($ua)->{esp_session}, 'groups: alice gets no session');

    # a session made where no group is required does not open /groups/
    $ua = ua();
    $res = login($ua, '/plain/', $UPN->('alice'), $PW->('alice'));
    ok(cookies($ua)->{esp_session}, 'groups: alice has a session from /plain/');
    $res = $ua->get(url('/groups/x'));
    is($res->code, 302, 'groups: that session does not open /groups/');
    is(scalar backend_entries_for($res, wait => 0.3), 0, 'groups: nothing reached Exchange');

    # and nested's /groups/ session still opens /plain/
    $ua = ua();
    login($ua, '/groups/x', $UPN->('nested'), $PW->('nested'));
    is($ua->get(url('/plain/'))->code, 200, 'groups: a session with groups opens a location without');
}

# ------------------------------------------------------------ German

{
    my $ua = ua();
    $ua->default_header('Accept-Language' => 'de-DE,de;q=0.9,en;q=0.5');
    my ($form) = to_login($ua, '/owa/');
    like($form->decoded_content, qr/<html lang="de">/, 'German: lang="de"');
    like($form->decoded_content, qr/Benutzername/, 'German: the labels');
    like($form->decoded_content, qr/Welchen Computer verwenden Sie\?/, 'German: the public/private choice');
    my $f = form_of($form);
    $f->value(username => $UPN->('bob'));
    $f->value(password => 'x-wrong-x');
    my $res = $ua->request($f->click);
    like((message_of($res))[0], qr/^Zu viele fehlgeschlagene Anmeldeversuche/, 'German: the message too');

    $ua = ua();
    $ua->default_header('Accept-Language' => 'en-US,de;q=0.8');
    ($form) = to_login($ua, '/owa/');
    like($form->decoded_content, qr/<html lang="en">/, 'German: not when English comes first');
}

# ------------------------------------------- server auth basic for a form

{
    my $ua = ua();
    my @seen;
    my $res = login($ua, '/basic/echo?a=1', $UPN->('alice'), $PW->('alice'));
    push @seen, $res;
    is($res->code, 302, 'server basic: the login answers 302');
    is(scalar backend_entries_for($res, wait => 0.3), 0, 'server basic: the login POST did not reach Exchange');
    $res = $ua->get(url('/basic/echo?a=1'));
    push @seen, $res;
    is($res->code, 200, 'server basic: the session opens the location');
    my @e = backend_entries_for($res);
    my ($auth) = map { $_->[1] } grep { lc $_->[0] eq 'authorization' } @{ $e[0]{headers} || [] };
    ok(defined $auth && $auth =~ /^Basic (\S+)$/, 'server basic: Exchange received Authorization: Basic');
    my ($u, $p) = split /:/, decode_base64($1 // ''), 2;
    is($u, $UPN->('alice'), 'server basic: with the user\'s UPN');
    ok(defined $p && $p eq $PW->('alice'), 'server basic: and the password');

    my $pw = $PW->('alice');
    my $c = cookies($ua);
    ok(!grep({ index($_, $pw) >= 0 } values %$c), 'server basic: no cookie value contains the password');
    my $sealed = $c->{esp_session} // '';
    my $bin = MIME::Base64::decode_base64(($sealed =~ tr/-_/+\//r) . '=' x (-length($sealed) % 4));
    ok(index($bin, $pw) < 0, 'server basic: nor the decoded cookie (sealed)');
    ok(!grep({ index($_->content // '', $pw) >= 0 || index(join("\n", $_->headers->as_string), $pw) >= 0 } @seen),
       'server basic: no response the browser saw contains the password');
    unlike(EspTest::slurp(nginx_prefix() . '/logs/error.log'), qr/\Q$pw\E/,
           'server basic: the password is in no log line');
}

# -------------------------------------------------------- custom login page

{
    my $tpl = nginx_prefix() . '/conf/custom-login.html';
    open my $fh, '>', $tpl or die;
    print $fh <<'HTML';
<!DOCTYPE html><html lang="{{lang}}"><head><title>Custom {{title}}</title></head>
<body><p id="greet">{{greeting}}</p><p id="msg" class="{{message_class}}">{{message}}</p>
<form method="post" action="{{action}}">
<input type="hidden" name="url" value="{{url}}">
<input type="hidden" name="csrf" value="{{csrf}}">
<input name="username" value="{{username}}"><input type="password" name="password">
{{public_private}}<button>{{t_submit}}</button></form></body></html>
HTML
    close $fh;

    my $extra = "\n    esp_login_page $tpl;\n    esp_greeting 'Hello <\"world\">';";
    (my $cfg = $SERVER) =~ s#(location /plain/ \{)#$1$extra#;
    ok(nginx_start({ http_config => $HTTP, config => $cfg }), 'custom page: nginx starts with esp_login_page');
    my $ua = ua();
    my ($form) = to_login($ua, '/plain/x?y=1');
    my $body = $form->decoded_content // '';
    like($body, qr{<title>Custom Outlook</title>}, 'custom page: served, {{title}} filled');
    like($body, qr{<p id="greet">Hello &lt;&quot;world&quot;&gt;</p>}, 'custom page: {{greeting}} filled, escaped');
    like($body, qr{name="url" value="/plain/x\?y=1"}, 'custom page: {{url}} filled');
    like($body, qr{name="csrf" value="[0-9a-f]{32}"}, 'custom page: {{csrf}} filled');
    like($body, qr{name="trusted"}, 'custom page: {{public_private}} filled');
    unlike($body, qr/\{\{/, 'custom page: no placeholder left');
    my $res = submit_form($ua, $form, username => $UPN->('alice'), password => $PW->('alice'));
    is($res->code, 302, 'custom page: the login works');

    # the pages of a failed attempt come from the same template
    $ua = ua();
    ($form) = to_login($ua, '/plain/x');
    $res = submit_form($ua, $form, username => $UPN->('carol'), password => 'Wrong-Passw0rd');
    like($res->decoded_content // '', qr{<title>Custom Outlook</title>.*class="msg">\Q$MSG{bad}\E}s,
         'custom page: a wrong password is shown with it');
    $res = ua()->request(POST(url('/_esp/login'), [url => '/plain/x', username => 'carol',
                                                  password => 'x', csrf => '0' x 32]));
    is($res->code, 403, 'custom page: a forged post: 403');
    like($res->decoded_content // '', qr{<title>Custom Outlook</title>.*The sign-in form has expired}s,
         'custom page: and the form-expired message is shown with it');
    like($res->decoded_content // '', qr{name="username" value="carol"}, 'custom page: user name kept');

    open $fh, '>', $tpl or die;
    print $fh "<html>{{csrf}} {{nosuch}}</html>\n";
    close $fh;
    ok(!nginx_start({ http_config => $HTTP, config => $cfg, restart => 1 }, quiet => 1),
       'custom page: an unknown placeholder is a config error');
    like(nginx_error(), qr/unknown placeholder "\{\{nosuch\}\}" in login page .* in \S+nginx\.conf:\d+/,
         'custom page: the error names the placeholder and file:line');
}

done_testing();
