# The fuzz targets (fuzz/, mk/fuzz.mk) build, replay their seed corpora
# and every saved regression input without a crash, a sanitizer report or a
# broken property, and survive FUZZ_SMOKE_SECONDS (10) of fuzzing each:
# "make fuzz-smoke", one check per target. Needs clang with libFuzzer and
# lld (Debian: clang libclang-rt-14-dev llvm lld), not the module nor the
# fixtures. About 2 minutes on 2 cores; ESP_FUZZ_SMOKE=0 skips it.

use strict;
use warnings;
use lib 't/lib';
use EspTest;

use File::Temp qw(tempdir);

my $ROOT = $ENV{ESP_ROOT} || '.';

Test::More::plan(skip_all => 'ESP_FUZZ_SMOKE=0')
    if ($ENV{ESP_FUZZ_SMOKE} // '') eq '0';

sub run_cmd {
    my (@cmd) = @_;
    my $out = '';
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if (!$pid) {
        open STDERR, '>&', \*STDOUT;
        open STDIN, '<', '/dev/null';
        exec @cmd or exit 127;
    }
    local $/;
    $out = <$fh> // '';
    close $fh;
    return ($? >> 8, $out);
}

sub tail_of {
    my ($text) = @_;
    my @lines = split /\n/, $text;
    splice @lines, 0, @lines - 40 if @lines > 40;
    return join "\n", @lines;
}

# clang, its libFuzzer runtime and lld, or a clear skip
my $cc = $ENV{FUZZ_CC} || 'clang';
my $tmp = tempdir(CLEANUP => 1);
open my $src, '>', "$tmp/t.c" or die "$tmp/t.c: $!";
print $src "#include <stddef.h>\n#include <stdint.h>\n"
    . "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)"
    . " { (void) d; (void) n; return 0; }\n";
close $src;
my ($rc, $out) = run_cmd($cc, '-fsanitize=fuzzer,address,undefined',
                         '-fuse-ld=lld', "$tmp/t.c", '-o', "$tmp/t");
Test::More::plan(skip_all => "no clang with libFuzzer and lld ($cc: "
    . (split /\n/, $out || 'not found')[0]
    . "); Debian: apt-get install clang libclang-rt-14-dev llvm lld")
    if $rc != 0;

my @make = ('make', '-s', '-C', $ROOT);

# "make -jN test" passes its job server down; a make started here cannot
# use it and says so on stdout, in the middle of fuzz-list's answer. The
# rest of MAKEFLAGS (NGINX_SRC=...) is kept.
$ENV{MAKEFLAGS} =~ s/(?:^|\s)(?:-j\d*|--jobserver-\S+)(?=\s|$)//g
    if defined $ENV{MAKEFLAGS};

($rc, $out) = run_cmd(@make, 'fuzz-list');
my @targets = split ' ', $out;
ok($rc == 0 && @targets >= 9, 'make fuzz-list names the targets')
    or diag($out);

($rc, $out) = run_cmd(@make, 'fuzz-build');
ok($rc == 0, 'make fuzz-build: every target builds (warnings are errors)')
    or diag(tail_of($out));

SKIP: {
    skip 'the targets did not build', scalar @targets if $rc != 0;

    for my $t (@targets) {
        ($rc, $out) = run_cmd(@make, "fuzz-smoke-$t");
        ok($rc == 0, "fuzz target $t: seeds, regressions and "
            . ($ENV{FUZZ_SMOKE_SECONDS} || 10) . " s of fuzzing pass")
            or diag(tail_of($out));
    }
}

done_testing();
