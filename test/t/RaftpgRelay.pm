# test/t/RaftpgRelay.pm
#
# A TCP relay for every ordered pair of servers, so that tests can cut the
# network between two servers in one direction or both: real message loss,
# not a skipped code path.
#
# Each server reaches every other through its own relay port: the
# conninfo in the cluster's configuration is "service=<name>", and each
# server runs with its own PGSERVICEFILE, mapping <name> to the relay of
# the pair (this server -> <name>).  The relays run in one child process
# that forwards bytes between 127.0.0.1 ports and the servers' unix
# sockets.  cut(A, B) closes A->B's connections and refuses new ones;
# heal() lets everything through again.
#
#   my $relay = RaftpgRelay->new(@nodes);     # before the nodes start
#   $relay->env_for($node)                    # PGSERVICEFILE for $node
#   $relay->cut('node1', 'node2'); $relay->heal; $relay->stop;

package RaftpgRelay;

use strict;
use warnings;

use IO::Select;
use IO::Socket::INET;
use IO::Socket::UNIX;
use PostgreSQL::Test::Utils;

sub new
{
	my ($class, @nodes) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my $self = bless { dir => $dir, nodes => [@nodes], listeners => {} }, $class;

	# one listening socket per ordered pair, bound now so the ports are known
	for my $src (@nodes)
	{
		open my $svc, '>', "$dir/services-" . $src->name or die $!;
		for my $dst (@nodes)
		{
			next if $src == $dst;
			my $l = IO::Socket::INET->new(
				LocalAddr => '127.0.0.1',
				LocalPort => 0,
				Listen => 64,
				ReuseAddr => 1) or die "relay listen: $!";
			$self->{listeners}{ $src->name . '>' . $dst->name } = $l;
			print $svc "[" . $dst->name . "]\nhost=127.0.0.1\nport=" . $l->sockport
			  . "\ndbname=postgres\n\n";
		}
		close $svc;
	}
	$self->_write_cuts({});

	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		$self->_run;
		exit 0;
	}
	$_->close for values %{ $self->{listeners} };
	$self->{pid} = $pid;
	return $self;
}

# the PGSERVICEFILE a server must run with
sub env_for
{
	my ($self, $node) = @_;
	return "$self->{dir}/services-" . $node->name;
}

sub _write_cuts
{
	my ($self, $cuts) = @_;
	open my $f, '>', "$self->{dir}/cuts.tmp" or die $!;
	print $f "$_\n" for sort keys %$cuts;
	close $f;
	rename "$self->{dir}/cuts.tmp", "$self->{dir}/cuts" or die $!;
	# wait until the relay has seen it
	my $gen = ++$self->{gen};
	open $f, '>', "$self->{dir}/gen.tmp" or die $!;
	print $f "$gen\n";
	close $f;
	rename "$self->{dir}/gen.tmp", "$self->{dir}/gen" or die $!;
	if ($self->{pid})
	{
		my $deadline = time() + 30;
		while (time() < $deadline)
		{
			if (open my $a, '<', "$self->{dir}/ack")
			{
				my $seen = <$a>;
				close $a;
				return if defined $seen && $seen == $gen;
			}
			select(undef, undef, undef, 0.01);
		}
		die 'relay did not acknowledge the cut';
	}
	return;
}

# cut($a, $b): drop $a -> $b;  cut($a, $b, 'both'): and $b -> $a
sub cut
{
	my ($self, $a, $b, $both) = @_;
	$self->{cuts}{"$a>$b"} = 1;
	$self->{cuts}{"$b>$a"} = 1 if $both;
	$self->_write_cuts($self->{cuts});
	return;
}

# isolate the group @$side from everybody else, both ways
sub partition
{
	my ($self, @side) = @_;
	my %in = map { $_ => 1 } @side;
	for my $x (map { $_->name } @{ $self->{nodes} })
	{
		for my $y (map { $_->name } @{ $self->{nodes} })
		{
			next if $x eq $y;
			$self->{cuts}{"$x>$y"} = 1 if ($in{$x} xor $in{$y});
		}
	}
	$self->_write_cuts($self->{cuts});
	return;
}

sub heal
{
	my ($self) = @_;
	$self->{cuts} = {};
	$self->_write_cuts({});
	return;
}

sub stop
{
	my ($self) = @_;
	if ($self->{pid})
	{
		kill 'TERM', $self->{pid};
		waitpid($self->{pid}, 0);
		$self->{pid} = undef;
	}
	return;
}

sub DESTROY
{
	my ($self) = @_;
	$self->stop;
	return;
}

# ---- the relay process
sub _run
{
	my ($self) = @_;
	my %node = map { $_->name => $_ } @{ $self->{nodes} };
	my $sel = IO::Select->new;
	my %pair_of_listener;
	my %peer;			# socket -> the other end
	my %pair;			# socket -> "src>dst"
	my %cuts;
	my $gen = 0;

	local $SIG{TERM} = sub { exit 0 };
	for my $p (keys %{ $self->{listeners} })
	{
		my $l = $self->{listeners}{$p};
		$pair_of_listener{ fileno($l) } = $p;
		$sel->add($l);
	}

	my $close = sub {
		my ($s) = @_;
		my $o = delete $peer{$s};
		for my $x ($s, $o)
		{
			next unless $x;
			$sel->remove($x);
			delete $pair{$x};
			delete $peer{$x};
			$x->close;
		}
	};

	while (1)
	{
		# pick up a new set of cuts
		if (open my $g, '<', "$self->{dir}/gen")
		{
			my $now = <$g>;
			close $g;
			if (defined $now && $now != $gen)
			{
				%cuts = ();
				if (open my $c, '<', "$self->{dir}/cuts")
				{
					while (my $line = <$c>)
					{
						chomp $line;
						$cuts{$line} = 1 if $line ne '';
					}
					close $c;
				}
				for my $s (keys %pair)
				{
					my ($sock) = grep { "$_" eq $s } $sel->handles;
					$close->($sock) if $sock && $cuts{ $pair{$s} // '' };
				}
				$gen = $now;
				open my $a, '>', "$self->{dir}/ack.tmp";
				print $a "$gen\n";
				close $a;
				rename "$self->{dir}/ack.tmp", "$self->{dir}/ack";
			}
		}

		for my $s ($sel->can_read(0.02))
		{
			if (my $p = $pair_of_listener{ fileno($s) // -1 })
			{
				my $c = $s->accept or next;
				if ($cuts{$p})
				{
					$c->close;
					next;
				}
				my (undef, $dst) = split />/, $p;
				my $n = $node{$dst};
				my $up = IO::Socket::UNIX->new(
					Peer => $n->host . '/.s.PGSQL.' . $n->port);
				if (!$up)
				{
					$c->close;
					next;
				}
				$peer{$c} = $up;
				$peer{$up} = $c;
				$pair{$c} = $p;
				$pair{$up} = $p;
				$sel->add($c, $up);
				next;
			}
			my $o = $peer{$s} or next;
			my $buf;
			my $r = sysread($s, $buf, 65536);
			if (!$r)
			{
				$close->($s);
				next;
			}
			if ($cuts{ $pair{$s} // '' })
			{
				$close->($s);
				next;
			}
			my $off = 0;
			while ($off < $r)
			{
				my $w = syswrite($o, $buf, $r - $off, $off);
				if (!defined $w)
				{
					$close->($s);
					last;
				}
				$off += $w;
			}
		}
	}
}

1;
