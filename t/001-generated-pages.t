# src/ngx_esp_pages.h is generated from templates/*.html by
# templates/embed.sh ("make pages") and checked in: regenerated into a
# temporary file, it must be the checked-in copy byte for byte, so that a
# template edited without "make pages" fails the suite. Also: the
# generator is deterministic, the comparison does catch an edited
# template, and a malformed placeholder is refused. Needs no nginx.

use strict;
use warnings;
use Test::More;

use File::Copy qw(copy);
use File::Path qw(make_path);
use File::Temp qw(tempdir);

my $ROOT = $ENV{ESP_ROOT} || '.';
my $EMBED = "$ROOT/templates/embed.sh";
my $HEADER = "$ROOT/src/ngx_esp_pages.h";
my $TMP = tempdir(CLEANUP => 1);

sub slurp {
    my ($f) = @_;
    open my $fh, '<:raw', $f or return undef;
    local $/;
    return scalar <$fh>;
}

sub spew {
    my ($f, $data) = @_;
    open my $fh, '>:raw', $f or die "$f: $!";
    print $fh $data;
    close $fh or die "$f: $!";
}

# runs a command; returns (exit status, stdout and stderr together)
sub run {
    my (%env, @cmd);
    %env = %{ shift() } if ref $_[0];
    @cmd = @_;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        @ENV{ keys %env } = values %env;
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', "$TMP/cmd.out";
        open STDERR, '>&', \*STDOUT;
        exec @cmd or exit 127;
    }
    waitpid $pid, 0;
    return ($? >> 8, slurp("$TMP/cmd.out") // '');
}

# where two texts part: "line N: <a> / <b>", or '' if they do not
sub first_difference {
    my ($a, $b) = @_;
    return '' if $a eq $b;
    my @a = split /\n/, $a, -1;
    my @b = split /\n/, $b, -1;
    for my $i (0 .. ($#a > $#b ? $#a : $#b)) {
        my ($x, $y) = ($a[$i] // '(end)', $b[$i] // '(end)');
        return "line " . ($i + 1) . ":\n  checked in:  $x\n  regenerated: $y"
            if $x ne $y;
    }
    return 'the same lines, other line ends';
}

# a copy of what the generator reads and writes, to change at will
sub copy_tree {
    my ($dir) = @_;
    make_path("$dir/templates", "$dir/src");
    copy($EMBED, "$dir/templates/embed.sh") or die "copy: $!";
    chmod 0755, "$dir/templates/embed.sh";
    for my $f (glob "$ROOT/templates/*.html") {
        (my $base = $f) =~ s{.*/}{};
        copy($f, "$dir/templates/$base") or die "copy: $!";
    }
    copy($HEADER, "$dir/src/ngx_esp_pages.h") or die "copy: $!";
    return $dir;
}

my $checked_in = slurp($HEADER);
ok(defined $checked_in && length $checked_in, 'src/ngx_esp_pages.h is there')
    or BAIL_OUT("no $HEADER");

# ------------------------------------------------- the checked-in copy

my ($rc, $out) = run($EMBED, '--output', "$TMP/pages.h");
is($rc, 0, 'templates/embed.sh regenerates the header into a temporary file')
    or diag($out);
my $fresh = slurp("$TMP/pages.h") // '';

my $diff = first_difference($checked_in, $fresh);
ok($diff eq '', 'the checked-in src/ngx_esp_pages.h is what templates/*.html give')
    or diag("src/ngx_esp_pages.h is stale: run \"make pages\" and commit it"
            . " with the templates; first difference at $diff");

for my $f (glob "$ROOT/templates/*.html") {
    (my $name = $f) =~ s{.*/(.*)\.html\z}{$1};
    like($checked_in, qr/^static u_char  ngx_esp_page_\Q$name\E\[\] =$/m,
         "templates/$name.html is embedded as ngx_esp_page_$name");
}

ok($checked_in !~ /[^\x00-\x7f]/, 'the header is pure ASCII');
is(scalar(grep { length > 80 } split /\n/, $checked_in), 0,
   '... no line longer than 80 columns');

($rc, $out) = run({ LC_ALL => 'C.UTF-8', LANG => 'de_DE.UTF-8',
                    TMPDIR => $TMP },
                  $EMBED, '--output', "$TMP/again.h");
is($rc, 0, 'regenerated again, in another locale') or diag($out);
is(slurp("$TMP/again.h") // '', $fresh, '... the same bytes: the generator is deterministic');

($rc, $out) = run($EMBED, '--check');
is($rc, 0, 'templates/embed.sh --check agrees') or diag($out);

($rc, $out) = run('make', '-s', '-C', $ROOT, '-n', 'pages');
is($rc, 0, 'make has a "pages" rule') or diag($out);
like($out, qr{^templates/embed\.sh\s*$}m, '... that runs templates/embed.sh');

# ------------------------------------------------ a stale copy is caught

{
    my $dir = copy_tree("$TMP/stale");
    my $login = "$dir/templates/login.html";
    my $html = slurp($login);
    ok($html =~ s{</title>}{</title>\n<!-- edited, not embedded -->}, 'a template is edited');
    spew($login, $html);

    ($rc, $out) = run("$dir/templates/embed.sh", '--output', "$TMP/stale.h");
    is($rc, 0, '... regenerated') or diag($out);
    my $stale_fresh = slurp("$TMP/stale.h") // '';
    isnt(first_difference($checked_in, $stale_fresh), '',
         '... the comparison above finds the header stale');
    like($stale_fresh, qr/edited, not embedded/, '... and the new header has the edit');

    ($rc, $out) = run("$dir/templates/embed.sh", '--check');
    is($rc, 1, '... --check exits 1');
    like($out, qr/src\/ngx_esp_pages\.h is out of date: run templates\/embed\.sh/,
         '... and says what to run');

    ($rc, $out) = run("$dir/templates/embed.sh");
    is($rc, 0, '... rewritten') or diag($out);
    like(slurp("$dir/src/ngx_esp_pages.h") // '', qr/edited, not embedded/, '... with the edit');
    ($rc, $out) = run("$dir/templates/embed.sh", '--check');
    is($rc, 0, '... and up to date again') or diag($out);
}

# ----------------------------------------------------------- bad input

{
    my $dir = copy_tree("$TMP/bad");
    my $logout = "$dir/templates/logout.html";
    spew($logout, slurp($logout) . "<p>{{Not A Name}}</p>\n");

    ($rc, $out) = run("$dir/templates/embed.sh", '--output', "$TMP/bad.h");
    is($rc, 1, 'a malformed placeholder: exit 1');
    like($out, qr/templates\/logout\.html:\d+: malformed placeholder/,
         '... named with file:line');
    is(slurp("$dir/src/ngx_esp_pages.h"), $checked_in, '... and the header is left alone');

    ($rc, $out) = run("$dir/templates/embed.sh", '--output');
    is($rc, 2, '--output without a file: exit 2');
    ($rc, $out) = run("$dir/templates/embed.sh", '--frobnicate');
    is($rc, 2, 'an unknown argument: exit 2');
    like($out, qr/unknown argument '--frobnicate'/, '... named');
}

done_testing();
