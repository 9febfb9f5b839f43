# test/t/011_reads.pl
#
# Reads of replicated tables on three servers.  With
# raftpg.read_consistency = linearizable, a read on a follower right after
# a write the leader acknowledged sees it, every time, in READ COMMITTED
# and in REPEATABLE READ transaction blocks, and also when the follower is
# known to be behind (the leader's messages to it cut until just before
# the read), where a local read misses the write; a REPEATABLE READ snapshot
# taken before the read point refuses (40001) instead of reading stale rows.
# raftpg.wait_for_index() with the leader session's last_write_index() gives
# read-your-writes across nodes with local reads.  A follower cut off from
# the others cannot serve a linearizable read and says so within
# raftpg.commit_timeout, while local reads go on; once healed, it serves
# them again.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

use RaftpgRelay;
use RaftpgTest;

# run $sql in background session $h: (its output, its errors or '')
sub run
{
	my ($h, $sql) = @_;
	$h->{stderr} = '';
	my ($out) = $h->query($sql);
	my $err = $h->{stderr};
	$h->{stderr} = '';
	return ($out, $err);
}

my @nodes = RaftpgTest::init_nodes(3, extra_conf => "log_statement = 'none'\n");
$_->{raftpg_relayed} = 1 for @nodes;
my $relay = RaftpgRelay->new(@nodes);
for my $node (@nodes)
{
	local $ENV{PGSERVICEFILE} = $relay->env_for($node);
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION raftpg');
}

RaftpgTest::form_cluster(@nodes);
my $leader = RaftpgTest::wait_leader(@nodes);
my ($f1, $f2) = grep { $_ != $leader } @nodes;

$leader->safe_psql('postgres',
	'CREATE TABLE public.reads (id int PRIMARY KEY, v text NOT NULL)');
my $idx = $leader->safe_psql('postgres', q{SELECT raftpg.replicate_table('public.reads')});
RaftpgTest::wait_applied($idx, @nodes);

# one session per role, so that nothing but the statements themselves runs
# between a write and the reads after it
my $writer = $leader->background_psql('postgres', on_error_stop => 0);
my $lin = $f1->background_psql('postgres', on_error_stop => 0);
my $loc = $f1->background_psql('postgres', on_error_stop => 0);
$lin->query_safe('SET raftpg.read_consistency = linearizable');

# ---- a linearizable read on a follower sees the write acknowledged just before
my $seen = 0;
for my $i (1 .. 50)
{
	$writer->query_safe("INSERT INTO public.reads VALUES ($i, 'row $i')");
	my ($got, $err) = run($lin, "SELECT v FROM public.reads WHERE id = $i");
	if ($err || $got ne "row $i")
	{
		diag("read $i: got '$got', error: $err");
		next;
	}
	$seen++;
}
is($seen, 50,
	'READ COMMITTED: 50 linearizable reads on a follower, each right after an acknowledged write, saw it');

$seen = 0;
for my $i (51 .. 70)
{
	$writer->query_safe("INSERT INTO public.reads VALUES ($i, 'row $i')");
	my ($got, $err) = run($lin,
		"BEGIN ISOLATION LEVEL REPEATABLE READ;
		 SELECT count(*) FROM public.reads WHERE id <= $i;
		 SELECT v FROM public.reads WHERE id = $i;
		 COMMIT;");
	if ($err || $got ne "$i\nrow $i")
	{
		diag("read $i: got '$got', error: $err");
		run($lin, 'ROLLBACK');
		next;
	}
	$seen++;
}
is($seen, 20,
	'REPEATABLE READ blocks on a follower: 20 reads, each right after an acknowledged write, saw it');

# the same with local reads may miss the row: timing, so only reported
my $seen_local = 0;
for my $i (71 .. 90)
{
	$writer->query_safe("INSERT INTO public.reads VALUES ($i, 'row $i')");
	$seen_local++
	  if $loc->query_safe("SELECT count(*) FROM public.reads WHERE id = $i") eq '1';
}
note "local reads right after the write saw $seen_local of 20 rows";

# a follower the leader's messages do not reach is behind: a local read
# misses the acknowledged write, a linearizable read right after the heal
# waits for it
# (the heal waits until the leader is connected again: a read point the
# leader answers while it is not gets lost, and the follower's request with
# it, until raftpg.commit_timeout)
my $reachable = "SELECT reachable FROM raftpg.nodes WHERE node_name = '" . $f1->name . "'";
$relay->cut($leader->name, $f1->name);
$leader->poll_query_until('postgres', $reachable, 'f')
  or die 'the leader did not notice the cut';
$writer->query_safe("INSERT INTO public.reads VALUES (91, 'while behind')");
is($loc->query_safe('SELECT count(*) FROM public.reads WHERE id = 91'), '0',
	'a follower the leader cannot reach misses an acknowledged write in a local read');
$relay->heal;
$leader->poll_query_until('postgres', $reachable)
  or die 'the leader did not reconnect';
my ($got, $err) = run($lin, 'SELECT v FROM public.reads WHERE id = 91');
is($got, 'while behind',
	'... a linearizable read right after the heal sees it')
  or diag("error: $err");

# a transaction whose snapshot was taken before it asked for linearizable
# reads, and before another transaction's write: that snapshot cannot
# serve a linearizable read
$lin->query_safe('SET raftpg.read_consistency = local');
$lin->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
$lin->query_safe('SELECT 1');
$writer->query_safe("INSERT INTO public.reads VALUES (100, 'after the snapshot')");
$lin->query_safe('SET LOCAL raftpg.read_consistency = linearizable');
my $res;
($res, $err) = run($lin, 'SELECT count(*) FROM public.reads');
like($err, qr/snapshot of this transaction predates the linearizable read point/,
	'a REPEATABLE READ snapshot older than the read point is refused (40001)');
run($lin, 'ROLLBACK');
$lin->query_safe('SET raftpg.read_consistency = linearizable');

# ---- read-your-writes across nodes: wait_for_index, then a local read
my $ok = 0;
for my $i (101 .. 120)
{
	$writer->query_safe("INSERT INTO public.reads VALUES ($i, 'ryw $i')");
	my $w = $writer->query_safe('SELECT raftpg.last_write_index()');
	my $reached = $loc->query_safe("SELECT raftpg.wait_for_index($w)");
	my $got = $loc->query_safe("SELECT v FROM public.reads WHERE id = $i");
	$ok++ if $reached eq 't' && $got eq "ryw $i";
}
is($ok, 20,
	'wait_for_index(last_write_index() of the leader session) on a follower, then a local read, sees the row, 20 times');

my ($t0, $elapsed);

# ---- apply gathers small batches (raftpg.apply_linger), but not while
# anyone waits for it: with a 10 s linger on f2, a commit there stays
# unapplied while nobody asks, and wait_for_index() and a linearizable read
# are served at once all the same
$f2->append_conf('postgresql.conf', "raftpg.apply_linger = '10s'\n");
{
	local $ENV{PGSERVICEFILE} = $relay->env_for($f2);
	$f2->restart;
}
RaftpgTest::wait_for_worker($f2);
my $f2_status = 'SELECT commit_index, applied_index FROM raftpg.status()';
$writer->query_safe("INSERT INTO public.reads VALUES (150, 'linger 1')");
my $w = $writer->query_safe('SELECT raftpg.last_write_index()');
is($f2->safe_psql('postgres', "SELECT raftpg.wait_for_index($w, '60s')"), 't',
	'with a 10 s apply linger, a follower applies a write once asked to');
# that batch just ended: the next one lingers
$writer->query_safe("INSERT INTO public.reads VALUES (151, 'linger 2')");
$w = $writer->query_safe('SELECT raftpg.last_write_index()');
$f2->poll_query_until('postgres', "SELECT commit_index >= $w FROM raftpg.status()")
  or die 'f2 did not learn of the commit';
my ($c, $a) = split /\|/, $f2->safe_psql('postgres', $f2_status);
cmp_ok($a, '<', $w,
	"... the next commit waits there while nobody asks (commit $c, applied $a, write $w)");
$t0 = time();
is($f2->safe_psql('postgres', "SELECT raftpg.wait_for_index($w, '5s')"), 't',
	'... and wait_for_index() on it ends the wait');
$elapsed = time() - $t0;
cmp_ok($elapsed, '<', 5, "... at once (${elapsed}s)");
$writer->query_safe("INSERT INTO public.reads VALUES (152, 'linger 3')");
$t0 = time();
is( $f2->safe_psql('postgres',
		q{SET raftpg.read_consistency = linearizable; SET raftpg.commit_timeout = '5s';
		  SELECT v FROM public.reads WHERE id = 152}),
	'linger 3',
	'... so does a linearizable read of a write made during the linger');
$elapsed = time() - $t0;
cmp_ok($elapsed, '<', 3, "... at once too (${elapsed}s)");
$f2->adjust_conf('postgresql.conf', 'raftpg.apply_linger', undef);
$f2->reload;

# ---- a follower cut off from the others
$relay->partition($f1->name);
$lin->query_safe("SET raftpg.commit_timeout = '2s'");
$t0 = time();
($res, $err) = run($lin, 'SELECT count(*) FROM public.reads');
$elapsed = time() - $t0;
ok($err, 'a follower cut off from the leader cannot serve a linearizable read');
like($err, qr/no raftpg leader could confirm a linearizable read/,
	'... and says that no leader confirmed it');
cmp_ok($elapsed, '<', 2 + 2, "... within raftpg.commit_timeout (2s; took ${elapsed}s)");

# a REPEATABLE READ block cannot get its read point either
($res, $err) = run($lin, 'BEGIN ISOLATION LEVEL REPEATABLE READ');
like($err, qr/no raftpg leader could confirm a linearizable read/,
	'a REPEATABLE READ block on the cut-off follower cannot start');
($res, $err) = run($lin, 'SELECT 1');
ok(!$err && $res eq '1', '... and leaves no transaction block behind');

# the majority still serves linearizable reads, and writes
$writer->query_safe("INSERT INTO public.reads VALUES (200, 'during the partition')");
is( $f2->safe_psql('postgres',
		q{SET raftpg.read_consistency = linearizable;
		  SELECT v FROM public.reads WHERE id = 200}),
	'during the partition',
	'the other follower serves a linearizable read of a write made during the partition');
is( $leader->safe_psql('postgres',
		q{SET raftpg.read_consistency = linearizable;
		  SELECT count(*) FROM public.reads WHERE id = 200}),
	'1', 'so does the leader');

# local reads on the cut-off follower go on, without the new row
is($loc->query_safe('SELECT count(*) FROM public.reads WHERE id = 1'), '1',
	'local reads still work on the cut-off follower');
is($lin->query_safe(
		'SET raftpg.read_consistency = local; SELECT count(*) FROM public.reads WHERE id = 1'),
	'1', '... also in the session that was refused, once set to local');
$lin->query_safe('SET raftpg.read_consistency = linearizable');

# ---- healed: linearizable reads on the follower work again and see the row
$relay->heal;
$lin->query_safe("RESET raftpg.commit_timeout");
my $deadline = time() + 60;
($res, $err) = (undef, 1);
while (time() < $deadline)
{
	($res, $err) = run($lin, 'SELECT v FROM public.reads WHERE id = 200');
	last unless $err;
	select(undef, undef, undef, 0.1);
}
is($res, 'during the partition',
	'after healing, a linearizable read on the follower sees the write made during the partition');

$writer->quit;
$lin->quit;
$loc->quit;

# ---- the setting in postgresql.conf
$f2->append_conf('postgresql.conf', "raftpg.read_consistency = 'linearizable'\n");
{
	local $ENV{PGSERVICEFILE} = $relay->env_for($f2);
	$f2->restart;
}
is($f2->safe_psql('postgres', 'SHOW raftpg.read_consistency'), 'linearizable',
	'raftpg.read_consistency set in postgresql.conf holds from startup');
$f2->reload;
$f2->poll_query_until('postgres',
	q{SELECT current_setting('raftpg.read_consistency') = 'linearizable'})
  or die 'the setting did not take after a reload';
RaftpgTest::wait_leader(@nodes);
is($f2->safe_psql('postgres', 'SELECT count(*) FROM public.reads'), '116',
	'a linearizable read by default after a reload: every row');

RaftpgTest::stop_nodes(@nodes);
$relay->stop;
done_testing();
