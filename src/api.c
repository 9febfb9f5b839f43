/*-------------------------------------------------------------------------
 *
 * api.c
 *	  The SQL-callable functions of schema raftpg.
 *
 * These run in ordinary backends.  They never touch the consensus node
 * directly: they read what the node worker has published in shared memory,
 * and (in later issues) hand requests to the worker and wait for its
 * answer.  Each one first checks that raftpg was loaded via
 * shared_preload_libraries, because without it there is no shared state
 * and no worker; the extension's install script calls
 * raftpg_assert_preloaded() for the same reason, so that CREATE EXTENSION
 * fails instead of creating functions that cannot work.
 *
 * Privileges are granted in the install script: functions that only report
 * (status) are open to everyone, anything that changes the cluster has
 * EXECUTE revoked from PUBLIC.
 *
 * src/api.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "storage/lwlock.h"
#include "utils/builtins.h"

#include "raftpg.h"

#define RAFTPG_STATUS_COLS	10

PG_FUNCTION_INFO_V1(raftpg_assert_preloaded);
PG_FUNCTION_INFO_V1(raftpg_status);

/*
 * raftpg_assert_preloaded() -> void
 *
 * Called by the install script only.
 */
Datum
raftpg_assert_preloaded(PG_FUNCTION_ARGS)
{
	RaftpgCheckPreloaded();

	PG_RETURN_VOID();
}

/*
 * raftpg.status() -> one row describing this node
 *
 * A snapshot of the node's shared state, copied under the lock so that the
 * indexes and the term shown belong together.
 */
Datum
raftpg_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	HeapTuple	tuple;
	Datum		values[RAFTPG_STATUS_COLS];
	bool		nulls[RAFTPG_STATUS_COLS];
	RaftpgNodeStatus status;
	pid_t		worker_pid;
	int			i = 0;

	RaftpgCheckPreloaded();

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (tupdesc->natts != RAFTPG_STATUS_COLS)
		elog(ERROR, "raftpg.status() must return %d columns, not %d",
			 RAFTPG_STATUS_COLS, tupdesc->natts);

	LWLockAcquire(&RaftpgShmem->lock, LW_SHARED);
	status = RaftpgShmem->status;
	worker_pid = RaftpgShmem->worker_pid;
	LWLockRelease(&RaftpgShmem->lock);

	memset(nulls, 0, sizeof(nulls));

	/* node_name: this server's GUC, NULL while it is not set */
	if (raftpg_node_name != NULL && raftpg_node_name[0] != '\0')
		values[i] = CStringGetTextDatum(raftpg_node_name);
	else
		nulls[i] = true;
	i++;

	values[i++] = CStringGetTextDatum(RaftpgRoleName(status.role));
	values[i++] = BoolGetDatum(status.voter);
	values[i++] = Int64GetDatum((int64) status.term);

	/* leader_name: NULL while no leader is known */
	status.leader_name[RAFTPG_NAME_LEN - 1] = '\0';
	if (status.leader_name[0] != '\0')
		values[i] = CStringGetTextDatum(status.leader_name);
	else
		nulls[i] = true;
	i++;

	values[i++] = Int64GetDatum((int64) status.last_log_index);
	values[i++] = Int64GetDatum((int64) status.last_log_term);
	values[i++] = Int64GetDatum((int64) status.commit_index);
	values[i++] = Int64GetDatum((int64) status.applied_index);

	/* worker_pid: NULL while the node worker is not running */
	if (worker_pid != 0)
		values[i] = Int32GetDatum((int32) worker_pid);
	else
		nulls[i] = true;
	i++;

	Assert(i == RAFTPG_STATUS_COLS);

	tuple = heap_form_tuple(tupdesc, values, nulls);
	PG_RETURN_DATUM(HeapTupleGetDatum(tuple));
}
