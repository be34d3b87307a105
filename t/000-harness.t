# Tests of the test harness itself (t/lib/EspTest.pm), against plain nginx:
# no block here loads the module.
use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;

run_blocks();

# --------------------------------------------------------------------------
# Plain-Perl flows

# The chunked-response parser, on canned input.
{
    my ($res, $complete) = EspTest::parse_responses(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        . "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
        . "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nnop",
        ['GET', 'GET'], 0);
    ok($complete, 'parser: two complete responses');
    is($res->[0]->content, 'hello world', 'parser: chunked body joined');
    is($res->[1]->code . ' ' . $res->[1]->content, '404 nop', 'parser: then a Content-Length body');
    ($res, $complete) = EspTest::parse_responses(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", ['GET'], 0);
    ok(!$complete, 'parser: a partial chunk is not complete');
}

# Passwords never show.
like(mask("Authorization: Basic dXNlcjpzZWNyZXQ=\r\nuser=a&password=s3cret&x=1"),
     qr/\AAuthorization: Basic \*\*\*\r\nuser=a&password=\*\*\*&x=1\z/, 'mask hides credentials');

# A cookie set by the server is sent back by ua()'s jar.
my %cookie_conf = (no_module => 1, config => <<'CONF');
    location = /login {
        add_header Set-Cookie "s=abc; Path=/; Secure; HttpOnly";
        return 302 /home;
    }
    location = /home {
        if ($cookie_s = abc) {
            return 200 "welcome";
        }
        return 403;
    }
    location = /pid {
        return 200 "$pid";
    }
CONF
ok(nginx_start(\%cookie_conf), 'flow: nginx starts');
my $ua = ua();
my $res = $ua->get(url('/home'));
is($res->code, 403, 'flow: no cookie yet, 403');
$res = $ua->get(url('/login'));
is($res->code, 302, 'flow: login answers 302 (redirects are not followed)');
like($res->header('Location') // '', qr{/home$}, 'flow: Location');
$res = $ua->get(url('/home'));
is($res->code . ' ' . $res->content, '200 welcome', 'flow: the jar sends the cookie back');
is(ua()->get(url('/home'))->code, 403, 'flow: a new ua() has an empty jar');

# Reuse vs restart: the same config keeps the master, another one replaces it.
my $master = slurp_pid();
ok(nginx_start(\%cookie_conf), 'flow: nginx_start again with the same config');
is(slurp_pid(), $master, 'flow: same config, same nginx');
ok(nginx_start({ %cookie_conf, restart => 1 }), 'flow: restart => 1');
isnt(slurp_pid(), $master, 'flow: restart => 1 gives a new nginx');

# Reload: new workers answer with the new config.
my $old_worker = $ua->get(url('/pid'))->content;
error_log_mark();
ok(nginx_reload({ no_module => 1, config => 'location = /pid { return 200 "new $pid"; }' }),
   'flow: nginx_reload with a new config');
like($ua->get(url('/pid'))->content, qr/^new \d+$/, 'flow: the new config answers');
isnt($ua->get(url('/pid'))->content, "new $old_worker", 'flow: from a new worker');
ok(error_log_wait('reconfiguring'), 'flow: error_log_wait sees the reload');
like(error_log_since_mark(), qr/signal 1 \(SIGHUP\) received/, 'flow: error_log_since_mark');
ok(!nginx_reload({ no_module => 1, config => 'no_such_directive;' }, quiet => 1),
   'flow: nginx_reload refuses a bad config');
like(nginx_error(), qr/unknown directive "no_such_directive"/, 'flow: nginx_error says why');
like($ua->get(url('/pid'))->content, qr/^new \d+$/, 'flow: the old config still answers');

# Plain HTTP through ua() and url(tls => 0).
is($ua->get(url('/pid', tls => 0))->code, 200, 'flow: url(tls => 0)');

SKIP: {
    skip 'no stand-in Exchange', 8 unless exchange_present();
    ok(nginx_start({ no_module => 1, config => <<'CONF' }), 'flow: proxy config starts');
    location / {
        proxy_pass https://exchange;
    }
    location = /r1 {
        add_header Set-Cookie "hop=1; Path=/; Secure";
        return 302 /r2;
    }
    location = /r2 {
        return 302 https://mail.contoso.com:$server_port/form;
    }
    location = /form {
        default_type text/html;
        return 200 '<html><body><form id="logonForm" action="/echo/login" method="post">
            <input type="hidden" name="flags" value="4">
            <input type="text" name="username">
            <input type="password" name="password">
            <input type="submit" value="Sign in">
            </form></body></html>';
    }
CONF
    my $r = $ua->get(url('/owa/healthcheck.htm'));
    is($r->code, 200, 'flow: healthcheck through nginx');
    my @seen = backend_entries_for($r);
    is(scalar(@seen), 1, 'flow: backend_entries_for finds the request')
        or diag(scalar(@{ backend_log() }) . " backend entries in total");

    my ($last, @hops) = follow($ua, $ua->get(url('/r1')));
    is(join(' ', map { $_->code } @hops), '302 302 200', 'flow: follow() takes two redirects');
    is(cookies($ua)->{hop}, 1, 'flow: cookies() sees the cookie set on the way');
    $r = submit_form($ua, $last, username => 'alice', password => 'not-a-secret');
    is($r->code, 200, 'flow: submit_form posts the form');
    my ($entry) = backend_entries_for($r);
    is($entry && $entry->{body}, 'flags=4&username=alice&password=not-a-secret',
       'flow: Exchange got the hidden and the filled fields');
    ok((grep { $_->[0] eq 'Cookie' && $_->[1] =~ /hop=1/ } @{ $entry->{headers} || [] }),
       'flow: with the cookie from the jar');
}

SKIP: {
    skip 'AD fixture absent', 2 unless ad_present();
    my $users = ad_users();
    my ($name) = grep { ref $users->{$_} eq 'HASH' && $users->{$_}{password} } sort keys %$users;
    my $pw = $users->{$name}{password};
    is(mask("user $name password $pw"), "user $name password ***", 'ad_users: passwords are masked');
    ok(-s ad_env('AD_BIND_PASSWORD_FILE'), 'ad_env: AD_BIND_PASSWORD_FILE');
}

nginx_stop();
ok(!nginx_running(), 'flow: nginx_stop');

done_testing();

sub slurp_pid {
    open my $fh, '<', nginx_prefix() . '/logs/nginx.pid' or return '';
    my $pid = <$fh> // '';
    chomp $pid;
    return $pid;
}

__DATA__

=== TEST 1: return 200, status, body and headers
--- no_module
--- config
location = /hi {
    default_type text/plain;
    add_header X-Empty "";
    add_header X-Test "one two";
    return 200 "hi";
}
--- request
GET /hi
--- error_code: 200
--- response_body chomp
hi
--- response_headers
Content-Type: text/plain
X-Test: one two
!X-Empty
!X-Absent
--- response_headers_like
Server: ^nginx
Content-Length: ^2$
--- no_error_log
[error]



=== TEST 2: the same config reuses the running nginx
--- no_module
--- config
location = /hi {
    default_type text/plain;
    add_header X-Empty "";
    add_header X-Test "one two";
    return 200 "hi";
}
--- request
GET /hi
--- response_body_like: ^hi$
--- response_body_unlike: bye
--- no_error_log
start worker process



=== TEST 3: another config restarts nginx; substitutions leave nginx variables alone
--- no_module
--- config
location = /vars {
    return 200 "$TEST_NGINX_PORT ${TEST_NGINX_TLS_PORT} $host $request_method";
}
--- request
GET /vars
--- response_body eval
EspTest::nginx_port() . ' ' . EspTest::nginx_tls_port() . ' mail.contoso.com GET'
--- error_log
start worker process



=== TEST 4: a Host in more_headers replaces the default one; a body gets Content-Length
--- no_module
--- config
location = /echo {
    return 200 "$host|$http_x_foo|$content_length|$http_connection";
}
--- request
POST /echo
a=1&b=2
--- more_headers
Host: autodiscover.contoso.com
X-Foo: bar
--- response_body chomp
autodiscover.contoso.com|bar|7|close



=== TEST 5: raw request in absolute form; the test id is still added
--- no_module
--- config
location = /echo {
    return 200 "$host|$http_x_esp_test_id";
}
--- raw_request eval
"GET http://autodiscover.contoso.com/echo HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
--- response_body_like: ^autodiscover\.contoso\.com\|esp-\d+-[0-9a-f]{16}$



=== TEST 6: raw request with a bad encoding
--- no_module
--- config
location / {
    return 200 "ok";
}
--- raw_request eval
"GET /%zz/x HTTP/1.1\r\nHost: mail.contoso.com\r\nConnection: close\r\n\r\n"
--- error_code: 400
--- error_log
client sent invalid request



=== TEST 7: TLS request, with SNI from the Host header
--- no_module
--- config
location = /tls {
    return 200 "$scheme $ssl_server_name $ssl_protocol";
}
--- tls
--- request
GET /tls
--- more_headers
Host: autodiscover.contoso.com
--- response_body_like: ^https autodiscover\.contoso\.com TLSv1\.[23]$



=== TEST 8: a config error is caught by must_die, with file and line
--- no_module
--- config
location / {
    no_such_directive on;
}
--- must_die
--- error_log eval
['unknown directive "no_such_directive"', qr{/conf/nginx\.conf:\d+}]



=== TEST 9: error_log, no_error_log and eval patterns
--- no_module
--- config
location /files/ {
    root $TEST_NGINX_PREFIX/html;
}
--- request
GET /files/nope.txt
--- error_code: 404
--- error_log eval
["No such file or directory", qr{open\(\) "[^"]+/html/files/nope\.txt" failed}]
--- no_error_log
[warn]
segmentation



=== TEST 10: a refused request never reaches Exchange
--- no_module
--- config
location / {
    return 403;
}
--- request
GET /owa/
--- error_code: 403
--- backend: none



=== TEST 11: a proxied request reaches Exchange with what we sent
--- skip_no_exchange
--- no_module
--- config
location / {
    proxy_set_header X-Forwarded-For $remote_addr;
    proxy_pass https://exchange;
}
--- request
POST /echo/this?q=1
hello=world
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 200
--- backend: reached
--- backend_request_like
^POST /echo/this\?q=1$
--- backend_headers_like
^X-Forwarded-For: 127\.0\.0\.1$
^Content-Type: application/x-www-form-urlencoded$
--- backend_headers_unlike
^Authorization:
--- backend_body chomp
hello=world



=== TEST 12: pipelined requests, each with its own checks
--- no_module
--- config
location /p/ {
    return 200 "$uri";
}
--- pipelined_requests eval
["GET /p/one", "GET /p/two", "HEAD /p/three"]
--- error_code eval
[200, 200, 200]
--- response_body eval
["/p/one", "/p/two", ""]



=== TEST 13: a chunked response is de-chunked
--- no_module
--- config
gzip on;
gzip_min_length 1;
gzip_types text/plain;
location = /gz {
    default_type text/plain;
    return 200 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
}
--- request
GET /gz
--- more_headers
Accept-Encoding: gzip
--- response_headers
Transfer-Encoding: chunked
Content-Encoding: gzip
--- response_body_like eval
qr/\A\x1f\x8b/



=== TEST 14: a connection closed without an answer
--- no_module
--- config
location / {
    return 444;
}
--- request
GET /
--- error_code: closed



=== TEST 15: log_level, workers and main_config sections
--- no_module
--- workers: 2
--- log_level: notice
--- main_config
env ESP_HARNESS_TEST;
--- config
location / {
    return 200 "ok";
}
--- request
GET /
--- response_body: ok
--- no_error_log
[debug]



=== TEST 16: AD variables are substituted (needs the AD fixture)
--- skip_no_ad
--- no_module
--- config
location / {
    return 200 "$AD_BASE_DN $AD_DC1";
}
--- request
GET /
--- response_body eval
sprintf '%s %s', map { $ENV{$_} // '' } qw(AD_BASE_DN AD_DC1)



=== TEST 17: server_config adds a server; request_eval builds the request
--- no_module
--- config
location / {
    return 200 "default";
}
--- server_config
server {
    listen 127.0.0.1:$TEST_NGINX_PORT;
    server_name other.contoso.com;
    location / {
        return 200 "other $request_method $content_length";
    }
}
--- request_eval
"POST /x\n" . ("a" x 10)
--- more_headers
Host: other.contoso.com
--- response_body: other POST 10



=== TEST 18: TLS to a host the certificate does not name, without verification
--- no_module
--- config
location / {
    return 200 "$ssl_server_name";
}
--- tls
--- tls_insecure
--- request
GET /
--- more_headers
Host: evil.example
--- response_body: evil.example



=== TEST 19: without a test id, backend checks look for entries without one
--- skip_no_exchange
--- no_module
--- config
location / {
    proxy_pass https://exchange;
}
--- raw_request eval
"GET /owa/healthcheck.htm HTTP/1.0\r\nHost: mail.contoso.com\r\n\r\n"
--- no_test_id
--- error_code: 200
--- backend: reached
--- backend_headers_unlike
^X-Esp-Test-Id:
