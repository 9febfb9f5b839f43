--
-- Replicated tables on a one-node cluster: replicate_table() and its
-- errors, every statement kind through the commit protocol, savepoints,
-- what is refused up front, an unknown commit outcome (08007), large
-- transactions cut into several entries, unreplicate_table().
--
CREATE EXTENSION raftpg;

CREATE OR REPLACE FUNCTION wait_leader() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + interval '60 seconds';
BEGIN
	-- a leader that has applied its log and opened local writes
	WHILE NOT EXISTS (SELECT 1 FROM raftpg.status()
					  WHERE role = 'leader' AND commit_index = last_log_index
					  AND last_log_term = term AND applied_index = commit_index) LOOP
		IF clock_timestamp() > deadline THEN
			RAISE EXCEPTION 'no leader within 60 seconds: %',
				(SELECT row(s.*) FROM raftpg.status() s);
		END IF;
		PERFORM pg_sleep(0.05);
	END LOOP;
END $$;

-- not a member: replicate_table needs a leader
CREATE TABLE plain (id int PRIMARY KEY, v text);
SELECT raftpg.replicate_table('plain');

SELECT raftpg.create_cluster('host=127.0.0.1 dbname=contrib_regression');
SELECT wait_leader();

-- ---- replicate_table and its refusals
\set VERBOSITY default
CREATE TABLE nopk (v text);
SELECT raftpg.replicate_table('nopk');
\echo :SQLSTATE
CREATE VIEW v AS SELECT 1 AS x;
SELECT raftpg.replicate_table('v');
\echo :SQLSTATE
BEGIN;
SELECT raftpg.replicate_table('plain');
\echo :SQLSTATE
ROLLBACK;
CREATE ROLE regress_raftpg_user;
SET ROLE regress_raftpg_user;
SELECT raftpg.replicate_table('plain');
\echo :SQLSTATE
RESET ROLE;

INSERT INTO plain VALUES (1, 'one'), (2, 'two');
SELECT raftpg.replicate_table('plain') > 0 AS replicated;
SELECT relid, schema_name, table_name, added_index > 0 AS has_index
FROM raftpg.replicated_tables;
SELECT raftpg.replicate_table('plain');
\echo :SQLSTATE
SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = 'plain'::regclass ORDER BY tgname;

-- ---- every statement kind, committed through the log
INSERT INTO plain VALUES (3, 'three');
UPDATE plain SET v = 'TWO' WHERE id = 2 RETURNING *;
DELETE FROM plain WHERE id = 1;
INSERT INTO plain VALUES (3, 'x') ON CONFLICT (id) DO UPDATE SET v = 'three again';
INSERT INTO plain VALUES (4, 'x') ON CONFLICT DO NOTHING;
COPY plain FROM stdin;
5	five
6	six
\.
BEGIN;
INSERT INTO plain VALUES (7, 'seven');
SAVEPOINT a;
INSERT INTO plain VALUES (8, 'rolled back');
ROLLBACK TO a;
SAVEPOINT b;
UPDATE plain SET v = 'SEVEN' WHERE id = 7;
RELEASE b;
COMMIT;
SELECT * FROM plain ORDER BY id;
SELECT raftpg.last_write_index() = (SELECT commit_index FROM raftpg.status()) AS last_write_is_committed;
SELECT raftpg.wait_for_index(raftpg.last_write_index(), '10s');
-- the leader applied its own entries by committing them: nothing is left
-- to apply
SELECT applied_index = commit_index AS all_applied FROM raftpg.status();
SELECT applied_index = (SELECT applied_index FROM raftpg.apply_state) AS state_row_agrees
FROM raftpg.status();

-- a transaction that wrote only replicated tables commits locally without
-- waiting for its WAL flush (the log has it); one that also wrote a local
-- table, or ran DDL, keeps synchronous_commit
CREATE TABLE local_t (id int);
SELECT replicated_commits AS c0, replicated_commits_async AS a0 FROM raftpg.stats \gset
INSERT INTO plain VALUES (20, 'replicated only');
SELECT replicated_commits - :c0 AS commits, replicated_commits_async - :a0 AS without_flush
FROM raftpg.stats;
BEGIN;
INSERT INTO plain VALUES (21, 'and a local row');
INSERT INTO local_t VALUES (1);
COMMIT;
BEGIN;
UPDATE plain SET v = 'with local DDL' WHERE id = 21;
CREATE TABLE local_u (id int);
COMMIT;
WITH w AS (INSERT INTO local_t VALUES (2) RETURNING id)
UPDATE plain SET v = 'with a writable CTE' WHERE id = 20;
SHOW synchronous_commit;
SELECT replicated_commits - :c0 AS commits, replicated_commits_async - :a0 AS without_flush
FROM raftpg.stats;
DELETE FROM plain WHERE id IN (20, 21);
DROP TABLE local_t, local_u;

-- a constraint failure is an ordinary error, and nothing reaches the log
SELECT last_log_index AS before FROM raftpg.status() \gset
INSERT INTO plain VALUES (9, 'nine'), (9, 'again');
SELECT last_log_index = :before AS nothing_appended FROM raftpg.status();

-- ---- refused up front
BEGIN ISOLATION LEVEL SERIALIZABLE;
INSERT INTO plain VALUES (10, 'ten');
\echo :SQLSTATE
ROLLBACK;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT count(*) FROM plain;
COMMIT;
BEGIN;
INSERT INTO plain VALUES (10, 'ten');
PREPARE TRANSACTION 'p';
\echo :SQLSTATE
COPY plain FROM '/dev/null' (FREEZE);
\echo :SQLSTATE
SET session_replication_role = replica;
INSERT INTO plain VALUES (10, 'ten');
\echo :SQLSTATE
RESET session_replication_role;
SELECT count(*) AS not_there FROM plain WHERE id = 10;

-- ---- an unknown outcome: the persistence of the entry fails, the leader
-- steps down and is elected again in a new term; the entry is gone
\set VERBOSITY terse
SELECT raftpg.inject_fault('before_commit');
INSERT INTO plain VALUES (11, 'unknown');
\echo :SQLSTATE
\set VERBOSITY default
SELECT wait_leader();
SELECT count(*) AS gone FROM plain WHERE id = 11;
-- and writes work again
INSERT INTO plain VALUES (12, 'after');
SELECT id, v FROM plain WHERE id > 10 ORDER BY id;

-- ---- once replicate_table() put a transaction through the log, nothing
-- more of it can be: the write after it fails (08007, since the table's
-- replication was committed by the cluster), and only that takes effect,
-- through apply
CREATE TABLE late (id int PRIMARY KEY);
\set VERBOSITY terse
INSERT INTO plain SELECT 13, 'late' FROM (SELECT raftpg.replicate_table('late')) s;
\echo :SQLSTATE
\set VERBOSITY default
SELECT raftpg.wait_for_index((SELECT commit_index FROM raftpg.status()), '10s');
SELECT count(*) AS not_written FROM plain WHERE id = 13;
SELECT table_name FROM raftpg.replicated_tables WHERE table_name = 'late';
INSERT INTO late VALUES (1);
SELECT raftpg.unreplicate_table('late') > 0 AS unreplicated;
DROP TABLE late;

-- ---- a transaction cut into many entries
SET raftpg.max_entry_size = 8192;
SELECT last_log_index AS before FROM raftpg.status() \gset
INSERT INTO plain SELECT g, repeat('x', 100) FROM generate_series(1000, 1999) g;
SELECT last_log_index - :before > 10 AS many_entries,
	   (SELECT max(length(payload)) FROM raftpg.log_entries WHERE index > :before) <= 8192 AS none_larger
FROM raftpg.status();
RESET raftpg.max_entry_size;
SELECT count(*) FROM plain WHERE id >= 1000;

-- ---- unreplicate: the triggers go, the rows stay
SELECT raftpg.unreplicate_table('plain') > 0 AS unreplicated;
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'plain'::regclass;
SELECT count(*) AS listed FROM raftpg.replicated_tables;
SELECT count(*) FROM plain;
SELECT raftpg.unreplicate_table('plain');
\echo :SQLSTATE
INSERT INTO plain VALUES (13, 'local again');

DROP TABLE plain, nopk;
DROP VIEW v;
DROP ROLE regress_raftpg_user;
DROP FUNCTION wait_leader();
DROP EXTENSION raftpg;
