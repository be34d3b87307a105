# The status endpoint (src/ngx_esp_status.c): "esp_status" answers JSON or
# Prometheus text about the domain controllers (this worker's view), the
# shared zone and the login counters (all workers), and carries out two
# admin actions, by POST only: unblock a user the gate blocked, revoke a
# user's sessions.  Blocks first (config errors, refusals that need no
# directory), then flows against the AD fixture.

use strict;
use warnings;
use lib 't/lib';
use EspTest;
use EspTest::Flow;
use Encode qw(decode_utf8);
use HTTP::Request::Common qw(GET HEAD POST);
use JSON::PP ();


our $Http = <<'_EOC_';
esp_session_key $ESP_RUN/keys/session.key;
esp_sso_domain contoso {
    ldap_server ldaps://$AD_DC1:636;
    ldap_ca_certificate $ESP_CA;
}
_EOC_

our $Server = <<'_EOC_';
esp contoso;
esp_allowed_hosts mail.contoso.com;
esp_allowed_dirs /owa/*;
location /owa/ { proxy_pass https://exchange; }
location = /esp-status { esp_status; allow 127.0.0.1; deny all; }
location = /esp-status-denied { esp_status; deny all; }
_EOC_

run_blocks();

my $RUN = $ENV{ESP_RUN} || '/tmp/esp-run';
my $JSON = JSON::PP->new->utf8;

my @RESULTS = qw(ok bad_credentials logon_hours workstation password_expired
                 disabled account_expired must_change locked not_permitted
                 blocked invalid unavailable service_account error);

# a second domain whose name needs escaping in JSON and in labels: a
# backslash before an "n", UTF-8, another backslash
my $ODD_BYTES = "odd\\n\xc3\xa4me\\x";
my $ODD = decode_utf8($ODD_BYTES);

# ------------------------------------------------------------ helpers

sub status_res {
    my (%h) = @_;
    my $path = delete $h{path} // '/esp-status';
    return ua()->get(url($path), %h);
}

sub status {
    my $res = status_res();
    my $doc = eval { $JSON->decode($res->content) };
    diag('status: ' . $res->status_line . ' ' . ($@ // '')) unless $doc;
    return $doc // {};
}

sub admin {
    my ($content, %h) = @_;
    return ua()->request(POST(url('/esp-status'), %h, Content => $content));
}

sub basic {
    my ($user, $password) = @_;
    return ua()->get(url('/basic/x'), Authorization => basic_auth($user, $password));
}

sub dc_sum {
    my ($doc, $field) = @_;
    my ($d) = grep { $_->{name} eq 'contoso' } @{ $doc->{domains} || [] };
    my $sum = 0;
    $sum += $_->{$field} for @{ $d->{domain_controllers} || [] };
    return $sum;
}

# A strict reader of the text exposition format 0.0.4: every family has
# one HELP and one TYPE before its samples, samples of a family are
# together, names and labels are well formed, values are numbers.
sub prom_parse {
    my ($text) = @_;
    my (@err, %help, %type, %samples, %closed);
    my $cur = '';
    push @err, 'the text does not end with a newline' unless $text =~ /\n\z/;
    for my $line (split /\n/, $text) {
        if ($line =~ /^# HELP (\S+) (.+)$/) {
            push @err, "HELP of $1 twice" if $help{$1}++;
            push @err, "metric name $1 is not esp_..." unless $1 =~ /^esp_[a-z0-9_]+$/;
            next;
        }
        if ($line =~ /^# TYPE (\S+) (\S+)$/) {
            my ($n, $t) = ($1, $2);
            push @err, "TYPE of $n twice" if $type{$n};
            push @err, "TYPE of $n after its samples" if $samples{$n};
            push @err, "TYPE of $n without HELP" unless $help{$n};
            push @err, "type $t of $n" unless $t =~ /^(?:counter|gauge)$/;
            push @err, "counter $n does not end in _total" if $t eq 'counter' && $n !~ /_total$/;
            $type{$n} = $t;
            next;
        }
        if ($line =~ /^#/) {
            push @err, "stray comment: $line";
            next;
        }
        my ($name, $labels, $value) = $line =~ /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/
            or do { push @err, "not a sample: $line"; next };
        push @err, "sample of $name without TYPE" unless $type{$name};
        push @err, "sample of $name apart from its family" if $closed{$name};
        $closed{$cur} = 1 if $cur ne '' && $cur ne $name;
        $cur = $name;
        push @err, "value $value in: $line" unless $value =~ /^-?\d+(?:\.\d+)?$/;
        my %l;
        my $s = $labels // '';
        while (length $s) {
            $s =~ s/^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(?:,|$)//
                or do { push @err, "labels of: $line"; last };
            my ($k, $v) = ($1, $2);
            push @err, "label $k twice in: $line" if exists $l{$k};
            $v =~ s/\\(["\\n])/$1 eq 'n' ? "\n" : $1/ge;
            $l{$k} = $v;
        }
        push @{ $samples{$name} }, { labels => \%l, value => $value };
    }
    return (\@err, \%samples);
}

sub prom_value {
    my ($samples, $name, %labels) = @_;
    SAMPLE: for my $s (@{ $samples->{$name} || [] }) {
        for my $k (keys %labels) {
            next SAMPLE unless defined $s->{labels}{$k} && $s->{labels}{$k} eq $labels{$k};
        }
        return $s->{value};
    }
    return undef;
}

sub prometheus {
    my $res = status_res(path => '/esp-status?format=prometheus');
    my ($err, $samples) = prom_parse($res->content);
    return ($res, $err, $samples);
}

# ------------------------------------------------------------ flows

SKIP: {
    skip('needs the AD fixture, the stand-in Exchange and the module', 1)
        unless ad_present() && exchange_present() && $ENV{ESP_MODULE} && -f $ENV{ESP_MODULE};

    my $users = ad_users();
    my %secret = map { $_ => 1 } grep { defined && length } map { $_->{password} } values %$users;
    my $bind_pw = EspTest::slurp(ad_env('AD_BIND_PASSWORD_FILE') // '/nonexistent') // '';
    $bind_pw =~ s/\s+\z//;
    $secret{$bind_pw} = 1 if length $bind_pw;

    my $dc1 = 'ldaps://' . ad_env('AD_DC1') . ':636';
    my $ca = ad_env('AD_CA');

    my %conf = (
        http_config => "esp_session_key $RUN/keys/session.key;\n"
            . sso_domain_config(max_failed_auths => 2, unblock_timeout => '10m')
            . qq|esp_sso_domain odd\\\\n\xc3\xa4me\\\\x {\n|
            . "    ldap_server ldaps://127.0.0.4:636;\n"
            . "    ldap_ca_certificate $ca;\n}\n",
        config => <<'CONF',
esp contoso;
esp_allowed_hosts mail.contoso.com;
location /basic/ { esp_client_auth basic; proxy_pass https://exchange; }
location /plain/ { esp_client_auth form; proxy_pass https://exchange; }
location = /esp-status { esp_status; allow 127.0.0.1; deny all; }
CONF
    );

    ok(nginx_start(\%conf), 'flows: nginx starts') or Test::More::BAIL_OUT('nginx does not start: ' . nginx_error());
    my $errlog = nginx_prefix() . '/logs/error.log';
    my $log_from = -s $errlog;

    # the nginx the suite runs on, as the binary itself says
    my $nginx_bin = $ENV{ESP_NGINX} || '/usr/sbin/nginx';
    my ($running) = (`$nginx_bin -v 2>&1` // '') =~ m{nginx/(\d+\.\d+\.\d+)};
    ok($running, "the nginx binary names its version ($nginx_bin)");
    $running //= 'unknown';
    ok(EspTest::poll(5, sub {
           (EspTest::slurp($errlog) // '')
               =~ qr{\[notice\] .*esp: ngx_exchange_esp \d+\.\d+\.\d+\S* on nginx/\Q$running\E, OpenSSL \d}
       }), "start: the error log names the module, nginx $running and OpenSSL");

    my @bodies;     # every status answer, checked for secrets at the end

    # ------------------------------------------------------------ JSON

    {
        my $res = status_res();
        push @bodies, $res->content;
        is($res->code, 200, 'json: 200');
        is($res->header('Content-Type'), 'application/json', 'json: Content-Type application/json');
        is($res->header('Cache-Control'), 'no-store', 'json: Cache-Control no-store');
        my $doc = eval { $JSON->decode($res->content) };
        ok($doc, 'json: the body parses (JSON::PP, strict UTF-8)') or diag($@);
        $doc //= {};

        is($doc->{nginx_version} // '', $running, "json: nginx_version is the running nginx ($running)");
        like($doc->{module_version} // '', qr/^\d+\.\d+\.\d+/, 'json: module_version');
        like($doc->{worker_pid} // '', qr/^[1-9]\d*$/, 'json: worker_pid');
        like($doc->{time} // '', qr/^\d{10}$/, 'json: time');

        my $l = $doc->{logins} || {};
        is($l->{scope}, 'all workers', 'json: logins are counted for all workers');
        like($l->{since} // '', qr/^\d{10}$/, 'json: logins.since');
        is_deeply([grep { !defined $l->{$_} || $l->{$_} !~ /^\d+$/ } @RESULTS], [],
                  'json: a counter for every login result');
        is_deeply($doc->{admin_actions}, { unblock => 0, revoke => 0 }, 'json: admin_actions');

        my @d = @{ $doc->{domains} || [] };
        is_deeply([sort map { $_->{name} } @d], [sort 'contoso', $ODD],
                  'json: both domains, the odd name escaped and read back intact');
        my ($c) = grep { $_->{name} eq 'contoso' } @d;
        is($c->{max_failed_auths}, 2, 'json: max_failed_auths of the domain');
        my @dcs = @{ $c->{domain_controllers} || [] };
        is(scalar @dcs, 2, 'json: two domain controllers for contoso');
        is($dcs[0]{url}, $dc1, 'json: the first DC in config order');
        is($dcs[0]{state}, 'up', 'json: state up');
        is($dcs[0]{worker_pid}, $doc->{worker_pid}, 'json: the DC view says whose worker it is');
        is_deeply([grep { !defined $dcs[0]{$_} || $dcs[0]{$_} !~ /^\d+$/ }
                   qw(down_until binds_ok binds_failed errors timeouts last_latency_ms
                      connections idle_connections)], [], 'json: every DC counter is a number');

        my $z = $doc->{shared_zone} || {};
        is($z->{name}, 'esp', 'json: the default shared zone');
        ok($z->{size} > 0 && $z->{used} + $z->{free} == $z->{size}, 'json: size = used + free');
        ok($z->{entry_size} > 0 && $z->{capacity} > 0, 'json: entry_size and capacity');
        is_deeply([grep { !defined $z->{$_} || $z->{$_} !~ /^\d+$/ }
                   qw(cached_credentials cache_hits cache_misses evictions alloc_failures
                      lockouts blocked revoked_sessions revoked_users)], [],
                  'json: every zone counter is a number');
        ok(exists $z->{cache_hit_rate} && !defined $z->{cache_hit_rate},
           'json: no hit rate before any lookup (null)');
    }

    # ------------------------------------------------------------ Prometheus

    {
        my ($res, $err, $s) = prometheus();
        push @bodies, $res->content;
        my $doc = status();
        is($res->code, 200, 'prometheus: 200');
        like($res->header('Content-Type') // '', qr{^text/plain; version=0\.0\.4\b},
             'prometheus: Content-Type text/plain; version=0.0.4');
        is_deeply($err, [], 'prometheus: valid exposition format');
        like($res->content, qr/^# HELP esp_logins_total .+\n# TYPE esp_logins_total counter\n/m,
             'prometheus: HELP and TYPE lines');
        is(prom_value($s, 'esp_info'), 1, 'prometheus: esp_info');
        is(($s->{esp_info}[0]{labels}{nginx_version} // ''), $running,
           'prometheus: esp_info carries the running nginx version');
        is(scalar @{ $s->{esp_logins_total} || [] }, scalar @RESULTS,
           'prometheus: esp_logins_total for every result');
        is(prom_value($s, 'esp_dc_up', domain => 'contoso', dc => $dc1), 1, 'prometheus: esp_dc_up');
        my $pid = $s->{esp_dc_up}[0]{labels}{worker_pid} // '';
        like($pid, qr/^\d+$/, 'prometheus: DC samples carry worker_pid');
        ok(defined prom_value($s, 'esp_dc_binds_total', dc => $dc1, result => 'ok')
           && defined prom_value($s, 'esp_dc_binds_total', dc => $dc1, result => 'failed'),
           'prometheus: esp_dc_binds_total by result');
        for my $m (qw(esp_dc_down_until_seconds esp_dc_errors_total esp_dc_timeouts_total
                      esp_dc_last_bind_latency_seconds esp_dc_connections esp_dc_idle_connections)) {
            ok(defined prom_value($s, $m, domain => 'contoso', dc => $dc1), "prometheus: $m");
        }
        is(prom_value($s, 'esp_shm_size_bytes', zone => 'esp'), $doc->{shared_zone}{size},
           'prometheus: esp_shm_size_bytes as in JSON');
        for my $m (qw(esp_shm_used_bytes esp_shm_free_bytes esp_shm_entry_size_bytes
                      esp_shm_capacity_entries esp_shm_evictions_total esp_cache_entries
                      esp_cache_hits_total esp_cache_misses_total esp_lockout_entries
                      esp_blocked_users esp_revoked_sessions esp_revoked_users
                      esp_admin_actions_total esp_counters_start_time_seconds)) {
            ok(defined prom_value($s, $m), "prometheus: $m");
        }
        ok(defined prom_value($s, 'esp_dc_up', domain => $ODD_BYTES, dc => 'ldaps://127.0.0.4:636'),
           'prometheus: the odd domain name is escaped in its label and reads back intact');
        like($res->content, qr/domain="odd\\\\n\xc3\xa4me\\\\x"/,
             'prometheus: backslashes doubled in the label, "\\n" not taken for a newline');

        my %accept = (
            'application/openmetrics-text;version=1.0.0,application/openmetrics-text;'
              . 'version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1' => 'text/plain',
            'text/plain'                              => 'text/plain',
            'text/*'                                  => 'text/plain',
            'application/json'                        => 'application/json',
            '*/*'                                     => 'application/json',
            'text/html,application/xhtml+xml,*/*;q=0.8' => 'application/json',
            'text/plain;q=0.1, application/json'      => 'application/json',
            'text/plain;q=0, */*'                     => 'application/json',
        );
        for my $a (sort keys %accept) {
            my $r = status_res(Accept => $a);
            like($r->header('Content-Type') // '', qr{^\Q$accept{$a}\E\b},
                 "negotiation: Accept \"$a\" gets $accept{$a}");
        }
        like(status_res(path => '/esp-status?format=json', Accept => 'text/plain')
                 ->header('Content-Type') // '', qr{^application/json},
             'negotiation: ?format=json wins over Accept');
    }

    # ------------------------------------------------------------ login counters

    my $carol = $users->{carol};
    {
        my $before = status();
        is(basic($carol->{upn}, $carol->{password})->code, 200, 'counters: carol logs in (Basic)');
        my $after = status();
        is($after->{logins}{ok}, $before->{logins}{ok} + 1, 'counters: ok +1');
        is($after->{logins}{bad_credentials}, $before->{logins}{bad_credentials},
           'counters: bad_credentials unchanged');
        is(dc_sum($after, 'binds_ok'), dc_sum($before, 'binds_ok') + 1,
           'counters: one more bind accepted by a DC (this worker)');
        ok($after->{shared_zone}{cached_credentials} >= 1, 'counters: the login is cached');

        my (undef, undef, $s) = prometheus();
        is(prom_value($s, 'esp_logins_total', result => 'ok'), $after->{logins}{ok},
           'counters: esp_logins_total{result="ok"} as in JSON');

        is(basic($carol->{upn}, 'Wrong-password-1')->code, 401, 'counters: a wrong password gets 401');
        my $bad = status();
        is($bad->{logins}{bad_credentials}, $after->{logins}{bad_credentials} + 1,
           'counters: bad_credentials +1');
        is($bad->{logins}{ok}, $after->{logins}{ok}, 'counters: ok unchanged');
        is(dc_sum($bad, 'binds_failed'), dc_sum($after, 'binds_failed') + 1,
           'counters: one more bind refused by a DC (this worker)');

        is(basic($carol->{upn}, $carol->{password})->code, 200, 'counters: carol again, from the cache');
        my $hit = status();
        is($hit->{logins}{ok}, $bad->{logins}{ok} + 1, 'counters: a cache hit counts as ok');
        is($hit->{shared_zone}{cache_hits}, $bad->{shared_zone}{cache_hits} + 1, 'counters: cache_hits +1');
        like($hit->{shared_zone}{cache_hit_rate} // '', qr/^(?:0(?:\.\d+)?|1(?:\.0+)?)$/,
             'counters: cache_hit_rate is a number in [0, 1]');

        ok(nginx_reload(), 'counters: nginx reloads');
        my $reloaded = status();
        is($reloaded->{logins}{ok}, $hit->{logins}{ok}, 'counters: kept across a reload');
        is($reloaded->{logins}{since}, $hit->{logins}{since}, 'counters: same start after a reload');
    }

    # ------------------------------------------------------------ lockout, unblock

    my $bob = $users->{bob};
    {
        is(basic($bob->{upn}, 'Wrong-password-1')->code, 401, 'lockout: bob, wrong password 1');
        is(basic($bob->{upn}, 'Wrong-password-2')->code, 401, 'lockout: bob, wrong password 2');
        my $doc = status();
        is($doc->{shared_zone}{blocked}, 1, 'lockout: blocked 1');
        ok($doc->{shared_zone}{lockouts} >= 1, 'lockout: a lockout entry');
        my (undef, undef, $s) = prometheus();
        is(prom_value($s, 'esp_blocked_users'), 1, 'lockout: esp_blocked_users 1');
        is(basic($bob->{upn}, $bob->{password})->code, 401, 'lockout: bob is blocked with the right password');
        is(status()->{logins}{blocked}, $doc->{logins}{blocked} + 1, 'lockout: counted as blocked');

        error_log_mark();
        my $get = status_res(path => '/esp-status?action=unblock&domain=contoso&user=bob');
        is($get->code, 405, 'GET with action: 405');
        is($get->header('Allow'), 'GET, HEAD, POST', 'GET with action: Allow header');
        is(status()->{shared_zone}{blocked}, 1, 'GET with action: bob is still blocked');
        ok(!error_log_wait('esp: admin unblock', 0.3), 'GET with action: no admin action logged');

        my $form = 'application/x-www-form-urlencoded';
        my @bad = (
            [ 'a text/plain body', 400, 'action=unblock&domain=contoso&user=bob',
              'Content-Type' => 'text/plain' ],
            [ 'a JSON body', 400, '{"action":"unblock","domain":"contoso","user":"bob"}',
              'Content-Type' => 'application/json' ],
            [ 'a look-alike content type', 400, 'action=unblock&domain=contoso&user=bob',
              'Content-Type' => 'application/x-www-form-urlencodedX' ],
            [ 'no user', 400, 'action=unblock&domain=contoso' ],
            [ 'an empty user', 400, 'action=unblock&domain=contoso&user=' ],
            [ 'an unknown action', 400, 'action=delete&domain=contoso&user=bob' ],
            [ 'a field twice', 400, 'action=unblock&domain=contoso&user=alice&user=bob' ],
            [ 'an unknown field', 400, 'action=unblock&domain=contoso&user=bob&x=1' ],
            [ 'a field without =', 400, 'action=unblock&domain=contoso&user' ],
            [ 'a broken %-escape', 400, 'action=unblock&domain=contoso&user=bob%zz' ],
            [ 'a truncated %-escape', 400, 'action=unblock&domain=contoso&user=bob%4' ],
            [ 'a newline in the user', 400, 'action=unblock&domain=contoso&user=bob%0a' ],
            [ 'invalid UTF-8 in the user', 400, 'action=unblock&domain=contoso&user=b%ffob' ],
            [ 'a user that is no logon name', 400, 'action=unblock&domain=contoso&user=a%5cb%5cc' ],
            [ 'a user too long', 400, 'action=unblock&domain=contoso&user=' . ('b' x 300) ],
            [ 'an empty body', 400, '' ],
            [ 'an unknown domain', 404, 'action=unblock&domain=fabrikam&user=bob' ],
            [ 'a domain in another case', 404, 'action=unblock&domain=Contoso&user=bob' ],
            [ 'a foreign Origin', 403, 'action=unblock&domain=contoso&user=bob',
              Origin => 'https://evil.example' ],
            [ 'Sec-Fetch-Site cross-site', 403, 'action=unblock&domain=contoso&user=bob',
              'Sec-Fetch-Site' => 'cross-site' ],
            [ 'a body over 4 KiB', 413, 'action=unblock&domain=contoso&user=bob&' . ('x' x 5000) ],
        );
        for my $b (@bad) {
            my ($what, $code, $content, %h) = @$b;
            $h{'Content-Type'} //= $form;
            my $res = admin($content, %h);
            is($res->code, $code, "bad POST, $what: $code");
            my $doc = eval { $JSON->decode($res->content) } || {};
            ok($doc->{ok} eq '0' && length($doc->{error} // ''), "bad POST, $what: JSON with a reason")
                or diag($res->content);
        }
        is(status()->{shared_zone}{blocked}, 1, 'bad POSTs: bob is still blocked');

        error_log_mark();
        my $res = admin('action=unblock&domain=contoso&user=Bob', 'Content-Type' => $form);
        is($res->code, 200, 'unblock: 200');
        is($res->header('Content-Type'), 'application/json', 'unblock: JSON');
        my $ans = eval { $JSON->decode($res->content) } || {};
        is_deeply($ans, { ok => JSON::PP::true, action => 'unblock', domain => 'contoso',
                          user => 'bob@contoso.local', lockout_removed => JSON::PP::true },
                  'unblock: the lowercased logon name built from "Bob" was unblocked');
        ok(error_log_wait('esp: admin unblock user="bob@contoso.local" domain=contoso client=127.0.0.1', 1),
           'unblock: logged at notice');
        $doc = status();
        is($doc->{shared_zone}{blocked}, 0, 'unblock: blocked 0');
        is($doc->{admin_actions}{unblock}, 1, 'unblock: counted');
        is(basic($bob->{upn}, $bob->{password})->code, 200, 'unblock: bob logs in again');

        $res = admin('action=unblock&domain=contoso&user=bob%40contoso.local',
                     'Content-Type' => "$form; charset=UTF-8",
                     Origin => 'https://mail.contoso.com:' . nginx_tls_port(),
                     'Sec-Fetch-Site' => 'same-origin');
        $ans = eval { $JSON->decode($res->content) } || {};
        ok($res->code == 200 && $ans->{ok} && !$ans->{lockout_removed},
           'unblock again, same-origin browser headers: ok, nothing to remove');
    }

    # ------------------------------------------------------------ revoke

    my $alice = $users->{alice};
    {
        my $ua = ua();
        my ($page) = follow($ua, $ua->get(url('/plain/x')));
        my $res = submit_form($ua, $page, username => $alice->{upn}, password => $alice->{password});
        is($res->code, 302, 'revoke: alice logs in with the form');
        is($ua->get(url('/plain/x'))->code, 200, 'revoke: her session opens /plain/');

        my $cached = status()->{shared_zone}{cached_credentials};

        error_log_mark();
        $res = admin('action=revoke&domain=contoso&user=' . $alice->{upn},
                     'Content-Type' => 'application/x-www-form-urlencoded');
        is($res->code, 200, 'revoke: 200');
        my $ans = eval { $JSON->decode($res->content) } || {};
        ok($ans->{ok} && $ans->{user} eq $alice->{upn}, 'revoke: ok, for alice');
        is(($ans->{until} // 0) - ($ans->{since} // 0), 8 * 3600,
           'revoke: kept for the longest session lifetime (private max 8h)');
        ok(error_log_wait("esp: admin revoke user=\"$alice->{upn}\" domain=contoso client=127.0.0.1", 1),
           'revoke: logged at notice');

        $res = $ua->get(url('/plain/x'));
        is($res->code, 302, 'revoke: the same cookie gets 302');
        like($res->header('Location') // '', qr{/_esp/login\?url=}, 'revoke: to the login form');
        ok(error_log_wait("session of \"$alice->{upn}\" was revoked", 1), 'revoke: the refusal is logged');

        my $doc = status();
        is($doc->{shared_zone}{revoked_users}, 1, 'revoke: revoked_users 1');
        is($doc->{admin_actions}{revoke}, 1, 'revoke: counted');

        # a user who typed the name in another case: the gate's keys are
        # the lowercased logon name, so the revocation must reach her too
        sleep 1;    # a login in the second of a revocation is revoked too
        my $ua2 = ua();
        ($page) = follow($ua2, $ua2->get(url('/plain/x')));
        $res = submit_form($ua2, $page, username => 'Alice', password => $alice->{password});
        is($ua2->get(url('/plain/x'))->code, 200, 'revoke: "Alice" logs in again later');
        admin('action=revoke&domain=contoso&user=alice', 'Content-Type' => 'application/x-www-form-urlencoded');
        is($ua2->get(url('/plain/x'))->code, 302, 'revoke: also ends the session of "Alice"');

        # carol's Basic login is cached since the counters part
        admin('action=revoke&domain=contoso&user=carol', 'Content-Type' => 'application/x-www-form-urlencoded');
        is(status()->{shared_zone}{cached_credentials}, $cached - 1,
           'revoke: the cached credential is dropped');
    }

    # ------------------------------------------------------------ all workers

    {
        ok(nginx_start({ %conf, workers => 2 }), 'workers: nginx runs 2 workers');
        my $before = status()->{logins}{ok};
        is(basic($carol->{upn}, $carol->{password})->code, 200, "workers: carol logs in ($_)")
            for 1 .. 6;
        my (%pids, %counts);
        for (1 .. 10) {
            my $doc = status();
            push @bodies, $JSON->encode($doc);
            $pids{ $doc->{worker_pid} // '?' } = 1;
            $counts{ $doc->{logins}{ok} // '?' } = 1;
        }
        is_deeply([keys %counts], [$before + 6],
                  'workers: every answer counts the logins of all workers')
            or diag('answered by workers ' . join(', ', sort keys %pids));
        Test::More::note('status answered by workers ' . join(', ', sort keys %pids));
    }

    # ------------------------------------------------------------ never a secret

    push @bodies, status_res()->content, (prometheus())[0]->content;
    my @leaks = grep { my $s = $_; grep { index($s, $_) >= 0 } keys %secret } @bodies;
    is(scalar @leaks, 0, 'no password in any status answer');

    unlike(substr(EspTest::slurp($errlog), $log_from),
           qr/\[(?:alert|crit|emerg)\]|exited on signal/, 'no alert, no crash');
}

done_testing();

__DATA__

=== TEST 1: esp_status at server level is a config error
--- http_config eval: $::Http
--- config
esp_status;
--- must_die
--- error_log eval
qr/"esp_status" directive is not allowed here in \S+nginx\.conf:\d+/



=== TEST 2: esp_status at http level is a config error
--- http_config eval: $::Http . "esp_status;\n"
--- config
location / { return 204; }
--- must_die
--- error_log eval
qr/"esp_status" directive is not allowed here in \S+nginx\.conf:\d+/



=== TEST 3: esp_status takes no argument
--- http_config eval: $::Http
--- config
location = /s { esp_status on; }
--- must_die
--- error_log eval
qr/invalid number of arguments in "esp_status" directive in \S+nginx\.conf:\d+/



=== TEST 4: esp_status twice in a location
--- http_config eval: $::Http
--- config
location = /s { esp_status; esp_status; }
--- must_die
--- error_log eval
qr/"esp_status" directive is duplicate in \S+nginx\.conf:\d+/



=== TEST 5: esp_status after another content handler
--- http_config eval: $::Http
--- config
location = /s { proxy_pass https://exchange; esp_status; }
--- must_die
--- error_log eval
qr/"esp_status" cannot share a location with another content handler .* in \S+nginx\.conf:\d+/



=== TEST 6: esp_status where esp is on in the same location
--- http_config eval: $::Http
--- config
location = /s { esp contoso; esp_allowed_hosts mail.contoso.com; esp_status; }
--- must_die
--- error_log eval
qr/"esp_status" cannot be used where "esp" is on in the same location.* in \S+nginx\.conf:\d+/



=== TEST 7: the status location is not gated by the server's esp (outside the allowed dirs, no login)
--- http_config eval: $::Http
--- config eval: $::Server
--- request
GET /esp-status
--- error_code: 200
--- response_headers
Content-Type: application/json
Cache-Control: no-store
X-Content-Type-Options: nosniff
--- response_body_like eval
qr/^\{"nginx_version":"\d+\.\d+\.\d+","module_version":"[^"]+",.*"shared_zone":\{"name":"esp",.*\}\}\n\z/s
--- backend: none



=== TEST 8: allow/deny protect the status location
--- http_config eval: $::Http
--- config eval: $::Server
--- request
GET /esp-status-denied
--- error_code: 403
--- response_body_unlike: nginx_version



=== TEST 9: HEAD answers the headers only
--- http_config eval: $::Http
--- config eval: $::Server
--- request
HEAD /esp-status?format=prometheus
--- error_code: 200
--- response_headers_like
Content-Type: ^text/plain; version=0\.0\.4
--- response_body_unlike: \S



=== TEST 10: GET with an action does nothing: 405
--- http_config eval: $::Http
--- config eval: $::Server
--- request
GET /esp-status?action=unblock&domain=contoso&user=bob
--- error_code: 405
--- response_headers
Allow: GET, HEAD, POST
Content-Type: application/json
--- response_body
{"ok":false,"error":"admin actions need POST"}
--- error_log
esp: status request refused: admin actions need POST
--- no_error_log
esp: admin unblock



=== TEST 11: an unknown format is refused
--- http_config eval: $::Http
--- config eval: $::Server
--- request
GET /esp-status?format=xml
--- error_code: 400
--- response_body_like: "error":"unknown format



=== TEST 12: other methods get 405
--- http_config eval: $::Http
--- config eval: $::Server
--- request
PUT /esp-status
action=unblock&domain=contoso&user=bob
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 405
--- response_headers
Allow: GET, HEAD, POST



=== TEST 13: a POST that is not a form is refused
--- http_config eval: $::Http
--- config eval: $::Server
--- request
POST /esp-status
{"action":"unblock","domain":"contoso","user":"bob"}
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_body
{"ok":false,"error":"Content-Type must be application/x-www-form-urlencoded"}
--- no_error_log
esp: admin unblock



=== TEST 14: a POST for an unknown domain gets 404
--- http_config eval: $::Http
--- config eval: $::Server
--- request
POST /esp-status
action=revoke&domain=fabrikam&user=bob
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- error_code: 404
--- response_body
{"ok":false,"error":"unknown domain"}
