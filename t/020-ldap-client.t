# The directory client (src/ngx_esp_ldap.c) through "esp_client_auth basic",
# against the two Samba AD DCs: every AD bind outcome, the logon name forms,
# input refused before any bind, StartTLS, failover (DC stopped, DC hanging,
# DC certificate that does not verify), recovery, the connection pool, and
# that nothing else waits while a DC hangs.  Passwords never reach the log.

use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;
use IO::Select;
use IO::Socket::INET;
use JSON::PP ();
use MIME::Base64 qw(encode_base64);
use POSIX ();
use Time::HiRes qw(time sleep);

if (!$ENV{ESP_MODULE} || !-f $ENV{ESP_MODULE} || !ad_present()) {
    Test::More::plan(skip_all => 'needs the module (ESP_MODULE) and the AD fixture');
}

my $RUN = $ENV{ESP_RUN} || '/tmp/esp-run';
my $AD_SH = $ENV{ESP_AD_SH} || ($ENV{ESP_ROOT} || '.') . '/t/fixtures/ad.sh';
my $DC1 = ad_env('AD_DC1');
my $DC2 = ad_env('AD_DC2');
my $DC1_URL = "ldaps://$DC1:636";
my $DC2_URL = "ldaps://$DC2:636";
my $TIMEOUT = 2;            # ldap_timeout, seconds
my $RETRY = 3;              # ldap_down_retry, seconds
my $ROGUE = '127.0.0.4';

# (EspTest's read_json() takes the file's UTF-8 bytes as characters)
ad_users();
my $users = JSON::PP->new->utf8->decode(EspTest::slurp("$RUN/ad/users.json"));
my %pw = map { bytes_of($_) => bytes_of($users->{$_}{password}) } keys %$users;
my @rogues;

my %result_of = (ok => 'ok', '52e' => 'bad_credentials', '525' => 'bad_credentials',
                 '530' => 'logon_hours', '531' => 'workstation',
                 '532' => 'password_expired', '533' => 'disabled',
                 '701' => 'account_expired', '773' => 'must_change',
                 '775' => 'locked');

# DCs this file stopped or paused are brought back whatever happens.
my %dc_state;
END {
    local $?;
    for my $dc (sort keys %dc_state) {
        ad_sh(resume => $dc) if $dc_state{$dc} eq 'paused';
        ad_sh(start => $dc) if $dc_state{$dc} eq 'stopped';
    }
    stop_rogues();
}

my $domains = join "\n",
    'esp_session_key $ESP_RUN/keys/session.key;',
    sso_domain_config(name => 'contoso', ldap_timeout => "${TIMEOUT}s",
                      ldap_down_retry => $RETRY, ldap_connections => 2),
    sso_domain_config(name => 'byname', ldap_timeout => "${TIMEOUT}s",
                      logon_format => 'username'),
    sso_domain_config(name => 'asis', ldap_timeout => "${TIMEOUT}s",
                      logon_format => 'not_specified'),
    sso_domain_config(name => 'starttls', ldap_timeout => "${TIMEOUT}s",
                      ldap_server => ["ldap://$DC1:389 starttls",
                                      "ldap://$DC2 starttls"]),
    sso_domain_config(name => 'rogue', ldap_timeout => "${TIMEOUT}s",
                      ldap_server => ["ldaps://$ROGUE:636", $DC1_URL]),
    sso_domain_config(name => 'misnamed', ldap_timeout => "${TIMEOUT}s",
                      ldap_server => ["ldaps://$ROGUE:3269", $DC2_URL]),
    sso_domain_config(name => 'nowhere', ldap_timeout => "${TIMEOUT}s",
                      ldap_server => ["ldaps://$ROGUE:637", "ldaps://$ROGUE:638"]);

my $locations = '';
for my $d (qw(contoso byname asis starttls rogue misnamed nowhere)) {
    $locations .= <<"CONF";
    location /$d/ {
        esp $d;
        esp_client_auth basic;
        proxy_pass http://127.0.0.1:\$TEST_NGINX_PORT/ok/;
    }
CONF
}

my %conf = (http_config => $domains, config => <<"CONF");
    esp_allowed_hosts mail.contoso.com 127.0.0.1;
    esp_basic_cache 0;          # every login asks the directory
$locations
    location /ok/ {
        return 200 "ok\\n";
    }
    location /plain {
        return 200 "plain\\n";
    }
CONF

ok(nginx_start(\%conf), 'nginx starts with seven SSO domains');

{
    my $file = nginx_prefix() . '/conf/noverify.conf';
    my $text = config_with(http_config => sso_domain_config(
        name => 'noverify', ldap_verify => 'off', ldap_ca_certificate => undef));
    $text =~ s/^pid .*$/pid logs\/noverify.pid;/m;
    EspTest::spurt($file, $text);
    my $nginx = $ENV{ESP_NGINX} || '/usr/sbin/nginx';
    my $out = `$nginx -t -p @{[ nginx_prefix() ]}/ -c $file 2>&1`;
    like($out, qr/ldap_verify is off in domain "noverify" \(\S+:\d+\): domain controller certificates are not checked/,
         'ldap_verify off: a warning at start, naming the domain and where');
}

# ------------------------------------------------------------ AD outcomes

# "locked" unlocks itself 30 minutes after the fixture locked it
system("$AD_SH relock >/dev/null 2>&1") == 0 or Test::More::diag('ad.sh relock failed');

for my $key (sort keys %$users) {
    my $u = $users->{$key};
    my $name = bytes_of($key);
    my $want = $result_of{ $u->{expect} } // 'ok';
    my ($res, $line) = login('/contoso/', bytes_of($u->{upn}), $pw{$name});
    is($res->code, $want eq 'ok' ? 200 : 401, "$name: status for a $want bind");
    is($line->{result}, $want, "$name: result=$want");
    is($line->{ad_code}, $u->{expect} eq 'ok' ? 'none' : $u->{expect},
       "$name: the AD data code is kept");
}

{
    my ($res, $line) = login('/contoso/', 'bob@contoso.local', 'not-' . $pw{bob});
    is($res->code, 401, 'wrong password: 401');
    is("$line->{result} $line->{ad_code}", 'bad_credentials 52e',
       'wrong password: bad_credentials, data 52e');
    like($res->header('WWW-Authenticate') // '', qr/^Basic realm=/,
         'wrong password: a new Basic challenge');

    ($res, $line) = login('/contoso/', 'nosuchuser', 'Whatever-123');
    is($line->{result}, 'bad_credentials', 'unknown user: bad_credentials');
}

# ---------------------------------------------------------- logon names

for my $typed ('alice', 'CONTOSO\\alice', 'contoso\\alice', 'alice@contoso.local',
               'ALICE') {
    my ($res, $line) = login('/contoso/', $typed, $pw{alice});
    is($res->code, 200, "principalname: \"$typed\" logs in");
}

{
    my ($res) = login('/contoso/', 'alice', $pw{alice});
    ok(error_log_wait('"alice" as "alice@contoso.local"'),
       'principalname: a bare name is bound as user@logon_domain');
    login('/contoso/', 'CONTOSO\\alice', $pw{alice});
    # the log escapes the backslash a client wrote (\\)
    ok(error_log_wait('"CONTOSO\\\\alice" as "alice@contoso.local"'),
       'principalname: DOMAIN\\user is bound as user@logon_domain');

    ($res) = login('/byname/', 'alice', $pw{alice});
    is($res->code, 200, 'username: a bare name logs in');
    ok(error_log_wait('"alice" as "CONTOSO\\\\alice"'),
       'username: a bare name is bound as NETBIOS\\user');
    ($res) = login('/byname/', 'alice@contoso.local', $pw{alice});
    is($res->code, 200, 'username: a typed UPN logs in');
    ok(error_log_wait('"alice@contoso.local" as "alice@contoso.local"'),
       'username: a typed UPN is bound as typed');

    ($res) = login('/asis/', 'CONTOSO\\alice', $pw{alice});
    is($res->code, 200, 'not_specified: DOMAIN\\user logs in as typed');
    ($res, my $line) = login('/asis/', 'alice', $pw{alice});
    is($res->code, 401, 'not_specified: a bare name is bound as typed (AD refuses it)');
}

{
    my $name = bytes_of('jürgen');
    my ($res, $line) = login('/contoso/', $name, $pw{$name});
    is($res->code, 200, 'non-ASCII user name (UTF-8) logs in');
    ($res) = login('/contoso/', "CONTOSO\\$name", $pw{$name});
    is($res->code, 200, 'non-ASCII DOMAIN\\user logs in');
}

# ------------------------------------------- refused before any bind

my @invalid = (
    ['an empty password', 'alice', ''],
    ['a user name of 257 bytes', 'a' x 257, 'x'],
    ['a password of 257 bytes', 'alice', 'p' x 257],
    ['a NUL in the user name', "ali\0ce", 'x'],
    ['a control character in the user name', "ali\x01ce", 'x'],
    ['DEL in the user name', "alice\x7f", 'x'],
    ['a tab in the user name', "al\tice", 'x'],
    ['a lone byte 0xff', "alice\xff", 'x'],
    ['an overlong UTF-8 "/"', "alice\xc0\xaf", 'x'],
    ['a UTF-16 surrogate in UTF-8', "alice\xed\xa0\x80", 'x'],
    ['a truncated UTF-8 sequence', "alice\xc3", 'x'],
    ['a code point past U+10FFFF', "alice\xf4\x90\x80\x80", 'x'],
    ['a C1 control character', "alice\xc2\x85", 'x'],
    ['two backslashes', 'A\\B\\alice', 'x'],
    ['a UPN with nothing after @', 'alice@', 'x'],
    ['DOMAIN\\ with no user', 'CONTOSO\\', 'x'],
    ['@ and \\ together', 'CONTOSO\\alice@contoso.local', 'x'],
);

for my $t (@invalid) {
    my ($what, $user, $password) = @$t;
    my ($res, $line) = login('/contoso/', $user, $password);
    is($res->code, 401, "$what: 401");
    is("$line->{result} $line->{dc}", 'invalid none', "$what: invalid, no DC asked");
    unlike(error_log_since_mark(), qr/esp ldap: bind /, "$what: no bind was sent");
}

# Filter metacharacters and wildcards in the name only ever reach a bind
# (as an octet string), never a filter: they match nobody.
for my $typed ('*', 'nested)(|(cn=*', '*)(objectClass=*', 'nested*', "nested\\2a") {
    my ($res, $line) = login('/contoso/', $typed, $pw{nested});
    is($res->code, 401, "\"$typed\" with nested's password: 401");
    is($line->{result}, 'bad_credentials', "\"$typed\": bad_credentials");
}

# ----------------------------------------------------------------- StartTLS

{
    my ($res, $line) = login('/starttls/', 'alice', $pw{alice});
    is($res->code, 200, 'StartTLS on 389: alice logs in');
    is($line->{dc}, "ldap://$DC1:389", 'StartTLS: answered by ldap://dc1:389');
    ($res, $line) = login('/starttls/', 'mustchange', $pw{mustchange});
    is($line->{result}, 'must_change', 'StartTLS: AD data codes too');
}

# ------------------------------------------------------------ the pool

{
    login('/contoso/', 'alice', $pw{alice});
    my ($res) = login('/contoso/', 'bob', $pw{bob});
    is($res->code, 200, 'pool: a second login');
    ok(error_log_wait("esp ldap: reuse connection to $DC1_URL"),
       'pool: it reused an idle connection to dc1');

    # the DC closes its side: the idle connection notices and goes away
    error_log_mark();
    ad_sh(stop => 'dc1');
    ok(error_log_wait("idle connection to $DC1_URL closed by it", 5),
       'pool: an idle connection closed by the DC is dropped at once');
    ad_sh(start => 'dc1');
    my $line;
    ($res, $line) = login('/contoso/', 'alice', $pw{alice});
    is($res->code . " $line->{dc}", "200 $DC1_URL",
       'pool: dc1 serves again on a fresh connection');
    unlike(error_log_since_mark(), qr/is down/, 'pool: and dc1 was never marked down');
}

# ---------------------------------------------------------- failover

# DC1 stopped: refused at once, the login moves to DC2 at once.
{
    ad_sh(stop => 'dc1');
    my ($res, $line, $took) = login('/contoso/', 'alice', $pw{alice});
    is($res->code, 200, 'dc1 stopped: the login succeeds');
    is($line->{dc}, $DC2_URL, 'dc1 stopped: answered by dc2');
    cmp_ok($took, '<', 1, 'dc1 stopped: no wait (connection refused)');
    ok(error_log_wait("esp: domain controller $DC1_URL of domain contoso is down: "
                      . "could not connect; next try in ${RETRY}s"),
       'dc1 stopped: "is down" logged with the reason and the retry time');

    ($res, $line, $took) = login('/contoso/', 'mustchange', $pw{mustchange});
    is("$line->{result} $line->{dc}", "must_change $DC2_URL",
       'dc1 stopped: dc2 gives the AD outcomes too');

    ad_sh(start => 'dc1');
    sleep $RETRY + 0.5;
    ($res, $line) = login('/contoso/', 'alice', $pw{alice});
    is($line->{dc}, $DC1_URL, 'dc1 back: after ldap_down_retry it is tried first again');
    ok(error_log_wait("esp: domain controller $DC1_URL of domain contoso is up again"),
       'dc1 back: "is up again" logged');
}

# DC1 hangs (SIGSTOP): TCP connects, nothing answers.  The login moves to
# DC2 when ldap_timeout runs out, and meanwhile nginx answers other requests
# at once.
{
    ad_sh(pause => 'dc1');
    error_log_mark();
    my $t0 = time;
    my $sock = send_login('/contoso/', 'alice', $pw{alice});
    my @plain;
    for (1 .. 5) {
        my $t = time;
        my $r = ua(timeout => 5)->get(url('/plain', tls => 0));
        push @plain, [$r->code, time - $t];
        sleep 0.2;
    }
    my @slow = grep { $_->[0] != 200 || $_->[1] > 0.5 } @plain;
    is(scalar @slow, 0, 'dc1 hangs: other requests answer at once meanwhile');
    my ($code, $took) = read_status($sock, $t0, $TIMEOUT + 5);
    is($code, 200, 'dc1 hangs: the login succeeds');
    cmp_ok($took, '>=', $TIMEOUT - 0.2, 'dc1 hangs: after ldap_timeout');
    cmp_ok($took, '<', $TIMEOUT + 1.5, 'dc1 hangs: and not much later');
    my $line = login_line('alice');
    is($line->{dc}, $DC2_URL, 'dc1 hangs: answered by dc2');
    ok(error_log_wait("esp: domain controller $DC1_URL of domain contoso is down: "
                      . "timed out after " . ($TIMEOUT * 1000) . "ms"),
       'dc1 hangs: "timed out after 2000ms" logged');

    my ($res, $l2, $t2) = login('/contoso/', 'bob', $pw{bob});
    is($res->code, 200, 'dc1 hangs: the next login succeeds');
    cmp_ok($t2, '<', 1, 'dc1 hangs: without waiting (dc1 is skipped while down)');

    # several at once, more than ldap_connections: the waiting ones move on
    # too when dc1 is found down
    sleep $RETRY + 0.5;
    $t0 = time;
    my @socks = map { send_login('/contoso/', 'carol', $pw{carol}) } 1 .. 5;
    my @codes = map { (read_status($_, $t0, $TIMEOUT + 5))[0] } @socks;
    my $all = time - $t0;
    is("@codes", '200 200 200 200 200', 'dc1 hangs: five logins at once all succeed');
    cmp_ok($all, '<', $TIMEOUT + 1.5, 'dc1 hangs: all within ldap_timeout');

    # a client that goes away while its login waits for the hung DC
    sleep $RETRY + 0.5;
    error_log_mark();
    my $gone = send_login('/contoso/', 'alice', $pw{alice});
    sleep 0.3;
    close $gone;
    sleep $TIMEOUT + 0.5;
    my $r = ua(timeout => 5)->get(url('/plain', tls => 0));
    is($r->code, 200, 'dc1 hangs: a client that left early harms nothing');
    unlike(error_log_since_mark(), qr/\[(?:alert|crit|emerg)\]|exited on signal/,
           'dc1 hangs: no alert after the client left');

    ad_sh(resume => 'dc1');
    sleep $RETRY + 0.5;
    ($res, $line) = login('/contoso/', 'alice', $pw{alice});
    is($line->{dc}, $DC1_URL, 'dc1 resumed: it serves again');
}

# A DC whose certificate does not verify (another CA) is skipped.
SKIP: {
    my $pid = start_rogue("$ROGUE:636", 'rogue');
    skip 'cannot start openssl s_server', 4 unless $pid;
    my ($res, $line) = login('/rogue/', 'alice', $pw{alice});
    is($res->code, 200, 'untrusted DC listed first: the login succeeds');
    is($line->{dc}, $DC1_URL, 'untrusted DC: answered by the next DC');
    ok(error_log_wait("esp: domain controller ldaps://$ROGUE:636 certificate does not verify: ("),
       'untrusted DC: "certificate does not verify" with the reason');
    unlike(error_log_since_mark(), qr/esp ldap: bind "[^"]*" on ldaps:\/\/\Q$ROGUE\E/,
           'untrusted DC: no bind (no password) was sent to it');
}

# A DC with a trusted certificate for another name (dc1's, on 127.0.0.4).
SKIP: {
    my $pid = start_rogue("$ROGUE:3269", 'dc1');
    skip 'cannot start openssl s_server', 3 unless $pid;
    my ($res, $line) = login('/misnamed/', 'alice', $pw{alice});
    is($res->code, 200, 'DC certificate for another address: the login succeeds');
    is($line->{dc}, $DC2_URL, 'DC certificate for another address: answered by dc2');
    ok(error_log_wait("esp: domain controller ldaps://$ROGUE:3269 certificate does not "
                      . "verify: it is not for \"$ROGUE\""),
       'DC certificate for another address: the name check says so');
}

# No DC at all.
{
    my ($res, $line) = login('/nowhere/', 'alice', $pw{alice});
    is($res->code, 503, 'no DC answers: 503');
    is("$line->{result} $line->{dc}", 'unavailable none', 'no DC answers: unavailable');
}

# ------------------------------------------------ groups, if configurable

SKIP: {
    my $outer = "CN=grp-outer,CN=Users," . ad_env('AD_BASE_DN');
    my %gconf = (http_config => $domains . "\n"
                 . sso_domain_config(name => 'badsvc', ldap_timeout => "${TIMEOUT}s",
                                     ldap_bind_password_file => "$RUN/ad/wrong.secret"),
                 config => <<"CONF");
    esp_allowed_hosts mail.contoso.com 127.0.0.1;
    esp_basic_cache 0;          # every login asks the directory
    location /grp/ {
        esp contoso;
        esp_client_auth basic;
        esp_permitted_groups "$outer";
        proxy_pass http://127.0.0.1:\$TEST_NGINX_PORT/ok/;
    }
    location /badsvc/ {
        esp badsvc;
        esp_client_auth basic;
        esp_permitted_groups "$outer";
        esp_login_messages detailed;    # 503 names the trouble
        proxy_pass http://127.0.0.1:\$TEST_NGINX_PORT/ok/;
    }
    location /badsvc-generic/ {
        esp badsvc;
        esp_client_auth basic;
        esp_permitted_groups "$outer";
        proxy_pass http://127.0.0.1:\$TEST_NGINX_PORT/ok/;
    }
    location /ok/ {
        return 200 "ok\\n";
    }
CONF
    open my $fh, '>', "$RUN/ad/wrong.secret" or die "$RUN/ad/wrong.secret: $!";
    print $fh 'Not-The-Password-1';
    close $fh;
    chmod 0644, "$RUN/ad/wrong.secret";
    skip 'esp_permitted_groups is not implemented yet', 12
        unless nginx_start(\%gconf, quiet => 1);

    my ($res, $line) = login('/grp/', 'nested', $pw{nested});
    is($res->code, 200, 'groups: nested (grp-inner < grp-middle < grp-outer) is let in');
    ($res, $line) = login('/grp/', 'alice', $pw{alice});
    isnt($res->code, 200, 'groups: alice (not a member) is refused');
    is($line->{result}, 'not_permitted', 'groups: alice is not_permitted');
    ($res, $line) = login('/grp/', 'CONTOSO\\nested', $pw{nested});
    is($res->code, 200, 'groups: DOMAIN\\user form found by sAMAccountName');
    ($res, $line) = login('/grp/', 'nested)(|(cn=*', $pw{nested});
    is($line->{result}, 'bad_credentials', 'groups: a filter injection never binds');
    ($res, $line) = login('/grp/', 'carol', $pw{carol});
    is($line->{result}, 'not_permitted', 'groups: carol (in no group) is not permitted');

    ($res, $line) = login('/badsvc/', 'nested', $pw{nested});
    is($res->code, 503, 'service account refused: 503');
    is($line->{result}, 'service_account', 'service account refused: result service_account');
    ok(error_log_wait(qr/esp: the service account \S+ was refused by ldaps:\S+: AD data 52e \(wrong password\)/),
       'service account refused: the error log says why (AD data 52e)');
    unlike(error_log_since_mark(), qr/timed out/, 'service account refused: not "timed out"');

    # the service account is only asked after a right password: by default
    # its refusal must not tell the client so (t/045-login-messages.t)
    ($res, $line) = login('/badsvc-generic/', 'nested', $pw{nested});
    is($res->code, 401, 'service account refused, esp_login_messages generic: 401 as for a wrong password');
    is($line->{result}, 'service_account', 'service account refused, generic: the log still says service_account');
}

# -------------------------------------------------------------- secrets

{
    my $log = EspTest::slurp(nginx_prefix() . '/logs/error.log');
    my %secret = %pw;
    if (open my $fh, '<', ad_env('AD_BIND_PASSWORD_FILE')) {
        local $/;
        $secret{'(service account)'} = <$fh>;
    }
    my @leaked = grep { length $secret{$_} >= 4 && index($log, $secret{$_}) >= 0 }
                 sort keys %secret;
    is("@leaked", '', 'no password appears in the error log (debug level)');
}

done_testing();

# ------------------------------------------------------------- helpers

sub bytes_of {
    my ($s) = @_;
    utf8::encode($s) if utf8::is_utf8($s);
    return $s;
}

sub ad_sh {
    my ($cmd, $dc) = @_;
    my $out = `$AD_SH $cmd $dc 2>&1`;
    die "ad.sh $cmd $dc failed:\n$out" if $?;
    $dc_state{$dc} = $cmd eq 'pause' ? 'paused' : $cmd eq 'stop' ? 'stopped' : 'up';
}

# the escaped user name as the module's login line writes it
sub log_user {
    my ($user) = @_;
    (my $u = substr $user, 0, 256) =~ s/(["\\])/\\$1/g;
    $u =~ s/([\x00-\x1f\x7f-\xff])/sprintf('\\x%02x', ord $1)/ge;
    return length($user) > 256 ? "$u..." : $u;
}

# login($path, $user, $password): (response, fields of its login log line,
# seconds it took)
sub login {
    my ($path, $user, $password) = @_;
    error_log_mark();
    my $t0 = time;
    my $res = ua(timeout => 20)->get(url($path, tls => 0),
        Authorization => 'Basic ' . encode_base64("$user:$password", ''));
    my $took = time - $t0;
    return ($res, login_line($user), $took);
}

sub login_line {
    my ($user) = @_;
    my $u = log_user($user);
    my $re = qr/esp: login user="\Q$u\E"[^\n]*/;
    error_log_wait($re, 3) or return { result => '(no login line)', dc => '', ad_code => '' };
    my ($line) = error_log_since_mark() =~ /($re)/;
    my %f = $line =~ /\b(result|dc|ad_code|domain)=([^\s,]+)/g;
    return \%f;
}

sub send_login {
    my ($path, $user, $password) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => nginx_port(),
                                  Proto => 'tcp', Timeout => 5)
        or die "connect: $!";
    print $s "GET $path HTTP/1.0\r\nHost: mail.contoso.com\r\n"
             . 'Authorization: Basic ' . encode_base64("$user:$password", '') . "\r\n\r\n";
    return $s;
}

# (status, seconds since $t0) once the response head arrived
sub read_status {
    my ($s, $t0, $limit) = @_;
    my $sel = IO::Select->new($s);
    my $buf = '';
    while ($buf !~ /\r\n/ && time - $t0 < $limit) {
        last unless $sel->can_read($limit - (time - $t0));
        my $n = sysread $s, $buf, 4096, length $buf;
        last unless $n;
    }
    my $took = time - $t0;
    close $s;
    return ($buf =~ m{^HTTP/1\.\d (\d{3})} ? $1 : 0, $took);
}

# openssl s_server with $cert ("rogue": another CA; "dc1": trusted, for
# dc1's names) on $addr
sub start_rogue {
    my ($addr, $cert) = @_;
    my $pid = fork // return 0;
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';
        exec('openssl', 's_server', '-quiet', '-accept', $addr,
             '-cert', "$RUN/pki/$cert.pem", '-key', "$RUN/pki/$cert.key")
            or POSIX::_exit(127);
    }
    push @rogues, $pid;
    my ($host, $port) = split /:/, $addr;
    for (1 .. 50) {
        return $pid if IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port,
                                             Proto => 'tcp', Timeout => 1);
        sleep 0.1;
    }
    return 0;
}

sub stop_rogues {
    kill 'TERM', @rogues if @rogues;
    waitpid $_, 0 for @rogues;
    @rogues = ();
}
