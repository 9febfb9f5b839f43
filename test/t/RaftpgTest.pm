# test/t/RaftpgTest.pm
#
# Helpers shared by raftpg's TAP tests: start servers that preload raftpg,
# each with its own node name, and wait for their node workers.  Built on
# PostgreSQL::Test::Cluster, so servers listen on unix sockets in a private
# temporary directory (or 127.0.0.1 where unix sockets are unavailable),
# never on a public address.
#
#   my @nodes = RaftpgTest::start_nodes(3);   # node1 .. node3, extension created
#   my $pid = RaftpgTest::wait_for_worker($nodes[0]);
#   RaftpgTest::stop_nodes(@nodes);

package RaftpgTest;

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# Start $n servers named node1 .. node$n with raftpg preloaded, create the
# extension on each and return the PostgreSQL::Test::Cluster objects.
# %opts: extra_conf => text appended to every postgresql.conf;
#        create_extension => 0 to leave the extension out.
sub start_nodes
{
	my ($n, %opts) = @_;
	my @nodes;

	for my $i (1 .. $n)
	{
		my $name = "node$i";
		my $node = PostgreSQL::Test::Cluster->new($name);
		$node->init;
		$node->append_conf(
			'postgresql.conf', qq{
shared_preload_libraries = 'raftpg'
raftpg.node_name = '$name'
});
		$node->append_conf('postgresql.conf', $opts{extra_conf})
		  if defined $opts{extra_conf};
		$node->start;
		push @nodes, $node;
	}

	if (!defined $opts{create_extension} || $opts{create_extension})
	{
		$_->safe_psql('postgres', 'CREATE EXTENSION raftpg') for @nodes;
	}

	return @nodes;
}

# Wait until raftpg.status() on $node shows a running node worker other than
# $not_pid (if given); return its pid.  Dies on timeout.
sub wait_for_worker
{
	my ($node, $not_pid) = @_;
	my $cond = 'worker_pid IS NOT NULL';
	$cond .= " AND worker_pid <> $not_pid" if defined $not_pid;

	$node->poll_query_until('postgres',
		"SELECT $cond FROM raftpg.status()")
	  or die $node->name . ": raftpg node worker did not start";

	return $node->safe_psql('postgres',
		'SELECT worker_pid FROM raftpg.status()');
}

# Stop every node given, fast.
sub stop_nodes
{
	my (@nodes) = @_;
	$_->stop('fast') for @nodes;
	return;
}

1;
