# test/t/006_partition.pl
#
# Partitions as real message loss: every server reaches the others through
# a TCP relay per ordered pair (RaftpgRelay), and a cut closes the relay's
# connections.  A minority cut off both ways -- the leader among it --
# neither elects a leader nor commits; the majority elects one and
# commits; after healing, every server converges on the majority's log and
# the minority's uncommitted entry is gone, also where it shared a log row
# with a committed one.  A one-way cut (the leader can
# send but not hear back) also makes the leader step down.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

use RaftpgRelay;
use RaftpgTest;

my @nodes = RaftpgTest::init_nodes(5,
	extra_conf => "raftpg.commit_timeout = '3s'\nlog_statement = 'none'\n");
$_->{raftpg_relayed} = 1 for @nodes;
my $relay = RaftpgRelay->new(@nodes);
for my $node (@nodes)
{
	local $ENV{PGSERVICEFILE} = $relay->env_for($node);
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION raftpg');
}
my ($n1, $n2, $n3, $n4, $n5) = @nodes;

RaftpgTest::form_cluster(@nodes);
my $leader = RaftpgTest::wait_leader(@nodes);
my $committed = $leader->safe_psql('postgres', "SELECT raftpg.propose('before')");
RaftpgTest::wait_applied($committed, @nodes);

# ---- minority {leader, one follower} against majority {three}
my @minority = ($leader, grep { $_ != $leader } @nodes)[0, 1];
my @majority = grep { my $x = $_; !grep { $_ == $x } @minority } @nodes;
my $follower = $minority[1];

# The minority's follower is to store a committed entry and the minority's
# uncommitted one in one log row, so that converging later rewrites a row
# in part: its node worker is stopped (SIGSTOP, by pid) while the leader
# commits 'before split' without it and then writes 'minority write' in the
# minority; both APPENDs wait in its inbox, and once it runs again it
# persists them as one batch.
my $fpid = RaftpgTest::wait_for_worker($follower);
kill 'STOP', $fpid or die "cannot stop the node worker $fpid";
# resumed below; and on any way out, so that its server can stop
END { kill 'CONT', $fpid if $fpid; }
my $split = $leader->safe_psql('postgres', "SELECT raftpg.propose('before split')");
$relay->partition(map { $_->name } @minority);

my ($ret, $out, $err) = $leader->psql('postgres', "SELECT raftpg.propose('minority write')");
kill 'CONT', $fpid or die "cannot resume the node worker $fpid";
isnt($ret, 0, 'the old leader cannot commit in the minority');
like($err, qr/not committed within raftpg.commit_timeout|leadership changed|not the leader/,
	'... and says the outcome is unknown or refuses');
$follower->poll_query_until('postgres',
	"SELECT last_log_index > $split FROM raftpg.status()")
  or die $follower->name . ' did not get the minority write';
is( $follower->safe_psql(
		'postgres',
		"SELECT first_index <= $split AND last_index > $split FROM raftpg.log
		  WHERE first_index <= $split ORDER BY first_index DESC LIMIT 1"),
	't',
	$follower->name . ': one log row holds the committed entry and the uncommitted one');

my $new = RaftpgTest::wait_leader(\@majority, 60);
ok((grep { $_ == $new } @majority), 'the majority elected a leader: ' . $new->name);
my $maj = $new->safe_psql('postgres', "SELECT raftpg.propose('majority write')");
cmp_ok($maj, '>', $committed, 'the majority commits');

# the minority has no leader, and commits nothing new (poll a while: CheckQuorum
# makes the old leader step down within an election timeout)
my $deadline = time() + 10;
my $minority_leader = 1;
while (time() < $deadline)
{
	$minority_leader = grep {
		$_->safe_psql('postgres', 'SELECT role FROM raftpg.status()') eq 'leader'
	} @minority;
	last unless $minority_leader;
	usleep(50_000);
}
is($minority_leader, 0, 'nobody in the minority is leader (CheckQuorum)');
for my $m (@minority)
{
	is( $m->safe_psql('postgres', "SELECT commit_index <= $split FROM raftpg.status()"),
		't', $m->name . ': commit index did not move in the minority');
}

# ---- heal: everyone converges on the majority's log
$relay->heal;
my $final = RaftpgTest::wait_leader(\@nodes, 60);
my $last = $final->safe_psql('postgres', "SELECT raftpg.propose('after heal')");
RaftpgTest::wait_applied($last, @nodes);
my $digest = RaftpgTest::log_digest($final, $last);
is(RaftpgTest::log_digest($_, $last), $digest, $_->name . ': converged')
  for @nodes;
is( $final->safe_psql(
		'postgres',
		q{SELECT string_agg(convert_from(substr(payload, 2), 'UTF8'), ',' ORDER BY index)
		  FROM raftpg.log_entries WHERE kind = 1}),
	'before,before split,majority write,after heal',
	"the minority's uncommitted write is gone, the majority's is there");
is( $follower->safe_psql(
		'postgres',
		"SELECT count(*) FROM raftpg.log_entries
		  WHERE index > $split AND convert_from(substr(payload, 2), 'UTF8') = 'minority write'"),
	'0', $follower->name . ': the row was rewritten without the uncommitted entry');

# ---- one-way: the leader's messages get out, nothing comes back
$leader = $final;
$relay->cut($_->name, $leader->name) for grep { $_ != $leader } @nodes;
my @others = grep { $_ != $leader } @nodes;
$new = RaftpgTest::wait_leader(\@others, 60);
isnt($new->name, $leader->name, 'with replies cut, another server took over');
$leader->poll_query_until('postgres',
	q{SELECT role <> 'leader' FROM raftpg.status()})
  or die 'the deaf leader did not step down';
pass('the leader that hears nobody stepped down');
$relay->heal;
$last = RaftpgTest::wait_leader(\@nodes, 60)
  ->safe_psql('postgres', "SELECT raftpg.propose('after one-way')");
RaftpgTest::wait_applied($last, @nodes);
$digest = RaftpgTest::log_digest($nodes[0], $last);
is(scalar(grep { RaftpgTest::log_digest($_, $last) eq $digest } @nodes),
	5, 'all five converge after the one-way cut heals');

RaftpgTest::stop_nodes(@nodes);
$relay->stop;
done_testing();
