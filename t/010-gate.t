# Host and directory gating (design steps 2 and 3): what may reach
# Exchange at all, and what may skip pre-authentication.  Every refused
# request must also be absent from the stand-in Exchange's log.

use strict;
use warnings;
use lib 't/lib';
use EspTest;

our $Domain = <<'_EOC_';
esp_session_key $ESP_RUN/keys/session.key;
esp_sso_domain contoso {
    ldap_server ldaps://$AD_DC1:636;
    ldap_server ldaps://$AD_DC2:636;
    ldap_ca_certificate $ESP_CA;
    ldap_timeout 2s;
}
_EOC_

our $Gate = <<'_EOC_';
esp contoso;
esp_allowed_hosts mail.contoso.com autodiscover.contoso.com *.contoso.org;
esp_allowed_dirs /owa/* /ecp/* /ews/* /Microsoft-Server-ActiveSync*;
esp_preauth_excluded_dirs /owa/auth/expiredpassword.aspx*
                          /owa/9c9f0f4b-1c1a-4d7e-9a61-0b3f9c3c1e55@contoso.com/*;
location / {
    proxy_pass https://exchange;
}
location /ews/ {
    esp_client_auth delegate;
    # Basic unchecked, as TEST 29 expects (the default, verify, checks it
    # at the gate first: t/032-delegate-basic.t)
    esp_delegate_basic pass;
    proxy_pass https://exchange;
}
location /Microsoft-Server-ActiveSync {
    esp_client_auth basic;
    proxy_pass https://exchange;
}
location /open/ {
    esp off;
    proxy_pass https://exchange;
}
_EOC_

run_tests();

__DATA__

=== TEST 1: a host that is not allowed gets 403 and never reaches Exchange
--- http_config eval: $::Domain
--- config eval: $::Gate
--- request
GET /owa/auth/expiredpassword.aspx
--- more_headers
Host: evil.example
--- error_code: 403
--- backend: none
--- error_log
esp: host "evil.example" is not allowed



=== TEST 2: an allowed host reaches an excluded page untouched
--- http_config eval: $::Domain
--- config eval: $::Gate
--- request
GET /owa/auth/expiredpassword.aspx?url=/owa/auth.owa
--- error_code: 200
--- backend: reached
--- backend_request_like: ^GET /owa/auth/expiredpassword\.aspx\?url=/owa/auth\.owa$



=== TEST 3: the host compares without its port, trailing dot or case
--- http_config eval: $::Domain
--- config eval: $::Gate
--- request
GET /owa/auth/expiredpassword.aspx
--- more_headers
Host: MAIL.Contoso.COM.:443
--- error_code: 200
--- backend: reached



=== TEST 4: a wildcard host matches names below it
--- http_config eval: $::Domain
--- config eval: $::Gate
--- request
GET /owa/auth/expiredpassword.aspx
--- more_headers
Host: a.b.contoso.org
--- error_code: 200
--- backend: reached



=== TEST 5: a wildcard host does not match the bare domain
--- http_config eval: $::Domain
--- config eval: $::Gate
--- request
GET /owa/auth/expiredpassword.aspx
--- more_headers
Host: contoso.org
--- error_code: 403
--- backend: none



=== TEST 6: a wildcard host does not match a name that only ends like it
--- http_config eval: $::Domain
--- config eval: $::Gate
--- request
GET /owa/auth/expiredpassword.aspx
--- more_headers
Host: evilcontoso.org
--- error_code: 403
--- backend: none



=== TEST 7: an absolute-form request is judged by its own host, not Host
--- http_config eval: $::Domain
--- config eval: $::Gate
--- raw_request eval
"GET http://evil.example/owa/auth/expiredpassword.aspx HTTP/1.1\r\nHost: mail.contoso.com\r\nConnection: close\r\n\r\n"
--- error_code: 403
--- backend: none



=== TEST 8: an absolute-form request for an allowed host and excluded page passes
--- http_config eval: $::Domain
--- config eval: $::Gate
--- raw_request eval
"GET https://mail.contoso.com/owa/auth/expiredpassword.aspx HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
--- error_code: 200
--- backend: reached



=== TEST 9: HTTP/1.0 without a Host is refused
--- http_config eval: $::Domain
--- config eval: $::Gate
--- raw_request eval
"GET /owa/auth/expiredpassword.aspx HTTP/1.0\r\n\r\n"
--- no_test_id
--- error_code: 403
--- backend: none



=== TEST 10: a path outside the allowed directories gets 403
--- http_config eval: $::Domain
--- config eval: $::Gate
--- request
GET /mapi/emsmdb/
--- error_code: 403
--- backend: none
--- error_log
esp: path "/mapi/emsmdb/" is outside the allowed directories



=== TEST 11: dot segments cannot climb out of an allowed directory
--- http_config eval: $::Domain
--- config eval: $::Gate
--- raw_request eval
"GET /owa/../mapi/emsmdb/ HTTP/1.1\r\nHost: mail.contoso.com\r\nConnection: close\r\n\r\n"
--- error_code: 403
--- backend: none



=== TEST 12: encoded dot segments cannot climb out of an allowed directory
--- http_config eval: $::Domain
--- config eval: $::Gate
--- raw_request eval
"GET /owa/%2e%2e/mapi/emsmdb/ HTTP/1.1\r\nHost: mail.contoso.com\r\nConnection: close\r\n\r\n"
--- error_code: 403
--- backend: none



=== TEST 13: encoded slashes cannot climb out of an allowed directory
--- http_config eval: $::Domain
--- config eval: $::Gate
--- raw_request eval
"GET /owa/..%2fmapi%2femsmdb/ HTTP/1.1\r\nHost: mail.contoso.com\r\nConnection: close\r\n\r\n"
--- error_code: 403
--- backend: none



=== TEST 14: allowed directories compare case-insensitively, as IIS does
--- http_config eval: $::Domain
--- config eval: $::Gate
--- request
GET /OWA/Auth/ExpiredPassword.ASPX
--- error_code: 200
--- backend: reached



=== TEST 15: a protected path sends the browser to the login form, not to Exchange
--- http_config eval: $::Domain
--- config eval: $::Gate
--- request
GET /owa/
--- error_code: 302
--- response_headers_like
Location: ^https?://[^/]+/_esp/login\?url=
--- backend: none



=== TEST 16: the arbitration mailbox directory is excluded, in any case
--- http_config eval: $::Domain
--- config eval: $::Gate
--- request
GET /owa/9C9F0F4B-1C1A-4D7E-9A61-0B3F9C3C1E55@Contoso.com/prem/15.2/scripts/boot.js
--- error_code: 302
--- backend: reached



=== TEST 17: a path that starts like an excluded one but is not stays protected
--- http_config eval: $::Domain
--- config eval: $::Gate
--- request
GET /owa/9c9f0f4b-1c1a-4d7e-9a61-0b3f9c3c1e55@contoso.community/x
--- error_code: 302
--- response_headers_like
Location: ^https?://[^/]+/_esp/login\?url=
--- backend: none



=== TEST 18: dot segments from an excluded directory into a protected one
--- http_config eval: $::Domain
--- config eval: $::Gate
--- raw_request eval
"GET /owa/9c9f0f4b-1c1a-4d7e-9a61-0b3f9c3c1e55\@contoso.com/../../ecp/ HTTP/1.1\r\nHost: mail.contoso.com\r\nConnection: close\r\n\r\n"
--- error_code: 302
--- response_headers_like
Location: ^https?://[^/]+/_esp/login\?url=
--- backend: none



=== TEST 19: percent-encoded dot segments from an excluded directory
--- http_config eval: $::Domain
--- config eval: $::Gate
--- raw_request eval
"GET /owa/9c9f0f4b-1c1a-4d7e-9a61-0b3f9c3c1e55\@contoso.com/%2e%2e/%2E%2E/ecp/ HTTP/1.1\r\nHost: mail.contoso.com\r\nConnection: close\r\n\r\n"
--- error_code: 302
--- response_headers_like
Location: ^https?://[^/]+/_esp/login\?url=
--- backend: none



=== TEST 20: encoded slashes behind an excluded prefix
--- http_config eval: $::Domain
--- config eval: $::Gate
--- raw_request eval
"GET /owa/auth/expiredpassword.aspx%2f..%2f..%2f..%2fecp%2f HTTP/1.1\r\nHost: mail.contoso.com\r\nConnection: close\r\n\r\n"
--- error_code: 302
--- response_headers_like
Location: ^https?://[^/]+/_esp/login\?url=
--- backend: none



=== TEST 21: double encoding behind an excluded prefix needs authentication
--- http_config eval: $::Domain
--- config eval: $::Gate
--- raw_request eval
"GET /owa/9c9f0f4b-1c1a-4d7e-9a61-0b3f9c3c1e55\@contoso.com/%252e%252e/%252e%252e/ecp/ HTTP/1.1\r\nHost: mail.contoso.com\r\nConnection: close\r\n\r\n"
--- error_code: 302
--- response_headers_like
Location: ^https?://[^/]+/_esp/login\?url=
--- backend: none



=== TEST 22: a ";" path parameter behind an excluded prefix needs authentication
--- http_config eval: $::Domain
--- config eval: $::Gate
--- raw_request eval
"GET /owa/9c9f0f4b-1c1a-4d7e-9a61-0b3f9c3c1e55\@contoso.com/..;/..;/ecp/ HTTP/1.1\r\nHost: mail.contoso.com\r\nConnection: close\r\n\r\n"
--- error_code: 302
--- response_headers_like
Location: ^https?://[^/]+/_esp/login\?url=
--- backend: none
--- error_log
is not written plainly



=== TEST 23: double slashes behind an excluded prefix need authentication
--- http_config eval: $::Domain
--- config eval: $::Gate
--- raw_request eval
"GET /owa/9c9f0f4b-1c1a-4d7e-9a61-0b3f9c3c1e55\@contoso.com//ecp/ HTTP/1.1\r\nHost: mail.contoso.com\r\nConnection: close\r\n\r\n"
--- error_code: 302
--- response_headers_like
Location: ^https?://[^/]+/_esp/login\?url=
--- backend: none



=== TEST 24: a segment ending in a dot (dropped by Windows) needs authentication
--- http_config eval: $::Domain
--- config eval: $::Gate
--- raw_request eval
"GET /owa/9c9f0f4b-1c1a-4d7e-9a61-0b3f9c3c1e55\@contoso.com/x./ HTTP/1.1\r\nHost: mail.contoso.com\r\nConnection: close\r\n\r\n"
--- error_code: 302
--- response_headers_like
Location: ^https?://[^/]+/_esp/login\?url=
--- backend: none



=== TEST 25: a backslash in the path is refused (IIS reads it as a slash)
--- http_config eval: $::Domain
--- config eval: $::Gate
--- raw_request eval
"GET /owa/auth/expiredpassword.aspx\\..\\..\\ecp\\ HTTP/1.1\r\nHost: mail.contoso.com\r\nConnection: close\r\n\r\n"
--- error_code: 400
--- backend: none
--- error_log
esp: refused request path: backslash in path



=== TEST 26: an encoded backslash is refused too
--- http_config eval: $::Domain
--- config eval: $::Gate
--- raw_request eval
"GET /owa/auth/expiredpassword.aspx%5c..%5c..%5cecp%5c HTTP/1.1\r\nHost: mail.contoso.com\r\nConnection: close\r\n\r\n"
--- error_code: 400
--- backend: none



=== TEST 27: IIS-style %u encoding is refused
--- http_config eval: $::Domain
--- config eval: $::Gate
--- raw_request eval
"GET /owa/auth/expiredpassword.aspx%u002f..%u002fecp HTTP/1.1\r\nHost: mail.contoso.com\r\nConnection: close\r\n\r\n"
--- error_code: 400
--- backend: none



=== TEST 28: UTF-8 percent-encoded below an excluded directory is still excluded
--- http_config eval: $::Domain
--- config eval: $::Gate
--- request
GET /owa/9c9f0f4b-1c1a-4d7e-9a61-0b3f9c3c1e55@contoso.com/J%C3%BCrgen.png
--- error_code: 302
--- backend: reached



=== TEST 29: a delegate location reaches Exchange with the client's Authorization
--- http_config eval: $::Domain
--- config eval: $::Gate
--- request
GET /ews/exchange.asmx
--- more_headers
Authorization: Basic dXNlcjpwYXNz
--- error_code: 200
--- backend: reached
--- backend_headers_like
^Authorization: Basic dXNlcjpwYXNz$



=== TEST 30: a delegate location still checks the host
--- http_config eval: $::Domain
--- config eval: $::Gate
--- request
GET /ews/exchange.asmx
--- more_headers
Host: evil.example
--- error_code: 403
--- backend: none



=== TEST 31: "esp off" in a location switches every check off there
--- http_config eval: $::Domain
--- config eval: $::Gate
--- request
GET /open/healthcheck.htm
--- more_headers
Host: anything.example
--- error_code: 200
--- backend: reached



=== TEST 32: without credentials a Basic location answers 401 with a challenge
--- http_config eval: $::Domain
--- config eval: $::Gate
--- request
GET /Microsoft-Server-ActiveSync?Cmd=Ping
--- error_code: 401
--- response_headers
WWW-Authenticate: Basic realm="Exchange", charset="UTF-8"
--- backend: none



=== TEST 33: a location inherits the server's gate and may narrow it
--- http_config eval: $::Domain
--- config
esp contoso;
esp_allowed_hosts mail.contoso.com;
location /owa/ {
    esp_allowed_dirs /owa/auth/*;
    esp_preauth_excluded_dirs /owa/auth/*;
    proxy_pass https://exchange;
}
--- request
GET /owa/service.svc
--- error_code: 403
--- backend: none



=== TEST 34: the narrowed location still passes what it excludes
--- http_config eval: $::Domain
--- config
esp contoso;
esp_allowed_hosts mail.contoso.com;
location /owa/ {
    esp_allowed_dirs /owa/auth/*;
    esp_preauth_excluded_dirs /owa/auth/*;
    proxy_pass https://exchange;
}
--- request
GET /owa/auth/logon.aspx
--- error_code: 200
--- backend: reached



=== TEST 35: a directory pattern ending in "/*" also covers the directory
--- http_config eval: $::Domain
--- config
esp contoso;
esp_allowed_hosts mail.contoso.com;
esp_allowed_dirs /owa/*;
esp_preauth_excluded_dirs /owa/*;
location / {
    proxy_pass https://exchange;
}
--- request
GET /owa
--- error_code: 302
--- backend: reached



=== TEST 36: without esp a server is not gated at all
--- http_config eval: $::Domain
--- config
location / {
    proxy_pass https://exchange;
}
--- request
GET /mapi/healthcheck.htm
--- more_headers
Host: whatever.example
--- error_code: 200
--- backend: reached
