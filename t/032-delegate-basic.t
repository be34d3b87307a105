# Basic credentials in delegate locations (issue 11): where Exchange
# authenticates, "Authorization: Basic" is one more password guess at the
# directory.  esp_delegate_basic verify (the default) checks it like a Basic
# location does (lockout, cache, login log) and passes it on unchanged;
# pass lets it through unchecked, as before; refuse answers 403.  NTLM,
# Negotiate and other schemes pass as they are in every mode (their
# connection pinning is t/050's).  Judged by AD's badPwdCount.

use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;
use EspTest::Lockout;
use Test::More;

use MIME::Base64 qw(encode_base64);

run_blocks();

# the generated Exchange configuration verifies Basic where Exchange
# authenticates (conf-examples/exchange2019-esp.conf is esp-config's output,
# t/060 holds them together)
{
    my $root = $ENV{ESP_ROOT} || '.';
    my $out = `$^X $root/tools/esp-config --input $root/conf-examples/contoso.facts --no-check-files 2>&1`;
    is($?, 0, 'esp-config writes the example configuration');
    my @delegate = grep { /esp_client_auth delegate;/ } split /\n\s*location /, $out;
    ok(scalar(@delegate) >= 5, 'generated: ' . scalar(@delegate) . ' delegate locations');
    is(scalar(grep { /^\s*esp_delegate_basic verify;/m } @delegate), scalar(@delegate),
       'generated: every delegate location says esp_delegate_basic verify');
}

if ($ENV{ESP_NO_AD}) {
    done_testing();
    exit 0;
}

my $USERS = ad_users();
my $SPRAY = $USERS->{spray};


my %CONF = (
    http_config => "esp_session_key $ENV{ESP_RUN}/keys/session.key;\n"
        . "esp_shared_zone esp032:1m;\n"
        . sso_domain_config(ldap_timeout => '2s', max_failed_auths => 3,
                            reset_fail_timeout => '10m', unblock_timeout => '10m'),
    config => <<'CONF',
    esp contoso;
    esp_allowed_hosts mail.contoso.com;
    location /mapi/ {
        esp_client_auth delegate;
        esp_preauth_excluded_dirs /mapi/excluded/*;
        proxy_pass https://exchange;
    }
    location /rpc/ {
        esp_client_auth delegate;
        esp_delegate_basic pass;
        proxy_pass https://exchange;
    }
    location /autodiscover/ {
        esp_client_auth delegate;
        esp_delegate_basic refuse;
        proxy_pass https://exchange;
    }
CONF
);

ok(nginx_start(\%CONF), 'nginx starts') or BAIL_OUT(nginx_error());
my $LOG_START = error_log_mark();

my $ua = ua();
my $TYPE1 = 'NTLM ' . encode_base64("NTLMSSP\0" . pack('V', 1) . "\0" x 20, '');

# one request: status, the login line's result (or 'no-line'), the response
sub req {
    my ($path, $auth) = @_;
    error_log_mark();
    my $res = $ua->get(url($path), defined $auth ? (Authorization => $auth) : ());
    error_log_wait(qr/esp: login user=/, 0.5);
    my ($result) = error_log_since_mark() =~ /esp: login user=.* result=(\w+)/;
    return ($res->code, $result // 'no-line', $res);
}

sub exchange_auth {
    my ($res) = @_;
    my @e = backend_entries_for($res);
    return @e ? (EspTest::entry_header($e[0], 'Authorization'))[0] // 'none' : 'not reached';
}

# ------------------------------------------------- verify (the default)

{
    my $right = basic_auth($SPRAY->{upn}, $SPRAY->{password});
    my ($code, $result, $res) = req('/mapi/emsmdb/', $right);
    is("$code $result", '200 ok', 'verify: the right password is checked and passes');
    is(exchange_auth($res), $right, 'verify: Exchange gets the Authorization header as it came');

    my @r;
    for my $i (1 .. 4) {
        ($code, $result, $res) = req('/mapi/emsmdb/', basic_auth($SPRAY->{upn}, "Wrong-spray-$i"));
        push @r, "$code $result";
        is(exchange_auth($res), 'not reached', "verify: wrong password $i never reaches Exchange");
    }
    is_deeply(\@r, ['401 bad_credentials', '401 bad_credentials', '401 bad_credentials', '401 blocked'],
              'verify: counted by the gate\'s lockout: the fourth is blocked');
    like($res->header('WWW-Authenticate') // '', qr/^Basic realm="Exchange"/, 'verify: the gate asks for Basic again');
    like(error_log_since_mark(), qr/esp: login user="spray\@contoso\.local" client=\S+ domain=contoso dc=none result=blocked/,
         'verify: logged in the login log');

    ($code, $result) = req('/mapi/emsmdb/', $right);
    is("$code $result", '401 blocked', 'verify: blocked, the right (cached) password is refused too');

    ($code, $result) = req('/mapi/emsmdb/', 'basic ' . encode_base64("$SPRAY->{upn}:Wrong-spray-5", ''));
    is("$code $result", '401 blocked', 'verify: "basic" in lower case is Basic too');

    ($code, $result) = req('/mapi/excluded/x', basic_auth($SPRAY->{upn}, 'Wrong-spray-6'));
    is("$code $result", '401 blocked', 'verify: also on a path excluded from pre-authentication');

    is(ad_bad_pwd_count('spray'), 3, "verify: AD's badPwdCount of spray is 3 (max_failed_auths) after 6 wrong passwords");

    ($code, $result, $res) = req('/mapi/emsmdb/', 'Basic !!!not-base64');
    is("$code $result", '401 no-line', 'verify: malformed Basic: 401, no bind');
    is(exchange_auth($res), 'not reached', 'verify: malformed Basic never reaches Exchange');

    ($code, $result, $res) = req('/mapi/emsmdb/', "Basic\t" . encode_base64("$SPRAY->{upn}:Wrong-tab", ''));
    is("$code $result", '401 no-line', 'verify: "Basic" and a tab: 401, no bind');
    is(exchange_auth($res), 'not reached', 'verify: ... and never reaches Exchange unchecked');

    ($code, $result, $res) = req('/mapi/emsmdb/', 'Basic');
    is(exchange_auth($res), 'not reached', 'verify: "Basic" alone never reaches Exchange');
}

# ------------------------------------------------- NTLM and others as before

{
    my ($code, $result, $res) = req('/mapi/emsmdb/', $TYPE1);
    is("$code $result", '401 no-line', 'NTLM: no login line, Exchange answers the handshake');
    like($res->header('WWW-Authenticate') // '', qr/^NTLM \S+/, 'NTLM: Exchange\'s challenge reaches the client');
    is(exchange_auth($res), $TYPE1, 'NTLM: Exchange got the NTLM message unchanged');

    (my $neg = $TYPE1) =~ s/^NTLM/Negotiate/;
    ($code, $result, $res) = req('/mapi/emsmdb/', $neg);
    is(exchange_auth($res), $neg, 'Negotiate: passed on unchanged');

    ($code, $result, $res) = req('/mapi/emsmdb/', 'Bearer eyJ0eXAiOiJKV1QifQ.e30.x');
    is(exchange_auth($res), 'Bearer eyJ0eXAiOiJKV1QifQ.e30.x', 'Bearer: passed on unchanged');

    ($code, $result, $res) = req('/mapi/emsmdb/', 'Basically-not-basic xyz');
    is(exchange_auth($res), 'Basically-not-basic xyz', 'a scheme that only starts with "Basic" is not Basic');

    ($code, $result, $res) = req('/mapi/emsmdb/');
    is("$code $result", '401 no-line', 'no Authorization: Exchange asks');
    is(exchange_auth($res), 'none', 'no Authorization: reached Exchange without one');
}

# ------------------------------------------------- pass, refuse

{
    my $ghost = basic_auth('ghost-032@contoso.local', 'Wrong-pass-1');
    my ($code, $result, $res) = req('/rpc/rpcproxy.dll', $ghost);
    is($result, 'no-line', 'pass: no login line');
    is(exchange_auth($res), $ghost, 'pass: Basic goes to Exchange unchecked');

    error_log_mark();
    ($code, $result, $res) = req('/autodiscover/autodiscover.xml', $ghost);
    is("$code $result", '403 no-line', 'refuse: Basic gets 403');
    is(exchange_auth($res), 'not reached', 'refuse: never reaches Exchange');
    like(error_log_since_mark(), qr/esp: Basic authentication refused \(esp_delegate_basic refuse\), client: 127\.0\.0\.1,/,
         'refuse: logged');

    ($code, $result, $res) = req('/autodiscover/autodiscover.xml', $TYPE1);
    is(exchange_auth($res), $TYPE1, 'refuse: NTLM still passes');

    # a path that tries to put an address where fail2ban looks for it
    req('/autodiscover/", client: 6.6.6.6, server: x', $ghost);
}

# the fail2ban filter sees delegate Basic like any other login
SKIP: {
    my @lines = grep { /esp: (?:login user=|Basic authentication refused)/ }
                split /\n/, error_log_since_mark($LOG_START);
    my $fails = grep { /result=(?:bad_credentials|blocked)/ } @lines;
    my $refusals = grep { /Basic authentication refused/ } @lines;
    my $normal = f2b_ips(normal => @lines);
    skip 'no fail2ban-regex', 3 unless $normal;
    is(scalar(@$normal), $fails, "fail2ban (normal): the $fails failed delegate Basic logins count");
    my $aggr = f2b_ips(aggressive => @lines);
    is(scalar(@$aggr), $fails + $refusals, "fail2ban (aggressive): and the $refusals refusals");
    ok(!grep({ $_ ne '127.0.0.1' } @$normal, @$aggr), 'fail2ban: only the real client address');
}

ok(!grep(/\[(alert|crit|emerg)\]/, error_log_since_mark($LOG_START)), 'no alert in the log of the flows');

done_testing();

__DATA__

=== TEST 1: esp_delegate_basic takes verify, pass or refuse
--- http_config
esp_sso_domain contoso {
    ldap_server ldaps://$AD_DC1:636;
    ldap_ca_certificate $ESP_CA;
}
--- config
esp contoso;
esp_allowed_hosts mail.contoso.com;
location /mapi/ {
    esp_client_auth delegate;
    esp_delegate_basic maybe;
    proxy_pass https://exchange;
}
--- must_die
--- error_log
invalid value "maybe"
