# test/t/005_faults.pl
#
# The invariant raftpg was born from, on a real cluster.  A follower whose
# persistence fails at any step (after the entries are written, while it
# processes a configuration entry, after the state row, just before
# commit) stores nothing, tells the leader the append failed, and catches
# up on the retry; a configuration entry that does not decode, arriving
# from a peer, is refused before anything changes.  After each, the log
# table, the state row and status() agree.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use RaftpgTest;

my @nodes = RaftpgTest::start_nodes(4);
my ($n1, $n2, $n3, $n4) = @nodes;
RaftpgTest::form_cluster($n1, $n2, $n3);
RaftpgTest::wait_leader($n1, $n2, $n3);

sub consistent
{
	my ($n) = @_;
	return $n->safe_psql('postgres',
		q{SELECT s.last_log_index = t.last_log_index
			 AND s.last_log_term = t.last_log_term
			 AND s.last_log_index = (SELECT coalesce(max(index), 0) FROM raftpg.log_entries)
			 AND s.last_log_index = (SELECT count(*) FROM raftpg.log_entries)
			 AND s.last_log_term = (SELECT term FROM raftpg.log_entries ORDER BY index DESC LIMIT 1)
		  FROM raftpg.status() s, raftpg.state t});
}

sub counter
{
	my ($n, $col) = @_;
	return $n->safe_psql('postgres', "SELECT $col FROM raftpg.stats");
}

my $failures = 0;
for my $point (qw(after_entries config after_state before_commit))
{
	my $rejects = counter($n1, 'append_rejects_received');
	$n2->safe_psql('postgres', "SELECT raftpg.inject_fault('$point')");

	my $last;
	if ($point eq 'config')
	{
		# a configuration entry: add node4 as a learner
		$n1->safe_psql('postgres',
			"SELECT raftpg.add_node('node4', '" . RaftpgTest::conninfo($n4) . "', voter => false)");
		$last = $n1->safe_psql('postgres', "SELECT raftpg.propose('after $point')");
	}
	else
	{
		$last = $n1->safe_psql('postgres', "SELECT raftpg.propose('entry $point')");
	}

	$failures++;
	$n2->poll_query_until('postgres',
		"SELECT persist_failures = $failures FROM raftpg.stats")
	  or die "node2 did not fail at $point";
	ok($n2->log_contains(qr/injected failure at $point/),
		"$point: node2's persistence failed there");

	# the leader heard of it, and its retry succeeded
	RaftpgTest::wait_applied($last, $n2);
	cmp_ok(counter($n1, 'append_rejects_received'), '>', $rejects,
		"$point: the leader was told the append failed");
	is(RaftpgTest::log_digest($n2, $last), RaftpgTest::log_digest($n1, $last),
		"$point: node2 caught up with an identical log");
	is(consistent($n2), 't', "$point: node2's log table, state row and status() agree");
}
is($n1->safe_psql('postgres', q{SELECT membership FROM raftpg.nodes WHERE node_name = 'node4'}),
	'learner', 'the configuration entry took effect after the retry');

# ---- a configuration entry that does not decode, sent by a "peer"
my ($node_id, $cluster_id, $term, $li, $lt, $commit) = split /\|/,
  $n2->safe_psql('postgres',
	q{SELECT t.node_id, t.cluster_id, s.term, s.last_log_index, s.last_log_term, s.commit_index
	  FROM raftpg.state t, raftpg.status() s});
my $leader_id = $n1->safe_psql('postgres', 'SELECT node_id FROM raftpg.state');
my $payload = 'not a configuration';
my $msg = pack('C C C C Q< Q< Q< Q< Q< Q< Q< Q< Q< L< Q< C L< a*',
	1, 1, 0, 0,
	$leader_id, $node_id, $term, $li, $lt, $commit, 0, 0, 0,
	1,
	$term, 3, length($payload), $payload);
my $batch = unpack('H*', pack('L<', length($msg)) . $msg);
my $refused = counter($n2, 'entries_refused');
my $digest = RaftpgTest::log_digest($n2, $li);

$n2->safe_psql('postgres', "SELECT raftpg.deliver($cluster_id, '\\x$batch')");
$n2->poll_query_until('postgres',
	'SELECT entries_refused = ' . ($refused + 1) . ' FROM raftpg.stats')
  or die 'the malformed configuration entry was not refused';
ok($n2->log_contains(qr/refused log entries from node $leader_id after index $li/),
	'node2 logged the refusal');
is(RaftpgTest::log_digest($n2, $li + 1000), $digest,
	'nothing was stored: the log is unchanged');
is($n2->safe_psql('postgres', 'SELECT last_log_index FROM raftpg.state'), $li,
	'the state row did not move');
is(consistent($n2), 't', "node2's log table, state row and status() agree");

# a message that does not even decode is dropped and counted
my $malformed = counter($n2, 'messages_malformed');
$n2->safe_psql('postgres', "SELECT raftpg.deliver($cluster_id, '\\x0500000001ffffffff')");
$n2->poll_query_until('postgres',
	'SELECT messages_malformed = ' . ($malformed + 1) . ' FROM raftpg.stats')
  or die 'the malformed message was not counted';

# another cluster's messages are refused at the door
my ($ret, $out, $err) = $n2->psql('postgres',
	"SELECT raftpg.deliver(" . ($cluster_id + 1) . ", '\\x')");
like($err, qr/reached a node of cluster $cluster_id/, "another cluster's message is refused");

# and the cluster goes on
my $last = $n1->safe_psql('postgres', "SELECT raftpg.propose('still working')");
RaftpgTest::wait_applied($last, $n1, $n2, $n3);
is(RaftpgTest::log_digest($n2, $last), RaftpgTest::log_digest($n1, $last),
	'node2 keeps replicating afterwards');

RaftpgTest::stop_nodes(@nodes);
done_testing();
