# Several gateway nodes, one security state (esp_cluster, issue 12): two
# nginx nodes with the same key files and a real redis-server.
#   1. wrong passwords spread over both nodes: AD's badPwdCount stays at
#      max_failed_auths or below, and the block holds on both nodes;
#   2. the status endpoint's unblock on node A lifts it on node B;
#   3. logoff on node A: the old cookie is refused on node B within 1 s;
#   4. the status endpoint's revoke on node A applies on node B;
#   5. the status endpoint says the store is reachable, and counts.

use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;
use EspTest::Lockout;
use EspTest::Cluster;
use Test::More;

use HTTP::Request::Common qw(POST);
use JSON::PP;
use LWP::UserAgent;
use Time::HiRes qw(sleep time);

if ($ENV{ESP_NO_AD}) {
    plan skip_all => 'no AD fixture';
}

my $USERS = ad_users();
my $MAX = 3;
my ($RPORT) = EspTest::free_ports(1);

ok(redis_start('t034', $RPORT), 'redis-server starts') or BAIL_OUT('no redis-server');

my %CONF = (
    workers => 2,
    http_config => "esp_session_key $ENV{ESP_RUN}/keys/session.key;\n"
        . "esp_shared_zone esp034:1m;\n"
        . "esp_cluster redis://127.0.0.1:$RPORT prefix=t034 timeout=500ms;\n"
        . sso_domain_config(ldap_timeout => '5s', max_failed_auths => $MAX,
                            reset_fail_timeout => '10m', unblock_timeout => '10m'),
    config => <<'CONF',
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
);

ok(nginx_start(\%CONF), 'node A starts') or BAIL_OUT(nginx_error());
ok(node_b_start(\%CONF), 'node B starts') or BAIL_OUT('node B: ' . node_b_log());

my $plain = LWP::UserAgent->new(max_redirect => 0, timeout => 20, keep_alive => 0,
                                ssl_opts => { SSL_ca_file => $ENV{ESP_CA} });

sub on {
    my ($node, $path) = @_;
    return $node eq 'A' ? url($path) : node_b_url($path);
}

sub basic_on {
    my ($node, $user, $pw) = @_;
    return $plain->get(on($node, '/ews/x'), Authorization => basic_auth($user, $pw),
                       test_id_header() => EspTest::new_test_id());
}

sub status_on {
    my ($node) = @_;
    my $res = $plain->get(on($node, '/esp-status'), Accept => 'application/json');
    return eval { decode_json($res->decoded_content) } || {};
}

sub admin_on {
    my ($node, $content) = @_;
    return $plain->request(POST(on($node, '/esp-status'),
                                'Content-Type' => 'application/x-www-form-urlencoded',
                                Content => $content));
}

# ------------------------------------------------- 1. lockout across nodes

{
    my $u = $USERS->{cluster1};
    # a good login first: AD's count starts from zero
    is(basic_on('A', $u->{upn}, $u->{password})->code, 200, 'lockout: a good login on A');
    is(ad_bad_pwd_count('cluster1'), 0, 'lockout: AD counts no wrong password yet');

    my @codes;
    for my $i (1 .. 4 * $MAX) {
        push @codes, basic_on($i % 2 ? 'A' : 'B', $u->{upn}, "wrong-$i")->code;
    }
    is(scalar(grep { $_ != 401 } @codes), 0, 'lockout: every wrong password got 401')
        or diag("@codes");

    my $bad = ad_bad_pwd_count('cluster1');
    ok($bad =~ /^\d+$/ && $bad <= $MAX,
       "lockout: AD saw at most max_failed_auths ($MAX) wrong passwords from both nodes")
        or diag("badPwdCount: $bad");

    # blocked on both nodes, even with the right password
    is(basic_on('A', $u->{upn}, $u->{password})->code, 401, 'lockout: blocked on A');
    is(basic_on('B', $u->{upn}, $u->{password})->code, 401, 'lockout: blocked on B');
    like(node_b_log() . EspTest::slurp(nginx_prefix() . '/logs/error.log'),
         qr/result=blocked/, 'lockout: the refusals are logged as blocked');

    # ------------------------------------------- 2. unblock on A, on B too
    my $res = admin_on('A', 'action=unblock&domain=contoso&user=cluster1');
    is($res->code, 200, 'unblock on A: 200');
    sleep 0.5;
    is(basic_on('B', $u->{upn}, $u->{password})->code, 200,
       'unblock on A: the right password works on B');
    is(basic_on('A', $u->{upn}, $u->{password})->code, 200,
       'unblock on A: and on A');
}

# ------------- 2b. a reservation of a node that died lapses on its own

{
    my $u = $USERS->{cluster1};
    my @keys = grep { /^t034:l:[0-9a-f]{64}$/ } split /\n/, redis_cli($RPORT, '--scan', '--pattern', "'t034:l:*'");
    is(basic_on('B', $u->{upn}, 'wrong-again')->code, 401, 'lapse: a wrong password');
    @keys = grep { /^t034:l:[0-9a-f]{64}$/ } split /\n/, redis_cli($RPORT, '--scan', '--pattern', "'t034:l:*'");
    is(scalar @keys, 1, 'lapse: the user has one counter in the store, by its keyed hash');
    (my $hex = $keys[0] // '') =~ s/^t034:l://;

    # a good login resets it; then another node "dies" holding every slot
    is(basic_on('A', $u->{upn}, $u->{password})->code, 200, 'lapse: a good login resets the count');
    my $until = time + 3;
    redis_cli($RPORT, 'ZADD', "t034:r:$hex", map { (int($until), "dead-node-$_") } 1 .. $MAX);
    my $t0 = time;
    my $code = basic_on('B', $u->{upn}, $u->{password})->code;
    my $took = time - $t0;
    is($code, 200, 'lapse: the login gets a slot once the dead reservations lapse');
    ok($took >= 1.5 && $took < 8, sprintf('lapse: it waited for them (%.2f s)', $took));
}

# ---------------------------------------- 3. logoff on A, refused on B

sub form_login {
    my ($ua, $user) = @_;
    my ($form) = follow($ua, $ua->get(url('/owa/')));
    return submit_form($ua, $form, username => $user->{upn}, password => $user->{password});
}

sub b_get {
    my ($ua, $path) = @_;
    return $ua->get(node_b_url($path));
}

{
    my $alice = $USERS->{alice};
    my $ua = ua();
    form_login($ua, $alice);
    my $cookie = cookies($ua)->{esp_session};
    ok($cookie, 'logoff: logged in on A');
    my $bres = b_get($ua, '/plain/x');
    is($bres->code, 200, 'logoff: the session works on B')
        or diag(mask($bres->as_string));

    follow($ua, $ua->get(url('/owa/logoff.owa')));

    # the old cookie, replayed on B
    my $old = ua(cookie_jar => {});
    $old->cookie_jar(undef);
    my $t0 = time;
    my $code;
    while (1) {
        my $req = HTTP::Request->new(GET => node_b_url('/plain/x'));
        $req->header(Cookie => "esp_session=$cookie");
        $code = $old->request($req)->code;
        last if $code == 302 || time - $t0 > 3;
        sleep 0.05;
    }
    is($code, 302, 'logoff on A: the old cookie is refused on B');
    ok(time - $t0 < 1.0, sprintf('logoff on A: refused on B within 1 s (%.2f s)', time - $t0));

    # ------------------------------------------- 4. admin revoke on A
    my $ua2 = ua();
    form_login($ua2, $alice);
    ok(cookies($ua2)->{esp_session}, 'revoke: logged in again on A');
    sleep 1.1;      # sessions issued in the second of a revocation are revoked
    is(b_get($ua2, '/plain/x')->code, 200, 'revoke: the new session works on B');
    my $res = admin_on('A', 'action=revoke&domain=contoso&user=' . $alice->{upn});
    is($res->code, 200, 'revoke on A: 200');
    $t0 = time;
    while (b_get($ua2, '/plain/x')->code != 302 && time - $t0 < 3) {
        sleep 0.05;
    }
    is(b_get($ua2, '/plain/x')->code, 302, 'revoke on A: the session is refused on B');
    ok(time - $t0 < 1.0, sprintf('revoke on A: within 1 s (%.2f s)', time - $t0));
}

# ------------------------------ 4b. a reload keeps the zone and the cluster

{
    my $alice = $USERS->{alice};
    my $ua = ua();
    form_login($ua, $alice);
    my $cookie = cookies($ua)->{esp_session};
    follow($ua, $ua->get(url('/owa/logoff.owa')));
    ok(nginx_reload(\%CONF), 'reload: node A reloads (same config)');
    my $r = ua(cookie_jar => {});
    $r->cookie_jar(undef);
    my $req = HTTP::Request->new(GET => url('/plain/x'));
    $req->header(Cookie => "esp_session=$cookie");
    is($r->request($req)->code, 302, 'reload: the logged-off cookie is still refused on A');

    # after the reload A's new subscriber hears B
    my $ua2 = ua();
    my ($form) = follow($ua2, $ua2->get(node_b_url('/owa/')));
    submit_form($ua2, $form, username => $alice->{upn}, password => $alice->{password});
    my $c2 = cookies($ua2)->{esp_session};
    ok($c2, 'reload: logged in on B');
    $ua2->get(node_b_url('/owa/logoff.owa'));
    my $t0 = time;
    my $code;
    do {
        my $q = HTTP::Request->new(GET => url('/plain/x'));
        $q->header(Cookie => "esp_session=$c2");
        $code = $r->request($q)->code;
    } while ($code != 302 && time - $t0 < 3 && sleep 0.05);
    is($code, 302, 'reload: logoff on B refused on the reloaded A');
    ok(time - $t0 < 1.5, sprintf('reload: within about a second (%.2f s)', time - $t0));
    unlike(EspTest::slurp(nginx_prefix() . '/logs/error.log'), qr/\[(alert|crit|emerg)\]|exited on signal/,
           'reload: no alert, no crash on A');
}

# ------------------------------------------------------ 5. status

{
    my $doc = status_on('B');
    is(ref $doc->{cluster}, 'HASH', 'status: JSON has "cluster"');
    ok($doc->{cluster}{reachable}, 'status: the store is reachable');
    ok($doc->{cluster}{events} > 0, 'status: node B applied events of node A');
    ok($doc->{cluster}{resyncs} >= 1, 'status: node B read the state after connecting');
    my $prom = $plain->get(on('A', '/esp-status?format=prometheus'))->decoded_content;
    like($prom, qr/^esp_cluster_up 1$/m, 'status: Prometheus esp_cluster_up 1');
    like($prom, qr/^esp_cluster_reservations_total\{result="granted"\} [1-9]/m,
         'status: Prometheus counts granted reservations');
}

# nothing in Redis names a user
{
    my $keys = redis_cli($RPORT, '--scan');
    unlike($keys, qr/alice|cluster1/i, 'redis: no user name in any key');
    my $dump = join "\n", map { redis_cli($RPORT, 'ZRANGE', $_, 0, -1) } qw(t034:revoked t034:blocks);
    unlike($dump, qr/alice|cluster1/i, 'redis: no user name in the sets');
}

unlike(node_b_log(), qr/\[(alert|crit|emerg)\]|exited on signal/, 'node B: no alert, no crash');

done_testing();
