# Faults under load (issue "Prove it"): wrk drives session-cookie, cached
# Basic and uncached Basic (one LDAPS bind per request) traffic through
# the gate while a domain controller is stopped, then paused, then both
# are stopped, while a stand-in Exchange is killed, while nginx reloads
# five times, and while the shared zone (32k) overflows with lockout
# counters of user names that do not exist.
#
# Expected, and asserted: no 5xx and no lost session or credentials for
# valid traffic (503 only for uncached logins while no DC answers), no
# request without an answer (wrk timeouts), no worker crash or alert, and
# a logged-off session stays revoked after the zone overflowed.  The
# figures (requests/s, p50/p99/max latency, statuses) are printed as diag.
#
# Own stand-in Exchange instances (plain HTTP, free ports), never the
# shared ones.  Each phase lasts a few seconds (ESP_FAULTS_SCALE=3 makes
# them three times longer: "make faults"); the file runs about 40 s.
# It stops and pauses the run's domain controllers (and brings them back,
# also on failure): do not run it next to other files (prove -j).

use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;
use File::Path qw(make_path remove_tree);
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

my $WRK = '/usr/bin/wrk';
my $ROOT = $ENV{ESP_ROOT} || '.';
my $RUN = $ENV{ESP_RUN} || '/tmp/esp-run';
my $AD_SH = $ENV{ESP_AD_SH} || "$ROOT/t/fixtures/ad.sh";
my $EXCHANGE_PY = $ENV{ESP_EXCHANGE_PY} || "$ROOT/t/fixtures/exchange.py";
my $NGINX = $ENV{ESP_NGINX} || '/usr/sbin/nginx';
my $SCALE = $ENV{ESP_FAULTS_SCALE} || 1;
my $MAIN_PID = $$;

if (!ad_present() || !$ENV{ESP_MODULE} || !-f $EXCHANGE_PY) {
    Test::More::plan(skip_all => 'needs the AD fixture, exchange.py and the module');
}
if (!-x $WRK) {
    Test::More::plan(skip_all => 'needs wrk (apt-get install wrk)');
}

my $DIR = "$RUN/faults-081";
remove_tree($DIR);
make_path($DIR);

my $USERS = ad_users();
my $ALICE = $USERS->{alice}{upn};
my $ALICE_PW = $USERS->{alice}{password};
my $CAROL = $USERS->{carol}{upn};
my $CAROL_PW = $USERS->{carol}{password};
my $T0 = time;

# ------------------------------------------------- private stand-ins

my @EX_PORTS = EspTest::free_ports(2);
my %EX;             # name -> { port, pid }
my $SECRET = join '', map { sprintf '%02x', int rand 256 } 1 .. 16;

sub ex_start {
    my ($name) = @_;
    my $port = $EX{$name}{port};
    unlink "$DIR/$name.pid";
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$DIR/$name.out";
        open STDERR, '>&', \*STDOUT;
        exec('/usr/bin/python3', $EXCHANGE_PY, '--listen', "127.0.0.1:$port", '--name', $name,
             '--plain', '--secret', $SECRET, '--log', "$DIR/$name.jsonl",
             '--pidfile', "$DIR/$name.pid") or POSIX::_exit(127);
    }
    $EX{$name}{pid} = $pid;
    return EspTest::poll(10, sub { -s "$DIR/$name.pid" }) ? $pid : 0;
}

sub ex_kill {
    my ($name, $sig) = @_;
    my $pid = $EX{$name}{pid} or return;
    kill $sig // 'KILL', $pid;
    waitpid $pid, 0;
    delete $EX{$name}{pid};
}

@EX{qw(exa exb)} = map { { port => $_ } } @EX_PORTS;
ok(ex_start($_), "private stand-in Exchange $_ listens on $EX{$_}{port}") for qw(exa exb);

END {
    local $?;
    ex_kill($_, 'TERM') for grep { $EX{$_}{pid} } keys %EX;
    dcs_back() if $$ == $MAIN_PID;
}

# whatever happens, the DCs this file stopped or paused are brought back
# for the files that run after it
sub dcs_back {
    for my $line (split /\n/, `$AD_SH status 2>/dev/null`) {
        my ($dc, $state) = $line =~ /^(dc\d) \S+ (\w+)/ or next;
        system("$AD_SH resume $dc >>$DIR/ad.log 2>&1") if $state eq 'paused';
        system("$AD_SH start $dc >>$DIR/ad.log 2>&1") if $state eq 'down';
    }
}

# ------------------------------------------------------------- nginx

my $HTTP = "esp_session_key \$ESP_RUN/keys/session.key;\n"
    . "esp_shared_zone esp081:32k;\n"
    . sso_domain_config(ldap_timeout => '1s', ldap_down_retry => '2s', ldap_connections => 4,
                        max_failed_auths => 5, reset_fail_timeout => '10m',
                        unblock_timeout => '10m')
    . "upstream ex081 {\n"
    . join('', map { "    server 127.0.0.1:$_;\n" } @EX_PORTS)
    . "    keepalive 32;\n}\n";

my $SERVER = <<'CONF';
esp contoso;
esp_allowed_hosts mail.contoso.com;
location /mail/ {
    esp_client_auth form;
    esp_server_auth none;
    esp_logoff /mail/logoff;
    proxy_pass http://ex081;
}
location /Microsoft-Server-ActiveSync {
    esp_client_auth basic;
    esp_server_auth basic;
    proxy_pass http://ex081;
}
location /ews/ {
    esp_client_auth basic;
    esp_server_auth basic;
    esp_basic_cache 0;
    proxy_pass http://ex081;
}
location /plain/ {
    esp off;
    proxy_pass http://ex081;
}
CONF

my %CONF = (http_config => $HTTP, config => $SERVER, workers => 2, log_level => 'notice');
ok(nginx_start(\%CONF), 'nginx starts (2 workers, esp_shared_zone 32k)')
    or BAIL_OUT(nginx_error());
my $ERROR_LOG = nginx_prefix() . '/logs/error.log';

# ------------------------------------------------ sessions, credentials

sub login {
    my ($user, $pw) = @_;
    my $ua = ua();
    my ($form) = follow($ua, $ua->get(url('/mail/')));
    submit_form($ua, $form, username => $user, password => $pw);
    my $s = cookies($ua)->{esp_session};
    return ($ua, $s);
}

my (undef, $SESSION) = login($ALICE, $ALICE_PW);
ok($SESSION, 'alice has a session cookie') or BAIL_OUT('no session');
my ($carol_ua, $REVOKED) = login($CAROL, $CAROL_PW);
ok($REVOKED, 'carol has a session cookie');
my $res = $carol_ua->get(url('/mail/logoff'));
ok($res->code == 302 || $res->code == 200, 'carol logs off');

my $plain = LWP::UserAgent->new(max_redirect => 0, timeout => 10);
sub get_plain {
    my ($path, @h) = @_;
    return $plain->get('http://127.0.0.1:' . nginx_port() . $path, Host => 'mail.contoso.com', @h);
}
is(get_plain('/mail/x', Cookie => "esp_session=$SESSION")->code, 200, 'alice\'s cookie opens /mail/');
is(get_plain('/mail/x', Cookie => "esp_session=$REVOKED")->code, 302, 'carol\'s cookie is revoked');

my $BASIC = basic_auth($ALICE, $ALICE_PW);
is(get_plain('/Microsoft-Server-ActiveSync?Cmd=Ping', Authorization => $BASIC)->code, 200,
   'Basic: alice passes (and is cached)');

# ------------------------------------------------------ wrk, scripts

my $STATS_LUA = <<'LUA';
counts = {}
local threads = {}
function setup(thread) table.insert(threads, thread) end
function response(status, headers, body)
    local k = tostring(status)
    counts[k] = (counts[k] or 0) + 1
end
function done(summary, latency, requests)
    local total = {}
    for _, t in ipairs(threads) do
        for k, v in pairs(t:get("counts")) do total[k] = (total[k] or 0) + v end
    end
    local parts = {}
    for k, v in pairs(total) do table.insert(parts, k .. "=" .. v) end
    io.write("ESP-STATUS " .. table.concat(parts, " ") .. "\n")
    io.write(string.format("ESP-LAT p50=%d p99=%d max=%d\n", latency:percentile(50),
                           latency:percentile(99), latency.max))
    local e = summary.errors
    io.write(string.format("ESP-ERR connect=%d read=%d write=%d timeout=%d requests=%d duration=%d\n",
                           e.connect, e.read, e.write, e.timeout, summary.requests, summary.duration))
end
LUA

# distinct user names that do not exist, wrong password: one lockout
# counter each in the shared zone, never a real account touched
my $FILL_LUA = $STATS_LUA . <<'LUA';
local alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
local function b64(data)
    return ((data:gsub('.', function(x)
        local r, byte = '', x:byte()
        for i = 8, 1, -1 do r = r .. (byte % 2 ^ i - byte % 2 ^ (i - 1) > 0 and '1' or '0') end
        return r
    end) .. '0000'):gsub('%d%d%d?%d?%d?%d?', function(x)
        if #x < 6 then return '' end
        local c = 0
        for i = 1, 6 do c = c + (x:sub(i, i) == '1' and 2 ^ (6 - i) or 0) end
        return alphabet:sub(c + 1, c + 1)
    end) .. ({ '', '==', '=' })[#data % 3 + 1])
end
local n, prefix = 0, 0
function init(args)
    math.randomseed(os.time() + os.clock() * 1e6)
    prefix = math.random(1, 1e9)
end
function request()
    n = n + 1
    local name = string.format('ghost081-%d-%d@contoso.local:Wrong-pass-1x', prefix, n)
    return wrk.format(nil, nil, { Host = 'mail.contoso.com',
                                  Authorization = 'Basic ' .. b64(name) })
end
LUA

EspTest::spurt("$DIR/stats.lua", $STATS_LUA);
EspTest::spurt("$DIR/fill.lua", $FILL_LUA);

my %STREAM = (
    cookie  => { path => '/mail/inbox', conns => 4, headers => ["Cookie: esp_session=$SESSION"],
                 what => 'session cookie' },
    cached  => { path => '/Microsoft-Server-ActiveSync?Cmd=Ping', conns => 4,
                 headers => ["Authorization: $BASIC"], what => 'Basic, cached' },
    bind    => { path => '/ews/exchange.asmx', conns => 2, headers => ["Authorization: $BASIC"],
                 what => 'Basic, a bind each' },
    plain   => { path => '/plain/x', conns => 4, headers => [],
                 what => 'no gate (esp off), control' },
    fill    => { path => '/Microsoft-Server-ActiveSync?Cmd=Sync', conns => 4, headers => [],
                 script => "$DIR/fill.lua", what => 'wrong passwords, new names' },
);

sub wrk_start {
    my ($name, $secs, $tag) = @_;
    my $s = $STREAM{$name};
    my @cmd = ($WRK, '-t1', "-c$s->{conns}", sprintf('-d%.0fs', $secs), '--timeout', '10s',
               '-s', $s->{script} // "$DIR/stats.lua", '-H', 'Host: mail.contoso.com',
               (map { ('-H', $_) } @{ $s->{headers} }),
               'http://127.0.0.1:' . nginx_port() . $s->{path});
    my $out = "$DIR/$tag-$name.out";
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $out;
        open STDERR, '>&', \*STDOUT;
        exec(@cmd) or POSIX::_exit(127);
    }
    return { pid => $pid, out => $out, name => $name };
}

sub wrk_result {
    my ($w) = @_;
    my $text = EspTest::slurp($w->{out});
    my %r = (status => {}, text => $text);
    %{ $r{status} } = map { split /=/ } split ' ', $1 if $text =~ /^ESP-STATUS ?(.*)$/m;
    @r{qw(p50 p99 max)} = map { $_ / 1000 } ($1, $2, $3)
        if $text =~ /^ESP-LAT p50=(\d+) p99=(\d+) max=(\d+)$/m;
    @r{qw(connect read write timeout requests duration)} = ($1, $2, $3, $4, $5, $6)
        if $text =~ /^ESP-ERR connect=(\d+) read=(\d+) write=(\d+) timeout=(\d+) requests=(\d+) duration=(\d+)$/m;
    $r{rps} = $r{duration} ? $r{requests} / ($r{duration} / 1e6) : 0;
    return \%r;
}

# async fault steps: each runs in a child, in order; returns its pid
sub async {
    my (@steps) = @_;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        my $rc = 0;
        for my $s (@steps) {
            if (ref $s eq 'CODE') { $rc = eval { $s->(); 0 } // 1 } else { sleep $s }
        }
        POSIX::_exit($rc);
    }
    return $pid;
}

sub ad {
    my (@args) = @_;
    my $t = time;
    system("$AD_SH @args >>$DIR/ad.log 2>&1");
    EspTest::spurt("$DIR/ad-timing-" . join('-', @args), sprintf "%.1f", time - $t);
    return $? == 0;
}

sub dcs_answer {
    # an uncached Basic login is answered by a domain controller
    return EspTest::poll(20, sub {
        get_plain('/ews/x?probe=' . rand(), Authorization => $BASIC)->code == 200
    });
}

my @TABLE;
my %LOG;            # phase tag -> its part of the error log

# run one phase: streams for $secs, fault steps (async) started at once
sub phase {
    my (%o) = @_;
    my $secs = $o{secs} * $SCALE;
    my $tag = $o{tag};
    my $mark = EspTest::file_size($ERROR_LOG);
    my @w = map { wrk_start($_, $secs, $tag) } @{ $o{streams} };
    my $t = time;
    my @faults = map { async(@$_) } @{ $o{faults} || [] };
    waitpid $_->{pid}, 0 for @w;
    my $left = time;
    waitpid $_, 0 for @faults;
    my $fault_tail = time - $left;
    for my $w (@w) {
        my $r = wrk_result($w);
        push @TABLE, [$o{title}, $STREAM{ $w->{name} }{what}, $r];
        my $allowed = $o{allowed}{ $w->{name} } // [200];
        my %ok = map { $_ => 1 } @$allowed;
        my @bad = grep { !$ok{$_} } sort keys %{ $r->{status} };
        my $label = "$o{title}, $STREAM{ $w->{name} }{what}";
        ok($r->{requests}, "$label: wrk ran ($r->{requests} requests)")
            or diag($r->{text});
        ok(!@bad, "$label: only " . join('/', @$allowed))
            or diag("statuses: " . join(' ', map { "$_=$r->{status}{$_}" } sort keys %{ $r->{status} }));
        is($r->{timeout} // -1, 0, "$label: no request left without an answer");
    }
    diag(sprintf "%s: fault steps ended %.1f s after the load", $o{title}, $fault_tail)
        if $fault_tail > 0.5;
    $LOG{$tag} = EspTest::slurp($ERROR_LOG, $mark);
}

# a server restart of dc1/dc2 must leave both answering before the next phase
sub healthy {
    my ($what) = @_;
    ok(dcs_answer(), "$what: the directory answers again");
}

# ----------------------------------------------------------- phases

phase(tag => 'p0', title => 'baseline', secs => 3, streams => [qw(cookie cached bind)]);

phase(tag => 'p1', title => 'dc1 stopped, then started', secs => 6,
      streams => [qw(cookie cached bind)],
      faults => [[1, sub { ad('stop', 'dc1') }, 1, sub { ad('start', 'dc1') }]]);
healthy('dc1 stopped');

phase(tag => 'p2', title => 'dc1 paused, then resumed', secs => 5,
      streams => [qw(cookie cached bind)],
      faults => [[1, sub { ad('pause', 'dc1') }, 2.5, sub { ad('resume', 'dc1') }]]);
healthy('dc1 paused');

phase(tag => 'p3', title => 'both DCs stopped', secs => 4,
      streams => [qw(cookie cached bind)],
      allowed => { bind => [200, 503] },
      faults => [[0.5, sub { ad('stop', 'dc1') }], [0.5, sub { ad('stop', 'dc2') }]]);
{
    my $p1 = async(sub { ad('start', 'dc1') });
    my $p2 = async(sub { ad('start', 'dc2') });
    waitpid $_, 0 for $p1, $p2;
}
healthy('both DCs stopped');
{
    my ($r) = grep { $_->[0] eq 'both DCs stopped' && $_->[1] =~ /bind/ } @TABLE;
    ok(($r->[2]{status}{503} // 0) > 0, 'both DCs stopped: uncached logins got 503 (no DC to ask)');
}

{
    # killed at 1 s, restarted at 3 s (by the fault child: the new process
    # is found through its pid file afterwards)
    my $old = $EX{exa}{pid};
    phase(tag => 'p4', title => 'a stand-in Exchange killed, then restarted', secs => 5,
          streams => [qw(cookie cached bind)],
          faults => [[1, sub { kill 'KILL', $old }, 2, sub { ex_start('exa') or die "no restart\n" }]]);
    waitpid $old, 0;
    my $new = EspTest::slurp("$DIR/exa.pid") =~ /(\d+)/ ? $1 : 0;
    ok($new && $new != $old && kill(0, $new), 'the killed stand-in Exchange came back during the load');
    $EX{exa}{pid} = $new;
}

{
    my $reload = sub {
        system("$NGINX -p '" . nginx_prefix() . "/' -c conf/nginx.conf -s reload >>'$DIR/reload.log' 2>&1");
    };
    phase(tag => 'p5', title => 'five reloads', secs => 7,
          streams => [qw(cookie cached bind plain)],
          faults => [[1, $reload, 1.2, $reload, 1.2, $reload, 1.2, $reload, 1.2, $reload]]);
}

phase(tag => 'p6', title => 'shared zone (32k) overflowing', secs => 6,
      streams => [qw(cookie cached bind fill)],
      allowed => { fill => [401] });
my ($FILLED) = map { $_->[2]{status}{401} // 0 } grep { $_->[1] =~ /new names/ } @TABLE;
# a cached credential (TTL 5m) bound again means the zone evicted it
my $REBOUND = () = $LOG{p6} =~ /esp: login user="\Q$ALICE\E" [^\n]*dc=ldaps[^\n]*request: "GET \/Microsoft-Server-ActiveSync/g;
diag("shared zone: $FILLED new lockout counters in a 32k zone (room for about 250 entries); "
     . "alice's cached Basic credential was evicted and bound again $REBOUND times");

# ------------------------------------------------------------ after

is(get_plain('/mail/x', Cookie => "esp_session=$SESSION")->code, 200,
   'after everything: alice\'s first cookie still opens /mail/');
SKIP: {
    skip "the zone did not overflow ($FILLED failures, $REBOUND evicted credentials): machine too slow", 1
        unless $FILLED > 300 && $REBOUND > 0;
    is(get_plain('/mail/x', Cookie => "esp_session=$REVOKED")->code, 302,
       'after the zone overflowed: carol\'s logged-off cookie is still revoked');
}
is(get_plain('/Microsoft-Server-ActiveSync?Cmd=Ping', Authorization => $BASIC)->code, 200,
   'after everything: Basic still passes');

{
    my $log = EspTest::slurp($ERROR_LOG);
    my @bad = grep { /\[(?:alert|crit|emerg)\]|exited on signal/ } split /\n/, $log;
    ok(!@bad, 'the error log has no alert, crit, emerg or "exited on signal"')
        or diag(mask(join "\n", @bad[0 .. ($#bad < 19 ? $#bad : 19)]));
    my $reloads = () = $log =~ /\[notice\] \d+#\d+: signal 1 \(SIGHUP\) received/g;
    is($reloads, 5, 'nginx saw the five reloads');
    my @zone = $log =~ /(esp: [^\n]*(?:evict|zone)[^\n]*)/g;
    diag("shared zone said: $_") for @zone[0 .. ($#zone < 4 ? $#zone : 4)];
    my $down = () = $log =~ /esp: domain controller \S+ of domain \S+ is (?:still )?down/g;
    my $refused = () = ($LOG{p3} // '') =~ /connect\(\) failed \(111: Connection refused\) while connecting to domain controller/g;
    diag("domain controllers marked down $down times; while both were stopped, "
         . "$refused connection attempts (error log lines) for the uncached logins");
}

# the figures
my $fmt = "%-44s %-27s %7s %8s %8s %8s  %s\n";
my $table = sprintf($fmt, 'phase', 'traffic', 'req/s', 'p50 ms', 'p99 ms', 'max ms', 'statuses; socket errors');
for my $row (@TABLE) {
    my ($phase, $what, $r) = @$row;
    my $st = join ' ', map { "$_=$r->{status}{$_}" } sort keys %{ $r->{status} };
    my $err = join ' ', map { $r->{$_} ? "$_=$r->{$_}" : () } qw(connect read write timeout);
    $table .= sprintf($fmt, $phase, $what, sprintf('%.0f', $r->{rps} // 0),
                      map({ sprintf '%.1f', $r->{$_} // 0 } qw(p50 p99 max)),
                      $st . ($err ? "; $err" : ''));
}
my $timing = join ', ', map { my $f = $_; (my $n = $f) =~ s{.*/ad-timing-}{};
                              "$n " . EspTest::slurp($f) . ' s' } sort glob "$DIR/ad-timing-*";
diag("\n$table" . "ad.sh: $timing\n" . sprintf("this file ran %.0f s\n", time - $T0));

remove_tree($DIR) unless $ENV{ESP_KEEP};

done_testing();
