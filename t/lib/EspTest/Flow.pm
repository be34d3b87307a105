package EspTest::Flow;

# Helpers for multi-step flow tests (login forms, redirects, cookies), on top
# of EspTest's ua(). Plain functions; nothing here makes a test assertion.
#
#   use EspTest;
#   use EspTest::Flow;
#   my $ua = ua();
#   my ($res, @hops) = follow($ua, $ua->get(url('/owa/')));
#   $res = submit_form($ua, $res, username => $u, password => $p);

use strict;
use warnings;

use Exporter qw(import);
use HTTP::Request::Common qw(GET);
use IPC::Open2 qw(open2);
use MIME::Base64 qw(encode_base64);
use URI;
use EspTest ();

our @EXPORT = qw(follow submit_form form_of cookies basic_auth sso_domain_config
                 start_fake_dcs);

# follow($ua, $res, max => 10): follows 3xx redirects one by one (ua() does
# not), with the same jar. Returns the last response, then every response on
# the way (the first one included).
sub follow {
    my ($ua, $res, %o) = @_;
    my $max = $o{max} // 10;
    my @hops = ($res);
    while ($res->is_redirect && $max-- > 0) {
        my $loc = $res->header('Location') // last;
        my $next = URI->new_abs($loc, $res->request->uri);
        $res = $ua->request(GET($next));
        push @hops, $res;
    }
    return ($res, @hops);
}

# form_of($res, $selector): the HTML::Form of a response: the first form, or
# the one whose id, name or action matches $selector (a string or qr//).
sub form_of {
    my ($res, $selector) = @_;
    eval { require HTML::Form; 1 }
        or die "EspTest::Flow: HTML::Form is missing (apt-get install libhtml-form-perl)\n";
    my @forms = HTML::Form->parse($res);
    return $forms[0] unless defined $selector;
    for my $f (@forms) {
        for my $v (grep { defined } $f->attr('id'), $f->attr('name'), $f->action . '') {
            return $f if ref $selector ? $v =~ $selector : $v eq $selector;
        }
    }
    return undef;
}

# submit_form($ua, $res, field => value, ...): fills the (first) form of
# $res, keeping its hidden fields, and submits it. A field that the form does
# not have is added. Use form => $selector to pick another form.
sub submit_form {
    my ($ua, $res, %fields) = @_;
    my $selector = delete $fields{form};
    my $form = form_of($res, $selector)
        or die "EspTest::Flow: no form in the response to " . $res->request->uri . "\n";
    for my $name (sort keys %fields) {
        if ($form->find_input($name)) {
            $form->find_input($name)->readonly(0);
            $form->value($name, $fields{$name});
        } else {
            $form->push_input(hidden => { name => $name, value => $fields{$name} });
        }
    }
    return $ua->request($form->click);
}

# cookies($ua): { name => value } of every cookie in the jar.
sub cookies {
    my ($ua) = @_;
    my %c;
    $ua->cookie_jar->scan(sub { $c{ $_[1] } = $_[2] });
    return \%c;
}

# basic_auth($user, $password): an Authorization header value.
sub basic_auth {
    my ($user, $password) = @_;
    return 'Basic ' . encode_base64("$user:$password", '');
}

# sso_domain_config(name => 'contoso', directive => value, ...): an
# esp_sso_domain block for the AD fixture, with the directive names of
# DESIGN.md. A value undef drops the directive, an array ref repeats it.
my @SSO_ORDER = qw(ldap_server ldap_ca_certificate ldap_bind_dn
                   ldap_bind_password_file ldap_base_dn ldap_timeout
                   logon_format logon_domain netbios_domain);

sub sso_domain_config {
    my (%o) = @_;
    my $name = delete $o{name} // 'contoso';
    my $env = \&EspTest::ad_env;
    my %d = (
        ldap_server => [map { "ldaps://" . ($env->($_) // "AD-NOT-SET-$_") . ":636" }
                        qw(AD_DC1 AD_DC2)],
        ldap_ca_certificate => $env->('AD_CA'),
        ldap_bind_dn => $env->('AD_BIND_DN'),
        ldap_bind_password_file => $env->('AD_BIND_PASSWORD_FILE'),
        ldap_base_dn => '"' . ($env->('AD_BASE_DN') // '') . '"',
        ldap_timeout => '5s',
        logon_format => 'principalname',
        logon_domain => lc($env->('AD_REALM') // 'contoso.local'),
        netbios_domain => $env->('AD_NETBIOS'),
    );
    %d = (%d, %o);
    my %known = map { $_ => 1 } @SSO_ORDER;
    my $text = "esp_sso_domain $name {\n";
    for my $k (@SSO_ORDER, sort grep { !$known{$_} } keys %d) {
        next unless defined $d{$k};
        $text .= "    $k $_;\n" for ref $d{$k} ? @{ $d{$k} } : $d{$k};
    }
    return "$text}\n";
}

# start_fake_dcs($base): t/fixtures/fake-dc.py, misbehaving "domain
# controllers" on 127.0.0.4, one LDAPS port per behaviour from $base (see
# its header), with a certificate of the test PKI's other CA.  Returns the
# CA file for their ldap_ca_certificate (it trusts the real DCs too), or
# undef if they did not start.  They stop when the test ends.
my @FAKE_DCS;

sub start_fake_dcs {
    my ($base) = @_;
    my $run = $ENV{ESP_RUN} || '/tmp/esp-run';
    my $root = $ENV{ESP_ROOT} || '.';
    my $ca = EspTest::nginx_prefix() . '/conf/both-ca.pem';
    EspTest::spurt($ca, EspTest::slurp("$run/pki/ca.pem") . EspTest::slurp("$run/pki/other-ca.pem"));
    # it exits when its stdin closes, even if the test dies
    my $pid = open2(my $out, my $in, '/usr/bin/python3', "$root/t/fixtures/fake-dc.py",
                    "$run/pki/rogue.pem", "$run/pki/rogue.key", '127.0.0.4', $base);
    push @FAKE_DCS, [$pid, $in];
    my $ready = <$out> // '';
    return $ready eq "ready\n" ? $ca : undef;
}

END {
    local $?;
    for my $f (@FAKE_DCS) {
        close $f->[1];
        kill 'TERM', $f->[0];
        waitpid $f->[0], 0;
    }
}

1;
