# test/t/010_large_transactions.pl
#
# Large transactions have no size cliff: one of more than 64 MB of changes
# is cut into entries of raftpg.max_entry_size, handed to the node worker
# through shared memory, replicated and applied whole on every node.  A
# leader killed while such a transaction is being committed leaves it
# wholly applied or wholly absent everywhere, never in part.

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
	CREATE TABLE public.big (id int PRIMARY KEY, batch int NOT NULL, pad text NOT NULL);
	SELECT raftpg.replicate_table('public.big');
});

# ---- one transaction of more than 64 MB of changes
my $before = $leader->safe_psql('postgres', 'SELECT last_log_index FROM raftpg.status()');
my $t0 = time();
$leader->safe_psql('postgres', q{
	INSERT INTO public.big SELECT g, 1, repeat(md5(g::text), 32) FROM generate_series(1, 66000) g;
});
my $secs = time() - $t0;
my $after = $leader->safe_psql('postgres', 'SELECT last_log_index FROM raftpg.status()');
note sprintf('a 66000-row, ~70 MB transaction committed in %.1f s as %d log entries',
	$secs, $after - $before);
cmp_ok($after - $before, '>=', 64, 'it became at least 64 entries of at most 1 MB');
is($leader->safe_psql('postgres',
		"SELECT max(length(payload)) <= 1024 * 1024 FROM raftpg.log_entries WHERE index > $before"),
	't', 'no entry is larger than raftpg.max_entry_size');
RaftpgTest::check_same($leader, 'public.big', 'id', 'a 70 MB transaction', @nodes);

# ---- the leader killed while a large transaction is being committed
my $h = $leader->background_psql('postgres', on_error_stop => 0);
$h->query_until(qr/sent/, q{\echo sent
INSERT INTO public.big SELECT g, 2, repeat(md5(g::text), 32) FROM generate_series(100001, 140000) g;
});
$leader->poll_query_until('postgres',
	q{SELECT count(*) > 0 FROM pg_stat_activity
	  WHERE query LIKE 'INSERT INTO public.big%' AND wait_event_type = 'Extension'})
  or die 'the large commit did not start waiting for the cluster';
RaftpgTest::kill9($leader);
eval { $h->quit; };
my @rest = grep { $_ != $leader } @nodes;
RaftpgTest::wait_leader(\@rest);
RaftpgTest::restart_killed($leader);
my $new = RaftpgTest::wait_leader(@nodes);
$new->safe_psql('postgres', q{INSERT INTO public.big VALUES (0, 3, 'after')});
RaftpgTest::check_same($new, 'public.big', 'id', 'after a leader was killed during a large commit', @nodes);
my $batch2 = $new->safe_psql('postgres', 'SELECT count(*) FROM public.big WHERE batch = 2');
ok($batch2 == 0 || $batch2 == 40000,
	"the interrupted transaction is wholly there or wholly absent ($batch2 of 40000 rows)");

RaftpgTest::stop_nodes(@nodes);
done_testing();
