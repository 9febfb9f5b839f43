# test/t/002_cluster.pl
#
# Clusters of PostgreSQL servers form with a few SQL calls, elect a leader,
# replicate entries (the log tables match on every server up to the commit
# index), and refuse cluster operations clearly where they cannot be done.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

use RaftpgTest;

# ---- three servers: three SQL calls after CREATE EXTENSION
my @nodes = RaftpgTest::start_nodes(3);
my ($n1, $n2, $n3) = @nodes;

my $leader = RaftpgTest::form_cluster(@nodes);
is($leader->name, 'node1', 'the server that created the cluster leads it');
RaftpgTest::wait_leader(@nodes);

is( $n1->safe_psql(
		'postgres',
		q{SELECT string_agg(node_name || ':' || membership || ':' || reachable, ',' ORDER BY node_id)
		  FROM raftpg.nodes}),
	'node1:voter:true,node2:voter:true,node3:voter:true',
	'raftpg.nodes lists three reachable voters');

for my $n (@nodes)
{
	is( $n->safe_psql(
			'postgres',
			q{SELECT role <> 'candidate', voter, leader_name FROM raftpg.status()}),
		't|t|node1',
		$n->name . ': a voter following node1');
}

# peers stream their messages: on every server, one backend per other
# server receives them in COPY BOTH mode, and holds no xmin back from
# vacuum however long it runs; with raftpg.direct_receive on (the default)
# it hands its socket to the node worker, which reads the stream itself
for my $n (@nodes)
{
	ok( $n->poll_query_until(
			'postgres',
			q{SELECT count(*) FROM pg_stat_activity
			  WHERE query = 'raftpg: receiving messages, read by the node worker'},
			'2'),
		$n->name . ': one message stream in from each other server, read by the node worker');
	is( $n->safe_psql(
			'postgres',
			q{SELECT count(backend_xmin), count(backend_xid)
			  FROM pg_stat_activity
			  WHERE query LIKE 'raftpg: receiving messages%'}),
		'0|0',
		$n->name . ': the streams hold no xmin and no xid');
}

# a quiet stream (between two followers nothing flows) still serves
# procsignal barriers: DROP DATABASE waits until every backend of the
# server has absorbed one
{
	my ($out, $err);
	my $rc = $n2->psql(
		'postgres',
		'CREATE DATABASE regress_barrier; DROP DATABASE regress_barrier;',
		stdout => \$out,
		stderr => \$err,
		timeout => 60,
		timed_out => \my $timed_out);
	ok(!$timed_out && $rc == 0,
		'node2: DROP DATABASE completes while the streams into it are quiet');
}

# entries committed on the leader reach every log
my $last;
for my $i (1 .. 20)
{
	$last = $n1->safe_psql('postgres', "SELECT raftpg.propose('entry $i')");
}
RaftpgTest::wait_applied($last, @nodes);
my $digest = RaftpgTest::log_digest($n1, $last);
like($digest, qr/^$last:/, "the leader's log holds $last entries");
for my $n ($n2, $n3)
{
	is(RaftpgTest::log_digest($n, $last), $digest,
		$n->name . ": log table identical to the leader's up to $last");
	is( $n->safe_psql(
			'postgres',
			'SELECT s.last_log_index = t.last_log_index AND s.last_log_index = (SELECT max(index) FROM raftpg.log_entries)
			 FROM raftpg.status() s, raftpg.state t'),
		't',
		$n->name . ': status(), state row and log table agree');
}

# a cancel cannot take a stream back from the node worker: the backend
# holds it off, and the same streams go on carrying entries
my $direct_pids = q{SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity
	WHERE query = 'raftpg: receiving messages, read by the node worker'};
my $before = $n2->safe_psql('postgres', $direct_pids);
is( $n2->safe_psql(
		'postgres',
		q{SELECT bool_and(pg_cancel_backend(pid)) FROM pg_stat_activity
		  WHERE query = 'raftpg: receiving messages, read by the node worker'}),
	't', 'node2: the streams read by the node worker were sent a cancel');
$last = $n1->safe_psql('postgres', "SELECT raftpg.propose('after the cancel')");
RaftpgTest::wait_applied($last, @nodes);
is($n2->safe_psql('postgres', $direct_pids), $before,
	'node2: the same backends still hand their streams to the node worker');

# a pass of the node worker reads the sockets its wait found readable, not
# every socket it has: one proposal after another, each member's passes
# find nothing in few reads (0.05-0.07 per pass when this was written).
# Reading every socket, each pass of every member found nothing in four:
# the stream of the peer that sent nothing, the connections to the peers,
# the hand-off socket.  Passes that read everything anyway (once per
# heartbeat interval, or without a wait) stay well below that.
my $reads = q{SELECT worker_passes || '|' || socket_reads_empty FROM raftpg.stats};
my %reads0 = map { $_->name => $_->safe_psql('postgres', $reads) } @nodes;
$last = $n1->safe_psql('postgres',
	join('', map { "SELECT raftpg.propose('one of many $_');\n" } 1 .. 200));
RaftpgTest::wait_applied((split /\n/, $last)[-1], @nodes);
for my $n (@nodes)
{
	my ($p0, $e0) = split /\|/, $reads0{ $n->name };
	my ($p1, $e1) = split /\|/, $n->safe_psql('postgres', $reads);
	my $per_pass = ($e1 - $e0) / ($p1 - $p0);
	cmp_ok($per_pass, '<', 2,
		$n->name . sprintf(': %.2f empty socket reads per pass (%d passes)',
			$per_pass, $p1 - $p0));
}

# a stream read by the node worker ends with its backend, and the peer
# reconnects; with raftpg.direct_receive off the new backends pass the
# messages on themselves, and the cluster goes on committing through them
$n3->append_conf('postgresql.conf', "raftpg.direct_receive = off\n");
$n3->reload;
is( $n3->poll_query_until(
		'postgres', q{SELECT current_setting('raftpg.direct_receive')}, 'off'),
	1, 'node3: raftpg.direct_receive turned off');
$n3->safe_psql('postgres',
	q{SELECT pg_terminate_backend(pid) FROM pg_stat_activity
	  WHERE query = 'raftpg: receiving messages, read by the node worker'});
ok( $n3->poll_query_until(
		'postgres',
		q{SELECT count(*) FILTER (WHERE query = 'raftpg: receiving messages')
				 || '/' || count(*)
		  FROM pg_stat_activity WHERE query LIKE 'raftpg: receiving messages%'},
		'2/2'),
	'node3: the peers reconnected, and the backends pass their messages on');
$last = $n1->safe_psql('postgres', "SELECT raftpg.propose('after the reconnection')");
RaftpgTest::wait_applied($last, @nodes);
is(RaftpgTest::log_digest($n3, $last), RaftpgTest::log_digest($n1, $last),
	'node3: entries keep arriving through the passed-on streams');

# a stream backend reloads the configuration on SIGHUP, and still holds
# no xmin after it (check hooks may read the catalogs)
$n3->safe_psql('postgres', 'SELECT pg_reload_conf()');
$last = $n1->safe_psql('postgres', "SELECT raftpg.propose('after the reload')");
RaftpgTest::wait_applied($last, @nodes);
is( $n3->safe_psql(
		'postgres',
		q{SELECT count(*), count(backend_xmin), count(backend_xid)
		  FROM pg_stat_activity WHERE query = 'raftpg: receiving messages'}),
	'2|0|0',
	'node3: after a reload the passed-on streams hold no xmin and no xid');

# the leader's view of its followers
is( $n1->safe_psql(
		'postgres',
		"SELECT bool_and(match_index = $last AND lag = 0) FROM raftpg.nodes"),
	't',
	'the leader sees every follower caught up');

cmp_ok($n1->safe_psql('postgres', 'SELECT appends FROM raftpg.stats'),
	'>', 0, 'raftpg.stats counts appends');

# an idle member's node worker sleeps between its ticks (heartbeats every
# 100 ms): it goes round its loop a few times per tick, not hundreds of
# times in the last millisecond before each (a wait rounded down to 0 ms)
for my $n ($n1, $n2)
{
	my $passes = sub {
		return $n->safe_psql('postgres',
			'SELECT worker_passes, messages_in FROM raftpg.stats');
	};
	my ($p0, $m0) = split /\|/, $passes->();
	my $t0 = time();
	# the measuring interval, not a wait for a condition
	$n->safe_psql('postgres', 'SELECT pg_sleep(2)');
	my ($p1, $m1) = split /\|/, $passes->();
	my $rate = ($p1 - $p0) / (time() - $t0);
	cmp_ok($rate, '<', 100,
		$n->name . sprintf(': an idle node worker goes round %.0f times a second (%d messages in)',
			$rate, $m1 - $m0));
}

# ---- errors
my ($ret, $out, $err) = $n2->psql('postgres', "SELECT raftpg.propose('x')");
isnt($ret, 0, 'a follower refuses to append');
like($err, qr/this node is not the leader/, '... saying it is not the leader');
my $connstr = RaftpgTest::conninfo($n1);
like($err, qr/The leader is node "node1", reachable at "\Q$connstr\E"/,
	'... and the hint names the leader and how to reach it');

($ret, $out, $err) = $n1->psql('postgres',
	"SELECT raftpg.add_node('node2', 'host=/nonexistent port=1')");
like($err, qr/node "node2" is already a member/, 'duplicate name refused');

my @extra = RaftpgTest::start_nodes(1, name_prefix => 'spare');
($ret, $out, $err) = $n1->psql('postgres',
	"SELECT raftpg.add_node('wrongname', '" . RaftpgTest::conninfo($extra[0]) . "')");
like($err, qr/this server is node "spare1", not "wrongname"/,
	'a name that does not match the server is refused');
($ret, $out, $err) = $n1->psql('postgres',
	"SELECT raftpg.add_node('ghost', 'host=127.0.0.1 port=1')");
like($err, qr/could not connect to node "ghost"/, 'an unreachable server is refused');
is($n1->safe_psql('postgres', 'SELECT count(*) FROM raftpg.nodes'), '3',
	'failed additions changed nothing');

# ---- five servers
my @five = RaftpgTest::start_nodes(5, name_prefix => 'five');
RaftpgTest::form_cluster(@five);
my $l5 = RaftpgTest::wait_leader(@five);
$last = $l5->safe_psql('postgres', "SELECT raftpg.propose('five')");
RaftpgTest::wait_applied($last, @five);
$digest = RaftpgTest::log_digest($l5, $last);
is(scalar(grep { RaftpgTest::log_digest($_, $last) eq $digest } @five),
	5, 'five servers hold identical logs');

RaftpgTest::stop_nodes(@nodes, @extra, @five);
done_testing();
