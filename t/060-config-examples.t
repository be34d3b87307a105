# conf-examples/: every example passes "nginx -t" with the module, with the
# test fixtures' files in place of /etc/nginx/esp/..., and serves: health
# pages without a login, a host that is not allowed and a path outside the
# Exchange directories refused, OWA behind the login form, ActiveSync behind
# Basic. exchange2019-esp.conf is what tools/esp-config writes from
# conf-examples/contoso.facts (so the two cannot drift apart).

use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;

use File::Temp qw(tempdir);
use Time::HiRes qw(sleep);

my $ROOT = $ENV{ESP_ROOT} || '.';
my $RUN = $ENV{ESP_RUN} || '/tmp/esp-run';
my $NGINX = $ENV{ESP_NGINX} || '/usr/sbin/nginx';
my $MODULE = $ENV{ESP_MODULE} // '';
my $CA = $ENV{ESP_CA} || "$RUN/pki/ca.pem";
my $PREFIX = nginx_prefix();
my $TMP = tempdir(CLEANUP => 1);

sub slurp_file {
    my ($f) = @_;
    open my $fh, '<', $f or return '';
    local $/;
    return scalar <$fh>;
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

sub port_open {
    my ($port) = @_;
    return IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                 Proto => 'tcp', Timeout => 1) ? 1 : 0;
}

my $has_ntlm = -f $MODULE && slurp_file($MODULE) =~ /esp_ntlm/ ? 1 : 0;
my @backends = split ' ', ($ENV{ESP_BACKENDS} || '127.0.0.1:8443 127.0.0.1:8444');

# An example, made to run here: the fixtures' files, addresses and ports,
# and logs, pid and temp files in this test's prefix.
sub localize {
    my ($text, $file) = @_;
    my %path = (
        'modules/ngx_exchange_esp_module.so' => $MODULE,
        '/etc/nginx/esp/exchange-ca.pem' => $CA,
        '/etc/nginx/esp/ad-ca.pem' => ad_env('AD_CA') // $CA,
        '/etc/nginx/esp/bind.secret' => ad_env('AD_BIND_PASSWORD_FILE') // '/nonexistent',
        '/etc/nginx/esp/mail.contoso.com.pem' => "$RUN/pki/front.pem",
        '/etc/nginx/esp/mail.contoso.com.key' => "$RUN/pki/front.key",
        '/etc/nginx/esp/session.key' => "$RUN/keys/session.key",
        '/var/log/nginx' => "$PREFIX/logs",
        '/run/nginx.pid' => "$PREFIX/logs/nginx.pid",
    );
    for my $p (sort { length $b <=> length $a } keys %path) {
        $text =~ s/\Q$p\E/$path{$p}/g;
    }
    my %addr = (
        '10.0.0.21:443' => $backends[0], '10.0.0.22:443' => $backends[1] // $backends[0],
        '10.0.0.11' => ad_env('AD_DC1') // 'AD-NOT-SET', '10.0.0.12' => ad_env('AD_DC2') // 'AD-NOT-SET',
    );
    $text =~ s/\b\Q$_\E\b/$addr{$_}/g for sort keys %addr;
    my ($port, $tls) = (nginx_port(), nginx_tls_port());
    $text =~ s/^(\s*)listen 443 /$1listen 127.0.0.1:$tls /mg;
    $text =~ s/^(\s*)listen 80;/$1listen 127.0.0.1:$port;/mg;
    # the stand-ins' certificate names exchange.contoso.local
    $text =~ s/proxy_ssl_name mail\.contoso\.com;/proxy_ssl_name exchange.contoso.local;/g;
    $text =~ s/^(\s*)(esp_ntlm\b)/$1# $2/mg unless $has_ntlm;
    # what an example leaves to nginx's defaults: kept inside the prefix
    $text = "pid $PREFIX/logs/nginx.pid;\n$text" unless $text =~ /^pid /m;
    $text = "error_log $PREFIX/logs/error.log info;\n$text" unless $text =~ /^error_log /m;
    $text =~ s/^http \{\n/http {\n    access_log $PREFIX\/logs\/access.log;\n/m;
    my $temp = join '', map { "    ${_}_temp_path $PREFIX/temp/$_;\n" }
                        qw(client_body proxy fastcgi uwsgi scgi);
    $text =~ s/^http \{\n/http {\n$temp/m;
    return $text;
}

sub start_conf {
    my ($text) = @_;
    nginx_stop();
    open my $fh, '>', "$PREFIX/conf/nginx.conf" or die "$PREFIX/conf/nginx.conf: $!";
    print $fh $text;
    close $fh;
    error_log_mark();
    my ($rc, $out) = nginx_cmd();
    for (1 .. 100) {
        return 1 if $rc == 0 && nginx_running() && port_open(nginx_tls_port());
        sleep 0.1;
    }
    diag("nginx did not start (exit $rc):\n$out\n" . mask(error_log_since_mark()));
    return 0;
}

my @examples = sort glob "$ROOT/conf-examples/*.conf";
ok(scalar(grep { m{/exchange2019-esp\.conf$} } @examples)
   && scalar(grep { m{/minimal\.conf$} } @examples)
   && scalar(grep { m{/basic-only\.conf$} } @examples),
   'the examples are there: exchange2019-esp.conf, minimal.conf, basic-only.conf');

# ------------------------------------------ in step with the generator

{
    chdir $ROOT or die "cd $ROOT: $!";
    my $out = `$^X tools/esp-config --input conf-examples/contoso.facts --no-check-files 2>&1`;
    is($?, 0, 'esp-config writes the example from conf-examples/contoso.facts');
    ok($out eq slurp_file('conf-examples/exchange2019-esp.conf'),
       'exchange2019-esp.conf is exactly what esp-config writes (regenerate it after editing'
       . ' the template: tools/esp-config --input conf-examples/contoso.facts --no-check-files'
       . ' --output conf-examples/exchange2019-esp.conf)');
}

# ------------------------------------------------- what they all promise

for my $file (@examples) {
    (my $name = $file) =~ s{.*/}{};
    my $text = slurp_file($file);
    like($text, qr/^\s*proxy_ssl_verify on;/m, "$name: Exchange's certificate is verified");
    like($text, qr/^\s*proxy_http_version 1\.1;/m, "$name: HTTP/1.1 to Exchange");
    like($text, qr/^\s*esp_allowed_hosts /m, "$name: allowed hosts");
    unlike($text, qr/ssl_protocols[^;]*TLSv1(?:\.1)?[ ;]/, "$name: TLS 1.2 and later only");
    # a shared keepalive pool never serves a location where Exchange does NTLM
    my %ups;
    while ($text =~ /^\s*upstream (\S+) \{(.*?)^\s*\}/msg) {
        $ups{$1} = $2;
    }
    while ($text =~ /location [^{]*\{(.*?)^\s*\}/msg) {
        my $loc = $1;
        next unless $loc =~ /^\s*esp_client_auth delegate;/m;
        my ($up) = $loc =~ m{^\s*proxy_pass https://([^;/]+)}m;
        my $u = $ups{$up // ''} // '';
        ok($u !~ /^\s*keepalive\s/m || $u =~ /^\s*esp_ntlm\b/m,
           "$name: delegate location uses upstream '" . ($up // '?') . "': pinned, or no keepalive");
    }
    like($text, qr{esp_preauth_excluded_dirs[^;]*/owa/auth/expiredpassword\.aspx\*},
         "$name: the password form is excluded from pre-auth") if $text =~ /esp_password_form/;
    like($text, qr/^\s*listen 443 ssl http2;/m, "$name: HTTP/2 (no NTLM here)")
        if $text !~ /esp_client_auth delegate/;
    unlike($text, qr/^\s*listen[^;#]*\bhttp2\b/m, "$name: no HTTP/2 where NTLM is delegated")
        if $text =~ /esp_client_auth delegate/;
}

my $full = slurp_file("$ROOT/conf-examples/exchange2019-esp.conf");
for my $vdir (qw(owa ecp Microsoft-Server-ActiveSync ews mapi rpc oab autodiscover powershell api)) {
    like($full, qr/^\s*location ~\* \^\/\Q$vdir\E\(\/\|\$\) \{/m, "exchange2019-esp.conf: a location for /$vdir");
}
for my $vdir (qw(owa ecp Microsoft-Server-ActiveSync ews mapi rpc oab autodiscover powershell)) {
    like($full, qr{esp_preauth_excluded_dirs[^;]*/\Q$vdir\E/healthcheck\.htm}, "... /$vdir/healthcheck.htm without a login");
}
like($full, qr{/owa/9c9f0f4b-1c1a-4d7e-9a61-0b3f9c3c1e55\@contoso\.com/\*},
     '... the arbitration mailbox /owa/<GUID>@<smtp-domain>/* excluded');
like($full, qr{esp_password_form https://mail\.contoso\.com/owa/auth/expiredpassword\.aspx\?url=/owa/auth\.owa;},
     '... the User Password Form as the Kemp how-to derives it');
like($full, qr{location ~\* \^/rpc.*?client_max_body_size 2g;.*?proxy_request_buffering off;.*?proxy_buffering off;}s,
     '... /rpc: 1 GB bodies, streamed both ways');
like($full, qr{location ~\* \^/Microsoft-Server-ActiveSync.*?proxy_read_timeout 1900s;}s, '... ActiveSync Ping: 1900 s');
like($full, qr{location ~\* \^/mapi.*?proxy_read_timeout 1900s;}s, '... MAPI notifications: 1900 s');
like($full, qr/return 302 https:\/\/\$host\$request_uri;/, '... http redirects to https');
like($full, qr/log_format esp_access [^;]*\$esp_user/, '... $esp_user in the access log');

# ------------------------------------------------ nginx -t, then serve

SKIP: {
skip 'needs the module, the AD fixture and the stand-in Exchange', 1
    unless -f $MODULE && ad_present() && exchange_present();
diag('this module build has no esp_ntlm: esp_ntlm is commented out for the test') unless $has_ntlm;

for my $file (@examples) {
    (my $name = $file) =~ s{.*/}{};
    my $text = localize(slurp_file($file), $name);
    (my $directives = $text) =~ s/#.*//g;
    unlike($directives, qr{/etc/nginx/|10\.0\.0\.}, "$name: every path and address has a test stand-in")
        or diag(join "\n", $directives =~ /^.*(?:\/etc\/nginx\/|10\.0\.0\.).*$/mg);

    open my $fh, '>', "$PREFIX/conf/nginx.conf" or die;
    print $fh $text;
    close $fh;
    my ($rc, $out) = nginx_cmd('-t');
    is($rc, 0, "$name: nginx -t") or diag($out);
    next if $rc;

    ok(start_conf($text), "$name: nginx starts") or next;
    my $ua = ua();
    my $alice = ad_users()->{alice};

    my $health = $text =~ /owa\/healthcheck/ ? '/owa/healthcheck.htm'
                                             : '/Microsoft-Server-ActiveSync/healthcheck.htm';
    my $res = $ua->get(url($health));
    is($res->code, 200, "$name: $health without a login");

    $res = $ua->get(url($health), Host => 'evil.example');
    is($res->code, 403, "$name: a host that is not allowed: 403");
    is(scalar backend_entries_for($res, wait => 0.3), 0, "$name: ... Exchange saw nothing");

    $res = $ua->get(url('/exchange/'));
    is($res->code, 403, "$name: a path outside the allowed directories: 403");

    $res = $ua->request(HTTP::Request->new(OPTIONS => url('/Microsoft-Server-ActiveSync'),
        [Authorization => basic_auth($alice->{upn}, $alice->{password})]));
    is($res->code, 200, "$name: ActiveSync with Basic");

    if ($text =~ /esp_client_auth form/) {
        my ($form) = follow($ua, $ua->get(url('/owa/')));
        $res = submit_form($ua, $form, username => $alice->{upn}, password => $alice->{password});
        ($res) = follow($ua, $res);
        is($res->code, 200, "$name: OWA after the login form");
        like($res->decoded_content // '', qr/alice/, "$name: ... as alice");
    } else {
        $res = $ua->post(url('/EWS/Exchange.asmx'), Content => '<x/>', 'Content-Type' => 'text/xml',
                         Authorization => basic_auth($alice->{upn}, $alice->{password}));
        is($res->code, 200, "$name: EWS with Basic");
    }
    nginx_stop();
}
}

done_testing();
