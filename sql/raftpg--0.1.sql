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

-- ---------------------------------------------------------------------
-- The Raft log and hard state.  Only the node worker writes them, through
-- the table and index access methods, one transaction per batch: the
-- entries and the row that says where the log ends move together.
-- ---------------------------------------------------------------------
-- A row holds a run of consecutive entries, packed (src/storage.c): one
-- heap and one index insert per persisted batch rather than per entry.
-- raftpg.log_entries shows the entries one per row.
CREATE TABLE raftpg.log (
	first_index bigint PRIMARY KEY,	-- of the row's first entry
	last_index bigint NOT NULL,		-- of its last
	entries bytea NOT NULL
);
COMMENT ON TABLE raftpg.log IS 'raftpg: the Raft log of this node, a run of entries per row';
-- entries are written once and read by apply: not worth compressing (a
-- large transaction's entries would cost the node worker seconds of pglz,
-- during which it sends no heartbeats)
ALTER TABLE raftpg.log ALTER COLUMN entries SET STORAGE EXTERNAL;

-- The log one entry per row.  Like the table, for the owner only.
CREATE FUNCTION raftpg.log_entries(
	OUT index bigint,
	OUT term bigint,
	OUT kind smallint,			-- 1 normal, 2 no-op, 3 configuration
	OUT payload bytea)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'raftpg_log_entries'
LANGUAGE C STRICT VOLATILE;
REVOKE EXECUTE ON FUNCTION raftpg.log_entries() FROM PUBLIC;
CREATE VIEW raftpg.log_entries AS SELECT * FROM raftpg.log_entries();
COMMENT ON VIEW raftpg.log_entries IS 'raftpg: the Raft log of this node, one entry per row';

CREATE TABLE raftpg.state (
	node_id bigint NOT NULL,		-- this node's id, 0 before it joins
	cluster_id bigint NOT NULL,		-- the cluster's random id, 0 before
	current_term bigint NOT NULL,
	voted_for bigint NOT NULL,
	last_log_index bigint NOT NULL,
	last_log_term bigint NOT NULL,
	commit_index bigint NOT NULL,
	snapshot_index bigint NOT NULL,
	snapshot_term bigint NOT NULL,
	snapshot_config bytea,
	config_index bigint NOT NULL,
	config bytea
);
COMMENT ON TABLE raftpg.state IS
	'raftpg: the hard state of this node (one row, written with the log)';
INSERT INTO raftpg.state VALUES (0, 0, 0, 0, 0, 0, 0, 0, 0, NULL, 0, NULL);

-- ---------------------------------------------------------------------
-- Forming and changing the cluster (superusers only)
-- ---------------------------------------------------------------------
CREATE FUNCTION raftpg.create_cluster(conninfo text)
RETURNS void
AS 'MODULE_PATHNAME', 'raftpg_create_cluster'
LANGUAGE C STRICT VOLATILE;
REVOKE EXECUTE ON FUNCTION raftpg.create_cluster(text) FROM PUBLIC;
COMMENT ON FUNCTION raftpg.create_cluster(text) IS
	'make this server a one-node cluster; conninfo is how the others reach it';

CREATE FUNCTION raftpg.add_node(node_name text, conninfo text,
								voter boolean DEFAULT true)
RETURNS void
AS 'MODULE_PATHNAME', 'raftpg_add_node'
LANGUAGE C STRICT VOLATILE;
REVOKE EXECUTE ON FUNCTION raftpg.add_node(text, text, boolean) FROM PUBLIC;
COMMENT ON FUNCTION raftpg.add_node(text, text, boolean) IS
	'on the leader: add a server (as a learner, promoted once caught up)';

CREATE FUNCTION raftpg.remove_node(node_name text)
RETURNS void
AS 'MODULE_PATHNAME', 'raftpg_remove_node'
LANGUAGE C STRICT VOLATILE;
REVOKE EXECUTE ON FUNCTION raftpg.remove_node(text) FROM PUBLIC;

CREATE FUNCTION raftpg.transfer_leadership(node_name text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'raftpg_transfer_leadership'
LANGUAGE C VOLATILE;
REVOKE EXECUTE ON FUNCTION raftpg.transfer_leadership(text) FROM PUBLIC;

-- called by a leader's add_node() on the server being added
CREATE FUNCTION raftpg.prepare_join(cluster_id bigint, node_id bigint,
									node_name text, members bytea)
RETURNS void
AS 'MODULE_PATHNAME', 'raftpg_prepare_join'
LANGUAGE C STRICT VOLATILE;
REVOKE EXECUTE ON FUNCTION raftpg.prepare_join(bigint, bigint, text, bytea) FROM PUBLIC;

-- how peers hand messages to this node: superusers, or roles granted
-- EXECUTE on it (see README.md)
CREATE FUNCTION raftpg.deliver(cluster_id bigint, messages bytea)
RETURNS boolean
AS 'MODULE_PATHNAME', 'raftpg_deliver'
LANGUAGE C STRICT VOLATILE;
REVOKE EXECUTE ON FUNCTION raftpg.deliver(bigint, bytea) FROM PUBLIC;

-- the same as a stream: the node workers CALL it once per connection, and
-- send every batch as one CopyData message (see README.md)
CREATE PROCEDURE raftpg.stream(cluster_id bigint)
AS 'MODULE_PATHNAME', 'raftpg_stream'
LANGUAGE C;
REVOKE EXECUTE ON PROCEDURE raftpg.stream(bigint) FROM PUBLIC;

-- append an opaque entry to the log and wait until it is committed
CREATE FUNCTION raftpg.propose(payload bytea)
RETURNS bigint
AS 'MODULE_PATHNAME', 'raftpg_propose'
LANGUAGE C STRICT VOLATILE;
REVOKE EXECUTE ON FUNCTION raftpg.propose(bytea) FROM PUBLIC;

-- make the node worker's next persistence fail at a step (tests)
CREATE FUNCTION raftpg.inject_fault(point text, times integer DEFAULT 1)
RETURNS void
AS 'MODULE_PATHNAME', 'raftpg_inject_fault'
LANGUAGE C STRICT VOLATILE;
REVOKE EXECUTE ON FUNCTION raftpg.inject_fault(text, integer) FROM PUBLIC;

-- ---------------------------------------------------------------------
-- Observing
-- ---------------------------------------------------------------------
CREATE FUNCTION raftpg.nodes(
	OUT node_name text,
	OUT node_id bigint,
	OUT conninfo text,
	OUT membership text,
	OUT is_leader boolean,
	OUT is_self boolean,
	OUT reachable boolean,
	OUT match_index bigint,
	OUT lag bigint,
	OUT last_contact timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'raftpg_nodes'
LANGUAGE C STRICT VOLATILE;

CREATE VIEW raftpg.nodes AS SELECT * FROM raftpg.nodes();
COMMENT ON VIEW raftpg.nodes IS
	'every member of the cluster; match_index, lag and last_contact are known on the leader';

CREATE FUNCTION raftpg.stats(
	OUT elections bigint,
	OUT leader_changes bigint,
	OUT messages_in bigint,
	OUT messages_out bigint,
	OUT bytes_in bigint,
	OUT bytes_out bigint,
	OUT messages_dropped bigint,
	OUT messages_malformed bigint,
	OUT entries_refused bigint,
	OUT appends bigint,
	OUT entries_appended bigint,
	OUT persist_failures bigint,
	OUT append_rejects_received bigint,
	OUT replicated_commits bigint,
	OUT replicated_commits_async bigint,
	OUT applied_transactions bigint,
	OUT worker_passes bigint,
	OUT socket_reads_empty bigint,	-- reads of peers' sockets that found nothing
	OUT entries_in_memory bigint,
	OUT entries_fetched bigint,
	OUT entries_compacted bigint,	-- deleted from raftpg.log
	OUT snapshots_installed bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'raftpg_stats'
LANGUAGE C STRICT VOLATILE;

CREATE VIEW raftpg.stats AS SELECT * FROM raftpg.stats();
COMMENT ON VIEW raftpg.stats IS 'raftpg counters since the server started';

-- ---------------------------------------------------------------------
-- Replicated tables (see doc/replicated-tables.md)
-- ---------------------------------------------------------------------

-- The tables under Raft on this node.  Written by replicate_table() on
-- the leader and by the apply worker everywhere, in log order.
CREATE TABLE raftpg.replicated (
	relid oid PRIMARY KEY,
	added_index bigint NOT NULL		-- the log entry that added it
);
COMMENT ON TABLE raftpg.replicated IS 'raftpg: the replicated tables of this node';

-- How far the apply worker has applied the log.  One row, updated in the
-- same transaction as the changes it applied: exactly-once apply.
--
-- config is the configuration in force at applied_index (the last
-- configuration entry applied), so that the tables and this row are a
-- snapshot of the cluster's state as they stand.  import_node and
-- import_until: after a snapshot was copied from node import_node, log
-- entries up to import_until whose transactions their own node had
-- committed into the tables copied are in the tables already; their
-- raftpg.origin_commits rows came with the copy.
CREATE TABLE raftpg.apply_state (
	applied_index bigint NOT NULL,
	applied_term bigint NOT NULL,
	config_index bigint NOT NULL,
	config bytea,
	import_node bigint NOT NULL,
	import_until bigint NOT NULL
);
COMMENT ON TABLE raftpg.apply_state IS
	'raftpg: the last log entry applied to the tables of this node (one row)';
INSERT INTO raftpg.apply_state VALUES (0, 0, 0, NULL, 0, 0);

-- Transactions of this node that committed their changes to replicated
-- tables themselves, by incarnation (a random number drawn at every start
-- of the server, crashes included) and full transaction id: a row commits
-- with the changes, so that after a crash the apply worker knows to skip
-- their log entries.  (Within one incarnation the commit log answers that
-- question, and the rows are not read.)  A transaction inserts into the
-- table of the two that is current; the apply worker makes the other one
-- current from time to time and empties the first with TRUNCATE once every
-- entry of its rows is applied: no row is deleted one by one, and nothing
-- is left for vacuum.  Rows of a snapshot's source come with the copy.
CREATE TABLE raftpg.origin_commits_0 (
	incarnation bigint,
	fxid bigint,
	PRIMARY KEY (incarnation, fxid)
);
CREATE TABLE raftpg.origin_commits_1 (LIKE raftpg.origin_commits_0 INCLUDING ALL);
COMMENT ON TABLE raftpg.origin_commits_0 IS
	'raftpg: transactions of this node that applied their own log entries (one of two)';
COMMENT ON TABLE raftpg.origin_commits_1 IS
	'raftpg: transactions of this node that applied their own log entries (one of two)';
CREATE VIEW raftpg.origin_commits AS
	SELECT incarnation, fxid FROM raftpg.origin_commits_0
	UNION ALL
	SELECT incarnation, fxid FROM raftpg.origin_commits_1;
COMMENT ON VIEW raftpg.origin_commits IS
	'raftpg: transactions of this node that applied their own log entries';

-- Read by a node that copies a snapshot of the tables from this one
-- (src/snapshot.c), in the transaction that reads them: this node's id and
-- its commit index.
CREATE FUNCTION raftpg.snapshot_source(OUT node_id bigint, OUT commit_index bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'raftpg_snapshot_source'
LANGUAGE C STRICT VOLATILE;
REVOKE EXECUTE ON FUNCTION raftpg.snapshot_source() FROM PUBLIC;

-- The statements that create a table as it is defined here, every name
-- qualified: what replicate_table() sends through the log.
CREATE FUNCTION raftpg.table_definition(rel regclass)
RETURNS text[]
AS 'MODULE_PATHNAME', 'raftpg_table_definition'
LANGUAGE C STRICT STABLE;

-- Called by the leader on every member before replicate_table() proposes
-- anything: 'absent' or 'identical', or an error saying why the table
-- cannot be replicated here.
CREATE FUNCTION raftpg.check_table_definition(qualified_name text, definition text[])
RETURNS text
AS 'MODULE_PATHNAME', 'raftpg_check_table_definition'
LANGUAGE C STRICT VOLATILE;
REVOKE EXECUTE ON FUNCTION raftpg.check_table_definition(text, text[]) FROM PUBLIC;

-- The triggers replicate_table() installs (capture.c).
CREATE FUNCTION raftpg.guard() RETURNS trigger
AS 'MODULE_PATHNAME', 'raftpg_guard' LANGUAGE C;
CREATE FUNCTION raftpg.capture() RETURNS trigger
AS 'MODULE_PATHNAME', 'raftpg_capture' LANGUAGE C;
CREATE FUNCTION raftpg.capture_truncate() RETURNS trigger
AS 'MODULE_PATHNAME', 'raftpg_capture_truncate' LANGUAGE C;

-- on the leader: put a table under Raft, with its definition and rows
CREATE FUNCTION raftpg.replicate_table(rel regclass)
RETURNS bigint
AS 'MODULE_PATHNAME', 'raftpg_replicate_table'
LANGUAGE C STRICT VOLATILE;
REVOKE EXECUTE ON FUNCTION raftpg.replicate_table(regclass) FROM PUBLIC;
COMMENT ON FUNCTION raftpg.replicate_table(regclass) IS
	'on the leader: replicate a table (definition and rows) to every node';

-- on the leader: make a replicated table a plain local table everywhere
CREATE FUNCTION raftpg.unreplicate_table(rel regclass)
RETURNS bigint
AS 'MODULE_PATHNAME', 'raftpg_unreplicate_table'
LANGUAGE C STRICT VOLATILE;
REVOKE EXECUTE ON FUNCTION raftpg.unreplicate_table(regclass) FROM PUBLIC;

-- the log index of this session's last replicated commit, NULL if none
CREATE FUNCTION raftpg.last_write_index()
RETURNS bigint
AS 'MODULE_PATHNAME', 'raftpg_last_write_index'
LANGUAGE C VOLATILE;
GRANT EXECUTE ON FUNCTION raftpg.last_write_index() TO PUBLIC;

-- wait until this node has applied the log up to index; false on timeout
CREATE FUNCTION raftpg.wait_for_index(index bigint, timeout interval DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'raftpg_wait_for_index'
LANGUAGE C VOLATILE;
GRANT EXECUTE ON FUNCTION raftpg.wait_for_index(bigint, interval) TO PUBLIC;

CREATE VIEW raftpg.replicated_tables AS
SELECT r.relid::regclass AS relid,
	   n.nspname AS schema_name,
	   c.relname AS table_name,
	   r.added_index
FROM raftpg.replicated r
JOIN pg_class c ON c.oid = r.relid
JOIN pg_namespace n ON n.oid = c.relnamespace;
COMMENT ON VIEW raftpg.replicated_tables IS 'the tables raftpg replicates';
GRANT SELECT ON raftpg.replicated_tables TO PUBLIC;
