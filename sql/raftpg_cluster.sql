--
-- A one-node cluster: forming it, appending, the errors of cluster
-- operations, and the project's invariant under injected persistence
-- failures -- after each, the log table, the state row and status() agree
-- and the failed entry is nowhere.
--
CREATE EXTENSION raftpg;

-- helpers: wait until this node leads with an entry of its term committed;
-- check that tables and shared memory agree
CREATE FUNCTION wait_leader() RETURNS void LANGUAGE plpgsql AS $$
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

CREATE FUNCTION consistent() RETURNS boolean LANGUAGE sql AS $$
	SELECT s.last_log_index = (SELECT max(index) FROM raftpg.log_entries)
	   AND s.last_log_term = (SELECT term FROM raftpg.log_entries ORDER BY index DESC LIMIT 1)
	   AND st.last_log_index = s.last_log_index
	   AND st.last_log_term = s.last_log_term
	   AND (SELECT count(*) FROM raftpg.log_entries) = s.last_log_index
	FROM raftpg.status() s, raftpg.state st
$$;

-- not a member yet
SELECT raftpg.propose('x');
SELECT raftpg.add_node('other', 'host=127.0.0.1 port=1');
SELECT * FROM raftpg.nodes;

-- bad arguments
SELECT raftpg.create_cluster('host=127.0.0.1 nosuchoption=1');
SELECT raftpg.create_cluster('nonsense');

SELECT raftpg.create_cluster('host=127.0.0.1 port=1 dbname=regression');
SELECT wait_leader();
SELECT node_name, role, voter, term > 1 AS term_advanced, leader_name,
	   last_log_index, commit_index
FROM raftpg.status();
SELECT node_name, node_id, conninfo, membership, is_leader, is_self, reachable
FROM raftpg.nodes;
SELECT index, term > 1 AS new_term, kind FROM raftpg.log_entries ORDER BY index;

-- a second cluster on the same server is refused
SELECT raftpg.create_cluster('host=127.0.0.1 port=1');

-- appending
SELECT raftpg.propose('one') = 3 AS appended_at_3;
SELECT index, kind, convert_from(substr(payload, 2), 'UTF8') FROM raftpg.log_entries WHERE kind = 1;
SELECT consistent();

-- cluster operations with bad arguments
SELECT raftpg.add_node('bad name!', 'host=127.0.0.1 port=1');
SELECT raftpg.add_node('regress', 'host=127.0.0.1 port=1');
SELECT raftpg.add_node('other', 'host=127.0.0.1 nosuchoption=1');
SELECT raftpg.add_node('other', 'host=127.0.0.1 port=1 dbname=regression');
SELECT raftpg.remove_node('nobody');
SELECT raftpg.remove_node('regress');
SELECT raftpg.transfer_leadership('nobody');
SELECT raftpg.transfer_leadership('regress');
SELECT raftpg.inject_fault('nowhere');

-- privileges
CREATE ROLE regress_raftpg_user;
SET ROLE regress_raftpg_user;
SELECT raftpg.propose('x');
SELECT raftpg.deliver(1, '\x');
CALL raftpg.stream(1);
SELECT node_name, role FROM raftpg.status();
RESET ROLE;
DROP ROLE regress_raftpg_user;

-- the message stream: only by CALL, outside a transaction block, for this
-- cluster (the node workers' own use of it is what the TAP tests run on)
BEGIN;
CALL raftpg.stream(1);
ROLLBACK;
-- (the message names this cluster's random id: the SQLSTATE says enough)
\set VERBOSITY sqlstate
CALL raftpg.stream(1);
\set VERBOSITY default

-- The invariant: a persistence that fails at any step leaves nothing
-- behind.  The leader steps down, the entry's outcome is unknown to the
-- client (08007), and once the node leads again the log table, the state
-- row and status() agree, without the entry.
\set VERBOSITY terse
SELECT raftpg.inject_fault('after_entries');
SELECT raftpg.propose('lost after entries');
SELECT wait_leader();
SELECT consistent();

SELECT raftpg.inject_fault('after_state');
SELECT raftpg.propose('lost after state');
SELECT wait_leader();
SELECT consistent();

SELECT raftpg.inject_fault('before_commit');
SELECT raftpg.propose('lost before commit');
SELECT wait_leader();
SELECT consistent();
\set VERBOSITY default

SELECT count(*) AS lost_entries_in_log
FROM raftpg.log_entries WHERE kind = 1 AND convert_from(substr(payload, 2), 'UTF8') LIKE 'lost%';
SELECT persist_failures FROM raftpg.stats;

-- and the node works on
SELECT raftpg.propose('two') > 3 AS appended;
SELECT consistent();
SELECT convert_from(substr(payload, 2), 'UTF8') FROM raftpg.log_entries WHERE kind = 1 ORDER BY index;

-- the log packs runs of entries into rows; every entry is in exactly one
SELECT (SELECT sum(last_index - first_index + 1) FROM raftpg.log) =
	   (SELECT count(*) FROM raftpg.log_entries) AS rows_cover_entries;
-- a log table of another shape is refused, not misread
BEGIN;
ALTER TABLE raftpg.log ALTER COLUMN last_index TYPE integer;
SELECT count(*) FROM raftpg.log_entries;
ROLLBACK;
-- and so is a row with a null column
BEGIN;
ALTER TABLE raftpg.log ALTER COLUMN entries DROP NOT NULL;
INSERT INTO raftpg.log VALUES (1000000, 1000000, NULL);
SELECT count(*) FROM raftpg.log_entries;
ROLLBACK;

-- the inbox is bounded: a batch that does not fit is dropped and counted,
-- nobody waits
SELECT raftpg.deliver((SELECT cluster_id FROM raftpg.state),
					  convert_to(repeat('x', 20 * 1024 * 1024), 'UTF8')) AS accepted;
DO $$
DECLARE
	deadline timestamptz := clock_timestamp() + interval '60 seconds';
BEGIN
	WHILE (SELECT messages_dropped FROM raftpg.stats) = 0 LOOP
		IF clock_timestamp() > deadline THEN
			RAISE EXCEPTION 'the dropped batch was not counted';
		END IF;
		PERFORM pg_sleep(0.05);
	END LOOP;
END $$;
SELECT consistent();

-- every batch rewrites the state row and finds it again where the last
-- update left it, pruning its page on the way: the table does not grow
-- with the updates
DO $$
BEGIN
	FOR i IN 1 .. 400 LOOP
		PERFORM raftpg.propose(convert_to('batch ' || i, 'UTF8'));
		COMMIT;
	END LOOP;
END $$;
SELECT pg_relation_size('raftpg.state') <= 2 * current_setting('block_size')::int
	AS state_table_stays_small;
SELECT consistent();

-- dropping the extension ends the node: the worker lets go of the log
DROP EXTENSION raftpg;
