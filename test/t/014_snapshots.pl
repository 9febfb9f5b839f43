# test/t/014_snapshots.pl
#
# Log compaction and snapshots.  Every node deletes from raftpg.log the
# entries it applied more than raftpg.log_keep_entries ago.  A follower
# that was stopped meanwhile, and a node added afterwards, can no longer
# get those entries: each copies a snapshot of the replicated tables from
# the leader instead -- while clients keep writing -- and converges: the
# same rows, a table changed by DDL while it was away, one no longer
# replicated (kept as a local table), a new node's tables created, sequences
# fenced
# so that it can lead and hand out new values.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use RaftpgTest;

my $keep = 50;
my @nodes = RaftpgTest::start_nodes(4,
	extra_conf => "raftpg.log_keep_entries = $keep\n");
my $n4 = pop @nodes;
my $leader = RaftpgTest::form_cluster(@nodes);
RaftpgTest::wait_leader(@nodes);
my ($behind, $other) = grep { $_ != $leader } @nodes;

$leader->safe_psql('postgres', q{
	CREATE TABLE kv (k int PRIMARY KEY, v text NOT NULL);
	CREATE TABLE items (id serial PRIMARY KEY, label text);
	CREATE TABLE gone (id int PRIMARY KEY);
	CREATE TABLE w (id bigint PRIMARY KEY, client int);
	CREATE TABLE late (id int PRIMARY KEY, note text);
	CREATE TABLE zparent (id int PRIMARY KEY);
	CREATE TABLE achild (id int PRIMARY KEY, parent int NOT NULL);
});
for my $t (qw(kv items gone w late zparent achild))
{
	$leader->safe_psql('postgres', "SELECT raftpg.replicate_table('$t')");
}
$leader->safe_psql('postgres', q{
	INSERT INTO kv SELECT g, 'first ' || g FROM generate_series(1, 100) g;
	INSERT INTO items (label) SELECT 'item ' || g FROM generate_series(1, 10) g;
	INSERT INTO gone VALUES (1), (2), (3);
	ALTER TABLE achild ADD FOREIGN KEY (parent) REFERENCES zparent;
	INSERT INTO zparent SELECT generate_series(1, 5);
	INSERT INTO achild SELECT g, g % 5 + 1 FROM generate_series(1, 20) g;
});
RaftpgTest::check_same($leader, 'kv', 'k', 'before the stop', @nodes);

# ---- one follower stops; the cluster goes on, changes its tables and
# compacts its logs far past what the follower has (replicate_table()
# needs every member, so the table set changes by a removal only)
$behind->stop('fast');
my $first_missed = $leader->safe_psql('postgres',
	'SELECT last_log_index + 1 FROM raftpg.status()');
for my $round (1 .. 30)
{
	$leader->safe_psql('postgres', qq{
		UPDATE kv SET v = 'round $round of ' || k WHERE k % 3 = $round % 3;
		INSERT INTO kv VALUES (1000 + $round, 'row $round');
		INSERT INTO items (label) VALUES ('round $round');
	});
}
$leader->safe_psql('postgres', q{
	ALTER TABLE kv ADD COLUMN extra int NOT NULL DEFAULT 7;
	UPDATE kv SET extra = k % 5;
	INSERT INTO late VALUES (1, 'written while a follower was away');
	ALTER TABLE zparent ADD COLUMN label text;
	INSERT INTO zparent VALUES (6, 'six');
	INSERT INTO achild VALUES (21, 6);
});
$leader->safe_psql('postgres', "SELECT raftpg.unreplicate_table('gone')");
$leader->safe_psql('postgres',
	"SELECT raftpg.propose(convert_to('filler ' || g, 'UTF8')) FROM generate_series(1, 300) g");
# entries too large to share a row, stored out of line: compaction reads
# only their headers
$leader->safe_psql('postgres',
	"SELECT raftpg.propose(convert_to(repeat('large ' || g, 20000), 'UTF8')) FROM generate_series(1, 3) g");
my $large_last = $leader->safe_psql('postgres', 'SELECT last_log_index FROM raftpg.status()');
my $last = $leader->safe_psql('postgres', 'SELECT last_log_index FROM raftpg.status()');
cmp_ok($last - $first_missed, '>', 4 * $keep,
	"the stopped follower misses many times raftpg.log_keep_entries entries ($first_missed..$last)");

for my $n ($leader, $other)
{
	ok( RaftpgTest::poll_true($n,
			"SELECT snapshot_index >= $first_missed FROM raftpg.state"),
		$n->name . ': the log was compacted past what the stopped follower has');
	is( $n->safe_psql('postgres',
			"SELECT count(*) FROM raftpg.log_entries WHERE index = $first_missed"),
		'0', $n->name . ': raftpg.log no longer holds the first entry it missed');
	ok(RaftpgTest::poll_true($n, 'SELECT entries_compacted > 0 FROM raftpg.stats'),
		$n->name . ': raftpg.stats counts the compacted entries');
}

# ---- it comes back, while clients write, and installs a snapshot
my $dir = PostgreSQL::Test::Utils::tempdir();
my @writers = RaftpgTest::start_writers(3, $dir, 'w', $leader, $other, $behind);
RaftpgTest::poll_true($leader, 'SELECT count(*) >= 30 FROM w')
  or die 'the writers did not get going';

# Hold the leader's apply worker back (it locks raftpg.apply_state first)
# while the clients commit: the leader's tables then hold transactions
# beyond its applied index -- they commit their changes themselves -- and
# the snapshot copies them along, which the follower must not apply again.
my $hold = $leader->background_psql('postgres', on_error_stop => 0);
$hold->query_until(qr/held/, q{BEGIN;
LOCK TABLE raftpg.apply_state IN EXCLUSIVE MODE;
\echo held
});
ok(RaftpgTest::poll_true($leader,
		'SELECT commit_index - applied_index >= 10 FROM raftpg.status()'),
	"the leader's tables are ahead of its apply");
my $log_offset = -s $behind->logfile;
$behind->start;
ok( RaftpgTest::poll_true($behind, 'SELECT snapshots_installed >= 1 FROM raftpg.stats'),
	'the follower that was away installed a snapshot');
my $installed = slurp_file($behind->logfile, $log_offset);
ok( $installed =~ /installed a snapshot at log index \d+ copied from node "node1": \d+ tables, \d+ rows, (\d+) origin rows/
	  && $1 > 0,
	'... with the origin rows of the leader (' . ($1 // 'none') . ')');
$hold->query_until(qr/released/, q{COMMIT;
\echo released
});
$hold->quit;
RaftpgTest::poll_true($leader, 'SELECT count(*) >= 300 FROM w')
  or die 'the writers stopped';
my $outcome = RaftpgTest::stop_writers($dir, @writers);
my @acked = grep { $outcome->{$_} eq 'ok' } keys %$outcome;
ok( RaftpgTest::poll_true($leader,
		"SELECT snapshot_index >= $large_last FROM raftpg.state"),
	'the leader compacted its log past the large entries too');
cmp_ok(scalar @acked, '>', 0, scalar(@acked) . ' writes acknowledged during the install');

my @tables = ([ 'kv', 'k' ], [ 'items', 'id' ], [ 'late', 'id' ], [ 'w', 'id' ],
	[ 'zparent', 'id' ], [ 'achild', 'id' ]);
for my $t (@tables)
{
	RaftpgTest::check_same($leader, $t->[0], $t->[1], 'after the snapshot',
		@nodes);
}
is( $behind->safe_psql('postgres',
		"SELECT count(*) FROM w WHERE id IN (" . join(',', @acked) . ")"),
	scalar @acked, 'every acknowledged write is on the follower');
my $skipped = slurp_file($behind->logfile, $log_offset);
ok( $skipped =~ /(\d+) transactions up to log index \d+ were in the snapshot copied from node \d+ already: not applied again/
	  && $1 > 0,
	'... and it did not apply again the leader\'s transactions the copy held ('
	  . ($1 // 'none') . ')');
is( $behind->safe_psql('postgres',
		"SELECT string_agg(relid::text, ',' ORDER BY relid::text) FROM raftpg.replicated_tables"),
	'achild,items,kv,late,w,zparent', 'it replicates the tables the leader replicates');
my $defs = q{SELECT string_agg(d, E'\n') FROM unnest(raftpg.table_definition('zparent')
	|| raftpg.table_definition('achild') || raftpg.table_definition('kv')) d};
is($behind->safe_psql('postgres', $defs), $leader->safe_psql('postgres', $defs),
	'the tables changed while it was away are defined as on the leader, foreign key included');
is( $behind->safe_psql('postgres', 'SELECT count(*) FROM gone'),
	'3', 'the table no longer replicated stays, as a local table with its rows');
my $snap = $behind->safe_psql('postgres', 'SELECT snapshot_index FROM raftpg.state');
cmp_ok($snap, '>=', $first_missed, "its log starts after the snapshot ($snap)");
is( $behind->safe_psql('postgres',
		"SELECT count(*) FROM raftpg.log_entries WHERE index <= $snap"),
	'0', '... and holds no entry up to it');

# ---- a node added now joins through a snapshot too.  A table of its own
# has the name of a replicated one: the copy must not throw its rows away,
# so it is refused, with the reason in the log, until that table is gone.
$n4->safe_psql('postgres', q{
	CREATE TABLE late (id int PRIMARY KEY, mine text);
	INSERT INTO late VALUES (1, 'local data');
});
my $n4_offset = -s $n4->logfile;
$leader->safe_psql('postgres',
	"SELECT raftpg.add_node('" . $n4->name . "', '" . RaftpgTest::conninfo($n4)
	  . "', voter => false)");
push @nodes, $n4;
my $refused = 0;
my $deadline = time() + 60;
while (!$refused && time() < $deadline)
{
	$refused = slurp_file($n4->logfile, $n4_offset) =~
	  /could not copy a snapshot from node "\w+": a different table named public\.late exists on this node/;
	usleep(50_000);
}
ok($refused, 'the new node refuses a snapshot that would replace a local table, and logs why');
is( $n4->safe_psql('postgres',
		"SELECT (SELECT snapshots_installed FROM raftpg.stats) || ' ' || (SELECT count(*) FROM raftpg.replicated) || ' ' || (SELECT mine FROM late)"),
	'0 0 local data', '... and nothing of it is installed, the local table is untouched');
$n4->safe_psql('postgres', 'DROP TABLE late');
ok(RaftpgTest::poll_true($n4, 'SELECT snapshots_installed >= 1 FROM raftpg.stats'),
	'once that table is dropped, the node added after the compaction installs a snapshot');
for my $t (@tables)
{
	RaftpgTest::check_same($leader, $t->[0], $t->[1], 'the new node', $n4);
}
is($n4->safe_psql('postgres', "SELECT to_regclass('gone') IS NULL"),
	't', 'the new node does not get the table no longer replicated');
is($n4->safe_psql('postgres', $defs), $leader->safe_psql('postgres', $defs),
	'... and its tables are defined as on the leader, foreign key included');

# ---- the node that installed a snapshot leads: its sequences go on
# after every value handed out before
my $max_id = $leader->safe_psql('postgres', 'SELECT max(id) FROM items');
$leader->safe_psql('postgres',
	"SELECT raftpg.transfer_leadership('" . $behind->name . "')");
my $new = RaftpgTest::wait_leader(@nodes);
is($new->name, $behind->name, 'leadership moved to the node that installed a snapshot');
my $id;
$deadline = time() + 60;
while (time() < $deadline)
{
	my ($rc, $out) = $behind->psql('postgres',
		"INSERT INTO items (label) VALUES ('new leader') RETURNING id");
	if ($rc == 0) { $id = $out; last; }
	usleep(100_000);
}
ok(defined $id && $id > $max_id,
	'a new row gets a sequence value after every earlier one (' . ($id // 'none') . " > $max_id)");
RaftpgTest::check_same($behind, 'items', 'id', 'after the new leader wrote', @nodes);

RaftpgTest::stop_nodes(@nodes);
done_testing();
