# test/t/RaftpgTest.pm
#
# Helpers shared by raftpg's TAP tests: start servers that preload raftpg,
# each with its own node name, and wait for their node workers.  Built on
# PostgreSQL::Test::Cluster, so servers listen on unix sockets in a private
# temporary directory (or 127.0.0.1 where unix sockets are unavailable),
# never on a public address.
#
#   my @nodes = RaftpgTest::start_nodes(3);   # node1 .. node3, extension created
#   my $pid = RaftpgTest::wait_for_worker($nodes[0]);
#   RaftpgTest::stop_nodes(@nodes);

package RaftpgTest;

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

# Start $n servers named node1 .. node$n with raftpg preloaded, create the
# extension on each and return the PostgreSQL::Test::Cluster objects.
# %opts: extra_conf => text appended to every postgresql.conf;
#        relay => a RaftpgRelay: each server runs with its service file;
#        name_prefix => names are <prefix>1.. (default "node");
#        create_extension => 0 to leave the extension out.
sub start_nodes
{
	my ($n, %opts) = @_;
	my @nodes = init_nodes($n, %opts);

	for my $node (@nodes)
	{
		local $ENV{PGSERVICEFILE} = $opts{relay}->env_for($node)
		  if $opts{relay};
		$node->start;
	}

	if (!defined $opts{create_extension} || $opts{create_extension})
	{
		$_->safe_psql('postgres', 'CREATE EXTENSION raftpg') for @nodes;
	}

	return @nodes;
}

# Create (initdb) $n servers named <prefix>1.. with raftpg preloaded, not
# started.
sub init_nodes
{
	my ($n, %opts) = @_;
	my @nodes;

	my $prefix = $opts{name_prefix} // 'node';
	for my $i (1 .. $n)
	{
		my $name = "$prefix$i";
		my $node = PostgreSQL::Test::Cluster->new($name);
		$node->init;
		$node->append_conf(
			'postgresql.conf', qq{
shared_preload_libraries = 'raftpg'
raftpg.node_name = '$name'
});
		$node->append_conf('postgresql.conf', $opts{extra_conf})
		  if defined $opts{extra_conf};
		push @nodes, $node;
	}
	return @nodes;
}

# Wait until raftpg.status() on $node shows a running node worker other than
# $not_pid (if given); return its pid.  Dies on timeout.
sub wait_for_worker
{
	my ($node, $not_pid) = @_;
	my $cond = 'worker_pid IS NOT NULL';
	$cond .= " AND worker_pid <> $not_pid" if defined $not_pid;

	$node->poll_query_until('postgres',
		"SELECT $cond FROM raftpg.status()")
	  or die $node->name . ": raftpg node worker did not start";

	return $node->safe_psql('postgres',
		'SELECT worker_pid FROM raftpg.status()');
}

# How other servers reach $node: its socket directory and port.
sub conninfo
{
	my ($node) = @_;
	return "service=" . $node->name if $node->{raftpg_relayed};
	return 'host=' . $node->host . ' port=' . $node->port . ' dbname=postgres';
}

# Form a cluster of @nodes: create_cluster on the first, add_node of every
# other on it.  Returns the leader (the first node).
sub form_cluster
{
	my (@nodes) = @_;
	my $first = $nodes[0];

	$first->safe_psql('postgres',
		"SELECT raftpg.create_cluster('" . conninfo($first) . "')");
	wait_leader($first);
	for my $n (@nodes[ 1 .. $#nodes ])
	{
		$first->safe_psql('postgres',
			"SELECT raftpg.add_node('" . $n->name . "', '" . conninfo($n) . "')");
	}
	return $first;
}

# Wait until one of @nodes is the leader with an entry of its term
# committed and every other node of @nodes follows it; return the leader.
# Dies after $timeout seconds (default 60).
sub wait_leader
{
	my ($nodes, $timeout) = (ref $_[0] eq 'ARRAY' ? ($_[0], $_[1]) : ([@_], undef));
	my $deadline = time() + ($timeout // 60);
	while (time() < $deadline)
	{
		my ($leader, $agree) = (undef, 1);
		for my $n (@$nodes)
		{
			my $row = $n->safe_psql('postgres',
				q{SELECT role || '|' || coalesce(leader_name, '') || '|' ||
						 (commit_index = last_log_index AND last_log_term = term)
				  FROM raftpg.status()});
			my ($role, $lname, $caught) = split /\|/, $row;
			$leader = $n if $role eq 'leader' && $caught eq 'true';
			$agree = 0 if !defined $lname || $lname eq '';
		}
		if (defined $leader && $agree)
		{
			my $lname = $leader->name;
			my $all = 1;
			for my $n (@$nodes)
			{
				$all = 0
				  if $n->safe_psql('postgres',
					'SELECT leader_name FROM raftpg.status()') ne $lname;
			}
			return $leader if $all;
		}
		select(undef, undef, undef, 0.05);
	}
	die "no leader agreed on by " . join(', ', map { $_->name } @$nodes);
}

# Wait until every node of @nodes has applied up to $index.
sub wait_applied
{
	my ($index, @nodes) = @_;
	for my $n (@nodes)
	{
		$n->poll_query_until('postgres',
			"SELECT applied_index >= $index FROM raftpg.status()")
		  or die $n->name . " did not reach index $index";
	}
	return;
}

# Poll $query on $node until it returns 't'; false after $timeout seconds
# (default 60).
sub poll_true
{
	my ($node, $query, $timeout) = @_;
	my $deadline = time() + ($timeout // 60);
	while (time() < $deadline)
	{
		return 1 if $node->safe_psql('postgres', $query) eq 't';
		select(undef, undef, undef, 0.05);
	}
	return 0;
}

# A digest of the log table up to $upto.
sub log_digest
{
	my ($node, $upto) = @_;
	return $node->safe_psql('postgres',
		qq{SELECT count(*) || ':' || coalesce(md5(string_agg(index || '/' || term || '/' || kind || '/' || encode(payload, 'hex'), ',' ORDER BY index)), '')
		   FROM raftpg.log_entries WHERE index <= $upto});
}

# A digest of a table's rows, ordered by $order (its primary key), and the
# row count: equal digests mean identical contents.
sub table_digest
{
	my ($node, $table, $order) = @_;
	return $node->safe_psql('postgres',
		qq{SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, E'\n' ORDER BY $order)), '')
		   FROM $table t});
}

# Wait until every node has applied what the leader last committed, then
# check that $table is identical everywhere; one test per node.
sub check_same
{
	my ($leader, $table, $order, $what, @nodes) = @_;
	my $commit = $leader->safe_psql('postgres', 'SELECT commit_index FROM raftpg.status()');
	wait_applied($commit, $leader, @nodes);
	my $want = table_digest($leader, $table, $order);
	for my $n (@nodes)
	{
		next if $n == $leader;
		Test::More::is(table_digest($n, $table, $order), $want,
			$n->name . ": $table identical to the leader's ($what)");
	}
	return $want;
}

# Start $k clients, each a shell loop inserting rows (id, client) into
# $table with ids client*1000000 + 1, 2, ... through psql, one
# transaction per row, against whichever node takes writes (a follower's
# 25006 and a refused connection send it to the next node).  Each client
# appends "id outcome" lines to $dir/client<k>.log: outcome "ok"
# (acknowledged), "unknown" (08007, or the connection lost during the
# commit) or the SQLSTATE of a definite failure.  They run until
# stop_writers().  Returns the IPC::Run handles.
sub start_writers
{
	my ($k, $dir, $table, @nodes) = @_;
	my $conns = join(' ', map { "'" . $_->connstr('postgres') . "'" } @nodes);
	my $script = "$dir/writer.sh";
	open(my $fh, '>', $script) or die "cannot write $script: $!";
	my $text = <<'SH';
#!/bin/bash
# writer.sh CLIENT: insert rows until @DIR@/stop exists
c=$1
i=$((c * 1000000))
nodes=(@CONNS@)
while [ ! -e '@DIR@/stop' ]; do
	i=$((i + 1))
	done=
	while [ -z "$done" ] && [ ! -e '@DIR@/stop' ]; do
		for conn in "${nodes[@]}"; do
			out=$(psql -X -At -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -d "$conn" \
				-c "INSERT INTO @TABLE@ VALUES ($i, $c)" 2>&1)
			rc=$?
			code=$(printf '%s' "$out" | grep -o 'ERROR:  [0-9A-Z]\{5\}' | head -1 | cut -c9-)
			if [ $rc = 0 ]; then done=ok
			elif [ "$code" = 25006 ]; then continue
			elif [ "$code" = 08007 ]; then done=unknown
			elif [ -n "$code" ]; then done=$code
			elif printf '%s' "$out" | grep -q -e 'Connection refused' -e 'No such file' \
				-e 'could not connect' -e 'the database system is' -e 'connection to server .* failed'; then continue
			else done=unknown
			fi
			break
		done
		[ -n "$done" ] || sleep 0.05
	done
	[ -n "$done" ] && echo "$i $done" >> "@DIR@/client$c.log"
done
SH
	$text =~ s/\@DIR\@/$dir/g;
	$text =~ s/\@CONNS\@/$conns/g;
	$text =~ s/\@TABLE\@/$table/g;
	print $fh $text;
	close($fh);
	chmod 0755, $script;
	unlink "$dir/stop";
	return map { IPC::Run::start([ $script, $_ ]) } 1 .. $k;
}

# Stop the writers and return { id => outcome } over all their logs.
sub stop_writers
{
	my ($dir, @handles) = @_;
	open(my $fh, '>', "$dir/stop") or die "cannot write $dir/stop: $!";
	close($fh);
	$_->finish for @handles;
	my %outcome;
	for my $log (glob("$dir/client*.log"))
	{
		open(my $in, '<', $log) or die "cannot read $log: $!";
		while (my $line = <$in>)
		{
			chomp $line;
			my ($id, $what) = split / /, $line;
			$outcome{$id} = $what;
		}
		close($in);
	}
	return \%outcome;
}

# kill -9 the postmaster of $node and wait until it is really gone (reaped,
# not a zombie whose pid would make a restart believe it still runs).
sub kill9
{
	my ($node) = @_;
	my $pid = $node->{_pid};
	$node->kill9;
	my $deadline = time() + 30;
	while (time() < $deadline)
	{
		last unless -e "/proc/$pid";
		select(undef, undef, undef, 0.02);
	}
	return;
}

# Start $node, retrying while the remains of a killed postmaster (children
# still detaching from shared memory) make the start fail.
sub restart_killed
{
	my ($node) = @_;
	my $deadline = time() + 60;
	while (time() < $deadline)
	{
		return if $node->start(fail_ok => 1);
		select(undef, undef, undef, 0.2);
	}
	die $node->name . ' did not start again';
}

# Stop every node given, fast.
sub stop_nodes
{
	my (@nodes) = @_;
	$_->stop('fast') for @nodes;
	return;
}

1;
