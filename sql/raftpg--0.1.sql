/* sql/raftpg--0.1.sql */

-- Every object lives in schema raftpg.  Functions that only report are
-- open to everyone; every function that changes the cluster or its data
-- must REVOKE EXECUTE ... FROM PUBLIC right after its CREATE FUNCTION.

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION raftpg" to load this file. \quit

CREATE SCHEMA raftpg;
COMMENT ON SCHEMA raftpg IS 'raftpg: tables replicated with Raft';
GRANT USAGE ON SCHEMA raftpg TO PUBLIC;

-- Without shared_preload_libraries there is no worker and no shared state:
-- fail CREATE EXTENSION now rather than leave functions that cannot work.
CREATE FUNCTION raftpg.assert_preloaded()
RETURNS void
AS 'MODULE_PATHNAME', 'raftpg_assert_preloaded'
LANGUAGE C STRICT;

SELECT raftpg.assert_preloaded();

DROP FUNCTION raftpg.assert_preloaded();

-- This node's view of the cluster.  Open to everyone: it reveals nothing a
-- monitoring role should not see.
CREATE FUNCTION raftpg.status(
	OUT node_name text,
	OUT role text,
	OUT voter boolean,
	OUT term bigint,
	OUT leader_name text,
	OUT last_log_index bigint,
	OUT last_log_term bigint,
	OUT commit_index bigint,
	OUT applied_index bigint,
	OUT worker_pid integer)
RETURNS record
AS 'MODULE_PATHNAME', 'raftpg_status'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION raftpg.status() IS
	'role, term, leader and log positions of this raftpg node';

GRANT EXECUTE ON FUNCTION raftpg.status() TO PUBLIC;
