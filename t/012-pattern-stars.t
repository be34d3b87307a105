# "*" in directory patterns (issue 15, item 3): a star matches within one
# path segment, unless the pattern ends in "/" and a star, which takes the
# rest of the path.  "/ecp/*.js" as an exclusion must never let
# "/ecp/x.aspx/y.js" (IIS hands it to x.aspx as PathInfo: ProxyLogon's way
# in) past the login, however the client spells the slash; the plain
# "/ecp/foo.js" stays excluded.  esp_allowed_dirs follows the same rule.
# "nginx -t" warns, with file:line, about exclusions with a star before a
# suffix.

use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;

our $Domain = <<'_EOC_';
esp_session_key $ESP_RUN/keys/session.key;
esp_sso_domain contoso {
    ldap_server ldaps://$AD_DC1:636;
    ldap_ca_certificate $ESP_CA;
    ldap_timeout 2s;
}
_EOC_

our $Gate = <<'_EOC_';
esp contoso;
esp_allowed_hosts mail.contoso.com;
esp_allowed_dirs /owa/* /ecp/* /ews/*.asmx /Microsoft-Server-ActiveSync*;
location ~* ^/owa/ {
    esp_client_auth form;
    esp_preauth_excluded_dirs /owa/auth/*.gif
                              /owa/auth/expiredpassword.aspx*
                              /owa/9c9f0f4b-1c1a-4d7e-9a61-0b3f9c3c1e55@contoso.com/*;
    proxy_pass https://exchange;
}
location ~* ^/ecp/ {
    esp_client_auth form;
    esp_preauth_excluded_dirs /ecp/*.js /ecp/*/scripts/*.css;
    proxy_pass https://exchange;
}
location /ews/ {
    esp_client_auth delegate;
    proxy_pass https://exchange;
}
location /Microsoft-Server-ActiveSync {
    esp_client_auth basic;
    proxy_pass https://exchange;
}
_EOC_

add_block_preprocessor(sub {
    my $b = shift;
    $b->set_value(http_config => $::Domain) unless defined $b->http_config;
    $b->set_value(config => $::Gate) unless defined $b->config;
});

sub raw_get {
    my ($path) = @_;
    return "GET $path HTTP/1.1\r\nHost: mail.contoso.com\r\nConnection: close\r\n\r\n";
}

run_blocks();

# ------------------------------------------------------- nginx -t warns

{
    my $file = nginx_prefix() . '/conf/stars.conf';
    my $text = config_with({ http_config => $Domain, config => <<'CONF' });
    esp contoso;
    esp_allowed_hosts mail.contoso.com;
    esp_allowed_dirs /owa/*.aspx /owa/*;
    location /owa/ {
        esp_preauth_excluded_dirs /owa/auth/expiredpassword.aspx*
                                  /owa/auth/*
                                  /owa/auth/**;
        proxy_pass https://exchange;
    }
    location /ecp/ {
        esp_preauth_excluded_dirs /ecp/healthcheck.htm
            /ecp/*.js
            /ecp/**/x.css;
        proxy_pass https://exchange;
    }
CONF
    $text =~ s/^pid .*$/pid logs\/stars.pid;/m;
    EspTest::spurt($file, $text);
    my @lines = split /\n/, $text;
    my ($js) = grep { $lines[$_ - 1] =~ m{^\s*/ecp/\*\.js$} } 1 .. @lines;
    my ($css) = grep { $lines[$_ - 1] =~ m{^\s*/ecp/\*\*/x\.css;$} } 1 .. @lines;
    my $nginx = $ENV{ESP_NGINX} || '/usr/sbin/nginx';
    my $out = `$nginx -t -p @{[ nginx_prefix() ]}/ -c $file 2>&1`;
    is($?, 0, 'nginx -t: a star before a suffix is a warning, not an error') or diag($out);
    # nginx names the line where the directive ends; "[warn] PID#TID: "
    # where the error log is stderr (Debian's build), "nginx: [warn] "
    # where nginx -t writes to the console (an upstream build)
    like($out, qr{\[warn\] (?:\d+#\d+: )?"esp_preauth_excluded_dirs" pattern "/ecp/\*\.js": the "\*" before "\.js" matches within one path segment only, yet lets every such name past the login; list the exact paths if you can in \Q$file\E:$css\b},
         'nginx -t: "/ecp/*.js" is warned about, with the file and line');
    like($out, qr{pattern "/ecp/\*\*/x\.css": the "\*" before "/x\.css"},
         'nginx -t: "/ecp/**/x.css" too');
    ok(defined $js && defined $css, "the config has the two patterns (lines $js, $css)");
    unlike($out, qr{pattern "/owa/}, 'nginx -t: no warning for patterns that end in a star');
    unlike($out, qr{healthcheck}, 'nginx -t: no warning for exact paths');
    unlike($out, qr{\*\.aspx}, 'nginx -t: no warning for esp_allowed_dirs (an allow-list)');
}

done_testing();

__DATA__

=== TEST 1: the plain "/ecp/foo.js" is still excluded by "/ecp/*.js"
--- request
GET /ecp/foo.js
--- backend: reached



=== TEST 2: "/ecp/x.aspx/y.js" (PathInfo, the shape of ProxyLogon): not excluded, to the login form
# FOUND (fixed): "*" crossed "/", so "/ecp/*.js" also excluded this path,
# which IIS serves with x.aspx: an ASP.NET handler without authentication
--- request
GET /ecp/x.aspx/y.js
--- error_code: 302
--- response_headers_like
Location: /_esp/login\?url=
--- backend: none



=== TEST 3: the same with an encoded slash "%2f": not excluded
--- raw_request eval
main::raw_get('/ecp/x.aspx%2fy.js')
--- error_code: 302
--- backend: none



=== TEST 4: the same with an upper-case "%2F": not excluded
--- raw_request eval
main::raw_get('/ecp/x.aspx%2Fy.js')
--- error_code: 302
--- backend: none



=== TEST 5: the same with a backslash: 400
--- raw_request eval
main::raw_get('/ecp/x.aspx\\y.js')
--- error_code: 400
--- backend: none



=== TEST 6: the same with "%5c": 400
--- raw_request eval
main::raw_get('/ecp/x.aspx%5cy.js')
--- error_code: 400
--- backend: none



=== TEST 7: ";" parameters inside the segment: authentication required
--- raw_request eval
main::raw_get('/ecp/x.aspx;y.js')
--- error_code: 302
--- backend: none
--- error_log
matches an excluded directory but is not written plainly



=== TEST 8: ";" parameters before a slash: not excluded
--- raw_request eval
main::raw_get('/ecp/x.aspx;/y.js')
--- error_code: 302
--- backend: none



=== TEST 9: "/owa/auth/x.aspx/a.gif" against "/owa/auth/*.gif": not excluded
--- request
GET /owa/auth/x.aspx/a.gif
--- error_code: 302
--- response_headers_like
Location: /_esp/login\?url=
--- backend: none



=== TEST 10: the plain "/owa/auth/a.gif" is still excluded
--- request
GET /owa/auth/a.gif
--- backend: reached



=== TEST 11: "expiredpassword.aspx*" no longer covers a PathInfo behind the page
--- request
GET /owa/auth/expiredpassword.aspx/x.js
--- error_code: 302
--- backend: none



=== TEST 12: the password page itself (and its query) is still excluded
--- request
GET /owa/auth/expiredpassword.aspx?url=/owa/auth.owa
--- backend: reached



=== TEST 13: a star before a suffix in another case: still excluded, as IIS reads it
--- request
GET /ECP/FOO.JS
--- backend: reached



=== TEST 14: "/ecp/*.js" does not reach into a subdirectory
--- request
GET /ecp/a/b.js
--- error_code: 302
--- backend: none



=== TEST 15: a star in the middle matches one segment: "/ecp/*/scripts/*.css"
--- request
GET /ecp/15.2/scripts/a.css
--- backend: reached



=== TEST 16: ... and not two
--- request
GET /ecp/x.aspx/15.2/scripts/a.css
--- error_code: 302
--- backend: none



=== TEST 17: a pattern ending in "/*" still takes the rest of the path
--- request
GET /owa/9c9f0f4b-1c1a-4d7e-9a61-0b3f9c3c1e55@contoso.com/a/b/c.png
--- backend: reached



=== TEST 18: esp_allowed_dirs "/ews/*.asmx" allows "/ews/exchange.asmx"
--- request
GET /ews/exchange.asmx
--- backend: reached



=== TEST 19: esp_allowed_dirs "/ews/*.asmx" does not allow "/ews/x.aspx/exchange.asmx"
--- request
GET /ews/x.aspx/exchange.asmx
--- error_code: 403
--- backend: none
--- error_log
is outside the allowed directories



=== TEST 20: esp_allowed_dirs "/Microsoft-Server-ActiveSync*" allows the path itself
--- request
GET /Microsoft-Server-ActiveSync?Cmd=Ping
--- error_code: 401
--- backend: none



=== TEST 21: ... but no path below it (write "/Microsoft-Server-ActiveSync/*" for that)
--- request
GET /Microsoft-Server-ActiveSync/x/default.eas
--- error_code: 403
--- backend: none
