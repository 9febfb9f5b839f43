# test/t/004_membership.pl
#
# Membership changes while entries keep committing: servers are added
# (as learners, then promoted) and removed, including the leader, one
# change at a time; leadership is transferred on request.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use RaftpgTest;

my @nodes = RaftpgTest::start_nodes(5);
my ($n1, $n2, $n3, $n4, $n5) = @nodes;
RaftpgTest::form_cluster($n1, $n2, $n3);
RaftpgTest::wait_leader($n1, $n2, $n3);

# a client appending through the whole test, in the background
my $bg = $n1->background_psql('postgres', on_error_stop => 0);
my $writes = 0;
sub write_some
{
	my ($leader, $count) = @_;
	for (1 .. $count)
	{
		$leader->safe_psql('postgres', "SELECT raftpg.propose('w$writes')");
		$writes++;
	}
}

write_some($n1, 5);

# ---- add a learner: it receives the log but does not vote
$n1->safe_psql('postgres',
	"SELECT raftpg.add_node('node4', '" . RaftpgTest::conninfo($n4) . "', voter => false)");
write_some($n1, 5);
is( $n1->safe_psql('postgres', q{SELECT membership FROM raftpg.nodes WHERE node_name = 'node4'}),
	'learner', 'node4 joined as a learner');
my $last = $n1->safe_psql('postgres', "SELECT raftpg.propose('to learner')");
RaftpgTest::wait_applied($last, $n4);
is(RaftpgTest::log_digest($n4, $last), RaftpgTest::log_digest($n1, $last),
	'the learner holds the log');
is($n4->safe_psql('postgres', 'SELECT voter FROM raftpg.status()'),
	'f', 'the learner knows it does not vote');

# ---- add a voter: learner first, promoted once caught up
$n1->safe_psql('postgres',
	"SELECT raftpg.add_node('node5', '" . RaftpgTest::conninfo($n5) . "')");
is( $n1->safe_psql('postgres', q{SELECT membership FROM raftpg.nodes WHERE node_name = 'node5'}),
	'voter', 'add_node returns once node5 is a voter');
ok($n1->log_contains(qr/configuration at index \d+: node1, node2, node3, node4 \(learner\), node5 \(learner\)/),
	'node5 was a learner first (LOG line of the configuration change)');
write_some($n1, 5);

# ---- remove a follower while writing
$n1->safe_psql('postgres', q{SELECT raftpg.remove_node('node2')});
write_some($n1, 5);
is( $n1->safe_psql('postgres', q{SELECT string_agg(node_name, ',' ORDER BY node_id) FROM raftpg.nodes}),
	'node1,node3,node4,node5', 'node2 is gone from the configuration');
# the leader keeps replicating to node2 until it holds its own removal
$n2->poll_query_until('postgres', 'SELECT NOT voter FROM raftpg.status()')
  or die 'node2 never learned of its removal';
pass('node2 learned that it is no longer a voter');
my $term = $n1->safe_psql('postgres', 'SELECT term FROM raftpg.status()');

write_some($n1, 5);
is($n1->safe_psql('postgres', 'SELECT term FROM raftpg.status()'),
	$term, 'the removed node2 does not disturb the leader');

# ---- transfer leadership to node3
$n1->safe_psql('postgres', q{SELECT raftpg.transfer_leadership('node3')});
my $l = RaftpgTest::wait_leader($n1, $n3, $n4, $n5);
is($l->name, 'node3', 'node3 leads after the transfer');
write_some($n3, 5);

# ---- a transfer to a learner is refused, and to nobody in particular works
my ($ret, $out, $err) = $n3->psql('postgres', q{SELECT raftpg.transfer_leadership('node4')});
like($err, qr/node "node4" is a learner/, 'a learner cannot be made leader');
$n3->safe_psql('postgres', q{SELECT raftpg.transfer_leadership()});
$l = RaftpgTest::wait_leader($n1, $n3, $n4, $n5);
isnt($l->name, 'node3', 'transfer_leadership() with no target hands over to another voter');

# ---- remove the leader itself: it steps down once the change commits
my $leader_name = $l->name;
$l->safe_psql('postgres', "SELECT raftpg.remove_node('$leader_name')");
my @rest = grep { $_->name ne $leader_name } ($n1, $n3, $n4, $n5);
my $l2 = RaftpgTest::wait_leader(@rest);
isnt($l2->name, $leader_name, "a new leader took over from the removed $leader_name");
is($l->safe_psql('postgres', 'SELECT role FROM raftpg.status()'),
	'follower', "the removed leader stepped down");
write_some($l2, 5);

# ---- everyone still in the configuration holds the same log
$last = $l2->safe_psql('postgres', "SELECT raftpg.propose('final')");
my @members = grep { $_->name ne $leader_name } ($n1, $n3, $n4, $n5);
RaftpgTest::wait_applied($last, @members);
my $digest = RaftpgTest::log_digest($l2, $last);
is(RaftpgTest::log_digest($_, $last), $digest, $_->name . ': identical log')
  for @members;
my $found = $l2->safe_psql('postgres',
	q{SELECT count(*) FROM raftpg.log_entries WHERE kind = 1 AND convert_from(substr(payload, 2), 'UTF8') ~ '^w[0-9]+$'});
is($found, $writes, "all $writes writes acknowledged during the changes are in the log");

$bg->quit;
RaftpgTest::stop_nodes(@nodes);
done_testing();
