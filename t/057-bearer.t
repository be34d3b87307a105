# OAuth Bearer tokens (issue 14 part 3, src/ngx_esp_bearer.c and
# src/ngx_esp_jwt.c): "esp_bearer verify" checks the JWT (RS256, ES256;
# keys of a JWKS file; iss, aud, exp, nbf) before Exchange sees it, "pass"
# forwards it (Exchange checks), "off" is what it was.  Tokens are signed
# here with keys made by openssl.  Refused tokens get 401 with a Bearer
# error="invalid_token" challenge and never reach Exchange.

use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;
use Test::More;

use Digest::SHA qw(hmac_sha256);
use File::Path qw(make_path);
use HTTP::Request;
use JSON::PP;
use MIME::Base64 qw(encode_base64);

my $DIR = "$ENV{ESP_RUN}/bearer057";
make_path($DIR);

my $ISS = 'https://sts.windows.net/3c9f6a4e-0000-4000-8000-5e1d2c0b7a11/';
my $AUD = 'https://mail.contoso.com/';
my $AUTH_URI = 'https://login.microsoftonline.com/common/oauth2/authorize';

sub sh {
    my ($cmd) = @_;
    my $out = `$cmd 2>&1`;
    die "failed: $cmd\n$out" if $?;
    return $out;
}

sub put {
    my ($file, $data) = @_;
    open my $fh, '>:raw', $file or die "$file: $!";
    print $fh $data;
    close $fh;
}

sub b64u {
    my $s = encode_base64($_[0], '');
    $s =~ tr{+/}{-_};
    $s =~ s/=+$//;
    return $s;
}

# ------------------------------------------------------------- the keys

for my $k (qw(rsa rsa-other rsa-new)) {
    sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out $DIR/$k.pem")
        unless -s "$DIR/$k.pem";
}
sh("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $DIR/ec.pem")
    unless -s "$DIR/ec.pem";

sub rsa_jwk {
    my ($file, $kid) = @_;
    my ($mod) = sh("openssl rsa -in $file -noout -modulus") =~ /Modulus=([0-9A-F]+)/;
    return { kty => 'RSA', kid => $kid, use => 'sig', alg => 'RS256',
             n => b64u(pack('H*', $mod)), e => 'AQAB' };
}

sub ec_jwk {
    my ($file, $kid) = @_;
    my $der = sh("openssl pkey -in $file -pubout -outform DER");
    my $pt = substr($der, -65);
    return { kty => 'EC', kid => $kid, use => 'sig', crv => 'P-256',
             x => b64u(substr($pt, 1, 32)), y => b64u(substr($pt, 33, 32)) };
}

my $JWKS = { keys => [
    rsa_jwk("$DIR/rsa.pem", 'rsa1'),
    ec_jwk("$DIR/ec.pem", 'ec1'),
    { kty => 'oct', kid => 'hmac1', k => b64u('never a key of ours') },
    { %{ rsa_jwk("$DIR/rsa-other.pem", 'enc1') }, use => 'enc' },
] };
put("$DIR/jwks.json", encode_json($JWKS));
put("$DIR/jwks-new.json", encode_json({ keys => [ rsa_jwk("$DIR/rsa-new.pem", 'rsa2') ] }));
put("$DIR/jwks-bad.json", '{"keys": [ {"kty": "RSA", "kid": "x", "n": "AQAB", "e": "AQAB", "kid": "y"} ]}');
put("$DIR/jwks-even.json", encode_json({ keys => [ { %{ rsa_jwk("$DIR/rsa.pem", 'k') }, e => b64u("\x01\x00\x00") } ] }));
put("$DIR/jwks-short.json", encode_json({ keys => [ { %{ rsa_jwk("$DIR/rsa.pem", 'k') }, n => b64u("\xc3" x 128) } ] }));
(my $PUBLIC_PEM = sh("openssl pkey -in $DIR/rsa.pem -pubout"));

# r || s from an ECDSA-Sig-Value
sub der_to_jose {
    my ($der) = @_;
    my @v;
    my $i = 2;
    for (1 .. 2) {
        die 'not DER' unless ord(substr($der, $i, 1)) == 2;
        my $len = ord(substr($der, $i + 1, 1));
        my $n = substr($der, $i + 2, $len);
        $n =~ s/^\x00+//;
        push @v, ("\x00" x (32 - length $n)) . $n;
        $i += 2 + $len;
    }
    return join '', @v;
}

sub sign {
    my ($key, $input) = @_;
    put("$DIR/input", $input);
    my $sig = sh("openssl dgst -sha256 -sign $DIR/$key.pem -binary $DIR/input");
    return $key eq 'ec' ? der_to_jose($sig) : $sig;
}

# a token: header and claims over the defaults, signed with "key"
sub token {
    my (%o) = @_;
    my $now = time;
    my $h = { alg => 'RS256', typ => 'JWT', kid => 'rsa1', %{ $o{header} || {} } };
    my $c = { iss => $ISS, aud => $AUD, exp => $now + 600, nbf => $now - 60,
              iat => $now - 60, upn => 'alice@contoso.com', %{ $o{claims} || {} } };
    delete $h->{$_} for grep { !defined $h->{$_} } keys %$h;
    delete $c->{$_} for grep { !defined $c->{$_} } keys %$c;
    my $json = JSON::PP->new->canonical;
    my $input = b64u($json->encode($h)) . '.' . b64u($json->encode($c));
    my $sig = exists $o{sig} ? $o{sig}
            : sign($o{key} // ($h->{alg} eq 'ES256' ? 'ec' : 'rsa'), $input);
    return "$input." . b64u($sig);
}

# ------------------------------------------------------------- nginx

my ($H2_PORT) = EspTest::free_ports(1);

my %CONF = (
    http_config => "esp_shared_zone esp057:1m;\n"
        . "large_client_header_buffers 4 64k;\n"
        . sso_domain_config(ldap_timeout => '2s'),
    config => <<"CONF",
    esp contoso;
    esp_allowed_hosts mail.contoso.com autodiscover.contoso.com;
    esp_bearer_jwks $DIR/jwks.json;
    esp_bearer_issuer https://issuer.example/ $ISS;
    esp_bearer_audience 00000002-0000-0ff1-ce00-000000000000 $AUD;
    esp_bearer_authorization_uri $AUTH_URI;
    location /Microsoft-Server-ActiveSync {
        esp_client_auth basic;
        esp_bearer verify;
        esp_preauth_excluded_dirs /Microsoft-Server-ActiveSync/healthcheck.htm;
        proxy_pass https://exchange;
    }
    location /api/ {
        esp_client_auth basic;
        esp_bearer verify;
        esp_allowed_dirs /api/v2.0/*;
        proxy_pass https://exchange;
    }
    location /EWS/ {
        esp_client_auth delegate;
        esp_bearer verify;
        proxy_intercept_errors on;
        error_page 404 = /oab/redirected;
        proxy_pass https://exchange;
    }
    location /mapi/ {
        esp_client_auth basic;
        esp_bearer pass;
        proxy_pass https://exchange;
    }
    location /oab/ {
        esp_client_auth basic;
        proxy_pass https://exchange;
    }
    location /rpc/ {
        esp_client_auth delegate;
        proxy_pass https://exchange;
    }
    location = /esp-status { esp_status; allow 127.0.0.1; deny all; }
CONF
    server_config => <<"CONF",
    server {
        listen 127.0.0.1:$H2_PORT ssl http2;
        ssl_certificate $ENV{ESP_RUN}/pki/front.pem;
        ssl_certificate_key $ENV{ESP_RUN}/pki/front.key;
        server_name mail.contoso.com;
        esp contoso;
        esp_allowed_hosts mail.contoso.com;
        esp_bearer_jwks $DIR/jwks.json;
        esp_bearer_issuer $ISS;
        esp_bearer_audience $AUD;
        location /Microsoft-Server-ActiveSync {
            esp_client_auth basic;
            esp_bearer verify;
            proxy_pass https://exchange;
        }
    }
CONF
);

if ($ENV{ESP_NO_AD}) {
    plan skip_all => 'needs the AD fixture (esp_sso_domain)';
}

ok(nginx_start(\%CONF), 'nginx starts') or BAIL_OUT(nginx_error());
like(error_log_since_mark(), qr/jwks\.json": 2 keys, 2 skipped/,
     'config: the HMAC and encryption keys of the JWKS are skipped, and said so');

my $ua = ua();

# status, the Authorization Exchange got ('not reached' if none), response
sub req {
    my ($path, $auth, @headers) = @_;
    error_log_mark();
    my $res = $ua->get(url($path), 'X-Standin-OAuth' => 'on', @headers,
                       defined $auth ? (Authorization => $auth) : ());
    my @e = backend_entries_for($res, wait => $res->code == 200 ? 1 : 0.3);
    my $got = @e ? (EspTest::entry_header($e[0], 'Authorization'))[0] // 'none' : 'not reached';
    return ($res->code, $got, $res);
}

# the log lines above debug level: the module's own (nginx's debug lines
# show every header, the token too)
sub module_lines {
    return join "\n", grep { /^\S+ \S+ \[(?:info|notice|warn|error)\]/ } split /\n/, error_log_since_mark();
}

sub challenges {
    my ($res) = @_;
    return join ' | ', $res->header('WWW-Authenticate');
}

sub status_json {
    my $res = $ua->get(url('/esp-status'));
    return decode_json($res->decoded_content);
}

my $before = status_json()->{bearer};
is_deeply([sort keys %$before], [qw(passed refused verified)], 'status: a "bearer" object with its three counts');

# ------------------------------------------------------------- verify: valid

{
    my $t = token();
    my ($code, $got, $res) = req('/Microsoft-Server-ActiveSync?Cmd=Sync', "Bearer $t");
    is($code, 200, 'RS256: a valid token passes');
    is($got, "Bearer $t", 'RS256: Exchange gets the Authorization header intact');
    my $log = module_lines();
    like($log, qr/esp: bearer token verified alg=RS256 token=[0-9a-f]{12} user="alice\@contoso\.com" kid="rsa1"/,
         'RS256: logged with a fingerprint, the user and the kid');
    my ($sig) = $t =~ /\.([^.]+)$/;
    ok(index($log, substr($sig, 0, 20)) < 0 && index($log, substr($t, 0, 30)) < 0,
       'RS256: no part of the token in the log');

    error_log_mark();
    req('/Microsoft-Server-ActiveSync?Cmd=Ping', "Bearer $t");
    my ($fp1) = $log =~ /token=([0-9a-f]+)/;
    my ($fp2) = error_log_since_mark() =~ /token=([0-9a-f]+)/;
    is($fp2, $fp1, 'the same token, the same fingerprint');

    $t = token(header => { alg => 'ES256', kid => 'ec1' });
    ($code, $got) = req('/Microsoft-Server-ActiveSync?Cmd=Sync', "Bearer $t");
    is("$code $got", "200 Bearer $t", 'ES256: a valid token passes, intact');
    like(error_log_since_mark(), qr/bearer token verified alg=ES256/, 'ES256: logged');

    $t = token(header => { typ => undef }, claims => { aud => ['https://other.example/', $AUD] });
    ($code, $got) = req('/Microsoft-Server-ActiveSync', "bEaReR   $t");
    is("$code $got", "200 bEaReR   $t", 'any case of "Bearer", blanks, aud as an array, no typ');

    ($code, $got) = req('/Microsoft-Server-ActiveSync', "Bearer\t$t");
    is($code, 200, '"Bearer" and a tab');

    $t = token(claims => { exp => time - 20 });
    ($code) = req('/Microsoft-Server-ActiveSync', "Bearer $t");
    is($code, 200, 'expired 20 s ago: within the clock skew (60 s)');

    $t = token(claims => { aud => '00000002-0000-0ff1-ce00-000000000000', iss => 'https://issuer.example/' });
    ($code) = req('/Microsoft-Server-ActiveSync', "Bearer $t");
    is($code, 200, 'the second issuer and audience configured');
}

# ------------------------------------------------------------- verify: refused

my @refused = (
    [ 'expired',                 token(claims => { exp => time - 3600 }),                 'expired' ],
    [ 'not yet valid',           token(claims => { nbf => time + 3600 }),                 'not yet valid' ],
    [ 'no exp',                  token(claims => { exp => undef }),                       'no valid "exp"' ],
    [ 'exp as a string',         token(claims => { exp => '' . (time + 600) . 'x' }),     'no valid "exp"' ],
    [ 'wrong audience',          token(claims => { aud => 'https://evil.example/' }),     'wrong audience' ],
    [ 'audience array without ours', token(claims => { aud => ['https://a.example/', 'x'] }), 'wrong audience' ],
    [ 'wrong issuer',            token(claims => { iss => 'https://sts.windows.net/evil/' }), 'wrong issuer' ],
    [ 'signed by another key',   token(key => 'rsa-other'),                               'bad signature' ],
    [ 'unknown kid',             token(header => { kid => 'rsa9' }, key => 'rsa-other'),  'unknown kid' ],
    [ 'no kid',                  token(header => { kid => undef }),                       'no "kid"' ],
    [ 'the HMAC key of the set', token(header => { alg => 'HS256', kid => 'hmac1' }, sig => 'x' x 32), 'alg not allowed' ],
    [ 'an encryption key of the set', token(header => { kid => 'enc1' }, key => 'rsa-other'), 'unknown kid' ],
    [ 'RS256 with the EC key',   token(header => { kid => 'ec1' }),                       'alg is not that of the key' ],
    [ 'ES256 with the RSA key',  token(header => { alg => 'ES256', kid => 'rsa1' }, key => 'ec'), 'alg is not that of the key' ],
    [ 'crit',                    token(header => { crit => ['exp'] }),                    'crit' ],
    [ 'typ not JWT',             token(header => { typ => 'JOSE+JSON' }),                 'typ' ],
    [ 'alg none',                token(header => { alg => 'none' }, sig => ''),           'alg "none"' ],
    [ 'alg NONE',                token(header => { alg => 'NONE' }, sig => ''),           'alg "none"' ],
);

{
    my $t = token();
    my $hin = b64u(JSON::PP->new->canonical->encode({ alg => 'HS256', typ => 'JWT', kid => 'rsa1' }))
              . '.' . (split /\./, $t)[1];
    push @refused, [ 'HS256 with the public key as the secret',
                     "$hin." . b64u(hmac_sha256($hin, $PUBLIC_PEM)), 'alg not allowed' ];

    (my $plus = $t) =~ s/^(.)/+/;
    push @refused, [ 'header with "+" (base64, not base64url)', $plus, 'header not base64url' ];
    my ($h, $p, $s) = split /\./, $t;
    (my $q = $p) .= 'A';
    $q .= 'A' while length($q) % 4 != 1;
    push @refused, [ 'a payload of a length no base64 has', "$h.$q.$s", 'payload not base64url' ];
    my $bits = substr($p, 0, -1) . 'B';
    push @refused, [ 'a payload with bits set past its end', "$h.$bits.$s", 'payload not base64url' ]
        if length($p) % 4;
    push @refused, [ 'signature with padding', "$h.$p.$s==", 'not base64url' ];
    push @refused, [ 'a payload that is not JSON', "$h." . b64u('{"exp":1,}') . ".$s", 'bad signature' ];
    push @refused, [ 'a fourth part', "$t.xyz", 'not three parts' ];
    push @refused, [ 'two parts', "$h.$p", 'not three parts' ];
    push @refused, [ 'a changed payload', "$h." . b64u('{"aud":"https://mail.contoso.com/","exp":9999999999,"iss":"' . $ISS . '"}') . ".$s", 'bad signature' ];
    push @refused, [ 'trailing garbage after a blank', "$t garbage", 'malformed or too long' ];
    push @refused, [ 'trailing garbage, a comma', "$t,x", 'malformed or too long' ];
    push @refused, [ 'no token', '', 'malformed or too long' ];
    push @refused, [ 'a huge header (40 kB)', 'A' x 40000, 'malformed or too long' ];
    push @refused, [ 'a token just over the cap', 'A.' . ('A' x 8200) . '.A', 'token empty or too long' ];
}

for my $case (@refused) {
    my ($name, $t, $reason) = @$case;
    my ($code, $got, $res) = req('/Microsoft-Server-ActiveSync?Cmd=Sync', "Bearer $t");
    is("$code $got", '401 not reached', "refused: $name: 401, never reaches Exchange");
    like(challenges($res), qr/^Bearer authorization_uri="\Q$AUTH_URI\E", error="invalid_token"$/,
         "refused: $name: the Bearer invalid_token challenge");
    like(error_log_since_mark(), qr/esp: bearer token refused: [^\n]*\Q$reason\E[^\n]* token=(?:[0-9a-f]{12}|-)/,
         "refused: $name: logged ($reason)");
}

# a malformed payload (not JSON) under a good signature
{
    my $json = JSON::PP->new->canonical;
    my $h = b64u($json->encode({ alg => 'RS256', typ => 'JWT', kid => 'rsa1' }));
    for my $case (['{"exp":1,}', 'payload not a JSON object'],
                  ['{"exp":1} x', 'payload not a JSON object'],
                  ['{"exp":1,"exp":2}', 'payload not a JSON object'],
                  ['["exp"]', 'payload not a JSON object']) {
        my $input = "$h." . b64u($case->[0]);
        my $t = "$input." . b64u(sign('rsa', $input));
        my ($code, $got) = req('/Microsoft-Server-ActiveSync', "Bearer $t");
        is("$code $got", '401 not reached', "signed, but the payload $case->[0] is refused");
        like(error_log_since_mark(), qr/refused: \Q$case->[1]\E/, "... as $case->[1]");
    }
}

# ------------------------------------------------------------- delegate, pass, off

{
    my $t = token();
    my ($code, $got) = req('/EWS/Exchange.asmx', "Bearer $t");
    is("$code $got", "200 Bearer $t", 'delegate + verify: a valid token reaches Exchange intact');

    ($code, $got, my $res) = req('/EWS/Exchange.asmx', 'Bearer ' . token(claims => { exp => time - 3600 }));
    is("$code $got", '401 not reached', 'delegate + verify: an expired token never reaches Exchange');
    like(challenges($res), qr/error="invalid_token"/, 'delegate + verify: the invalid_token challenge');

    my $before_pass = status_json()->{bearer};
    ($code, $got) = req('/mapi/emsmdb/', 'Bearer not.checked.here');
    is("$code $got", '200 Bearer not.checked.here', 'pass: the token reaches Exchange unchecked');
    like(error_log_since_mark(), qr/esp: bearer token passed on unchecked \(esp_bearer pass\) token=[0-9a-f]{12}/,
         'pass: logged with its fingerprint');
    unlike(module_lines(), qr/not\.checked/,
           'pass: not the token itself (but in nginx\'s own debug lines)');
    my $after_pass = status_json()->{bearer};
    is($after_pass->{passed}, $before_pass->{passed} + 1, 'pass: counted');

    ($code, $got, $res) = req('/mapi/emsmdb/', 'Bearer two words');
    is("$code $got", '401 not reached', 'pass: a header that is no token68 is refused all the same');
    ($code, $got) = req('/mapi/emsmdb/', 'Bearer ' . ('A' x 40000));
    is("$code $got", '401 not reached', 'pass: so is a huge one');
    is(status_json()->{bearer}{refused}, $after_pass->{refused} + 2, 'pass: the refusals counted');

    ($code, $got, $res) = req('/oab/x/oab.xml', "Bearer $t");
    is("$code $got", '401 not reached', 'off (Basic location): a valid token is challenged, never forwarded');
    like(challenges($res), qr/^Basic realm="Exchange"/, 'off: the Basic challenge as before');
    unlike(challenges($res), qr/Bearer/, 'off: no Bearer challenge');
    unlike(error_log_since_mark(), qr/bearer token/, 'off: nothing of the Bearer code ran');

    # a token verified here counts nowhere else: Exchange's 404 takes the
    # request to /oab/ (esp_bearer off) by error_page, which judges anew
    ($code, $got, $res) = req('/EWS/missing', "Bearer $t", 'X-Standin-Status' => '404');
    is($code, 401, 'internal redirect to an esp_bearer off location: challenged there');
    like(challenges($res), qr/^Basic realm="Exchange"/, '... with its Basic challenge');
    my @e = backend_entries_for($res);
    is(scalar(@e), 1, '... Exchange saw the first request only');

    ($code, $got) = req('/rpc/rpcproxy.dll', "Bearer $t");
    is($got, "Bearer $t", 'off (delegate location): passed on as every other scheme, as before (Exchange authenticates)');
}

# ------------------------------------------------------------- the challenge

{
    my ($code, $got, $res) = req('/Microsoft-Server-ActiveSync?Cmd=Sync', undef);
    is("$code $got", '401 not reached', 'no credentials: 401');
    my @c = $res->header('WWW-Authenticate');
    is(scalar(@c), 2, 'no credentials: two challenges');
    like($c[0], qr/^Basic realm="Exchange"/, 'no credentials: Basic first');
    is($c[1], qq{Bearer authorization_uri="$AUTH_URI"}, 'no credentials: then Bearer with authorization_uri');

    ($code, $got, $res) = req('/mapi/emsmdb/', 'Basic ' . encode_base64('nobody@contoso.local:', ''));
    like(challenges($res), qr/^Basic realm="Exchange", charset="UTF-8" \| Bearer authorization_uri=/,
         'pass location: the same two challenges after a refused Basic login');

    # Basic and Bearer at once: nginx takes one Authorization header only
    my $req = HTTP::Request->new(GET => url('/Microsoft-Server-ActiveSync'));
    $req->push_header(Authorization => 'Bearer ' . token());
    $req->push_header(Authorization => 'Basic ' . encode_base64('alice@contoso.local:x', ''));
    $req->header('X-Esp-Test-Id' => my $id = 'bearer057-both-' . time);
    $res = $ua->request($req);
    is($res->code, 400, 'Basic and Bearer in one request: 400 (nginx: duplicate Authorization)');
    ok(!backend_entries_for($id, wait => 0.3), '... never reaches Exchange');
}

# ------------------------------------------------------------- the gate still gates

{
    my $t = token();
    my ($code, $got) = req('/Microsoft-Server-ActiveSync', "Bearer $t", Host => 'evil.contoso.com');
    is("$code $got", '403 not reached', 'a valid token on a host not allowed: 403');
    ($code, $got) = req('/api/v2.0/me', "Bearer $t");
    is("$code $got", "200 Bearer $t", 'a valid token inside the allowed directories passes');
    ($code, $got) = req('/api/v1.0/me', "Bearer $t");
    is("$code $got", '403 not reached', 'a valid token outside the allowed directories: 403');
    ($code, $got) = req('/api/v2.0/%2e%2e/v1.0/me', "Bearer $t");
    like("$code $got", qr/^40[03] not reached$/, 'a valid token on a path that climbs out: refused');
    ($code, $got) = req('/Microsoft-Server-ActiveSync/healthcheck.htm', "Bearer $t");
    is("$code $got", '200 none', 'an excluded path: passed without the Authorization header, as with Basic');
}

# ------------------------------------------------------------- HTTP/2

SKIP: {
    skip 'curl without HTTP/2', 2 unless `curl --version` =~ /HTTP2/;
    my $curl = sub {
        my ($t) = @_;
        my $out = `curl -s -o /dev/null -w '%{http_code} %{http_version}' --http2 --cacert $ENV{ESP_CA} -H 'X-Standin-OAuth: on' -H 'Authorization: Bearer $t' https://mail.contoso.com:$H2_PORT/Microsoft-Server-ActiveSync 2>&1`;
        return $out;
    };
    is($curl->(token()), '200 2', 'HTTP/2: a valid token passes');
    is($curl->(token(claims => { exp => time - 3600 })), '401 2', 'HTTP/2: an expired one is refused');
}

# ------------------------------------------------------------- status

{
    my $s = status_json()->{bearer};
    ok($s->{verified} > $before->{verified} && $s->{refused} >= $before->{refused} + @refused,
       "status JSON: verified $s->{verified}, refused $s->{refused}, passed $s->{passed}");
    my $prom = $ua->get(url('/esp-status?format=prometheus'))->decoded_content;
    like($prom, qr/^# TYPE esp_bearer_total counter$/m, 'prometheus: esp_bearer_total');
    like($prom, qr/^esp_bearer_total\{result="verified"\} $s->{verified}$/m, 'prometheus: verified as in JSON');
    like($prom, qr/^esp_bearer_total\{result="refused"\} $s->{refused}$/m, 'prometheus: refused as in JSON');
}

# ------------------------------------------------------------- reload: a new key set

{
    my $old = token();
    my $new = token(header => { kid => 'rsa2' }, key => 'rsa-new');
    (my $conf = $CONF{config}) =~ s{jwks\.json}{jwks-new.json};
    ok(nginx_reload({ %CONF, config => $conf }), 'reload with a new JWKS file');
    my ($code) = req('/Microsoft-Server-ActiveSync', "Bearer $new");
    is($code, 200, 'reload: a token of the new key passes');
    ($code) = req('/Microsoft-Server-ActiveSync', "Bearer $old");
    is($code, 401, 'reload: a token of the old key is refused');
}

nginx_stop();

# ------------------------------------------------------------- configuration errors

for my $case (
    [ "esp_bearer verify;\n", 'needs "esp_bearer_jwks", "esp_bearer_issuer" and "esp_bearer_audience"' ],
    [ "esp_bearer maybe;\n", 'invalid value "maybe"' ],
    [ "esp_bearer_jwks $DIR/jwks-bad.json;\n", 'JSON member repeated' ],
    [ "esp_bearer_jwks $DIR/jwks-short.json;\n", 'shorter than 2048 bits' ],
    [ "esp_bearer_jwks $DIR/none.json;\n", 'none.json" failed' ],
    [ "esp_bearer_jwks $DIR/jwks-even.json;\n", 'exponent not taken' ],
    [ "esp_bearer_authorization_uri http://login.example/;\n", 'must be an https:// URL' ],
    [ "esp_bearer_authorization_uri javascript:alert(1);\n", 'must be an https:// URL' ],
    [ "esp_bearer_authorization_uri \"https://a.example/\\\"x\";\n", 'without blanks, quotes' ],
    [ "esp_bearer_issuer a;\nesp_bearer_issuer b;\n", 'is duplicate' ],
    [ "esp_bearer_audience https://mail.contoso.com/ \"\";\n", 'empty or holds a control character' ],
    [ "esp_bearer_clock_skew 1h;\n", 'at most 10m' ],
) {
    my ($directive, $msg) = @$case;
    my $ok = nginx_start({ http_config => $CONF{http_config}, config => <<"CONF" }, quiet => 1);
    esp contoso;
    esp_allowed_hosts mail.contoso.com;
    $directive
    location / { esp_client_auth basic; proxy_pass https://exchange; }
CONF
    ok(!$ok, "config refused: $directive") and like(nginx_error(), qr/\Q$msg\E/, "... with \"$msg\"");
    nginx_stop() if $ok;
}

done_testing();
