#!/usr/bin/perl
# The benchmark: one table of requests/s and latency, every figure measured
# in this run against plain nginx proxying to the same backend.  Run by
# "make bench" inside the test namespaces (t/run.sh --exec), with the two
# Samba DCs up.  Not a test: it prints what it measured.

use strict;
use warnings;
use File::Path qw(make_path remove_tree);
use HTTP::Cookies;
use JSON::PP;
use LWP::UserAgent;
use MIME::Base64;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

my $RUN      = $ENV{ESP_RUN} or die "bench: run me through make bench\n";
my $MODULE   = $ENV{ESP_MODULE} or die "bench: ESP_MODULE is not set\n";
my $ROOT     = $ENV{ESP_ROOT};
my $NGINX    = $ENV{ESP_NGINX} || '/usr/sbin/nginx';
my $DURATION = $ENV{BENCH_DURATION} || 8;
my $CONNS    = $ENV{BENCH_CONNECTIONS} || 32;
my $ROUNDS   = $ENV{BENCH_ROUNDS} || 3;
my $DIR      = "$RUN/bench";

my %AD = map { /^(\w+)=(.*)$/ ? ($1, $2) : () }
         split /\n/, slurp("$RUN/ad/env");
my $users = decode_json(slurp("$RUN/ad/users.json"));
my $alice = $users->{alice};

remove_tree($DIR);
make_path("$DIR/backend/logs", "$DIR/front/logs", "$DIR/front/temp");

system('wrk', '--version') if 0;
-x '/usr/bin/wrk' or die "bench: wrk is missing (apt-get install wrk)\n";

# --- a fast backend: nginx answering a small body over TLS, so that the
# figures are nginx's and the module's, not the Python stand-in's

spew("$DIR/backend/nginx.conf", <<"EOC");
daemon on;
worker_processes 1;
error_log $DIR/backend/logs/error.log warn;
pid $DIR/backend/logs/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $DIR/backend/logs;
    proxy_temp_path $DIR/backend/logs;
    fastcgi_temp_path $DIR/backend/logs;
    uwsgi_temp_path $DIR/backend/logs;
    scgi_temp_path $DIR/backend/logs;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:9443 ssl;
        ssl_certificate $RUN/pki/exchange.pem;
        ssl_certificate_key $RUN/pki/exchange.key;
        location / { return 200 "<html><body>mailbox</body></html>\\n"; }
    }
}
EOC
run_nginx("$DIR/backend", "$DIR/backend/nginx.conf");

my $csrf = 'a' x 32;
my $bind = $AD{AD_BIND_DN};

sub front_conf {
    my ($dcs, $cluster) = @_;
    my $servers = join '', map { "        ldap_server ldaps://$_:636;\n" } @$dcs;
    my $esp_cluster = $cluster ? "esp_cluster $cluster;" : '';
    return <<"EOC";
load_module $MODULE;
daemon on;
worker_processes 1;
error_log $DIR/front/logs/error.log notice;
pid $DIR/front/logs/nginx.pid;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $DIR/front/temp;
    proxy_temp_path $DIR/front/temp;
    fastcgi_temp_path $DIR/front/temp;
    uwsgi_temp_path $DIR/front/temp;
    scgi_temp_path $DIR/front/temp;
    keepalive_requests 1000000;

    upstream fast {
        server 127.0.0.1:9443;
        keepalive 64;
    }
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_ssl_trusted_certificate $RUN/pki/ca.pem;
    proxy_ssl_verify on;
    proxy_ssl_name exchange.contoso.local;
    proxy_ssl_session_reuse on;

    esp_session_key $RUN/keys/session.key;
    esp_shared_zone esp:16m;
    $esp_cluster
    esp_sso_domain contoso {
$servers        ldap_ca_certificate $RUN/pki/ca.pem;
        ldap_bind_dn $bind;
        ldap_bind_password_file $AD{AD_BIND_PASSWORD_FILE};
        ldap_base_dn "$AD{AD_BASE_DN}";
        ldap_timeout 2s;
        ldap_connections 8;
    }
    # the same directory with the lockout on: its check and reservation
    # on every Basic request, cache hits included
    esp_sso_domain lockout {
$servers        ldap_ca_certificate $RUN/pki/ca.pem;
        ldap_timeout 2s;
        ldap_connections 8;
        max_failed_auths 5;
    }

    server {
        listen 127.0.0.1:9080;
        server_name mail.contoso.com;
        esp contoso;
        esp_allowed_hosts mail.contoso.com;

        location /plain/ { esp off; proxy_pass https://fast; }
        location = /esp-status { esp_status; allow 127.0.0.1; deny all; }
        location /owa/ {
            esp_client_auth form;
            esp_logoff /owa/logoff.owa;
            proxy_pass https://fast;
        }
        location /basic/ {
            esp_client_auth basic;
            proxy_pass https://fast;
        }
        location /bind/ {
            esp_client_auth basic;
            esp_basic_cache 0;
            proxy_pass https://fast;
        }
        location /lockout/ {
            esp lockout;
            esp_client_auth basic;
            proxy_pass https://fast;
        }
        location /lockbind/ {
            esp lockout;
            esp_client_auth basic;
            esp_basic_cache 0;
            proxy_pass https://fast;
        }
    }
}
EOC
}

spew("$DIR/front/nginx.conf", front_conf([$AD{AD_DC1}]));
run_nginx("$DIR/front", "$DIR/front/nginx.conf");

my $base = 'http://127.0.0.1:9080';
my $host = 'mail.contoso.com';

# a session cookie, from a real login
my $ua = LWP::UserAgent->new(max_redirect => 0, cookie_jar => HTTP::Cookies->new);
my $res = $ua->post("$base/_esp/login", Host => $host,
                    Cookie => "esp_csrf=$csrf",
                    Content => { username => $alice->{upn},
                                 password => $alice->{password},
                                 url => '/owa/', csrf => $csrf });
my ($session) = ($res->header('Set-Cookie') // '') =~ /(esp_session=[^;]+)/;
die "bench: login failed: " . $res->status_line . "\n" unless $session;

# and another session, logged off: the revocation table is not empty, as
# on a real gate, so every session request really looks its id up
my $ua2 = LWP::UserAgent->new(max_redirect => 0, cookie_jar => HTTP::Cookies->new);
$res = $ua2->post("$base/_esp/login", Host => $host,
                  Cookie => "esp_csrf=$csrf",
                  Content => { username => $alice->{upn},
                               password => $alice->{password},
                               url => '/owa/', csrf => $csrf });
my ($other) = ($res->header('Set-Cookie') // '') =~ /(esp_session=[^;]+)/;
$res = $ua2->get("$base/owa/logoff.owa", Host => $host, Cookie => $other);
$res = $ua2->get("$base/owa/x", Host => $host, Cookie => $other);
die "bench: logoff did not revoke\n" unless $res->code == 302;

my $basic = 'Basic ' . encode_base64("$alice->{upn}:$alice->{password}", '');

# warm the cache
$ua->get("$base/basic/x", Host => $host, Authorization => $basic);

my $login_lua = "$DIR/login.lua";
my $body = "username=" . uri_escape($alice->{upn})
         . "&password=" . uri_escape($alice->{password})
         . "&url=%2Fowa%2F&csrf=$csrf";
spew($login_lua, <<"EOL");
wrk.method = "POST"
wrk.body = "$body"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Cookie"] = "esp_csrf=$csrf"
wrk.headers["Host"] = "$host"
EOL
chmod 0600, $login_lua;

my @rows;

# The three fast paths are measured in alternating rounds and the median
# round kept, so that a disturbance of the machine hits all of them alike.

my %fast = (
    plain   => ['/plain/x', []],
    session => ['/owa/x', ["Cookie: $session"]],
    basic   => ['/basic/x', ["Authorization: $basic"]],
    lockout => ['/lockout/x', ["Authorization: $basic"]],
);
my %runs;
wrk($fast{$_}[0], $fast{$_}[1], undef, undef, 1) for sort keys %fast;
for my $round (1 .. $ROUNDS) {
    push @{ $runs{$_} }, wrk(@{ $fast{$_} }) for qw(plain session basic lockout);
}
my %med = map {
    my @s = sort { $a->{rps} <=> $b->{rps} } @{ $runs{$_} };
    ($_ => $s[$#s / 2])
} keys %runs;

my $plain = $med{plain};
push @rows, ['plain proxy_pass (no module in the path)', $plain];
push @rows, ['session cookie (form location)', $med{session}];
push @rows, ['Basic, warm credential cache', $med{basic}];
push @rows, ['Basic, warm cache, max_failed_auths 5', $med{lockout}];
push @rows, ['Basic, cache off: one LDAPS bind per request',
             wrk('/bind/x', ["Authorization: $basic"], 8)];
push @rows, ['form logins (POST /_esp/login, one bind each)',
             wrk('/_esp/login', [], 8, $login_lua)];

# latency of requests that need no directory while the DC hangs

# Latency of requests that need no directory, while logins run beside
# them (8 connections binding on every request): first with both DCs
# healthy, then with DC1 paused (it accepts TCP and never answers), so
# that every login waits ldap_timeout before failing over to DC2.

spew("$DIR/front/nginx.conf", front_conf([$AD{AD_DC1}, $AD{AD_DC2}]));
reload_nginx("$DIR/front");

my $healthy = beside_logins();
push @rows, ['cookie-less GET (302), logins beside, DCs healthy', $healthy];

system("$ROOT/t/fixtures/ad.sh", 'pause', 'dc1') == 0 or die "bench: pause\n";
my $paused = beside_logins();
system("$ROOT/t/fixtures/ad.sh", 'resume', 'dc1');
push @rows, ['same, DC1 paused (logins fail over after 2s)', $paused];

# memory in the shared zone: revoked sessions added by real logoffs, and
# the zone's own figure for an entry of any kind (a cached credential)

my $zone0 = zone();
my $n = 200;
for (1 .. $n) {
    my $u = LWP::UserAgent->new(max_redirect => 0);
    my $r = $u->post("$base/_esp/login", Host => $host,
                     Cookie => "esp_csrf=$csrf",
                     Content => { username => $alice->{upn},
                                  password => $alice->{password},
                                  url => '/owa/', csrf => $csrf });
    my ($c) = ($r->header('Set-Cookie') // '') =~ /(esp_session=[^;]+)/;
    $u->get("$base/owa/logoff.owa", Host => $host, Cookie => $c) if $c;
}
my $zone1 = zone();
my $per_session = ($zone1->{used} - $zone0->{used})
                  / (($zone1->{revoked_sessions} - $zone0->{revoked_sessions}) || 1);
my $per_entry = $zone1->{size} / ($zone1->{capacity} || 1);

# the same gate with esp_cluster and a local redis-server: the session and
# warm Basic paths stay local (a zone lookup), every login with the lockout
# on adds the reservation's and the settle's round trips.  Each is measured
# without the cluster and then with it, on the same DCs, plain nginx again
# beside them, so that the two sets compare.

$fast{lockbind} = ['/lockbind/x', ["Authorization: $basic"], 8];
my @cset = qw(plain session lockout lockbind);

sub rounds {
    my %r;
    wrk($fast{$_}[0], $fast{$_}[1], $fast{$_}[2], undef, 1) for @cset;
    for my $round (1 .. $ROUNDS) {
        push @{ $r{$_} }, wrk(@{ $fast{$_} }) for @cset;
    }
    return map {
        my @s = sort { $a->{rps} <=> $b->{rps} } @{ $r{$_} };
        ($_ => $s[$#s / 2])
    } keys %r;
}

my %off = rounds();

my $RPORT = 9379;
system("$ROOT/t/fixtures/redis.sh", 'start', 'bench', $RPORT) == 0
    or die "bench: redis-server does not start\n";
spew("$DIR/front/nginx.conf",
     front_conf([$AD{AD_DC1}, $AD{AD_DC2}], "redis://127.0.0.1:$RPORT prefix=bench"));
reload_nginx("$DIR/front");
sleep 1;
$ua->get("$base/lockout/x", Host => $host, Authorization => $basic);

my %on = rounds();

my @pairs = (
    [plain => 'plain proxy_pass, again'],
    [session => 'session cookie'],
    [lockout => 'Basic, warm cache, max_failed_auths 5'],
    [lockbind => 'Basic, cache off, max_failed_auths 5'],
);
for my $p (@pairs) {
    my ($k, $name) = @$p;
    push @rows, ["cluster off: $name", $off{$k}, $off{plain}];
    push @rows, ["cluster on:  $name", $on{$k}, $on{plain}];
}
my $cluster_status = LWP::UserAgent->new->get("$base/esp-status", Host => $host);
my $cluster = eval { decode_json($cluster_status->decoded_content)->{cluster} } || {};
system("$ROOT/t/fixtures/redis.sh", 'stop', 'bench');

stop_nginx("$DIR/front");
stop_nginx("$DIR/backend");

# --- the table

printf "\nngx_exchange_esp benchmark: nginx %s, 1 worker, wrk -t1 -c%d, %ds "
       . "each (first three: median of %d alternating rounds), loopback, "
       . "backend = nginx over TLS with keepalive\n\n", nginx_version(),
       $CONNS, $DURATION, $ROUNDS;
printf "| %-50s | %9s | %8s | %8s | %8s |\n", 'scenario', 'req/s',
       'vs plain', 'p50 ms', 'p99 ms';
printf "|%s|%s|%s|%s|%s|\n", '-' x 52, '-' x 11, '-' x 10, '-' x 10, '-' x 10;
for my $r (@rows) {
    my ($name, $m, $base_run) = @$r;
    printf "| %-50s | %9.0f | %8.2f | %8.2f | %8.2f |\n", $name, $m->{rps},
           $m->{rps} / ($base_run || $plain)->{rps}, $m->{p50}, $m->{p99};
}
printf "\n(the cluster rows: alternating rounds without the cluster, then with "
       . "it and both DCs, each against plain nginx measured in its own rounds)\n";
printf "login rate with the cluster store: %.2fx without it; session cookie "
       . "%.2fx, warm Basic %.2fx (ratios to plain nginx, on / off)\n",
       $on{lockbind}{rps} / $off{lockbind}{rps},
       ($on{session}{rps} / $on{plain}{rps}) / ($off{session}{rps} / $off{plain}{rps}),
       ($on{lockout}{rps} / $on{plain}{rps}) / ($off{lockout}{rps} / $off{plain}{rps});
printf "\nnon-2xx/3xx answers: %s\n",
       join(', ', map { "$_->[0]: $_->[1]{bad}" } grep { $_->[1]{bad} } @rows)
       || 'none';
printf "shared zone %s: %d revoked sessions added by real logoffs took %.1f "
       . "bytes each; the zone holds %d entries of any kind (a cached "
       . "credential, a revoked session, a lockout counter) in %d bytes: "
       . "%.1f bytes per entry\n",
       $zone1->{name}, $zone1->{revoked_sessions} - $zone0->{revoked_sessions},
       $per_session, $zone1->{capacity}, $zone1->{size}, $per_entry;

printf "cluster store during the cluster rows: reachable %s, reservations "
       . "granted %s, refused %s, local only %s, failures %s\n",
       $cluster->{reachable} ? 'yes' : 'no', map { $cluster->{$_} // '?' }
       qw(reservations refusals local_only failures);

exit 0;

# ---------------------------------------------------------------- helpers

sub zone {
    my $r = LWP::UserAgent->new->get("$base/esp-status", Host => $host);
    die "bench: status: " . $r->status_line . "\n" unless $r->is_success;
    return decode_json($r->decoded_content)->{shared_zone};
}

sub beside_logins {
    my $pid = fork // die;
    if ($pid == 0) {
        open(STDOUT, '>', '/dev/null');
        exec('wrk', '-t1', '-c8', "-d" . ($DURATION + 2) . 's',
             '-H', "Host: $host", '-H', "Authorization: $basic",
             "$base/bind/x") or exit 1;
    }
    sleep 1;
    my $m = wrk('/owa/x', [], 8);
    waitpid($pid, 0);
    return $m;
}

sub wrk {
    my ($path, $headers, $conns, $script, $secs) = @_;
    $conns ||= $CONNS;
    $secs ||= $DURATION;
    my @cmd = ('wrk', '-t1', "-c$conns", "-d${secs}s", '--latency',
               '-H', "Host: $host");
    push @cmd, '-H', $_ for @$headers;
    push @cmd, '-s', $script if $script;
    push @cmd, "$base$path";
    open(my $fh, '-|', @cmd) or die "bench: wrk: $!\n";
    my $out = do { local $/; <$fh> };
    close $fh;
    my %m = (rps => 0, p50 => 0, p99 => 0, bad => 0);
    $m{rps} = $1 if $out =~ /Requests\/sec:\s+([\d.]+)/;
    $m{p50} = ms($1, $2) if $out =~ /^\s+50%\s+([\d.]+)(us|ms|s)/m;
    $m{p99} = ms($1, $2) if $out =~ /^\s+99%\s+([\d.]+)(us|ms|s)/m;
    $m{bad} = $1 if $out =~ /Non-2xx or 3xx responses:\s+(\d+)/;
    $m{rps} or die "bench: wrk measured nothing for $path:\n$out";
    return \%m;
}

sub ms {
    my ($v, $u) = @_;
    return $u eq 'us' ? $v / 1000 : $u eq 's' ? $v * 1000 : $v;
}

sub run_nginx {
    my ($prefix, $conf) = @_;
    system($NGINX, '-p', $prefix, '-c', $conf) == 0
        or die "bench: nginx did not start: " . slurp("$prefix/logs/error.log");
    for (1 .. 50) {
        last if -s "$prefix/logs/nginx.pid";
        sleep 0.1;
    }
}

sub reload_nginx {
    my ($prefix) = @_;
    my $pid = slurp("$prefix/logs/nginx.pid");
    chomp $pid;
    kill 'HUP', $pid;
    sleep 1.5;
}

sub stop_nginx {
    my ($prefix) = @_;
    my $pid = -s "$prefix/logs/nginx.pid" ? slurp("$prefix/logs/nginx.pid") : 0;
    chomp $pid;
    return unless $pid;
    kill 'QUIT', $pid;
    for (1 .. 50) {
        last unless kill 0, $pid;
        sleep 0.1;
    }
    kill 'KILL', $pid if kill 0, $pid;
}

sub nginx_version {
    my $v = `$NGINX -v 2>&1`;
    return $v =~ m{nginx/(\S+)} ? $1 : '?';
}

sub uri_escape {
    my ($s) = @_;
    $s =~ s/([^A-Za-z0-9\-_.~])/sprintf('%%%02X', ord $1)/ge;
    return $s;
}

sub slurp {
    my ($f) = @_;
    open(my $fh, '<', $f) or die "bench: $f: $!\n";
    local $/;
    return <$fh>;
}

sub spew {
    my ($f, $text) = @_;
    open(my $fh, '>', $f) or die "bench: $f: $!\n";
    print $fh $text;
    close $fh;
}
