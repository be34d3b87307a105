# The form login in a real browser (Debian's Chromium driven by
# playwright-core, t/browser/login-flow.js), as a person does it: open
# /owa/, land on the login form, sign in, land on the stand-in OWA, sign
# out, see the signed-out page.  Also: a private computer, a wrong password
# in German, and screenshots of the login page at desktop and phone width
# in $ESP_RUN/screenshots/.
#
# Needs: chromium, libnss3-tools (certutil), nodejs, and "npm ci" in
# t/browser (playwright-core); skipped with a message otherwise.

use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;
use File::Path qw(make_path remove_tree);
use File::Temp qw(tempdir);
use JSON::PP ();

my $ROOT = $ENV{ESP_ROOT} || '.';
my $RUN = $ENV{ESP_RUN} || '/tmp/esp-run';
my $CA = $ENV{ESP_CA} || "$RUN/pki/ca.pem";
my $CHROMIUM = $ENV{CHROMIUM} || '/usr/bin/chromium';
my $SHOTS = "$RUN/screenshots";

sub which { my ($p) = @_; return (grep { -x "$_/$p" } split /:/, $ENV{PATH} // '')[0] }

my @missing;
push @missing, "$CHROMIUM (apt-get install chromium)" unless -x $CHROMIUM;
push @missing, 'node (apt-get install nodejs)' unless which('node');
push @missing, 'certutil (apt-get install libnss3-tools)' unless which('certutil');
push @missing, "$ROOT/t/browser/node_modules (cd t/browser && npm ci)"
    unless -d "$ROOT/t/browser/node_modules/playwright-core";
if (@missing) {
    Test::More::plan(skip_all => 'browser test skipped, missing: ' . join(', ', @missing));
}
if (!ad_present() || !exchange_present() || !$ENV{ESP_MODULE}) {
    Test::More::plan(skip_all => 'needs the AD fixture, the stand-in Exchange and the module');
}

my $USERS = ad_users();
my $ALICE = $USERS->{alice}{upn};

ok(nginx_start({
    http_config => "esp_session_key \$ESP_RUN/keys/session.key;\n" . sso_domain_config(),
    config => <<'CONF',
esp contoso;
esp_allowed_hosts mail.contoso.com;
esp_greeting "Welcome to Contoso mail.";
location /owa/ {
    esp_client_auth form;
    esp_server_auth form;
    esp_logoff /owa/logoff.owa;
    proxy_pass https://exchange;
}
CONF
}), 'nginx starts') or BAIL_OUT(nginx_error());

my $URL = 'https://mail.contoso.com:' . nginx_tls_port() . '/owa/';

# the password goes to the driver in a private file, never on a command line
my $tmp = tempdir('esp-browser-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0700, $tmp;
sub pwfile {
    my ($name, $pw) = @_;
    my $f = "$tmp/$name.pw";
    open my $fh, '>', $f or die "$f: $!";
    print $fh "$pw\n";
    close $fh;
    chmod 0600, $f;
    return $f;
}

sub run_flow {
    my (@args) = @_;
    my $pid = open my $fh, '-|';
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        open STDERR, '>&', \*STDOUT;
        exec 'node', "$ROOT/t/browser/login-flow.js", '--url', $URL, '--ca', $CA,
             '--timeout', 30000, @args;
        exit 127;
    }
    my $out = do { local $/; <$fh> };
    close $fh;
    my $rc = $? >> 8;
    my ($line) = grep { /^\{/ } split /\n/, $out // '';
    my $r = eval { JSON::PP->new->decode($line // '') } // {};
    return ($rc, $r, $out);
}

sub cookie_attr {
    my ($r, $name) = @_;
    my ($c) = grep { $_->{name} eq $name } @{ $r->{cookie_attrs} || [] };
    return $c // {};
}

remove_tree("$SHOTS/flow", "$SHOTS/private", "$SHOTS/login-error-de");
make_path($SHOTS);

# ------------------------------------------------ sign in, OWA, sign out

{
    error_log_mark();
    my $mark = backend_mark();
    my ($rc, $r, $out) = run_flow('--user', $ALICE,
                                  '--password-file', pwfile('alice', $USERS->{alice}{password}),
                                  '--shots', "$SHOTS/flow", '--expect-text', $ALICE, '--logoff');
    is($rc, 0, 'browser: the whole flow succeeds') or diag(mask($out));
    ok($r->{ok}, 'browser: login-flow.js says ok') or diag(mask($out));
    like($r->{login_url} // '', qr{^https://mail\.contoso\.com:\d+/_esp/login\?url=%2Fowa%2F$},
         'browser: /owa/ led to the login form');
    is($r->{login_form}{method}, 'post', 'browser: the form posts');
    is($r->{login_form}{action}, '/_esp/login', 'browser: to /_esp/login');
    is_deeply([sort @{ $r->{login_form}{fields} || [] }],
              [sort qw(url:hidden csrf:hidden username:text password:password trusted:radio)],
              'browser: the form has url, csrf, username, password, trusted');
    ok($r->{login_form}{public_private}, 'browser: the public/private choice is offered');
    like($r->{tls}{protocol} // '', qr/^TLS 1\.[23]$/, 'browser: over TLS, the chain verified against the test CA');
    like($r->{landing_url} // '', qr{^https://mail\.contoso\.com:\d+/owa/$}, 'browser: landed on /owa/');
    is($r->{landing_title}, 'Outlook (stand-in)', 'browser: the stand-in OWA page');
    my $esp = cookie_attr($r, 'esp_session');
    ok($esp->{httpOnly} && $esp->{secure} && ($esp->{sameSite} // '') eq 'Lax' && $esp->{session},
       'browser: esp_session is HttpOnly, Secure, SameSite=Lax, a session cookie');
    my $csrf = cookie_attr($r, 'esp_csrf');
    ok(($csrf->{path} // '') eq '/_esp/login' && ($csrf->{sameSite} // '') eq 'Strict' && $csrf->{httpOnly},
       'browser: esp_csrf is limited to /_esp/login, SameSite=Strict, HttpOnly');
    ok(cookie_attr($r, 'cadata')->{httpOnly}, 'browser: Exchange\'s cadata cookie arrived (single sign-on)');
    like($r->{logoff_url} // '', qr{/_esp/logout$}, 'browser: signing out ends on /_esp/logout');
    ok(!grep({ $_ eq 'esp_session' } @{ $r->{cookies_after_logoff} || ['esp_session'] }),
       'browser: no esp_session after signing out');
    is_deeply($r->{foreign_requests}, [], 'browser: nothing fetched from another origin');
    is_deeply($r->{page_errors}, [], 'browser: no script errors');
    ok(-s "$SHOTS/flow/$_", "browser: screenshot $SHOTS/flow/$_")
        for qw(01-login.png 02-landing.png 03-signed-out.png 04-after-logoff.png);

    my @handoff = grep { $_->{method} eq 'POST' && $_->{uri} eq '/owa/auth.owa' }
                  @{ EspTest::backend_log_since_mark($mark) };
    is(scalar @handoff, 1, 'browser: one hand-off to Exchange (the password typed once)');
    my @owa = grep { $_->{method} eq 'GET' && $_->{uri} eq '/owa/' && ($_->{status} // 0) == 200
                     && ($_->{auth_user} // '') eq $ALICE }
              @{ EspTest::backend_log_since_mark($mark) };
    ok(scalar @owa, 'browser: the stand-in OWA served its page to alice');
    like(error_log_since_mark(), qr/esp: login user="\Q$ALICE\E" .* result=ok/, 'browser: the login is logged');
    like(error_log_since_mark(), qr/esp: logoff user="\Q$ALICE\E"/, 'browser: the logoff is logged');
    unlike(error_log_since_mark(), qr/login refused/, 'browser: the browser\'s post passes the CSRF checks');
}

# ---------------------------------------------------- a private computer

{
    my $mark = backend_mark();
    my ($rc, $r, $out) = run_flow('--user', $ALICE,
                                  '--password-file', pwfile('alice', $USERS->{alice}{password}),
                                  '--shots', "$SHOTS/private", '--expect-text', $ALICE, '--private');
    is($rc, 0, 'browser, private: succeeds') or diag(mask($out));
    my ($h) = grep { $_->{uri} eq '/owa/auth.owa' } @{ EspTest::backend_log_since_mark($mark) };
    like($h->{body} // '', qr/(?:^|&)flags=4(?:&|$)/, 'browser, private: flags=4 in the hand-off');
}

# ------------------------------------------------ a wrong password, German

{
    error_log_mark();
    my ($rc, $r, $out) = run_flow('--user', $ALICE, '--password-file', pwfile('wrong', 'Wrong-Passw0rd'),
                                  '--locale', 'de-DE', '--shots', "$SHOTS/login-error-de",
                                  '--expect-login-error', 'Der Benutzername oder das Kennwort ist falsch');
    is($rc, 0, 'browser, German: the form comes back with the German message') or diag(mask($out));
    ok(!grep({ $_ eq 'esp_session' } @{ $r->{cookies} || [] }), 'browser, German: no session');
}

# ------------------------------- the login page at desktop and phone width

{
    my $js = "$tmp/shots.js";
    open my $fh, '>', $js or die;
    print $fh <<'JS';
'use strict';
const { launch } = require(process.argv[2]);
const [url, ca, out] = process.argv.slice(3);
(async () => {
    const res = {};
    for (const [name, w, h] of [['desktop', 1280, 800], ['phone', 390, 844]]) {
        const b = await launch({ caFiles: [ca], viewport: { width: w, height: h },
                                 locale: 'en-US' });
        try {
            const page = await b.context.newPage();
            await page.goto(url, { waitUntil: 'load' });
            const file = out + '/login-' + name + '.png';
            await page.screenshot({ path: file, fullPage: true });
            res[name] = await page.evaluate(() => ({
                form: !!document.querySelector('form input[name="password"]'),
                scrollWidth: document.documentElement.scrollWidth,
                clientWidth: document.documentElement.clientWidth,
                greeting: (document.querySelector('.greeting') || {}).textContent,
            }));
            res[name].file = file;
            if (name === 'desktop') {
                // sign in and look at what the browser landed on
                const pw = require('fs').readFileSync(process.argv[6], 'utf8').replace(/\n$/, '');
                await page.fill('input[name="username"]', process.argv[7]);
                await page.fill('input[name="password"]', pw);
                await Promise.all([page.waitForNavigation({ waitUntil: 'load' }),
                                   page.click('button[type="submit"]')]);
                res.landing = await page.evaluate(() => ({
                    standin: (document.querySelector('meta[name="esp-standin"]') || {}).content,
                    user: (document.getElementById('esp-standin-user') || {}).textContent,
                    path: location.pathname,
                }));
            }
        } finally {
            await b.close();
        }
    }
    process.stdout.write(JSON.stringify(res) + '\n');
})().catch((e) => { console.error(String(e && e.stack || e)); process.exit(1); });
JS
    close $fh;
    my $pw = pwfile('alice', $USERS->{alice}{password});
    my $out = `node $js $ROOT/t/browser/chromium.js $URL $CA $SHOTS $pw $ALICE 2>&1`;
    my ($line) = grep { /^\{/ } split /\n/, $out;
    my $r = eval { JSON::PP->new->decode($line // '') } // {};
    for my $name (qw(desktop phone)) {
        my $s = $r->{$name} // {};
        ok($s->{form}, "screenshot $name: the login form") or diag($out);
        ok(-s "$SHOTS/login-$name.png", "screenshot $name: $SHOTS/login-$name.png");
        ok(defined $s->{scrollWidth} && $s->{scrollWidth} <= $s->{clientWidth},
           "screenshot $name: no sideways scrolling ($s->{scrollWidth}/$s->{clientWidth})");
        is($s->{greeting}, 'Welcome to Contoso mail.', "screenshot $name: the greeting");
    }
    is($r->{landing}{standin}, 'owa', 'browser: landed on a page with <meta name="esp-standin" content="owa">')
        or diag(mask($out));
    is($r->{landing}{user}, $ALICE, 'browser: it names the user');
    diag("screenshots in $SHOTS");
}

done_testing();
