/*-------------------------------------------------------------------------
 *
 * reads.c
 *	  Linearizable reads of replicated tables: raftpg.read_consistency.
 *
 * Every node holds a copy of the replicated tables, and a read with
 * raftpg.read_consistency = 'local' (the default) reads this node's copy as
 * it is: on a follower it may lack writes the leader has already
 * acknowledged.  With 'linearizable', a read sees every write that was
 * acknowledged anywhere in the cluster before it began.
 *
 * The protocol is the dissertation's ReadIndex (6.4).  The backend asks the
 * node worker for a read point (RAFTPG_REQ_READ_INDEX); the node worker
 * asks the leader, which confirms with a quorum that it still leads and
 * answers with its commit index.  Every write acknowledged before the
 * request is at or below that index.  The backend then waits until this
 * node has applied the log up to the read point, and reads with a snapshot
 * taken after that.  On the leader the same path costs one heartbeat round;
 * a node that cannot reach a leader cannot serve a linearizable read, and
 * says so instead of reading stale rows.
 *
 * The unit is the transaction: the first statement of a transaction that
 * reads a replicated table (any relation in its range table that
 * raftpg.replicated lists) does the round, and later statements of the
 * same transaction read at or after that point.  Where the snapshot comes
 * from depends on the isolation level:
 *
 * READ COMMITTED.  The statement's snapshot was taken before ExecutorStart
 * runs, so ExecutorStart_hook does the round and then puts a fresh snapshot
 * in place of the statement's, in the QueryDesc and on top of the active
 * snapshot stack.
 *
 * REPEATABLE READ and SERIALIZABLE.  The transaction has one snapshot,
 * taken by its first statement before any hook could do a round, and it
 * cannot be replaced.  So the round is done earlier, in ProcessUtility_hook,
 * after BEGIN or START TRANSACTION, and after a SET (SET TRANSACTION
 * ISOLATION LEVEL, SET raftpg.read_consistency), when the transaction block
 * is at such a level, has no snapshot yet and the database has replicated
 * tables: the snapshot taken by its first query then follows the round.
 * A transaction whose snapshot was taken before any round (an implicit
 * single-statement transaction under default_transaction_isolation, or a
 * block that set the parameter after its first query) does the round in
 * ExecutorStart and checks the snapshot it has: raftpg.apply_state, read
 * with that snapshot, says how far the log had been applied in it.  If
 * that reaches the read point the snapshot is good; if not, the statement
 * fails with a serialization failure (40001), to be retried.
 *
 * Our own workers never wait for a read point: the node worker answers
 * them, and the apply worker is what they wait for.  Parallel workers read
 * with their leader's snapshot, which already follows the round.
 *
 * src/reads.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/parallel.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/condition_variable.h"
#include "storage/lwlock.h"
#include "tcop/pquery.h"
#include "tcop/utility.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/portal.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "raftpg.h"
#include "reads.h"

int			raftpg_read_consistency = RAFTPG_READ_LOCAL;

static const struct config_enum_entry read_consistency_options[] = {
	{"local", RAFTPG_READ_LOCAL, false},
	{"linearizable", RAFTPG_READ_LINEARIZABLE, false},
	{NULL, 0, false}
};

static ExecutorStart_hook_type prev_executor_start = NULL;
static ProcessUtility_hook_type prev_process_utility = NULL;

/* the current transaction reads at or after a read point */
static bool rd_xact_linearized = false;

/*
 * Whether a relation is replicated, per backend.  An entry goes when the
 * relation's relcache entry is invalidated: replicate_table() and
 * unreplicate_table() change its triggers in the transaction that writes
 * raftpg.replicated, so the invalidation comes with the change.
 */
typedef struct ReadsRel
{
	Oid			relid;			/* hash key */
	bool		replicated;
} ReadsRel;

static HTAB *rd_rels = NULL;
/* invalidations seen: a lookup that overlapped one is not cached */
static uint64 rd_inval_count = 0;
/* raftpg.replicated, resolved by name when needed */
static Oid	rd_replicated_relid = InvalidOid;

static void rd_executor_start(QueryDesc *queryDesc, int eflags);
static void rd_process_utility(PlannedStmt *pstmt, const char *queryString,
							   bool readOnlyTree, ProcessUtilityContext context,
							   ParamListInfo params, QueryEnvironment *queryEnv,
							   DestReceiver *dest, QueryCompletion *qc);
static void rd_xact_callback(XactEvent event, void *arg);
static void rd_relcache_callback(Datum arg, Oid relid);
static void rd_report_no_leader(const char *detail) pg_attribute_noreturn();

void
ReadsInit(void)
{
	DefineCustomEnumVariable("raftpg.read_consistency",
							 "What reads of replicated tables are guaranteed "
							 "to see.",
							 "\"local\" reads this node's copy as it is, "
							 "possibly behind the leader.  \"linearizable\" "
							 "sees every write acknowledged in the cluster "
							 "before the transaction's first read, at the "
							 "cost of one round with the leader.",
							 &raftpg_read_consistency,
							 RAFTPG_READ_LOCAL,
							 read_consistency_options,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	prev_executor_start = ExecutorStart_hook;
	ExecutorStart_hook = rd_executor_start;
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = rd_process_utility;

	RegisterXactCallback(rd_xact_callback, NULL);
	CacheRegisterRelcacheCallback(rd_relcache_callback, (Datum) 0);
}

static void
rd_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			rd_xact_linearized = false;
			break;
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			break;
	}
}

static void
rd_relcache_callback(Datum arg, Oid relid)
{
	rd_inval_count++;
	if (rd_rels == NULL)
		return;
	if (relid == InvalidOid || relid == rd_replicated_relid)
	{
		HASH_SEQ_STATUS seq;
		ReadsRel   *r;

		rd_replicated_relid = InvalidOid;
		hash_seq_init(&seq, rd_rels);
		while ((r = hash_seq_search(&seq)) != NULL)
			(void) hash_search(rd_rels, &r->relid, HASH_REMOVE, NULL);
		return;
	}
	(void) hash_search(rd_rels, &relid, HASH_REMOVE, NULL);
}

/* raftpg.replicated, opened, or NULL where the extension is not installed */
static Relation
rd_open_replicated(void)
{
	Relation	rel;

	if (!OidIsValid(rd_replicated_relid))
	{
		Oid			nsp = get_namespace_oid("raftpg", true);

		if (!OidIsValid(nsp))
			return NULL;
		rd_replicated_relid = get_relname_relid("replicated", nsp);
		if (!OidIsValid(rd_replicated_relid))
			return NULL;
	}
	rel = try_table_open(rd_replicated_relid, AccessShareLock);
	if (rel == NULL)
		rd_replicated_relid = InvalidOid;	/* dropped under us */
	return rel;
}

/*
 * Does raftpg.replicated list relid, or (relid invalid) any table?  Read
 * with a fresh catalog snapshot.
 */
static bool
rd_scan_replicated(Oid relid)
{
	Relation	rel = rd_open_replicated();
	Oid			pk;
	ScanKeyData key;
	SysScanDesc scan;
	bool		found;

	if (rel == NULL)
		return false;
	pk = RelationGetPrimaryKeyIndex(rel);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, pk, OidIsValid(pk) && OidIsValid(relid),
							  NULL, OidIsValid(relid) ? 1 : 0, &key);
	found = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

static bool
rd_is_replicated(Oid relid)
{
	ReadsRel   *r;
	uint64		inval_count = rd_inval_count;
	bool		replicated;

	if (rd_rels == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(ReadsRel);
		rd_rels = hash_create("raftpg replicated relations", 64, &ctl,
							  HASH_ELEM | HASH_BLOBS);
	}
	r = hash_search(rd_rels, &relid, HASH_FIND, NULL);
	if (r != NULL)
		return r->replicated;

	replicated = rd_scan_replicated(relid);

	/*
	 * An invalidation processed during the scan (opening the table accepts
	 * them) may be the one for this relation, arrived after the snapshot
	 * the scan used: then the answer may be stale, and is not kept.
	 */
	if (inval_count == rd_inval_count)
	{
		r = hash_search(rd_rels, &relid, HASH_ENTER, NULL);
		r->replicated = replicated;
	}
	return replicated;
}

/* does the statement read (or write) a replicated table? */
static bool
rd_reads_replicated(PlannedStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->rtable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

		if (rte->rtekind == RTE_RELATION && rd_is_replicated(rte->relid))
			return true;
	}
	return false;
}

/* may this process wait for a read point? */
static bool
rd_may_wait(void)
{
	pid_t		node_worker;

	if (IsParallelWorker() || RaftpgIsApplyWorker())
		return false;
	LWLockAcquire(&RaftpgShmem->lock, LW_SHARED);
	node_worker = RaftpgShmem->worker_pid;
	LWLockRelease(&RaftpgShmem->lock);
	return node_worker != MyProcPid;
}

static void
rd_report_no_leader(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("no raftpg leader could confirm a linearizable read"),
			 errdetail("%s", detail),
			 errhint("Try again once the cluster has a leader (see raftpg.status()), or read this node's copy with raftpg.read_consistency = local.")));
}

/*
 * One read round: the index every write acknowledged so far is at or
 * below, confirmed by the leader with a quorum (dissertation 6.4).
 */
static uint64
rd_read_index(void)
{
	RaftpgRequest req;
	RaftpgReply reply;
	MemoryContext cxt = CurrentMemoryContext;

	memset(&req, 0, sizeof(req));
	req.kind = RAFTPG_REQ_READ_INDEX;

	/*
	 * RaftpgSubmit() reports a request nobody answered within
	 * raftpg.commit_timeout as an unknown outcome, which is what it is for
	 * a write.  A read has no outcome to be unsure of: it simply could not
	 * be confirmed.
	 */
	PG_TRY();
	{
		reply = RaftpgSubmit(&req, NULL, 0);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (edata->sqlerrcode != ERRCODE_TRANSACTION_RESOLUTION_UNKNOWN)
		{
			FreeErrorData(edata);
			PG_RE_THROW();
		}
		FlushErrorState();
		rd_report_no_leader("No leader answered within raftpg.commit_timeout.");
	}
	PG_END_TRY();

	if (reply.rc != RAFT_OK)
	{
		if (RaftpgReadStatus().role == RAFTPG_ROLE_UNCONFIGURED)
			rd_report_no_leader("This server is not a member of a raftpg cluster.");
		if (reply.rc == RAFT_ENOTLEADER)
			rd_report_no_leader("This node knows no leader, or leadership changed during the read.");
		rd_report_no_leader(psprintf("The node worker refused the read: %s.",
									 raft_strerror(reply.rc)));
	}
	return reply.index;
}

/* wait until this node has applied the log up to index */
static void
rd_wait_applied(uint64 index, TimestampTz deadline)
{
	uint64		applied;

	if (!RaftpgWaitApplied(index, deadline, &applied))
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("timed out waiting for this node to apply the log up to the read point"),
				 errdetail("The read point is log entry " UINT64_FORMAT "; this node has applied up to " UINT64_FORMAT ".",
						   index, applied),
				 errhint("Compare applied_index with commit_index in raftpg.status(), and look for apply errors in the server log.")));
}

/*
 * How far the log had been applied in snapshot: raftpg.apply_state is
 * written in the same transaction as the rows it accounts for.
 */
static uint64
rd_snapshot_applied(Snapshot snapshot)
{
	Oid			nsp = get_namespace_oid("raftpg", false);
	Oid			relid = get_relname_relid("apply_state", nsp);
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;
	uint64		applied = 0;

	if (!OidIsValid(relid))
		elog(ERROR, "table raftpg.apply_state is missing");
	rel = table_open(relid, AccessShareLock);
	scan = table_beginscan(rel, snapshot, 0, NULL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		bool		isnull;
		Datum		d = heap_getattr(tuple, 1, RelationGetDescr(rel), &isnull);

		if (!isnull)
			applied = Max(applied, (uint64) DatumGetInt64(d));
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	return applied;
}

/*
 * READ COMMITTED: the statement reads with a snapshot taken now, after the
 * wait, instead of the one taken before ExecutorStart.  The executor scans
 * with queryDesc->snapshot; functions it calls run with the active
 * snapshot, which the caller pushed from the same snapshot, so that one is
 * replaced too.
 */
static void
rd_swap_snapshot(QueryDesc *queryDesc)
{
	Snapshot	old = queryDesc->snapshot;
	Snapshot	fresh = RegisterSnapshot(GetTransactionSnapshot());

	/* newer transactions, the same command of this one */
	fresh->curcid = old->curcid;

	if (ActiveSnapshotSet() && GetActiveSnapshot() == old)
	{
		PopActiveSnapshot();
		if (ActivePortal != NULL && ActivePortal->portalSnapshot == old)
		{
			/* as EnsurePortalSnapshotExists() pushes it */
			PushActiveSnapshotWithLevel(fresh, ActivePortal->createLevel);
			ActivePortal->portalSnapshot = fresh;
		}
		else
			PushActiveSnapshot(fresh);
	}
	UnregisterSnapshot(old);
	queryDesc->snapshot = fresh;
}

/* the first statement of the transaction that reads a replicated table */
static void
rd_linearize_statement(QueryDesc *queryDesc)
{
	TimestampTz deadline =
		TimestampTzPlusMilliseconds(GetCurrentTimestamp(), raftpg_commit_timeout);
	uint64		index = rd_read_index();

	if (IsolationUsesXactSnapshot())
	{
		/* the transaction snapshot exists already, and stays */
		uint64		seen = rd_snapshot_applied(queryDesc->snapshot);

		if (seen < index)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("the snapshot of this transaction predates the linearizable read point"),
					 errdetail("The read point is log entry " UINT64_FORMAT "; the snapshot shows the log applied up to " UINT64_FORMAT ".",
							   index, seen),
					 errhint("Retry the transaction.  A REPEATABLE READ or SERIALIZABLE transaction block started while raftpg.read_consistency is linearizable gets its read point before its snapshot, and does not fail this way.")));
	}
	else
	{
		rd_wait_applied(index, deadline);
		rd_swap_snapshot(queryDesc);
	}
	rd_xact_linearized = true;
}

static void
rd_executor_start(QueryDesc *queryDesc, int eflags)
{
	if (raftpg_read_consistency == RAFTPG_READ_LINEARIZABLE &&
		!rd_xact_linearized &&
		(eflags & EXEC_FLAG_EXPLAIN_ONLY) == 0 &&
		queryDesc->snapshot != InvalidSnapshot &&
		rd_may_wait() &&
		rd_reads_replicated(queryDesc->plannedstmt))
		rd_linearize_statement(queryDesc);

	if (prev_executor_start)
		prev_executor_start(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

/*
 * REPEATABLE READ and SERIALIZABLE: the read point before the snapshot.
 * After BEGIN / START TRANSACTION and after SET, in a transaction block at
 * such a level that has no snapshot yet.
 */
static void
rd_process_utility(PlannedStmt *pstmt, const char *queryString,
				   bool readOnlyTree, ProcessUtilityContext context,
				   ParamListInfo params, QueryEnvironment *queryEnv,
				   DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	bool		candidate;

	candidate = IsA(parsetree, VariableSetStmt) ||
		(IsA(parsetree, TransactionStmt) &&
		 (((TransactionStmt *) parsetree)->kind == TRANS_STMT_BEGIN ||
		  ((TransactionStmt *) parsetree)->kind == TRANS_STMT_START));

	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context,
							 params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);

	if (candidate &&
		raftpg_read_consistency == RAFTPG_READ_LINEARIZABLE &&
		!rd_xact_linearized &&
		IsTransactionBlock() &&
		IsolationUsesXactSnapshot() &&
		!FirstSnapshotSet &&
		rd_may_wait() &&
		rd_scan_replicated(InvalidOid))
	{
		TimestampTz deadline =
			TimestampTzPlusMilliseconds(GetCurrentTimestamp(), raftpg_commit_timeout);

		rd_wait_applied(rd_read_index(), deadline);
		rd_xact_linearized = true;
	}
}
