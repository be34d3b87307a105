# Every Exchange service, end to end, as its real client uses it, through a
# configuration written by tools/esp-config (no hand-written nginx.conf),
# against the stand-in Exchange servers and the Samba DCs:
#
#   1. OWA and ECP in Chromium: log in on /owa/, land on OWA, then /ecp/
#      with the same session (skipped, alone, without chromium/node/npm ci);
#   2. an ActiveSync device (Basic): OPTIONS, FolderSync, a 20 s Ping that
#      must not be cut, a 30 MB SendMail streamed with Expect: 100-continue
#      (the bytes Exchange hashed are the bytes sent; nothing spooled);
#   3. Outlook on MAPI/HTTP with NTLM on one keep-alive connection (type 1
#      -> 401 challenge, type 3 -> 200, more POSTs served as that user),
#      with a second Outlook (another user) and an anonymous client at the
#      same time: none is ever served as another;
#   4. Autodiscover POST (XML) with NTLM, and with Basic (--mapi-auth basic);
#   5. OAB download; 6. EWS SOAP POST (text/xml, 1 MB, intact);
#   7. RPC over HTTP: RPC_IN_DATA / RPC_OUT_DATA declaring 1 GB and sending
#      a few bytes: passed through unbuffered, no 413;
#   8. every /<vdir>/healthcheck.htm: 200 without a login;
#   9. a backend dying under a stream of idempotent GETs and Basic
#      ActiveSync requests (a private pair of stand-ins on free ports, so
#      the shared ones are never disturbed): nothing that can be retried
#      fails, and the survivor serves everything;
#   and the unauthenticated variants of every service the gate protects:
#   nothing of them reaches Exchange.
#
# Findings while writing it are in the comments of the parts concerned.

use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;

use Digest::SHA ();
use File::Path qw(make_path);
use File::Temp qw(tempdir);
use IO::Select;
use IO::Socket::INET;
use IO::Socket::SSL;
use JSON::PP ();
use MIME::Base64 qw(encode_base64 decode_base64);
use POSIX ();
use Time::HiRes qw(sleep time);

my $ROOT = $ENV{ESP_ROOT} || '.';
my $RUN = $ENV{ESP_RUN} || '/tmp/esp-run';
my $GEN = "$ROOT/tools/esp-config";
my $NGINX = $ENV{ESP_NGINX} || '/usr/sbin/nginx';
my $MODULE = $ENV{ESP_MODULE} // '';
my $CA = $ENV{ESP_CA} || "$RUN/pki/ca.pem";
my $PREFIX = nginx_prefix();
my $GUID = '9c9f0f4b-1c1a-4d7e-9a61-0b3f9c3c1e55';
my $OAB_GUID = '5b4f0d6e-3b1c-4f8e-9a0d-2c7e6f1b9a33';
my $TMP = tempdir('esp65-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0700, $TMP;
my $JSON = JSON::PP->new->canonical;
mkdir "$PREFIX/temp-gen";

if (!-f $MODULE || !ad_present() || !exchange_present()) {
    Test::More::plan(skip_all => 'needs the module, the AD fixture and the stand-in Exchange');
}

my $USERS = ad_users();
my ($ALICE, $CAROL, $BOB) = @{$USERS}{qw(alice carol bob)};

# ---------------------------------------------------------------------------
# Generator and nginx (as t/061-generator.t does)

sub slurp_file {
    my ($f) = @_;
    open my $fh, '<', $f or return '';
    local $/;
    return scalar <$fh>;
}

sub run_cmd {
    my (@cmd) = @_;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', "$TMP/out";
        open STDERR, '>', "$TMP/err";
        exec @cmd or POSIX::_exit(127);
    }
    waitpid $pid, 0;
    return ($? >> 8, slurp_file("$TMP/out"), slurp_file("$TMP/err"));
}

sub gen { return run_cmd($^X, $GEN, @_) }

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

# nginx with a complete generated nginx.conf (pid file = the harness's, so
# the harness stops it at the end)
sub start_conf {
    my ($text) = @_;
    nginx_stop();
    write_conf($text);
    error_log_mark();
    my ($rc, $out, $err) = run_cmd($NGINX, '-p', "$PREFIX/", '-c', 'conf/nginx.conf');
    for (1 .. 100) {
        return 1 if $rc == 0 && nginx_running() && port_open(nginx_tls_port());
        sleep 0.1;
    }
    diag("nginx did not start (exit $rc):\n$out$err\n" . mask(error_log_since_mark()));
    return 0;
}

my $tls_port = nginx_tls_port();

# nginx did not start: the rest cannot run (never BAIL_OUT: other files go on)
sub give_up {
    done_testing();
    exit 1;
}

sub facts {
    my (%o) = @_;
    return (
        '--mail-host' => 'mail.contoso.com',
        '--autodiscover-host' => 'autodiscover.contoso.com',
        (map { ('--exchange' => $_) }
             @{ $o{exchange} || [split ' ', ($ENV{ESP_BACKENDS} || '127.0.0.1:8443 127.0.0.1:8444')] }),
        '--exchange-ca' => $CA,
        '--exchange-name' => 'exchange.contoso.local',
        '--smtp-domain' => 'contoso.com',
        '--arbitration-guid' => $GUID,
        '--dc' => ad_env('AD_DC1'), '--dc' => ad_env('AD_DC2'),
        '--dc-ca' => ad_env('AD_CA') // $CA,
        '--ad-domain' => 'contoso.local',
        '--bind-dn' => ad_env('AD_BIND_DN'),
        '--bind-password-file' => ad_env('AD_BIND_PASSWORD_FILE'),
        '--cert' => "$RUN/pki/front.pem",
        '--key' => "$RUN/pki/front.key",
        '--session-key' => "$RUN/keys/session.key",
        '--listen' => "127.0.0.1:$tls_port",
        '--http-listen' => '127.0.0.1:' . nginx_port(),
        '--module' => $MODULE,
        '--nginx' => $NGINX,
        '--log-dir' => "$PREFIX/logs",
        '--pid' => "$PREFIX/logs/nginx.pid",
        '--temp-dir' => "$PREFIX/temp-gen",
        '--worker-processes' => 2,
        @{ $o{extra} || [] },
    );
}

# the text of the (first) location block whose regex names this vdir
sub location_block {
    my ($conf, $vdir) = @_;
    return $conf =~ /(location ~\* \^\/\Q$vdir\E\(\/\|\$\) \{.*?\n        \})/s ? $1 : '';
}

sub seconds {
    my ($t) = @_;
    my %u = (ms => 0.001, s => 1, m => 60, h => 3600, d => 86400);
    my $n = 0;
    $n += $1 * $u{ $2 || 's' } while $t =~ /(\d+)(ms|s|m|h|d)?/g;
    return $n;
}

my $ERROR_LOG = "$PREFIX/logs/error.log";
sub log_from {
    my ($off) = @_;
    my $t = slurp_file($ERROR_LOG);
    return substr($t, $off // 0);
}
sub no_alerts {
    my ($what, $off) = @_;
    my @bad = grep { /\[(?:alert|crit|emerg)\]|exited on signal/ } split /\n/, log_from($off);
    ok(!@bad, "$what: no alert, crit or emerg in the error log") or diag(mask(join "\n", @bad));
}

# ---------------------------------------------------------------------------
# A raw HTTP/1.1 client on TLS keep-alive connections, as Outlook, phones
# and rpcproxy clients use them (LWP cannot do NTLM on one connection, nor
# send 1 GB Content-Length with a few bytes).

my $ID = 0;
sub new_id { return sprintf 'esp65-%d-%d-%04x', $$, ++$ID, int rand 65536 }

sub conn {
    my (%o) = @_;
    my $s = IO::Socket::SSL->new(
        PeerAddr => '127.0.0.1', PeerPort => $o{port} // $tls_port,
        SSL_hostname => $o{host} // 'mail.contoso.com',
        SSL_ca_file => $CA, Timeout => 10,
        # HTTP/1.1 like Outlook with NTLM (the basic variant offers h2)
        SSL_alpn_protocols => ['http/1.1'],
    ) or die "TLS connect to port " . ($o{port} // $tls_port) . ": $SSL_ERROR\n";
    return { s => $s, buf => '', host => $o{host} // 'mail.contoso.com' };
}

sub put {
    my ($c, $data) = @_;
    my $s = $c->{s};
    while (length $data) {
        my $n = syswrite($s, $data, 256 * 1024);
        return 0 unless $n;
        substr($data, 0, $n, '');
    }
    return 1;
}

# send a request: headers as a list of [name, value]; a body (string) adds
# Content-Length unless one is given; returns the request's test id
sub send_req {
    my ($c, $method, $uri, $headers, $body, %o) = @_;
    my $id = $o{id} // new_id();
    my @h = @{ $headers || [] };
    my $head = "$method $uri HTTP/1.1\r\nHost: $c->{host}\r\nX-Esp-Test-Id: $id\r\n";
    $head .= "$_->[0]: $_->[1]\r\n" for @h;
    $head .= 'Content-Length: ' . length($body) . "\r\n"
        if defined $body && !grep { lc $_->[0] eq 'content-length' } @h;
    put($c, "$head\r\n" . ($body // '')) or return undef;
    return $id;
}

sub fill {
    my ($c, $deadline) = @_;
    my $s = $c->{s};
    if (!$s->pending) {
        my $left = $deadline - time;
        return -1 if $left <= 0;
        return -1 unless IO::Select->new($s)->can_read($left);
    }
    my $n = sysread($s, $c->{buf}, 1024 * 1024, length $c->{buf});
    return $n ? 1 : 0;
}

# one response: { status, headers => {lc name => [values]}, body, json }
# or { status => 'closed' | 'timeout' }
sub read_resp {
    my ($c, %o) = @_;
    my $deadline = time + ($o{timeout} // 10);
    my $r;
    while ((my $i = index($c->{buf}, "\r\n\r\n")) < 0) {
        my $f = fill($c, $deadline);
        return { status => $f < 0 ? 'timeout' : 'closed', partial => $c->{buf} } if $f <= 0;
    }
    my $i = index($c->{buf}, "\r\n\r\n");
    my $head = substr($c->{buf}, 0, $i);
    substr($c->{buf}, 0, $i + 4, '');
    my ($sl, @lines) = split /\r\n/, $head;
    my ($status) = $sl =~ m{^HTTP/1\.[01] (\d{3})} or return { status => 'bad', head => $head };
    my %h;
    for (@lines) {
        my ($k, $v) = /^([^:]+):\s*(.*?)\s*$/ or next;
        push @{ $h{lc $k} }, $v;
    }
    $r = { status => $status, headers => \%h, head => $head };
    return $r if $status =~ /^1/ || $status == 204 || $status == 304 || $o{head};
    my $body = '';
    if (($h{'transfer-encoding'}[0] // '') =~ /chunked/i) {
        while (1) {
            while ($c->{buf} !~ /\r\n/) { fill($c, $deadline) > 0 or return { %$r, status => 'truncated' } }
            my ($len) = $c->{buf} =~ /^([0-9a-fA-F]+)/ or return { %$r, status => 'bad chunk' };
            $len = hex $len;
            my $start = index($c->{buf}, "\r\n") + 2;
            while (length($c->{buf}) < $start + $len + 2) {
                fill($c, $deadline) > 0 or return { %$r, status => 'truncated' };
            }
            $body .= substr($c->{buf}, $start, $len);
            substr($c->{buf}, 0, $start + $len + 2, '');
            last if $len == 0;
        }
    } elsif (defined $h{'content-length'}) {
        my $len = $h{'content-length'}[0];
        while (length($c->{buf}) < $len) {
            fill($c, $deadline) > 0 or return { %$r, status => 'truncated', got => length $c->{buf} };
        }
        $body = substr($c->{buf}, 0, $len, '');
    } else {
        1 while fill($c, $deadline) > 0;
        $body = $c->{buf};
        $c->{buf} = '';
    }
    $r->{body} = $body;
    $r->{json} = eval { $JSON->decode($body) } if ($h{'content-type'}[0] // '') =~ /json/;
    return $r;
}

sub request {
    my ($c, @args) = @_;
    my %o = @args > 4 ? @args[4 .. $#args] : ();
    my $id = send_req($c, @args) // return ({ status => 'closed' }, undef);
    my $r = read_resp($c, %o);
    $r->{id} = $id;
    return wantarray ? ($r, $id) : $r;
}

sub hdr { my ($r, $n) = @_; return ${ $r->{headers}{lc $n} || [] }[0] }

sub entries { my ($id, %o) = @_; return backend_entries_for($id, %o) }

sub nothing_reached {
    my ($id, $name) = @_;
    my @e = entries($id, wait => 0.3);
    is(scalar @e, 0, "$name: nothing reached Exchange") or diag(EspTest::describe_entries(@e));
}

sub basic { my ($u, $pw) = @_; return ['Authorization', basic_auth($u->{upn}, $pw // $u->{password})] }

# the stand-in's NTLM-like messages (t/050-ntlm-pinning.t)
sub ntlm1 { return 'NTLM ' . encode_base64("NTLMSSP\0" . pack('V', 1) . "\x07\x82\x08\xa2", '') }
sub ntlm3 {
    my ($r, $user) = @_;
    my ($ch) = (hdr($r, 'WWW-Authenticate') // '') =~ /^NTLM (\S+)/;
    my @all = @{ $r->{headers}{'www-authenticate'} || [] };
    ($ch) = map { /^NTLM (\S+)/ ? $1 : () } @all unless $ch;
    return 'NTLM ' . encode_base64("NTLMSSP\0" . pack('V', 3)
                                   . substr(decode_base64($ch // ''), 12, 8) . $user, '');
}

# an NTLM handshake on $c with this request; returns the response to type 3
sub ntlm_login {
    my ($c, $user, $method, $uri, $headers, $body, $name) = @_;
    my $r1 = request($c, $method, $uri, [@$headers, ['Authorization', ntlm1()]], $body);
    is($r1->{status}, 401, "$name: NTLM type 1 -> 401");
    ok((grep { /^NTLM \S{20,}/ } @{ $r1->{headers}{'www-authenticate'} || [] }),
       "$name: ... with a challenge from Exchange");
    my $r3 = request($c, $method, $uri, [@$headers, ['Authorization', ntlm3($r1, $user->{upn})]], $body);
    is($r3->{status}, 200, "$name: type 3 on the same connection -> 200");
    is($r3->{json} && $r3->{json}{auth_user}, $user->{upn}, "$name: ... Exchange authenticated $user->{upn}");
    return $r3;
}

# pseudo-random bytes, the same for the same seed
sub blob {
    my ($len, $seed) = @_;
    my $block = '';
    $block .= Digest::SHA::sha512("$seed:" . length $block) while length($block) < 65536;
    my $out = $block x int($len / 65536);
    $out .= substr($block, 0, $len % 65536);
    return $out;
}

my %MAPI_H = (
    'Content-Type' => 'application/mapi-http',
    'X-ClientApplication' => 'Outlook/16.0.10730.20102',
    'User-Agent' => 'Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.10730; Pro)',
);
sub mapi_headers {
    my ($type, $n) = @_;
    return [(map { [$_, $MAPI_H{$_}] } sort keys %MAPI_H),
            ['X-RequestType', $type],
            ['X-ClientInfo', '{2EF33C39-49C8-421C-B876-CDF7F2AC3AA0}:' . ($n // 1)],
            ['X-RequestId', '{E2EA6C1C-E61B-49E9-9CFB-38184F907552}:' . ($n // 1)]];
}

my $AUTOD_XML = <<'XML';
<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>alice@contoso.com</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>
XML

sub ews_soap {
    my ($inner) = @_;
    return qq{<?xml version="1.0" encoding="utf-8"?>\n}
        . qq{<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" }
        . qq{xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types" }
        . qq{xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages">}
        . qq{<soap:Header><t:RequestServerVersion Version="Exchange2016"/></soap:Header>}
        . qq{<soap:Body>$inner</soap:Body></soap:Envelope>\n};
}
my $EWS_FIND = ews_soap(q{<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape>}
                        . q{</m:ItemShape><m:ParentFolderIds><t:DistinguishedFolderId Id="inbox"/>}
                        . q{</m:ParentFolderIds></m:FindItem>});
my $EWS_H = [['Content-Type', 'text/xml; charset=utf-8'],
             ['User-Agent', 'MacOutlook/16.78.23100802 (Intelx64 Mac OS X 14.0)']];

my $AS_Q = '?User=alice&DeviceId=ESP65DEVICE0001&DeviceType=iPhone';
my $AS_H = [['User-Agent', 'Apple-iPhone13C2/2006.104'], ['MS-ASProtocolVersion', '16.1'],
            ['X-MS-PolicyKey', '0'], ['Content-Type', 'application/vnd.ms-sync.wbxml']];
my $WBXML_FOLDERSYNC = "\x03\x01\x6a\x00\x00\x07\x56\x52\x03\x30\x00\x01\x01";
my $WBXML_PING = "\x03\x01\x6a\x00\x00\x0d\x45\x48\x03\x36\x30\x00\x01\x01";

my @HEALTH_VDIRS = qw(owa ecp Microsoft-Server-ActiveSync ews mapi rpc oab autodiscover powershell);
my @WINDOWS = qw(ews mapi rpc oab autodiscover powershell);

# ===========================================================================
# The delegate configuration (the default: Exchange does NTLM for Outlook)

my ($rc, $conf, $err) = gen(facts());
is($rc, 0, 'esp-config (delegate) succeeds') or diag($err);
like($conf, qr/^\s*esp_ntlm;/m, 'delegate: the NTLM upstream is pinned (esp_ntlm)');
{
    my $as = location_block($conf, 'Microsoft-Server-ActiveSync');
    my ($rt) = $as =~ /proxy_read_timeout (\S+);/;
    cmp_ok(seconds($rt // '0'), '>=', 1800, "ActiveSync: proxy_read_timeout $rt covers a 30 min Ping");
    like($as, qr/proxy_request_buffering off;/, 'ActiveSync: uploads are streamed');
    my $rpc = location_block($conf, 'rpc');
    like($rpc, qr/client_max_body_size 2g;/, 'RPC: client_max_body_size 2g');
    like($rpc, qr/proxy_request_buffering off;/, 'RPC: request bodies unbuffered');
    like($rpc, qr/proxy_buffering off;/, 'RPC: responses unbuffered');
}
my $log_off = -s $ERROR_LOG // 0;
ok(start_conf($conf), 'nginx starts with the delegate configuration') or give_up();

# ---------------------------------------------------------------------------
# (2a) the long Ping starts first, in a child, and is collected at the end
# of this configuration: everything else runs while it hangs

my $PING_DELAY = 20;
my $ping_file = "$TMP/ping.json";
my $ping_pid = fork // die "fork: $!";
if (!$ping_pid) {
    my $out = { status => 'error' };
    eval {
        my $c = conn();
        my $t0 = time;
        my $r = request($c, 'POST', "/Microsoft-Server-ActiveSync$AS_Q&Cmd=Ping",
                        [@$AS_H, basic($ALICE), ['X-Standin-Delay', $PING_DELAY]], $WBXML_PING,
                        timeout => $PING_DELAY + 30);
        $out = { status => $r->{status}, elapsed => time - $t0, json => $r->{json}, id => $r->{id} };
    };
    $out->{error} = $@ if $@;
    open my $fh, '>', $ping_file;
    print $fh $JSON->encode($out);
    close $fh;
    POSIX::_exit(0);        # never the harness's END (it stops nginx)
}
my $ping_started = time;

# ---------------------------------------------------------------------------
# (1) OWA and ECP in the browser

sub which { my ($p) = @_; return (grep { -x "$_/$p" } split /:/, $ENV{PATH} // '')[0] }
my $CHROMIUM = $ENV{CHROMIUM} || '/usr/bin/chromium';
my @missing;
push @missing, $CHROMIUM unless -x $CHROMIUM;
push @missing, 'node' unless which('node');
push @missing, 'certutil' unless which('certutil');
push @missing, 't/browser/node_modules' unless -d "$ROOT/t/browser/node_modules/playwright-core";

SKIP: {
    skip 'browser part skipped, missing: ' . join(', ', @missing), 1 if @missing;
    my $pwf = "$TMP/alice.pw";
    open my $fh, '>', $pwf or die;
    print $fh "$ALICE->{password}\n";
    close $fh;
    chmod 0600, $pwf;
    my $owa = "https://mail.contoso.com:$tls_port/owa/";

    # the project's driver: /owa/ -> login form -> OWA
    my $mark = backend_mark();
    my $out = `node $ROOT/t/browser/login-flow.js --url $owa --ca $CA --timeout 30000 --user $ALICE->{upn} --password-file $pwf --expect-text $ALICE->{upn} 2>&1`;
    my ($line) = grep { /^\{/ } split /\n/, $out;
    my $r = eval { $JSON->decode($line // '') } // {};
    ok($r->{ok}, 'browser: /owa/ -> login form -> OWA (login-flow.js)') or diag(mask($out));
    like($r->{landing_url} // '', qr{/owa/$}, 'browser: landed on /owa/');
    is($r->{landing_title}, 'Outlook (stand-in)', 'browser: the stand-in OWA page');

    # the same browser session goes on to ECP
    my $js = "$TMP/ecp.js";
    open $fh, '>', $js or die;
    print $fh <<'JS';
'use strict';
const { launch } = require(process.argv[2]);
const fs = require('fs');
const [url, ca, pwfile, user] = process.argv.slice(3);
(async () => {
    const res = {};
    const u = new URL(url);
    const b = await launch({ caFiles: [ca], locale: 'en-US',
                             args: ['--host-resolver-rules=MAP ' + u.hostname + ' 127.0.0.1'] });
    try {
        const page = await b.context.newPage();
        page.setDefaultTimeout(30000);
        await page.goto(url + 'owa/', { waitUntil: 'load' });
        res.login = new URL(page.url()).pathname;
        await page.fill('input[name="username"]', user);
        await page.fill('input[name="password"]', fs.readFileSync(pwfile, 'utf8').replace(/\n$/, ''));
        await Promise.all([page.waitForNavigation({ waitUntil: 'load' }),
                           page.click('button[type="submit"], input[type="submit"]')]);
        const meta = () => page.evaluate(() => ({
            app: (document.querySelector('meta[name="esp-standin-app"]') || {}).content,
            user: (document.getElementById('esp-standin-user') || {}).textContent,
            path: location.pathname,
            form: !!document.querySelector('input[name="password"]'),
        }));
        res.owa = await meta();
        const r = await page.goto(url + 'ecp/', { waitUntil: 'load' });
        res.ecp = await meta();
        res.ecp.status = r.status();
        res.ecp.redirected = !!r.request().redirectedFrom();
        res.cookies = (await b.context.cookies()).map((c) => c.name);
    } finally {
        await b.close();
    }
    process.stdout.write(JSON.stringify(res) + '\n');
})().catch((e) => { console.error(String(e && e.stack || e)); process.exit(1); });
JS
    close $fh;
    $mark = backend_mark();
    $out = `node $js $ROOT/t/browser/chromium.js https://mail.contoso.com:$tls_port/ $CA $pwf $ALICE->{upn} 2>&1`;
    ($line) = grep { /^\{/ } split /\n/, $out;
    $r = eval { $JSON->decode($line // '') } // {};
    is($r->{login}, '/_esp/login', 'browser: /owa/ without a session -> the gate\'s form') or diag(mask($out));
    is($r->{owa}{app}, 'owa', 'browser: after the login, OWA');
    is($r->{owa}{user}, $ALICE->{upn}, 'browser: ... as alice');
    is($r->{ecp}{app}, 'ecp', 'browser: then /ecp/ in the same session: ECP') or diag(mask($out));
    is($r->{ecp}{status}, 200, 'browser: ... 200');
    ok(!$r->{ecp}{redirected} && !$r->{ecp}{form}, 'browser: ... no second login');
    is($r->{ecp}{user}, $ALICE->{upn}, 'browser: ... as alice');
    # this nginx's requests only (the Host it sends carries its own port)
    my @log = grep { my $e = $_; grep { lc $_->[0] eq 'host' && $_->[1] =~ /:$tls_port$/ } @{ $e->{headers} || [] } }
              @{ EspTest::backend_log_since_mark($mark) };
    is(scalar(grep { $_->{method} eq 'POST' && $_->{uri} =~ m{^/owa/auth\.owa} } @log), 1,
       'browser: one hand-off to Exchange for OWA and ECP (the password typed once)');
    ok((grep { $_->{method} eq 'GET' && $_->{uri} =~ m{^/ecp/} && ($_->{auth_user} // '') eq $ALICE->{upn}
               && ($_->{status} // 0) == 200 } @log), 'browser: Exchange served ECP to alice');
}

# ---------------------------------------------------------------------------
# (2) the ActiveSync device (Basic): OPTIONS, FolderSync, a 30 MB SendMail

{
    my $c = conn();
    my $r = request($c, 'OPTIONS', '/Microsoft-Server-ActiveSync' . $AS_Q,
                    [['User-Agent', 'Apple-iPhone13C2/2006.104'], basic($ALICE)]);
    is($r->{status}, 200, 'ActiveSync OPTIONS with Basic: 200');
    like(hdr($r, 'MS-ASProtocolVersions') // '', qr/\b16\.1\b/, '... Exchange\'s MS-ASProtocolVersions reach the device');
    like(hdr($r, 'MS-ASProtocolCommands') // '', qr/\bFolderSync\b.*\bPing\b/, '... and MS-ASProtocolCommands');
    my ($e) = entries($r->{id});
    is($e && $e->{auth_user}, $ALICE->{upn}, '... Exchange got her Basic credentials');

    $r = request($c, 'POST', "/Microsoft-Server-ActiveSync$AS_Q&Cmd=FolderSync",
                 [@$AS_H, basic($ALICE)], $WBXML_FOLDERSYNC);
    is($r->{status}, 200, 'FolderSync on the same connection: 200');
    ($e) = entries($r->{id});
    is($e && $e->{uri}, "/Microsoft-Server-ActiveSync$AS_Q&Cmd=FolderSync", '... the query string intact');
    is($e && $e->{body_sha256}, Digest::SHA::sha256_hex($WBXML_FOLDERSYNC), '... the WBXML body intact');
    ok($e && (grep { $_->[0] =~ /^MS-ASProtocolVersion$/i && $_->[1] eq '16.1' } @{ $e->{headers} }),
       '... MS-ASProtocolVersion passed on');

    # SendMail with a 30 MB MIME message, as a phone sends it: Expect:
    # 100-continue, then the body in pieces
    my $size = 30 * 1024 * 1024;
    my $piece = blob(1024 * 1024, 'sendmail');
    my $sha = Digest::SHA->new(256);
    $sha->add($piece) for 1 .. 30;
    my $want = $sha->hexdigest;
    error_log_mark();
    my $t0 = time;
    my $id = send_req($c, 'POST', "/Microsoft-Server-ActiveSync$AS_Q&Cmd=SendMail&SaveInSent=T",
                      [['User-Agent', 'Apple-iPhone13C2/2006.104'], ['MS-ASProtocolVersion', '14.1'],
                       ['Content-Type', 'message/rfc822'], ['Expect', '100-continue'], basic($ALICE),
                       ['Content-Length', $size]], '');
    my $cont = read_resp($c, timeout => 10);
    is($cont->{status}, 100, 'SendMail, 30 MB, Expect: 100-continue: 100 Continue once the gate let it in');
    my $sent = 0;
    for (1 .. 30) { put($c, $piece) or last; $sent += length $piece }
    is($sent, $size, '... 30 MB sent');
    $r = read_resp($c, timeout => 60);
    $r->{id} = $id;
    is($r->{status}, 200, '... 200') or diag(mask($r->{head} // $r->{status}));
    is($r->{json} && $r->{json}{body_len}, $size, '... Exchange read 30 MB');
    is($r->{json} && $r->{json}{body_sha256}, $want, '... and hashed exactly the bytes sent');
    ($e) = entries($id);
    is($e && $e->{body_sha256}, $want, '... (its log agrees)');
    ok($e && !grep({ lc $_->[0] eq 'expect' } @{ $e->{headers} }), '... nginx did not pass Expect on');
    unlike(error_log_since_mark(), qr/a client request body is buffered to a temporary file/,
           '... streamed: no temporary file');
    diag(sprintf 'SendMail 30 MB took %.1f s', time - $t0);

    # wrong password, no credentials: nothing reaches Exchange
    $r = request($c, 'POST', "/Microsoft-Server-ActiveSync$AS_Q&Cmd=FolderSync",
                 [@$AS_H, basic($BOB, "wrong-$BOB->{password}")], $WBXML_FOLDERSYNC);
    is($r->{status}, 401, 'ActiveSync with a wrong password: 401');
    nothing_reached($r->{id}, 'ActiveSync with a wrong password');
    $c = conn();
    $r = request($c, 'POST', "/Microsoft-Server-ActiveSync$AS_Q&Cmd=FolderSync", $AS_H, $WBXML_FOLDERSYNC);
    is($r->{status}, 401, 'ActiveSync without credentials: 401');
    like(hdr($r, 'WWW-Authenticate') // '', qr/^Basic/, '... asking for Basic');
    nothing_reached($r->{id}, 'ActiveSync without credentials');
    # a 30 MB upload without credentials is refused before its body
    $t0 = time;
    $id = send_req($c, 'POST', "/Microsoft-Server-ActiveSync$AS_Q&Cmd=SendMail",
                   [['Content-Type', 'message/rfc822'], ['Expect', '100-continue'], ['Content-Length', $size]], '');
    $r = read_resp($c, timeout => 5);
    ok($r->{status} eq '401' && time - $t0 < 2, 'SendMail without credentials, Expect: 100-continue: 401 at once, no 100')
        or diag($r->{head} // $r->{status});
    nothing_reached($id, 'SendMail without credentials');
}

# ---------------------------------------------------------------------------
# (3) Outlook on MAPI/HTTP with NTLM, two users and an anonymous client

{
    my $mb = '/mapi/emsmdb/?MailboxId=0a2f7b9e-6a58-4c8e-a5cf-6c1e8c2f1d11@contoso.com';
    my $A = conn();
    my $B = conn();
    my $r = ntlm_login($A, $ALICE, 'POST', $mb, mapi_headers('Connect', 1), 'connect-A', 'MAPI alice');
    my $connA = $r->{json} && $r->{json}{conn};
    $r = ntlm_login($B, $CAROL, 'POST', $mb, mapi_headers('Connect', 1), 'connect-B', 'MAPI carol');
    my $connB = $r->{json} && $r->{json}{conn};
    isnt($connA, $connB, 'MAPI: the two Outlooks have their own Exchange connections');

    # Execute requests on both connections at the same time (each sent
    # before the other's answer is read), and an anonymous client between
    my (%users, %conns, @anon);
    for my $n (2 .. 6) {
        my $bodyA = blob(3000 + $n, "A$n");
        my $bodyB = blob(5000 + $n, "B$n");
        my $idA = send_req($A, 'POST', $mb, mapi_headers('Execute', $n), $bodyA);
        my $idB = send_req($B, 'POST', $mb, mapi_headers('Execute', $n), $bodyB);
        my $C = conn();
        push @anon, scalar request($C, 'POST', $mb, mapi_headers('Execute', $n), 'anonymous');
        my $ra = read_resp($A);
        my $rb = read_resp($B);
        $users{A}{ $ra->{json} ? $ra->{json}{auth_user} // 'none' : "status $ra->{status}" }++;
        $users{B}{ $rb->{json} ? $rb->{json}{auth_user} // 'none' : "status $rb->{status}" }++;
        $conns{A}{ $ra->{json}{conn} // '' }++ if $ra->{json};
        $conns{B}{ $rb->{json}{conn} // '' }++ if $rb->{json};
        $users{sha} += ($ra->{json} && $ra->{json}{body_sha256} eq Digest::SHA::sha256_hex($bodyA)) ? 1 : 0;
        $users{sha} += ($rb->{json} && $rb->{json}{body_sha256} eq Digest::SHA::sha256_hex($bodyB)) ? 1 : 0;
    }
    is_deeply($users{A}, { $ALICE->{upn} => 5 }, 'MAPI: 5 Execute POSTs on alice\'s connection, all served as alice');
    is_deeply($users{B}, { $CAROL->{upn} => 5 }, 'MAPI: 5 on carol\'s, at the same time, all as carol');
    is($users{sha}, 10, 'MAPI: every request body reached Exchange intact');
    is_deeply($conns{A}, { $connA => 5 }, 'MAPI: alice\'s requests all went over her pinned Exchange connection');
    is_deeply($conns{B}, { $connB => 5 }, 'MAPI: carol\'s over hers');
    is(scalar(grep { $_->{status} eq '401' } @anon), 5, 'MAPI: the anonymous client got 401 every time (Exchange asked it for NTLM)');
    my @anon_e = map { entries($_->{id}) } @anon;
    is(scalar(grep { defined $_->{auth_user} } @anon_e), 0, 'MAPI: ... and was never served as anybody');

    # a NotificationWait hangs and comes back on the same connection
    $r = request($A, 'POST', $mb, [@{ mapi_headers('NotificationWait', 7) }, ['X-Standin-Delay', 2]],
                 'wait', timeout => 20);
    is($r->{json} && $r->{json}{auth_user}, $ALICE->{upn}, 'MAPI: a NotificationWait hanging 2 s: answered, to alice');
    $r = request($A, 'POST', $mb, [@{ mapi_headers('Disconnect', 8) }], '');
    is($r->{status}, 200, 'MAPI: Disconnect: 200');
}

# ---------------------------------------------------------------------------
# (4) Autodiscover, (5) OAB, (6) EWS with NTLM; (7) RPC over HTTP

{
    # Outlook: Autodiscover at the autodiscover host, with NTLM
    my $c = conn(host => 'autodiscover.contoso.com');
    my $h = [['Content-Type', 'text/xml'], ['User-Agent', 'Microsoft Office/16.0 (Windows NT 10.0; MAPICPL 16.0.10730; Pro)']];
    my $r = ntlm_login($c, $ALICE, 'POST', '/autodiscover/autodiscover.xml', $h, $AUTOD_XML, 'Autodiscover (NTLM)');
    my ($e) = entries($r->{id});
    is($e && $e->{body}, $AUTOD_XML, 'Autodiscover (NTLM): the XML reached Exchange intact');
    is($e && ($e->{headers} ? (map { $_->[1] } grep { lc $_->[0] eq 'host' } @{ $e->{headers} })[0] : ''),
       "autodiscover.contoso.com:$tls_port", 'Autodiscover (NTLM): Host as the client sent it');

    # OAB on the same connection (Outlook downloads after Autodiscover)
    $c = conn();
    $r = ntlm_login($c, $ALICE, 'GET', "/OAB/$OAB_GUID/oab.xml", [['User-Agent', 'Microsoft BITS/7.8']],
                    undef, 'OAB (NTLM)');
    my $len = hdr($r, 'Content-Length');
    ok(defined $len && $len == length($r->{body}), "OAB: oab.xml, all $len bytes arrived");
    $r = request($c, 'GET', "/OAB/$OAB_GUID/2a0ec8ea-e9c2-4e19-98c9-6a0e3a0c8d1e-data-1.lzx",
                 [['User-Agent', 'Microsoft BITS/7.8']]);
    is($r->{status}, 200, 'OAB: the .lzx file on the same connection: 200, still authenticated');
    is($r->{json} && $r->{json}{auth_user}, $ALICE->{upn}, 'OAB: ... as alice');
    is(length($r->{body}), hdr($r, 'Content-Length'), 'OAB: ... every byte arrived');
    # a 40 KB header (the size of a Kerberos ticket of a user in many
    # groups) passes, and comes back in a response of over 40 KB
    my $pad = encode_base64(blob(30 * 1024, 'pad'), '');
    $r = request($c, 'GET', "/OAB/$OAB_GUID/oab.xml", [['User-Agent', 'Microsoft BITS/7.8'], ['X-Esp-Pad', $pad]]);
    is($r->{status}, 200, 'OAB with a ' . int(length($pad) / 1024) . ' KB request header: 200');
    ok(length($r->{body}) == hdr($r, 'Content-Length') && length($r->{body}) > length($pad),
       'OAB: ... all ' . length($r->{body}) . ' bytes of the answer arrived');
    ok($r->{json} && grep({ $_->[0] eq 'X-Esp-Pad' && $_->[1] eq $pad } @{ $r->{json}{headers} }),
       'OAB: ... the header reached Exchange intact');

    # EWS: SOAP with NTLM, then 1 MB (CreateItem with an attachment)
    $c = conn();
    $r = ntlm_login($c, $ALICE, 'POST', '/EWS/Exchange.asmx', $EWS_H, $EWS_FIND, 'EWS (NTLM)');
    ($e) = entries($r->{id});
    is($e && $e->{body}, $EWS_FIND, 'EWS: the SOAP body reached Exchange intact');
    is($e && (map { $_->[1] } grep { lc $_->[0] eq 'content-type' } @{ $e->{headers} })[0],
       'text/xml; charset=utf-8', 'EWS: as text/xml');
    my $att = encode_base64(blob(768 * 1024, 'ews'), "\n");
    my $big = ews_soap(qq{<m:CreateAttachment><m:Attachments><t:FileAttachment><t:Name>a.bin</t:Name>}
                       . qq{<t:Content>$att</t:Content></t:FileAttachment></m:Attachments></m:CreateAttachment>});
    $r = request($c, 'POST', '/EWS/Exchange.asmx', $EWS_H, $big);
    is($r->{status}, 200, 'EWS: a ' . int(length($big) / 1024) . ' KB SOAP request on the same connection: 200');
    is($r->{json} && $r->{json}{body_sha256}, Digest::SHA::sha256_hex($big), 'EWS: ... intact');

    # RPC over HTTP: the NTLM legs with Content-Length 0, then the channel
    # declaring 1 GB of which only the first PDU is sent
    for my $method (qw(RPC_IN_DATA RPC_OUT_DATA)) {
        $c = conn();
        my $uri = '/rpc/rpcproxy.dll?exchange.contoso.local:6001';
        my $rh = [['User-Agent', 'MSRPC'], ['Accept', 'application/rpc'], ['Cache-Control', 'no-cache'],
                  ['Content-Type', 'application/rpc']];
        my $r1 = request($c, $method, $uri, [@$rh, ['Authorization', ntlm1()], ['Content-Length', 0]]);
        is($r1->{status}, 401, "$method: NTLM type 1 (Content-Length 0): 401 challenge");
        my $pdu = "\x05\x00\x14\x03\x10\x00\x00\x00\x4c\x00\x00\x00\x00\x00\x00\x00" . blob(60, $method);
        my $t0 = time;
        my $r3 = request($c, $method, $uri, [@$rh, ['Authorization', ntlm3($r1, $ALICE->{upn})],
                                            ['Content-Length', 1073741824]], $pdu, timeout => 15);
        my $took = time - $t0;
        is($r3->{status}, 200, "$method, Content-Length 1073741824, 76 bytes sent: 200 (no 413)")
            or diag($r3->{head} // $r3->{partial} // '');
        cmp_ok($took, '<', 8, "$method: ... answered in " . sprintf('%.1f', $took) . ' s: nginx did not wait for 1 GB');
        my ($e) = entries($r3->{id});
        is($e && $e->{body_len}, length $pdu, "$method: Exchange got the bytes as they came (76)");
        is($e && $e->{body_sha256}, Digest::SHA::sha256_hex($pdu), "$method: ... intact");
        is($e && $e->{auth_user}, $ALICE->{upn}, "$method: ... on alice's NTLM connection");
        ok($e && (grep { lc $_->[0] eq 'content-length' && $_->[1] eq '1073741824' } @{ $e->{headers} }),
           "$method: ... with the declared Content-Length");
    }
    unlike(error_log_since_mark(), qr/buffered to a temporary file/, 'RPC: nothing spooled to disk');
}

# ---------------------------------------------------------------------------
# (8) health pages; the unauthenticated variants

sub health_pages {
    my ($variant) = @_;
    my $ua = ua();
    for my $vdir (@HEALTH_VDIRS) {
        my $res = $ua->get(url("/$vdir/healthcheck.htm"));
        is($res->code, 200, "$variant: /$vdir/healthcheck.htm without a login: 200");
        my ($e) = backend_entries_for($res);
        ok($e && ($e->{status} // 0) == 200, "$variant: ... answered by Exchange ($e->{backend})") if $e;
        ok($e, "$variant: ... from Exchange") unless $e;
    }
}
health_pages('delegate');

{
    my $ua = ua();
    my $res = $ua->get(url('/owa/'));
    is($res->code, 302, 'OWA without a session: 302 to the login form');
    nothing_reached($res->request->header('X-Esp-Test-Id'), 'OWA without a session');
    $res = $ua->post(url('/owa/service.svc?action=GetFolder'), Content => '{}', 'Content-Type' => 'application/json');
    is($res->code, 440, 'OWA POST without a session: 440');
    nothing_reached($res->request->header('X-Esp-Test-Id'), 'OWA POST without a session');
    $res = $ua->get(url('/ecp/?rfr=admin'));
    is($res->code, 302, 'ECP without a session: 302 to the login form');
    nothing_reached($res->request->header('X-Esp-Test-Id'), 'ECP without a session');
    $res = $ua->post(url('/ecp/DDI/DDIService.svc/GetList?schema=MailboxService'), Content => '{}',
                     'Content-Type' => 'application/json');
    is($res->code, 440, 'ECP POST without a session: 440');
    nothing_reached($res->request->header('X-Esp-Test-Id'), 'ECP POST without a session');

    # delegate: Exchange authenticates, so an anonymous request does reach
    # it, and Exchange answers 401 (that is what "delegate" means; the
    # generated file says so; --mapi-auth basic closes it, below)
    my $c = conn();
    for my $vdir (@WINDOWS) {
        my $r = request($c, 'GET', "/$vdir/", []);
        my @e = entries($r->{id});
        ok($r->{status} == 401 && @e && !defined $e[0]{auth_user},
           "delegate /$vdir/ without credentials: Exchange itself answers 401, serves nobody");
    }
}

# ---------------------------------------------------------------------------
# (2b) the Ping

{
    my $waited = waitpid($ping_pid, 0);
    my $p = eval { $JSON->decode(slurp_file($ping_file)) } // {};
    is($p->{status}, 200, "ActiveSync Ping hanging $PING_DELAY s (X-Standin-Delay): 200, not cut")
        or diag($JSON->encode($p));
    cmp_ok($p->{elapsed} // 0, '>=', $PING_DELAY - 0.5, sprintf('... after %.1f s', $p->{elapsed} // 0));
    is($p->{json} && $p->{json}{auth_user}, $ALICE->{upn}, '... served to alice');
}
no_alerts('delegate', $log_off);

# ===========================================================================
# --mapi-auth basic: Basic checked at the gate for the Windows services

($rc, $conf, $err) = gen(facts(extra => ['--mapi-auth', 'basic']));
is($rc, 0, 'esp-config --mapi-auth basic succeeds') or diag($err);
$log_off = -s $ERROR_LOG // 0;
ok(start_conf($conf), 'nginx starts with it') or give_up();

{
    my $c = conn(host => 'autodiscover.contoso.com');
    my $r = request($c, 'POST', '/Autodiscover/Autodiscover.xml', [['Content-Type', 'text/xml'], basic($ALICE)], $AUTOD_XML);
    is($r->{status}, 200, 'Autodiscover (Basic): 200');
    my ($e) = entries($r->{id});
    is($e && $e->{auth_user}, $ALICE->{upn}, 'Autodiscover (Basic): passed on as Basic for alice');
    is($e && $e->{body}, $AUTOD_XML, 'Autodiscover (Basic): the XML intact');

    $c = conn();
    my $mb = '/mapi/emsmdb/?MailboxId=0a2f7b9e-6a58-4c8e-a5cf-6c1e8c2f1d11@contoso.com';
    my %seen;
    for my $n (1 .. 4) {
        $r = request($c, 'POST', $mb, [@{ mapi_headers($n == 1 ? 'Connect' : 'Execute', $n) }, basic($ALICE)], "req$n");
        $seen{ $r->{json} ? $r->{json}{auth_user} : $r->{status} }++;
    }
    is_deeply(\%seen, { $ALICE->{upn} => 4 }, 'MAPI (Basic): 4 POSTs on one connection, all alice');

    $r = request($c, 'POST', '/EWS/Exchange.asmx', [@$EWS_H, basic($ALICE)], $EWS_FIND);
    is($r->{json} && $r->{json}{body}, $EWS_FIND, 'EWS (Basic): the SOAP body intact');
    $r = request($c, 'GET', "/OAB/$OAB_GUID/oab.xml", [basic($ALICE)]);
    is($r->{status}, 200, 'OAB (Basic): 200');
    is(length($r->{body}), hdr($r, 'Content-Length'), 'OAB (Basic): every byte arrived');
    $r = request($c, 'POST', '/powershell?serializationLevel=Full;clientApplication=ESP65',
                 [['Content-Type', 'application/soap+xml;charset=UTF-8'], basic($ALICE)], '<s:Envelope/>');
    is($r->{json} && $r->{json}{auth_user}, $ALICE->{upn}, 'PowerShell (Basic): alice');

    for my $method (qw(RPC_IN_DATA RPC_OUT_DATA)) {
        $c = conn();
        my $pdu = "\x05\x00\x14\x03\x10\x00\x00\x00\x4c\x00\x00\x00\x00\x00\x00\x00" . blob(60, "b$method");
        my $t0 = time;
        $r = request($c, $method, '/rpc/rpcproxy.dll?exchange.contoso.local:6001',
                     [['User-Agent', 'MSRPC'], ['Content-Type', 'application/rpc'], basic($ALICE),
                      ['Content-Length', 1073741824]], $pdu, timeout => 15);
        is($r->{status}, 200, "$method (Basic), 1 GB declared, 76 bytes: 200");
        cmp_ok(time - $t0, '<', 8, "$method (Basic): ... not buffered");
        is($r->{json} && $r->{json}{body_sha256}, Digest::SHA::sha256_hex($pdu), "$method (Basic): ... intact");
    }
}

health_pages('basic');

# nothing unauthenticated reaches Exchange on any of them
{
    for my $vdir (@WINDOWS) {
        my $path = { ews => '/EWS/Exchange.asmx', mapi => '/mapi/emsmdb/', rpc => '/rpc/rpcproxy.dll',
                     oab => "/OAB/$OAB_GUID/oab.xml", autodiscover => '/autodiscover/autodiscover.xml',
                     powershell => '/powershell' }->{$vdir};
        my $c = conn();
        my $r = request($c, 'POST', $path, [['Content-Type', 'text/xml']], '<x/>');
        is($r->{status}, 401, "basic: $path without credentials: 401 from the gate");
        like(join(' ', @{ $r->{headers}{'www-authenticate'} || [] }), qr/^Basic/, "basic: ... asking for Basic");
        nothing_reached($r->{id}, "basic: $path without credentials");
        $r = request($c, 'POST', $path, [['Content-Type', 'text/xml'], ['Authorization', ntlm1()]], '<x/>');
        is($r->{status}, 401, "basic: $path with an NTLM type 1: 401 from the gate");
        nothing_reached($r->{id}, "basic: $path with NTLM");
    }
    my $c = conn();
    my $r = request($c, 'POST', '/EWS/Exchange.asmx', [@$EWS_H, basic($BOB, "wrong-$BOB->{password}")], $EWS_FIND);
    is($r->{status}, 401, 'basic: EWS with a wrong password: 401');
    nothing_reached($r->{id}, 'basic: EWS with a wrong password');
    # an RPC channel without credentials: refused before any of its 1 GB
    $c = conn();
    my $t0 = time;
    $r = request($c, 'RPC_IN_DATA', '/rpc/rpcproxy.dll?exchange.contoso.local:6001',
                 [['Content-Length', 1073741824]], 'x' x 76, timeout => 5);
    is($r->{status}, 401, 'basic: RPC_IN_DATA (1 GB declared) without credentials: 401 at once');
    nothing_reached($r->{id}, 'basic: RPC_IN_DATA without credentials');
}
no_alerts('basic', $log_off);

# ===========================================================================
# (9) a backend going down under load, on a private pair of stand-ins

# free ports of this namespace (another file may run beside this one)
my %PRIV = do {
    my @s = map { IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp') } 1 .. 2;
    (ex65a => $s[0]->sockport, ex65b => $s[1]->sockport);
};
my $PRIV_DIR = "$PREFIX/exchange-private";
make_path($PRIV_DIR);
my %priv_pid;

sub start_standin {
    my ($name) = @_;
    unlink "$PRIV_DIR/$name.pid";
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$PRIV_DIR/$name.out";
        open STDERR, '>&', \*STDOUT;
        exec '/usr/bin/python3', "$ROOT/t/fixtures/exchange.py", '--listen', "127.0.0.1:$PRIV{$name}",
             '--name', $name, '--cert', "$RUN/pki/exchange.pem", '--key', "$RUN/pki/exchange.key",
             '--secret', $ENV{ESP_EXCHANGE_SECRET} // 'esp65', '--log', "$PRIV_DIR/$name.jsonl",
             '--pidfile', "$PRIV_DIR/$name.pid"
            or POSIX::_exit(127);
    }
    $priv_pid{$name} = $pid;
    for (1 .. 100) {
        return 1 if -s "$PRIV_DIR/$name.pid" && port_open($PRIV{$name});
        sleep 0.1;
    }
    return 0;
}

sub stop_standin {
    my ($name, $sig) = @_;
    my $pid = delete $priv_pid{$name} or return;
    kill $sig // 'TERM', $pid;
    waitpid $pid, 0;
}
END { stop_standin($_, 'KILL') for keys %priv_pid }

sub priv_log {
    my @e;
    for my $name (sort keys %PRIV) {
        for (split /\n/, slurp_file("$PRIV_DIR/$name.jsonl")) {
            my $x = eval { $JSON->decode($_) } or next;
            push @e, $x;
        }
    }
    return @e;
}

SKIP: {
    for (sort keys %PRIV) {
        ok(start_standin($_), "private stand-in $_ on 127.0.0.1:$PRIV{$_}") or skip 'no private stand-in', 1;
    }
    ($rc, $conf, $err) = gen(facts(exchange => [map { "127.0.0.1:$_" } sort values %PRIV],
                                   extra => ['--mapi-auth', 'basic']));
    is($rc, 0, 'esp-config for the private pair') or diag($err);
    $log_off = -s $ERROR_LOG // 0;
    ok(start_conf($conf), 'nginx starts with it') or skip 'no nginx', 1;

    # What happens (observed, and what the checks below hold to): the
    # backend is SIGKILLed, so its connections close at once (a host that
    # vanishes without a FIN would cost proxy_connect_timeout 5s instead).
    # - GET and OPTIONS in flight on it: "upstream prematurely closed
    #   connection", retried by proxy_next_upstream (error) on the other
    #   server: the client sees a 200, only later.
    # - ActiveSync POSTs in flight on it: not retried (nginx never resends
    #   a non-idempotent request once sent, and these bodies are not even
    #   buffered): 502 to the device, which repeats the command itself
    #   (Sync and Ping are safe to repeat; a SendMail cut mid-way may or may
    #   not have been sent by Exchange).
    # - The in-flight failures alone reach max_fails=3: "upstream server
    #   temporarily disabled" for fail_timeout=30s; requests after the kill
    #   go to the survivor without even trying the dead one (or get
    #   "connection refused" and move on, POSTs included, since nothing was
    #   sent).
    #
    # clients: idempotent GETs (OAB with Basic, health page), ActiveSync
    # OPTIONS (idempotent) and Sync POSTs (not idempotent), each hanging
    # 0.1-0.3 s at Exchange so that some are in flight when the backend dies
    my @kinds = (
        ['GET oab',    'GET',     "/OAB/$OAB_GUID/oab.xml", [basic($ALICE), ['X-Standin-Delay', '0.3']], undef],
        ['GET health', 'GET',     '/ews/healthcheck.htm', [['X-Standin-Delay', '0.1']], undef],
        ['AS OPTIONS', 'OPTIONS', '/Microsoft-Server-ActiveSync', [basic($ALICE), ['X-Standin-Delay', '0.2']], undef],
        ['AS Sync',    'POST',    "/Microsoft-Server-ActiveSync$AS_Q&Cmd=Sync",
         [@$AS_H, basic($ALICE), ['X-Standin-Delay', '0.3']], $WBXML_FOLDERSYNC],
    );
    my $RUN_FOR = 7;
    my $KILL_AT = 2.5;
    my $t_start = time;
    my @kids;
    my $record = sub {
        my ($out, $name, $t0, $r) = @_;
        print $out $JSON->encode({ kind => $name, t0 => $t0 - $t_start, t1 => time - $t_start,
                                   status => $r->{status}, backend => hdr($r, 'X-Backend'),
                                   id => $r->{id} }), "\n";
    };
    for my $k (0 .. 3) {
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            open my $out, '>', "$TMP/load.$k" or POSIX::_exit(1);
            my $c;
            my $n = $k;
            while (time - $t_start < $RUN_FOR) {
                my ($name, @req) = @{ $kinds[$n++ % @kinds] };
                my $t0 = time;
                my $r = eval { $c //= conn(); request($c, @req, timeout => 10) } // { status => "error: $@" };
                $record->($out, $name, $t0, $r);
                undef $c if $r->{status} !~ /^\d+$/ || lc(hdr($r, 'Connection') // '') eq 'close';
            }
            close $out;
            POSIX::_exit(0);
        }
        push @kids, $pid;
    }
    # and a burst of slow requests (2 s at Exchange) just before the kill,
    # each on its own connection: round robin puts several of them on the
    # victim, so the kill certainly cuts GETs and POSTs in flight
    my $SLOW = 2;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open my $out, '>', "$TMP/load.burst" or POSIX::_exit(1);
        sleep $KILL_AT - 1 - (time - $t_start);
        my @sent;
        for my $i (0 .. 15) {
            my ($name, @req) = $i % 8 < 5
                ? ('slow GET', 'GET', "/OAB/$OAB_GUID/oab.xml", [basic($ALICE), ['X-Standin-Delay', $SLOW]], undef)
                : ('slow AS Sync', 'POST', "/Microsoft-Server-ActiveSync$AS_Q&Cmd=Sync",
                   [@$AS_H, basic($ALICE), ['X-Standin-Delay', $SLOW]], $WBXML_FOLDERSYNC);
            my $c = eval { conn() } or next;
            my $t0 = time;
            my $id = send_req($c, @req);
            push @sent, [$name, $t0, $c, $id];
        }
        for (@sent) {
            my ($name, $t0, $c, $id) = @$_;
            my $r = read_resp($c, timeout => 15);
            $r->{id} = $id;
            $record->($out, $name, $t0, $r);
        }
        close $out;
        POSIX::_exit(0);
    }
    push @kids, $pid;
    sleep $KILL_AT - (time - $t_start);
    my $killed_at = time - $t_start;
    stop_standin('ex65b', 'KILL');
    waitpid $_, 0 for @kids;

    my @recs;
    for my $k (0 .. 3, 'burst') {
        push @recs, map { $JSON->decode($_) } grep { /\S/ } split /\n/, slurp_file("$TMP/load.$k");
    }
    my @idem = grep { $_->{kind} !~ /AS Sync/ } @recs;
    my @post = grep { $_->{kind} =~ /AS Sync/ } @recs;
    my @after = grep { $_->{t0} > $killed_at + 0.05 } @recs;
    my @before = grep { $_->{t1} < $killed_at } @recs;
    my %by_backend;
    $by_backend{ $_->{backend} // 'none' }++ for @before;
    diag(sprintf '%d requests in %.0f s, %d answered before the kill (%s), %d sent after it',
         scalar @recs, $RUN_FOR, scalar @before,
         join(', ', map { "$_: $by_backend{$_}" } sort keys %by_backend), scalar @after);
    ok($by_backend{ex65a} && $by_backend{ex65b}, 'before the kill both backends served');
    cmp_ok(scalar @idem, '>', 20, 'a stream of idempotent requests (' . scalar(@idem) . ')');
    my @idem_bad = grep { $_->{status} ne '200' } @idem;
    is(scalar @idem_bad, 0, 'no idempotent request (GET, OPTIONS) failed, in flight or not')
        or diag(join "\n", map { $JSON->encode($_) } @idem_bad);
    my @slow_get = grep { $_->{kind} eq 'slow GET' } @recs;
    # retried: the survivor began it after the kill (its log has the test id)
    my $kill_epoch = $t_start + $killed_at;
    my %started = map { ((map { $_->[1] } grep { $_->[0] eq 'X-Esp-Test-Id' } @{ $_->{headers} })[0] // '' => $_->{t}) }
                  grep { $_->{backend} eq 'ex65a' } priv_log();
    my @retried = grep { $_->{status} eq '200' && ($started{ $_->{id} // '' } // 0) > $kill_epoch } @slow_get;
    ok(@retried >= 1, sprintf 'the kill cut %d of %d slow GETs in flight: nginx retried them on the survivor, 200',
       scalar @retried, scalar @slow_get);
    my @after_bad = grep { $_->{status} ne '200' } @after;
    is(scalar @after_bad, 0, 'every request sent after the kill succeeded (' . scalar(@after) . '), POSTs included')
        or diag(join "\n", map { $JSON->encode($_) } @after_bad);
    is_deeply([sort keys %{ { map { ($_->{backend} // 'none') => 1 } @after } }], ['ex65a'],
              '... all served by the surviving backend');
    my @inflight = grep { $_->{t0} <= $killed_at && $_->{t1} >= $killed_at } @post;
    my @post_bad = grep { $_->{status} ne '200' } @post;
    ok(!grep({ $_->{t0} > $killed_at + 0.05 || $_->{t1} < $killed_at } @post_bad),
       'the only ActiveSync POSTs that failed were in flight at the kill');
    ok(!grep({ $_->{status} !~ /^(?:200|502)$/ } @post), '... and they failed with 502');
    diag(sprintf 'ActiveSync Sync POSTs: %d, in flight at the kill: %d, failed: %d (%s)',
         scalar @post, scalar @inflight, scalar @post_bad,
         join(', ', map { "$_->{status}" } @post_bad) || 'none');
    my $log = log_from($log_off);
    my $n_prem = () = $log =~ /upstream prematurely closed connection|Connection reset by peer|peer closed connection/g;
    my $n_refused = () = $log =~ /Connection refused/g;
    diag("error log: $n_prem in-flight upstream connections lost, $n_refused connects refused");
    unlike($log, qr/\[(?:alert|crit|emerg)\]/, 'failover: no alert, crit or emerg');

    # bring it back; a reload (new workers, fresh upstream state) sends
    # traffic to it again at once (nginx would try it after fail_timeout)
    ok(start_standin('ex65b'), 'ex65b restarted');
    my $off = -s $ERROR_LOG;
    kill 'HUP', (slurp_file("$PREFIX/logs/nginx.pid") =~ /(\d+)/)[0];
    ok(EspTest::poll(10, sub { log_from($off) =~ /start worker process/ }), 'nginx reload');
    sleep 0.5;
    my %b;
    my $c = conn();
    for (1 .. 8) {
        my $r = request($c, 'GET', '/ews/healthcheck.htm', []);
        $b{ hdr($r, 'X-Backend') // $r->{status} }++;
    }
    ok($b{ex65b}, 'after the restart the revived backend serves again') or diag(join ' ', %b);
    stop_standin($_) for keys %priv_pid;
}

nginx_stop();
done_testing();
