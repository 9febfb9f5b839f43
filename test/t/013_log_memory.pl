# test/t/013_log_memory.pl
#
# The node worker's memory does not grow with the log.  The consensus core
# keeps only the last raftpg.log_memory_entries applied entries (up to
# twice as many between two trims); raftpg.log keeps all of them, and a
# follower that comes back far behind gets the entries the leader no
# longer holds in memory read back from there, and converges.  After a
# restart the log is trimmed again at once.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use RaftpgTest;

my $keep = 16;
my @nodes = RaftpgTest::start_nodes(3,
	extra_conf => "raftpg.log_memory_entries = $keep\n");
my $leader = RaftpgTest::form_cluster(@nodes);
RaftpgTest::wait_leader(@nodes);
my ($behind, $other) = grep { $_ != $leader } @nodes;

$leader->safe_psql('postgres', q{
	CREATE TABLE kv (k int PRIMARY KEY, v text NOT NULL);
	SELECT raftpg.replicate_table('kv');
});
$leader->safe_psql('postgres',
	"INSERT INTO kv SELECT g, 'first ' || g FROM generate_series(1, 10) g");
RaftpgTest::check_same($leader, 'kv', 'k', 'before the stop', @nodes);

# ---- one follower stops; the others go on for many times $keep entries
$behind->stop('fast');
my $first_missed = $leader->safe_psql('postgres',
	'SELECT last_log_index + 1 FROM raftpg.status()');
for my $round (1 .. 20)
{
	$leader->safe_psql('postgres', qq{
		UPDATE kv SET v = 'round $round of ' || k WHERE k % 2 = $round % 2;
		INSERT INTO kv VALUES (100 + $round, 'row $round');
	});
	$leader->safe_psql('postgres', "DELETE FROM kv WHERE k = $round")
	  if $round <= 5;
}
$leader->safe_psql('postgres',
	"SELECT raftpg.propose(convert_to('entry ' || g, 'UTF8')) FROM generate_series(1, 200) g");
my ($last, $appended) = split /\|/, $leader->safe_psql('postgres',
	'SELECT last_log_index, (SELECT entries_appended FROM raftpg.stats)
	 FROM raftpg.status()');
cmp_ok($last - $first_missed, '>', 10 * $keep,
	"the stopped follower misses many times raftpg.log_memory_entries entries ($first_missed..$last)");

for my $n ($leader, $other)
{
	ok(RaftpgTest::poll_true($n,
		'SELECT entries_in_memory <= ' . (2 * $keep + 8) . ' FROM raftpg.stats'),
		$n->name . ': the core holds at most about twice raftpg.log_memory_entries entries');
	note $n->name . ': '
	  . $n->safe_psql('postgres',
		'SELECT entries_in_memory || \' entries in memory, \' || entries_appended || \' appended\' FROM raftpg.stats');
}
is( $leader->safe_psql('postgres',
		"SELECT count(*) FROM raftpg.log_entries WHERE index BETWEEN $first_missed AND $last"),
	$last - $first_missed + 1,
	'raftpg.log still holds every entry the stopped follower missed');

# ---- it comes back and gets them from the leader's table
my $fetched_before = $leader->safe_psql('postgres',
	'SELECT entries_fetched FROM raftpg.stats');
$behind->start;
my $deadline = time() + 60;
while (time() < $deadline)
{
	last
	  if $behind->safe_psql('postgres',
		"SELECT applied_index >= $last FROM raftpg.status()") eq 't';
	usleep(50_000);
}
cmp_ok($behind->safe_psql('postgres', 'SELECT applied_index FROM raftpg.status()'),
	'>=', $last, 'the follower that was behind caught up');
cmp_ok(
	$leader->safe_psql('postgres', 'SELECT entries_fetched FROM raftpg.stats'),
	'>=', $fetched_before + ($last - $first_missed - 2 * $keep),
	'... with the entries the leader read back from raftpg.log');
is(RaftpgTest::log_digest($behind, $last), RaftpgTest::log_digest($leader, $last),
	'... and its log is the leader\'s, entry for entry');
RaftpgTest::check_same($leader, 'kv', 'k', 'after the catch-up', @nodes);
ok(RaftpgTest::poll_true($behind,
		'SELECT entries_in_memory <= ' . (2 * $keep + 8) . ' FROM raftpg.stats'),
	'the follower that caught up holds few entries in memory too');

# The bytes the node worker's consensus core holds (its memory context),
# as pg_log_backend_memory_contexts() reports them in the server log.
sub core_memory
{
	my ($node) = @_;
	my $pid = $node->safe_psql('postgres', 'SELECT worker_pid FROM raftpg.status()');
	my $offset = -s $node->logfile;
	$node->safe_psql('postgres', "SELECT pg_log_backend_memory_contexts($pid)");
	my $deadline = time() + 30;
	while (time() < $deadline)
	{
		my $log = slurp_file($node->logfile, $offset);
		return $1 if $log =~ /raftpg consensus core: (\d+) total/;
		usleep(50_000);
	}
	die $node->name . ': the node worker did not log its memory contexts';
}

# ---- many more entries, of some size: memory stays small, also over a
# restart, which reads the log but keeps only its end
$leader->safe_psql('postgres',
	"SELECT raftpg.propose(convert_to(repeat('m', 400) || g, 'UTF8')) FROM generate_series(1, 3000) g");
my $payload = 3000 * 400;
for my $n ($leader, $other)
{
	my $bytes = core_memory($n);
	cmp_ok($bytes, '<', $payload / 4,
		$n->name . ": the core's memory stays far below the log's size ($bytes bytes for $payload bytes of entries)");
}
$other->restart;
RaftpgTest::wait_for_worker($other);
RaftpgTest::wait_leader(@nodes);
ok(RaftpgTest::poll_true($other,
		'SELECT entries_in_memory <= ' . (2 * $keep + 8) . ' FROM raftpg.stats'),
	'after a restart the core holds few entries again');
my $bytes = core_memory($other);
cmp_ok($bytes, '<', $payload / 4,
	"... and little memory ($bytes bytes)");
my $after = $leader->safe_psql('postgres', "SELECT raftpg.propose('after restart')");
RaftpgTest::wait_applied($after, @nodes);
pass('the cluster commits after the restart');

RaftpgTest::stop_nodes(@nodes);
done_testing();
