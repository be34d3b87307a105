# The state file (esp_shared_zone ... state=PATH, issue 11): revoked
# sessions and lockouts survive "nginx -s stop" and a new start, and a
# crash (the periodic save); the file is sealed, names nobody, is written
# atomically; a missing, corrupt, truncated or foreign file, or a FIFO in
# its place, is logged and ignored, never fatal; bad configurations fail.

use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;
use Test::More;

use File::Path qw(make_path remove_tree);
use POSIX ();
use Time::HiRes qw(sleep time);

run_blocks();

if ($ENV{ESP_NO_AD}) {
    done_testing();
    exit 0;
}

my $USERS = ad_users();
my $ALICE = $USERS->{alice};
my $DIR = "$ENV{ESP_RUN}/state033";
my $STATE = "$DIR/esp.state";

remove_tree($DIR);
make_path($DIR);
# the workers (nobody) save periodically, the master (root) at the end
my (undef, undef, $uid, $gid) = getpwnam('nobody');
chown $uid, $gid, $DIR;
chmod 0700, $DIR;

sub conf {
    my (%o) = @_;
    my $key = $o{key} // 'session';
    return {
        http_config => "esp_session_key $ENV{ESP_RUN}/keys/$key.key;\n"
            . "esp_shared_zone esp033:1m state=$STATE state_interval=1s;\n"
            . sso_domain_config(ldap_timeout => '2s', max_failed_auths => 3,
                                reset_fail_timeout => '10m', unblock_timeout => '10m'),
        config => <<'CONF',
    esp contoso;
    esp_allowed_hosts mail.contoso.com;
    location /mail/ {
        esp_client_auth form;
        esp_server_auth none;
        esp_logoff /mail/logoff;
        proxy_pass https://exchange;
    }
    location /ews/ {
        esp_client_auth basic;
        esp_server_auth basic;
        esp_basic_cache 0;
        proxy_pass https://exchange;
    }
CONF
        workers => 2,
        restart => 1,
    };
}

sub login {
    my $ua = ua();
    my ($form) = follow($ua, $ua->get(url('/mail/')));
    submit_form($ua, $form, username => $ALICE->{upn}, password => $ALICE->{password});
    return cookies($ua)->{esp_session};
}

# what a cookie opens now: 200, or 302 to the login form
sub opens {
    my ($cookie) = @_;
    my $ua = ua(cookie_jar => undef);
    return $ua->get(url('/mail/inbox'), Cookie => "esp_session=$cookie")->code;
}

sub logoff {
    my ($cookie) = @_;
    return ua(cookie_jar => undef)->get(url('/mail/logoff'), Cookie => "esp_session=$cookie")->code;
}

sub ghost_result {
    my ($n) = @_;
    error_log_mark();
    ua()->get(url('/ews/x'), Authorization => basic_auth('ghost-033@contoso.local', "Wrong-$n"));
    error_log_wait(qr/esp: login user=/, 5);
    my ($dc, $r) = error_log_since_mark() =~ /esp: login user=.* dc=(\S+) result=(\w+)/;
    return ($r // 'no-line') . ' ' . ($dc // '');
}

sub stop_with_signal {
    my $master = EspTest::read_pid();
    my ($rc, $out) = EspTest::run_nginx('-s', 'stop');
    is($rc, 0, 'nginx -s stop') or diag($out);
    ok(EspTest::poll(10, sub { !EspTest::alive($master) }), 'the master is gone');
    nginx_stop();
}

sub slurp_raw {
    my ($f) = @_;
    open my $fh, '<:raw', $f or return undef;
    local $/;
    return <$fh>;
}

# ------------------------------------------------- no file yet

my $LOG_START = EspTest::file_size(nginx_prefix() . '/logs/error.log');
ok(nginx_start(conf()), 'nginx starts with a state file configured') or BAIL_OUT(nginx_error());
like(error_log_since_mark(), qr/esp_shared_zone "esp033": no state file "\Q$STATE\E" yet: starting empty/,
     'no file yet: said so, not an error');

my $revoked = login();
ok($revoked, 'alice logs in');
is(opens($revoked), 200, 'her cookie opens /mail/');
ok(logoff($revoked) =~ /^(200|302)$/, 'she logs off');
is(opens($revoked), 302, 'the logged-off cookie is refused');

my @r = map { ghost_result($_) } 1 .. 4;
is("@r[0 .. 2]", 'bad_credentials ldaps://127.0.0.2:636 ' x 2 . 'bad_credentials ldaps://127.0.0.2:636',
   'three wrong passwords for ghost-033 reach a DC');
is($r[3], 'blocked none', 'the fourth is blocked');

ok(EspTest::poll(5, sub { -s $STATE }), 'a worker saved the state within state_interval');
my $file = slurp_raw($STATE) // '';
is(substr($file, 0, 8), 'ESPSEAL1', 'the file is sealed');
is((stat $STATE)[2] & 07777, 0600, 'mode 0600');
ok($file !~ /alice|ghost|contoso|\Q$ALICE->{password}\E/i, 'no user, domain or password in it');
ok(!glob("$STATE.*.tmp"), 'no temporary file left behind');

# ------------------------------------------------- nginx -s stop, start

error_log_mark();
stop_with_signal();
like(error_log_since_mark(), qr/esp_shared_zone "esp033": state saved to "\Q$STATE\E": [1-9]\d* entries/,
     'stop: the master saved the state');

ok(nginx_start(conf()), 'a new start');
like(error_log_since_mark(), qr/state read from "\Q$STATE\E": [1-9]\d* entries, 0 expired/,
     'start: the state was read');
is(opens($revoked), 302, 'after the restart, the logged-off cookie is still refused');
is(ghost_result(5), 'blocked none', 'after the restart, ghost-033 is still blocked');
my $live = login();
is(opens($live), 200, 'a new login works');

# ------------------------------------------------- a reload, then a crash

ok(nginx_reload(), 'reload');
error_log_mark();
ok(logoff($live) =~ /^(200|302)$/, 'alice logs off the new session after the reload');
ok(error_log_wait(qr/state saved to "\Q$STATE\E"/, 5), 'the new workers save the state');

my $master = EspTest::read_pid();
kill 'KILL', $master, EspTest::child_pids($master);
ok(EspTest::poll(5, sub { !EspTest::alive($master) }), 'crash: nginx killed (no exit hook runs)');
nginx_stop();
ok(nginx_start(conf()), 'crash: a new start');
is(opens($live), 302, 'crash: the session logged off before it is still refused (periodic save)');
is(opens($revoked), 302, 'crash: and so is the first one');

# ------------------------------------------------- bad files are ignored

my $good = slurp_raw($STATE);
my %bad = (
    'garbage'       => [ "not a state file at all\n" x 10, qr/ignored: corrupt: (?:not a state file|bad size)/ ],
    'truncated'     => [ substr($good, 0, length($good) - 40), qr/ignored: corrupt: (?:bad size|it does not authenticate)/ ],
    'one bit off'   => [ do { my $f = $good; substr($f, 40, 1) = chr(ord(substr($f, 40, 1)) ^ 1); $f },
                         qr/ignored: corrupt: it does not authenticate/ ],
    'empty'         => [ '', qr/ignored: corrupt: bad size/ ],
);
for my $what (sort keys %bad) {
    nginx_stop();
    open my $fh, '>:raw', $STATE or die "$STATE: $!";
    print $fh $bad{$what}[0];
    close $fh;
    ok(nginx_start(conf()), "$what file: nginx starts anyway");
    like(error_log_since_mark(), $bad{$what}[1], "$what file: logged and ignored");
    is(opens($live), 200, "$what file: the zone started empty (what it held is forgotten)");
}

# a key that is not listed any more
nginx_stop();
open my $fh, '>:raw', $STATE or die;
print $fh $good;
close $fh;
ok(nginx_start(conf(key => 'foreign')), 'another session key: nginx starts');
like(error_log_since_mark(), qr/ignored: sealed with a key that esp_session_key does not list/,
     'another session key: the file is ignored');

# the old key listed second still opens it (key rotation)
nginx_stop();
open $fh, '>:raw', $STATE or die;
print $fh $good;
close $fh;
{
    my $c = conf();
    $c->{http_config} =~ s{esp_session_key (\S+);}{esp_session_key $ENV{ESP_RUN}/keys/session-old.key $1;};
    ok(nginx_start($c), 'rotated keys: nginx starts');
    like(error_log_since_mark(), qr/state read from/, 'rotated keys: the file sealed with the older key is read');
}

# missing, and a FIFO where the file should be
nginx_stop();
unlink $STATE;
ok(nginx_start(conf()), 'missing file: nginx starts');
like(error_log_since_mark(), qr/no state file "\Q$STATE\E" yet/, 'missing file: said so');
nginx_stop();
unlink $STATE;
POSIX::mkfifo($STATE, 0600) or die "mkfifo: $!";
my $t0 = time;
ok(nginx_start(conf()), 'a FIFO in its place: nginx starts, does not hang');
cmp_ok(time - $t0, '<', 8, 'a FIFO: quickly');
like(error_log_since_mark(), qr/state file "\Q$STATE\E" ignored: not a regular file/, 'a FIFO: logged and ignored');
stop_with_signal();
ok(-f $STATE && !-p $STATE, 'a FIFO: replaced by the saved file at stop');

ok(!grep(/\[(alert|crit|emerg)\](?!.*exited on signal 9)/, error_log_since_mark($LOG_START)),
   'no alert in the whole log (but the kill on purpose)');

done_testing();

__DATA__

=== TEST 1: state= needs esp_session_key (a random key could not open it after a restart)
--- http_config
esp_sso_domain contoso {
    ldap_server ldaps://$AD_DC1:636;
    ldap_ca_certificate $ESP_CA;
}
esp_shared_zone esp:1m state=$ESP_RUN/state033-none.state;
--- config
esp contoso;
esp_allowed_hosts mail.contoso.com;
location / { proxy_pass https://exchange; }
--- must_die
--- error_log
esp_shared_zone "esp" with "state=" needs "esp_session_key"



=== TEST 2: an unknown parameter of esp_shared_zone
--- http_config
esp_shared_zone esp:1m stat=/tmp/x;
--- must_die
--- error_log
invalid parameter "stat=/tmp/x" in "esp_shared_zone"



=== TEST 3: state_interval below a second
--- http_config
esp_shared_zone esp:1m state=/tmp/x state_interval=10ms;
--- must_die
--- error_log
invalid "state_interval=10ms" in "esp_shared_zone": at least 1s



=== TEST 4: state_interval without state
--- http_config
esp_shared_zone esp:1m state_interval=5s;
--- must_die
--- error_log
"state_interval=" in "esp_shared_zone" needs "state="



=== TEST 5: an empty state path
--- http_config
esp_shared_zone esp:1m state=;
--- must_die
--- error_log
invalid parameter "state=" in "esp_shared_zone"



=== TEST 6: state twice
--- http_config
esp_shared_zone esp:1m state=/tmp/a state=/tmp/b;
--- must_die
--- error_log
invalid parameter "state=/tmp/b" in "esp_shared_zone"
