package EspTest::Lockout;

# Helpers for the lockout tests: Active Directory's own count of wrong
# passwords, and what fail2ban makes of log lines.  Nothing here makes a
# test assertion.

use strict;
use warnings;

use Exporter qw(import);
use EspTest ();

our @EXPORT = qw(ad_bad_pwd_count f2b_ips);

# ad_bad_pwd_count($sAMAccountName): the user's badPwdCount summed over both
# DCs (they do not replicate it), as the fixture's lockout policy makes
# Samba count it; "error: ..." if a DC did not answer.
sub ad_bad_pwd_count {
    my ($sam) = @_;
    my $ad_sh = ($ENV{ESP_ROOT} || '.') . '/t/fixtures/ad.sh';
    my $out = `$ad_sh badpwd $sam 2>&1`;
    my ($n, $seen) = (0, 0);
    while ($out =~ /^dc\d (\d+)$/mg) {
        $n += $1;
        $seen++;
    }
    return $seen == 2 ? $n : "error: $out";
}

# f2b_ips($mode, @lines): the addresses fail2ban-regex picks from these
# error log lines with contrib/fail2ban's filter in that mode, or undef
# without fail2ban-regex.
sub f2b_ips {
    my ($mode, @lines) = @_;
    my ($tool) = grep { -x } '/usr/bin/fail2ban-regex', '/usr/local/bin/fail2ban-regex';
    return undef unless $tool;
    my $f = ($ENV{ESP_RUN} || '/tmp') . "/f2b-$$.log";
    EspTest::spurt($f, join('', map { "$_\n" } @lines));
    my $filter = ($ENV{ESP_ROOT} || '.') . '/contrib/fail2ban/filter.d/nginx-esp.conf';
    open(my $fh, '-|', $tool, '-r', '-o', 'ip', $f, "$filter\[mode=$mode\]") or return undef;
    my @ips = grep { /\S/ } map { s/\s+//gr } <$fh>;
    close $fh;
    unlink $f;
    return \@ips;
}

1;
