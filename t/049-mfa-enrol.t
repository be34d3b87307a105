# Enrolment of the second factor (esp_mfa totp with esp_mfa_enroll on,
# src/ngx_esp_totp.c): a user without a secret gets, after the password, a
# page with a QR code (inline SVG, libqrencode) and the key as text; the QR
# code decodes (zbarimg) to an otpauth:// URI with that key; a wrong code
# gets the page again; a good one makes the service account write the
# sealed secret to the user's entry, then the session; the next login asks
# for a code of that secret.  A directory that refuses the write: no
# session.  The admin's reset (esp_status action=mfa_reset) clears the
# secret: the next login enrols again.  And the whole enrolment in
# headless Chromium (t/browser/mfa-enrol.js), the QR code read from a
# screenshot.
#
# Needs zbarimg (Debian's zbar-tools); the browser part also what
# t/043-browser.t needs.

use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;
use EspTest::Mfa;
use File::Temp qw(tempdir);
use HTTP::Request::Common qw(POST);
use IPC::Open2 qw(open2);
use JSON::PP ();
use URI;
use URI::Escape qw(uri_unescape);

if (!ad_present() || !exchange_present() || !$ENV{ESP_MODULE}) {
    Test::More::plan(skip_all => 'needs the AD fixture, the stand-in Exchange and the module');
}
if (!-x '/usr/bin/zbarimg') {
    Test::More::plan(skip_all => 'needs zbarimg (apt-get install zbar-tools)');
}

our $RUN = $ENV{ESP_RUN} || '/tmp/esp-run';
my $ROOT = $ENV{ESP_ROOT} || '.';
my $CA = $ENV{ESP_CA} || "$RUN/pki/ca.pem";
my $ATTR = 'carLicense';
my $TOTP_KEY = totp_key_file();
my $SHOTS = "$RUN/screenshots/mfa-enrol";


# ---------------------------------------------------------------- helpers





# the QR code of the page: its SVG drawn as a PBM, read by zbarimg
sub decode_svg_qr {
    my ($html) = @_;
    my ($svg) = $html =~ m{(<svg [^>]*class="qr".*?</svg>)}s or return undef;
    my ($side) = $svg =~ /viewBox="0 0 (\d+) \1"/ or return undef;
    my ($d) = $svg =~ /<path [^>]*d="([^"]*)"/ or return undef;
    my @px = map { [(0) x $side] } 1 .. $side;
    while ($d =~ /M(\d+) (\d+)h(\d+)v1h-\3z/g) {
        $px[$2][$_] = 1 for $1 .. $1 + $3 - 1;
    }
    my $scale = 4;
    my $pbm = "P1\n" . ($side * $scale) . ' ' . ($side * $scale) . "\n";
    for my $row (@px) {
        my $line = join(' ', map { ($_) x $scale } @$row) . "\n";
        $pbm .= $line x $scale;
    }
    my $dir = tempdir('esp-qr-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    EspTest::spurt("$dir/qr.pbm", $pbm);
    return zbar("$dir/qr.pbm");
}

sub zbar {
    my ($file) = @_;
    my $out = `/usr/bin/zbarimg --quiet --raw -Sdisable -Sqrcode.enable $file 2>/dev/null`;
    chomp $out;
    return $? == 0 ? $out : undef;
}

my %PW = mfa_users(qw(mfa-e1 mfa-e2 mfa-e3));
# the service account may write the attribute of these two (README's dsacls)
mfa_ad(grant => $_, $ATTR, 'svc-esp') for qw(mfa-e1 mfa-e2);

my $HTTP = "esp_session_key $RUN/keys/session.key;\n"
    . "esp_shared_zone esp049:1m;\n"
    . sso_domain_config(ldap_server => 'ldaps://' . ad_env('AD_DC1') . ':636',
                        totp_attribute => $ATTR, totp_key_file => $TOTP_KEY,
                        totp_issuer => '"Contoso Mail"');

ok(nginx_start({ http_config => $HTTP, config => <<'CONF' }), 'nginx starts') or Test::More::BAIL_OUT(nginx_error());
esp contoso;
esp_allowed_hosts mail.contoso.com;
esp_mfa totp;
esp_mfa_enroll on;
location /owa/ {
    esp_client_auth form;
    esp_server_auth form;
    proxy_pass https://exchange;
}
location /ecp/ {
    esp_client_auth form;
    proxy_pass https://exchange;
}
location = /esp-status { esp_status; allow 127.0.0.1; deny all; }
CONF

sub password_step {
    my ($ua, $path, $user) = @_;
    my $res = $ua->get(url($path));
    ($res) = follow($ua, $res);
    return submit_form($ua, $res, username => "$user\@contoso.local", password => $PW{$user});
}

sub session_of { return cookies($_[0])->{esp_session} }

sub key_of { return ($_[0]->decoded_content // '') =~ /id="secret">([A-Z2-7]+)</ ? $1 : undef }

sub status_post {
    my (%f) = @_;
    return ua()->request(POST(url('/esp-status'), Content => [%f]));
}

# ------------------------------------------------------ enrolment, by HTTP

my $SECRET;
{
    my $ua = ua();
    error_log_mark();
    my $res = password_step($ua, '/ecp/', 'mfa-e2');
    is($res->code, 200, 'no secret: the enrolment page');
    like($res->decoded_content, qr{<h1>Set up your authenticator app</h1>}, 'enrolment: its heading');
    like($res->decoded_content, qr{<svg xmlns="http://www.w3.org/2000/svg"[^>]*class="qr"}, 'enrolment: an inline SVG QR code');
    like($res->header('Content-Security-Policy') // '', qr/default-src 'none'/, 'enrolment: under the pages\' CSP');
    my $key = key_of($res);
    like($key // '', qr/^[A-Z2-7]{32}$/, 'enrolment: the key as text (160 bits, base32)');
    ok(!session_of($ua), 'enrolment: no session yet');

    my $uri = decode_svg_qr($res->decoded_content);
    ok(defined $uri, 'enrolment: the QR code decodes') or diag('zbarimg read nothing');
    my $u = URI->new($uri // '');
    is($u->scheme, 'otpauth', 'QR: an otpauth URI');
    is(uri_unescape($u->path), '/Contoso Mail:mfa-e2@contoso.local', 'QR: issuer and user');
    my %q = $u->query_form;
    is($q{secret}, $key, 'QR: the same key as the text');
    is($q{issuer}, 'Contoso Mail', 'QR: issuer');
    is_deeply([@q{qw(algorithm digits period)}], ['SHA1', 6, 30], 'QR: SHA1, 6 digits, 30 s');
    $SECRET = base32_decode($key // 'A');

    # a wrong code: the page again, the same key
    my $r2 = submit_form($ua, $res, code => sprintf('%06d', (totp($SECRET, step()) + 1) % 1000000));
    is($r2->code, 200, 'enrolment, wrong code: the page again');
    like($r2->decoded_content, qr/The code is not valid/, 'enrolment, wrong code: says so');
    is(key_of($r2), $key, 'enrolment, wrong code: the same key');
    is(mfa_ad(get => 'mfa-e2', $ATTR), '', 'enrolment, wrong code: nothing written');

    $r2 = submit_form($ua, $r2, code => totp($SECRET, step()));
    is($r2->code, 302, 'enrolment, right code: on to the return URL');
    ok(session_of($ua), 'enrolment, right code: the session');
    ok(error_log_wait(qr/user "mfa-e2\@contoso\.local" enrolled a TOTP secret \(carLicense written on ldaps:/),
       'enrolment: logged');
    my $stored = mfa_ad(get => 'mfa-e2', $ATTR);
    like($stored, qr/^esp1:[A-Za-z0-9+\/]+=*$/, 'enrolment: the sealed secret is in the entry');
    unlike($stored, qr/\Q$key\E/, 'enrolment: not the key in the clear');
    my $opened = `/usr/bin/python3 $ROOT/t/fixtures/esp-totp.py open $TOTP_KEY mfa-e2\@contoso.local '$stored'`;
    chomp $opened;
    is($opened, unpack('H*', $SECRET), 'enrolment: it opens (totp_key_file) to the key shown');

    # the next login asks for a code of it
    my $ua2 = ua();
    $res = password_step($ua2, '/ecp/', 'mfa-e2');
    like($res->decoded_content, qr{<h1>Verify your identity</h1>}, 'after enrolment: the code page');
    unlike($res->decoded_content, qr/id="secret">[A-Z2-7]/, 'after enrolment: no key shown');
    $r2 = submit_form($ua2, $res, code => totp($SECRET, step() + 1));
    is($r2->code, 302, 'after enrolment: a code of the secret passes');
    ok(session_of($ua2), 'after enrolment: session');
}

# ----------------------------------------- a write the directory refuses

{
    my $ua = ua();
    error_log_mark();
    my $res = password_step($ua, '/ecp/', 'mfa-e3');
    my $key = key_of($res);
    ok($key, 'no write access: the enrolment page still');
    my $r2 = submit_form($ua, $res, code => totp(base32_decode($key // 'A'), step()));
    is($r2->code, 503, 'no write access: 503');
    like($r2->decoded_content, qr/cannot be checked right now/, 'no write access: says so');
    ok(!session_of($ua), 'no write access: no session');
    ok(error_log_wait(qr/enrolment of user "mfa-e3\@contoso\.local" failed: writing carLicense/),
       'no write access: logged');
    is(mfa_ad(get => 'mfa-e3', $ATTR), '', 'no write access: nothing written');
}

# ------------------------------------------------------- the admin's reset

{
    error_log_mark();
    my $res = status_post(action => 'mfa_reset', domain => 'contoso', user => 'mfa-e2');
    is($res->code, 200, 'mfa_reset: 200') or diag($res->as_string);
    is_deeply(eval { JSON::PP->new->decode($res->decoded_content) }, { ok => JSON::PP::true, action => 'mfa_reset' },
              'mfa_reset: the answer');
    is(mfa_ad(get => 'mfa-e2', $ATTR), '', 'mfa_reset: the secret is gone from the entry');
    ok(error_log_wait(qr/esp: admin mfa_reset user="mfa-e2\@contoso\.local" domain=contoso client=127\.0\.0\.1/),
       'mfa_reset: logged');
    my $ua = ua();
    $res = password_step($ua, '/ecp/', 'mfa-e2');
    like($res->decoded_content, qr{<h1>Set up your authenticator app</h1>}, 'after the reset: enrolment again');
    isnt(key_of($res), undef, 'after the reset: a new key');

    $res = status_post(action => 'mfa_reset', domain => 'contoso', user => 'nobody-such');
    is($res->code, 404, 'mfa_reset of an unknown user: 404');
    $res = status_post(action => 'mfa_reset', domain => 'nope', user => 'mfa-e2');
    is($res->code, 404, 'mfa_reset in an unknown domain: 404');
    $res = ua()->get(url('/esp-status?action=mfa_reset&domain=contoso&user=mfa-e2'));
    is($res->code, 405, 'mfa_reset by GET: 405');
}

# ------------------------------------------------------ in a real browser

SKIP: {
    my @missing = grep { !(-x $_) } '/usr/bin/chromium';
    push @missing, 'node' unless grep { -x "$_/node" } split /:/, $ENV{PATH};
    push @missing, 'playwright-core' unless -d "$ROOT/t/browser/node_modules/playwright-core";
    skip("browser part: missing @missing", 12) if @missing;

    my $tmp = tempdir('esp-browser-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    chmod 0700, $tmp;
    my $pwf = "$tmp/pw";
    EspTest::spurt($pwf, "$PW{'mfa-e1'}\n");
    chmod 0600, $pwf;

    my $mark = backend_mark();
    my $pid = open2(my $out, my $in, 'node', "$ROOT/t/browser/mfa-enrol.js",
                    '--url', url('/owa/'), '--user', 'mfa-e1@contoso.local',
                    '--password-file', $pwf, '--ca', $CA, '--shots', $SHOTS, '--timeout', 30000);
    my $line = <$out> // '';
    my ($png, $key) = $line =~ /^QR (\S+) (\S+)$/;
    ok($png && -s $png, 'browser: the enrolment page with a QR code') or diag(mask($line));
    my $uri = $png ? zbar($png) : undef;
    ok(defined $uri, 'browser: the QR code in the screenshot decodes');
    my %q = URI->new($uri // '')->query_form;
    is($q{secret}, $key, 'browser: the QR code holds the key the page shows');
    my $secret = base32_decode($q{secret} // 'A');
    print $in totp($secret, step()), "\n";
    close $in;
    my $json = do { local $/; <$out> } // '';
    waitpid $pid, 0;
    is($? >> 8, 0, 'browser: the enrolment succeeds') or diag(mask($json));
    my $r = eval { JSON::PP->new->decode((grep { /^\{/ } split /\n/, $json)[0] // '') } // {};
    ok($r->{ok}, 'browser: mfa-enrol.js says ok') or diag(mask($json));
    ok($r->{qr_is_svg}, 'browser: the QR code is an inline SVG');
    is($r->{heading}, 'Set up your authenticator app', 'browser: the heading');
    like($r->{csp} // '', qr/default-src 'none'/, 'browser: the page\'s CSP');
    my $origin = url('');
    is_deeply([grep { index($_, $origin) != 0 } @{ $r->{fetched_on_enrol} || [] }], [],
              'browser: the enrolment page fetched nothing from elsewhere');
    like($r->{steps}[1]{url} // '', qr{/owa/$}, 'browser: landed on /owa/');
    ok(grep({ $_ eq 'esp_session' } @{ $r->{cookies} || [] }), 'browser: the session cookie');
    like(mfa_ad(get => 'mfa-e1', $ATTR), qr/^esp1:/, 'browser: the secret was written');
}

nginx_stop();
done_testing();
