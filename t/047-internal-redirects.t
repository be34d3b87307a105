# Internal redirects (issue 15 item 2): a request that an internal redirect
# takes to another location (error_page, X-Accel-Redirect from the
# upstream, try_files, rewrite ... last, index, named locations) is judged
# by that location: its esp domain, esp_permitted_groups, esp_allowed_hosts,
# esp_allowed_dirs, esp_client_auth and esp off.  An earlier location's
# decision stands only if it was checked the same way (same client auth,
# same domain, the groups this location asks for); Basic credentials are
# then checked again with this location's settings, a form session that
# does not hold asks for a sign-in.  Nothing the gate added for the earlier
# location (the session's Basic header, the hand-off's body with the
# password, $esp_user) reaches where esp is off.  Over HTTP/1.1 and HTTP/2.
#
# FOUND (fixed): a Basic login's decision answered every later location of
# the request ("DONE: a later pass repeats it"), so alice, not in
# grp-outer, reached a location with esp_permitted_groups grp-outer through
# error_page and X-Accel-Redirect; try_files, rewrite and index skipped the
# other location's esp_allowed_dirs and esp_allowed_hosts; another esp
# domain never asked its directory.  A form session, once found, was taken
# by every later location whatever its groups or domain; the Authorization
# header made from a form session reached an esp off location, and made a
# Basic login in a Basic location; the hand-off's body (the password) went
# on to an esp off named location after Exchange's error; $esp_user was set
# where esp is off.  A failed Basic login answered 403 where error_page
# sent the 401 to a location that should challenge again.  A session
# ended by its logoff still opened the location error_page sent the
# logoff's answer to.  A login whose return URL's location refused it
# (403) went on in the location error_page sent the 403 to: the gate's
# own redirect to the return URL is the only one that carries a login.

use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;
use File::Temp qw(tempdir);
use HTTP::Request::Common qw(GET);
use IO::Socket::INET;
use Time::HiRes qw(sleep);

if (!ad_present() || !exchange_present() || !$ENV{ESP_MODULE}) {
    Test::More::plan(skip_all => 'needs the AD fixture, the stand-in Exchange and the module');
}

my $USERS = ad_users();
my $UPN = sub { $USERS->{ $_[0] }{upn} };
my $PW = sub { $USERS->{ $_[0] }{password} };
my $OUTER = 'CN=grp-outer,CN=Users,DC=contoso,DC=local';

sub free_port {
    return IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                 LocalPort => 0)->sockport;
}

$ENV{TEST_NGINX_TINY_PORT} = free_port();
$ENV{TEST_NGINX_H2_PORT} = free_port();

my $HTTP = sso_domain_config() . sso_domain_config(name => 'other') . <<'CONF';
esp_session_key $ESP_RUN/keys/session.key;
esp_shared_zone esp047:1m;
# a refusal for the groups answers 403, not the one generic 401
esp_login_messages detailed;
CONF

# Per client auth (b = basic, f = form): where the redirects start, and
# where they lead.  /P/ep/TO/: Exchange answers 404 (the gate maybe 401),
# error_page sends it to @P_TO; /P/accel/Q/TO/: a tiny backend answers
# X-Accel-Redirect: /internal/Q/TO/...; /P/tf/: try_files; /P/rw/:
# try_files to a location that rewrites ... last; /P/idx/: index.
my $PER_MODE = <<'CONF';
location ~ ^/%P%/ep/(?<to>[a-z]+)/ {
    esp_client_auth %AUTH%;
    esp_server_auth %SERVER%;
    proxy_intercept_errors on;
    proxy_set_header X-Standin-Status 404;
    # nginx's Basic decoder, asked after the gate took the header off
    proxy_set_header X-Remote-User $remote_user;
    error_page 401 404 = @%P%_$to;
    proxy_pass https://exchange;
}
location /%P%/accel/ {
    esp_client_auth %AUTH%;
    esp_server_auth %SERVER%;
    proxy_pass http://127.0.0.1:$TEST_NGINX_TINY_PORT;
}
location /%P%g/accel/ {
    esp_client_auth %AUTH%;
    esp_permitted_groups "%OUTER%";
    proxy_pass http://127.0.0.1:$TEST_NGINX_TINY_PORT;
}
location ~ ^/%P%/tf/(?<to>.+)$ {
    esp_client_auth %AUTH%;
    try_files /nonexistent /internal/%P%/$to;
}
location ~ ^/%P%/rw/(?<to>.+)$ {
    esp_client_auth %AUTH%;
    try_files /nonexistent /rewrite/%P%/$to;
}
location = /%P%/idx/ {
    esp_client_auth %AUTH%;
    index /internal/%P%/groups/idx;
}
location /%P%/plain/ {
    esp_client_auth %AUTH%;
    esp_server_auth %SERVER%;
    proxy_pass https://exchange;
}

location @%P%_groups {
    esp_client_auth %AUTH%;
    esp_permitted_groups "%OUTER%";
    proxy_pass https://exchange;
}
location @%P%_other {
    esp other;
    esp_client_auth %AUTH%;
    proxy_pass https://exchange;
}
location @%P%_same {
    esp_client_auth %AUTH%;
    proxy_pass https://exchange;
}
location @%P%_off {
    esp off;
    proxy_set_header X-Esp-User "[$esp_user]";
    proxy_set_header X-Standin-Status 200;
    proxy_pass https://exchange;
}
location /internal/%P%/groups/ {
    internal;
    esp_client_auth %AUTH%;
    esp_permitted_groups "%OUTER%";
    proxy_pass https://exchange;
}
location /internal/%P%/other/ {
    internal;
    esp other;
    esp_client_auth %AUTH%;
    proxy_pass https://exchange;
}
location /internal/%P%/same/ {
    internal;
    esp_client_auth %AUTH%;
    proxy_pass https://exchange;
}
location /internal/%P%/dirs/ {
    internal;
    esp_client_auth %AUTH%;
    esp_allowed_dirs /owa/*;
    proxy_pass https://exchange;
}
location /internal/%P%/host/ {
    internal;
    esp_client_auth %AUTH%;
    esp_allowed_hosts owa.contoso.com;
    proxy_pass https://exchange;
}
location /internal/%P%/off/ {
    internal;
    esp off;
    proxy_set_header X-Esp-User "[$esp_user]";
    proxy_pass https://exchange;
}
CONF

my $COMMON = <<'CONF';
location ~ ^/rewrite/(?<rest>.+)$ {
    internal;
    rewrite ^ /internal/$rest last;
}
# a logoff meets an error of Exchange's: error_page to the same settings
location /lo/ {
    esp_client_auth form;
    esp_logoff /lo/logoff.owa;
    proxy_intercept_errors on;
    proxy_set_header X-Standin-Status 404;
    error_page 404 = @f_same;
    proxy_pass https://exchange;
}
# a login's return URL is refused there; error_page sends it elsewhere
location /rl/ {
    esp_client_auth form;
    esp_allowed_dirs /owa/*;
    error_page 403 = @f_same;
    proxy_pass https://exchange;
}
# the login's hand-off meets an error of Exchange's: error_page to esp off
location /h/ {
    esp_client_auth form;
    esp_server_auth form;
    proxy_intercept_errors on;
    proxy_set_header X-Standin-Status 500;
    error_page 500 = @f_off;
    proxy_pass https://exchange;
}
CONF

sub per_mode {
    my ($p, $auth, $server) = @_;
    (my $t = $PER_MODE) =~ s/%P%/$p/g;
    $t =~ s/%AUTH%/$auth/g;
    $t =~ s/%SERVER%/$server/g;
    $t =~ s/%OUTER%/$OUTER/g;
    return $t;
}

# form sources send the session's credentials on as Basic: the header the
# gate adds must not outlive their location
my $LOCATIONS = per_mode('b', 'basic', 'none') . per_mode('f', 'form', 'basic') . $COMMON;

my $SERVER = "esp contoso;\nesp_allowed_hosts mail.contoso.com;\n" . $LOCATIONS;

# nginx 1.25.1 moved HTTP/2 from "listen ... http2" to "http2 on;"
my $H2_LISTEN = nginx_version_ge('1.25.1')
    ? "listen 127.0.0.1:\$TEST_NGINX_H2_PORT ssl;\n    http2 on;"
    : "listen 127.0.0.1:\$TEST_NGINX_H2_PORT ssl http2;";

my $SERVERS = <<"CONF";
server {
    $H2_LISTEN
    ssl_certificate \$ESP_RUN/pki/front.pem;
    ssl_certificate_key \$ESP_RUN/pki/front.key;
    server_name mail.contoso.com;
$SERVER
}
server {
    listen 127.0.0.1:\$TEST_NGINX_TINY_PORT;
    location ~ ^/[a-z]+/accel/(?<to>.+)\$ {
        add_header X-Accel-Redirect /internal/\$to;
        return 200 "tiny\\n";
    }
}
CONF

ok(nginx_start({ http_config => $HTTP, config => $SERVER, server_config => $SERVERS }),
   'nginx starts') or BAIL_OUT('nginx does not start: ' . nginx_error());

# ---------------------------------------------------------------- helpers

sub header_of {
    my ($e, $name) = @_;
    return map { $_->[1] } grep { lc $_->[0] eq lc $name } @{ $e->{headers} || [] };
}

# the entries of the location that esp off (X-Esp-User) or the first
# location of an error_page (X-Standin-Status: 404) sent
sub off_entry { return (grep { header_of($_, 'X-Esp-User') } @_)[0] // {} }
sub first_entries { return grep { (header_of($_, 'X-Standin-Status'))[0] // '' } @_ }
sub later_entries { return grep { !(header_of($_, 'X-Standin-Status'))[0] } @_ }

sub basic_get {
    my ($path, $user, $password) = @_;
    return ua()->request(GET(url($path),
                             Authorization => basic_auth($UPN->($user),
                                                         $password // $PW->($user))));
}

# the login lines of a user since the mark
sub logins {
    my ($user, $re) = @_;
    my $log = error_log_since_mark();
    my $u = quotemeta $UPN->($user);
    return scalar(() = $log =~ /esp: login user="$u" [^\n]*$re/g);
}

# a form session of $user, made at $path
sub session_for {
    my ($user, $path) = @_;
    my $ua = ua();
    my ($form) = follow($ua, $ua->get(url($path)));
    my $res = submit_form($ua, $form, username => $UPN->($user), password => $PW->($user));
    is($res->code, 302, "$user signs in at $path");
    ok(cookies($ua)->{esp_session}, "$user has a session from $path");
    return $ua;
}

sub to_login {
    my ($res, $what) = @_;
    is($res->code, 302, "$what: 302");
    like($res->header('Location') // '', qr{/_esp/login\?url=}, "$what: to the login form");
}

# -------------------------------------- Basic: error_page = @named

{
    error_log_mark();
    my $res = basic_get('/b/ep/groups/x', 'alice');
    is($res->code, 403, 'Basic, error_page to stricter groups: alice (not in grp-outer) gets 403');
    is(scalar backend_entries_for($res, wait => 0.3), 1,
       'Basic, error_page to stricter groups: only the first location reached Exchange');
    ok(error_log_wait(qr/esp: login user="\Q${\ $UPN->('alice')}\E" [^\n]*result=not_permitted/),
       'Basic, error_page to stricter groups: the groups were checked there');

    error_log_mark();
    $res = basic_get('/b/ep/groups/x', 'nested');
    is($res->code, 200, 'Basic, error_page to stricter groups: nested (in grp-outer) is let in');
    is(scalar backend_entries_for($res, wait => 0.3), 2,
       'Basic, error_page to stricter groups: nested reaches the named location');
    ok(error_log_wait(qr/login user="\Q${\ $UPN->('nested')}\E" [^\n]*dc=ldaps[^\n]*result=ok/),
       'Basic, error_page to stricter groups: nested was checked by the directory there');

    error_log_mark();
    $res = basic_get('/b/ep/other/x', 'carol');
    is($res->code, 200, 'Basic, error_page to another esp domain: carol passes there');
    ok(error_log_wait(qr/login user="\Q${\ $UPN->('carol')}\E" [^\n]*domain=other /),
       'Basic, error_page to another esp domain: that domain checked the credentials');

    error_log_mark();
    $res = basic_get('/b/ep/same/x', 'carol');
    is($res->code, 200, 'Basic, error_page to the same settings: 200');
    is(scalar backend_entries_for($res, wait => 0.3), 2,
       'Basic, error_page to the same settings: both locations reached Exchange');
    sleep 0.2;
    is(logins('carol', 'result='), 1, 'Basic, error_page to the same settings: one login, reused');

    error_log_mark();
    $res = basic_get('/b/ep/same/x', 'carol', 'wrong-password');
    is($res->code, 401, 'Basic, a refused login, error_page 401 to the same settings: challenged again');
    like($res->header('WWW-Authenticate') // '', qr/^Basic realm=/,
         'Basic, a refused login, error_page 401: with WWW-Authenticate');
    sleep 0.2;
    is(logins('carol', 'result=bad_credentials'), 1,
       'Basic, a refused login, error_page 401: one failure, counted once');

    error_log_mark();
    $res = basic_get('/b/ep/groups/x', 'carol', 'wrong-password');
    is($res->code, 401, 'Basic, a refused login, error_page 401 to stricter groups: challenged again');
    sleep 0.2;
    is(logins('carol', 'result='), 1,
       'Basic, a refused login, error_page 401 to stricter groups: not tried again (not about groups)');
    is(scalar backend_entries_for($res, wait => 0.3), 0,
       'Basic, a refused login, error_page 401: nothing reached Exchange');

    error_log_mark();
    $res = basic_get('/b/ep/off/x', 'carol');
    is($res->code, 200, 'Basic, error_page to esp off: 200');
    my @e = backend_entries_for($res, wait => 0.3);
    is(scalar @e, 2, 'Basic, error_page to esp off: both locations reached Exchange');
    is((header_of(off_entry(@e), 'X-Esp-User'))[0] // '?', '[]',
       'Basic, error_page to esp off: $esp_user is empty there');
}

# ------------------------------- Basic: X-Accel-Redirect, try_files, ...

{
    my $res = basic_get('/b/accel/b/groups/x', 'alice');
    is($res->code, 403, 'Basic, X-Accel-Redirect to stricter groups: alice gets 403');
    is(scalar backend_entries_for($res, wait => 0.3), 0,
       'Basic, X-Accel-Redirect to stricter groups: nothing reached Exchange');

    $res = basic_get('/b/accel/b/groups/x', 'nested');
    is($res->code, 200, 'Basic, X-Accel-Redirect to stricter groups: nested is let in');

    error_log_mark();
    $res = basic_get('/bg/accel/b/groups/x', 'nested');
    is($res->code, 200, 'Basic, X-Accel-Redirect between the same groups: nested is let in');
    sleep 0.2;
    is(logins('nested', 'result='), 1, 'Basic, X-Accel-Redirect between the same groups: one login, reused');

    $res = basic_get('/b/accel/b/other/x', 'alice');
    is($res->code, 200, 'Basic, X-Accel-Redirect to another esp domain: alice passes there');

    $res = basic_get('/b/accel/b/host/x', 'alice');
    is($res->code, 403, 'Basic, X-Accel-Redirect to other esp_allowed_hosts: 403');
    is(scalar backend_entries_for($res, wait => 0.3), 0,
       'Basic, X-Accel-Redirect to other esp_allowed_hosts: nothing reached Exchange');

    $res = basic_get('/b/accel/f/same/x', 'alice');
    is($res->code, 302, 'Basic, X-Accel-Redirect to a form location: asks for a form sign-in');

    $res = basic_get('/b/accel/b/off/x', 'alice');
    my @e = backend_entries_for($res, wait => 0.3);
    is((header_of(off_entry(@e), 'X-Esp-User'))[0] // '?', '[]',
       'Basic, X-Accel-Redirect to esp off: $esp_user is empty there');

    error_log_mark();
    $res = basic_get('/b/tf/dirs/x', 'alice');
    is($res->code, 403, 'Basic, try_files to other esp_allowed_dirs: 403');
    ok(error_log_wait('esp: path "/internal/b/dirs/x" is outside the allowed directories'),
       'Basic, try_files to other esp_allowed_dirs: the path was checked there');
    is(scalar backend_entries_for($res, wait => 0.3), 0,
       'Basic, try_files to other esp_allowed_dirs: nothing reached Exchange');

    $res = basic_get('/b/rw/dirs/x', 'alice');
    is($res->code, 403, 'Basic, try_files and rewrite ... last to other esp_allowed_dirs: 403');

    $res = basic_get('/b/tf/groups/x', 'alice');
    is($res->code, 403, 'Basic, try_files to stricter groups: alice gets 403');

    $res = basic_get('/b/idx/', 'alice');
    is($res->code, 403, 'Basic, index to stricter groups: alice gets 403');

    $res = basic_get('/b/tf/same/x', 'alice');
    is($res->code, 200, 'Basic, try_files to the same settings: 200');
}

# --------------------------------------------------- form sessions

my $alice = session_for('alice', '/f/plain/x');

{
    my $res = $alice->get(url('/f/ep/groups/x'));
    to_login($res, 'form session, error_page to stricter groups');
    is(scalar backend_entries_for($res, wait => 0.3), 1,
       'form session, error_page to stricter groups: only the first location reached Exchange');

    $res = $alice->get(url('/f/ep/other/x'));
    to_login($res, 'form session, error_page to another esp domain');

    $res = $alice->get(url('/f/ep/same/x'));
    is($res->code, 200, 'form session, error_page to the same settings: the session stands');
    my @e = backend_entries_for($res, wait => 0.3);
    is(scalar @e, 2, 'form session, error_page to the same settings: both locations reached Exchange');
    ok((map { header_of($_, 'Authorization') } first_entries(@e))[0],
       'form session: the first location sent Basic (server auth basic)');
    is(scalar(map { header_of($_, 'Authorization') } later_entries(@e)), 0,
       'form session, error_page to esp_server_auth none: no Authorization there');

    $res = $alice->get(url('/f/ep/off/x'));
    @e = backend_entries_for($res, wait => 0.3);
    is(scalar @e, 2, 'form session, error_page to esp off: both locations reached Exchange');
    is((header_of(off_entry(@e), 'X-Esp-User'))[0] // '?', '[]',
       'form session, error_page to esp off: $esp_user is empty there');
    is(scalar(header_of(off_entry(@e), 'Authorization')), 0,
       'form session, error_page to esp off: the Basic header made from the session stays behind');
    is(scalar(grep { /esp_session/ } map { header_of($_, 'Cookie') } @e), 0,
       'form session, error_page to esp off: the session cookie reached no backend');

    $res = $alice->get(url('/f/accel/f/groups/x'));
    to_login($res, 'form session, X-Accel-Redirect to stricter groups');
    is(scalar backend_entries_for($res, wait => 0.3), 0,
       'form session, X-Accel-Redirect to stricter groups: nothing reached Exchange');

    $res = $alice->get(url('/f/accel/f/other/x'));
    to_login($res, 'form session, X-Accel-Redirect to another esp domain');

    $res = $alice->get(url('/f/accel/b/same/x'));
    is($res->code, 401, 'form session, X-Accel-Redirect to a Basic location: challenged, '
                      . 'the session\'s Basic header is not taken for the client\'s');
    is(scalar backend_entries_for($res, wait => 0.3), 0,
       'form session, X-Accel-Redirect to a Basic location: nothing reached Exchange');

    $res = $alice->get(url('/f/accel/f/host/x'));
    is($res->code, 403, 'form session, X-Accel-Redirect to other esp_allowed_hosts: 403');

    $res = $alice->get(url('/f/tf/dirs/x'));
    is($res->code, 403, 'form session, try_files to other esp_allowed_dirs: 403');

    $res = $alice->get(url('/f/rw/dirs/x'));
    is($res->code, 403, 'form session, try_files and rewrite ... last to other esp_allowed_dirs: 403');

    $res = $alice->get(url('/f/idx/'));
    to_login($res, 'form session, index to stricter groups');

    $res = $alice->get(url('/f/accel/f/same/x'));
    is($res->code, 200, 'form session, X-Accel-Redirect to the same settings: the session stands');

    # a session checked against grp-outer stands where grp-outer is asked
    my $nested = session_for('nested', '/fg/accel/f/groups/x');
    $res = $nested->get(url('/fg/accel/f/groups/x'));
    is($res->code, 200, 'form session checked against the same groups: stands after X-Accel-Redirect');
}

# ------------------------------- a logoff meets error_page

{
    my $carol = session_for('carol', '/f/plain/x');
    my $res = $carol->get(url('/lo/logoff.owa'));
    is($res->code, 302, 'logoff, then error_page: 302');
    like($res->header('Location') // '', qr{/_esp/logout$}, 'logoff, then error_page: to the signed-out page');
    is(scalar backend_entries_for($res, wait => 0.3), 1,
       'logoff, then error_page: the ended session opened nothing after the logoff');
}

# ------------------ only the gate's own redirect carries a login on

{
    my $ua = ua();
    my ($form) = follow($ua, $ua->get(url('/rl/x')));
    like($form->decoded_content // '', qr/name="password"/, 'a refused return URL: the login form');
    error_log_mark();
    my $res = submit_form($ua, $form, username => $UPN->('alice'), password => $PW->('alice'));
    is($res->code, 440, 'a refused return URL, error_page elsewhere: the login does not go on there');
    ok(!cookies($ua)->{esp_session}, 'a refused return URL, error_page elsewhere: no session');
    ok(error_log_wait('esp: login abandoned: an internal redirect took it'),
       'a refused return URL, error_page elsewhere: logged');
    is(logins('alice', 'result='), 0, 'a refused return URL, error_page elsewhere: no bind');
}

# ------------------------- the hand-off meets error_page to esp off

{
    my $ua = ua();
    my ($form) = follow($ua, $ua->get(url('/h/x')));
    my $res = submit_form($ua, $form, username => $UPN->('alice'), password => $PW->('alice'));
    my @e = backend_entries_for($res, wait => 0.5);
    my ($handoff) = grep { ($_->{uri} // '') =~ m{^/owa/auth\.owa} && !header_of($_, 'X-Esp-User') } @e;
    my ($off) = grep { header_of($_, 'X-Esp-User') } @e;
    ok($handoff && ($handoff->{body} // '') =~ /(?:^|&)password=/,
       'hand-off: Exchange got the forms login');
    ok($off, 'hand-off: Exchange\'s 500 went to the esp off named location');
    # ok(), not unlike(): a failure must not print the password
    my $body = $off ? $off->{body} // '' : 'password=';
    ok(index($body, 'password=') < 0 && index($body, $PW->('alice')) < 0,
       'hand-off: its body (the password) did not go on to the esp off location');
    is(length $body, 0, 'hand-off: the esp off location got no body');
    is((header_of($off // {}, 'X-Esp-User'))[0] // '?', '[]', 'hand-off: $esp_user is empty there');
}

# --------------------------------------------------------------- HTTP/2

SKIP: {
    my $v = `curl -V 2>/dev/null` // '';
    skip 'no curl with HTTP/2', 8 unless $v =~ /\bHTTP2\b/;

    my $dir = tempdir(CLEANUP => 1);
    my $port = $ENV{TEST_NGINX_H2_PORT};

    # status and HTTP version of a GET over HTTP/2, and its test id
    my $h2 = sub {
        my ($path, @h) = @_;
        my $id = EspTest::new_test_id();
        open my $fh, '>', "$dir/headers" or die "$dir/headers: $!";
        print $fh map { "$_\n" } test_id_header() . ": $id", @h;
        close $fh;
        my $out = `curl -s --http2 --cacert $ENV{ESP_CA} \\
            --resolve mail.contoso.com:$port:127.0.0.1 -H \@$dir/headers \\
            -o /dev/null -w '%{http_code} %{http_version}' \\
            https://mail.contoso.com:$port$path 2>&1`;
        return ($out, $id);
    };

    my $alice_basic = 'Authorization: ' . basic_auth($UPN->('alice'), $PW->('alice'));
    my ($out, $id) = $h2->('/b/ep/groups/x', $alice_basic);
    is($out, '403 2', 'HTTP/2, Basic, error_page to stricter groups: 403');
    is(scalar backend_entries_for($id, wait => 0.3), 1,
       'HTTP/2, Basic, error_page to stricter groups: only the first location reached Exchange');

    ($out, $id) = $h2->('/b/accel/b/groups/x', $alice_basic);
    is($out, '403 2', 'HTTP/2, Basic, X-Accel-Redirect to stricter groups: 403');

    ($out) = $h2->('/b/tf/dirs/x', $alice_basic);
    is($out, '403 2', 'HTTP/2, Basic, try_files to other esp_allowed_dirs: 403');

    my $cookie = 'Cookie: esp_session=' . cookies($alice)->{esp_session};
    ($out) = $h2->('/f/ep/groups/x', $cookie);
    is($out, '302 2', 'HTTP/2, form session, error_page to stricter groups: to the login form');

    ($out) = $h2->('/f/accel/f/other/x', $cookie);
    is($out, '302 2', 'HTTP/2, form session, X-Accel-Redirect to another esp domain: to the login form');

    ($out, $id) = $h2->('/f/ep/off/x', $cookie);
    my @e = backend_entries_for($id, wait => 0.3);
    is((header_of(off_entry(@e), 'X-Esp-User'))[0] // '?', '[]',
       'HTTP/2, form session, error_page to esp off: $esp_user is empty there');
    is(scalar(header_of(off_entry(@e), 'Authorization')), 0,
       'HTTP/2, form session, error_page to esp off: no Authorization there');
}

unlike(EspTest::slurp(nginx_prefix() . '/logs/error.log'), qr/\[(?:alert|crit|emerg)\]|exited on signal/,
       'no alert, no crash');

done_testing();
