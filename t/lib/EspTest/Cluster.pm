package EspTest::Cluster;

# Two gateway nodes and a Redis for the cluster tests (t/034, t/035): node
# A is the harness's own nginx; node B a second nginx with the same config
# on other ports and its own prefix (its own shared zone), both sharing
# the key files.

use strict;
use warnings;
use Exporter 'import';
use File::Path qw(make_path remove_tree);
use IO::Socket::INET;
use Time::HiRes qw(sleep time);
use EspTest;

our @EXPORT = qw(redis_start redis_stop redis_cli node_b_start node_b_stop
                 node_b_url node_b_log node_b_port);

my $ROOT = $ENV{ESP_ROOT} || '.';
my $RUN = $ENV{ESP_RUN} || '/tmp/esp-run';
my $NGINX = $ENV{ESP_NGINX} || '/usr/sbin/nginx';
my $REDIS_SH = "$ROOT/t/fixtures/redis.sh";
my (%redis_up, $b_prefix);
my ($B_PORT, $B_TLS) = &EspTest::free_ports(2);

END {
    local $?;
    node_b_stop();
    system($REDIS_SH, 'stop', $_) for grep { $redis_up{$_} } keys %redis_up;
}

sub redis_start {
    my ($name, $port, @opts) = @_;
    my $ok = system($REDIS_SH, 'start', $name, $port, @opts) == 0;
    $redis_up{$name} = 1;
    return $ok && &EspTest::poll(5, sub {
        IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp')
    });
}

sub redis_stop {
    my ($name) = @_;
    system($REDIS_SH, 'stop', $name);
    delete $redis_up{$name};
}

sub redis_cli {
    my ($port, @args) = @_;
    my $out = `redis-cli -h 127.0.0.1 -p $port @args 2>&1`;
    chomp $out;
    return $out;
}

sub node_b_port { return $B_PORT }

sub node_b_url {
    my ($path) = @_;
    return "https://mail.contoso.com:$B_TLS$path";
}

sub node_b_log {
    return &EspTest::slurp("$b_prefix/logs/error.log") // '';
}

# node B with the config node A got from these sections
sub node_b_start {
    my ($sections) = @_;
    node_b_stop();
    $b_prefix = "$RUN/nginx/" . &EspTest::file_tag() . '-node-b';
    remove_tree($b_prefix);
    make_path("$b_prefix/conf", "$b_prefix/logs",
              map { "$b_prefix/temp/$_" } qw(client_body proxy fastcgi uwsgi scgi));
    my $conf = config_with($sections);
    my ($p, $t) = (nginx_port(), nginx_tls_port());
    $conf =~ s/listen 127\.0\.0\.1:$p;/listen 127.0.0.1:$B_PORT;/;
    $conf =~ s/listen 127\.0\.0\.1:$t ssl;/listen 127.0.0.1:$B_TLS ssl;/;
    &EspTest::spurt("$b_prefix/conf/nginx.conf", $conf);
    system($NGINX, '-p', "$b_prefix/", '-c', 'conf/nginx.conf', '-e', 'logs/error.log') == 0
        or return 0;
    return &EspTest::poll(10, sub {
        IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $B_TLS, Proto => 'tcp')
    });
}

sub node_b_stop {
    return unless $b_prefix;
    my $pid = &EspTest::slurp("$b_prefix/logs/nginx.pid") // '';
    if ($pid =~ /^(\d+)/) {
        my $n = $1;
        kill 'QUIT', $n;
        &EspTest::poll(5, sub { !kill 0, $n }) or kill 'KILL', $n;
    }
}

1;
