--
-- DDL on replicated tables, on a one-node cluster: a statement that
-- changes a replicated table goes into the log in order with the table's
-- rows; what would unhook the table from replication, or make the servers
-- diverge, is refused; what stays local to each server, and statements on
-- other tables, are left alone.  Errors are followed by their SQLSTATE.
--
CREATE EXTENSION raftpg;

-- helpers: wait until the node worker has let go of the cluster an earlier
-- test dropped with its extension; wait until this node leads and has
-- applied its log
DO $$
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

CREATE FUNCTION regress_ddl_wait_leader() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + interval '60 seconds';
BEGIN
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

-- the records of the transactions logged after index "since" (changes.h):
-- 'R' with its table and columns, 'S' with its statement, the search path
-- and the settings it runs with
CREATE FUNCTION regress_ddl_u16(p bytea, at integer) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT (get_byte(p, at) << 8) + get_byte(p, at + 1) $$;
CREATE FUNCTION regress_ddl_u32(p bytea, at integer) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
	SELECT (get_byte(p, at) << 24) + (get_byte(p, at + 1) << 16) +
		   (get_byte(p, at + 2) << 8) + get_byte(p, at + 3) $$;
CREATE FUNCTION regress_ddl_str(p bytea, at integer) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
	SELECT convert_from(substr(p, at + 3, regress_ddl_u16(p, at)), 'UTF8') $$;

CREATE FUNCTION regress_ddl_records(since bigint)
RETURNS TABLE (entry integer, record text, detail text, search_path text,
			   settings text)
LANGUAGE plpgsql AS $$
DECLARE
	p bytea;
	pos integer;
	at integer;
	n integer;
	len integer;
	names text[];
BEGIN
	entry := 0;
	FOR p IN SELECT l.payload FROM raftpg.log_entries l
			 WHERE l.index > since AND l.kind = 1 AND get_byte(l.payload, 0) = 1
			 ORDER BY l.index LOOP
		entry := entry + 1;
		pos := 40;				-- after the chunk header
		WHILE pos < length(p) LOOP
			record := chr(get_byte(p, pos));
			detail := NULL;
			search_path := NULL;
			settings := NULL;
			at := pos + 5;
			IF record = 'R' THEN
				at := at + 2;
				detail := regress_ddl_str(p, at);
				at := at + 2 + regress_ddl_u16(p, at);
				detail := detail || '.' || regress_ddl_str(p, at);
				at := at + 2 + regress_ddl_u16(p, at);
				n := regress_ddl_u16(p, at);
				at := at + 2;
				names := '{}';
				FOR i IN 1 .. n LOOP
					names := names || regress_ddl_str(p, at);
					at := at + 2 + regress_ddl_u16(p, at);
					at := at + 2 + regress_ddl_u16(p, at) + 4;
				END LOOP;
				detail := detail || ' (' || array_to_string(names, ', ') || ')';
			ELSIF record = 'S' THEN
				search_path := regress_ddl_str(p, at);
				at := at + 2 + regress_ddl_u16(p, at);
				len := regress_ddl_u32(p, at);
				detail := convert_from(substr(p, at + 5, len), 'UTF8');
				at := at + 4 + len;
				n := regress_ddl_u16(p, at);
				at := at + 2;
				names := '{}';
				FOR i IN 1 .. n LOOP
					names := names || (regress_ddl_str(p, at) || '=' ||
									   regress_ddl_str(p, at + 2 + regress_ddl_u16(p, at)));
					at := at + 2 + regress_ddl_u16(p, at);
					at := at + 2 + regress_ddl_u16(p, at);
				END LOOP;
				settings := array_to_string(names, '; ');
			END IF;
			RETURN NEXT;
			pos := pos + 5 + regress_ddl_u32(p, pos + 1);
		END LOOP;
	END LOOP;
END $$;

SELECT raftpg.create_cluster('host=127.0.0.1 port=1 dbname=contrib_regression');
SELECT regress_ddl_wait_leader();

CREATE SCHEMA regress_ddl;
CREATE TABLE regress_ddl.t (id integer PRIMARY KEY, v text);
INSERT INTO regress_ddl.t VALUES (1, 'one'), (2, 'two');
SELECT raftpg.replicate_table('regress_ddl.t') > 0 AS replicated;
CREATE TABLE regress_ddl.u (id integer PRIMARY KEY);
SELECT raftpg.replicate_table('regress_ddl.u') > 0 AS replicated;
CREATE TABLE regress_ddl.local (id integer PRIMARY KEY, t_id integer);
SELECT max(index) AS mark FROM raftpg.log_entries \gset

-- ---- replicated: each statement goes into the log with the rows, in the
-- order they were made; the next change after it describes the table anew
ALTER TABLE regress_ddl.t ADD COLUMN n integer NOT NULL DEFAULT 0;
INSERT INTO regress_ddl.t VALUES (3, 'three', 3);
UPDATE regress_ddl.t SET n = id * 10 WHERE id < 3;
SET search_path = regress_ddl, public;
CREATE INDEX t_n ON t (n);
ALTER INDEX t_n RENAME TO t_n_idx;
ALTER TABLE t RENAME COLUMN v TO label;
ALTER TABLE t ALTER COLUMN n TYPE bigint;
ALTER TABLE t ADD CONSTRAINT t_n_check CHECK (n >= 0);
ALTER TABLE t RENAME CONSTRAINT t_n_check TO t_n_nonneg;
ALTER TABLE t ALTER COLUMN label SET NOT NULL;
ALTER TABLE u ADD COLUMN t_id integer REFERENCES t;
RESET search_path;
-- a transaction: rows and statements in the order they were made; a
-- statement rolled back to a savepoint leaves nothing
BEGIN;
INSERT INTO regress_ddl.t VALUES (4, 'four', 40);
ALTER TABLE regress_ddl.t ADD COLUMN w text DEFAULT 'w';
INSERT INTO regress_ddl.t VALUES (5, 'five', 50, 'five');
SAVEPOINT s;
ALTER TABLE regress_ddl.t DROP COLUMN label;
ROLLBACK TO s;
UPDATE regress_ddl.t SET w = 'x' WHERE id = 4;
COMMIT;
-- a transaction rolled back leaves nothing either
BEGIN;
ALTER TABLE regress_ddl.t ADD COLUMN never integer;
ROLLBACK;
-- from a function, the statement it ran; from a string of several, its own
DO $$ BEGIN EXECUTE 'ALTER TABLE regress_ddl.t ALTER COLUMN w SET DEFAULT ''y'''; END $$;
ALTER TABLE regress_ddl.t ADD COLUMN m integer \; INSERT INTO regress_ddl.t VALUES (6, 'six', 60, 'six', 6);
-- an empty table takes a default that is not immutable: there is nothing
-- to fill
ALTER TABLE regress_ddl.u ADD COLUMN at timestamptz DEFAULT now();
-- the schema must exist on every server (CREATE SCHEMA is not replicated)
CREATE SCHEMA regress_ddl2;
ALTER TABLE regress_ddl.u SET SCHEMA regress_ddl2;
INSERT INTO regress_ddl2.u (id) VALUES (1);
ALTER TABLE regress_ddl2.u SET SCHEMA regress_ddl;
DELETE FROM regress_ddl.u;

-- (a transaction's 'R' records come first; each change uses the last one
-- made before it, and a statement, or a rollback to a savepoint, makes the
-- next change describe the table anew)
SELECT entry, record, detail, search_path FROM regress_ddl_records(:mark);
SELECT DISTINCT settings FROM regress_ddl_records(:mark) WHERE record = 'S';
SELECT * FROM regress_ddl.t ORDER BY id;
SELECT n, stmt
FROM unnest(raftpg.table_definition('regress_ddl.t')) WITH ORDINALITY AS d(stmt, n);

-- ---- refused everywhere: what would unhook the table from replication,
-- or what other servers cannot do the same way
SELECT max(index) AS mark FROM raftpg.log_entries \gset
ALTER TABLE regress_ddl.t SET ACCESS METHOD heap;
\echo SQLSTATE :SQLSTATE
ALTER TABLE regress_ddl.t SET UNLOGGED;
\echo SQLSTATE :SQLSTATE
ALTER TABLE regress_ddl.t DISABLE TRIGGER ALL;
\echo SQLSTATE :SQLSTATE
ALTER TABLE regress_ddl.t ENABLE TRIGGER USER;
\echo SQLSTATE :SQLSTATE
ALTER TABLE regress_ddl.t DISABLE TRIGGER raftpg_capture;
\echo SQLSTATE :SQLSTATE
DROP TRIGGER raftpg_guard ON regress_ddl.t;
\echo SQLSTATE :SQLSTATE
ALTER TRIGGER raftpg_capture ON regress_ddl.t RENAME TO mine;
\echo SQLSTATE :SQLSTATE
CREATE TABLE regress_ddl.parted (id integer PRIMARY KEY) PARTITION BY RANGE (id);
ALTER TABLE regress_ddl.parted ATTACH PARTITION regress_ddl.t FOR VALUES FROM (0) TO (100);
\echo SQLSTATE :SQLSTATE
ALTER TABLE regress_ddl.t INHERIT regress_ddl.local;
\echo SQLSTATE :SQLSTATE
ALTER TABLE regress_ddl.local INHERIT regress_ddl.t;
\echo SQLSTATE :SQLSTATE
CREATE INDEX CONCURRENTLY t_w ON regress_ddl.t (w);
\echo SQLSTATE :SQLSTATE
DROP INDEX CONCURRENTLY regress_ddl.t_n_idx;
\echo SQLSTATE :SQLSTATE
DROP TABLE regress_ddl.t, regress_ddl.local;
\echo SQLSTATE :SQLSTATE
DROP INDEX regress_ddl.t_n_idx, regress_ddl.local_pkey;
\echo SQLSTATE :SQLSTATE
ALTER TABLE regress_ddl.t ADD FOREIGN KEY (n) REFERENCES regress_ddl.local;
\echo SQLSTATE :SQLSTATE
ALTER TABLE regress_ddl.t ADD COLUMN local_id integer REFERENCES regress_ddl.local;
\echo SQLSTATE :SQLSTATE
ALTER TABLE regress_ddl.t OWNER TO CURRENT_USER, ADD COLUMN x integer;
\echo SQLSTATE :SQLSTATE
-- ... and what is refused once it ran: the transaction rolls back, nothing
-- was proposed
ALTER TABLE regress_ddl.t DROP CONSTRAINT t_pkey CASCADE;
\echo SQLSTATE :SQLSTATE
ALTER TABLE regress_ddl.t ADD COLUMN r float8 DEFAULT random();
\echo SQLSTATE :SQLSTATE
ALTER TABLE regress_ddl.t ADD COLUMN at timestamptz DEFAULT now();
\echo SQLSTATE :SQLSTATE
ALTER TABLE regress_ddl.t ADD COLUMN s serial;
\echo SQLSTATE :SQLSTATE
ALTER TABLE regress_ddl.t ADD COLUMN g integer GENERATED ALWAYS AS IDENTITY;
\echo SQLSTATE :SQLSTATE
ALTER TABLE regress_ddl.t ALTER COLUMN n TYPE numeric USING n * random();
\echo SQLSTATE :SQLSTATE
-- ... and dropping the table or a column along with other objects, which
-- would happen on this server only
SET client_min_messages = warning;
DROP SCHEMA regress_ddl CASCADE;
\echo SQLSTATE :SQLSTATE
RESET client_min_messages;
CREATE TYPE regress_ddl.mood AS ENUM ('ok');
ALTER TABLE regress_ddl.t ADD COLUMN mood regress_ddl.mood;
DROP TYPE regress_ddl.mood CASCADE;
\echo SQLSTATE :SQLSTATE
-- only the column went into the log
SELECT entry, record, detail FROM regress_ddl_records(:mark);

-- ---- local to each server: what raftpg.table_definition() does not show
SELECT max(index) AS mark FROM raftpg.log_entries \gset
CREATE FUNCTION regress_ddl_noop() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RETURN NULL;
END $$;
CREATE TRIGGER mine AFTER INSERT ON regress_ddl.t
	FOR EACH STATEMENT EXECUTE FUNCTION regress_ddl_noop();
ALTER TABLE regress_ddl.t DISABLE TRIGGER mine;
ALTER TRIGGER mine ON regress_ddl.t RENAME TO mine2;
DROP TRIGGER mine2 ON regress_ddl.t;
ALTER TABLE regress_ddl.t SET (fillfactor = 90), ALTER COLUMN n SET STATISTICS 500;
ALTER TABLE regress_ddl.t OWNER TO CURRENT_USER;
ALTER TABLE regress_ddl.t CLUSTER ON t_pkey;
ALTER INDEX regress_ddl.t_n_idx SET (fillfactor = 80);
SELECT count(*) AS logged FROM regress_ddl_records(:mark);

-- ---- other tables are left alone
ALTER TABLE regress_ddl.local DISABLE TRIGGER ALL;
ALTER TABLE regress_ddl.local ADD COLUMN r float8 DEFAULT random();
ALTER TABLE regress_ddl.local DROP CONSTRAINT local_pkey;
CREATE INDEX CONCURRENTLY local_r ON regress_ddl.local (r);
DROP INDEX CONCURRENTLY regress_ddl.local_r;
ALTER TABLE regress_ddl.local RENAME TO local2;
DROP TABLE regress_ddl.local2;
SELECT count(*) AS logged FROM regress_ddl_records(:mark);

-- ---- an unreplicated table is a local table again
SELECT raftpg.unreplicate_table('regress_ddl.u') > 0 AS unreplicated;
SELECT max(index) AS mark FROM raftpg.log_entries \gset
ALTER TABLE regress_ddl.u ADD COLUMN r float8 DEFAULT random();
DROP TABLE regress_ddl.u;
SELECT count(*) AS logged FROM regress_ddl_records(:mark);

-- ---- DROP TABLE: into the log, and out of raftpg.replicated
DROP TABLE regress_ddl.t;
SELECT entry, record, detail FROM regress_ddl_records(:mark);
SELECT count(*) AS listed FROM raftpg.replicated_tables;
SELECT count(*) AS rows_left FROM raftpg.replicated;

-- dropping the extension ends the node
DROP SCHEMA regress_ddl, regress_ddl2 CASCADE;
DROP FUNCTION regress_ddl_records(bigint), regress_ddl_str(bytea, integer),
	regress_ddl_u32(bytea, integer), regress_ddl_u16(bytea, integer),
	regress_ddl_wait_leader(), regress_ddl_noop();
DROP EXTENSION raftpg;
