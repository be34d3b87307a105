# Configuration errors: every bad directive fails "nginx -t" with a
# message naming it and the file:line, and good ones load.

use strict;
use warnings;
use lib 't/lib';
use EspTest;

our $Keys = <<'_EOC_';
esp_session_key $ESP_RUN/keys/session.key;
_EOC_

our $Domain = $Keys . <<'_EOC_';
esp_sso_domain contoso {
    ldap_server ldaps://$AD_DC1:636;
    ldap_ca_certificate $ESP_CA;
}
_EOC_

run_tests();

__DATA__

=== TEST 1: a full domain block with every directive loads
--- http_config
esp_session_key $ESP_RUN/keys/session.key $ESP_RUN/keys/session-old.key;
esp_shared_zone esp:1m;
esp_sso_domain contoso {
    ldap_server ldaps://$AD_DC1:636;
    ldap_server ldap://$AD_DC2:389 starttls;
    ldap_ca_certificate $ESP_CA;
    ldap_verify on;
    ldap_bind_dn svc-esp@contoso.local;
    ldap_bind_password_file $AD_BIND_PASSWORD_FILE;
    ldap_base_dn "DC=contoso,DC=local";
    ldap_timeout 5s;
    ldap_connections 4;
    ldap_down_retry 30s;
    logon_format principalname;
    logon_domain contoso.local;
    netbios_domain CONTOSO;
    max_failed_auths 5;
    reset_fail_timeout 60s;
    unblock_timeout 30m;
    session_timeout public idle=15m max=30m;
    session_timeout private idle=15m max=8h;
}
--- config
esp contoso;
esp_allowed_hosts mail.contoso.com;
location / { proxy_pass https://exchange; }
--- request
GET /owa/healthcheck.htm
--- error_code: 302



=== TEST 2: "esp" names a domain that does not exist
--- http_config eval: $::Domain
--- config
esp nope;
esp_allowed_hosts mail.contoso.com;
--- must_die
--- error_log eval
qr/unknown SSO domain "nope" in "esp" directive in \S+nginx\.conf:\d+/



=== TEST 3: a domain may be defined after the server that uses it
--- http_config
esp_session_key $ESP_RUN/keys/session.key;
--- config
esp contoso;
esp_allowed_hosts mail.contoso.com;
location / { proxy_pass https://exchange; }
--- server_config
esp_sso_domain contoso {
    ldap_server ldaps://$AD_DC1:636;
    ldap_ca_certificate $ESP_CA;
}
--- request
GET /owa/
--- error_code: 302



=== TEST 4: esp_allowed_hosts without arguments
--- http_config eval: $::Domain
--- config
esp contoso;
esp_allowed_hosts;
--- must_die
--- error_log eval
qr/invalid number of arguments in "esp_allowed_hosts" directive in \S+nginx\.conf:\d+/



=== TEST 5: a directory pattern without a leading slash
--- http_config eval: $::Domain
--- config
esp contoso;
esp_allowed_hosts mail.contoso.com;
esp_allowed_dirs owa/*;
--- must_die
--- error_log eval
qr/invalid directory pattern "owa\/\*": it must start with "\/" in \S+nginx\.conf:\d+/



=== TEST 6: an excluded pattern without a leading slash
--- http_config eval: $::Domain
--- config
esp contoso;
esp_allowed_hosts mail.contoso.com;
esp_preauth_excluded_dirs /owa/auth/* ecp/*;
--- must_die
--- error_log
invalid directory pattern "ecp/*"



=== TEST 7: a duplicate directive
--- http_config eval: $::Domain
--- config
esp contoso;
esp_allowed_hosts mail.contoso.com;
esp_allowed_dirs /owa/*;
esp_allowed_dirs /ecp/*;
--- must_die
--- error_log eval
qr/"esp_allowed_dirs" directive is duplicate in \S+nginx\.conf:\d+/



=== TEST 8: "esp" twice in one place
--- http_config eval: $::Domain
--- config
esp contoso;
esp off;
--- must_die
--- error_log
"esp" directive is duplicate



=== TEST 9: esp without allowed hosts
--- http_config eval: $::Domain
--- config
esp contoso;
--- must_die
--- error_log eval
qr/"esp" in \S+nginx\.conf:\d+ needs "esp_allowed_hosts"/



=== TEST 10: a host with a port is not a host name
--- http_config eval: $::Domain
--- config
esp contoso;
esp_allowed_hosts mail.contoso.com:443;
--- must_die
--- error_log
invalid host name "mail.contoso.com:443"



=== TEST 11: an unknown client auth mode
--- http_config eval: $::Domain
--- config
esp contoso;
esp_allowed_hosts mail.contoso.com;
esp_client_auth ntlm;
--- must_die
--- error_log
invalid value "ntlm"



=== TEST 12: an unknown directive inside esp_sso_domain
--- http_config
esp_sso_domain contoso {
    ldap_server ldaps://$AD_DC1:636;
    ldap_ca_certificate $ESP_CA;
    ldap_frobnicate on;
}
--- must_die
--- error_log eval
qr/unknown directive "ldap_frobnicate" in esp_sso_domain in \S+nginx\.conf:\d+/



=== TEST 13: plain ldap:// would send passwords in clear text
--- http_config
esp_sso_domain contoso {
    ldap_server ldap://$AD_DC1:389;
    ldap_ca_certificate $ESP_CA;
}
--- must_die
--- error_log
would send passwords in clear text



=== TEST 14: starttls on an ldaps:// server
--- http_config
esp_sso_domain contoso {
    ldap_server ldaps://$AD_DC1:636 starttls;
    ldap_ca_certificate $ESP_CA;
}
--- must_die
--- error_log
only an ldap:// server takes "starttls"



=== TEST 15: a domain without servers
--- http_config
esp_sso_domain contoso {
    ldap_ca_certificate $ESP_CA;
}
--- must_die
--- error_log
esp_sso_domain "contoso" has no "ldap_server"



=== TEST 16: verification needs a CA
--- http_config
esp_sso_domain contoso {
    ldap_server ldaps://$AD_DC1:636;
}
--- must_die
--- error_log
needs "ldap_ca_certificate"



=== TEST 17: the same domain twice
--- http_config
esp_sso_domain contoso {
    ldap_server ldaps://$AD_DC1:636;
    ldap_ca_certificate $ESP_CA;
}
esp_sso_domain contoso {
    ldap_server ldaps://$AD_DC2:636;
    ldap_ca_certificate $ESP_CA;
}
--- must_die
--- error_log
duplicate esp_sso_domain "contoso"



=== TEST 18: a missing password file
--- http_config
esp_sso_domain contoso {
    ldap_server ldaps://$AD_DC1:636;
    ldap_ca_certificate $ESP_CA;
    ldap_bind_dn svc-esp@contoso.local;
    ldap_bind_password_file /nonexistent/bind.secret;
}
--- must_die
--- error_log
"/nonexistent/bind.secret" failed



=== TEST 19: a bind DN without a password
--- http_config
esp_sso_domain contoso {
    ldap_server ldaps://$AD_DC1:636;
    ldap_ca_certificate $ESP_CA;
    ldap_bind_dn svc-esp@contoso.local;
}
--- must_die
--- error_log
"ldap_bind_dn" and "ldap_bind_password_file" go together



=== TEST 20: a bad session_timeout parameter
--- http_config
esp_sso_domain contoso {
    ldap_server ldaps://$AD_DC1:636;
    ldap_ca_certificate $ESP_CA;
    session_timeout public idle=15m maximum=30m;
}
--- must_die
--- error_log
invalid parameter "maximum=30m"



=== TEST 21: an idle timeout longer than the maximum
--- http_config
esp_sso_domain contoso {
    ldap_server ldaps://$AD_DC1:636;
    ldap_ca_certificate $ESP_CA;
    session_timeout private idle=9h max=8h;
}
--- must_die
--- error_log
idle timeout cannot exceed its maximum



=== TEST 22: max_failed_auths out of range
--- http_config
esp_sso_domain contoso {
    ldap_server ldaps://$AD_DC1:636;
    ldap_ca_certificate $ESP_CA;
    max_failed_auths 1000;
}
--- must_die
--- error_log
"max_failed_auths" must be between 0 and 999



=== TEST 23: an unknown logon format
--- http_config
esp_sso_domain contoso {
    ldap_server ldaps://$AD_DC1:636;
    ldap_ca_certificate $ESP_CA;
    logon_format upn;
}
--- must_die
--- error_log
invalid value "upn"



=== TEST 24: a malformed LDAP URL
--- http_config
esp_sso_domain contoso {
    ldap_server https://$AD_DC1:636;
    ldap_ca_certificate $ESP_CA;
}
--- must_die
--- error_log
invalid LDAP URL "https://



=== TEST 25: esp_sso_domain inside a server block is not allowed
--- config
esp_sso_domain contoso {
    ldap_server ldaps://$AD_DC1:636;
    ldap_ca_certificate $ESP_CA;
}
--- must_die
--- error_log
"esp_sso_domain" directive is not allowed here



=== TEST 26: a missing argument to a domain directive
--- http_config
esp_sso_domain contoso {
    ldap_server ldaps://$AD_DC1:636;
    ldap_ca_certificate;
}
--- must_die
--- error_log
invalid number of arguments in "ldap_ca_certificate" directive



=== TEST 27: a duplicate domain directive
--- http_config
esp_sso_domain contoso {
    ldap_server ldaps://$AD_DC1:636;
    ldap_ca_certificate $ESP_CA;
    ldap_base_dn "DC=contoso,DC=local";
    ldap_base_dn "DC=fabrikam,DC=local";
}
--- must_die
--- error_log
"ldap_base_dn" directive is duplicate
