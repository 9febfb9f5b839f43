# test/t/009_ddl.pl
#
# DDL on replicated tables, on three servers: each statement runs on every
# node at the same point of the table's history, so that after each step
# every node has the same rows and the same definition.  Statements
# interleaved with writes from other sessions, and with writes of a
# session that keeps its backend across them; a transaction mixing rows
# and statements, with a savepoint rolled back; the search path and the
# settings a statement's constants are read with; followers refuse DDL
# with 25006; DROP TABLE drops the table everywhere.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

use RaftpgTest;

my @nodes = RaftpgTest::start_nodes(3);
my ($n1, $n2, $n3) = @nodes;
my $leader = RaftpgTest::form_cluster(@nodes);
RaftpgTest::wait_leader(@nodes);

# Every node has the leader's rows and definition of $table.
sub check_table
{
	my ($table, $what) = @_;
	RaftpgTest::check_same($leader, $table, 'id', $what, @nodes);
	my $def = "SELECT array_to_string(raftpg.table_definition('$table'), E'\\n')";
	my $want = $leader->safe_psql('postgres', $def);
	for my $n (grep { $_ != $leader } @nodes)
	{
		is($n->safe_psql('postgres', $def), $want,
			$n->name . ": $table defined as on the leader ($what)");
	}
	return;
}

$leader->safe_psql('postgres', q{
	CREATE SCHEMA app;
	CREATE TABLE app.items (id int PRIMARY KEY, qty int NOT NULL);
	INSERT INTO app.items SELECT g, g FROM generate_series(1, 100) g;
	CREATE TABLE app.events (id int PRIMARY KEY, client int NOT NULL);
	SELECT raftpg.replicate_table('app.items');
	SELECT raftpg.replicate_table('app.events');
});
check_table('app.items', 'replicated');

# ---- writes from other sessions while the statements run: shell loops,
# a connection per row, and one session that keeps its backend (and its
# description of the table) across every statement
my $dir = PostgreSQL::Test::Utils::tempdir;
my @writers = RaftpgTest::start_writers(2, $dir, 'app.events', $leader,
	grep { $_ != $leader } @nodes);
$leader->safe_psql('postgres', q{
	CREATE TABLE public.stop_writer (x int);
	CREATE PROCEDURE public.writer(first int) LANGUAGE plpgsql AS $$
	DECLARE
		i int := first;
	BEGIN
		WHILE NOT EXISTS (SELECT 1 FROM public.stop_writer) LOOP
			INSERT INTO app.events (id, client) VALUES (i, 0);
			COMMIT;
			i := i + 1;
			PERFORM pg_sleep(0.005);
		END LOOP;
	END $$;
});
my ($wout, $werr) = ('', '');
my $session = IPC::Run::start(
	[
		'psql', '-X', '-v', 'ON_ERROR_STOP=1', '-d',
		$leader->connstr('postgres'), '-c', 'CALL public.writer(5000001)'
	],
	'>', \$wout, '2>', \$werr);

# ---- step by step on app.items, each checked on every node; the same
# statements on app.events under the writers
sub step
{
	my ($what, $sql, $events, $table) = @_;
	$leader->safe_psql('postgres', $sql);
	$leader->safe_psql('postgres', $events) if defined $events;
	check_table($table // 'app.items', $what);
	return;
}

step('ADD COLUMN with a constant default, then rows using it', q{
	INSERT INTO app.items VALUES (101, 101);
	ALTER TABLE app.items ADD COLUMN price numeric NOT NULL DEFAULT 1.5;
	UPDATE app.items SET price = qty * 2 WHERE id % 3 = 0;
	INSERT INTO app.items VALUES (102, 102, 9.99);
}, q{ALTER TABLE app.events ADD COLUMN note text NOT NULL DEFAULT 'none'});

step('CREATE INDEX', q{
	CREATE INDEX items_price ON app.items (price);
	INSERT INTO app.items VALUES (103, 103, 3);
	UPDATE app.items SET price = price + 1 WHERE price > 100;
}, q{CREATE INDEX events_note ON app.events (note)});

step('ALTER COLUMN TYPE int to bigint', q{
	ALTER TABLE app.items ALTER COLUMN qty TYPE bigint;
	UPDATE app.items SET qty = qty * 10000000000 WHERE id <= 10;
	INSERT INTO app.items VALUES (104, 40000000000, 4);
}, q{ALTER TABLE app.events ALTER COLUMN client TYPE bigint});

step('RENAME COLUMN', q{
	ALTER TABLE app.items RENAME COLUMN price TO unit_price;
	INSERT INTO app.items (id, qty, unit_price) VALUES (105, 105, 5);
	UPDATE app.items SET unit_price = 0 WHERE id = 1;
}, q{
	ALTER TABLE app.events RENAME COLUMN note TO label;
	UPDATE app.events SET label = 'updated' WHERE id % 7 = 0;
});

step('DROP COLUMN', q{
	ALTER TABLE app.items DROP COLUMN unit_price;
	INSERT INTO app.items VALUES (106, 106);
	DELETE FROM app.items WHERE id = 2;
}, q{ALTER TABLE app.events DROP COLUMN label});

step('a transaction mixing rows and statements, with a savepoint rolled back', q{
	BEGIN;
	INSERT INTO app.items VALUES (107, 107);
	ALTER TABLE app.items ADD COLUMN tag text DEFAULT 't';
	UPDATE app.items SET tag = 'x' || id WHERE id % 5 = 0;
	INSERT INTO app.items VALUES (108, 108, 'eight');
	ALTER TABLE app.items ALTER COLUMN tag SET NOT NULL;
	SAVEPOINT s;
	ALTER TABLE app.items DROP COLUMN tag;
	INSERT INTO app.items VALUES (109, 109);
	ROLLBACK TO s;
	DELETE FROM app.items WHERE id > 105 AND id < 108;
	ALTER TABLE app.items ADD CONSTRAINT items_qty_positive CHECK (qty > 0);
	UPDATE app.items SET tag = 'last' WHERE id = 108;
	COMMIT;
}, q{ALTER TABLE app.events ADD COLUMN extra int DEFAULT 42});

step('the search path and the settings the constants are read with', q{
	SET search_path = app;
	SET DateStyle = 'SQL, DMY';
	SET TimeZone = 'Asia/Tokyo';
	ALTER TABLE items ADD COLUMN since date NOT NULL DEFAULT '01/02/2024';
	ALTER TABLE items ADD COLUMN at timestamptz NOT NULL DEFAULT '2024-01-01 09:00';
	INSERT INTO items (id, qty, tag) VALUES (110, 110, 'ten');
});
is( $n3->safe_psql('postgres',
		q{SELECT since, at AT TIME ZONE 'UTC' FROM app.items WHERE id = 1}),
	'2024-02-01|2024-01-01 00:00:00',
	'the constants mean on a follower what they meant to the leader\'s session');

step('RENAME TO', q{
	ALTER TABLE app.items RENAME TO things;
	INSERT INTO app.things (id, qty, tag) VALUES (111, 111, 'eleven');
}, undef, 'app.things');

# (the schema must exist on every node: CREATE SCHEMA is not replicated)
$_->safe_psql('postgres', 'CREATE SCHEMA app2') for @nodes;
step('SET SCHEMA', q{
	ALTER TABLE app.things SET SCHEMA app2;
	INSERT INTO app2.things (id, qty, tag) VALUES (112, 112, 'moved');
	ALTER TABLE app2.things SET SCHEMA app;
}, undef, 'app.things');

# ---- the writers stop: every acknowledged row, everywhere
$leader->safe_psql('postgres', q{INSERT INTO public.stop_writer VALUES (1)});
ok($session->finish, 'the session that kept its backend wrote on through every statement')
  or diag($werr);
my $outcome = RaftpgTest::stop_writers($dir, @writers);
my @ok = grep { $outcome->{$_} eq 'ok' } keys %$outcome;
ok(@ok > 0, scalar(@ok) . ' rows acknowledged to the other writers');
check_table('app.events', 'statements under concurrent writers');
my $session_rows = $leader->safe_psql('postgres',
	q{SELECT count(*) FROM app.events WHERE id > 5000000});
ok($session_rows > 0, "$session_rows rows from the session that kept its backend");
for my $n (@nodes)
{
	my %have = map { $_ => 1 } split /\n/,
	  $n->safe_psql('postgres', q{SELECT id FROM app.events WHERE id < 5000000});
	my @missing = grep { !$have{$_} } @ok;
	is(scalar(@missing), 0, $n->name . ': every acknowledged row is there')
	  or diag("missing: @missing[0 .. ($#missing < 9 ? $#missing : 9)]");
}
is( $n2->safe_psql('postgres',
		q{SELECT string_agg(DISTINCT format_type(atttypid, atttypmod) || ' ' || attname, ', ')
		  FROM pg_attribute WHERE attrelid = 'app.events'::regclass AND attnum > 0
		  AND NOT attisdropped}),
	'bigint client, integer extra, integer id',
	'the statements under the writers reached the followers');

# ---- followers refuse DDL on replicated tables at once, naming the leader
my $lname = $leader->name;
for my $n (grep { $_ != $leader } @nodes)
{
	for my $sql (
		q{ALTER TABLE app.things ADD COLUMN z int},
		q{CREATE INDEX ON app.things (qty)},
		q{ALTER TABLE app.things RENAME COLUMN qty TO q},
		q{DROP INDEX app.items_pkey},
		q{DROP TABLE app.things})
	{
		my ($ret, $out, $err) = $n->psql('postgres', $sql,
			extra_params => [ '-v', 'VERBOSITY=verbose' ]);
		like($err,
			qr/25006: cannot write replicated table "things" on a raftpg follower.*HINT:\s+The leader is node "$lname", reachable at "[^"]+"/s,
			$n->name . ": refused with 25006 and the leader: $sql");
	}
	my $rc = $n->psql('postgres', q{ALTER TABLE app.things SET (fillfactor = 70)});
	is($rc, 0, $n->name . ': a local setting of the table is allowed');
}

# ---- refused on the leader after it ran: nothing reaches the others
my ($ret, $out, $err) = $leader->psql('postgres',
	q{ALTER TABLE app.things ADD COLUMN r float8 DEFAULT random()},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/0A000: cannot add column "r" to replicated table "things", which has rows/,
	'a default every node would compute differently is refused');
$leader->safe_psql('postgres', q{INSERT INTO app.things (id, qty, tag) VALUES (113, 113, 'thirteen')});
check_table('app.things', 'after a refused statement');

# ---- DROP TABLE, everywhere
$leader->safe_psql('postgres', q{
	INSERT INTO app.things (id, qty, tag) VALUES (114, 114, 'dropped with the table');
	DROP TABLE app.things;
});
my $commit = $leader->safe_psql('postgres', 'SELECT commit_index FROM raftpg.status()');
RaftpgTest::wait_applied($commit, @nodes);
for my $n (@nodes)
{
	is( $n->safe_psql('postgres',
			q{SELECT to_regclass('app.things') IS NULL,
					 (SELECT string_agg(table_name, ',') FROM raftpg.replicated_tables),
					 (SELECT count(*) FROM raftpg.replicated r
					  WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = r.relid))}),
		't|events|0',
		$n->name . ': the table is gone, and out of raftpg.replicated');
}
is( $n2->safe_psql('postgres',
		q{SELECT applied_index = commit_index FROM raftpg.status()}),
	't', 'apply is not stuck on any statement');

RaftpgTest::stop_nodes(@nodes);
done_testing();
