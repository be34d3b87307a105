# The gate's lockout under attack (issue 11), judged by Active Directory's
# own count of wrong passwords (badPwdCount, per DC, summed; the fixture's
# domain has a lockout policy, so Samba counts them):
#   1. 24 wrong passwords at once on 24 connections: AD sees at most
#      max_failed_auths (slots are taken before the bind);
#   2. the same over HTTP/2 streams of one connection; the right password
#      from more connections than max_failed_auths is not refused;
#   3. wrong passwords between cached successes (a polling phone): AD sees
#      at most max_failed_auths, a cache hit resets nothing, and a blocked
#      user's cached password is refused too (no guessing against the cache);
#   4. a successful bind resets the count;
#   5. a login whose client goes away during the bind counts as the DC
#      answers its bind (a wrong password counts, no answer does not);
#   6. a slot whose worker died lapses after the longest a login can take;
#   7. smart lockout: a familiar device (cookie, address) keeps its own
#      budget while an attacker blocks the user elsewhere;
# and a chunked form login (the request body reader of ngx_esp_http.c).

use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;
use EspTest::Lockout;
use Test::More;

use HTTP::Request;
use IO::Socket::INET;
use LWP::UserAgent;
use MIME::Base64 qw(encode_base64);
use POSIX ();
use Time::HiRes qw(sleep time);

if ($ENV{ESP_NO_AD}) {
    plan skip_all => 'no AD fixture';
}

my $AD_SH = ($ENV{ESP_ROOT} || '.') . '/t/fixtures/ad.sh';
my %paused;

END {
    for my $dc (grep { $paused{$_} } keys %paused) {
        system("$AD_SH resume $dc >/dev/null 2>&1");
    }
}

sub ad_sh {
    my ($cmd, $dc) = @_;
    system("$AD_SH $cmd $dc >/dev/null 2>&1") == 0 or diag("ad.sh $cmd $dc failed");
    $paused{$dc} = ($cmd eq 'pause');
}

my $USERS = ad_users();
my $MAX = 3;
my $FAMILIAR_MAX = 2;

my ($H2_PORT) = EspTest::free_ports(1);
$ENV{TEST_NGINX_H2_PORT} = $H2_PORT;

my $DOMAIN = sub {
    my (%o) = @_;
    # ldap_timeout: long enough for a paused DC to answer once resumed
    return sso_domain_config(ldap_timeout => '5s', ldap_down_retry => '1s',
                             max_failed_auths => $MAX, reset_fail_timeout => '10m',
                             unblock_timeout => '10m', %o);
};

my %CONF = (
    workers => 2,
    http_config => "esp_session_key $ENV{ESP_RUN}/keys/session.key;\n"
        . "esp_shared_zone esp031:1m;\n"
        . $DOMAIN->()
        . $DOMAIN->(name => 'smart', smart_lockout => 'on',
                    smart_lockout_max_failed_auths => $FAMILIAR_MAX)
        # one DC and a short timeout: a slot lapses after (10 * 1 + 1) * 1 s
        . $DOMAIN->(name => 'lapse', ldap_server => 'ldaps://$AD_DC1:636',
                    ldap_timeout => '1s', max_failed_auths => 1),
    config => <<'CONF',
    esp contoso;
    esp_allowed_hosts mail.contoso.com;
    location /Microsoft-Server-ActiveSync {
        esp_client_auth basic;
        esp_server_auth basic;
        esp_basic_cache 60s;
        proxy_pass https://exchange;
    }
    location /Microsoft-Server-ActiveSync/smart {
        esp smart;
        esp_client_auth basic;
        esp_server_auth basic;
        esp_basic_cache 60s;
        proxy_pass https://exchange;
    }
    location /ews/ {
        esp_client_auth basic;
        esp_server_auth basic;
        esp_basic_cache 0;
        proxy_pass https://exchange;
    }
    location /lapse/ {
        esp lapse;
        esp_client_auth basic;
        esp_basic_cache 0;
        proxy_pass https://exchange;
    }
    location /owa/ {
        esp_client_auth form;
        esp_server_auth none;
        proxy_pass https://exchange;
    }
CONF
    server_config => <<'CONF',
    server {
        listen 127.0.0.1:$TEST_NGINX_H2_PORT ssl http2;
        ssl_certificate $ESP_RUN/pki/front.pem;
        ssl_certificate_key $ESP_RUN/pki/front.key;
        server_name mail.contoso.com;
        esp contoso;
        esp_allowed_hosts mail.contoso.com;
        location /ews/ {
            esp_client_auth basic;
            esp_server_auth basic;
            esp_basic_cache 0;
            proxy_pass https://exchange;
        }
    }
CONF
);

ok(nginx_start(\%CONF), 'nginx starts (2 workers, an HTTP/2 listener)')
    or BAIL_OUT(nginx_error());

# the login lines since the mark: [user, dc, result] each
sub logins {
    my $log = error_log_since_mark();
    my @l;
    while ($log =~ /esp: login user="((?:[^"\\]|\\.)*)" client=\S+ domain=\S+ dc=(\S+) result=(\w+)/g) {
        push @l, [$1, $2, $3];
    }
    return @l;
}

sub count_results {
    my %n;
    $n{ $_->[2] }++ for @_;
    return \%n;
}

my $plain = LWP::UserAgent->new(max_redirect => 0, timeout => 20, keep_alive => 0);

sub basic_get {
    my ($path, $user, $pw, %o) = @_;
    my $ua = $o{ua} || $plain;
    return $ua->get('http://127.0.0.1:' . nginx_port() . $path, Host => 'mail.contoso.com',
                    Authorization => basic_auth($user, $pw), @{ $o{headers} || [] },
                    test_id_header() => EspTest::new_test_id());
}

# one request, then its login line's result
sub try_login {
    my ($path, $user, $pw, %o) = @_;
    error_log_mark();
    my $res = basic_get($path, $user, $pw, %o);
    error_log_wait(qr/esp: login user=/, 5);
    my @l = logins();
    return ($res->code, @l ? $l[-1][2] : 'no-line', $res);
}

# n requests at once, each on its own connection (forked clients that start
# together); returns the status codes
sub burst {
    my ($n, $path, $user, $pw_of) = @_;
    my $start = time + 1;
    my @kids;
    for my $i (1 .. $n) {
        pipe(my $r, my $w) or die "pipe: $!";
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            close $r;
            my $code = eval {
                my $ua = LWP::UserAgent->new(timeout => 20, keep_alive => 0);
                my $url = 'http://127.0.0.1:' . nginx_port() . $path;
                my @h = (Host => 'mail.contoso.com', Authorization => basic_auth($user, $pw_of->($i)));
                sleep($start - time) if $start > time;
                $ua->get($url, @h)->code;
            } // 'error';
            print $w $code;
            close $w;
            POSIX::_exit(0);
        }
        close $w;
        push @kids, [$pid, $r];
    }
    my @codes;
    for my $k (@kids) {
        my $fh = $k->[1];
        local $/;
        my $c = <$fh>;
        waitpid $k->[0], 0;
        push @codes, $c // 'none';
    }
    return @codes;
}

sub wait_logins {
    my ($n) = @_;
    EspTest::poll(10, sub { logins() >= $n });
    return logins();
}

# ------------------------------------------------- 1. parallel connections

{
    my $u = $USERS->{burst1};
    is(ad_bad_pwd_count('burst1'), 0, 'burst: AD counts no wrong password for burst1 yet');

    error_log_mark();
    my @codes = burst(24, '/ews/x', $u->{upn}, sub { "Wrong-burst-$_[0]" });
    my @l = wait_logins(24);
    is_deeply([sort { $a <=> $b } @codes], [(401) x 24], 'burst: 24 wrong passwords at once, 24 times 401');
    my $n = count_results(@l);
    is(scalar(@l), 24, 'burst: 24 login lines');
    cmp_ok($n->{bad_credentials} // 0, '<=', $MAX, "burst: at most $MAX reached a domain controller");
    is(($n->{bad_credentials} // 0) + ($n->{blocked} // 0), 24, 'burst: the others were refused as blocked');

    my $ad = ad_bad_pwd_count('burst1');
    like($ad, qr/^\d+$/, 'burst: AD answers for burst1');
    cmp_ok($ad, '<=', $MAX, "burst: AD's badPwdCount of burst1 is $ad, at most max_failed_auths $MAX");
    cmp_ok($ad, '>=', 1, 'burst: ... and the directory was asked at all');
    is($ad, $n->{bad_credentials} // 0, 'burst: AD counted exactly the binds the gate logged');

    my ($code, $result) = try_login('/ews/x', $u->{upn}, $u->{password});
    is("$code $result", '401 blocked', 'burst: the user is blocked now, even with the right password');
}

# ------------------------------------------------- 1b. parallel right passwords

# a client's parallel connections with the right password and nothing in
# the cache (it expired, say): more logins than max_failed_auths at once
# wait for a slot instead of being refused, and mostly find the cache then
{
    my $u = $USERS->{alice};
    error_log_mark();
    my @codes = burst(8, '/Microsoft-Server-ActiveSync?Cmd=Ping', $u->{upn}, sub { $u->{password} });
    my @l = wait_logins(8);
    is_deeply([sort @codes], [('200') x 8], "parallel: 8 right passwords at once (max_failed_auths $MAX): 8 times 200");
    my $n = count_results(@l);
    is($n->{ok} // 0, 8, 'parallel: 8 logins ok');
    cmp_ok(scalar(grep { $_->[1] ne 'cache' } @l), '<=', $MAX, "parallel: at most $MAX of them bound");
}

# ------------------------------------------------- 2. HTTP/2 streams

SKIP: {
    my $curl = `curl --version 2>/dev/null`;
    skip 'curl without HTTP/2', 8 unless $curl =~ /\bHTTP2\b/;
    my $u = $USERS->{burst2};
    is(ad_bad_pwd_count('burst2'), 0, 'streams: AD counts no wrong password for burst2 yet');

    my $url = "https://mail.contoso.com:$H2_PORT/ews/x";
    my @cmd = ('curl', '-s', '--parallel', '--parallel-max', '50');
    for my $i (1 .. 24) {
        push @cmd, '--next' if $i > 1;
        push @cmd, '--http2', '--cacert', $ENV{ESP_CA}, '-o', '/dev/null',
                   '-w', '%{http_code} %{http_version} %{num_connects}\n',
                   '-u', "$u->{upn}:Wrong-stream-$i", $url;
    }
    error_log_mark();
    open my $fh, '-|', @cmd or die "curl: $!";
    my @out = <$fh>;
    close $fh;
    my @l = wait_logins(24);

    is(scalar(@out), 24, 'streams: curl made 24 requests');
    is_deeply([sort map { (split)[1] } @out], [('2') x 24], 'streams: all over HTTP/2');
    my $conns = 0;
    $conns += (split)[2] for @out;
    cmp_ok($conns, '<=', 2, "streams: on $conns connection(s): streams, not connections");
    is_deeply([sort map { (split)[0] } @out], [('401') x 24], 'streams: 24 times 401');
    my $n = count_results(@l);
    cmp_ok($n->{bad_credentials} // 0, '<=', $MAX, "streams: at most $MAX reached a domain controller");

    my $ad = ad_bad_pwd_count('burst2');
    cmp_ok($ad, '<=', $MAX, "streams: AD's badPwdCount of burst2 is $ad, at most $MAX");
    cmp_ok($ad, '>=', 1, 'streams: ... and the directory was asked');
}

# ------------------------------------------------- 3. between cached successes

{
    my $u = $USERS->{poller};
    my $eas = '/Microsoft-Server-ActiveSync?Cmd=Ping';
    my ($code, $result) = try_login($eas, $u->{upn}, $u->{password});
    is("$code $result", '200 ok', 'poller: the phone logs in (a bind, then cached)');

    my @seen;
    for my $i (1 .. 8) {
        my ($c1, $r1) = try_login($eas, $u->{upn}, "Wrong-poll-$i");
        my ($c2, $r2) = try_login($eas, $u->{upn}, $u->{password});
        my $dc2 = (logins())[-1]->[1] // '';
        push @seen, "$c1 $r1 / $c2 $r2" . ($r2 eq 'ok' ? " $dc2" : '');
    }
    is_deeply(\@seen, [
        '401 bad_credentials / 200 ok cache',
        '401 bad_credentials / 200 ok cache',
        '401 bad_credentials / 401 blocked',
        ('401 blocked / 401 blocked') x 5,
    ], 'poller: a cache hit resets nothing; the third wrong password blocks, '
       . 'and a blocked user\'s cached password is refused too')
        or diag(explain(\@seen));

    my $ad = ad_bad_pwd_count('poller');
    is($ad, $MAX, "poller: AD's badPwdCount of poller is $MAX after 8 wrong passwords among cached logins");
}

# ------------------------------------------------- 4. a successful bind resets

{
    my $u = $USERS->{resetme};
    my @r = map { (try_login('/ews/x', $u->{upn}, "Wrong-reset-$_"))[1] } 1 .. 2;
    is("@r", 'bad_credentials bad_credentials', 'reset: two failures');
    my ($code, $result) = try_login('/ews/x', $u->{upn}, $u->{password});
    is("$code $result", '200 ok', 'reset: the right password binds');
    @r = map { (try_login('/ews/x', $u->{upn}, "Wrong-reset-b$_"))[1] } 1 .. 2;
    is("@r", 'bad_credentials bad_credentials', 'reset: two more failures are not blocked: the bind reset the count');
    ($code, $result) = try_login('/ews/x', $u->{upn}, $u->{password});
    is("$code $result", '200 ok', 'reset: and the right password still binds');
    is(ad_bad_pwd_count('resetme'), 0, 'reset: AD reset its count on the success too');
}

# ------------------------------------------------- 5. the client goes away

# a client sends a wrong password and closes its connection during the
# bind: the bind goes on, and counts as the directory answers it
sub abandon {
    my ($user, $pw, $step) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => nginx_port(), Timeout => 5)
        or die "connect: $!";
    print $s "GET /ews/x HTTP/1.1\r\nHost: mail.contoso.com\r\nAuthorization: "
        . basic_auth($user, $pw) . "\r\n\r\n";
    my $sent = error_log_wait(qr/esp ldap: ${\ ($step \/\/ 'bind') } "\Q$user\E/, 3);
    close $s;
    return $sent;
}

{
    my $ghost = 'ghost-031a@contoso.local';
    my $alice = $USERS->{alice};
    my $dcs_answer = sub {
        sleep 1.2;    # ldap_down_retry, for a DC a time-out marked down
        EspTest::poll(15, sub { basic_get('/ews/x', $alice->{upn}, $alice->{password})->code == 200 });
    };
    # pooled connections in both workers, so that a bind is out at once
    my $warm = sub { burst(8, '/ews/x', $alice->{upn}, sub { $alice->{password} }) };
    my @lines;

    # slow DCs: they answer the abandoned bind after the client left
    $warm->();
    ad_sh(pause => 'dc1');
    ad_sh(pause => 'dc2');
    error_log_mark();
    ok(abandon($ghost, 'Wrong-abort-1'), 'abort: a bind is out to a paused DC, the client leaves');
    ok(error_log_wait('esp lockout: the login went away, its bind: -2', 5),
       'abort: the gate saw the client go, the bind still out');
    ad_sh(resume => 'dc1');
    ad_sh(resume => 'dc2');
    ok(error_log_wait(qr/esp: abandoned login client=127\.0\.0\.1 domain=contoso result=bad_credentials/, 10),
       'abort: the DC answers the abandoned bind: a wrong password, counted');
    push @lines, grep { /abandoned login/ } split /\n/, error_log_since_mark();
    ok($dcs_answer->(), 'abort: the DCs answer');

    # hung DCs: no answer within ldap_timeout (or no bind sent), not counted
    $warm->();
    ad_sh(pause => 'dc1');
    ad_sh(pause => 'dc2');
    error_log_mark();
    ok(abandon($ghost, 'Wrong-abort-2', 'authenticate'), 'abort: a login while the DCs hang, the client leaves');
    ok(error_log_wait(qr/esp lockout: the login went away, its bind: -[25]/, 5), 'abort: the gate saw the client go');
    if (error_log_since_mark() =~ /its bind: -2/) {
        ok(error_log_wait(qr/esp: abandoned login client=127\.0\.0\.1 domain=contoso result=unavailable/, 15),
           'abort: no answer within ldap_timeout: not counted (a hung DC blocks nobody)');
    } else {
        pass('abort: no bind was sent: nothing to count');
    }
    push @lines, grep { /abandoned login/ } split /\n/, error_log_since_mark();
    ad_sh(resume => 'dc1');
    ad_sh(resume => 'dc2');
    ok($dcs_answer->(), 'abort: the DCs answer again');

    my @r = map { (try_login('/ews/x', $ghost, "Wrong-abort-b$_"))[1] } 1 .. 3;
    is("@r", 'bad_credentials bad_credentials blocked',
       'abort: the answered one counts, the unanswered one does not: the block comes at the third failure');

    SKIP: {
        my $normal = f2b_ips(normal => @lines);
        skip 'no fail2ban-regex', 1 unless $normal;
        is("@$normal", '127.0.0.1', 'abort: fail2ban counts the abandoned wrong password, not the unanswered one');
    }
}

# ------------------------------------------------- 6. a slot whose worker died

{
    my $ghost = 'ghost-031l@contoso.local';
    ad_sh(pause => 'dc1');
    error_log_mark();
    my $t0 = time;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => nginx_port(), Timeout => 5)
        or die "connect: $!";
    print $s "GET /lapse/x HTTP/1.1\r\nHost: mail.contoso.com\r\nAuthorization: "
        . basic_auth($ghost, 'Wrong-lapse-1') . "\r\n\r\n";
    # the worker dies with the slot held, within ldap_timeout: no cleanup
    # can run, no time-out settles it
    ok(error_log_wait(qr/esp ldap: authenticate "ghost-031l/, 0.8), 'lapse: the login is under way (dc1 paused)');

    my $master = EspTest::read_pid();
    my @workers = EspTest::child_pids($master);
    kill 'KILL', @workers;
    close $s;
    ok(EspTest::poll(10, sub { my @now = EspTest::child_pids($master);
                               @now == 2 && !grep { my $w = $_; grep { $_ == $w } @workers } @now }),
       'lapse: the master replaced the killed workers');
    ad_sh(resume => 'dc1');

    my ($code, $result) = try_login('/lapse/x', $ghost, 'Wrong-lapse-2');
    is($result, 'blocked', 'lapse: the dead worker\'s slot still counts (max_failed_auths 1)');

    # (10 * 1 DC + 1) * 1 s after the reservation, it lapses
    sleep($t0 + 12 - time) if time < $t0 + 12;
    sleep 1.2;    # ldap_down_retry after the killed worker's time-out
    ($code, $result) = try_login('/lapse/x', $ghost, 'Wrong-lapse-3');
    is($result, 'bad_credentials', 'lapse: after the longest a login can take, the slot is free again');
    error_log_mark();
}

# ------------------------------------------------- 7. smart lockout

{
    my $u = $USERS->{phone};
    my $path = '/Microsoft-Server-ActiveSync/smart?Cmd=Ping';
    my $phone = LWP::UserAgent->new(max_redirect => 0, timeout => 20);
    my $away = LWP::UserAgent->new(max_redirect => 0, timeout => 20, local_address => '127.0.0.4');

    my ($code, $result, $res) = try_login($path, $u->{upn}, $u->{password}, ua => $phone);
    is("$code $result", '200 ok', 'smart: the phone logs in (from 127.0.0.1)');
    my ($sc) = grep { /^esp_device=/ } $res->header('Set-Cookie');
    like($sc // '', qr/^esp_device=[A-Za-z0-9_-]{39}; Path=\/; Max-Age=1209600; HttpOnly; SameSite=Lax$/,
         'smart: it gets a device cookie for smart_lockout_remember (14 days)');
    my ($device) = ($sc // '') =~ /^esp_device=([^;]+)/;
    $device //= 'none';

    # the attacker is elsewhere (127.0.0.4) and has no device cookie
    my @r = map { (try_login($path, $u->{upn}, "Wrong-smart-$_", ua => $away))[1] } 1 .. 4;
    is("@r", 'bad_credentials bad_credentials bad_credentials blocked',
       'smart: an attacker elsewhere blocks the user for unknown clients');
    like(error_log_since_mark(0), qr/is blocked for 600 s after 3 failed logins(?! from familiar)/,
         'smart: the block of unknown clients is logged');

    ($code, $result) = try_login($path, $u->{upn}, $u->{password}, ua => $away);
    is("$code $result", '401 blocked', 'smart: unknown clients are refused even with the right password');

    my $forged = encode_base64('x' x 29, '');
    $forged =~ tr{+/=}{-_}d;
    ($code, $result) = try_login($path, $u->{upn}, $u->{password}, ua => $away,
                                 headers => [Cookie => "esp_device=$forged"]);
    is("$code $result", '401 blocked', 'smart: a forged device cookie makes nobody familiar');
    # the cookie is the phone user's: another user gets a cookie of their own
    ($code, $result, $res) = try_login($path, $USERS->{burst2}{upn}, $USERS->{burst2}{password},
                                       ua => $away, headers => [Cookie => "esp_device=$device"]);
    ok($code == 200 && grep({ /^esp_device=/ } $res->header('Set-Cookie')),
       'smart: a device cookie is worth nothing for another user');

    ($code, $result) = try_login($path, $u->{upn}, $u->{password}, ua => $phone);
    is("$code $result", '200 ok', 'smart: the phone still gets in by its familiar address');

    ($code, $result, $res) = try_login($path, $u->{upn}, $u->{password}, ua => $away,
                                       headers => [Cookie => "esp_device=$device"]);
    is("$code $result", '200 ok', 'smart: ... and by its device cookie from another address');
    ok(!grep({ /^esp_device=/ } $res->header('Set-Cookie')), 'smart: a valid device cookie is not sent again');
    my @e = backend_entries_for($res);
    ok(@e && !grep({ lc $_->[0] eq 'cookie' && $_->[1] =~ /esp_device/ } @{ $e[0]{headers} }),
       'smart: Exchange never sees the device cookie');

    # the familiar budget is a budget too (127.0.0.4 is familiar by now)
    error_log_mark();
    @r = map { (try_login($path, $u->{upn}, "Wrong-familiar-$_", ua => $away))[1] } 1 .. 3;
    is("@r", 'bad_credentials bad_credentials blocked',
       "smart: familiar clients have $FAMILIAR_MAX failures of their own");
    like(error_log_since_mark(0), qr/is blocked for 600 s after $FAMILIAR_MAX failed logins from familiar clients/,
         'smart: the familiar block is logged as such');
    my $ad = ad_bad_pwd_count('phone');
    cmp_ok($ad, '<=', $MAX + $FAMILIAR_MAX,
           "smart: AD's badPwdCount of phone is $ad, at most max_failed_auths + smart_lockout_max_failed_auths");
}

# ------------------------------------------------- the block's log line

{
    # the name is the client's: a quote in it cannot end the log's quotes
    my $evil = 'ghost"031q@contoso.local';
    error_log_mark();
    my @r = map { (try_login('/ews/x', $evil, "Wrong-quote-$_"))[1] } 1 .. $MAX + 1;
    is("@r", join(' ', ('bad_credentials') x $MAX, 'blocked'),
       'block line: a name with a quote is blocked like any other');
    like(error_log_since_mark(0), qr/esp: user "ghost\\"031q\@contoso\.local" of domain contoso is blocked for/,
         'block line: the user name is logged escaped');
}

# ------------------------------------------------- the chunked form login

{
    my $ua = ua();
    my ($form) = follow($ua, $ua->get(url('/owa/')));
    my $f = EspTest::Flow::form_of($form);
    if ($f) {
        $f->value(username => $USERS->{alice}{upn});
        $f->value(password => $USERS->{alice}{password});
        my $req = $f->click;
        my $body = $req->content;
        $req->remove_header('Content-Length');
        $req->content(sub { my $b = $body; $body = ''; return $b });
        my $res = $ua->request($req);
        ok(cookies($ua)->{esp_session}, 'chunked: a form login posted with Transfer-Encoding: chunked works')
            or diag('status ' . $res->code);
    } else {
        fail('chunked: no login form');
    }
}

ok(!grep(/\[(alert|crit|emerg)\](?!.*exited on signal 9)/, &error_log_since_mark(0)),
   'no alert in the whole log (but the workers killed on purpose)');

done_testing();
