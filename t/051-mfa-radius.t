# The second factor over RADIUS (esp_mfa radius, src/ngx_esp_radius.c):
# the radius_* directives and their errors; then logins through the form
# against a real FreeRADIUS (t/fixtures/radius.py writes its configuration:
# require_message_authenticator, a policy that accepts one code, rejects
# others, challenges with a Reply-Message and State, waits for a "push")
# and against a hostile responder for what FreeRADIUS will not send (no
# Message-Authenticator, wrong authenticators, wrong id, truncated and
# overrunning packets): accept, reject, challenge then accept, time-out,
# failover from a dead and from a silent first server, a wrong shared
# secret, push approval held on the event loop.  A bad reply never lets a
# login through and never crashes a worker; no secret, password or code
# reaches the error log.

use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;
use IPC::Open2 qw(open2);
use POSIX ();
use Time::HiRes qw(time sleep);

my $RUN = $ENV{ESP_RUN} || '/tmp/esp-run';
my $ROOT = $ENV{ESP_ROOT} || '.';
my $SECRET = 'gate-and-radius-share-this';
my $HOSTILE_BASE = 7801;
my @HOSTILE = qw(no-ma bad-response-auth bad-ma wrong-id truncated overrun
                 long-length other-port wrong-secret garbage good);
my %HOSTILE = map { $HOSTILE[$_] => $HOSTILE_BASE + $_ } 0 .. $#HOSTILE;
my (@FIXTURES, $USERS);

# the shared secrets, read by nginx at start
mkdir "$RUN/radius";
EspTest::spurt("$RUN/radius/secret", "$SECRET\n");
EspTest::spurt("$RUN/radius/wrong", "not-the-secret\n");
chmod 0600, "$RUN/radius/secret", "$RUN/radius/wrong";

run_blocks();

# ---- logins through the form, against FreeRADIUS and a hostile responder

SKIP: {
    skip 'needs the AD fixture, the stand-in Exchange and the module', 1
        if !ad_present() || !exchange_present() || !$ENV{ESP_MODULE}
           || !-f $ENV{ESP_MODULE};
    skip 'needs esp_mfa (the second factor framework)', 1
        unless EspTest::slurp($ENV{ESP_MODULE}) =~ /esp_mfa_timeout/;
    flows();
}

done_testing();

sub start_fixture {
    my (@args) = @_;
    my $pid = open2(my $out, my $in, '/usr/bin/python3',
                    "$ROOT/t/fixtures/radius.py", @args);
    push @FIXTURES, [$pid, $in];
    my $ready = <$out> // '';
    return $ready eq "ready\n";
}

END {
    for my $f (@FIXTURES) {
        close $f->[1];
        waitpid($f->[0], 0);
    }
}

sub case_config {
    my (%radius) = @_;
    return (sso_domain_config(name => 'contoso', %radius) . <<'CONF',
esp_session_key $ESP_RUN/keys/session.key;
esp_shared_zone esp:4m;
CONF
            <<'CONF');
esp contoso;
esp_allowed_hosts mail.contoso.com;
location /owa/ {
    esp_client_auth form;
    esp_server_auth none;
    esp_mfa radius;
    proxy_pass https://exchange;
}
location /fine/ {
    esp off;
    return 200 "fine\n";
}
CONF
}

# nginx with one domain's radius_* settings
sub with_radius {
    my (%radius) = @_;
    my ($http, $server) = case_config(%radius);
    return nginx_start({ http_config => $http, config => $server });
}

# the password step: the code page (or what came instead)
sub password_step {
    my ($ua, $who) = @_;
    my ($login) = follow($ua, $ua->get(url('/owa/')));
    return submit_form($ua, $login, username => $USERS->{$who}{upn},
                       password => $USERS->{$who}{password});
}

sub code_step {
    my ($ua, $page, $code) = @_;
    return submit_form($ua, $page, code => $code);
}

sub logged_in {
    my ($ua, $res) = @_;
    return 0 unless $res->code == 302;
    # the request reached Exchange (which may answer it with a redirect)
    my $owa = $ua->get(url('/owa/'));
    return backend_entries_for($owa) ? 1 : 0;
}

sub has_code_form {
    my ($res) = @_;
    return $res->code == 200 && $res->decoded_content =~ /name="code"/;
}

sub flows {
    $USERS = ad_users();
    my $good = "secret_file=$RUN/radius/secret";

    ok(start_fixture('freeradius', "$RUN/radius/fr", '127.0.0.2', 1812,
                     $SECRET, $USERS->{carol}{upn}, $USERS->{phone}{upn}),
       'FreeRADIUS starts on 127.0.0.2:1812');
    ok(start_fixture('hostile', '127.0.0.4', $HOSTILE_BASE, $SECRET),
       'the hostile responder starts on 127.0.0.4');

    # -- code mode against FreeRADIUS

    ok(with_radius(radius_server => "127.0.0.2:1812 $good timeout=1s retries=1",
                   radius_nas_identifier => 'mail-gate'),
       'nginx starts with esp_mfa radius');

    {
        error_log_mark();
        my $ua = ua();
        my $page = password_step($ua, 'alice');
        ok(has_code_form($page), 'accept: the password leads to the code page');
        like($page->decoded_content, qr/Type the code from your token or authenticator app/,
             'accept: the code page asks for the token\'s code (RADIUS words, not TOTP\'s)');
        like($page->decoded_content, qr/or &quot;push&quot; if your service offers it|or "push" if your service offers it/,
             'accept: the hint mentions push');
        unlike($page->decoded_content, qr/6-digit code from your authenticator app/,
               'accept: not the TOTP hint');
        unlike($page->decoded_content, qr/Set-Cookie/i, 'accept: no session before the code');
        ok(!grep(/^esp_session/, keys %{ cookies($ua) }),
           'accept: no session cookie after the password alone');
        my $res = code_step($ua, $page, '123456');
        is($res->code, 302, 'accept: the right code ends in a redirect');
        ok(logged_in($ua, $res), 'accept: the session opens OWA');
        ok(error_log_wait('Access-Accept from 127.0.0.2:1812'), 'accept: logged');
    }

    {
        my $ua = ua();
        $ua->default_header('Accept-Language' => 'de-DE,de;q=0.9');
        my $page = password_step($ua, 'alice');
        like($page->decoded_content,
             qr/Geben Sie den Code von Ihrem Token oder aus Ihrer Authenticator-App ein/,
             'german: the code page in German');
        my $res = code_step($ua, $page, '111111');
        like($res->decoded_content, qr/Wrong code/,
             'german: the server\'s Reply-Message as it came');
    }

    {
        error_log_mark();
        my $ua = ua();
        my $page = password_step($ua, 'alice');
        my $res = code_step($ua, $page, '111111');
        ok(has_code_form($res), 'reject: a wrong code asks again');
        like($res->decoded_content, qr/Wrong code/, 'reject: the Reply-Message is shown');
        ok(!logged_in($ua, $res), 'reject: no session');
        ok(error_log_wait('Access-Reject from 127.0.0.2:1812'), 'reject: logged');
        $res = code_step($ua, $res, '123456');
        ok(logged_in($ua, $res), 'reject: the right code on the next try passes');
    }

    {
        error_log_mark();
        my $ua = ua();
        my $page = password_step($ua, 'alice');
        my $res = code_step($ua, $page, 'c1');
        ok(has_code_form($res), 'challenge: the code page asks for the next code');
        like($res->decoded_content, qr/Enter the code from your token/,
             'challenge: its Reply-Message is shown');
        ok(!logged_in($ua, $res), 'challenge: no session yet');
        my $res2 = code_step($ua, $res, '654321');
        ok(logged_in($ua, $res2), 'challenge: the next code with the State passes');

        # without the State (a new login), the same code is refused
        $ua = ua();
        $page = password_step($ua, 'alice');
        $res = code_step($ua, $page, '654321');
        ok(has_code_form($res) && !logged_in($ua, $res),
           'challenge: the second code alone, without its State, is refused');
    }

    {
        # FreeRADIUS without Message-Authenticator in its reply
        error_log_mark();
        my $ua = ua();
        my $page = password_step($ua, 'alice');
        my $t0 = time;
        my $res = code_step($ua, $page, '000000');
        my $took = time - $t0;
        is($res->code, 503, 'no Message-Authenticator: the Accept is dropped, 503');
        like($res->decoded_content, qr/cannot be checked right now/,
             'no Message-Authenticator: the unavailable page');
        ok(!logged_in($ua, $res), 'no Message-Authenticator: no session');
        ok(error_log_wait('no Message-Authenticator (required against BlastRADIUS)'),
           'no Message-Authenticator: the error log says why');
        ok(error_log_wait('sending again'), 'time-out: the packet was sent again');
        ok($took >= 1.8 && $took < 5, sprintf('time-out: two sends of 1 s (%.1f s)', $took));
    }

    # -- failover

    ok(with_radius(radius_server => ["127.0.0.3:1812 $good timeout=3s retries=2",
                                     "127.0.0.2:1812 $good"]),
       'nginx starts: a dead server first');
    {
        error_log_mark();
        my $ua = ua();
        my $page = password_step($ua, 'alice');
        my $t0 = time;
        my $res = code_step($ua, $page, '123456');
        ok(logged_in($ua, $res), 'failover: a dead first server, the second accepts');
        ok(time - $t0 < 2.5, 'failover: at once on ICMP port unreachable');
        ok(error_log_wait('127.0.0.3:1812 is unreachable'), 'failover: logged');
    }

    ok(with_radius(radius_server => ["127.0.0.4:$HOSTILE{'other-port'} $good timeout=1s retries=0",
                                     "127.0.0.2:1812 $good"]),
       'nginx starts: a silent first server');
    {
        error_log_mark();
        my $ua = ua();
        my $page = password_step($ua, 'alice');
        my $res = code_step($ua, $page, '123456');
        ok(logged_in($ua, $res),
           'failover: a first server whose reply comes from another port counts as silent, the second accepts');
        ok(error_log_wait("127.0.0.4:$HOSTILE{'other-port'} did not answer after 1 sends"),
           'failover: the silent server is logged');
    }

    # -- a wrong shared secret: FreeRADIUS drops the request

    ok(with_radius(radius_server => "127.0.0.2:1812 secret_file=$RUN/radius/wrong timeout=1s retries=0"),
       'nginx starts: a wrong shared secret');
    {
        error_log_mark();
        my $ua = ua();
        my $page = password_step($ua, 'alice');
        my $res = code_step($ua, $page, '123456');
        is($res->code, 503, 'wrong secret: FreeRADIUS drops the request, 503');
        ok(!logged_in($ua, $res), 'wrong secret: no session');
        ok(error_log_wait('no RADIUS server answered'), 'wrong secret: logged as unavailable');
        my $fr = EspTest::slurp("$RUN/radius/fr/log/radius.log");
        like($fr, qr/Message-Authenticator|shared secret/i,
             'wrong secret: FreeRADIUS says the Message-Authenticator did not verify');
    }

    # -- what FreeRADIUS will not send

    my %why = (
        'no-ma'             => 'no Message-Authenticator (required against BlastRADIUS)',
        'bad-response-auth' => 'wrong Response Authenticator',
        'bad-ma'            => 'wrong Message-Authenticator',
        'wrong-id'          => 'wrong identifier',
        'truncated'         => 'truncated packet',
        'overrun'           => 'attribute overruns the packet',
        'long-length'       => 'length field does not fit the datagram',
        'wrong-secret'      => 'wrong Response Authenticator',
        'garbage'           => 'dropped a reply of 3000 bytes',
    );
    for my $mode (sort keys %why) {
        ok(with_radius(radius_server => "127.0.0.4:$HOSTILE{$mode} $good timeout=1s retries=0"),
           "$mode: nginx starts");
        error_log_mark();
        my $ua = ua();
        my $page = password_step($ua, 'alice');
        my $res = code_step($ua, $page, '123456');
        is($res->code, 503, "$mode: never an accept, 503");
        ok(!logged_in($ua, $res), "$mode: no session");
        ok(error_log_wait($why{$mode}), "$mode: the error log says why");
        unlike(error_log_since_mark(), qr/signal|\[alert\]/, "$mode: no crash");
    }

    # the responder itself can accept: the checks above can fail
    ok(with_radius(radius_server => "127.0.0.4:$HOSTILE{good} $good timeout=1s retries=0"),
       'good: nginx starts');
    {
        my $ua = ua();
        my $page = password_step($ua, 'alice');
        my $res = code_step($ua, $page, '123456');
        ok(logged_in($ua, $res), 'good: a correct reply from the responder is accepted');
    }

    # -- push: the answer comes after the phone's approval

    ok(with_radius(radius_server => "127.0.0.2:1812 $good timeout=10s retries=0"),
       'nginx starts: a push server');
    {
        error_log_mark();
        my $ua = ua(timeout => 20);
        my $page = password_step($ua, 'alice');
        pipe(my $r, my $w) or die;
        my $pid = fork();
        if (!$pid) {
            close $r;
            my $t0 = time;
            my $res = code_step($ua, $page, 'push');
            printf $w "%d %.2f %d\n", $res->code, time - $t0,
                   logged_in($ua, $res);
            close $w;
            POSIX::_exit(0);
        }
        close $w;
        sleep 1;
        my $t0 = time;
        my $fine = ua()->get(url('/fine/'));
        my $other = time - $t0;
        is($fine->code, 200, 'push: other requests are served while a login waits');
        ok($other < 0.5, sprintf('push: at once (%.2f s): no worker waits', $other));
        my ($code, $took, $in) = split ' ', (<$r> // '');
        waitpid($pid, 0);
        is($code, 302, 'push: accepted after the approval');
        ok($took >= 2.5, "push: the login waited for the phone ($took s)");
        ok($in, 'push: the session opens OWA');
    }

    # a user who gives up while the phone rings: the query is cancelled
    {
        my $ua = ua(timeout => 1);
        my $page = password_step($ua, 'alice');
        error_log_mark();
        my $res = code_step($ua, $page, 'push');
        ok($res->code == 500 && ($res->header('Client-Warning') // '') =~ /Internal/,
           'push abandoned: the client gave up after 1 s');
        sleep 3.5;
        my $since = error_log_since_mark();
        unlike($since, qr/esp radius: Access-Accept/,
               'push abandoned: the late Accept is never read (the query was cancelled)');
        unlike($since, qr/\[alert\]|signal/, 'push abandoned: no crash');
        is(ua()->get(url('/fine/'))->code, 200, 'push abandoned: nginx still serves');
    }

    # -- directory mode: the AD password goes to the push server

    ok(with_radius(radius_server => "127.0.0.2:1812 $good timeout=10s retries=0",
                   radius_password => 'directory'),
       'nginx starts: radius_password directory');
    {
        error_log_mark();
        my $ua = ua(timeout => 20);
        my $t0 = time;
        my $res = password_step($ua, 'carol');
        ok($res->code == 302 && logged_in($ua, $res),
           'directory: the push server approved; no code page');
        ok(time - $t0 >= 2.5, 'directory: the login waited for the phone');

        # a server that answers the password with a challenge (an OTP)
        $ua = ua();
        $res = password_step($ua, 'phone');
        ok(has_code_form($res), 'directory: a challenge after the password: the code page');
        like($res->decoded_content, qr/Enter the code from the app/,
             'directory: the challenge\'s Reply-Message is shown');
        $res = code_step($ua, $res, '654321');
        ok(logged_in($ua, $res), 'directory: the code with the challenge\'s State passes');

        $ua = ua(timeout => 20);
        $res = password_step($ua, 'bob');
        isnt($res->code, 302, 'directory: a push server that refuses ends the login');
        ok(!logged_in($ua, $res), 'directory: no session');
    }

    # -- the MFA lockout: a reject counts, an unavailable server does not

    ok(with_radius(radius_server => "127.0.0.2:1812 $good timeout=1s retries=0",
                   max_failed_auths => 1, reset_fail_timeout => '10m',
                   unblock_timeout => '10m'),
       'nginx starts: max_failed_auths 1');
    {
        for my $try (1, 2) {
            my $ua = ua();
            my $page = password_step($ua, 'nested');
            my $res = code_step($ua, $page, '000000');
            is($res->code, 503, "lockout: unavailable server, try $try: 503");
        }
        my $ua = ua();
        my $page = password_step($ua, 'nested');
        my $res = code_step($ua, $page, '123456');
        ok(logged_in($ua, $res),
           'lockout: two unavailable answers did not count: the right code passes');

        $ua = ua();
        $page = password_step($ua, 'poller');
        $res = code_step($ua, $page, '111111');
        ok(has_code_form($res), 'lockout: a wrong code (Access-Reject)');
        $res = code_step($ua, $res, '123456');
        ok(!logged_in($ua, $res), 'lockout: the reject counted: blocked even with the right code');
        like($res->decoded_content, qr/Too many wrong codes/, 'lockout: the blocked page');
    }

    # nothing secret in the error log
    my $log = EspTest::slurp(nginx_prefix() . '/logs/error.log');
    unlike($log, qr/\Q$SECRET\E/, 'the shared secret is in no log line');
    unlike($log, qr/not-the-secret/, 'the wrong shared secret is in no log line');
    for my $who (qw(alice bob carol)) {
        unlike($log, qr/\Q$USERS->{$who}{password}\E/, "the password of $who is in no log line");
    }
}

__DATA__

=== TEST 1: radius_server needs a secret file
--- http_config
esp_sso_domain contoso {
    ldap_server ldaps://127.0.0.2:636;
    ldap_verify off;
    radius_server 127.0.0.2:1812;
}
--- config
--- must_die
--- error_log eval
qr/RADIUS server "127\.0\.0\.2:1812" needs "secret_file=FILE" in \S+nginx\.conf:\d+/



=== TEST 2: an unknown radius_server parameter is refused
--- http_config
esp_sso_domain contoso {
    ldap_server ldaps://127.0.0.2:636;
    ldap_verify off;
    radius_server 127.0.0.2 secret_file=$ESP_RUN/radius/secret secret=inline;
}
--- config
--- must_die
--- error_log eval
qr/invalid parameter "secret=inline"/



=== TEST 3: retries above 10, a zero or bad timeout, a parameter twice
--- http_config
esp_sso_domain a {
    ldap_server ldaps://127.0.0.2:636;
    ldap_verify off;
    radius_server 127.0.0.2 secret_file=$ESP_RUN/radius/secret retries=11;
}
--- config
--- must_die
--- error_log eval
qr/invalid parameter "retries=11"/



=== TEST 4: timeout=0 is refused
--- http_config
esp_sso_domain a {
    ldap_server ldaps://127.0.0.2:636;
    ldap_verify off;
    radius_server 127.0.0.2 secret_file=$ESP_RUN/radius/secret timeout=0;
}
--- config
--- must_die
--- error_log eval
qr/invalid parameter "timeout=0"/



=== TEST 5: timeout given twice is refused
--- http_config
esp_sso_domain a {
    ldap_server ldaps://127.0.0.2:636;
    ldap_verify off;
    radius_server 127.0.0.2 secret_file=$ESP_RUN/radius/secret timeout=1s timeout=2s;
}
--- config
--- must_die
--- error_log eval
qr/invalid parameter "timeout=2s"/



=== TEST 6: a secret file that does not exist
--- http_config
esp_sso_domain a {
    ldap_server ldaps://127.0.0.2:636;
    ldap_verify off;
    radius_server 127.0.0.2 secret_file=$ESP_RUN/radius/nope;
}
--- config
--- must_die
--- error_log eval
qr{open\(\) "\S+/radius/nope" failed}



=== TEST 7: a bad server address
--- http_config
esp_sso_domain a {
    ldap_server ldaps://127.0.0.2:636;
    ldap_verify off;
    radius_server 127.0.0.2:99999 secret_file=$ESP_RUN/radius/secret;
}
--- config
--- must_die
--- error_log eval
qr/invalid port in RADIUS server "127\.0\.0\.2:99999"/



=== TEST 8: radius_password takes code or directory only
--- http_config
esp_sso_domain a {
    ldap_server ldaps://127.0.0.2:636;
    ldap_verify off;
    radius_server 127.0.0.2 secret_file=$ESP_RUN/radius/secret;
    radius_password both;
}
--- config
--- must_die
--- error_log eval
qr/invalid value "both": expected "code" or "directory"/



=== TEST 9: radius_* settings without a radius_server
--- http_config
esp_sso_domain a {
    ldap_server ldaps://127.0.0.2:636;
    ldap_verify off;
    radius_nas_identifier gate;
}
--- config
--- must_die
--- error_log eval
qr/esp_sso_domain "a": radius_\* directives without "radius_server"/



=== TEST 10: radius_nas_identifier twice, a bad NAS-IP-Address
--- http_config
esp_sso_domain a {
    ldap_server ldaps://127.0.0.2:636;
    ldap_verify off;
    radius_server 127.0.0.2 secret_file=$ESP_RUN/radius/secret;
    radius_nas_ip_address 300.1.1.1;
}
--- config
--- must_die
--- error_log eval
qr/invalid IPv4 address "300\.1\.1\.1"/



=== TEST 11: radius_password twice
--- http_config
esp_sso_domain a {
    ldap_server ldaps://127.0.0.2:636;
    ldap_verify off;
    radius_server 127.0.0.2 secret_file=$ESP_RUN/radius/secret;
    radius_password code;
    radius_password directory;
}
--- config
--- must_die
--- error_log eval
qr/"radius_password" directive is duplicate/



=== TEST 12: a full RADIUS configuration is accepted, and its secret is not in the log
--- http_config
esp_sso_domain a {
    ldap_server ldaps://127.0.0.2:636;
    ldap_verify off;
    radius_server 127.0.0.2 secret_file=$ESP_RUN/radius/secret;
    radius_server 127.0.0.3:1645 secret_file=$ESP_RUN/radius/secret timeout=60s retries=0;
    radius_nas_identifier mail-gate;
    radius_nas_ip_address 192.0.2.1;
    radius_password directory;
}
--- config
location / { return 200 "up\n"; }
--- request
GET /
--- error_code: 200
--- no_error_log
gate-and-radius-share-this



=== TEST 13: esp_mfa radius in a domain without radius_server
--- http_config
esp_session_key $ESP_RUN/keys/session.key;
esp_shared_zone esp:1m;
esp_sso_domain a {
    ldap_server ldaps://127.0.0.2:636;
    ldap_verify off;
}
--- config
esp a;
esp_allowed_hosts mail.contoso.com;
location /owa/ {
    esp_client_auth form;
    esp_mfa radius;
    proxy_pass https://exchange;
}
--- must_die
--- error_log eval
qr/"esp_mfa radius" needs "radius_server" in esp_sso_domain "a"/
