# test/t/015_origin_rows.pl
#
# The origin rows: a local transaction that writes replicated tables
# leaves a row naming it in raftpg.origin_commits_0 or _1, for apply after
# a crash.  Within an incarnation apply asks the commit log instead and
# reads no row; the rows go by TRUNCATE once their entries are applied,
# never one by one.
#
#  - while the leader's apply is held back, its transactions' rows stay;
#    once it catches up, both tables are emptied by TRUNCATE (new files),
#    and every node holds the same rows of the replicated table, the
#    leader each of its own once;
#  - kill -9 of the leader while its apply is held back: after the
#    restart, its entries are applied by their rows (skipped where its own
#    commit survived, applied where the crash lost it), the nodes end
#    identical, and the rows of the old incarnation go too;
#  - a node that led, removed, its extension re-created and added back
#    without a restart, applies its own old entries again.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use RaftpgTest;

my @nodes = RaftpgTest::start_nodes(3);
my $leader = RaftpgTest::form_cluster(@nodes);
RaftpgTest::wait_leader(@nodes);

$leader->safe_psql('postgres', q{
	CREATE TABLE kv (k int PRIMARY KEY, v text NOT NULL);
	SELECT raftpg.replicate_table('kv');
});

sub origin_rows
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		'SELECT count(*) FROM raftpg.origin_commits');
}

sub filenodes
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		q{SELECT pg_relation_filenode('raftpg.origin_commits_0') || '/' ||
				 pg_relation_filenode('raftpg.origin_commits_1')});
}

# Hold the leader's apply worker back (it locks raftpg.apply_state first):
# its transactions then commit their changes themselves well before apply
# gets to their entries.
sub hold_apply
{
	my ($node) = @_;
	my $hold = $node->background_psql('postgres', on_error_stop => 0);
	$hold->query_until(qr/held/, q{BEGIN;
LOCK TABLE raftpg.apply_state IN EXCLUSIVE MODE;
\echo held
});
	return $hold;
}

# $n transactions of one row each, from $first on
sub insert_rows
{
	my ($node, $first, $n) = @_;
	$node->safe_psql('postgres',
		join('', map { "INSERT INTO kv VALUES ($_, 'row $_');\n" }
			  $first .. $first + $n - 1));
	return;
}

# ---- rows while apply is behind, then gone by TRUNCATE
my $hold = hold_apply($leader);
my $before = filenodes($leader);
insert_rows($leader, 1, 50);
cmp_ok(origin_rows($leader), '>=', 50,
	"the leader's 50 transactions left their origin rows while its apply is held back");
ok( RaftpgTest::poll_true($leader,
		'SELECT commit_index - applied_index >= 50 FROM raftpg.status()'),
	'... and its apply is 50 entries behind');
is( $_->safe_psql('postgres', 'SELECT count(*) FROM raftpg.origin_commits'),
	'0', $_->name . ': a follower has no origin rows')
  for grep { $_ != $leader } @nodes;
$hold->query_until(qr/released/, q{COMMIT;
\echo released
});
$hold->quit;

ok(RaftpgTest::poll_true($leader,
		'SELECT count(*) = 0 FROM raftpg.origin_commits', 120),
	'the origin rows are gone once apply passed their entries');
isnt(filenodes($leader), $before, '... by TRUNCATE: new files');
RaftpgTest::check_same($leader, 'kv', 'k',
	'the entries the leader committed itself were not applied twice', @nodes);
is($leader->safe_psql('postgres', 'SELECT count(*) FROM kv'), '50',
	'the leader holds the 50 rows once');

# ---- kill -9 of the leader with its apply behind
$hold = hold_apply($leader);
insert_rows($leader, 101, 40);
cmp_ok(origin_rows($leader), '>=', 40, 'again 40 transactions ahead of apply');
my $commit = $leader->safe_psql('postgres', 'SELECT commit_index FROM raftpg.status()');
RaftpgTest::kill9($leader);
eval { $hold->quit; };
my @others = grep { $_ != $leader } @nodes;
RaftpgTest::wait_applied($commit, @others);
RaftpgTest::restart_killed($leader);
my $new_leader = RaftpgTest::wait_leader(@nodes);
insert_rows($new_leader, 201, 10);
RaftpgTest::check_same($new_leader, 'kv', 'k',
	'after the kill -9, the old entries applied by their rows', @nodes);
is($leader->safe_psql('postgres', 'SELECT count(*) FROM kv'), '100',
	'the killed leader holds each of the 100 rows once');
ok(RaftpgTest::poll_true($leader,
		'SELECT count(*) = 0 FROM raftpg.origin_commits', 120),
	'the rows of its earlier incarnation go once a later term is applied');

# ---- a node that led, removed and added back without a restart: its
# own entries come again in the same incarnation, and its tables no longer
# hold their changes -- they are applied (the commit log would say that
# their transactions committed)
my ($back) = grep { $_->name eq 'node3' } @nodes;
$new_leader->safe_psql('postgres', q{SELECT raftpg.transfer_leadership('node3')});
is(RaftpgTest::wait_leader(@nodes)->name, 'node3', 'node3 leads');
insert_rows($back, 301, 20);
$back->safe_psql('postgres', q{SELECT raftpg.transfer_leadership()});
my $rest_leader = RaftpgTest::wait_leader(@nodes);
isnt($rest_leader->name, 'node3', 'node3 handed over');
$rest_leader->safe_psql('postgres', q{SELECT raftpg.remove_node('node3')});
$back->poll_query_until('postgres', 'SELECT NOT voter FROM raftpg.status()')
  or die 'node3 never learned of its removal';
$back->safe_psql('postgres', q{
	DROP EXTENSION raftpg CASCADE;
	DROP TABLE kv;
	CREATE EXTENSION raftpg;
});
$rest_leader->safe_psql('postgres',
	"SELECT raftpg.add_node('node3', '" . RaftpgTest::conninfo($back) . "')");
is( $rest_leader->safe_psql('postgres',
		q{SELECT node_id FROM raftpg.nodes WHERE node_name = 'node3'}),
	'3', 'node3 is back with its old node id');
RaftpgTest::check_same($rest_leader, 'kv', 'k',
	'node3 added back applied the entries it had made itself', @nodes);
is($back->safe_psql('postgres', 'SELECT count(*) FROM kv WHERE k > 300'),
	'20', 'node3 holds the 20 rows it wrote while it led');

RaftpgTest::stop_nodes(@nodes);
done_testing();
