# The cluster store failing (esp_cluster, issue 12): nothing waits for it
# beyond a short time-out, nothing crashes, and what it missed comes back.
#   1. a node that starts after a logoff reads it from the store;
#   2. Redis stopped: logins keep working with the zone's own count, the
#      error log and the status endpoint say so, a metric counts it;
#   3. Redis back: the nodes resubscribe, changes travel again, and a
#      logoff made during the outage reaches the other node;
#   4. a hostile stand-in (hangs, garbage, wrong types, closes): time-outs,
#      clear log lines, logins go on;
#   5. failover to the next server; TLS with the CA and a password, an ACL
#      user; a wrong password and a certificate that does not verify.

use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;
use EspTest::Cluster;
use Test::More;

use HTTP::Request::Common qw(POST);
use JSON::PP;
use LWP::UserAgent;
use POSIX ();
use Time::HiRes qw(sleep time);

if ($ENV{ESP_NO_AD}) {
    plan skip_all => 'no AD fixture';
}

my $USERS = ad_users();
my $MAX = 3;
my ($RPORT, $TPORT, $FPORT, $DEAD) = EspTest::free_ports(4);
my $ROOT = $ENV{ESP_ROOT} || '.';
my $PKI = "$ENV{ESP_RUN}/pki";
my @fakes;

END {
    local $?;
    kill 'TERM', $_ for @fakes;
    waitpid($_, 0) for @fakes;
}

ok(redis_start('t035', $RPORT), 'redis-server starts') or BAIL_OUT('no redis-server');

my $LOCATIONS = <<'CONF';
    esp contoso;
    esp_allowed_hosts mail.contoso.com;
    location /ews/ {
        esp_client_auth basic;
        esp_server_auth basic;
        esp_basic_cache 0;
        proxy_pass https://exchange;
    }
    location /owa/ {
        esp_client_auth form;
        esp_server_auth none;
        esp_logoff /owa/logoff.owa;
        proxy_pass https://exchange;
    }
    location /plain/ {
        esp_client_auth form;
        proxy_pass https://exchange;
    }
    location = /esp-status { esp_status; allow 127.0.0.1; deny all; }
CONF

sub conf {
    my ($cluster) = @_;
    return {
        workers => 2,
        http_config => "esp_session_key $ENV{ESP_RUN}/keys/session.key;\n"
            . "esp_shared_zone esp035:1m;\n"
            . "esp_cluster $cluster;\n"
            . sso_domain_config(ldap_timeout => '5s', max_failed_auths => $MAX,
                                reset_fail_timeout => '10m', unblock_timeout => '10m'),
        config => $LOCATIONS,
    };
}

my $plain = LWP::UserAgent->new(max_redirect => 0, timeout => 20, keep_alive => 0,
                                ssl_opts => { SSL_ca_file => $ENV{ESP_CA} });

sub on { return $_[0] eq 'A' ? url($_[1]) : node_b_url($_[1]) }

sub basic_on {
    my ($node, $user, $pw) = @_;
    return $plain->get(on($node, '/ews/x'), Authorization => basic_auth($user, $pw));
}

sub status_on {
    my ($node) = @_;
    my $res = $plain->get(on($node, '/esp-status'), Accept => 'application/json');
    return eval { decode_json($res->decoded_content) } || {};
}

sub prom_on { return $plain->get(on($_[0], '/esp-status?format=prometheus'))->decoded_content }

sub granted {
    my ($node) = @_;
    my ($n) = prom_on($node) =~ /^esp_cluster_reservations_total\{result="granted"\} (\d+)$/m;
    return $n // 0;
}

sub form_login {
    my ($ua, $user) = @_;
    my ($form) = follow($ua, $ua->get(url('/owa/')));
    return submit_form($ua, $form, username => $user->{upn}, password => $user->{password});
}

sub replay_on_b {
    my ($cookie) = @_;
    my $ua = ua(cookie_jar => {});
    $ua->cookie_jar(undef);
    my $req = HTTP::Request->new(GET => node_b_url('/plain/x'));
    $req->header(Cookie => "esp_session=$cookie");
    return $ua->request($req)->code;
}

# waits up to $secs for $cond, returns the seconds it took or undef
sub within {
    my ($secs, $cond) = @_;
    my $t0 = time;
    while (time - $t0 < $secs) {
        return time - $t0 if $cond->();
        sleep 0.05;
    }
    return undef;
}

sub log_a { return EspTest::slurp(nginx_prefix() . '/logs/error.log') }

sub no_crash {
    my ($what, $log) = @_;
    unlike($log, qr/\[(alert|crit|emerg)\]|exited on signal/, "$what: no alert, no crash");
}

my $REAL = "redis://127.0.0.1:$RPORT prefix=t035 timeout=500ms connect_timeout=500ms";
my $alice = $USERS->{alice};
my $carol = $USERS->{carol};

ok(nginx_start(conf($REAL)), 'node A starts') or BAIL_OUT(nginx_error());
ok(node_b_start(conf($REAL)), 'node B starts') or BAIL_OUT('node B: ' . node_b_log());

# ------------------------------------ 1. a node started later catches up

{
    my $ua = ua();
    form_login($ua, $alice);
    my $cookie = cookies($ua)->{esp_session};
    is(replay_on_b($cookie), 200, 'catch-up: the session works on B');
    follow($ua, $ua->get(url('/owa/logoff.owa')));
    ok(defined within(1, sub { replay_on_b($cookie) == 302 }), 'catch-up: logoff on A reached B');

    ok(node_b_start(conf($REAL)), 'catch-up: node B restarted (an empty zone)');
    ok(defined within(2, sub { replay_on_b($cookie) == 302 }),
       'catch-up: the restarted node refuses the logged-off cookie (read from the store)');
}

# ----------------------------------------------------- 2. Redis stopped

my ($ua_out, $cookie_out);
{
    redis_stop('t035');
    my $t0 = time;
    my $res = basic_on('A', $alice->{upn}, $alice->{password});
    is($res->code, 200, 'outage: a good Basic login on A works');
    ok(time - $t0 < 3, sprintf('outage: and does not wait long (%.2f s)', time - $t0));
    is(basic_on('B', $alice->{upn}, $alice->{password})->code, 200,
       'outage: and on B');

    # the zone's own count still blocks
    basic_on('A', $carol->{upn}, "wrong-$_") for 1 .. $MAX;
    is(basic_on('A', $carol->{upn}, $carol->{password})->code, 401,
       'outage: the local count blocks after max_failed_auths on A');

    # a form login and a logoff: local, refused on A
    $ua_out = ua();
    form_login($ua_out, $alice);
    $cookie_out = cookies($ua_out)->{esp_session};
    ok($cookie_out, 'outage: a form login on A works');
    follow($ua_out, $ua_out->get(url('/owa/logoff.owa')));
    my $r = ua(cookie_jar => {});
    $r->cookie_jar(undef);
    my $req = HTTP::Request->new(GET => url('/plain/x'));
    $req->header(Cookie => "esp_session=$cookie_out");
    is($r->request($req)->code, 302, 'outage: logoff still applies on A');
    is(replay_on_b($cookie_out), 200, 'outage: B cannot know of it yet');
    like(log_a(), qr/the revocation applies to this node now, to the others when the store answers again/,
         'outage: the error log says the logoff waits for the store');

    sleep 1.5;      # the subscriber's heartbeat notices too
    my $doc = status_on('A');
    ok($doc->{cluster} && !$doc->{cluster}{reachable}, 'outage: status says unreachable');
    ok(($doc->{cluster}{failures} // 0) > 0, 'outage: failures are counted');
    ok(($doc->{cluster}{local_only} // 0) > 0, 'outage: logins counted locally are counted');
    like(prom_on('A'), qr/^esp_cluster_up 0$/m, 'outage: Prometheus esp_cluster_up 0');
    like(prom_on('A'), qr/^esp_cluster_outages_total [1-9]/m, 'outage: an outage is counted');
    like(log_a(), qr/the cluster store is unreachable/, 'outage: the error log says so');
    no_crash('outage, A', log_a());
    no_crash('outage, B', node_b_log());
}

# ----------------------------------------------------- 3. Redis back

{
    ok(redis_start('t035', $RPORT), 'back: redis-server restarted');
    ok(defined within(5, sub { status_on('B')->{cluster}{reachable} }),
       'back: node B says reachable again');
    ok(defined within(5, sub { status_on('A')->{cluster}{reachable} }),
       'back: node A too');
    sleep 1.2;      # both subscribers are back (a PING a second)

    # the logoff made on A during the outage reaches B now
    ok(defined within(4, sub { replay_on_b($cookie_out) == 302 }),
       'back: a logoff made during the outage is refused on B once the store answers');
    like(log_a(), qr/revocations made while the cluster store was unreachable were sent/,
         'back: the error log says the kept revocations were sent');

    my $ua = ua();
    form_login($ua, $alice);
    my $cookie = cookies($ua)->{esp_session};
    is(replay_on_b($cookie), 200, 'back: a new session works on B');
    follow($ua, $ua->get(url('/owa/logoff.owa')));
    my $took = within(2, sub { replay_on_b($cookie) == 302 });
    ok(defined $took && $took < 1, 'back: logoff on A refused on B within 1 s again');

    my $before = granted('A');
    is(basic_on('A', $alice->{upn}, $alice->{password})->code, 200, 'back: a Basic login');
    ok(granted('A') > $before, 'back: its reservation was taken in the store');

    like(log_a(), qr/the cluster store is reachable again/, 'back: the error log says so');
    no_crash('back, A', log_a());
}

node_b_stop();

# --------------------------------------------- 4. a hostile stand-in

sub fake {
    my ($mode) = @_;
    kill 'TERM', $_ for @fakes;
    waitpid($_, 0) for @fakes;
    @fakes = ();
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        exec('python3', "$ROOT/t/fixtures/fake-redis.py", $FPORT, $mode) or POSIX::_exit(127);
    }
    push @fakes, $pid;
    within(5, sub { IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $FPORT) });
}

for my $case (['hang', qr/timed out waiting for a reply/],
              ['garbage', qr/sent a malformed reply/],
              ['wrong', qr/answered a reservation with something else/],
              ['close', qr/cluster store failed: the connection was closed/],
              ['huge', qr/timed out waiting for a reply|a reply too large/]) {
    my ($mode, $line) = @$case;
    fake($mode);
    ok(nginx_start(conf("redis://127.0.0.1:$FPORT timeout=300ms connect_timeout=300ms")),
       "$mode: nginx starts");
    my $t0 = time;
    my $res = basic_on('A', $alice->{upn}, $alice->{password});
    my $took = time - $t0;
    is($res->code, 200, "$mode: a good login works");
    ok($took < 3, sprintf("$mode: without a long wait (%.2f s)", $took));
    is(basic_on('A', $alice->{upn}, 'wrong-' . $mode)->code, 401, "$mode: a wrong password is refused");
    ok(error_log_wait($line, 3), "$mode: the error log says what went wrong");
    sleep 1.2;      # the subscriber meets the stand-in too
    no_crash($mode, error_log_since_mark());
}

# ------------------------------------------ 5. failover, TLS, passwords

{
    ok(nginx_start(conf("redis://127.0.0.1:$DEAD redis://127.0.0.1:$RPORT prefix=t035")),
       'failover: nginx starts');
    my $before = granted('A');
    is(basic_on('A', $alice->{upn}, $alice->{password})->code, 200, 'failover: a login');
    ok(granted('A') > $before, 'failover: the second server granted its reservation at once');
    like(log_a(), qr/cluster store failed: connect\(\) failed.*cluster store: redis:\/\/127\.0\.0\.1:$DEAD/,
         'failover: the first server\'s failure is logged with its name');
}

my $PWFILE = "$ENV{ESP_RUN}/redis/t035-password";
my $BADPW = "$ENV{ESP_RUN}/redis/t035-bad-password";
EspTest::spurt($PWFILE, "s3cret-esp\n");
EspTest::spurt($BADPW, "not-it\n");
chmod 0600, $PWFILE, $BADPW;

ok(redis_start('t035tls', $TPORT, '--port', 0, '--tls-port', $TPORT,
               '--tls-cert-file', "$PKI/exchange.pem", '--tls-key-file', "$PKI/exchange.key",
               '--tls-ca-cert-file', "$PKI/ca.pem", '--tls-auth-clients', 'no',
               '--requirepass', 'default-pw-unused',
               '--user', 'esp', 'on', '>s3cret-esp', '~*', '&*', '+@all'),
   'tls: redis-server with TLS, a password and an ACL user starts');

{
    my $tls = "rediss://127.0.0.1:$TPORT ca_certificate=$ENV{ESP_CA} user=esp "
            . "password_file=$PWFILE prefix=t035tls";
    ok(nginx_start(conf($tls)), 'tls: nginx starts');
    my $before = granted('A');
    is(basic_on('A', $alice->{upn}, $alice->{password})->code, 200, 'tls: a login');
    ok(granted('A') > $before, 'tls: the reservation was granted over TLS with the ACL user');
    ok(defined within(3, sub { status_on('A')->{cluster}{resyncs} }), 'tls: the subscriber read the state');
    unlike(log_a(), qr/s3cret-esp/, 'tls: the password is in no log line');

    # a wrong password: refused, said, logins go on
    ok(nginx_start(conf("rediss://127.0.0.1:$TPORT ca_certificate=$ENV{ESP_CA} user=esp "
                        . "password_file=$BADPW prefix=t035tls")), 'tls, wrong password: nginx starts');
    is(basic_on('A', $alice->{upn}, $alice->{password})->code, 200, 'tls, wrong password: a login works');
    ok(error_log_wait(qr/the cluster store refused the login: WRONGPASS/, 3),
       'tls, wrong password: the error log says the store refused it');
    unlike(error_log_since_mark(), qr/not-it/, 'tls, wrong password: the password is in no log line');

    # a certificate for another address
    ok(nginx_start(conf("rediss://localhost:$TPORT ca_certificate=$PKI/other-ca.pem "
                        . "password_file=$PWFILE user=esp")), 'tls, other CA: nginx starts');
    is(basic_on('A', $alice->{upn}, $alice->{password})->code, 200, 'tls, other CA: a login works');
    ok(error_log_wait(qr/cluster store rediss:\/\/localhost:\d+ certificate does not verify/, 3),
       'tls, other CA: the certificate is refused');
    no_crash('tls', log_a());
}

# ---------------------------------------------------------- config errors

{
    for my $bad (["redis://", qr/esp_cluster: .*redis:\/\//],
                 ["http://127.0.0.1:6379", qr/esp_cluster: invalid parameter "http:/],
                 ["redis://127.0.0.1 colour=red", qr/invalid parameter "colour=red"/],
                 ["redis://127.0.0.1 user=esp", qr/"user=" needs "password_file="/],
                 ["redis://127.0.0.1 timeout=0", qr/invalid parameter "timeout=0"/],
                 ["redis://127.0.0.1 connections=0", qr/invalid parameter "connections=0"/],
                 ["user=esp", qr/esp_cluster needs at least one/],
                 ["redis://127.0.0.1 password_file=/nonexistent", qr/nonexistent/],
                 ["redis://127.0.0.1/3", qr/esp_cluster: .*"redis:\/\/127\.0\.0\.1\/3"/]) {
        my ($args, $re) = @$bad;
        ok(!nginx_start(conf($args), quiet => 1), "config: esp_cluster $args is refused");
        like(nginx_error(), $re, "config: esp_cluster $args: the error says why");
    }
}

done_testing();
