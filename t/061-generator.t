# tools/esp-config: the configuration it writes passes "nginx -t" and
# serves, with the test fixtures as the Exchange servers and the domain
# controllers: the OWA form login, ActiveSync with Basic, health pages
# without a login, hosts and paths that are refused, the redirect from
# http, the password form, NTLM through the pinned upstream, the
# --mapi-auth basic and --include variants. And every bad input gets a
# message naming the option and exit status 2.

use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;

use Digest::SHA ();
use File::Temp qw(tempdir);
use IO::Socket::SSL;
use MIME::Base64 qw(encode_base64 decode_base64);
use Time::HiRes qw(sleep);
use URI;

my $ROOT = $ENV{ESP_ROOT} || '.';
my $RUN = $ENV{ESP_RUN} || '/tmp/esp-run';
my $GEN = "$ROOT/tools/esp-config";
my $NGINX = $ENV{ESP_NGINX} || '/usr/sbin/nginx';
my $MODULE = $ENV{ESP_MODULE} // '';
my $CA = $ENV{ESP_CA} || "$RUN/pki/ca.pem";
my $PREFIX = nginx_prefix();
my $GUID = '9c9f0f4b-1c1a-4d7e-9a61-0b3f9c3c1e55';
my $TMP = tempdir(CLEANUP => 1);
mkdir "$PREFIX/temp-gen";           # --temp-dir: nginx makes the folders inside

sub slurp_file {
    my ($f) = @_;
    open my $fh, '<', $f or return '';
    local $/;
    return scalar <$fh>;
}

# runs tools/esp-config; returns (exit status, stdout, stderr)
sub gen {
    my (@args) = @_;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', "$TMP/out";
        open STDERR, '>', "$TMP/err";
        exec $^X, $GEN, @args or exit 127;
    }
    waitpid $pid, 0;
    return ($? >> 8, slurp_file("$TMP/out"), slurp_file("$TMP/err"));
}

sub nginx_cmd {
    my (@args) = @_;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', "$TMP/nginx.out";
        open STDERR, '>&', \*STDOUT;
        exec $NGINX, '-p', "$PREFIX/", '-c', 'conf/nginx.conf', @args or exit 127;
    }
    waitpid $pid, 0;
    return ($? >> 8, slurp_file("$TMP/nginx.out"));
}

sub write_conf {
    my ($text) = @_;
    open my $fh, '>', "$PREFIX/conf/nginx.conf" or die "$PREFIX/conf/nginx.conf: $!";
    print $fh $text;
    close $fh;
}

sub port_open {
    my ($port) = @_;
    return IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                 Proto => 'tcp', Timeout => 1) ? 1 : 0;
}

# starts nginx with a complete nginx.conf of our own (its pid file is the
# harness's, so the harness stops it at the end)
sub start_conf {
    my ($text) = @_;
    nginx_stop();
    write_conf($text);
    error_log_mark();
    my ($rc, $out) = nginx_cmd();
    for (1 .. 100) {
        return 1 if $rc == 0 && nginx_running() && port_open(nginx_tls_port());
        sleep 0.1;
    }
    diag("nginx did not start (exit $rc):\n$out\n" . mask(error_log_since_mark()));
    return 0;
}

my $has_ntlm = -f $MODULE && slurp_file($MODULE) =~ /esp_ntlm/ ? 1 : 0;
diag('this module build has no esp_ntlm: configs are generated with --no-esp-ntlm')
    unless $has_ntlm;

my @backends = split ' ', ($ENV{ESP_BACKENDS} || '127.0.0.1:8443 127.0.0.1:8444');
my $port = nginx_port();

# the nginx under test decides the HTTP/2 syntax (1.25.1: "http2 on;")
my ($nginx_version) = (`$NGINX -v 2>&1` // '') =~ m{nginx/(\d+\.\d+\.\d+)};
$nginx_version //= '0.0.0';
my $h2_directive = sprintf('%03d%03d%03d', split /\./, $nginx_version) ge '001025001' ? 1 : 0;
my $tls_port = nginx_tls_port();

# the facts of the test fixtures
sub facts {
    my (%o) = @_;
    my @a = (
        '--mail-host' => 'mail.contoso.com',
        '--autodiscover-host' => 'autodiscover.contoso.com',
        (map { ('--exchange' => $_) } @backends),
        '--exchange-ca' => $CA,
        '--exchange-name' => 'exchange.contoso.local',
        '--smtp-domain' => 'contoso.com',
        '--arbitration-guid' => $GUID,
        '--dc' => ad_env('AD_DC1') // 'AD-NOT-SET', '--dc' => ad_env('AD_DC2') // 'AD-NOT-SET',
        '--dc-ca' => ad_env('AD_CA') // $CA,
        '--ad-domain' => 'contoso.local',
        '--bind-dn' => ad_env('AD_BIND_DN') // 'svc-esp@contoso.local',
        '--bind-password-file' => ad_env('AD_BIND_PASSWORD_FILE') // '/nonexistent',
        '--cert' => "$RUN/pki/front.pem",
        '--key' => "$RUN/pki/front.key",
        '--session-key' => "$RUN/keys/session.key",
        '--listen' => "127.0.0.1:$tls_port",
        '--http-listen' => "127.0.0.1:$port",
        '--module' => $MODULE,
        '--log-dir' => "$PREFIX/logs",
        '--pid' => "$PREFIX/logs/nginx.pid",
        '--temp-dir' => "$PREFIX/temp-gen",
        '--worker-processes' => 1,
        '--nginx' => $NGINX,
        ($has_ntlm ? () : '--no-esp-ntlm'),
    );
    return (@a, @{ $o{extra} || [] });
}

SKIP: {
skip 'needs the module, the AD fixture and the stand-in Exchange', 1
    unless -f $MODULE && ad_present() && exchange_present();

# ------------------------------------------------------------- generate

my ($rc, $conf, $err) = gen(facts());
is($rc, 0, 'esp-config succeeds with the fixtures\' facts') or diag($err);
like($conf, qr/^load_module \Q$MODULE\E;$/m, 'a complete nginx.conf: load_module');
like($conf, qr{esp_password_form https://mail\.contoso\.com:$tls_port/owa/auth/expiredpassword\.aspx\?url=/owa/auth\.owa;},
     'the User Password Form: OWA URL + auth/expiredpassword.aspx?url=/owa/auth.owa');
like($conf, qr{/owa/\Q$GUID\E\@contoso\.com/\*}, 'the arbitration mailbox is excluded from pre-auth');
like($conf, qr/listen 127\.0\.0\.1:$tls_port ssl;/, 'delegate: no http2 on the listener');
like($conf, qr/^\s*esp_ntlm;/m, 'the delegate upstream pins NTLM') if $has_ntlm;

write_conf($conf);
my ($trc, $tout) = nginx_cmd('-t');
is($trc, 0, 'nginx -t accepts the generated config') or diag($tout);

ok(start_conf($conf), 'nginx starts with the generated config') or last;

# ------------------------------------------------------------- OWA login

{
    my $ua = ua();
    my $res = $ua->get(url('/owa/'));
    is($res->code, 302, 'OWA without a session: 302');
    like($res->header('Location') // '', qr{/_esp/login\?url=}, '... to the login form');
    my ($form) = follow($ua, $res);
    is($form->code, 200, 'the login form');
    my $alice = ad_users()->{alice};
    $res = submit_form($ua, $form, username => $alice->{upn}, password => $alice->{password});
    is($res->code, 302, 'alice logs in: 302');
    is(URI->new_abs($res->header('Location') // '', url('/'))->path, '/owa/', '... back to /owa/');
    my @e = backend_entries_for($res);
    ok((grep { ($_->{method} // '') eq 'POST' && ($_->{uri} // '') =~ m{^/owa/auth\.owa} } @e),
       'the gate logged her in to OWA (POST /owa/auth.owa)') or diag(mask(join '', map { "$_->{method} $_->{uri}\n" } @e));
    ok(cookies($ua)->{cadata}, "Exchange's cadata cookie reached the client");
    ($res) = follow($ua, $res);
    is($res->code, 200, 'OWA answers');
    like($res->decoded_content // '', qr/alice/, '... for alice');
    ok(error_log_wait(qr/esp: login user="alice\@contoso\.local" .* result=ok/),
       'the error log has the login line');

    $res = $ua->get(url('/owa/logoff.owa'));
    $res = $ua->get(url('/owa/'));
    is($res->code, 302, 'after /owa/logoff.owa: to the login form again');
}

# ------------------------------------------------------ the password form

{
    my $ua = ua();
    my ($form) = follow($ua, $ua->get(url('/owa/')));
    my $u = ad_users()->{mustchange};
    my $res = submit_form($ua, $form, username => $u->{upn}, password => $u->{password});
    my $to = join ' ', grep { defined } $res->header('Location'), $res->header('Refresh');
    like($to, qr{https://mail\.contoso\.com:$tls_port/owa/auth/expiredpassword\.aspx\?url=/owa/auth\.owa},
         'must change password: sent to the User Password Form');
    $res = $ua->get(url('/owa/auth/expiredpassword.aspx?url=/owa/auth.owa'));
    is($res->code, 200, 'the password form is reachable without a session');
    ok(scalar backend_entries_for($res), '... from Exchange');
}

# ------------------------------------------------------------ ActiveSync

{
    my $ua = ua();
    my $alice = ad_users()->{alice};
    my $res = $ua->request(HTTP::Request->new(OPTIONS => url('/Microsoft-Server-ActiveSync')));
    is($res->code, 401, 'ActiveSync without credentials: 401');
    like($res->header('WWW-Authenticate') // '', qr/^Basic/, '... asking for Basic');
    is(scalar backend_entries_for($res, wait => 0.3), 0, '... and Exchange saw nothing');
    $res = $ua->request(HTTP::Request->new(OPTIONS => url('/Microsoft-Server-ActiveSync'),
        [Authorization => basic_auth($alice->{upn}, $alice->{password})]));
    is($res->code, 200, 'ActiveSync with Basic: 200');
    my ($e) = backend_entries_for($res);
    is($e && $e->{auth_user}, $alice->{upn}, '... Exchange got her Basic credentials');
    $res = $ua->get(url('/microsoft-server-activesync?Cmd=Ping'),
                    Authorization => basic_auth($alice->{upn}, 'wrong-' . $alice->{password}));
    is($res->code, 401, 'a wrong password (lower-case path): 401');
}

# ------------------------------------------------- health pages, refusals

{
    my $ua = ua();
    for my $vdir (qw(owa ecp Microsoft-Server-ActiveSync ews mapi rpc oab autodiscover powershell)) {
        my $res = $ua->get(url("/$vdir/healthcheck.htm"));
        is($res->code, 200, "/$vdir/healthcheck.htm without a login: 200");
    }
    my $res = $ua->get(url('/OWA/HealthCheck.htm'));
    is($res->code, 200, 'paths compare without case, as on IIS');

    error_log_mark();
    $res = $ua->get(url('/owa/healthcheck.htm'), Host => 'evil.example');
    is($res->code, 403, 'a host that is not allowed: 403');
    is(scalar backend_entries_for($res, wait => 0.3), 0, '... Exchange saw nothing');
    ok(error_log_wait('esp: host "evil.example" is not allowed'), '... and the error log says why');

    $res = $ua->get(url('/aspnet_client/x.js'));
    is($res->code, 403, 'a path outside the Exchange directories: 403');
    ok(error_log_wait('is outside the allowed directories'), '... logged');

    $res = $ua->get(url('/', host => 'autodiscover.contoso.com'));
    is($res->code, 302, 'https://<host>/ -> /owa/');

    $res = $ua->get(url('/owa/?a=b', tls => 0));
    is($res->code, 302, 'http: a redirect');
    is($res->header('Location'), "https://mail.contoso.com:$tls_port/owa/?a=b",
       '... to https on the public port');
}

# ------------------------------------------------- NTLM through the pin

{
    # the stand-in's NTLM-like handshake: type 1 -> 401 + challenge on that
    # connection; type 3 = signature, 3, the challenge, the user name
    my $s = IO::Socket::SSL->new(PeerAddr => '127.0.0.1', PeerPort => $tls_port,
                                 SSL_hostname => 'mail.contoso.com', SSL_ca_file => $CA,
                                 Timeout => 10);
    ok($s, 'a TLS client connection') or diag($SSL_ERROR);
    my $connect = sub {
        IO::Socket::SSL->new(PeerAddr => '127.0.0.1', PeerPort => $tls_port,
                             SSL_hostname => 'mail.contoso.com', SSL_ca_file => $CA,
                             Timeout => 10);
    };
    my $ask = sub {
        my ($auth, $sock) = @_;
        my $s = $sock // $s;
        print $s "POST /mapi/emsmdb/?MailboxId=x HTTP/1.1\r\nHost: mail.contoso.com\r\n"
            . ($auth ? "Authorization: NTLM $auth\r\n" : '')
            . "Content-Length: 0\r\n\r\n";
        my ($head, $len) = ('', 0);
        while (my $line = <$s>) {
            $head .= $line;
            $len = $1 if $line =~ /^Content-Length:\s*(\d+)/i;
            last if $line eq "\r\n";
        }
        my $body = '';
        read($s, $body, $len) if $len;
        return ($head, $body);
    };
    if ($s) {
        my ($head) = $ask->(encode_base64("NTLMSSP\0" . pack('V', 1), ''));
        my ($challenge) = $head =~ /^WWW-Authenticate: NTLM (\S+)/mi;
        like($head, qr{^HTTP/1\.1 401}, 'NTLM type 1 through /mapi: 401 with a challenge');
        my $type3 = encode_base64("NTLMSSP\0" . pack('V', 3)
                                  . substr(decode_base64($challenge // ''), 12, 8) . 'alice', '');
        my ($head3, $body3) = $ask->($type3);
        if ($has_ntlm) {
            like($head3, qr{^HTTP/1\.1 200}, 'type 3 on the same client connection: 200 (pinned)');
            like($body3, qr/"auth_user":\s*"alice"/, '... authenticated as alice');
            my ($head4) = $ask->(undef);
            like($head4, qr{^HTTP/1\.1 200}, 'the next request on that connection: still alice');
            my $other = $connect->();
            my ($head5) = $ask->(undef, $other);
            like($head5, qr{^HTTP/1\.1 401}, 'another client connection is not alice: 401');
            close $other if $other;
        } else {
            like($head3, qr{^HTTP/1\.1 401}, 'without esp_ntlm the handshake fails (safely)');
        }
        close $s;
    }
}

# --------------------------------------------------- --mapi-auth basic

{
    my ($rc, $conf, $err) = gen(facts(extra => ['--mapi-auth', 'basic']));
    is($rc, 0, '--mapi-auth basic') or diag($err);
    if ($h2_directive) {
        like($conf, qr/listen 127\.0\.0\.1:$tls_port ssl;\n\s*http2 on;/,
             "... turns HTTP/2 on (nginx $nginx_version: \"http2 on;\")");
    } else {
        like($conf, qr/listen 127\.0\.0\.1:$tls_port ssl http2;/,
             "... turns HTTP/2 on (nginx $nginx_version: \"listen ... http2\")");
    }
    ok(start_conf($conf), '... and serves');
    my $ua = ua();
    my $alice = ad_users()->{alice};
    my $res = $ua->post(url('/EWS/Exchange.asmx'), Content => '<x/>', 'Content-Type' => 'text/xml');
    is($res->code, 401, 'EWS without credentials: 401 from the gate');
    is(scalar backend_entries_for($res, wait => 0.3), 0, '... Exchange saw nothing');
    $res = $ua->post(url('/EWS/Exchange.asmx'), Content => '<x/>', 'Content-Type' => 'text/xml',
                     Authorization => basic_auth($alice->{upn}, $alice->{password}));
    is($res->code, 200, 'EWS with Basic: 200');
    my ($e) = backend_entries_for($res);
    is($e && $e->{auth_user}, $alice->{upn}, '... passed on as Basic');
}

# ------------------------------------------------------------ --hybrid

{
    # Microsoft 365's ranges, the test's own address outside them
    my ($rc, $conf, $err) = gen(facts(extra => ['--hybrid', '--m365-range', '40.92.0.0/15',
                                                '--m365-range', '2603:1000::/24']));
    is($rc, 0, '--hybrid') or diag($err);
    like($conf, qr/^\s*esp_bearer pass;$/m, '--hybrid: Bearer tokens pass to Exchange');
    like($conf, qr{^\s*esp_bearer_authorization_uri https://login\.windows\.net/common/oauth2/authorize;$}m,
         '--hybrid: the authorization_uri of the challenge');
    like($conf, qr{location ~\* \^/ews/mrsproxy\\\.svc\(/\|\$\) \{\n\s*allow 40\.92\.0\.0/15;\n\s*allow 2603:1000::/24;\n\s*deny all;},
         '--hybrid: MRSProxy only for the ranges given');
    ok(start_conf($conf), '--hybrid: nginx starts with it');
    my $ua = ua();
    for my $path ('/EWS/mrsproxy.svc', '/ews/MRSProxy.svc/x', '/EWS/Exchange.asmx/WSSecurity',
                  '/autodiscover/autodiscover.svc/wssecurity') {
        my $res = $ua->post(url($path), Content => '<x/>', 'Content-Type' => 'text/xml');
        is($res->code, 403, "--hybrid: $path from outside Microsoft 365's ranges: 403");
        is(scalar backend_entries_for($res, wait => 0.3), 0, '... Exchange saw nothing');
    }
    my $res = $ua->post(url('/EWS/Exchange.asmx'), Content => '<x/>', 'Content-Type' => 'text/xml');
    is($res->code, 401, '--hybrid: EWS itself is not restricted (Exchange answers)');
    $res = $ua->get(url('/Microsoft-Server-ActiveSync?Cmd=Sync'), 'X-Standin-OAuth' => 'on',
                    Authorization => 'Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln');
    is($res->code, 200, '--hybrid: ActiveSync with a Bearer token reaches Exchange');
    my ($e) = backend_entries_for($res);
    is($e && $e->{auth_scheme}, 'Bearer', '... as Bearer');
    $res = $ua->get(url('/Microsoft-Server-ActiveSync?Cmd=Sync'));
    is(join(' | ', $res->header('WWW-Authenticate')),
       'Basic realm="Exchange", charset="UTF-8" | Bearer authorization_uri="https://login.windows.net/common/oauth2/authorize"',
       '--hybrid: the 401 offers Basic and Bearer with the authorization_uri');

    # the ranges from a file, the test's own address among them
    open my $fh, '>', "$TMP/m365.txt" or die;
    print $fh "# Exchange Online (test)\n40.92.0.0/15   # EOP\n127.0.0.0/8\n";
    close $fh;
    ($rc, $conf, $err) = gen(facts(extra => ['--hybrid', '--m365-ranges', "$TMP/m365.txt"]));
    is($rc, 0, '--hybrid --m365-ranges FILE') or diag($err);
    ok(start_conf($conf), '... nginx starts with it');
    $res = $ua->post(url('/EWS/mrsproxy.svc'), Content => '<x/>', 'Content-Type' => 'text/xml');
    ok(scalar backend_entries_for($res), '--hybrid: MRSProxy from inside the ranges reaches Exchange');
    is($res->code, 401, '... which authenticates it itself');
}

# ------------------------------------------------------- --download-host

{
    my ($rc, $conf, $err) = gen(facts(extra => ['--download-host', 'download.contoso.com']));
    is($rc, 0, '--download-host') or diag($err);
    like($conf, qr/^\s*esp_download_host download\.contoso\.com;$/m, '... the main server hands sessions off');
    like($conf, qr/server_name download\.contoso\.com;(?:(?!\n    \}).)*esp_download_for mail\.contoso\.com;/s,
         '... to a server of its own for the download host');
    like($conf, qr/esp_allowed_hosts download\.contoso\.com;/, '... which allows that host only');
    unlike($conf, qr/esp_allowed_hosts [^;]*mail\.contoso\.com[^;]*download\.contoso\.com/,
           '... not among the main server\'s hosts');
    (my $directives = $conf) =~ s/#[^\n]*//g;
    unlike($directives, qr/\bDomain=|esp_cookie\s[^;]*domain/i, '... and no cookie for a parent domain');
    my $ok = start_conf($conf);
    ok($ok, '... and serves');
    if ($ok) {
        my $ua = ua();
        my $alice = ad_users()->{alice};
        my ($form) = follow($ua, $ua->get(url('/owa/')));
        my $res = submit_form($ua, $form, username => $alice->{upn}, password => $alice->{password});
        is($res->code, 302, 'alice logs in on the mail host');
        my $u = url('/owa/auth/attachment-061.bin', host => 'download.contoso.com');
        ($res, my @hops) = follow($ua, $ua->get($u));
        is($res->code, 200, 'an attachment URL on the download host: 200, no second login');
        like($res->decoded_content // '', qr/stand-in static resource/, '... from Exchange');
        ok((grep { ($_->header('Location') // '') =~ m{/_esp/handoff\?t=} } @hops),
           '... through the hand-off');
        ok(!(grep { ($_->header('Location') // '') =~ m{/_esp/login} } @hops), '... never the login form');
    }
    ($rc, $conf, $err) = gen(facts(extra => ['--download-host', 'mail.contoso.com']));
    is($rc, 2, '--download-host the mail host itself: refused');
    like($err, qr/--download-host: "mail\.contoso\.com" is already a name of the main server/, '... saying why');
    ($rc, $conf, $err) = gen(facts(extra => ['--download-host', 'https://dl.contoso.com']));
    is($rc, 2, '--download-host a URL: refused');
    like($err, qr/--download-host: .* is a URL/, '... naming the option');
    ($rc, $conf, $err) = gen(facts(extra => ['--download-host', 'dl.contoso.com:8443']));
    is($rc, 2, '--download-host with a port: refused');
    ($rc, $conf, $err) = gen(facts(extra => ['--download-host', 'dl.contoso.com', '--without', 'owa',
                                             '--without', 'ecp']));
    is($rc, 2, '--download-host without OWA: refused');
    like($err, qr/--download-host: needs OWA/, '... saying why');
}

# ------------------------------------------------------- --mfa totp

{
    my $tkey = "$RUN/keys/totp.key";
    if (!-s $tkey) {
        my $umask = umask 077;
        system("openssl rand -hex 32 > $tkey");
        umask $umask;
    }
    my ($rc, $mconf, $err) = gen(facts(extra => ['--mfa', 'totp', '--totp-key', $tkey, '--mfa-enroll',
                                                 '--totp-attribute', 'carLicense']));
    is($rc, 0, '--mfa totp') or diag($err);
    like($mconf, qr/^\s*totp_attribute carLicense;\n\s*totp_key_file \Q$tkey\E;$/m, '--mfa totp: the domain names the attribute and key');
    like($mconf, qr/^\s*esp_mfa totp;\n(?:\s*#.*\n)*\s*esp_mfa_enroll on;$/m, '--mfa totp: esp_mfa and esp_mfa_enroll in the server');
    like($mconf, qr/ActiveSync and Outlook \(Basic, NTLM\) cannot do one/, '--mfa totp: says what Basic clients cannot do');
    ok(start_conf($mconf), '--mfa totp: nginx starts with it');
    my ($trc, $tout) = nginx_cmd('-t');
    is($trc, 0, '--mfa totp: nginx -t accepts it') or diag($tout);
    unlike($tout, qr/"esp_mfa" in .* has no effect/, '--mfa totp: no warning (set at server level)');

    # alice has no secret: the password leads to the enrolment page
    my $ua = ua();
    my ($form) = follow($ua, $ua->get(url('/owa/')));
    my $alice = ad_users()->{alice};
    my $res = submit_form($ua, $form, username => $alice->{upn}, password => $alice->{password});
    is($res->code, 200, '--mfa totp: the password alone gets no session');
    like($res->decoded_content // '', qr/Set up your authenticator app/, '--mfa totp: alice enrols');
    ok(!cookies($ua)->{esp_session}, '--mfa totp: no session cookie');
    ok(!(grep { ($_->{uri} // '') =~ m{auth\.owa} } backend_entries_for($res)), '--mfa totp: no hand-off yet');

    # ActiveSync (Basic) is as before
    $res = ua()->get(url('/Microsoft-Server-ActiveSync'),
                     Authorization => basic_auth($alice->{upn}, $alice->{password}));
    isnt($res->code, 401, '--mfa totp: ActiveSync with Basic passes as before');

    ($rc, my $rconf, $err) = gen(facts(extra => ['--mfa', 'radius', '--radius-server', '127.0.0.1',
                                                 '--radius-server', 'radius2.contoso.local:1645',
                                                 '--radius-secret-file', "$RUN/keys/session.key"]));
    is($rc, 0, '--mfa radius') or diag($err);
    like($rconf, qr{^\s*radius_server 127\.0\.0\.1:1812 secret_file=\Q$RUN\E/keys/session\.key;\n\s*radius_server radius2\.contoso\.local:1645 secret_file=}m,
         '--mfa radius: the servers in order, 1812 by default');
    like($rconf, qr/^\s*esp_mfa radius;$/m, '--mfa radius: esp_mfa radius');
    unlike($rconf, qr/totp_|esp_mfa_enroll/, '--mfa radius: nothing of TOTP');
    nginx_stop();
}

# ------------------------------------------------------------ --cluster

{
    require EspTest::Cluster;
    my ($rport) = EspTest::free_ports(1);
    ok(EspTest::Cluster::redis_start('t061', $rport), '--cluster: a redis-server for it');
    my ($rc, $conf, $err) = gen(facts(extra => ['--cluster', "redis://127.0.0.1:$rport",
                                                '--cluster-prefix', 't061']));
    is($rc, 0, '--cluster') or diag($err);
    like($conf, qr/^\s*esp_cluster redis:\/\/127\.0\.0\.1:$rport prefix=t061;$/m, '... writes esp_cluster');
    ok(start_conf($conf), '... and serves');
    my $alice = ad_users()->{alice};
    my $res = ua()->get(url('/Microsoft-Server-ActiveSync?Cmd=Ping'),
                        Authorization => basic_auth($alice->{upn}, 'not-her-password'));
    is($res->code, 401, '--cluster: a wrong password over ActiveSync: 401');
    like(EspTest::Cluster::redis_cli($rport, '--scan', '--pattern', "'t061:l:*'"),
         qr/^t061:l:[0-9a-f]{64}$/m, '... counted in the cluster store, under a keyed hash');
    EspTest::Cluster::redis_stop('t061');
}

# ------------------------------------------------------------ --include

{
    my ($rc, $inc, $err) = gen(facts(extra => ['--include']));
    is($rc, 0, '--include') or diag($err);
    unlike($inc, qr/^\s*(?:load_module|events|http\s*\{|user\s)/m, '... no main-level directives');
    open my $fh, '>', "$PREFIX/conf/esp.inc" or die;
    print $fh $inc;
    close $fh;
    write_conf("load_module $MODULE;\npid $PREFIX/logs/nginx.pid;\nerror_log $PREFIX/logs/error.log;\n"
               . "events {}\nhttp {\n    include esp.inc;\n}\n");
    my ($trc, $tout) = nginx_cmd('-t');
    is($trc, 0, '... nginx -t accepts it inside http {}') or diag($tout);

    # and inside Debian's own nginx.conf, next to its default site
    my $debian = slurp_file('/etc/nginx/nginx.conf');
    SKIP: {
        skip 'no /etc/nginx/nginx.conf', 1 unless $debian =~ m{include /etc/nginx/conf\.d/\*\.conf;};
        $debian =~ s{include /etc/nginx/conf\.d/\*\.conf;}{include esp.inc;};
        $debian =~ s{/var/log/nginx}{$PREFIX/logs}g;
        $debian =~ s{^(\s*pid\s)[^;]*;}{$1$PREFIX/logs/nginx.pid;}m;
        write_conf("load_module $MODULE;\n$debian");
        ($trc, $tout) = nginx_cmd('-t');
        is($trc, 0, "... and inside Debian's stock nginx.conf") or diag($tout);
    }
}

nginx_stop();
}

# -------------------------------------------------------------- bad input

{
    my $facts = "$TMP/good.facts";
    open my $fh, '>', $facts or die;
    print $fh <<"EOF";
mail-host=mail.contoso.com
exchange=10.0.0.21
exchange-ca=/etc/nginx/esp/exchange-ca.pem
smtp-domain=contoso.com
arbitration-guid=$GUID
dc=10.0.0.11
dc-ca=/etc/nginx/esp/ad-ca.pem
ad-domain=contoso.local
cert=/etc/nginx/esp/mail.pem
key=/etc/nginx/esp/mail.key
session-key=/etc/nginx/esp/session.key
EOF
    close $fh;
    my @base = ('--input', $facts, '--no-check-files');
    my ($rc, $out, $err) = gen(@base);
    is($rc, 0, 'a facts file with the required facts: ok') or diag($err);

    my @bad = (
        [[@base, '--frobnicate'], qr/unknown option --frobnicate/],
        [[@base, '--arbitration-guid', 'not-a-guid'], qr/--arbitration-guid: "not-a-guid" is not a GUID/],
        [[@base, '--arbitration-guid', '9c9f0f4b-1c1a-4d7e-9a61'], qr/--arbitration-guid: .* is not a GUID/],
        [[@base, '--mail-host', 'https://mail.contoso.com'], qr/--mail-host: "https:\/\/mail\.contoso\.com" is a URL/],
        [[@base, '--mail-host', 'mail.contoso.com:443'], qr/--mail-host: .* has a port/],
        [[@base, '--host', 'http://owa.contoso.com/owa'], qr/--host: .* is a URL/],
        [[@base, '--exchange', 'https://10.0.0.21'], qr/--exchange: "https:\/\/10\.0\.0\.21" is a URL/],
        [[@base, '--exchange', '10.0.0.21:99999'], qr/--exchange: port 99999/],
        [[@base, '--dc', 'ldaps://10.0.0.11'], qr/--dc: "ldaps:\/\/10\.0\.0\.11" is a URL/],
        [[@base, '--smtp-domain', 'admin@contoso.com'], qr/--smtp-domain: .* is an address/],
        [[@base, '--mapi-auth', 'ntlm'], qr/--mapi-auth: "ntlm" is not delegate or basic/],
        [[@base, '--max-failed-auths', 'many'], qr/--max-failed-auths: "many" is not a number/],
        [[@base, '--max-failed-auths', '1000'], qr/--max-failed-auths: "1000" is not a number 0-999/],
        [[@base, '--max-failed-auths', '-1'], qr/--max-failed-auths: "-1" is not a number 0-999/],
        [[@base, '--max-failed-auths', ''], qr/--max-failed-auths: "" is not a number 0-999/],
        [[@base, '--unblock-timeout', '30 minutes'], qr/--unblock-timeout: .* is not an nginx time/],
        [[@base, '--without', 'sharepoint'], qr/--without: unknown service "sharepoint"/],
        [[@base, '--permitted-group', 'Exchange Users'], qr/--permitted-group: .* is not a distinguished name/],
        [[@base, '--owa-url', 'https://mail.contoso.com/mail'], qr/--owa-url: .* is not OWA's external URL/],
        [[@base, '--mail-host'], qr/--mail-host: needs a value/],
        [['--input', $facts, '--cert', "$TMP/missing.pem"], qr/--cert: file \Q$TMP\E\/missing\.pem does not exist/],
        [['--input', "$TMP/nope.facts"], qr/--input: cannot read/],
        [['--mail-host', 'mail.contoso.com'], qr/--exchange: is required/],
        [['--mail-host', 'mail.contoso.com'], qr/--arbitration-guid: is required for OWA/],
        [[@base, 'stray'], qr/unexpected argument "stray"/],
        [[@base, '--hybrid'], qr/--hybrid: needs --m365-range or --m365-ranges/],
        [[@base, '--hybrid', '--m365-range', '40.92.0.0/33'], qr/--m365-range: "40\.92\.0\.0\/33" is not an address range/],
        [[@base, '--hybrid', '--m365-range', '400.92.0.0/15'], qr/--m365-range: "400\.92\.0\.0\/15" is not an address range/],
        [[@base, '--hybrid', '--m365-range', 'all'], qr/--m365-range: "all" is not an address range/],
        [[@base, '--hybrid', '--m365-ranges', "$TMP/none.txt"], qr/--m365-ranges: cannot read/],
        [[@base, '--m365-range', '40.92.0.0/15'], qr/--m365-range: is only for --hybrid/],
        [[@base, '--hybrid', '--m365-range', '40.92.0.0/15', '--without', 'ews'], qr/--hybrid: needs EWS and Autodiscover/],
        [[@base, '--hybrid', '--m365-range', '40.92.0.0/15', '--authorization-uri', 'https://x/"y'],
         qr/--authorization-uri: .* is not an https:\/\/ URL/],
        [[@base, '--mfa', 'sms'], qr/--mfa: "sms" is not off, totp or radius/],
        [[@base, '--mfa', 'totp'], qr/--totp-key: is required with --mfa totp/],
        [[@base, '--mfa', 'totp', '--totp-key', 'k', '--mfa-enroll'], qr/--mfa-enroll: needs --bind-dn/],
        [[@base, '--mfa', 'totp', '--totp-key', 'k', '--totp-attribute', 'extension Attribute15'],
         qr/--totp-attribute: "extension Attribute15" is not an attribute name/],
        [[@base, '--mfa', 'totp', '--totp-key', 'a', '--totp-key', 'b', '--totp-key', 'c'], qr/--totp-key: at most two/],
        [[@base, '--totp-key', 'k'], qr/--totp-key: is for --mfa totp/],
        [[@base, '--mfa', 'radius', '--radius-secret-file', 's'], qr/--radius-server: is required with --mfa radius/],
        [[@base, '--mfa', 'radius', '--radius-server', 'r'], qr/--radius-secret-file: is required with --mfa radius/],
        [[@base, '--mfa', 'radius', '--radius-server', 'radius://r', '--radius-secret-file', 's'],
         qr/--radius-server: "radius:\/\/r" is not HOST\[:PORT\]/],
        [[@base, '--radius-server', 'r'], qr/--radius-server: is for --mfa radius/],
        [[@base, '--cluster', 'http://10.0.0.5:6379'], qr/--cluster: "http:\/\/10\.0\.0\.5:6379" is not redis:\/\/HOST/],
        [[@base, '--cluster', 'redis://10.0.0.5:70000'], qr/--cluster: .* is not redis:\/\/HOST/],
        [[@base, '--cluster', 'redis://a b'], qr/--cluster: .* is not redis:\/\/HOST/],
        [[@base, '--cluster', 'redis://10.0.0.5', '--cluster-user', 'esp'], qr/--cluster-user: needs --cluster-password-file/],
        [[@base, '--cluster', 'redis://10.0.0.5', '--cluster-prefix', 'a b'], qr/--cluster-prefix: "a b" must be/],
        [[@base, '--cluster-prefix', 'mail'], qr/--cluster-prefix: needs --cluster/],
    );
    for my $case (@bad) {
        my ($args, $re) = @$case;
        my ($rc, $out, $err) = gen(@$args);
        my $name = join ' ', map { /\s/ ? "'$_'" : $_ } grep { $_ ne $facts } @$args;
        is($rc, 2, "bad input ($name): exit 2");
        like($err, $re, "... says $re") or diag($err);
        is($out, '', '... and writes no config');
    }

    open $fh, '>', "$TMP/bad.facts" or die;
    print $fh "mail-host=mail.contoso.com\nmail_hots=x\n";
    close $fh;
    ($rc, $out, $err) = gen('--input', "$TMP/bad.facts");
    is($rc, 2, 'an unknown key in the facts file: exit 2');
    like($err, qr/bad\.facts:2: unknown key "mail-hots"/, '... named with file:line');

    # the command line wins over the file
    ($rc, $out, $err) = gen(@base, '--exchange', '10.9.9.9:444');
    like($out, qr/server 10\.9\.9\.9:444 /, 'a repeatable option on the command line replaces the file\'s');
    unlike($out, qr/server 10\.0\.0\.21:443/, '... all of them');

    # max_failed_auths: the module never blocks unless told to (0); the
    # generated config blocks after 5 failures unless told otherwise, and
    # says that this is a recommendation
    ($rc, $out, $err) = gen(@base);
    like($out, qr/^\s*max_failed_auths 5;$/m,
         'no --max-failed-auths: the config blocks after 5 failures');
    like($out, qr/^\s*# 5 is esp-config's recommendation, not the module's default\n\s*# \(0: never block\); --max-failed-auths N sets another value\.\n\s*max_failed_auths 5;$/m,
         '... and says it is esp-config\'s recommendation, not the module\'s default');
    for my $n (qw(0 3 5)) {
        ($rc, $out, $err) = gen(@base, '--max-failed-auths', $n);
        is($rc, 0, "--max-failed-auths $n") or diag($err);
        like($out, qr/^\s*max_failed_auths $n;$/m, '... is written as given');
        unlike($out, qr/recommendation/, '... with no word of a recommendation');
    }
    open $fh, '>', "$TMP/mfa.facts" or die;
    print $fh slurp_file($facts), "max-failed-auths=0\n";
    close $fh;
    ($rc, $out, $err) = gen('--input', "$TMP/mfa.facts", '--no-check-files');
    like($out, qr/^\s*max_failed_auths 0;$/m, 'max-failed-auths=0 in a facts file: written as given');
    unlike($out, qr/recommendation/, '... with no word of a recommendation');

    # Extended Protection: --exchange-cert against --cert
    my @files = ('--cert', "$RUN/pki/front.pem", '--key', "$RUN/pki/front.key",
                 '--session-key', "$RUN/keys/session.key",
                 '--exchange-ca', $CA, '--dc-ca', $CA);
    my @real = ('--input', $facts, @files);
    ($rc, $out, $err) = gen(@real, '--exchange-cert', "$RUN/pki/exchange.pem");
    is($rc, 0, '--exchange-cert another certificate: still writes the config') or diag($err);
    like($out, qr/^\s*esp contoso;/m, '... the config is written');
    my ($fp_front, $fp_ex) = map {
        my $pem = slurp_file("$RUN/pki/$_.pem");
        my ($b64) = $pem =~ /-----BEGIN CERTIFICATE-----(.+?)-----END/s;
        join ':', map { sprintf '%02X', $_ } unpack 'C*', Digest::SHA::sha256(decode_base64($b64 // ''));
    } qw(front exchange);
    like($err, qr/warning: --exchange-cert .*exchange\.pem \(SHA-256 \Q$fp_ex\E\)/,
         '... warns, naming the Exchange certificate and its fingerprint');
    like($err, qr/is not the certificate of --cert .*front\.pem \(SHA-256 \Q$fp_front\E\)/,
         '... and the listener\'s');
    like($err, qr/Extended Protection/, '... says why it matters');
    like($err, qr/^\@\(Get-OwaVirtualDirectory;.*Get-MapiVirtualDirectory;.*\) \| fl Server,Name,ExtendedProtectionTokenChecking$/m,
         '... prints the PowerShell line of every virtual directory\'s EPA setting');
    like($err, qr/^Get-OutlookAnywhere \| fl Server,Name,ExtendedProtectionTokenChecking$/m,
         '... and of Outlook Anywhere');
    like($err, qr{windowsAuthentication/extendedProtection -Name tokenChecking}, '... and the IIS one');
    ($rc, $out, $err) = gen(@real, '--exchange-cert', "$RUN/pki/front-chain.pem");
    is($rc, 0, '--exchange-cert the same certificate (a chain file): ok') or diag($err);
    unlike($err, qr/Extended Protection|warning: --exchange-cert/, '... and no warning');
    open $fh, '>', "$TMP/exchange-cert.facts" or die;
    print $fh slurp_file($facts), "exchange-cert=$RUN/pki/exchange.pem\n";
    close $fh;
    ($rc, $out, $err) = gen('--input', "$TMP/exchange-cert.facts", @files);
    like($err, qr/warning: --exchange-cert/, 'exchange-cert= in a facts file: the same warning');
    ($rc, $out, $err) = gen(@real, '--exchange-cert', "$RUN/pki/front.key");
    is($rc, 2, '--exchange-cert that holds no certificate: refused');
    like($err, qr/--exchange-cert: .* holds no PEM CERTIFICATE/, '... naming the option');
    ($rc, $out, $err) = gen(@real, '--exchange-cert', "$TMP/nonexistent.pem");
    is($rc, 2, '--exchange-cert that does not exist: refused');
    # several nodes: esp_cluster with every option
    ($rc, $out, $err) = gen(@base, '--cluster', 'rediss://redis1.contoso.local:6380',
                            '--cluster', 'redis://[::1]', '--cluster-user', 'esp-gate',
                            '--cluster-password-file', '/etc/nginx/esp/redis.secret',
                            '--cluster-ca', '/etc/nginx/esp/redis-ca.pem', '--cluster-prefix', 'esp-mail');
    is($rc, 0, '--cluster') or diag($err);
    like($out, qr{^\s*esp_cluster rediss://redis1\.contoso\.local:6380 redis://\[::1\] user=esp-gate password_file=/etc/nginx/esp/redis\.secret ca_certificate=/etc/nginx/esp/redis-ca\.pem prefix=esp-mail;$}m,
         '... writes esp_cluster with the servers in order and every option');
    ($rc, $out, $err) = gen(@base);
    unlike($out, qr/^\s*esp_cluster/m, 'no --cluster: no esp_cluster');

    ($rc, $out) = gen('--print-powershell');
    is($rc, 0, '--print-powershell');
    like($out, qr/Get-Mailbox -Arbitration \| \? \{\$_\.PersistedCapabilities -like "OrganizationCapabilityClientExtensions"\}/,
         '... finds the arbitration mailbox as the how-to does');
    like($out, qr/Get-ADDomainController -Filter \*/, '... and the domain controllers');
    like($out, qr/ExtendedProtectionTokenChecking/, '... and the Extended Protection settings');
    ($rc, $out) = gen('--help');
    is($rc, 0, '--help');
    like($out, qr/--arbitration-guid GUID/, '... lists the options');
    like($out, qr/--max-failed-auths N .*\(default 5, esp-config's\s+recommendation; 0 = never, the module's own\s+default\)/s,
         '... and gives esp-config\'s max_failed_auths and the module\'s default');
}

done_testing();
