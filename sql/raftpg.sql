--
-- raftpg on one server: the extension, its GUCs and status() before any
-- cluster exists.  The temporary instance preloads raftpg with
-- raftpg.node_name = 'regress' (test/regress.conf).
--
CREATE EXTENSION raftpg;

SELECT extname, extversion, extrelocatable, extnamespace::regnamespace
FROM pg_extension WHERE extname = 'raftpg';

-- the extension's objects live in schema raftpg
SELECT p.oid::regprocedure AS function, p.prorettype::regtype AS returns
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'raftpg'
ORDER BY p.proname;

-- the node worker is started by the postmaster; wait for it to publish its
-- pid (at most 60 seconds)
DO $$
DECLARE
	deadline timestamptz := clock_timestamp() + interval '60 seconds';
BEGIN
	WHILE (SELECT worker_pid FROM raftpg.status()) IS NULL LOOP
		IF clock_timestamp() > deadline THEN
			RAISE EXCEPTION 'raftpg node worker did not start within 60 seconds';
		END IF;
		PERFORM pg_sleep(0.1);
	END LOOP;
END
$$;

-- no cluster yet: unconfigured, no leader, everything zero
SELECT node_name, role, voter, term, leader_name, last_log_index,
	   last_log_term, commit_index, applied_index,
	   worker_pid IS NOT NULL AS worker_running
FROM raftpg.status();

-- the pid is the live worker's
SELECT a.backend_type, a.datname
FROM raftpg.status() s JOIN pg_stat_activity a ON a.pid = s.worker_pid;

-- status() is open to everyone
CREATE ROLE regress_raftpg_reader;
SET ROLE regress_raftpg_reader;
SELECT node_name, role FROM raftpg.status();
RESET ROLE;
DROP ROLE regress_raftpg_reader;

-- GUCs: set from the configuration file, fixed while the server runs
SHOW raftpg.node_name;
SHOW raftpg.database;
SELECT name, context, vartype, boot_val
FROM pg_settings WHERE name LIKE 'raftpg.%' ORDER BY name;
SET raftpg.node_name = 'other';
SET raftpg.database = 'other';
-- the prefix is reserved: no stray placeholder GUCs
SET raftpg.no_such_setting = 'x';
SHOW raftpg.node_name;

-- dropping the extension takes its schema along; creating it again works
DROP EXTENSION raftpg;
SELECT count(*) AS raftpg_schemas FROM pg_namespace WHERE nspname = 'raftpg';
CREATE EXTENSION raftpg;
SELECT role FROM raftpg.status();

-- it can only live in its own schema
DROP EXTENSION raftpg;
CREATE SCHEMA regress_elsewhere;
CREATE EXTENSION raftpg SCHEMA regress_elsewhere;
DROP SCHEMA regress_elsewhere;
