# Basic client authentication: the shared credential cache (a hit needs no
# domain controller, a miss or a wrong password always asks one, a reload
# keeps it), the gate's own lockout, and what Exchange gets to see.

use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;
use Test::More;

my $AD_SH = ($ENV{ESP_ROOT} || '.') . '/t/fixtures/ad.sh';
my %stopped;

sub ad_sh {
    my ($cmd, $dc) = @_;
    system("$AD_SH $cmd $dc >/dev/null 2>&1") == 0
        or diag("ad.sh $cmd $dc failed");
    $stopped{$dc} = ($cmd eq 'stop');
}

END {
    for my $dc (grep { $stopped{$_} } keys %stopped) {
        system("$AD_SH start $dc >/dev/null 2>&1");
    }
}

if ($ENV{ESP_NO_AD}) {
    plan skip_all => 'no AD fixture';
}

my $users = ad_users();
my ($alice, $bob, $carol) = @{$users}{qw(alice bob carol)};

my %conf = (
    http_config => "esp_session_key $ENV{ESP_RUN}/keys/session.key;\n"
                   . "esp_shared_zone esp:1m;\n"
                   . sso_domain_config(ldap_timeout => '2s',
                                       max_failed_auths => 3,
                                       reset_fail_timeout => '60s',
                                       unblock_timeout => '3s',
                                       ldap_down_retry => '1s'),
    config => <<'CONF',
    esp contoso;
    esp_allowed_hosts mail.contoso.com;
    location /Microsoft-Server-ActiveSync {
        esp_client_auth basic;
        esp_server_auth basic;
        esp_basic_cache 60s;
        proxy_pass https://exchange;
    }
    location /ews/ {
        esp_client_auth basic;
        esp_server_auth none;
        esp_basic_cache 60s;
        proxy_pass https://exchange;
    }
CONF
);

ok(nginx_start(\%conf), 'nginx starts');

my $ua = ua();

# one request; returns the status and the login line's dc= and result=
sub eas {
    my ($user, $password, $path) = @_;
    error_log_mark();
    my $res = $ua->get(url($path // '/Microsoft-Server-ActiveSync?Cmd=Ping&r=' . rand()),
                       Authorization => basic_auth($user, $password));
    error_log_wait(qr/esp: login user=/, 5);
    my ($dc, $result) = error_log_since_mark()
                        =~ /esp: login user=".*?" client=\S+ domain=\S+ dc=(\S+) result=(\w+)/;
    return ($res->code, $dc // 'no-line', $result // 'no-line', $res);
}

# --- the cache

my ($code, $dc, $result) = eas($alice->{upn}, $alice->{password});
is("$code $result", '200 ok', 'alice: first login binds');
like($dc, qr{^ldaps://}, 'alice: answered by a domain controller');

($code, $dc, $result) = eas($alice->{upn}, $alice->{password});
is("$code $dc $result", '200 cache ok', 'alice again: from the cache, no bind');

($code, $dc, $result) = eas(uc($alice->{upn}), $alice->{password});
is("$code $dc", '200 cache', 'the cache key ignores the case of the name');

($code, $dc, $result) = eas($alice->{upn}, 'Wrong-Password-1!');
is("$code $result", '401 bad_credentials', 'a wrong password for a cached user: 401');
like($dc, qr{^ldaps://}, 'a wrong password is never answered from the cache');

($code, $dc, $result) = eas($alice->{upn}, $alice->{password});
is("$code $dc", '200 cache', 'the wrong password did not evict the right one');

# Exchange sees the user's credentials with esp_server_auth basic, none with "none"

backend_mark();
my $res = $ua->get(url('/Microsoft-Server-ActiveSync?Cmd=Sync'),
                   Authorization => basic_auth($alice->{upn}, $alice->{password}));
is($res->code, 200, 'server auth basic: 200');
my @e = grep { $_->{uri} =~ /Cmd=Sync/ } @{ backend_log_since_mark() };
is((EspTest::entry_header($e[0], "Authorization"))[0], basic_auth($alice->{upn}, $alice->{password}),
   'server auth basic: Exchange got the verified credentials');

backend_mark();
$res = $ua->get(url('/ews/exchange.asmx'),
                Authorization => basic_auth($alice->{upn}, $alice->{password}));
@e = grep { $_->{uri} =~ m{/ews/} } @{ backend_log_since_mark() };
ok(@e && !EspTest::entry_header($e[0], "Authorization"),
   'server auth none: Exchange got no Authorization');

# --- both DCs stopped: the cache still answers, nothing else does

ad_sh(stop => 'dc1');
ad_sh(stop => 'dc2');

($code, $dc) = eas($alice->{upn}, $alice->{password});
is("$code $dc", '200 cache', 'DCs down: the cached user still gets in');

($code, $dc, $result) = eas($carol->{upn}, $carol->{password});
is("$code $result", '503 unavailable', 'DCs down: an uncached user gets 503');

# --- a reload keeps the cache

ok(nginx_reload(\%conf), 'reload');
($code, $dc) = eas($alice->{upn}, $alice->{password});
is("$code $dc", '200 cache', 'after a reload, with the DCs still down: from the cache');

ad_sh(start => 'dc1');
ad_sh(start => 'dc2');
sleep 1.2;    # ldap_down_retry

($code, $dc, $result) = eas($carol->{upn}, $carol->{password});
is("$code $result", '200 ok', 'DCs back: carol binds');

# --- the gate's lockout: 3 failures, then blocked without a DC, then free

my $ghost = 'ghost-030@contoso.local';    # no such account: AD never locks it
for my $i (1 .. 3) {
    ($code, $dc, $result) = eas($ghost, "Wrong-$i");
    is("$code $result", '401 bad_credentials', "lockout: failure $i reaches the directory");
}
($code, $dc, $result) = eas($ghost, 'Wrong-4');
is("$code $dc $result", '401 none blocked', 'lockout: the 4th is blocked by the gate, no DC asked');
($code, $dc, $result) = eas(" GHOST-030\@contoso.local ", 'Wrong-5');
is("$code $result", '401 blocked', 'lockout: another spelling of the name is blocked too');
like(&error_log_since_mark(0), qr/is blocked for 3 s after 3 failed logins/,
     'lockout: the block is logged');
sleep 3.2;
($code, $dc, $result) = eas($ghost, 'Wrong-6');
is("$code $result", '401 bad_credentials', 'lockout: after unblock_timeout the directory is asked again');

# a blocked user is blocked even with the right password; others are not
for my $i (1 .. 3) { eas('ghost2-030@contoso.local', "Wrong-$i") }
($code, $dc, $result) = eas($bob->{upn}, $bob->{password});
is("$code $result", '200 ok', 'lockout: other users are not affected');

# --- bad input never reaches a bind

for my $case (['', 'x', 'empty user'], ['alice@contoso.local', '', 'empty password'],
              ["ali\x01ce", 'x', 'control character'], ['a' x 300, 'x', 'over-long name'],
              ['*', 'x', 'a wildcard'], ['alice)(|(cn=*', 'x', 'filter injection']) {
    my ($u, $p, $what) = @$case;
    ($code, $dc, $result) = eas($u, $p);
    is($code, 401, "$what: 401");
    # refused before any bind ("invalid", or nginx's Basic parser already
    # refuses ":password"), or bound as a plain, escaped name that AD rejects
    ok($result eq 'invalid' || ($result eq 'no-line' && $u eq '')
       || ($result eq 'bad_credentials' && $u =~ /[*(]/),
       "$what: refused ($result)");
    unlike(error_log_since_mark(), qr/\Q$p\E/, "$what: the password is not logged") if length $p > 1;
}

ok(!grep(/\[(alert|crit|emerg)\]/, &error_log_since_mark(0)), 'no alert in the whole log');

done_testing();
