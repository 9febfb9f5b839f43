# test/t/001_foundation.pl
#
# The foundation on several servers: raftpg loads through
# shared_preload_libraries, each server runs its node worker under its own
# node name, the worker's pid in shared memory is the live process (and is
# withdrawn when the process goes), and without shared_preload_libraries
# CREATE EXTENSION refuses clearly.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use RaftpgTest;

my @nodes = RaftpgTest::start_nodes(3);

for my $node (@nodes)
{
	my $name = $node->name;
	my $pid = RaftpgTest::wait_for_worker($node);

	my $status = $node->safe_psql('postgres',
		q{SELECT node_name, role, voter, term, coalesce(leader_name, '-'),
				 commit_index, applied_index
		  FROM raftpg.status()});
	is($status, "$name|unconfigured|f|0|-|0|0",
		"$name: status() shows its own name, unconfigured");

	is( $node->safe_psql(
			'postgres',
			"SELECT backend_type FROM pg_stat_activity WHERE pid = $pid"),
		'raftpg node',
		"$name: worker_pid $pid is the raftpg node backend");

	ok(kill(0, $pid), "$name: worker process is alive");

	ok( $node->wait_for_log(
			qr/raftpg node worker started for node "$name" in database "postgres"/
		),
		"$name: worker logged its start");
}

# A worker that exits withdraws its pid; the postmaster starts a new one.
{
	my $node = $nodes[0];
	my $old = $node->safe_psql('postgres',
		'SELECT worker_pid FROM raftpg.status()');
	$node->safe_psql('postgres', "SELECT pg_terminate_backend($old)");

	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	select(undef, undef, undef, 0.1) while kill(0, $old) && time() < $deadline;
	ok(!kill(0, $old), 'terminated worker exited');

	isnt(
		$node->safe_psql(
			'postgres', 'SELECT coalesce(worker_pid, 0) FROM raftpg.status()'),
		$old,
		'status() no longer shows the exited worker');

	my $new = RaftpgTest::wait_for_worker($node, $old);
	is( $node->safe_psql(
			'postgres',
			"SELECT backend_type FROM pg_stat_activity WHERE pid = $new"),
		'raftpg node',
		'postmaster restarted the node worker');
}

RaftpgTest::stop_nodes(@nodes);

# Without shared_preload_libraries, CREATE EXTENSION fails and leaves nothing.
my $plain = PostgreSQL::Test::Cluster->new('plain');
$plain->init;
$plain->start;

my ($ret, $stdout, $stderr) = $plain->psql(
	'postgres', q{CREATE EXTENSION raftpg;
\echo :LAST_ERROR_SQLSTATE
\echo :LAST_ERROR_MESSAGE},
	on_error_stop => 0);
is( $stdout,
	"55000\nraftpg must be loaded via shared_preload_libraries",
	'CREATE EXTENSION without shared_preload_libraries: SQLSTATE 55000');
like(
	$stderr,
	qr/HINT:  Add raftpg to shared_preload_libraries in postgresql.conf and restart the server\./,
	'... with a hint saying what to do');
is( $plain->safe_psql(
		'postgres',
		q{SELECT (SELECT count(*) FROM pg_extension WHERE extname = 'raftpg')
			   + (SELECT count(*) FROM pg_namespace WHERE nspname = 'raftpg')}),
	'0',
	'... and leaves neither the extension nor its schema');

$plain->stop('fast');

done_testing();
