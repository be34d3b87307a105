# The directory client (src/ngx_esp_ldap.c) against a domain controller that
# misbehaves on the wire (t/fixtures/fake-dc.py): garbage, oversized or
# undecodable messages, wrong message IDs, a notice of disconnection, busy and
# unwilling answers, one byte at a time, silence before and after TLS, and a
# pooled connection that died unnoticed.  Each fake DC is listed first, the
# real dc2 second: a broken DC costs at most a failover, never a crash.

use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;
use JSON::PP ();
use MIME::Base64 qw(encode_base64);
use POSIX ();
use Time::HiRes qw(time sleep);

if (!$ENV{ESP_MODULE} || !-f $ENV{ESP_MODULE} || !ad_present()) {
    Test::More::plan(skip_all => 'needs the module (ESP_MODULE) and the AD fixture');
}

my $RUN = $ENV{ESP_RUN} || '/tmp/esp-run';
my $FAKE = '127.0.0.4';
my $BASE = 7601;
my @MODES = qw(ok reuse-dead busy unwilling garbage huge drip wrongid notice
               entries silent tcp-silent badber);
my %port = map { $MODES[$_] => $BASE + $_ } 0 .. $#MODES;
my $DC2_URL = 'ldaps://' . ad_env('AD_DC2') . ':636';

ad_users();
my $users = JSON::PP->new->utf8->decode(EspTest::slurp("$RUN/ad/users.json"));
my $BOB = $users->{bob}{password};

# the fake DCs use a certificate of the other test CA, for 127.0.0.4
my $ca = start_fake_dcs($BASE);
ok($ca, 'the fake DCs listen');

my ($domains, $locations) = ("esp_session_key \$ESP_RUN/keys/session.key;\n", '');
for my $mode (@MODES) {
    (my $name = $mode) =~ s/-/_/g;
    $domains .= sso_domain_config(
        name => $name, ldap_timeout => '1s', ldap_connections => 1,
        ldap_ca_certificate => $ca,
        ldap_server => ["ldaps://$FAKE:$port{$mode}", $DC2_URL]) . "\n";
    $locations .= <<"CONF";
    location /$mode/ {
        esp $name;
        esp_client_auth basic;
        proxy_pass http://127.0.0.1:\$TEST_NGINX_PORT/fine/;
    }
CONF
}

ok(nginx_start({ http_config => $domains, config => <<"CONF" }), 'nginx starts');
    esp_allowed_hosts mail.contoso.com;
    esp_basic_cache 0;          # every login asks the directory
$locations
    location /fine/ {
        return 200 "fine\\n";
    }
CONF

# a fake that answers: the login is decided by it
for my $mode (qw(ok drip)) {
    my ($res, $line) = login($mode);
    is($res->code, 200, "$mode: 200");
    is($line->{dc}, "ldaps://$FAKE:$port{$mode}", "$mode: answered by the fake DC");
}

# a pooled connection that died unnoticed: one fresh try, no failover
{
    my ($res, $line) = login('reuse-dead');
    is($line->{dc}, "ldaps://$FAKE:$port{'reuse-dead'}", 'reuse-dead: first login, fresh connection');
    ($res, $line) = login('reuse-dead');
    is($res->code, 200, 'reuse-dead: second login succeeds');
    is($line->{dc}, "ldaps://$FAKE:$port{'reuse-dead'}", 'reuse-dead: on the same DC');
    ok(error_log_wait('was dead, retrying on a fresh one'),
       'reuse-dead: retried once on a fresh connection');
    unlike(error_log_since_mark(), qr/is down/, 'reuse-dead: the DC was not marked down');
}

# a broken DC: failover to dc2, with the reason in the log
my %why = (
    busy       => qr/answered the bind of "bob\@contoso\.local" with 51 \(Server is busy\)/,
    unwilling  => qr/answered the bind of "bob\@contoso\.local" with 53 \(Server is unwilling to perform\) "00002035: unwilling\?\?\?x"/,
    garbage    => qr/sent an invalid or oversized LDAP message/,
    huge       => qr/sent an invalid or oversized LDAP message/,
    wrongid    => qr/answered message 2, expected 1/,
    notice     => qr/disconnects: 52 "shutting down"/,
    silent     => qr/is down: timed out after 1000ms/,
    'tcp-silent' => qr/is down: timed out after 1000ms/,
    badber     => qr/sent an LDAP message that cannot be decoded/,
);

for my $mode (sort keys %why) {
    my ($res, $line, $took) = login($mode);
    is($res->code, 200, "$mode: the login succeeds");
    is($line->{dc}, $DC2_URL, "$mode: answered by dc2");
    ok(error_log_wait($why{$mode}), "$mode: the error log says why");
    cmp_ok($took, '<', 2.5, "$mode: within ldap_timeout and a bit");

    if ($mode eq 'unwilling') {
        unlike(error_log_since_mark(), qr/is down/,
               'unwilling: a DC that is unwilling is not marked down');
    }
}

# Group checks.  The user search may answer in pieces larger than the first
# read buffer, with a referral (not chased) and sizeLimitExceeded; and the
# group check is made for whoever the bind authenticated, as AD resolves the
# name, not for anyone else the name could match.
SKIP: {
    my $glocations = '';
    for my $mode (qw(ok entries twins ambiguous)) {
        $glocations .= <<"CONF";
    location /g-$mode/ {
        esp $mode;
        esp_client_auth basic;
        esp_permitted_groups "CN=g,DC=contoso,DC=local";
        proxy_pass http://127.0.0.1:\$TEST_NGINX_PORT/fine/;
    }
CONF
    }
    my %g = (http_config => $domains, config => <<"CONF");
    esp_allowed_hosts mail.contoso.com;
    esp_basic_cache 0;          # every login asks the directory
$glocations
    location /fine/ {
        return 200 "fine\\n";
    }
CONF
    skip 'esp_permitted_groups is not implemented yet', 9
        unless nginx_start(\%g, quiet => 1);

    my ($res, $line) = login('g-ok');
    is($res->code, 200, 'groups: a member is let in');

    ($res, $line) = login('g-entries');
    is($res->code, 200, 'entries: a referral, a 600 kB entry, sizeLimitExceeded: found');
    is($line->{dc}, "ldaps://$FAKE:$port{entries}", 'entries: answered by the fake DC');

    ($res, $line) = login('g-twins');
    isnt($res->code, 200, 'twins: the bound user (by UPN) is not a member: refused');
    is($line->{result}, 'not_permitted',
       'twins: a member whose sAMAccountName equals the UPN prefix does not count');
    ok(error_log_wait('check 1 groups of "CN=bob-x,CN=Users,DC=contoso,DC=local"'),
       'twins: the groups checked are those of the user the UPN names');

    ($res, $line) = login('g-ambiguous');
    isnt($res->code, 200, 'ambiguous: refused');
    is($line->{result}, 'not_permitted', 'ambiguous: not_permitted');
    ok(error_log_wait('"bob@contoso.local" names more than one user'),
       'ambiguous: the error log says why');
}

done_testing();

sub login {
    my ($mode) = @_;
    error_log_mark();
    my $t0 = time;
    my $res = ua(timeout => 20)->get(url("/$mode/", tls => 0),
        Authorization => 'Basic ' . encode_base64("bob:$BOB", ''));
    my $took = time - $t0;
    my $re = qr/esp: login user="bob"[^\n]*/;
    my %f;
    if (error_log_wait($re, 3)) {
        my ($l) = error_log_since_mark() =~ /($re)/;
        %f = $l =~ /\b(result|dc|ad_code)=([^\s,]+)/g;
    }
    return ($res, \%f, $took);
}
