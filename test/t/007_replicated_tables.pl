# test/t/007_replicated_tables.pl
#
# Replicated tables on three servers: replicate_table() ships definition
# and rows; every kind of write on the leader reaches every node, compared
# row by row; rolled-back work is never replicated; followers refuse
# writes with 25006 naming the leader; concurrent writers on overlapping
# rows leave identical tables; unreplicate_table() leaves plain tables.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use RaftpgTest;

my @nodes = RaftpgTest::start_nodes(3);
my ($n1, $n2, $n3) = @nodes;
my $leader = RaftpgTest::form_cluster(@nodes);
RaftpgTest::wait_leader(@nodes);

# ---- replicate_table: definition and existing rows
$leader->safe_psql('postgres', q{
	CREATE SCHEMA app;
	CREATE TABLE app.accounts (
		id int PRIMARY KEY,
		owner text NOT NULL,
		balance numeric(12,2) NOT NULL DEFAULT 0 CHECK (balance >= 0),
		opened date DEFAULT '2020-01-01',
		tags text[],
		doc jsonb,
		flag boolean,
		ratio float8,
		at timestamptz,
		raw bytea,
		UNIQUE (owner));
	CREATE INDEX accounts_opened ON app.accounts (opened);
	INSERT INTO app.accounts (id, owner, balance, tags, doc, flag, ratio, at, raw)
	SELECT g, 'owner' || g, g * 10, ARRAY['a' || g, NULL], jsonb_build_object('g', g),
		   g % 2 = 0, g / 3.0, '2024-05-06 07:08:09+00'::timestamptz + g * interval '1 hour',
		   decode(md5(g::text), 'hex')
	FROM generate_series(1, 200) g;
});
my $idx = $leader->safe_psql('postgres', q{SELECT raftpg.replicate_table('app.accounts')});
ok($idx > 0, "replicate_table returns the index of its entry ($idx)");

for my $n ($n2, $n3)
{
	RaftpgTest::wait_applied($idx, $n);
	is( $n->safe_psql('postgres', q{SELECT count(*) FROM app.accounts}),
		'200', $n->name . ': the table was created with its 200 rows');
	is( $n->safe_psql('postgres',
			q{SELECT raftpg.table_definition('app.accounts') = }
			  . $leader->safe_psql('postgres',
				q{SELECT quote_literal(raftpg.table_definition('app.accounts')::text)})
			  . '::text[]'),
		't',
		$n->name . ': with the same definition (columns, constraints, index)');
	is( $n->safe_psql('postgres',
			q{SELECT table_name, added_index FROM raftpg.replicated_tables}),
		"accounts|$idx", $n->name . ': listed in raftpg.replicated_tables');
}
RaftpgTest::check_same($leader, 'app.accounts', 'id', 'after replicate_table', @nodes);

# ---- every statement kind
$leader->safe_psql('postgres', q{
	INSERT INTO app.accounts (id, owner) VALUES (1001, 'new');
	UPDATE app.accounts SET balance = balance + 1 WHERE id <= 50;
	UPDATE app.accounts SET id = id + 5000 WHERE id BETWEEN 60 AND 65;
	DELETE FROM app.accounts WHERE id BETWEEN 100 AND 120;
	INSERT INTO app.accounts (id, owner, balance) VALUES (1, 'owner1', 7)
		ON CONFLICT (id) DO UPDATE SET balance = excluded.balance;
	INSERT INTO app.accounts (id, owner) VALUES (2, 'whoever') ON CONFLICT DO NOTHING;
	WITH moved AS (DELETE FROM app.accounts WHERE id = 3 RETURNING *)
	INSERT INTO app.accounts SELECT id + 9000, owner || '-moved', balance FROM moved;
});
my $copied = $leader->safe_psql('postgres', q{
	COPY app.accounts (id, owner, balance) FROM stdin;
2001	copy1	1.5
2002	copy2	2.5
\.
	SELECT count(*) FROM app.accounts WHERE id > 2000 AND id < 3000;
});
is($copied, '2', 'COPY FROM on the leader');
is( $leader->safe_psql('postgres',
		q{UPDATE app.accounts SET balance = 99 WHERE id = 4 RETURNING owner, balance}),
	'owner4|99.00', 'RETURNING works on a replicated table');
RaftpgTest::check_same($leader, 'app.accounts', 'id', 'INSERT, UPDATE, DELETE, ON CONFLICT, CTE, COPY', @nodes);

# ---- a transaction with savepoints; rolled-back work never replicated
$leader->safe_psql('postgres', q{
	BEGIN;
	INSERT INTO app.accounts (id, owner) VALUES (3001, 'kept');
	SAVEPOINT a;
	INSERT INTO app.accounts (id, owner) VALUES (3002, 'rolled back');
	UPDATE app.accounts SET owner = 'rolled back too' WHERE id = 5;
	SAVEPOINT b;
	DELETE FROM app.accounts WHERE id = 6;
	ROLLBACK TO a;
	UPDATE app.accounts SET owner = owner || '!' WHERE id = 3001;
	SAVEPOINT c;
	INSERT INTO app.accounts (id, owner) VALUES (3003, 'kept too');
	RELEASE c;
	COMMIT;
	BEGIN;
	INSERT INTO app.accounts (id, owner) VALUES (3004, 'aborted');
	ROLLBACK;
});
my ($ret, $out, $err) = $leader->psql('postgres',
	q{INSERT INTO app.accounts (id, owner, balance) VALUES (3005, 'negative', -1)});
like($err, qr/violates check constraint/, 'a constraint failure is an ordinary error');
($ret, $out, $err) = $leader->psql('postgres',
	q{INSERT INTO app.accounts (id, owner) VALUES (3006, 'dup'), (3007, 'dup')});
like($err, qr/duplicate key value violates unique constraint/,
	'a unique violation in a multi-row insert rolls it all back');
RaftpgTest::check_same($leader, 'app.accounts', 'id', 'savepoints and rollbacks', @nodes);
for my $n (@nodes)
{
	is( $n->safe_psql('postgres',
			q{SELECT string_agg(id || '=' || owner, ',' ORDER BY id) FROM app.accounts
			  WHERE id IN (5, 6) OR id BETWEEN 3001 AND 3007}),
		'5=owner5,6=owner6,3001=kept!,3003=kept too',
		$n->name . ': exactly the committed work, nothing rolled back');
}

# ---- foreign keys between replicated tables; TRUNCATE of both
$leader->safe_psql('postgres', q{
	CREATE TABLE app.orders (
		id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		account int NOT NULL REFERENCES app.accounts (id) ON DELETE CASCADE,
		amount numeric NOT NULL,
		total numeric GENERATED ALWAYS AS (amount * 2) STORED);
	SELECT raftpg.replicate_table('app.orders');
	INSERT INTO app.orders (account, amount) SELECT id, id FROM app.accounts WHERE id < 30;
	DELETE FROM app.accounts WHERE id = 10;
});
RaftpgTest::check_same($leader, 'app.orders', 'id', 'foreign key cascade, generated column', @nodes);
is($n3->safe_psql('postgres', q{SELECT count(*) FROM app.orders WHERE account = 10}),
	'0', 'the cascaded delete reached the followers');
($ret, $out, $err) = $leader->psql('postgres', q{INSERT INTO app.orders (account, amount) VALUES (424242, 1)});
like($err, qr/violates foreign key constraint/, 'foreign keys are checked on the leader');

$leader->safe_psql('postgres', q{
	CREATE TABLE app.scratch (k text PRIMARY KEY, v int);
	SELECT raftpg.replicate_table('app.scratch');
	INSERT INTO app.scratch SELECT g::text, g FROM generate_series(1, 50) g;
	BEGIN;
	TRUNCATE app.scratch;
	INSERT INTO app.scratch VALUES ('after truncate', 1);
	COMMIT;
});
RaftpgTest::check_same($leader, 'app.scratch', 'k', 'TRUNCATE then INSERT in one transaction', @nodes);
is($n2->safe_psql('postgres', q{SELECT string_agg(k, ',') FROM app.scratch}),
	'after truncate', 'the truncate and the insert after it were applied in order');

# ---- followers refuse writes at once, naming the leader
my $lname = $leader->name;
for my $n (grep { $_ != $leader } @nodes)
{
	for my $sql (
		q{INSERT INTO app.scratch VALUES ('x', 1)},
		q{UPDATE app.scratch SET v = 2},
		q{DELETE FROM app.scratch},
		q{TRUNCATE app.scratch})
	{
		($ret, $out, $err) = $n->psql('postgres', $sql,
			extra_params => [ '-v', 'VERBOSITY=verbose' ]);
		like($err, qr/25006: cannot write replicated table "scratch" on a raftpg follower.*HINT:\s+The leader is node "$lname", reachable at "[^"]+"/s,
			$n->name . ": refused with 25006 and the leader: $sql");
	}
	# row locks would hold up apply: refused as on a hot standby
	($ret, $out, $err) = $n->psql('postgres', q{SELECT * FROM app.scratch FOR UPDATE},
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($err, qr/25006: cannot lock rows of replicated table "scratch" on a raftpg follower/,
		$n->name . ': SELECT ... FOR UPDATE refused with 25006');
	is($n->safe_psql('postgres', q{SELECT count(*) FROM app.scratch}), '1',
		$n->name . ': plain reads work');
}

# ---- an identical empty table is adopted; a different one is refused
$n2->safe_psql('postgres', q{CREATE TABLE public.adopt (id int PRIMARY KEY, v text)});
$n3->safe_psql('postgres', q{CREATE TABLE public.clash (id int PRIMARY KEY, v int)});
$leader->safe_psql('postgres', q{
	CREATE TABLE public.adopt (id int PRIMARY KEY, v text);
	INSERT INTO public.adopt VALUES (1, 'one');
	CREATE TABLE public.clash (id int PRIMARY KEY, v text);
});
$idx = $leader->safe_psql('postgres', q{SELECT raftpg.replicate_table('public.adopt')});
RaftpgTest::check_same($leader, 'public.adopt', 'id', 'an identical empty table adopted', @nodes);
($ret, $out, $err) = $leader->psql('postgres', q{SELECT raftpg.replicate_table('public.clash')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/42P07: node "node3" cannot take the table: .*different table named "public.clash"/s,
	'a different table of that name on a member is refused before anything is proposed');
is($leader->safe_psql('postgres', q{SELECT count(*) FROM raftpg.replicated_tables WHERE table_name = 'clash'}),
	'0', 'and the table stays unreplicated');

# ---- many writers on overlapping rows
$leader->safe_psql('postgres', q{
	CREATE TABLE public.hot (id int PRIMARY KEY, n bigint NOT NULL, last text);
	INSERT INTO public.hot SELECT g, 0, '' FROM generate_series(1, 20) g;
	SELECT raftpg.replicate_table('public.hot');
});
$leader->pgbench(
	'--no-vacuum --client=8 --transactions=60',
	0,
	[qr{processed: 480/480}],
	[qr{^$}],
	'8 clients update and insert overlapping rows',
	{
		'007_hot' => q{
\set a random(1, 20)
\set b random(1, 20)
\set lo least(:a, :b)
\set hi greatest(:a, :b)
\set c random(1, 999)
BEGIN;
UPDATE public.hot SET n = n + 1, last = :client_id || '-' || :lo WHERE id = :lo;
UPDATE public.hot SET n = n + 1 WHERE id = :hi;
INSERT INTO public.hot VALUES (1000 + :client_id * 1000 + :c, 1, 'i')
	ON CONFLICT (id) DO UPDATE SET n = public.hot.n + 1;
COMMIT;
}
	});
my $hot = RaftpgTest::check_same($leader, 'public.hot', 'id', '8 concurrent writers', @nodes);
is( $leader->safe_psql('postgres', q{SELECT sum(n) FROM public.hot WHERE id <= 20}),
	'960', 'every update of the 480 transactions counted once');

# ---- apply on a follower: what it did reaches the statistics (autovacuum
# needs them), and a row it wrote is found again without an index search
# (the TID cache), also after the key changed, the row went and came
# back, and the table was rewritten locally
my ($f) = grep { $_ != $leader } @nodes;
$leader->safe_psql('postgres', q{
	CREATE TABLE public.tc (k text, j int, v int NOT NULL, PRIMARY KEY (k, j));
	INSERT INTO public.tc SELECT 'k' || g, g, 0 FROM generate_series(1, 10) g;
	SELECT raftpg.replicate_table('public.tc');
	UPDATE public.tc SET v = v + 1;
});
my $upd = q{SELECT n_tup_upd FROM pg_stat_user_tables WHERE relid = 'public.tc'::regclass};
my $scans = q{SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelid = 'public.tc_pkey'::regclass};
ok($f->poll_query_until('postgres', "SELECT ($upd) >= 10"),
	$f->name . ': the rows apply updated are in pg_stat_user_tables');
my $scans0 = $f->safe_psql('postgres', $scans);
$leader->safe_psql('postgres', "UPDATE public.tc SET v = v + 1 WHERE k = 'k3' AND j = 3")
  for 1 .. 50;
ok($f->poll_query_until('postgres', "SELECT ($upd) >= 60"),
	$f->name . ': 50 more updates of one row reported');
cmp_ok($f->safe_psql('postgres', $scans) - $scans0, '<', 10,
	$f->name . ': apply found that row again without searching the index each time');
# ... and prunes the page before updating there, as an index fetch would:
# 400 more versions of one row (some 18 kB) leave the table on one page
$leader->safe_psql('postgres',
	join('', map { "UPDATE public.tc SET v = v + 1 WHERE k = 'k7' AND j = 7;\n" } 1 .. 400));
RaftpgTest::check_same($leader, 'public.tc', 'k, j', '400 updates of one row', @nodes);
is($f->safe_psql('postgres', q{SELECT pg_relation_size('public.tc')}), '8192',
	$f->name . ': ... and the table is still one page, as on the leader ('
	  . $leader->safe_psql('postgres', q{SELECT pg_relation_size('public.tc')}) . ' bytes)');
# ... also when one batch writes many of them: under load apply waits for
# 64 entries, whose versions can be pruned only once the batch committed;
# the page they go to is pruned before a batch that could fill it (here
# the linger makes every batch 64 entries long, some 3 kB of versions of
# one row, more than the tenth of a page PostgreSQL prunes at)
$f->append_conf('postgresql.conf', "raftpg.apply_linger = '10s'\n");
$f->reload;
ok($f->poll_query_until('postgres', q{SELECT current_setting('raftpg.apply_linger')}, '10s'),
	$f->name . ': raftpg.apply_linger is 10s');
$leader->safe_psql('postgres',
	join('', map { "UPDATE public.tc SET v = v + 1 WHERE k = 'k8' AND j = 8;\n" } 1 .. 640));
my $batches = $leader->safe_psql('postgres', q{SELECT commit_index FROM raftpg.status()});
is($f->safe_psql('postgres', "SELECT raftpg.wait_for_index($batches, '60s')"), 't',
	$f->name . ': 640 more updates of one row applied');
is($f->safe_psql('postgres', q{SELECT pg_relation_size('public.tc')}), '8192',
	$f->name . ': ... in batches of 64, and the table is still one page');
$f->adjust_conf('postgresql.conf', 'raftpg.apply_linger', undef);
$f->reload;
RaftpgTest::check_same($leader, 'public.tc', 'k, j', '640 updates of one row in long batches', @nodes);
$leader->safe_psql('postgres', q{
	UPDATE public.tc SET k = 'moved' WHERE k = 'k4';
	UPDATE public.tc SET v = 100 WHERE k = 'moved';
	UPDATE public.tc SET v = 7 WHERE k = 'k4';
	DELETE FROM public.tc WHERE k = 'k5';
	INSERT INTO public.tc VALUES ('k5', 5, 55);
	UPDATE public.tc SET v = v + 1 WHERE k = 'k5';
});
RaftpgTest::check_same($leader, 'public.tc', 'k, j', 'a key changed, a row deleted and inserted again', @nodes);
$f->safe_psql('postgres', 'VACUUM FULL public.tc');
$leader->safe_psql('postgres', "UPDATE public.tc SET v = v + 1 WHERE k IN ('k3', 'k5', 'moved')")
  for 1 .. 3;
$leader->safe_psql('postgres', "DELETE FROM public.tc WHERE k = 'k6'");
RaftpgTest::check_same($leader, 'public.tc', 'k, j', 'after VACUUM FULL on a follower', @nodes);

# ---- unreplicate: a plain local table everywhere, rows kept
$idx = $leader->safe_psql('postgres', q{SELECT raftpg.unreplicate_table('app.scratch')});
RaftpgTest::wait_applied($idx, @nodes);
for my $n (@nodes)
{
	is( $n->safe_psql('postgres',
			q{SELECT count(*) FROM raftpg.replicated_tables WHERE table_name = 'scratch'}
			  . q{ UNION ALL SELECT count(*) FROM pg_trigger WHERE tgrelid = 'app.scratch'::regclass}
			  . q{ UNION ALL SELECT count(*) FROM app.scratch}),
		"0\n0\n1", $n->name . ': scratch unreplicated, no triggers left, rows kept');
}
$n2->safe_psql('postgres', q{INSERT INTO app.scratch VALUES ('local only', 2)});
is($n2->safe_psql('postgres', q{SELECT count(*) FROM app.scratch}), '2',
	'an unreplicated table takes local writes on a follower');

RaftpgTest::stop_nodes(@nodes);
done_testing();
