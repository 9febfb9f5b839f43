# test/t/008_commit_outcomes.pl
#
# What a client is told about a commit is true.  kill -9 of the leader
# during a stream of commits from four clients: every acknowledged row is
# on every node, no row whose commit failed with a definite error is
# anywhere, and the nodes end identical.  A commit whose wait is cut short
# (cancel, raftpg.commit_timeout) fails with 08007,
# and its entry is applied everywhere if it commits later.  A follower
# killed while writes go on catches up.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use RaftpgTest;

my @nodes = RaftpgTest::start_nodes(3);
my $leader = RaftpgTest::form_cluster(@nodes);
RaftpgTest::wait_leader(@nodes);

$leader->safe_psql('postgres', q{
	CREATE TABLE public.stream (id bigint PRIMARY KEY, client int NOT NULL);
	SELECT raftpg.replicate_table('public.stream');
});
RaftpgTest::check_same($leader, 'public.stream', 'id', 'empty', @nodes);

# ---- kill -9 of the leader during commits from four clients
my $dir = PostgreSQL::Test::Utils::tempdir;
my @writers = RaftpgTest::start_writers(4, $dir, 'public.stream', @nodes);

# let them commit for a while, then kill the leader
my $deadline = time() + 60;
while (time() < $deadline)
{
	last if $leader->safe_psql('postgres', 'SELECT count(*) FROM public.stream') >= 100;
	usleep(50_000);
}
RaftpgTest::kill9($leader);
my @rest = grep { $_ != $leader } @nodes;
my $new = RaftpgTest::wait_leader(\@rest);

# the clients find the new leader and go on committing there
my $before = $new->safe_psql('postgres', 'SELECT count(*) FROM public.stream');
$deadline = time() + 60;
while (time() < $deadline)
{
	last if $new->safe_psql('postgres', 'SELECT count(*) FROM public.stream') >= $before + 100;
	usleep(50_000);
}
cmp_ok($new->safe_psql('postgres', 'SELECT count(*) FROM public.stream'),
	'>=', $before + 100, 'the clients commit on the new leader');

RaftpgTest::restart_killed($leader);
my $outcome = RaftpgTest::stop_writers($dir, @writers);
$new = RaftpgTest::wait_leader(@nodes);
my $digest = RaftpgTest::check_same($new, 'public.stream', 'id',
	'after the leader was killed during commits', @nodes);

my (%count, @lost, @phantom);
for my $n (@nodes)
{
	my %present = map { $_ => 1 } split /\n/,
	  $n->safe_psql('postgres', 'SELECT id FROM public.stream ORDER BY id');
	for my $id (keys %$outcome)
	{
		my $what = $outcome->{$id};
		push @lost, $n->name . ":$id" if $what eq 'ok' && !$present{$id};
		push @phantom, $n->name . ":$id($what)"
		  if $what ne 'ok' && $what ne 'unknown' && $present{$id};
	}
}
$count{$_}++ for values %$outcome;
note 'outcomes: ' . join(', ', map { "$_=$count{$_}" } sort keys %count);
cmp_ok($count{ok} // 0, '>=', 200, 'hundreds of commits were acknowledged');
is(scalar(@lost), 0, 'every acknowledged row is on every node')
  or diag "missing: @lost[0 .. ($#lost < 20 ? $#lost : 20)]";
is(scalar(@phantom), 0, 'no row whose commit failed definitely is anywhere')
  or diag "present: @phantom[0 .. ($#phantom < 20 ? $#phantom : 20)]";

# ---- an interrupted wait: 08007, and the entry applied if it commits later
$leader = $new;
my @followers = grep { $_ != $leader } @nodes;
$leader->safe_psql('postgres', q{
	CREATE TABLE public.outcome (id int PRIMARY KEY, how text);
	SELECT raftpg.replicate_table('public.outcome');
});
my @refusals;
# (statement_timeout does not cover a commit, in PostgreSQL as here: it is
# disabled before the commit starts; raftpg.commit_timeout bounds the wait)
for my $case (
	[ 'commit_timeout', q{SET raftpg.commit_timeout = '300ms'}, qr/raftpg.commit_timeout expired while it was being committed/ ])
{
	my ($how, $set, $msg) = @$case;
	$_->stop('immediate') for @followers;
	my ($ret, $out, $err) = $leader->psql('postgres',
		"$set; INSERT INTO public.outcome VALUES (" . (scalar(@refusals) + 1) . ", '$how')",
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($err, qr/08007: the outcome of this transaction is unknown: /, "$how: 08007");
	like($err, $msg, "$how: the message says why");
	like($err, qr/DETAIL:\s+Its changes are log entry \d+ of term \d+/, "$how: DETAIL names the entry");
	push @refusals, $how;
	$_->start for @followers;
	$leader = RaftpgTest::wait_leader(@nodes);
	@followers = grep { $_ != $leader } @nodes;
}

# the writes wait behind the gate until the orphans are decided, then work
$leader->safe_psql('postgres', q{INSERT INTO public.outcome VALUES (100, 'after')});
RaftpgTest::check_same($leader, 'public.outcome', 'id', 'after interrupted commits', @nodes);
note 'rows of interrupted commits present: '
  . $leader->safe_psql('postgres', q{SELECT coalesce(string_agg(how, ','), 'none') FROM public.outcome WHERE id < 100});

# a cancel during the wait
{
	$_->stop('immediate') for @followers;
	my $h = $leader->background_psql('postgres', on_error_stop => 0);
	my $pid = $h->query_safe('SELECT pg_backend_pid()');
	$h->query_until(qr/sent/, q{\echo sent
INSERT INTO public.outcome VALUES (50, 'cancelled');
});
	$leader->poll_query_until('postgres',
		"SELECT wait_event_type = 'Extension' FROM pg_stat_activity WHERE pid = $pid")
	  or die 'the insert did not wait for the commit';
	$leader->safe_psql('postgres', "SELECT pg_cancel_backend($pid)");
	my $res = $h->query('SELECT 1');
	like($h->{stderr}, qr/outcome of this transaction is unknown: canceled while it was being committed/,
		'cancel during the wait: 08007');
	$h->quit;
	$_->start for @followers;
	$leader = RaftpgTest::wait_leader(@nodes);
	@followers = grep { $_ != $leader } @nodes;
	$leader->safe_psql('postgres', q{INSERT INTO public.outcome VALUES (101, 'after cancel')});
	RaftpgTest::check_same($leader, 'public.outcome', 'id', 'after a cancelled commit', @nodes);
}

# ---- a session left idle in a transaction on a former leader, holding the
# row locks of its writes, does not hold up apply there: its transaction
# cannot commit any more, and it is ended when apply waits for it
{
	my $old = $leader;
	my $target = $followers[0];
	my $h = $old->background_psql('postgres', on_error_stop => 0);
	$h->query_safe('BEGIN');
	$h->query_safe(q{UPDATE public.outcome SET how = 'idle writer' WHERE id = 100});
	my $logpos = -s $old->logfile;
	$old->safe_psql('postgres', "SELECT raftpg.transfer_leadership('" . $target->name . "')");
	$leader = RaftpgTest::wait_leader(@nodes);
	is($leader->name, $target->name, 'leadership moved away from the idle writer');
	$leader->safe_psql('postgres', q{UPDATE public.outcome SET how = 'new leader' WHERE id = 100});
	RaftpgTest::check_same($leader, 'public.outcome', 'id',
		'apply on the former leader not held up by the idle writer', @nodes);
	is($old->safe_psql('postgres', q{SELECT how FROM public.outcome WHERE id = 100}),
		'new leader', 'the former leader applied the new leader\'s update of the locked row');
	ok($old->log_contains(qr/ending session \d+: it wrote replicated tables while this node led/, $logpos),
		'the idle writer was ended, with a log line');
	eval { $h->quit; };
	@followers = grep { $_ != $leader } @nodes;
}

# ---- a follower killed during writes catches up
my $victim = $followers[0];
@writers = RaftpgTest::start_writers(2, $dir, 'public.stream', $leader);
usleep(300_000);
RaftpgTest::kill9($victim);
$before = $leader->safe_psql('postgres', 'SELECT count(*) FROM public.stream');
$deadline = time() + 60;
while (time() < $deadline)
{
	last if $leader->safe_psql('postgres', 'SELECT count(*) FROM public.stream') >= $before + 50;
	usleep(50_000);
}
RaftpgTest::restart_killed($victim);
$outcome = RaftpgTest::stop_writers($dir, @writers);
RaftpgTest::check_same($leader, 'public.stream', 'id', 'a killed follower caught up', @nodes);

RaftpgTest::stop_nodes(@nodes);
done_testing();
