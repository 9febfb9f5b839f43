--
-- Reads on a one-node cluster: raftpg.read_consistency, linearizable reads
-- of a replicated table on the leader, in each isolation level,
-- raftpg.wait_for_index() and raftpg.last_write_index().  Errors are
-- followed by their SQLSTATE.
--
CREATE EXTENSION raftpg;

-- helpers: wait until the node worker has let go of a cluster whose
-- extension was dropped (an earlier test's); wait until this node leads
-- with an entry of its term committed
CREATE FUNCTION regress_reads_let_go() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + interval '60 seconds';
BEGIN
	WHILE (SELECT role FROM raftpg.status()) <> 'unconfigured' LOOP
		IF clock_timestamp() > deadline THEN
			RAISE EXCEPTION 'the node did not let go of its old cluster';
		END IF;
		PERFORM pg_sleep(0.05);
	END LOOP;
END $$;
SELECT regress_reads_let_go();

CREATE FUNCTION regress_reads_wait_leader() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + interval '60 seconds';
BEGIN
	WHILE NOT EXISTS (SELECT 1 FROM raftpg.status()
					  WHERE role = 'leader' AND commit_index = last_log_index
					  AND last_log_term = term) LOOP
		IF clock_timestamp() > deadline THEN
			RAISE EXCEPTION 'no leader within 60 seconds: %',
				(SELECT row(s.*) FROM raftpg.status() s);
		END IF;
		PERFORM pg_sleep(0.05);
	END LOOP;
END $$;

-- the parameter: local by default, settable by anyone
SHOW raftpg.read_consistency;
SET raftpg.read_consistency = linearizable;
SHOW raftpg.read_consistency;
SET raftpg.read_consistency = 'LOCAL';
SHOW raftpg.read_consistency;
SET raftpg.read_consistency = strict;
\echo SQLSTATE :SQLSTATE
SET raftpg.read_consistency = '';
\echo SQLSTATE :SQLSTATE
SELECT name, setting, context, vartype, enumvals, boot_val
FROM pg_settings WHERE name = 'raftpg.read_consistency';
CREATE ROLE regress_raftpg_reader;
SET ROLE regress_raftpg_reader;
SET raftpg.read_consistency = linearizable;
SHOW raftpg.read_consistency;
RESET raftpg.read_consistency;
RESET ROLE;
DROP ROLE regress_raftpg_reader;

-- no cluster yet: tables that are not replicated read as ever
CREATE TABLE regress_reads (id integer PRIMARY KEY, label text NOT NULL);
CREATE TABLE regress_plain (id integer PRIMARY KEY);
INSERT INTO regress_plain VALUES (1);
SET raftpg.read_consistency = linearizable;
SELECT count(*) FROM regress_reads;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) FROM regress_plain;
COMMIT;
RESET raftpg.read_consistency;

-- a one-node cluster, and a replicated table (not in a transaction block)
SELECT raftpg.create_cluster('host=127.0.0.1 port=1 dbname=contrib_regression');
SELECT regress_reads_wait_leader();
SELECT raftpg.last_write_index() IS NULL AS no_write_yet;
BEGIN;
SELECT raftpg.replicate_table('regress_reads');
\echo SQLSTATE :SQLSTATE
ROLLBACK;
SELECT raftpg.replicate_table('regress_reads') > 0 AS replicated;
SELECT table_name FROM raftpg.replicated_tables;
CREATE VIEW regress_reads_view AS SELECT id, label FROM regress_reads;

-- a write, and its index
INSERT INTO regress_reads VALUES (1, 'one'), (2, 'two');
SELECT raftpg.last_write_index() AS first_write \gset
SELECT :first_write > 0 AS has_index,
	   :first_write <= commit_index AS committed
FROM raftpg.status();
UPDATE regress_reads SET label = 'TWO' WHERE id = 2;
SELECT raftpg.last_write_index() > :first_write AS moved_on;
-- a transaction that writes no replicated table leaves it alone
SELECT raftpg.last_write_index() AS last_write \gset
INSERT INTO regress_plain VALUES (2);
SELECT raftpg.last_write_index() = :last_write AS unchanged;

-- wait_for_index: reached at once up to the commit index; false after the
-- timeout for an index far ahead; NULL for NULL
SELECT raftpg.wait_for_index(raftpg.last_write_index()) AS applied_last_write;
SELECT raftpg.wait_for_index(commit_index) AS applied_commit_index FROM raftpg.status();
SELECT raftpg.wait_for_index(0) AS index_zero;
SELECT raftpg.wait_for_index(commit_index + 1000000, '100 ms') AS far_ahead
FROM raftpg.status();
SELECT raftpg.wait_for_index(commit_index + 1000000, '0') AS far_ahead_no_wait
FROM raftpg.status();
SELECT raftpg.wait_for_index(NULL) AS null_index;
SELECT raftpg.wait_for_index(1, '-1 s');
\echo SQLSTATE :SQLSTATE
SET raftpg.commit_timeout = '200ms';
SELECT raftpg.wait_for_index(commit_index + 1000000) AS far_ahead_commit_timeout
FROM raftpg.status();
RESET raftpg.commit_timeout;

-- linearizable reads on the leader see the rows, in every isolation level
SET raftpg.read_consistency = linearizable;
SELECT * FROM regress_reads ORDER BY id;
SELECT * FROM regress_reads_view ORDER BY id;
BEGIN;
INSERT INTO regress_reads VALUES (3, 'three');
SELECT * FROM regress_reads ORDER BY id;
COMMIT;
SELECT * FROM regress_reads ORDER BY id;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT * FROM regress_reads ORDER BY id;
SELECT count(*) FROM regress_reads;
COMMIT;
BEGIN;
SET TRANSACTION ISOLATION LEVEL SERIALIZABLE;
SELECT * FROM regress_reads ORDER BY id;
COMMIT;
-- an implicit REPEATABLE READ transaction checks its snapshot instead
SELECT raftpg.wait_for_index(commit_index) FROM raftpg.status();
SET default_transaction_isolation = 'repeatable read';
SELECT * FROM regress_reads ORDER BY id;
RESET default_transaction_isolation;
-- a cursor, EXPLAIN, a function reading the table, statements that write
-- what they read
DECLARE c CURSOR WITH HOLD FOR SELECT label FROM regress_reads ORDER BY id;
FETCH ALL FROM c;
CLOSE c;
EXPLAIN (COSTS OFF) SELECT * FROM regress_reads WHERE id = 1;
CREATE FUNCTION regress_reads_count() RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
	RETURN (SELECT count(*) FROM regress_reads);
END $$;
SELECT regress_reads_count();
INSERT INTO regress_plain SELECT id + 10 FROM regress_reads;
SELECT * FROM regress_plain ORDER BY id;
CREATE TEMP TABLE regress_copy AS SELECT id, label FROM regress_reads;
SELECT count(*) FROM regress_copy;
COPY (SELECT label FROM regress_reads ORDER BY id) TO STDOUT;
RESET raftpg.read_consistency;

-- A REPEATABLE READ snapshot taken before the read point cannot serve a
-- linearizable read: a statement that reads a replicated table fails with
-- a serialization failure, one that reads none goes on.  (raftpg.propose()
-- commits an entry after the snapshot.)
\set VERBOSITY terse
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) FROM regress_plain;
SELECT raftpg.propose('after the snapshot') > 0 AS proposed;
SET LOCAL raftpg.read_consistency = linearizable;
SELECT count(*) FROM regress_plain;
SELECT count(*) FROM regress_reads_view;
\echo SQLSTATE :SQLSTATE
ROLLBACK;
SHOW raftpg.read_consistency;
-- with the parameter set before the transaction's first query, the read
-- point comes first and the same sequence works
BEGIN ISOLATION LEVEL REPEATABLE READ;
SET LOCAL raftpg.read_consistency = linearizable;
SELECT count(*) FROM regress_plain;
SELECT raftpg.propose('after the snapshot') > 0 AS proposed;
SELECT count(*) FROM regress_reads;
COMMIT;
\set VERBOSITY default

-- dropping the extension ends the node: take the table out first
SELECT raftpg.unreplicate_table('regress_reads') > 0 AS unreplicated;
DROP FUNCTION regress_reads_count(), regress_reads_wait_leader();
DROP VIEW regress_reads_view;
DROP TABLE regress_reads, regress_plain;
DROP EXTENSION raftpg;
-- and leave no cluster behind for the next test
CREATE EXTENSION raftpg;
SELECT regress_reads_let_go();
DROP EXTENSION raftpg;
DROP FUNCTION regress_reads_let_go();
