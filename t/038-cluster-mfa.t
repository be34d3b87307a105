# The second factor on several nodes (esp_cluster with esp_mfa totp): what
# was used once on node A is used on node B too, through the cluster store.
#   1. a pending login (the hidden state between password and code) used on
#      node A, posted again to node B: refused, no session;
#   2. a TOTP code that opened a session on node A, typed again on node B
#      after a fresh password step there: refused as used;
#   3. the store holds the marks as keyed hashes only.

use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;
use EspTest::Cluster;
use EspTest::Mfa;
use Test::More;

use HTTP::Request::Common qw(POST);
use Time::HiRes qw(sleep time);

if ($ENV{ESP_NO_AD}) {
    plan skip_all => 'no AD fixture';
}

my $RUN = $ENV{ESP_RUN} || '/tmp/esp-run';
my $ROOT = $ENV{ESP_ROOT} || '.';
my $ATTR = 'carLicense';
my $TOTP_KEY = totp_key_file();
my ($RPORT) = EspTest::free_ports(1);

ok(redis_start('t038', $RPORT), 'redis-server starts') or BAIL_OUT('no redis-server');

my %PW = mfa_users(qw(mfa-k1 mfa-k2));
my %SECRET = map { ($_ => join '', map { chr int rand 256 } 1 .. 20) } keys %PW;

for my $u (keys %PW) {
    my $v = `/usr/bin/python3 $ROOT/t/fixtures/esp-totp.py seal $TOTP_KEY $u\@contoso.local @{[ unpack('H*', $SECRET{$u}) ]}`;
    chomp $v;
    mfa_ad(set => $u, $ATTR, $v);
}

my $DOMAIN = sso_domain_config(
    ldap_server => 'ldaps://' . ad_env('AD_DC1') . ':636',
    max_failed_auths => 5, reset_fail_timeout => '10m', unblock_timeout => '10m',
    totp_attribute => $ATTR, totp_key_file => $TOTP_KEY);

my %CONF = (
    http_config => "esp_session_key $RUN/keys/session.key;\n"
        . "esp_shared_zone esp038:1m;\n"
        . "esp_cluster redis://127.0.0.1:$RPORT prefix=t038 timeout=500ms;\n"
        . $DOMAIN,
    config => <<'CONF',
    esp contoso;
    esp_allowed_hosts mail.contoso.com;
    esp_mfa totp;
    location /ecp/ {
        esp_client_auth form;
        esp_server_auth none;
        proxy_pass https://exchange;
    }
CONF
);

ok(nginx_start(\%CONF), 'node A starts') or BAIL_OUT(nginx_error());
ok(node_b_start(\%CONF), 'node B starts') or BAIL_OUT('node B: ' . node_b_log());

sub on {
    my ($node, $path) = @_;
    return $node eq 'A' ? url($path) : node_b_url($path);
}

# the password step on a node: the code page
sub password_step {
    my ($ua, $node, $user) = @_;
    my $res = $ua->get(on($node, '/_esp/login?url=/ecp/'));
    return submit_form($ua, $res, username => "$user\@contoso.local", password => $PW{$user});
}

sub pending_of {
    my ($res) = @_;
    return ($res->decoded_content // '') =~ /name="mfa" value="([^"]*)"/ ? $1 : undef;
}

sub csrf_of {
    my ($res) = @_;
    return ($res->decoded_content // '') =~ /name="csrf" value="([0-9a-f]+)"/ ? $1 : undef;
}

sub post_code {
    my ($ua, $node, $pending, $csrf, $code) = @_;
    return $ua->request(POST(on($node, '/_esp/login'), Origin => on($node, ''),
                             Content => [mfa => $pending, code => $code, csrf => $csrf]));
}

sub session_of { return cookies($_[0])->{esp_session} }

# a step with room on both sides: not within 4 s of its end
sub fresh_step {
    sleep 1 while time() % 30 > 25;
    return step();
}

# ---------------------------------------- 1. a pending login, used on A, to B

{
    fresh_step();
    my $ua = ua();
    my $page = password_step($ua, 'A', 'mfa-k1');
    my ($pending, $csrf) = (pending_of($page), csrf_of($page));
    ok($pending && $csrf, 'pending: node A asks for the code') or diag(mask($page->as_string));

    my $code = totp($SECRET{'mfa-k1'}, step());
    my $res = post_code($ua, 'A', $pending, $csrf, $code);
    is($res->code, 302, 'pending: the code on node A opens a session');
    ok(session_of($ua), '... with a session cookie');

    sleep 0.5;
    my $thief = ua();
    $thief->cookie_jar->set_cookie(0, 'esp_csrf', $csrf, '/_esp/login', 'mail.contoso.com', undef,
                                   1, 1, undef, 0);
    $res = post_code($thief, 'B', $pending, $csrf, $code);
    is($res->code, 403, 'pending: the same pending login and code posted to node B: refused');
    ok(!session_of($thief), '... no session on node B');
    like(node_b_log(), qr/the pending login of user "mfa-k1\@contoso\.local" was used already/,
         '... node B says it was used already');
}

# ------------------------------------- 2. a used code, on B after a password

{
    fresh_step();
    my $ua = ua();
    my $page = password_step($ua, 'A', 'mfa-k2');
    my $s = step();
    my $code = totp($SECRET{'mfa-k2'}, $s);
    my $res = post_code($ua, 'A', pending_of($page), csrf_of($page), $code);
    is($res->code, 302, 'code: node A takes the code');

    sleep 0.5;
    my $ub = ua();
    $page = password_step($ub, 'B', 'mfa-k2');
    ok(pending_of($page), 'code: node B asks for the code after the password');
    $res = post_code($ub, 'B', pending_of($page), csrf_of($page), $code);
    is($res->code, 200, 'code: the code used on node A, typed on node B: the code page again');
    ok(!session_of($ub), '... no session on node B');
    like(node_b_log(), qr/user "mfa-k2\@contoso\.local" sent a TOTP code that was used already/,
         '... node B logs the code as used');

    # the next step's code (within the window) works on node B: the
    # refusal was the replay, not the node
    $page = $res;
    $res = post_code($ub, 'B', pending_of($page), csrf_of($page), totp($SECRET{'mfa-k2'}, $s + 1));
    is($res->code, 302, 'code: another code on node B opens a session');
}

# ------------------------------------ 3. the store saw it: the keyed hash only

{
    my $members = redis_cli($RPORT, 'ZRANGE', 't038:revoked', 0, -1);
    ok($members =~ /\S/, 'the cluster store holds the used marks');
    unlike($members, qr/mfa-k|contoso/i, '... as keyed hashes, never a user name');
}

node_b_stop();
redis_stop('t038');
nginx_stop();
done_testing();
