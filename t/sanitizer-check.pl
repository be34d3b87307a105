#!/usr/bin/perl
# Reads the reports of "make test-asan" or "make test-valgrind" and fails
# (exit 1) on what the module is responsible for:
#
#   perl t/sanitizer-check.pl asan DIR       (asan.PID, ubsan.PID files)
#   perl t/sanitizer-check.pl valgrind DIR   (vg.PID.log files)
#
# - asan: any AddressSanitizer error (overflow, use after free...), any
#   UBSan report, and any leak with a frame of the module;
# - valgrind: any memcheck error (invalid read or write, uninitialised
#   value, bad free...) and any definite leak, with a frame of the module.
#
# A frame of the module: ngx_exchange_esp_module(.so|.c), src/ngx_esp_*,
# a function ngx_esp_*. Leaks without one (nginx keeps its cycle, event
# arrays and upstream SSL sessions until the process ends) are counted
# and listed, not failed: t/lsan.supp and t/valgrind.supp silence the
# known ones.
use strict;
use warnings;

my ($mode, $dir) = @ARGV;
die "usage: $0 asan|valgrind DIR\n"
    unless $mode && $dir && $mode =~ /^(asan|valgrind)$/;

my $ours = qr{ngx_exchange_esp_module|/src/ngx_esp_|\bngx_esp_\w+};
my (@fail, @other);
my $files = 0;

sub blocks {
    my ($file, $strip) = @_;
    open my $fh, '<', $file or die "$file: $!\n";
    my (@b, $cur);
    while (my $line = <$fh>) {
        $line =~ s/^==\d+== ?// if $strip;
        if ($line =~ /^\s*$/ || $line =~ /^={20,}/) {
            push @b, $cur if defined $cur;
            undef $cur;
            next;
        }
        $cur .= $line;
    }
    push @b, $cur if defined $cur;
    return @b;
}

if ($mode eq 'asan') {
    for my $file (sort glob "$dir/asan.* $dir/ubsan.*") {
        next unless -s $file;
        $files++;
        for my $b (blocks($file, 1)) {
            if ($b =~ /runtime error:/ || $b =~ /ERROR: AddressSanitizer/
                || $b =~ /ERROR: UndefinedBehaviorSanitizer/)
            {
                push @fail, "--- $file\n$b";
            } elsif ($b =~ /^(Direct|Indirect) leak of/) {
                if ($b =~ $ours) {
                    push @fail, "--- $file\n$b";
                } else {
                    push @other, "--- $file\n$b";
                }
            }
        }
    }
} else {
    my @logs = sort glob "$dir/vg.*.log";
    if (!@logs) {
        print "sanitizer-check: no valgrind logs in $dir\n";
        exit 1;
    }
    for my $file (@logs) {
        $files++;
        for my $b (blocks($file, 1)) {
            my $leak = $b =~ /are definitely lost in loss record/;
            next unless $leak || $b =~ /^(?:Invalid (?:read|write|free)|Conditional jump|Use of uninitialised|Syscall param|Mismatched free|Source and destination overlap|Argument '\w+' of function)/m;
            if ($b =~ $ours) {
                push @fail, "--- $file\n$b";
            } else {
                push @other, "--- $file\n$b";
            }
        }
    }
}

print "sanitizer-check: $mode: $files report files in $dir\n";

if (@other) {
    my %seen;
    for my $o (@other) {
        my ($what) = $o =~ /\n(.*)\n/;
        my @fn = $o =~ /#\d+ 0x\w+ in ((?!__interceptor)\w+)|by 0x\w+: (\w+)/g;
        @fn = grep { defined } @fn;
        splice @fn, 4 if @fn > 4;
        $what =~ s/^.*?(Direct leak|Indirect leak|definitely lost|Invalid \w+|Conditional jump|Use of uninitialised).*/$1/;
        $seen{"$what < @fn"}++;
    }
    print "sanitizer-check: ", scalar(@other),
          " report(s) without a frame of the module (not failing):\n";
    printf "  %4d  %s\n", $seen{$_}, $_ for sort { $seen{$b} <=> $seen{$a} } keys %seen;
}

if (@fail) {
    print "sanitizer-check: FAILED: ", scalar(@fail),
          " report(s) that fail the run:\n";
    print "$_\n" for @fail;
    exit 1;
}

print "sanitizer-check: nothing of the module\n";
exit 0;
