package EspTest::Mfa;

# The second factor's test helpers (t/048-mfa-totp.t, t/049-mfa-enrol.t):
# users of a test file's own on dc1 (t/fixtures/ad/mfa-user.py; the
# fixture's DCs do not replicate, so those files use dc1 alone), deleted
# when the file ends; TOTP codes (RFC 6238); the TOTP key file.
#
#   my %pw = mfa_users(qw(u1 u2));      # created, passwords masked
#   mfa_ad(set => 'u1', 'carLicense', $value); mfa_ad(get => 'u1', 'carLicense')
#   totp($secret_bytes, step()); base32_decode('MZXW6...')
#   totp_key_file()                     # $ESP_RUN/keys/totp.key, made once

use strict;
use warnings;
use Digest::SHA qw(hmac_sha1);
use Exporter qw(import);
use EspTest ();

our @EXPORT = qw(mfa_users mfa_ad totp step base32_decode totp_key_file);

my $RUN = $ENV{ESP_RUN} || '/tmp/esp-run';
my $ROOT = $ENV{ESP_ROOT} || '.';
my $SMB = "$RUN/ad/dc1/etc/smb.conf";
my $TOOL = "$ROOT/t/fixtures/ad/mfa-user.py";
my @CREATED;

sub mfa_ad {
    my (@args) = @_;
    my $out = `/usr/bin/python3 $TOOL $SMB @args 2>&1`;
    die "mfa-user.py @args[0,1]: $out" if $?;
    chomp $out;
    return $out;
}

sub mfa_users {
    my (@names) = @_;
    my %pw;
    for my $u (@names) {
        $pw{$u} = 'Mfa-' . unpack('H*', join '', map { chr int rand 256 } 1 .. 8) . '-1!';
        EspTest::add_secret($pw{$u});
        mfa_ad(create => $u, $pw{$u});
        push @CREATED, $u;
    }
    return %pw;
}

my $OWNER = $$;

END {
    # the DCs are shared by every test file: no user of ours stays behind
    # (once, by the test itself, not a child it forked; its status kept)
    local $?;
    if ($$ == $OWNER) {
        system('/usr/bin/python3', $TOOL, $SMB, 'delete', $_) for @CREATED;
    }
}

sub totp {
    my ($secret, $step) = @_;
    my $mac = hmac_sha1(pack('NN', int($step / 2**32), $step % 2**32), $secret);
    my $off = ord(substr($mac, -1)) & 0x0f;
    my $bin = unpack('N', substr($mac, $off, 4)) & 0x7fffffff;
    return sprintf('%06d', $bin % 1000000);
}

sub step { return int(time() / 30) }

sub base32_decode {
    my ($s) = @_;
    my %v = map { (('A' .. 'Z', '2' .. '7')[$_] => $_) } 0 .. 31;
    my $bits = join '', map { sprintf('%05b', $v{$_} // die "not base32: $_") } split //, uc $s;
    $bits = substr($bits, 0, length($bits) - length($bits) % 8);
    return pack('B*', $bits);
}

sub totp_key_file {
    my $f = "$RUN/keys/totp.key";
    if (!-s $f) {
        my $umask = umask 077;
        open my $r, '<:raw', '/dev/urandom' or die $!;
        read($r, my $b, 32) == 32 or die 'urandom';
        EspTest::spurt($f, unpack('H*', $b) . "\n");
        umask $umask;
    }
    chmod 0600, $f;
    return $f;
}

1;
