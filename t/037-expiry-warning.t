# The password expiry warning of a form login ("password_expiry_warning" in
# esp_sso_domain, src/ngx_esp_password.c): the login reads the user's
# msDS-UserPasswordExpiryTimeComputed with the directory client (lr->attrs,
# as the service account after the bind), and within the window the new
# session's first page says when the password expires: change it now, or
# later, on to where the user was going.  A fine-grained password policy
# (PSO, 10 days maximum age) puts a user of this file inside a 14-day window;
# another user under the domain's 42 days stays outside.  Users and the PSO
# are made on dc1 only (the DCs do not replicate) and removed at the end.

use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;
use HTTP::Request::Common qw(GET);

if (!ad_present() || !$ENV{ESP_MODULE} || !-f $ENV{ESP_MODULE}) {
    Test::More::plan(skip_all => 'needs the module (ESP_MODULE) and the AD fixture');
}

my $RUN = $ENV{ESP_RUN} || '/tmp/esp-run';
my $DC1 = ad_env('AD_DC1');
my $CONF = "$RUN/ad/dc1/etc/smb.conf";
my $SAM = "tdb://$RUN/ad/dc1/private/sam.ldb";
my $REALM = ad_env('AD_REALM');
my %PW = (exsoon => 'Esp-037-Soon-1a!x', exlater => 'Esp-037-Later-2b!');

sub tool {
    my ($args) = @_;
    my $out = `samba-tool $args -s $CONF -H $SAM 2>&1`;
    diag("samba-tool $args: $out") if $?;
    return $? == 0;
}

END {
    local $?;
    `samba-tool user delete $_ -s $CONF -H $SAM 2>&1` for keys %PW;
    `samba-tool domain passwordsettings pso delete esp037 -s $CONF -H $SAM 2>&1`;
}

`samba-tool domain passwordsettings pso delete esp037 -s $CONF -H $SAM 2>&1`;
ok(tool('domain passwordsettings pso create esp037 10 --max-pwd-age=10 --min-pwd-age=0'),
   'PSO esp037: passwords expire after 10 days');
for my $u (sort keys %PW) {
    `samba-tool user delete $u -s $CONF -H $SAM 2>&1`;
    ok(tool("user create $u '$PW{$u}'"), "user $u created");
}
ok(tool('domain passwordsettings pso apply esp037 exsoon'), 'esp037 applies to exsoon');

# ------------------------------------------------------------ configuration

{
    my $bad = "esp_session_key \$ESP_RUN/keys/session.key;\n"
        . sso_domain_config(ldap_server => "ldaps://$DC1:636", password_expiry_warning => 'soon');
    ok(!nginx_start({ http_config => $bad, config => "esp contoso;\nesp_allowed_hosts mail.contoso.com;\n" }),
       'password_expiry_warning soon: nginx does not start');
    like(nginx_error() // '', qr/invalid password_expiry_warning "soon"/, 'saying why');

    $bad = "esp_session_key \$ESP_RUN/keys/session.key;\n"
        . sso_domain_config(ldap_server => "ldaps://$DC1:636", password_expiry_warning => '14d',
                            ldap_base_dn => undef, ldap_bind_dn => undef, ldap_bind_password_file => undef);
    ok(!nginx_start({ http_config => $bad, config => "esp contoso;\nesp_allowed_hosts mail.contoso.com;\n" }),
       'password_expiry_warning without ldap_base_dn: nginx does not start');
    like(nginx_error() // '', qr/"password_expiry_warning" needs "ldap_base_dn"/, 'saying why');
}

my $HTTP = "esp_session_key \$ESP_RUN/keys/session.key;\n"
    . sso_domain_config(ldap_server => "ldaps://$DC1:636", password_expiry_warning => '14d')
    . sso_domain_config(name => 'nowarn', ldap_server => "ldaps://$DC1:636",
                        password_expiry_warning => 'off')
    . sso_domain_config(name => 'nosvc', ldap_server => "ldaps://$DC1:636",
                        password_expiry_warning => '14d',
                        ldap_bind_dn => undef, ldap_bind_password_file => undef);

my $SERVER = <<"CONF";
esp contoso;
esp_client_auth form;
esp_server_auth basic;
esp_allowed_hosts mail.contoso.com;
location /owa/ {
    proxy_pass http://127.0.0.1:\$TEST_NGINX_PORT/ok/;
}
location /nowarn/ {
    esp nowarn;
    proxy_pass http://127.0.0.1:\$TEST_NGINX_PORT/ok/;
}
location /nosvc/ {
    esp nosvc;
    proxy_pass http://127.0.0.1:\$TEST_NGINX_PORT/ok/;
}
location /ok/ {
    esp off;
    return 200 "mailbox\\n";
}
CONF

ok(nginx_start({ http_config => $HTTP, config => $SERVER }), 'nginx starts')
    or BAIL_OUT('nginx does not start: ' . nginx_error());

sub login {
    my ($path, $user, %h) = @_;
    my $ua = ua();
    $ua->default_header(%h) if %h;
    my ($form) = follow($ua, $ua->request(GET(url($path))));
    my $res = submit_form($ua, $form, username => "$user\@$REALM", password => $PW{$user});
    return ($res, $ua);
}

{
    error_log_mark();
    my ($res, $ua) = login('/owa/inbox?x=1', 'exsoon');
    is($res->code, 200, 'inside the window: a page, not the redirect');
    my $c = $res->decoded_content // '';
    like($c, qr/Your password expires in 10 days\./, 'it says in how many days');
    like($c, qr{<a href="/owa/inbox\?x=1" id="later">Later</a>}, '"Later" goes on to where the user was going');
    like($c, qr{<form method="get" action="/_esp/password">}, '"Change it now" leads to the change page');
    like($c, qr{name="url" value="/owa/inbox\?x=1"}, 'with the return URL');
    ok(cookies($ua)->{esp_session}, 'the session is already issued');
    ok(error_log_wait(qr/esp ldap: read "CN=exsoon,CN=Users,DC=contoso,DC=local"/, 2),
       'the entry was read after the bind');
    ok(error_log_wait(qr/esp: password of user="exsoon\@contoso\.local" expires in \d+ s: warned/, 2),
       'logged');

    my $later = $ua->request(GET(url('/owa/inbox?x=1')));
    is($later->code, 200, 'later: the mailbox, with the session');
    is($later->decoded_content, "mailbox\n", 'the mailbox itself');

    my $page = $ua->request(GET(url('/_esp/password?url=%2Fowa%2Finbox%3Fx%3D1')));
    like($page->decoded_content // '', qr/name="oldpassword"/, 'change it now: the change page');

    ($res) = login('/owa/x', 'exsoon', 'Accept-Language' => 'de');
    like($res->decoded_content // '', qr/Ihr Kennwort l\x{e4}uft in 10 Tagen ab\./, 'German');
}

{
    my ($res, $ua) = login('/owa/x', 'exlater');
    is($res->code, 302, 'outside the window (42 days): straight on');
    ok(cookies($ua)->{esp_session}, 'with the session');

    ($res) = login('/nowarn/x', 'exsoon');
    is($res->code, 302, 'password_expiry_warning off: straight on');

    error_log_mark();
    ($res) = login('/nosvc/x', 'exsoon');
    is($res->code, 200, 'without a service account the user reads their own entry');
    like($res->decoded_content // '', qr/Your password expires in 10 days\./, 'and is warned');
}

nginx_stop();
done_testing();
