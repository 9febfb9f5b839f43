# test/t/012_sequences.pl
#
# Sequences of replicated tables (serial and identity) never hand out a
# value twice, across failovers: values the old leader handed out, even to
# transactions that never committed, are below everything a new leader
# hands out.  The leader's reservation is refilled before it runs out.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

use RaftpgTest;

my @nodes = RaftpgTest::start_nodes(3, extra_conf => "raftpg.sequence_reserve = 10000\n");
my $leader = RaftpgTest::form_cluster(@nodes);
RaftpgTest::wait_leader(@nodes);

$leader->safe_psql('postgres', q{
	CREATE TABLE public.s (id serial PRIMARY KEY, v text);
	CREATE TABLE public.i (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text);
	INSERT INTO public.s (v) SELECT 'before' FROM generate_series(1, 5);
	SELECT raftpg.replicate_table('public.s');
	SELECT raftpg.replicate_table('public.i');
});
RaftpgTest::check_same($leader, 'public.s', 'id', 'a serial table replicated', @nodes);

my $fence = q{SELECT seqmax FROM pg_sequence WHERE seqrelid = 'public.s_id_seq'::regclass};
for my $n (@nodes)
{
	is($n->safe_psql('postgres', $fence), '10005',
		$n->name . ': the sequence is fenced at its first reservation (5 used + 10000)');
}

# values handed out, committed or not, on two successive leaders
my $highest = 0;
for my $round (1 .. 2)
{
	$leader->safe_psql('postgres', q{
		INSERT INTO public.s (v) SELECT 'committed' FROM generate_series(1, 20);
		INSERT INTO public.i (v) SELECT 'committed' FROM generate_series(1, 20);
	});
	# values handed out to a transaction that rolls back
	my $aborted = $leader->safe_psql('postgres', q{
		BEGIN;
		INSERT INTO public.s (v) SELECT 'rolled back' FROM generate_series(1, 30);
		INSERT INTO public.i (v) SELECT 'rolled back' FROM generate_series(1, 30);
		SELECT greatest((SELECT max(id) FROM public.s), (SELECT max(id) FROM public.i));
		ROLLBACK;
	});
	$highest = $aborted if $aborted > $highest;
	RaftpgTest::check_same($leader, 'public.s', 'id', "round $round", @nodes);

	# in the second round, apply lingers 10 s over small batches: a new
	# leader must not linger over the reservation that opens its writes
	if ($round == 2)
	{
		for my $n (@nodes)
		{
			$n->append_conf('postgresql.conf', "raftpg.apply_linger = '10s'\n");
			$n->reload;
		}
	}
	my $old = $leader;
	RaftpgTest::kill9($old);
	my @rest = grep { $_ != $old } @nodes;
	$leader = RaftpgTest::wait_leader(\@rest);
	my $t0 = time();
	my $first = $leader->safe_psql('postgres', q{
		INSERT INTO public.s (v) VALUES ('new leader') RETURNING id;
	});
	my $took = time() - $t0;
	if ($round == 2)
	{
		cmp_ok($took, '<', 5,
			"round $round: with a 10 s apply linger, the new leader takes writes at once (${took}s)");
		for my $n (@nodes)
		{
			$n->adjust_conf('postgresql.conf', 'raftpg.apply_linger', undef);
			$n->reload if $n != $old;
		}
	}
	my $first_i = $leader->safe_psql('postgres', q{
		INSERT INTO public.i (v) VALUES ('new leader') RETURNING id;
	});
	cmp_ok($first, '>', $highest,
		"round $round: the new leader's serial value $first is above every value handed out before ($highest)");
	cmp_ok($first_i, '>', $highest,
		"round $round: so is its identity value $first_i");
	$highest = $first_i > $first ? $first_i : $first;
	RaftpgTest::restart_killed($old);
	RaftpgTest::wait_leader(@nodes);
}
RaftpgTest::check_same($leader, 'public.s', 'id', 'after two failovers', @nodes);
RaftpgTest::check_same($leader, 'public.i', 'id', 'after two failovers', @nodes);

# ---- the reservation is refilled before it runs out
my $before = $leader->safe_psql('postgres', $fence);
my $used = $leader->safe_psql('postgres', q{SELECT last_value FROM public.s_id_seq});
$leader->safe_psql('postgres',
	'INSERT INTO public.s (v) SELECT ' . q{'bulk'} . ' FROM generate_series(1, '
	  . ($before - $used - 4000) . ')');
$leader->poll_query_until('postgres', "SELECT ($fence) > $before")
  or die 'the reservation was not refilled';
pass('the leader reserved more values once fewer than half were left');
my $refilled = $leader->safe_psql('postgres', $fence);
RaftpgTest::check_same($leader, 'public.s', 'id', 'after a refill', @nodes);
for my $n (@nodes)
{
	is($n->safe_psql('postgres', $fence), $refilled,
		$n->name . ": the new fence ($refilled) is the same everywhere");
}

# ---- a serial column added by DDL is fenced in the same transaction
$leader->safe_psql('postgres', q{CREATE TABLE public.d (id int PRIMARY KEY)});
$leader->safe_psql('postgres', q{SELECT raftpg.replicate_table('public.d')});
my $dfence = q{SELECT seqmax FROM pg_sequence WHERE seqrelid = 'public.d_n_seq'::regclass};
is( $leader->safe_psql('postgres', qq{
		BEGIN;
		ALTER TABLE public.d ADD COLUMN n serial;
		$dfence;
		COMMIT;
	}),
	'10000', 'a serial column added by ALTER TABLE is fenced by the same transaction');
$leader->safe_psql('postgres', q{INSERT INTO public.d (id) SELECT g FROM generate_series(1, 10) g});
RaftpgTest::check_same($leader, 'public.d', 'id', 'a serial column added by DDL', @nodes);
for my $n (@nodes)
{
	is($n->safe_psql('postgres', $dfence), '10000',
		$n->name . ': its fence is the same everywhere');
}

# ---- more refills: the fence only ever moves up, and apply follows
for my $round (1 .. 2)
{
	my $fence_now = $leader->safe_psql('postgres', $fence);
	my $last = $leader->safe_psql('postgres', q{SELECT last_value FROM public.s_id_seq});
	$leader->safe_psql('postgres',
		'INSERT INTO public.s (v) SELECT ' . q{'more'} . ' FROM generate_series(1, '
		  . ($fence_now - $last - 4000) . ')');
	$leader->poll_query_until('postgres', "SELECT ($fence) > $fence_now")
	  or die "refill $round did not happen";
	RaftpgTest::check_same($leader, 'public.s', 'id', "after refill $round", @nodes);
	my $moved = $leader->safe_psql('postgres', $fence);
	cmp_ok($moved, '>', $fence_now, "refill $round moved the fence up ($fence_now to $moved)");
}

RaftpgTest::stop_nodes(@nodes);
done_testing();
