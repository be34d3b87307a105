# contrib/fail2ban/filter.d/nginx-esp.conf against the module's real error
# log lines: logins that fail (from 127.0.0.2) must match with that
# address, in both modes; logins that succeed or fail through no fault of
# the client (from 127.0.0.3) must never match; right passwords refused
# anyway and forged form posts (from 127.0.0.4) match only in the
# "aggressive" mode.  The failregex runs under Python's re, as fail2ban
# runs it, with fail2ban's own tag substitution emulated; fail2ban-regex
# (Debian package fail2ban) checks the same lines when it is installed.
# User names try to inject another address; X-Forwarded-For tries too;
# so do hostile Origin, Referer, User-Agent and Host values, user names
# and form fields (", client: 198.51.100.x, server: " in every spelling:
# quotes, backslashes, CR/LF, %-encoded, UTF-8): the filter must never
# take an address a client wrote, over the whole error log.

use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;
use File::Temp qw(tempdir);
use HTTP::Request::Common qw(POST);
use JSON::PP qw(decode_json);
use Time::HiRes qw(sleep);

if (!ad_present() || !exchange_present() || !$ENV{ESP_MODULE}) {
    Test::More::plan(skip_all => 'needs the AD fixture, the stand-in Exchange and the module');
}
if (!-x '/usr/bin/python3') {
    Test::More::plan(skip_all => 'needs /usr/bin/python3');
}

my $ROOT = $ENV{ESP_ROOT} || '.';
my $FILTER = "$ROOT/contrib/fail2ban/filter.d/nginx-esp.conf";
my $USERS = ad_users();
my %PW = map { $_ => $USERS->{$_}{password} } keys %$USERS;
my %UPN = map { $_ => $USERS->{$_}{upn} } keys %$USERS;
my $GROUP = 'CN=grp-other,CN=Users,DC=contoso,DC=local';
my $CSRF = 'f2b0' x 8;

my $HTTP = "esp_session_key \$ESP_RUN/keys/session.key;\n"
    . sso_domain_config(max_failed_auths => 3, reset_fail_timeout => '10m',
                        unblock_timeout => '10m')
    . sso_domain_config(name => 'down', ldap_server => 'ldaps://127.0.0.2:6369',
                        ldap_timeout => '1s');

my $SERVER = <<"CONF";
esp contoso;
esp_allowed_hosts mail.contoso.com;
location /owa/ {
    esp_client_auth form;
    esp_server_auth form;
    esp_password_form /owa/auth/expiredpassword.aspx?url=/owa/auth.owa;
    esp_preauth_excluded_dirs /owa/auth/expiredpassword.aspx*;
    proxy_pass https://exchange;
}
location /Microsoft-Server-ActiveSync {
    esp_client_auth basic;
    esp_server_auth basic;
    proxy_pass https://exchange;
}
location /ews/ {
    esp_client_auth basic;
    esp_permitted_groups "$GROUP";
    proxy_pass https://exchange;
}
location /down/ {
    esp down;
    esp_client_auth basic;
    proxy_pass https://exchange;
}
CONF

ok(nginx_start({ http_config => $HTTP, config => $SERVER, log_level => 'info' }), 'nginx starts')
    or BAIL_OUT(nginx_error());
error_log_mark();

# ------------------------------------------------ produce real log lines

my %FROM = (fail => '127.0.0.2', never => '127.0.0.3', aggressive => '127.0.0.4');
my %ua = map { my $u = ua(); $u->local_address($FROM{$_}); ($_ => $u) } keys %FROM;
my @expect;         # [kind, description, qr for its log line]

sub basic_try {
    my ($kind, $what, $path, $user, $pw, $line_re, @h) = @_;
    my $res = $ua{$kind}->get(url($path . (index($path, '?') < 0 ? '?' : '&') . 'r=' . rand()),
                              Authorization => basic_auth($user, $pw), @h);
    push @expect, [$kind, "$what (" . $res->code . ')', $line_re];
    return $res;
}

sub form_try {
    my ($kind, $what, $user, $pw, $line_re, %o) = @_;
    my $body = join '&', map { $_->[0] . '=' . URI::Escape::uri_escape($_->[1]) }
        [username => $user], [password => $pw], [url => '/owa/'],
        ($o{no_token} ? () : [csrf => $CSRF]);
    my $res = $ua{$kind}->request(POST(url('/_esp/login'),
        Content_Type => 'application/x-www-form-urlencoded',
        Cookie => "esp_csrf=$CSRF", Content => $body, @{ $o{headers} // [] }));
    push @expect, [$kind, "$what (" . $res->code . ')', $line_re];
    return $res;
}

# a client-written value as the module's log lines write it, inside quotes
sub log_escape {
    my ($v) = @_;
    my $cut = length($v) > 256;
    $v = substr($v, 0, 256);
    $v =~ s/(["\\])/\\$1/g;
    $v =~ s/([\x00-\x1f\x7f-\xff])/sprintf('\\x%02x', ord $1)/ge;
    return $cut ? "$v..." : $v;
}

require URI::Escape;
my $AS = '/Microsoft-Server-ActiveSync?Cmd=Sync';

# what a client writes to name an address of its choice
my @HOSTILE = (
    'x, client: 198.51.100.7, server: y',
    'x", client: 198.51.100.8, server: "y',
    'x\\", client: 198.51.100.9, server: \\"y',
    'x%2C%20client%3A%20198.51.100.10%2C%20server%3A%20y',
    "\xc3\xbc\xe2\x80\x9c, client: 198.51.100.11, server: \xe2\x80\x9dy",
    "x\r\n2026/01/01 00:00:00 [warn] 1#1: *1 esp: login user=\"z\" client=198.51.100.12 "
        . "domain=contoso dc=x result=bad_credentials ad_code=52e, client: 198.51.100.12, server: y",
    'x" client=198.51.100.13 domain=contoso dc=x result=bad_credentials ad_code=52e',
);

# failures: both modes, from 127.0.0.2
basic_try(fail => 'Basic, unknown user', $AS, 'nosuchuser-082@contoso.local', 'Wrong-1x',
          qr/user="nosuchuser-082\@contoso\.local" .* result=bad_credentials/,
          'X-Forwarded-For' => '10.9.9.8', 'X-Real-IP' => '10.9.9.8');
form_try(fail => 'form, unknown user', 'nosuchuser-082-form', 'Wrong-1x',
         qr/user="nosuchuser-082-form(?:\@contoso\.local)?" .* result=bad_credentials/);
basic_try(fail => 'Basic, empty password', $AS, 'nosuchuser-082-empty@contoso.local', '',
          qr/user="nosuchuser-082-empty\@contoso\.local" .* result=invalid/);
basic_try(fail => 'Basic, account locked by AD', $AS, $UPN{locked}, $PW{locked},
          qr/user="locked\@contoso\.local" .* result=locked/);
basic_try(fail => "Basic, ghost $_", $AS, 'ghost-082@contoso.local', 'Wrong-1x',
          qr/user="ghost-082\@contoso\.local" .* result=bad_credentials/) for 1 .. 3;
basic_try(fail => 'Basic, ghost blocked by the gate', $AS, 'ghost-082@contoso.local', 'Wrong-1x',
          qr/user="ghost-082\@contoso\.local" .* result=blocked/);
basic_try(fail => 'Basic, a user name that carries a fake client=', $AS,
          'x" client=10.9.9.9 domain=contoso dc=x result=bad_credentials ad_code=52e x', 'Wrong-1x',
          qr/user="x\\" client=10\.9\.9\.9 .* result=bad_credentials/);
basic_try(fail => 'Basic, a user name that carries a fake log line', $AS,
          "y\r\n2026/01/01 00.00.00 [warn] 1#1 *1 esp login user=\"z\" client=10.9.9.7 result=bad_credentials",
          'Wrong-1x', qr/user="y\\x0d\\x0a.* result=invalid/);
form_try(fail => 'form, a user name that carries a fake client=',
         'x" client=10.9.9.6 domain=contoso dc=x result=bad_credentials ad_code=52e x', 'Wrong-1x',
         qr/user="x\\" client=10\.9\.9\.6 .* result=bad_credentials/);

# hostile values everywhere a client writes one
for my $i (0 .. $#HOSTILE) {
    my $h = $HOSTILE[$i];
    my $safe = $h !~ /[\r\n]/;          # LWP sends no CR/LF in a header
    basic_try(fail => "Basic, unknown user, hostile Referer and User-Agent $i", $AS,
              "nosuchuser-082-hdr$i\@contoso.local", 'Wrong-1x',
              qr/user="nosuchuser-082-hdr$i\@contoso\.local" .* result=bad_credentials/,
              ($safe ? (Referer => $h, 'User-Agent' => $h, Origin => $h) : ()));
    # Basic: the name ends at the first ":"
    my ($bu) = split /:/, "$h-082b$i", 2;
    basic_try(fail => "Basic, hostile user name $i", $AS, "$h-082b$i", 'Wrong-1x',
              qr/user="\Q${\ log_escape($bu)}\E(?:\@contoso\.local)?" client=127\.0\.0\.2 .* result=(?:bad_credentials|invalid)/);
    next unless $safe;                  # the form refuses control characters first
    form_try(fail => "form, hostile user name $i", "$h-082f$i", 'Wrong-1x',
             qr/user="\Q${\ log_escape("$h-082f$i")}\E(?:\@contoso\.local)?" client=127\.0\.0\.2 .* result=(?:bad_credentials|invalid)/,
             headers => [Referer => $h, 'User-Agent' => $h]);
    form_try(aggressive => "form post with a token, hostile Origin $i", "nosuchuser-082-o$i", 'Wrong-1x',
             qr/login refused: posted from another site \("Origin: \Q${\ log_escape($h)}\E"\)/,
             headers => [Origin => $h, Referer => $h, 'User-Agent' => $h]);
}

# never: from 127.0.0.3
basic_try(never => 'Basic, right password', $AS, $UPN{alice}, $PW{alice},
          qr/user="alice\@contoso\.local" .* dc=ldaps\S+ result=ok/);
basic_try(never => 'Basic, right password again (cache)', $AS, $UPN{alice}, $PW{alice},
          qr/user="alice\@contoso\.local" .* dc=cache result=ok/);
form_try(never => 'form, right password', $UPN{carol}, $PW{carol},
         qr/user="carol\@contoso\.local" .* result=ok/);
form_try(never => 'form, password expired (532)', $UPN{pwdexpired}, $PW{pwdexpired},
         qr/user="pwdexpired\@contoso\.local" .* result=password_expired/);
basic_try(never => 'Basic, no domain controller answers', '/down/x', $UPN{alice}, $PW{alice},
          qr/user="alice\@contoso\.local" .* result=unavailable/);

# hostile Host values: 403 before any login, never counted
for my $h ('198.51.100.21', 'x",client=198.51.100.22', "\xc3\xbc.client=198.51.100.23",
           'x%2C%20client%3A%20198.51.100.24', 'x\\,client=198.51.100.25') {
    my $res = $ua{never}->get(url("$AS&h=" . rand()), Host => $h,
                              Authorization => basic_auth($UPN{alice}, 'Wrong-1x'));
    push @expect, [never => 'hostile Host ' . log_escape($h) . ' (' . $res->code . ')',
                   qr/esp: host "\Q${\ log_escape($h =~ tr{A-Z}{a-z}r)}\E" is not allowed/];
}
basic_try(never => 'Basic, right password, hostile Referer and User-Agent', $AS, $UPN{alice}, $PW{alice},
          qr/user="alice\@contoso\.local" .* result=ok/,
          Referer => $HOSTILE[0], 'User-Agent' => $HOSTILE[0]);

# aggressive only: from 127.0.0.4
basic_try(aggressive => 'Basic, right password, not in the permitted group', '/ews/x',
          $UPN{carol}, $PW{carol}, qr/user="carol\@contoso\.local" .* result=not_permitted/);
basic_try(aggressive => 'Basic, right password, account disabled', $AS, $UPN{disabled}, $PW{disabled},
          qr/user="disabled\@contoso\.local" .* result=disabled/);
form_try(aggressive => 'form post without a token', 'nosuchuser-082-csrf', 'Wrong-1x',
         qr/login refused: missing or foreign form token/, no_token => 1);

# the lines, each found once
my @lines;
ok(EspTest::poll(5, sub {
    @lines = grep { / esp: / } split /\n/, error_log_since_mark();
    @lines >= @expect;
}), 'every attempt left its line in the error log') or diag(mask(error_log_since_mark()));

my %line_of;        # index in @expect -> index in @lines
my %taken;
for my $i (0 .. $#expect) {
    my ($kind, $what, $re) = @{ $expect[$i] };
    my ($n) = grep { !$taken{$_} && $lines[$_] =~ $re
                     && $lines[$_] =~ /, client: \Q$FROM{$kind}\E,/ } 0 .. $#lines;
    ok(defined $n, "$kind: $what: its line is in the log") or next;
    $taken{$n} = 1;
    $line_of{$i} = $n;
}

my $dir = tempdir(CLEANUP => 1);
my $log = "$dir/error.log";
EspTest::spurt($log, join('', map { "$_\n" } @lines));
# and everything nginx wrote meanwhile, its own lines (and its unescaped
# "referrer: ..." after the real client address) included
my $whole = "$dir/whole.log";
EspTest::spurt($whole, error_log_since_mark());

# ------------------------------------------------ Python's re, as fail2ban

my $py = <<'PY';
import configparser, json, re, sys

path, mode, log = sys.argv[1:4]
cp = configparser.RawConfigParser(strict=False)
with open(path, encoding='utf-8') as f:
    cp.read_file(f)
d = {k: v for k, v in cp.items('Definition')}
d['mode'] = mode

# fail2ban's <HOST> (fail2ban/server/failregex.py, usedns=yes)
host = (r'(?:(?:::f{4,6}:)?(?P<ip4>(?:\d{1,3}\.){3}\d{1,3})'
        r'|\[?(?P<ip6>(?:[0-9a-fA-F]{1,4}::?|::){1,7}(?:[0-9a-fA-F]{1,4}|(?<=:):))\]?'
        r'|(?P<dns>[\w\-.^_]*\w))')

def expand(v):
    for _ in range(50):
        n = re.sub(r'%\(([^)]+)\)s', lambda m: d[m.group(1).lower()], v)
        n = re.sub(r'<([\w-]+)>', lambda m: d.get(m.group(1).lower(), m.group(0))
                   if m.group(1) != 'HOST' else m.group(0), n)
        if n == v:
            return v.replace('%%', '%')
        v = n
    raise SystemExit('interpolation does not end')

regexes = [re.compile(r.strip().replace('<HOST>', host))
           for r in expand(d['failregex']).split('\n') if r.strip()]
ignores = [re.compile(r.strip().replace('<HOST>', host))
           for r in expand(d.get('ignoreregex', '')).split('\n') if r.strip()]
date = re.compile(r'^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}')
out = []
with open(log, encoding='utf-8', errors='surrogateescape') as f:
    for n, line in enumerate(f):
        line = line.rstrip('\n')
        m = date.match(line)
        if not m:
            continue
        rest = line[m.end():]
        if any(i.search(rest) for i in ignores):
            continue
        for r in regexes:
            m = r.search(rest)
            if m:
                out.append([n, m.group('ip4') or m.group('ip6') or m.group('dns')])
                break
print(json.dumps(out))
PY
EspTest::spurt("$dir/f2b.py", $py);

sub f2b_py {
    my ($mode, $file) = @_;
    open(my $fh, '-|', '/usr/bin/python3', "$dir/f2b.py", $FILTER, $mode, $file)
        or die "python3: $!";
    my $json = do { local $/; <$fh> };
    close $fh;
    return $? == 0 ? decode_json($json) : undef;
}

for my $mode (qw(normal aggressive)) {
    my $hits = f2b_py($mode, $log);
    ok($hits, "$mode: the filter compiles and runs under Python's re") or next;
    my %hit = map { $_->[0] => $_->[1] } @$hits;
    for my $i (sort { $a <=> $b } keys %line_of) {
        my ($kind, $what) = @{ $expect[$i] };
        my $n = $line_of{$i};
        my $want = $kind eq 'fail' || ($kind eq 'aggressive' && $mode eq 'aggressive');
        if ($want) {
            is($hit{$n}, $FROM{$kind}, "$mode: $kind: $what: matches, with the client's address");
        } else {
            ok(!exists $hit{$n}, "$mode: $kind: $what: does not match")
                or diag(mask($lines[$n]));
        }
    }
    my @wrong = grep { $_ !~ /^127\.0\.0\.[234]$/ } values %hit;
    ok(!@wrong, "$mode: no address a client wrote in is ever picked (@wrong)");
    my @all = map { $_->[1] } @{ f2b_py($mode, $whole) // [[0, 'no run']] };
    @wrong = grep { $_ !~ /^127\.0\.0\.[24]$/ } @all;
    ok(@all && !@wrong, "$mode: over the whole error log, only the failing clients' addresses (@wrong)");
}

# ------------------------------------------------ fail2ban-regex itself

SKIP: {
    my ($tool) = grep { -x } '/usr/bin/fail2ban-regex', '/usr/local/bin/fail2ban-regex';
    skip 'fail2ban-regex is not installed (apt-get install fail2ban)', 6 unless $tool;
    for my $mode (qw(normal aggressive)) {
        my %want = (fail => scalar(grep { $_->[0] eq 'fail' } @expect),
                    aggressive => $mode eq 'aggressive'
                                  ? scalar(grep { $_->[0] eq 'aggressive' } @expect) : 0);
        open(my $fh, '-|', $tool, '-r', '-o', 'ip', $whole, "$FILTER\[mode=$mode\]")
            or die "$tool: $!";
        my @ips = grep { /\S/ } map { s/\s+//gr } <$fh>;
        close $fh;
        ok($? == 0, "fail2ban-regex, $mode: runs") or next;
        my %got;
        $got{$_}++ for @ips;
        is($got{$FROM{fail}} // 0, $want{fail}, "fail2ban-regex, $mode: every failure, from $FROM{fail}");
        is(join(',', map { "$_=$got{$_}" } sort grep { $_ ne $FROM{fail} } keys %got),
           $want{aggressive} ? "$FROM{aggressive}=$want{aggressive}" : '',
           "fail2ban-regex, $mode: nothing else" . ($want{aggressive} ? " but the refused right passwords" : ''));
    }
}

done_testing();
