# Perl driver of the wrapper kernel (protocol: kernelgate_wrapper/sessions.py).
# Cells run through Lexical::Persistence, so `my` variables persist between cells, as do
# package variables and subs.  Source and messages are bytes, as in a Perl file without
# `use utf8`.
use strict;
use warnings;
use JSON::PP ();
use Lexical::Persistence;

my $json = JSON::PP->new->canonical;
my $lp = Lexical::Persistence->new;
open(my $commands, '<&=', delete $ENV{KERNELGATE_COMMAND_FD}) or die "command pipe: $!";
open(my $events, '>&=', delete $ENV{KERNELGATE_EVENT_FD}) or die "event pipe: $!";
$events->autoflush(1);
STDOUT->autoflush(1);
STDERR->autoflush(1);
$SIG{INT} = 'IGNORE';    # between cells: nothing to stop

while (my $line = <$commands>) {
    $. = 0;    # messages say "at In[n] line 1.", not also "<$commands> line 6."
    my $request = $json->decode($line);
    my $reply;
    {
        local $SIG{INT} = sub { die "KeyboardInterrupt\n" };
        my $ok = eval { $lp->do(qq{\n#line 1 "$request->{label}"\n$request->{code}}); 1 };
        if ($ok) {
            $reply = { status => 'ok', data => undef };
        }
        else {
            my $err = $@;
            my $ename = ref($err) || 'Died';
            my $message = ref($err) ? "$err" : $err;
            chomp $message;
            $reply = { status => 'error', ename => $ename, evalue => $message,
                       traceback => [ split /\n/, "$ename: $message" ] };
        }
    }
    print {$events} $json->encode($reply), "\n";
}
