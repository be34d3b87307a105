package EspTest;

# The project's own small replacement for Test::Nginx: Test::Base blocks
# (=== TEST, --- config, --- request, --- error_code ...) run against Debian's
# nginx with the module loaded, plus helpers for plain-Perl flow tests.
# See t/README.md for the sections and helpers.
#
# Spiffy (Test::Base's base) filters this file: "sub name {" would get an
# implicit "my $self = shift;", so every sub here is declared "sub name () {"
# (Spiffy strips the empty prototype, the sub takes arguments normally).

use Test::Base -Base;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);
use HTTP::Cookies;
use HTTP::Response;
use IO::Select;
use IO::Socket::INET;
use IO::Socket::SSL;
use JSON::PP ();
use LWP::UserAgent;
use POSIX ();
use Time::HiRes qw(sleep time);

our @EXPORT = qw(
    run_tests run_blocks plan_auto done_testing add_block_preprocessor
    config_with nginx_start nginx_stop nginx_reload nginx_running nginx_error
    nginx_port nginx_tls_port nginx_prefix
    error_log_mark error_log_since_mark error_log_wait
    ua url test_id_header
    backend_mark backend_log backend_log_since_mark backend_entries_for
    ad_present ad_users ad_env exchange_present mask
    nginx_version nginx_version_ge
);

# ---------------------------------------------------------------------------
# Per-file state

my $ROOT   = $ENV{ESP_ROOT} || abs_path(dirname(__FILE__) . '/../..');
my $RUN    = $ENV{ESP_RUN} || '/tmp/esp-run';
my $NGINX  = $ENV{ESP_NGINX} || '/usr/sbin/nginx';
my $CA     = $ENV{ESP_CA} || "$RUN/pki/ca.pem";
my $MODULE = $ENV{ESP_MODULE} // '';
my @BACKENDS = split ' ', ($ENV{ESP_BACKENDS} || '127.0.0.1:8443 127.0.0.1:8444');

my $DEFAULT_HOST = 'mail.contoso.com';
my $TEST_ID_HEADER = 'X-Esp-Test-Id';

my $PREFIX = "$RUN/nginx/" . file_tag();
my $ERROR_LOG = "$PREFIX/logs/error.log";
my $PID_FILE = "$PREFIX/logs/nginx.pid";
my ($PORT, $TLS_PORT) = free_ports(2);

my $running_conf;           # config text of the nginx we started, if any
my $last_start_error = '';
my $user_log_mark = 0;
my $user_backend_mark = {};
my @preprocessors;
my %secrets;                # strings that must never be printed

my @TEMP_DIRS = qw(client_body proxy fastcgi uwsgi scgi);

init_prefix();
load_secrets();

# a signal still runs END, which stops nginx
$SIG{INT} = sub { exit 130 };
$SIG{TERM} = sub { exit 143 };

END {
    local $?;               # keep the test's exit status
    nginx_stop() if $PREFIX;
}

sub file_tag () {
    my $f = abs_path($0) // $0;
    $f =~ s{^\Q$ROOT\E/}{};
    $f =~ s{^t/}{};
    $f =~ s{\.t$}{};
    $f =~ s{/}{-}g;
    $f =~ s{^-+}{};
    $f =~ s{[^\w.-]}{_}g;
    return $f;
}

sub free_ports () {
    my ($n) = @_;
    my @socks = map {
        IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                              LocalPort => 0, Proto => 'tcp')
            or die "EspTest: cannot find a free port: $!\n";
    } 1 .. $n;
    return map { $_->sockport } @socks;   # closed when @socks goes
}

sub init_prefix () {
    stop_pid(read_pid());               # a leftover from an earlier run
    remove_tree($PREFIX);
    make_path("$PREFIX/conf", "$PREFIX/logs",
              map { "$PREFIX/temp/$_" } @TEMP_DIRS);
}

sub load_secrets () {
    my $users = read_json("$RUN/ad/users.json");
    collect_passwords($users) if $users;
    my $file = ad_env('AD_BIND_PASSWORD_FILE');
    if ($file && open my $fh, '<', $file) {
        local $/;
        my $pw = <$fh> // '';
        $pw =~ s/\s+\z//;
        add_secret($pw);
    }
}

sub collect_passwords () {
    my ($data, $key) = @_;
    if (ref $data eq 'HASH') {
        collect_passwords($data->{$_}, $_) for keys %$data;
    } elsif (ref $data eq 'ARRAY') {
        collect_passwords($_, $key) for @$data;
    } elsif (defined $data && !ref $data && defined $key && $key =~ /pass|secret/i) {
        add_secret($data);
    }
}

# A secret is hidden as is, as UTF-8 bytes and URL-encoded (%XX either
# case, "+" for spaces).
sub add_secret () {
    my ($s) = @_;
    return unless defined $s && length $s >= 3;
    my $bytes = $s;
    utf8::encode($bytes) if utf8::is_utf8($bytes);
    (my $esc = $bytes) =~ s/([^A-Za-z0-9\-._~ ])/sprintf('%%%02X', ord $1)/ge;
    (my $lower = $esc) =~ s/(%[0-9A-F]{2})/\L$1/g;
    $secrets{$_} = 1 for $s, $bytes, map { s/ /%20/gr, s/ /+/gr } $esc, $lower;
}

# Hide passwords: known ones (users.json, bind password), credentials in
# Authorization headers and password-like form or JSON fields.
sub mask () {
    my ($text) = @_;
    return $text unless defined $text;
    for my $s (sort { length $b <=> length $a } keys %secrets) {
        $text =~ s/\Q$s\E/***/g;
    }
    $text =~ s/\b(Basic\s+)[A-Za-z0-9+\/=]{4,}/$1***/g;
    $text =~ s/\b((?:password|passwd|pwd|newPwd\d?|oldPwd)=)[^&\s"]*/$1***/gi;
    $text =~ s/("(?:password|passwd|pwd)"\s*:\s*)"(?:[^"\\]|\\.)*"/$1"***"/gi;
    return $text;
}

sub say_diag () {
    my $text = mask(join '', @_);
    utf8::encode($text) if utf8::is_utf8($text);
    Test::More::diag($text);
}

# ---------------------------------------------------------------------------
# Small utilities

sub slurp () {
    my ($file, $offset) = @_;
    open my $fh, '<', $file or return '';
    binmode $fh;
    seek $fh, $offset, 0 if $offset;
    local $/;
    return <$fh> // '';
}

sub spurt () {
    my ($file, $data) = @_;
    open my $fh, '>', $file or die "EspTest: cannot write $file: $!\n";
    binmode $fh;
    print $fh $data;
    close $fh or die "EspTest: cannot write $file: $!\n";
}

sub read_json () {
    my ($file) = @_;
    return undef unless -f $file;
    my $data = eval { JSON::PP->new->decode(slurp($file)) };
    warn "EspTest: cannot parse $file: $@" if $@;
    return $data;
}

sub file_size () {
    return -s $_[0] // 0;
}

sub tail_lines () {
    my ($text, $n) = @_;
    my @lines = split /\n/, $text;
    splice @lines, 0, @lines - $n if @lines > $n;
    return join("\n", @lines) . (@lines ? "\n" : '');
}

sub new_test_id () {
    return sprintf 'esp-%d-%s', $$, join '', map { sprintf '%04x', int rand 65536 } 1 .. 4;
}

sub test_id_header () {
    return $TEST_ID_HEADER;
}

sub poll () {
    my ($timeout, $cond) = @_;
    my $deadline = time + $timeout;
    while (1) {
        my $r = $cond->();
        return $r if $r || time >= $deadline;
        sleep 0.02;
    }
}

# ---------------------------------------------------------------------------
# Environment: AD fixture

sub ad_env () {
    my ($name) = @_;
    return $ENV{$name} if defined $ENV{$name};
    my $env = slurp("$RUN/ad/env");
    return $1 if $env =~ /^\s*(?:export\s+)?\Q$name\E=(?|"([^"]*)"|'([^']*)'|(\S*))/m;
    return undef;
}

sub ad_present () {
    return 0 if $ENV{ESP_NO_AD};
    return defined ad_env('AD_DC1') ? 1 : 0;
}

sub exchange_present () {
    return 0 if $ENV{ESP_NO_EXCHANGE};
    return -s "$RUN/exchange/ex1.pid" ? 1 : 0;
}

sub ad_users () {
    my $users = read_json("$RUN/ad/users.json")
        or die "EspTest: no $RUN/ad/users.json (AD fixture not started?)\n";
    collect_passwords($users);
    return $users;
}

# ---------------------------------------------------------------------------
# nginx.conf

sub subst_vars () {
    my ($text) = @_;
    return $text if !defined $text || ref $text;
    my %v = (
        ESP_RUN => $RUN, ESP_CA => $CA, ESP_ROOT => $ROOT, ESP_MODULE => $MODULE,
        (map { $_ => $ENV{$_} } grep { /^(?:TEST_NGINX_|AD_)\w+$/ } keys %ENV),
        TEST_NGINX_PORT => $PORT, TEST_NGINX_TLS_PORT => $TLS_PORT,
        TEST_NGINX_PREFIX => $PREFIX,
    );
    $text =~ s{\$(\{)?((?:ESP_RUN|ESP_CA|ESP_ROOT|ESP_MODULE)\b|(?:TEST_NGINX|AD)_\w+)(?(1)\})}{
        my $name = $2;
        my $val = $v{$name} // ad_env($name);
        if (!defined $val) {
            say_diag("EspTest: \$$name is not set, left as is");
            $val = $&;
        }
        $val;
    }ge;
    return $text;
}

# Builds the complete nginx.conf text, from a hash (or hash ref) of sections:
# main_config, http_config, config, server_config, no_module, workers,
# log_level.
sub config_with () {
    my %s = (@_ == 1 && ref $_[0]) ? %{$_[0]} : @_;
    my $sec = sub { my $t = subst_vars($s{$_[0]} // ''); chomp $t; $t };
    my $module = defined $s{no_module} ? '' : "load_module $MODULE;\n";
    my $workers = $s{workers} || 1;
    my $level = $s{log_level} || 'debug';
    my $temp = join '', map { "    ${_}_temp_path temp/$_;\n" } @TEMP_DIRS;
    my $upstream = join '', map { "        server $_;\n" } @BACKENDS;
    return <<"CONF";
# generated by EspTest for $0
${module}daemon on;
master_process on;
worker_processes $workers;
error_log logs/error.log $level;
pid logs/nginx.pid;
@{[ $sec->('main_config') ]}
events {
    worker_connections 1024;
}

http {
    access_log logs/access.log;
$temp
    upstream exchange {
$upstream    }
    proxy_ssl_trusted_certificate $CA;
    proxy_ssl_verify on;
    proxy_ssl_name exchange.contoso.local;
    proxy_ssl_server_name on;
    proxy_http_version 1.1;
    proxy_set_header Connection "";

@{[ $sec->('http_config') ]}

    server {
        listen 127.0.0.1:$PORT;
        listen 127.0.0.1:$TLS_PORT ssl;
        ssl_certificate $RUN/pki/front.pem;
        ssl_certificate_key $RUN/pki/front.key;
        server_name $DEFAULT_HOST;

@{[ $sec->('config') ]}
    }

@{[ $sec->('server_config') ]}
}
CONF
}

# ---------------------------------------------------------------------------
# nginx processes

sub nginx_port ()     { return $PORT }
sub nginx_tls_port () { return $TLS_PORT }
sub nginx_prefix ()   { return $PREFIX }

sub read_pid () {
    my $pid = slurp($PID_FILE);
    return $pid =~ /^(\d+)/ ? $1 : undef;
}

sub alive () {
    my ($pid) = @_;
    return 0 unless $pid && kill 0, $pid;
    my $stat = slurp("/proc/$pid/stat");
    return $stat =~ /\)\s+Z/ ? 0 : 1;   # a zombie is gone for our purposes
}

sub stop_pid () {
    my ($pid) = @_;
    return unless alive($pid);
    for my $step (['QUIT', 5], ['TERM', 3], ['KILL', 2]) {
        kill $step->[0], $pid;
        return if poll($step->[1], sub { !alive($pid) });
    }
    warn "EspTest: nginx $pid survived SIGKILL\n";
}

sub nginx_running () {
    return alive(read_pid());
}

sub nginx_stop () {
    stop_pid(read_pid());
    unlink $PID_FILE;
    undef $running_conf;
    return 1;
}

sub run_nginx () {
    my (@args) = @_;
    my $out = "$PREFIX/logs/nginx.stderr";
    my $pid = fork // die "EspTest: fork: $!\n";
    if (!$pid) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $out;
        open STDERR, '>&', \*STDOUT;
        exec($NGINX, '-p', "$PREFIX/", '-c', 'conf/nginx.conf',
             '-e', 'logs/error.log', @args) or POSIX::_exit(127);
    }
    waitpid $pid, 0;
    return ($? >> 8, slurp($out));
}

sub port_open () {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 1);
    return $s ? 1 : 0;
}

# Makes sure nginx runs with this config text: reuses a running one with the
# same text, else (re)starts. Sets the error log mark to where this nginx's
# lines begin. Returns 1, or 0 with $last_start_error set.
sub ensure_nginx () {
    my ($conf, $restart) = @_;
    spurt("$PREFIX/conf/nginx.conf", $conf);
    if (!$restart && defined $running_conf && $running_conf eq $conf && nginx_running()) {
        error_log_mark();
        return 1;
    }
    nginx_stop();
    my $mark = error_log_mark();        # after the old nginx's last words
    my ($rc, $out) = run_nginx();
    my $up = $rc == 0 && poll(10, sub {
        nginx_running() && port_open($PORT) && port_open($TLS_PORT)
    });
    if ($up) {
        $running_conf = $conf;
        $last_start_error = '';
        return 1;
    }
    $last_start_error = "nginx did not start (exit code $rc)\n"
        . "--- nginx output:\n$out"
        . "--- error log:\n" . tail_lines(slurp($ERROR_LOG, $mark), 40);
    nginx_stop();
    return 0;
}

# For flow tests: nginx_start({ config => ..., http_config => ... }) starts
# nginx (or keeps it if the config is the same; restart => 1 forces a fresh
# one). Returns 1, or 0 with the reason in diag (unless quiet => 1) and in
# nginx_error(). Sets the error log mark (before nginx's start-up lines).
sub nginx_start () {
    my ($sections, %o) = @_;
    $sections ||= {};
    my $ok = ensure_nginx(config_with($sections), $sections->{restart});
    say_diag($last_start_error) unless $ok || $o{quiet};
    return $ok;
}

# The version of the nginx under test (ESP_NGINX), as "1.30.4"; and whether
# it is at least the one given: for what nginx itself does differently.
my $NGINX_VERSION;

sub nginx_version () {
    return $NGINX_VERSION //= do {
        my ($v) = (`$NGINX -v 2>&1` // '') =~ m{nginx/(\d+\.\d+\.\d+)};
        $v // '0.0.0';
    };
}

sub nginx_version_ge () {
    my ($want) = @_;
    my $num = sub { sprintf '%03d%03d%03d', split /\./, $_[0] };
    return $num->(nginx_version()) ge $num->($want) ? 1 : 0;
}

sub nginx_error () {
    return $last_start_error;
}

sub child_pids () {
    my ($parent) = @_;
    my @pids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        my $s = slurp($stat);
        push @pids, $1 if $s =~ /^(\d+) .*\) \S+ (\d+) /s && $2 == $parent;
    }
    return @pids;
}

# nginx_reload() or nginx_reload({ config => ... }): HUP with the (new)
# config, then wait until the old workers are gone and new ones run.
# Returns 1, or 0 if nginx refused the config (reason in diag, unless
# quiet => 1, and in nginx_error()).
sub nginx_reload () {
    my ($sections, %o) = @_;
    my $master = read_pid();
    if (!alive($master)) {
        $last_start_error = "nginx_reload: nginx is not running";
        say_diag($last_start_error) unless $o{quiet};
        return 0;
    }
    my $conf = $sections ? config_with($sections) : $running_conf;
    spurt("$PREFIX/conf/nginx.conf", $conf);
    my $mark = file_size($ERROR_LOG);
    my %old = map { $_ => 1 } child_pids($master);
    kill 'HUP', $master;
    my $done = poll(10, sub {
        my $log = slurp($ERROR_LOG, $mark);
        return 'failed' if $log =~ /\[emerg\]/;
        my @now = child_pids($master);
        return (grep { $old{$_} } @now) || !(grep { !$old{$_} } @now) ? 0 : 'ok';
    });
    if (($done || '') ne 'ok') {
        $last_start_error = "nginx_reload: "
            . ($done ? 'nginx refused the new config' : 'old workers still running after 10 s')
            . "\n" . tail_lines(slurp($ERROR_LOG, $mark), 20);
        say_diag($last_start_error) unless $o{quiet};
        return 0;
    }
    $running_conf = $conf;
    return 1;
}

# ---------------------------------------------------------------------------
# Error log

sub error_log_mark () {
    $user_log_mark = file_size($ERROR_LOG);
    return $user_log_mark;
}

sub error_log_since_mark () {
    my ($mark) = @_;
    return slurp($ERROR_LOG, $mark // $user_log_mark);
}

# error_log_wait(qr/.../ or 'substring', $timeout = 2): true once the error
# log has a match after the mark.
sub error_log_wait () {
    my ($pat, $timeout) = @_;
    return poll($timeout // 2, sub { log_has(error_log_since_mark(), $pat) });
}

sub log_has () {
    my ($text, $pat) = @_;
    return ref $pat eq 'Regexp' ? ($text =~ $pat ? 1 : 0) : index($text, $pat) >= 0;
}

# ---------------------------------------------------------------------------
# Stand-in Exchange logs

sub backend_files () {
    return glob "$RUN/exchange/*.jsonl";
}

sub backend_mark () {
    $user_backend_mark = { map { $_ => file_size($_) } backend_files() };
    return $user_backend_mark;
}

sub read_backend () {
    my ($mark) = @_;
    my $json = JSON::PP->new;
    my @entries;
    for my $file (backend_files()) {
        my $data = slurp($file, $mark ? $mark->{$file} // 0 : 0);
        $data =~ s/[^\n]*\z//;          # a line being written
        for my $line (split /\n/, $data) {
            next unless $line =~ /\S/;
            my $e = eval { $json->decode($line) };
            push @entries, $e if ref $e eq 'HASH';
        }
    }
    return \@entries;
}

sub backend_log () {
    return read_backend(undef);
}

sub backend_log_since_mark () {
    my ($mark) = @_;
    return read_backend($mark // $user_backend_mark);
}

sub entry_header () {
    my ($entry, $name) = @_;
    return map { $_->[1] } grep { lc $_->[0] eq lc $name } @{ $entry->{headers} || [] };
}

# Entries carrying this test id; with no id (--- no_test_id), entries
# carrying none.
sub entries_with_id () {
    my ($id, $mark) = @_;
    return grep {
        my @ids = entry_header($_, $TEST_ID_HEADER);
        defined $id ? grep { $_ eq $id } @ids : !@ids;
    } @{ read_backend($mark) };
}

# backend_entries_for($response or $test_id, wait => 1): what the stand-in
# Exchange servers logged for a request sent by ua().
sub backend_entries_for () {
    my ($what, %o) = @_;
    my $id = ref $what ? $what->request->header($TEST_ID_HEADER) : $what;
    return () unless $id;
    my @e;
    poll($o{wait} // 1, sub { @e = entries_with_id($id); scalar @e });
    return @e;
}

sub backend_request_line () {
    my ($e) = @_;
    return join ' ', $e->{method} // '', $e->{uri} // '';
}

sub backend_header_lines () {
    my ($e) = @_;
    return map { "$_->[0]: $_->[1]" } @{ $e->{headers} || [] };
}

sub describe_entries () {
    my @e = @_;
    return "  (no backend entries)\n" unless @e;
    return join '', map {
        my $e = $_;
        "  backend " . ($e->{backend} // '?') . ': ' . backend_request_line($e)
        . ' -> ' . ($e->{status} // '?') . "\n"
        . join('', map { "    $_\n" } backend_header_lines($e))
        . (length($e->{body} // '') ? "    body: " . substr($e->{body}, 0, 500) . "\n" : '');
    } @e;
}

# ---------------------------------------------------------------------------
# User agent for flows

sub url () {
    my ($path, %o) = @_;
    my $tls = $o{tls} // 1;
    my $host = $o{host} // $DEFAULT_HOST;
    return ($tls ? 'https' : 'http') . "://$host:" . ($tls ? $TLS_PORT : $PORT)
           . ($path // '/');
}

# An LWP::UserAgent with a cookie jar, no redirects followed, verifying the
# front certificate against the test CA; every request gets a fresh
# X-Esp-Test-Id (see backend_entries_for).
sub ua () {
    my (%o) = @_;
    my $ua = LWP::UserAgent->new(
        agent        => $o{agent} // 'EspTest',
        max_redirect => $o{max_redirect} // 0,
        timeout      => $o{timeout} // 10,
        keep_alive   => $o{keep_alive} // 0,
        cookie_jar   => $o{cookie_jar} // HTTP::Cookies->new,
        ssl_opts     => { SSL_ca_file => $CA, verify_hostname => 1 },
    );
    $ua->add_handler(request_prepare => sub {
        my ($req) = @_;
        $req->header($TEST_ID_HEADER => new_test_id()) unless $req->header($TEST_ID_HEADER);
        return;
    });
    return $ua;
}

# ---------------------------------------------------------------------------
# Raw HTTP client

# Sends $data to nginx, returns { responses => [HTTP::Response...],
# state => 'ok' | 'closed' | 'timeout' | 'error: ...', raw => bytes }.
sub http_exchange () {
    my (%o) = @_;
    my $sock;
    if ($o{tls}) {
        my $sni = $o{sni};
        $sock = IO::Socket::SSL->new(
            PeerAddr => '127.0.0.1', PeerPort => $TLS_PORT, Timeout => $o{timeout},
            SSL_hostname => (length $sni ? $sni : ''),
            SSL_ca_file => $CA,
            SSL_verify_mode => $o{insecure} ? SSL_VERIFY_NONE : SSL_VERIFY_PEER,
            SSL_verifycn_scheme => 'http',
            SSL_verifycn_name => $sni || $DEFAULT_HOST,
        );
        return { responses => [], raw => '',
                 state => "error: TLS connect: $SSL_ERROR" } unless $sock;
    } else {
        $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $PORT,
                                      Proto => 'tcp', Timeout => $o{timeout})
            or return { responses => [], raw => '', state => "error: connect: $!" };
    }
    local $SIG{PIPE} = 'IGNORE';
    my $data = $o{data};
    while (length $data) {
        my $n = syswrite $sock, $data;
        last unless $n;                 # the server closed early: read its answer
        substr($data, 0, $n, '');
    }
    my ($buf, $eof, $state) = ('', 0, 'ok');
    my $sel = IO::Select->new($sock);
    my $deadline = time + $o{timeout};
    while (1) {
        my ($res, $complete) = parse_responses($buf, $o{methods}, $eof);
        last if $complete || $eof;
        my $left = $deadline - time;
        if ($left <= 0) { $state = 'timeout'; last }
        next if !($sock->can('pending') && $sock->pending) && !$sel->can_read($left);
        my $n = sysread $sock, $buf, 65536, length $buf;
        if (!defined $n) {
            next if $!{EAGAIN} || $!{EINTR} || ($o{tls} && $SSL_ERROR == SSL_WANT_READ);
            $eof = 1;                   # a reset counts as the end
        } elsif ($n == 0) {
            $eof = 1;
        }
    }
    close $sock;
    my ($responses) = parse_responses($buf, $o{methods}, 1);
    $state = 'closed' if $state eq 'ok' && !length $buf;
    return { responses => $responses, state => $state, raw => $buf };
}

# Parses as many HTTP responses as $buf holds, one per entry of @$methods.
# Returns (\@responses, $all_complete).
sub parse_responses () {
    my ($buf, $methods, $eof) = @_;
    my @res;
    my $pos = 0;
    for (my $i = 0; $i < @$methods; ) {
        my $rest = substr $buf, $pos;
        $rest =~ /\A(.*?\r?\n\r?\n)/s or return (\@res, 0);
        my $head = $1;
        my $r = HTTP::Response->parse($head);
        $pos += length $head;
        my $code = $r->code // 0;
        next if $code >= 100 && $code < 200 && $code != 101;   # interim
        my $body_start = $pos;
        my $te = $r->header('Transfer-Encoding') // '';
        my $cl = $r->header('Content-Length');
        my ($body, $done);
        if ($methods->[$i] eq 'HEAD' || $code == 204 || $code == 304 || $code < 200) {
            ($body, $done) = ('', 1);
        } elsif ($te =~ /chunked/i) {
            ($body, $done, my $used) = dechunk(substr $buf, $body_start);
            $pos = $body_start + $used;
        } elsif (defined $cl && $cl =~ /^\d+$/) {
            $body = substr $buf, $body_start, $cl;
            $done = length $body == $cl;
            $pos = $body_start + length $body;
        } else {
            $body = substr $buf, $body_start;
            $done = $eof;
            $pos = length $buf;
        }
        $r->content($body);
        push @res, $r;
        return (\@res, 0) unless $done;
        $i++;
    }
    return (\@res, 1);
}

# Returns (body, complete, bytes used).
sub dechunk () {
    my ($data) = @_;
    my ($body, $pos) = ('', 0);
    while (1) {
        substr($data, $pos) =~ /\A([0-9a-fA-F]+)[^\r\n]*\r?\n/ or return ($body, 0, $pos);
        my $size = hex $1;
        my $start = $pos + length $&;
        if ($size == 0) {
            # trailers, then an empty line
            my $t = substr $data, $start;
            return ($body, 1, $start + length $1)
                if $t =~ /\A((?:[^\r\n]+\r?\n)*\r?\n)/;
            return ($body, 0, $pos);
        }
        return ($body . substr($data, $start), 0, length $data)
            if length($data) < $start + $size + 2;
        $body .= substr $data, $start, $size;
        $pos = $start + $size;
        $pos += substr($data, $pos, 2) eq "\r\n" ? 2 : 1;
    }
}

# ---------------------------------------------------------------------------
# Blocks

sub add_block_preprocessor () {
    push @preprocessors, @_;
}

# First value of a section, or undef; present-but-empty sections give ''.
sub sec () {
    my ($block, $name) = @_;
    my $v = $block->{$name};
    return undef unless $v;
    return $v->[0];
}

sub has () {
    return defined sec(@_);
}

# A section as a list of patterns/lines: text gives its non-empty lines,
# an eval section gives its values (array refs are flattened).
sub sec_list () {
    my ($block, $name) = @_;
    my $v = $block->{$name};
    return () unless $v;
    return map {
        ref $_ eq 'ARRAY' ? @$_ : ref $_ ? $_ : grep { /\S/ } split /\n/, $_
    } @$v;
}

sub eval_section () {
    my ($block, $name) = @_;
    my $code = sec($block, $name);
    my @v = eval "package main; no strict; $code";
    die "EspTest: --- $name failed: $@" if $@;
    return @v == 1 && ref $v[0] eq 'ARRAY' ? @{ $v[0] } : @v;
}

sub block_sections () {
    my ($block) = @_;
    my %s;
    for my $name (qw(main_config http_config config server_config no_module
                     workers log_level)) {
        $s{$name} = sec($block, $name) if has($block, $name);
    }
    return \%s;
}

# Each request: { data => bytes, method => 'GET' }; built once per block.
sub block_requests () {
    my ($block) = @_;
    $block->{_esp_id} //= new_test_id();
    $block->{_esp_requests} //= [make_requests($block)];
    return @{ $block->{_esp_requests} };
}

sub make_requests () {
    my ($block) = @_;
    if (has($block, 'raw_request') || has($block, 'raw_request_eval')) {
        my $raw = has($block, 'raw_request')
                ? subst_vars(sec($block, 'raw_request'))
                : join '', eval_section($block, 'raw_request_eval');
        $raw =~ s/\A([^\r\n]*\r?\n)/$1$TEST_ID_HEADER: $block->{_esp_id}\r\n/
            unless has($block, 'no_test_id');
        my ($method) = $raw =~ /\A\s*(\S+)/;
        return ({ data => $raw, method => $method // 'GET' });
    }
    my @texts;
    if (has($block, 'pipelined_requests')) {
        my $v = $block->{pipelined_requests};
        @texts = map { ref $_ eq 'ARRAY' ? @$_ : split /\n/, $_ } @$v;
    } elsif (has($block, 'request_eval')) {
        @texts = ((eval_section($block, 'request_eval'))[0]);
    } elsif (has($block, 'request')) {
        @texts = (subst_vars(sec($block, 'request')));
    }
    my $keepalive = has($block, 'keepalive');
    return map {
        build_request($block, $texts[$_],
                      $_ < $#texts || $keepalive ? 'keep-alive' : 'close')
    } 0 .. $#texts;
}

sub build_request () {
    my ($block, $text, $connection) = @_;
    my ($line, $body) = split /\n/, $text, 2;
    $body //= '';
    $body =~ s/\n\z//;
    $line =~ s/\r\z//;
    my ($method, $uri, $proto) = split ' ', $line;
    die "EspTest: bad request line '$line'\n" unless defined $uri;
    $proto //= 'HTTP/1.1';

    my @extra;
    my %given;
    for my $h (split /\n/, subst_vars(sec($block, 'more_headers') // '')) {
        next unless $h =~ /\S/;
        if ($h =~ /^!\s*([\w-]+)\s*$/) {         # "!Host": send no default Host
            $given{lc $1} = 1;
            next;
        }
        my ($name) = $h =~ /^([^:]+):/ or die "EspTest: bad header line '$h'\n";
        $given{lc $name} = 1;
        push @extra, $h;
    }
    my @h;
    push @h, "Host: $DEFAULT_HOST" unless $given{host};
    push @h, "$TEST_ID_HEADER: $block->{_esp_id}"
        unless $given{lc $TEST_ID_HEADER} || has($block, 'no_test_id');
    push @h, "Connection: $connection" unless $given{connection};
    push @h, @extra;
    push @h, 'Content-Length: ' . length($body)
        if length $body && !$given{'content-length'} && !$given{'transfer-encoding'};
    return { data => join('', map { "$_\r\n" } "$method $uri $proto", @h) . "\r\n" . $body,
             method => $method };
}

sub is_must_die () {
    return has($_[0], 'must_die');
}

# The list of checks a block makes: [ what, sub ($ctx) { (ok, diag) } ].
# It depends on the block's sections only, so the count is known upfront.
sub block_checks () {
    my ($block) = @_;
    my @checks;
    my $n_res = is_must_die($block) ? 0 : scalar block_requests($block);

    if (is_must_die($block)) {
        push @checks, ['nginx -t fails', sub {
            my ($c) = @_;
            ($c->{t_rc} != 0, "nginx -t succeeded:\n$c->{t_out}");
        }];
    }

    if (has($block, 'error_code')) {
        my @want = per_response($block, 'error_code', $n_res);
        for my $i (0 .. $#want) {
            push @checks, [label('status', $i, $n_res), sub {
                my ($c) = @_;
                my $got = $c->{responses}[$i] ? $c->{responses}[$i]->code : $c->{state};
                ($got eq $want[$i], "status: got '$got', expected '$want[$i]'", 'response');
            }];
        }
    }

    for my $kind (qw(response_body response_body_like response_body_unlike)) {
        next unless has($block, $kind);
        my @want = per_response($block, $kind, $n_res);
        for my $i (0 .. $#want) {
            my $want = $want[$i];
            push @checks, [label($kind =~ s/_/ /gr, $i, $n_res), sub {
                my ($c) = @_;
                my $r = $c->{responses}[$i] or return (0, "no response ($c->{state})", 'response');
                my $got = $r->content;
                my $ok = $kind eq 'response_body' ? $got eq $want
                       : $kind eq 'response_body_like' ? $got =~ to_re($want)
                       : $got !~ to_re($want);
                ($ok, "body " . ($kind eq 'response_body' ? "expected:\n$want\n" : "pattern: $want\n")
                      . "got:\n" . substr($got, 0, 2000), 'response');
            }];
        }
    }

    for my $kind (qw(response_headers response_headers_like)) {
        for my $line (sec_list($block, $kind)) {
            my $spec = subst_vars($line);
            for my $i (0 .. ($n_res || 1) - 1) {
                push @checks, [label("header $spec", $i, $n_res), sub {
                    my ($c) = @_;
                    my $r = $c->{responses}[$i] or return (0, "no response ($c->{state})", 'response');
                    header_check($r, $spec, $kind eq 'response_headers_like');
                }];
            }
        }
    }

    # must_die: the log is what "nginx -t" printed
    my $t = is_must_die($block);
    for my $pat (sec_list($block, 'error_log')) {
        push @checks, ["error log has " . pat_name($pat), sub {
            my ($c) = @_;
            my $text = $t ? $c->{t_out} : wait_block_log($c, $pat);
            (log_has($text, $pat), "not in the error log: " . pat_name($pat)
             . ($t ? "\nnginx -t said:\n$text" : ''), $t ? undef : 'log');
        }];
    }
    for my $pat (sec_list($block, 'no_error_log')) {
        push @checks, ["error log has no " . pat_name($pat), sub {
            my ($c) = @_;
            my $text = $t ? $c->{t_out} : settled_block_log($c);
            (!log_has($text, $pat), "found in the error log: " . pat_name($pat)
             . ($t ? "\nnginx -t said:\n$text" : ''), $t ? undef : 'log');
        }];
    }
    if (!is_must_die($block) && !has($block, 'allow_alert')) {
        push @checks, ['no alert/crit/emerg/crash in the error log', sub {
            my ($c) = @_;
            my @bad = grep { /\[(?:alert|crit|emerg)\]|exited on signal/ }
                      split /\n/, settled_block_log($c);
            (!@bad, "unexpected lines:\n" . join("\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)]));
        }];
    }

    push @checks, backend_checks($block) unless is_must_die($block);

    if (!@checks) {
        push @checks, [$n_res ? 'got a response' : 'nginx started', sub {
            my ($c) = @_;
            return (1) unless $n_res;
            (scalar @{ $c->{responses} } == $n_res, "no complete response ($c->{state})", 'response');
        }];
    }
    return @checks;
}

sub backend_checks () {
    my ($block) = @_;
    my @checks;
    my $expect = sec($block, 'backend');
    for my $s (qw(backend_request_like backend_headers_like backend_headers_unlike backend_body)) {
        $expect //= 'reached' if has($block, $s);
    }
    return () unless defined $expect;
    $expect =~ s/^\s+|\s+$//g;
    die "EspTest: --- backend: must be 'none' or 'reached', not '$expect'\n"
        unless $expect =~ /^(?:none|reached)$/;

    push @checks, ["backend $expect", sub {
        my ($c) = @_;
        my @e = backend_entries($c, $expect eq 'reached');
        return $expect eq 'none'
            ? (!@e, "the request reached Exchange:\n" . describe_entries(@e))
            : (scalar @e, "the request did not reach Exchange (no entry with "
                          . ($c->{id} ? "$TEST_ID_HEADER: $c->{id})" : "no $TEST_ID_HEADER)"));
    }];
    for my $re (sec_list($block, 'backend_request_like')) {
        push @checks, ["backend request line like $re", sub {
            my ($c) = @_;
            my @e = backend_entries($c, 1);
            (scalar(grep { backend_request_line($_) =~ to_re($re) } @e),
             "no backend request line matches /$re/:\n" . describe_entries(@e));
        }];
    }
    for my $kind (qw(backend_headers_like backend_headers_unlike)) {
        for my $re (sec_list($block, $kind)) {
            my $like = $kind eq 'backend_headers_like';
            push @checks, ["backend headers " . ($like ? 'have' : 'lack') . " /$re/", sub {
                my ($c) = @_;
                my @e = backend_entries($c, 1);
                my $hits = grep { $_ =~ to_re($re) } map { backend_header_lines($_) } @e;
                return $like
                    ? ($hits && @e, "no header line Exchange received matches /$re/:\n" . describe_entries(@e))
                    : (!$hits && @e, (@e ? "a header line Exchange received matches /$re/:\n"
                                         : "the request did not reach Exchange\n") . describe_entries(@e));
            }];
        }
    }
    if (has($block, 'backend_body')) {
        my $want = sec($block, 'backend_body');
        push @checks, ['backend body', sub {
            my ($c) = @_;
            my @e = backend_entries($c, 1);
            (scalar(grep { ($_->{body} // '') eq $want } @e),
             "expected body:\n$want\n" . describe_entries(@e));
        }];
    }
    return @checks;
}

sub per_response () {
    my ($block, $name, $n) = @_;
    my $v = sec($block, $name);
    $n ||= 1;
    return ref $v eq 'ARRAY' ? @$v : ($v) x $n;
}

sub label () {
    my ($what, $i, $n) = @_;
    return $n > 1 ? "$what (response " . ($i + 1) . ")" : $what;
}

sub to_re () {
    my ($p) = @_;
    return ref $p eq 'Regexp' ? $p : qr/$p/s;
}

sub pat_name () {
    my ($p) = @_;
    return ref $p eq 'Regexp' ? "$p" : "'$p'";
}

sub header_check () {
    my ($r, $spec, $like) = @_;
    my $seen = "headers received:\n" . join("\n", map { "  $_" } split /\n/, $r->headers->as_string);
    if ($spec =~ /^!\s*(\S+)\s*$/) {
        my @v = $r->headers->header($1);
        return (!@v, "header $1 should be absent, got: @v\n$seen", 'response');
    }
    my ($name, $want) = $spec =~ /^([^:\s]+)\s*:\s?(.*)$/
        or return (0, "bad header check line '$spec'");
    my @v = $r->headers->header($name);
    return (0, "header $name is absent\n$seen", 'response') unless @v;
    my $ok = $like ? grep { $_ =~ to_re($want) } @v : grep { $_ eq $want } @v;
    return ($ok, "header $name: got " . join(' | ', map { "'$_'" } @v)
                 . ($like ? ", pattern /$want/" : ", expected '$want'") . "\n$seen", 'response');
}

# The error log written during this block; positive checks wait up to 1 s
# for their line, negative ones after a short settle.
sub wait_block_log () {
    my ($c, $pat) = @_;
    my $text;
    my $left = $c->{log_deadline} - time;
    poll($left > 0 ? $left : 0, sub {
        $text = slurp($ERROR_LOG, $c->{log_mark});
        log_has($text, $pat);
    });
    return $text;
}

sub settled_block_log () {
    my ($c) = @_;
    my $left = $c->{done_at} + 0.05 - time;
    sleep $left if $left > 0;
    return slurp($ERROR_LOG, $c->{log_mark});
}

sub backend_entries () {
    my ($c, $want_reached) = @_;
    if (!$c->{backend_done}) {
        if ($want_reached) {
            poll(1, sub { $c->{backend} = [entries_with_id($c->{id}, $c->{backend_mark})];
                          scalar @{ $c->{backend} } });
        } else {
            my $left = $c->{done_at} + 0.1 - time;
            sleep $left if $left > 0;
            $c->{backend} = [entries_with_id($c->{id}, $c->{backend_mark})];
        }
        $c->{backend_done} = 1;
    }
    return @{ $c->{backend} };
}

sub skip_reason () {
    my ($block) = @_;
    return 'AD fixture absent (ESP_NO_AD)' if has($block, 'skip_no_ad') && !ad_present();
    return 'no stand-in Exchange' if has($block, 'skip_no_exchange') && !exchange_present();
    if (!has($block, 'no_module') && !-f $MODULE && $ENV{ESP_NO_MODULE_OK}) {
        return 'no module (ESP_NO_MODULE_OK)';
    }
    return undef;
}

sub all_blocks () {
    my @blocks = blocks();
    for my $block (grep { !$_->{_esp_prepared}++ } @blocks) {
        check_block($block);
        $_->($block) for @preprocessors;
    }
    return @blocks;
}

# Mistakes in a test file stop it, rather than becoming odd checks.
sub check_block () {
    my ($block) = @_;
    my $name = $block->name // '(unnamed block)';
    my %seen;
    for my $sec (@{ $block->{_section_order}[0] || [] }) {
        die "EspTest: $name: section '$sec' appears twice (put all values in one section)\n"
            if $seen{$sec}++;
        for my $v (@{ $block->{$sec} || [] }) {
            die "EspTest: $name: --- $sec eval failed: $v\n"
                if defined $v && !ref $v && $v =~ /\bat \(eval \d+\) line \d+/;
        }
    }
}

sub plan_auto () {
    my $n = 0;
    $n += block_checks($_) for all_blocks();
    Test::More::plan(tests => $n);
}

# Ends a file that does not plan: also tells Test::Base a plan exists.
sub done_testing () {
    my $tb = Test::More->builder;
    Test::More::plan('no_plan') unless $tb->has_plan;
    Test::More::done_testing(@_);
}

sub run_blocks () {
    run_block($_) for all_blocks();
}

sub run_tests () {
    run_blocks();
    done_testing() unless Test::More->builder->has_plan;
}

sub run_block () {
    my ($block) = @_;
    my $name = $block->name;
    my @checks = block_checks($block);

    if (my $why = skip_reason($block)) {
        Test::More->builder->skip("$name: $why") for @checks;
        return;
    }
    if (has($block, 'init')) {
        eval "package main; no strict; " . sec($block, 'init');
        die "EspTest: $name: --- init failed: $@" if $@;
    }
    if (!has($block, 'no_module') && !-f $MODULE) {
        my $why = "ESP_MODULE ('$MODULE') is not a file";
        Test::More::ok(0, "$name - $_->[0]") or say_diag($why) for @checks;
        return;
    }

    my $conf = config_with(block_sections($block));
    my %c = (id => has($block, 'no_test_id') ? undef : $block->{_esp_id},
             responses => [], state => 'not sent');
    my $failed_start;

    if (is_must_die($block)) {
        spurt("$PREFIX/conf/nginx.conf", $conf);
        @c{qw(t_rc t_out)} = run_nginx('-t');
    } else {
        $c{backend_mark} = { map { $_ => file_size($_) } backend_files() };
        my $up = ensure_nginx($conf, has($block, 'restart_nginx'));
        $c{log_mark} = $user_log_mark;
        if ($up) {
            my @reqs = block_requests($block);
            if (@reqs) {
                my $host = $reqs[0]{data} =~ /^Host:[ \t]*([^\r\n:]*)/mi ? $1 : $DEFAULT_HOST;
                my $sni = sec($block, 'tls_sni') // $host;
                my $r = http_exchange(
                    data => join('', map { $_->{data} } @reqs),
                    methods => [map { uc $_->{method} } @reqs],
                    tls => has($block, 'tls'), sni => $sni,
                    insecure => has($block, 'tls_insecure'),
                    timeout => sec($block, 'timeout') || 10,
                );
                %c = (%c, %$r, sent => join('', map { $_->{data} } @reqs));
            }
            my $wait = sec($block, 'wait');
            sleep $wait if $wait;
        } else {
            $failed_start = $last_start_error;
        }
        $c{done_at} = time;
        $c{log_deadline} = $c{done_at} + 1;
    }

    # failures point at the test file's run_tests() line, not at this file
    my $up = 0;
    $up++ while ((caller $up)[0] // '') eq __PACKAGE__;
    local $Test::Builder::Level = $Test::Builder::Level + $up + 1;

    my %shown;
    for my $check (@checks) {
        my ($what, $code) = @$check;
        my ($ok, $why, $show) = $failed_start ? (0) : $code->(\%c);
        next if Test::More::ok($ok, "$name - $what");
        say_diag($why) if defined $why;
        if ($failed_start && !$shown{start}++) {
            say_diag($failed_start);
        } elsif (($show // '') eq 'response' && !$shown{response}++) {
            say_diag(describe_exchange(\%c));
        } elsif (($show // '') eq 'log' && !$shown{log}++) {
            say_diag("--- error log during this block (last 40 lines; all in $ERROR_LOG, kept with ESP_KEEP=1):\n",
                     tail_lines(slurp($ERROR_LOG, $c{log_mark}), 40));
        }
    }
}

sub describe_exchange () {
    my ($c) = @_;
    my $sent = $c->{sent} // '';
    $sent = substr($sent, 0, 2000) . "...\n" if length $sent > 2000;
    my $got = length($c->{raw} // '') ? $c->{raw} : "(nothing: $c->{state})";
    $got = substr($got, 0, 3000) . "...\n" if length $got > 3000;
    return "--- request sent:\n$sent\n--- response received:\n$got\n";
}

1;
