# test/t/003_failover.pl
#
# Crashes.  kill -9 of the leader's postmaster: the others elect a new
# leader within 3 seconds with the default timeouts and keep committing;
# the old leader comes back as a follower and converges.  Every server
# stopped with -m immediate and restarted recovers term, vote and log from
# its tables.

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

my $last;
$last = $leader->safe_psql('postgres', "SELECT raftpg.propose('before $_')")
  for 1 .. 5;
RaftpgTest::wait_applied($last, @nodes);

# ---- kill -9 the leader's postmaster
my @rest = grep { $_ != $leader } @nodes;
my $old_term = $rest[0]->safe_psql('postgres', 'SELECT term FROM raftpg.status()');
my $t0 = time();
RaftpgTest::kill9($leader);

my $new;
my $deadline = $t0 + 30;
while (time() < $deadline)
{
	for my $n (@rest)
	{
		$new = $n
		  if $n->safe_psql('postgres', 'SELECT role FROM raftpg.status()') eq 'leader';
	}
	last if $new;
	usleep(20_000);
}
my $elapsed = time() - $t0;
ok($new, 'a new leader was elected after the leader was killed');
cmp_ok($elapsed, '<', 3, sprintf('... within 3 s (%.2f s)', $elapsed));
note sprintf('failover took %.2f s', $elapsed);
cmp_ok($new->safe_psql('postgres', 'SELECT term FROM raftpg.status()'),
	'>', $old_term, '... in a higher term');

# the survivors keep committing
my $after = $new->safe_psql('postgres', "SELECT raftpg.propose('after failover')");
cmp_ok($after, '>', $last, 'the new leader commits new entries');

# ---- the old leader comes back as a follower and converges
RaftpgTest::restart_killed($leader);
RaftpgTest::wait_leader(@nodes);
is($leader->safe_psql('postgres', 'SELECT role FROM raftpg.status()'),
	'follower', 'the old leader rejoins as a follower');
RaftpgTest::wait_applied($after, @nodes);
my $digest = RaftpgTest::log_digest($new, $after);
is(RaftpgTest::log_digest($_, $after), $digest,
	$_->name . ': log identical to the new leader up to ' . $after)
  for @nodes;

# ---- every server stopped -m immediate, then restarted
my (%before, %digest_before);
for my $n (@nodes)
{
	$before{ $n->name } = $n->safe_psql('postgres',
		q{SELECT current_term || ',' || voted_for || ',' || last_log_index FROM raftpg.state});
	my (undef, undef, $li) = split /,/, $before{ $n->name };
	$digest_before{ $n->name } = RaftpgTest::log_digest($n, $li);
}
$_->stop('immediate') for @nodes;
$_->start for @nodes;

for my $n (@nodes)
{
	my ($term, $vote, $li) = split /,/, $before{ $n->name };
	is( $n->safe_psql(
			'postgres',
			"SELECT current_term > $term OR (current_term = $term AND voted_for = $vote) FROM raftpg.state"),
		't',
		$n->name . ': term and vote survived the crash');
	is(RaftpgTest::log_digest($n, $li), $digest_before{ $n->name },
		$n->name . ": the log up to $li survived the crash unchanged");
}
my $l2 = RaftpgTest::wait_leader(@nodes);
my $more = $l2->safe_psql('postgres', "SELECT raftpg.propose('after restart')");
RaftpgTest::wait_applied($more, @nodes);
my $d2 = RaftpgTest::log_digest($l2, $more);
is(scalar(grep { RaftpgTest::log_digest($_, $more) eq $d2 } @nodes),
	3, 'after the restart all three logs are identical again');
is(RaftpgTest::log_digest($l2, $after), $digest,
	'every entry committed before the crash is still there');

RaftpgTest::stop_nodes(@nodes);
done_testing();
