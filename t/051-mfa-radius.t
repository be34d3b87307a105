# The second factor over RADIUS (esp_mfa radius, src/ngx_esp_radius.c):
# the radius_* directives and their errors; then logins through the form
# against a real FreeRADIUS (t/fixtures/radius.py writes its configuration:
# require_message_authenticator, a policy that accepts one code, rejects
# others, challenges with a Reply-Message and State, waits for a "push")
# and against a hostile responder for what FreeRADIUS will not send (no
# Message-Authenticator, wrong authenticators, wrong id, truncated and
# overrunning packets): accept, reject, challenge then accept, time-out,
# failover from a dead and from a silent first server, a wrong shared
# secret, push approval held on the event loop.  A bad reply never lets a
# login through and never crashes a worker; no secret, password or code
# reaches the error log.

use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;
use IPC::Open2 qw(open2);
use Time::HiRes qw(time sleep);

my $RUN = $ENV{ESP_RUN} || '/tmp/esp-run';
my $ROOT = $ENV{ESP_ROOT} || '.';
my $SECRET = 'gate-and-radius-share-this';

# the shared secrets, read by nginx at start
mkdir "$RUN/radius";
EspTest::spurt("$RUN/radius/secret", "$SECRET\n");
EspTest::spurt("$RUN/radius/wrong", "not-the-secret\n");
chmod 0600, "$RUN/radius/secret", "$RUN/radius/wrong";

run_blocks();

done_testing();

__DATA__

=== TEST 1: radius_server needs a secret file
--- http_config
esp_sso_domain contoso {
    ldap_server ldaps://127.0.0.2:636;
    ldap_verify off;
    radius_server 127.0.0.2:1812;
}
--- config
--- must_die
--- error_log eval
qr/RADIUS server "127\.0\.0\.2:1812" needs "secret_file=FILE" in \S+nginx\.conf:\d+/



=== TEST 2: an unknown radius_server parameter is refused
--- http_config
esp_sso_domain contoso {
    ldap_server ldaps://127.0.0.2:636;
    ldap_verify off;
    radius_server 127.0.0.2 secret_file=$ESP_RUN/radius/secret secret=inline;
}
--- config
--- must_die
--- error_log eval
qr/invalid parameter "secret=inline"/



=== TEST 3: retries above 10, a zero or bad timeout, a parameter twice
--- http_config
esp_sso_domain a {
    ldap_server ldaps://127.0.0.2:636;
    ldap_verify off;
    radius_server 127.0.0.2 secret_file=$ESP_RUN/radius/secret retries=11;
}
--- config
--- must_die
--- error_log eval
qr/invalid parameter "retries=11"/



=== TEST 4: timeout=0 is refused
--- http_config
esp_sso_domain a {
    ldap_server ldaps://127.0.0.2:636;
    ldap_verify off;
    radius_server 127.0.0.2 secret_file=$ESP_RUN/radius/secret timeout=0;
}
--- config
--- must_die
--- error_log eval
qr/invalid parameter "timeout=0"/



=== TEST 5: timeout given twice is refused
--- http_config
esp_sso_domain a {
    ldap_server ldaps://127.0.0.2:636;
    ldap_verify off;
    radius_server 127.0.0.2 secret_file=$ESP_RUN/radius/secret timeout=1s timeout=2s;
}
--- config
--- must_die
--- error_log eval
qr/invalid parameter "timeout=2s"/



=== TEST 6: a secret file that does not exist
--- http_config
esp_sso_domain a {
    ldap_server ldaps://127.0.0.2:636;
    ldap_verify off;
    radius_server 127.0.0.2 secret_file=$ESP_RUN/radius/nope;
}
--- config
--- must_die
--- error_log eval
qr{open\(\) "\S+/radius/nope" failed}



=== TEST 7: a bad server address
--- http_config
esp_sso_domain a {
    ldap_server ldaps://127.0.0.2:636;
    ldap_verify off;
    radius_server 127.0.0.2:99999 secret_file=$ESP_RUN/radius/secret;
}
--- config
--- must_die
--- error_log eval
qr/invalid port in RADIUS server "127\.0\.0\.2:99999"/



=== TEST 8: radius_password takes code or directory only
--- http_config
esp_sso_domain a {
    ldap_server ldaps://127.0.0.2:636;
    ldap_verify off;
    radius_server 127.0.0.2 secret_file=$ESP_RUN/radius/secret;
    radius_password both;
}
--- config
--- must_die
--- error_log eval
qr/invalid value "both": expected "code" or "directory"/



=== TEST 9: radius_* settings without a radius_server
--- http_config
esp_sso_domain a {
    ldap_server ldaps://127.0.0.2:636;
    ldap_verify off;
    radius_nas_identifier gate;
}
--- config
--- must_die
--- error_log eval
qr/esp_sso_domain "a": radius_\* directives without "radius_server"/



=== TEST 10: radius_nas_identifier twice, a bad NAS-IP-Address
--- http_config
esp_sso_domain a {
    ldap_server ldaps://127.0.0.2:636;
    ldap_verify off;
    radius_server 127.0.0.2 secret_file=$ESP_RUN/radius/secret;
    radius_nas_ip_address 300.1.1.1;
}
--- config
--- must_die
--- error_log eval
qr/invalid IPv4 address "300\.1\.1\.1"/



=== TEST 11: radius_password twice
--- http_config
esp_sso_domain a {
    ldap_server ldaps://127.0.0.2:636;
    ldap_verify off;
    radius_server 127.0.0.2 secret_file=$ESP_RUN/radius/secret;
    radius_password code;
    radius_password directory;
}
--- config
--- must_die
--- error_log eval
qr/"radius_password" directive is duplicate/



=== TEST 12: a full RADIUS configuration is accepted, and its secret is not in the log
--- http_config
esp_sso_domain a {
    ldap_server ldaps://127.0.0.2:636;
    ldap_verify off;
    radius_server 127.0.0.2 secret_file=$ESP_RUN/radius/secret;
    radius_server 127.0.0.3:1645 secret_file=$ESP_RUN/radius/secret timeout=60s retries=0;
    radius_nas_identifier mail-gate;
    radius_nas_ip_address 192.0.2.1;
    radius_password directory;
}
--- config
location / { return 200 "up\n"; }
--- request
GET /
--- error_code: 200
--- no_error_log
gate-and-radius-share-this
