/*-------------------------------------------------------------------------
 *
 * apply.c
 *	  The raftpg apply worker: committed log entries into the tables.
 *
 * A background worker of its own, next to the node worker, because apply
 * may block on locks, run long transactions and raise errors, none of
 * which may stall heartbeats.  It connects to raftpg.database as a
 * replica (session_replication_role = replica), so the capture triggers
 * of replicated tables stay silent and their foreign keys are not checked
 * again, as in PostgreSQL's logical replication.
 *
 * The node worker publishes the commit index and sets our latch when it
 * moves.  Entries are read back from raftpg.log (StorageLogScan): the log
 * table is the one source, nothing is copied through shared memory.  Each
 * batch of entries is applied in one transaction that also writes the new
 * applied_index into raftpg.apply_state, so a batch is applied wholly or
 * not at all, and a restart resumes after the last committed batch:
 * every entry is applied exactly once, whenever the worker is killed.
 * Since the Raft log is the durable copy, these commits need no flush of
 * their own (synchronous_commit = off): a lost one is redone.  Under a
 * light load a small batch waits a moment (raftpg.apply_linger) for more
 * entries, so that it is not one transaction per commit -- unless a
 * backend waits for apply (RaftpgWaitApplied()) or the write gate does.
 *
 * A transaction that was cut into several chunks is applied when its last
 * chunk is read; a batch never ends inside one (it stops before its first
 * chunk instead).  A chunk that does not continue the open transaction
 * means a leader change cut that transaction short (its chunks were
 * proposed together, so the rest can never follow): it is discarded.
 *
 * On the node whose backend made a transaction, the changes are already
 * in the tables if that backend committed.  The entry's header names the
 * transaction -- this server's incarnation and its full xid -- and apply
 * waits for it to end, then skips the entry if it committed and applies
 * it if not (the backend failed after the cluster committed its entry, or
 * a crash lost its local commit).  The commit log answers within the
 * incarnation; the row the transaction inserted into an origin table
 * answers after a crash ("Origin rows" below).
 *
 * An error stops apply at the failing entry, never past it: the worker
 * logs it with the entry's index, exits, and the postmaster starts it
 * again a second later.  Apply waits at most a second for a lock held by a
 * local session; on a node that no longer leads it then ends the sessions
 * that wrote replicated tables while it led (end_doomed_writers()).
 *
 * On the leader, the apply worker also keeps the sequences' reservations
 * ahead of use (sequences.c), after each batch and when idle.
 *
 * raftpg.apply_state also holds the configuration in force at the applied
 * index (the last configuration entry applied), so that the tables and
 * that row are a snapshot of the cluster's state another node can copy.
 * Copying one from another node is the apply worker's job too, when the
 * node worker asks for it (snapshot.c): in one transaction with the new
 * apply_state.
 *
 * src/apply.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/tablecmds.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/bufmgr.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "raftpg.h"
#include "changes.h"
#include "ddl.h"
#include "replicate.h"
#include "sequences.h"
#include "snapshot.h"
#include "storage.h"

/* at most this many entries, or this many bytes of them, per transaction */
#define APPLY_BATCH_ENTRIES		1000
#define APPLY_BATCH_BYTES		(16 * 1024 * 1024)
/* with nothing to do, look again this often anyway */
#define APPLY_IDLE_MS			1000

/*
 * A batch of fewer entries than this waits until raftpg.apply_linger after
 * the last one ended.  Each batch is a transaction of its own, with a scan
 * of the log and a rewrite of raftpg.apply_state: under a light load, one
 * per commit cost every node as much CPU as the commit itself.  Under load
 * too: with 16 here, a batch started as soon as 16 entries were there, and
 * at 32 clients the batches' own costs (the transaction, the state row,
 * the wake-ups) were half of a follower's apply CPU; with 64, apply took
 * 3-4 us per commit on a follower instead of 5.6-6.4 (cpucat, 32-client
 * inserts on make demo).  Apply lags by the linger at most -- unless
 * someone waits for it: then it applies at once.
 *
 * The linger is 20 ms by default.  At one client (some 2,000 commits a
 * second on make demo) that halves a follower's apply CPU against 5 ms
 * (11-15 us per commit against 6-7; 10-14 against 23-30 on a slower day)
 * and takes 7-15% off the CPU of all the processes of the three servers.
 * Longer batches need the pruning ahead in tidcache_find(): the versions a
 * batch writes can be pruned only once it committed, and PostgreSQL prunes
 * a page only when less than a tenth of it is free, so without it a batch
 * that added more than that to one page (a hot row, a small table)
 * spilled to new pages -- with 20 ms, 400 updates of one row left a
 * follower's copy of a one-page table three pages long
 * (007_replicated_tables.pl).
 */
#define APPLY_LINGER_ENTRIES	64

int			raftpg_apply_linger = 20;

static TimestampTz last_batch_end = 0;
static bool lingered = false;	/* the next batch waited already */

static bool am_apply_worker = false;

/* the tables, resolved when the extension is found (raftpg.log by storage.c) */
static Oid	state_relid = InvalidOid;
static Oid	origin_relid[2] = {InvalidOid, InvalidOid};	/* origin_commits_0, _1 */
static Oid	origin_index_relid[2] = {InvalidOid, InvalidOid};

/* raftpg.apply_state, as last committed */
static uint64 applied_index = 0;
static uint64 applied_term = 0;

/* the rest of raftpg.apply_state, as last committed (TopMemoryContext) */
static uint64 applied_config_index = 0;
static bytea *applied_config = NULL;
static uint64 import_node = 0;
static uint64 import_until = 0;

/* switching and emptying the origin tables (origin_tick()) */
static int	origin_draining = -1;	/* the table being emptied, -1 none */
static uint64 origin_drain_until = 0;	/* step 2's index, 0 before step 1 */
static TimestampTz origin_switched_at = 0;
static uint64 origin_switched_commits = 0;
/*
 * Switches wanted whatever the commits since the last: both tables may
 * hold rows when the worker starts, the current one after a snapshot.
 */
static int	origin_sweeps = 2;

/* entries up to import_until skipped, as the snapshot held them already */
static uint64 import_skipped = 0;
static bool import_reported = true;

/* a configuration entry the batch in progress passed, until it commits */
static bytea *batch_config = NULL;
static uint64 batch_config_index = 0;

/* snapshot installs that failed in a row (apply_install_snapshot) */
static int	snapshot_failures = 0;

/*
 * The first index of the log row that holds entry applied_index, where the
 * next batch's scan starts (StorageLogScanBegin); 0 when not known.
 */
static uint64 applied_row = 0;

/* where apply_save_state() last left the row of raftpg.apply_state */
static ItemPointerData state_row_tid;

static MemoryContext apply_cxt = NULL;
static uint64 loaded_cluster_id = 0;	/* the cluster the tables are of */

/* the entry being applied, for the error context */
static uint64 current_index = 0;

/* ----------
 * One replicated transaction being applied
 * ----------
 */
typedef struct ApplyColumn
{
	AttrNumber	attnum;			/* local column */
	Oid			typid;
	int32		typmod;
	Oid			typioparam;
	FmgrInfo	in;
	FmgrInfo	recv;
	bool		has_recv;
} ApplyColumn;

typedef struct ApplyRel
{
	/* from the 'R' record */
	char	   *nspname;
	char	   *relname;
	int			ncols;
	char	  **colnames;
	char	  **typnames;
	int			nkeys;
	int		   *keypos;
	/* resolved at first use */
	Relation	rel;
	ApplyColumn *cols;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *newslot;
	TupleTableSlot *keyslot;
	TupleTableSlot *localslot;
	Oid			pkoid;
	BlockNumber nblocks;		/* the table's size when opened, locked */
	bool		tidcache_ok;	/* the local primary key is the leader's */
} ApplyRel;

typedef struct ApplyTxn
{
	RaftpgChunkHeader first;	/* header of its first chunk */
	uint64		first_index;
	uint32		next_chunk;
	StringInfoData stream;
	bool		open;
} ApplyTxn;

static ApplyTxn txn;

/* the current transaction's relations, by relref */
static ApplyRel **rels = NULL;
static int	nrels = 0;
static ApplyRel *ar_used = NULL;	/* the relation the last record used */

/*
 * The relations of a batch.  A batch is one local transaction, and its
 * transactions' 'R' records mostly describe the same tables in the same
 * way: a table is opened, its columns mapped and its executor state built
 * once per batch, not once per transaction.  An 'R' record reuses an open
 * relation only if its bytes are those the relation was opened for.  DDL,
 * TRUNCATE and the addition or removal of a replicated table close them
 * all (release_relations), and so does the end of the batch.
 */
typedef struct BatchRel
{
	char	   *def;			/* the 'R' record's body after the relref */
	uint32		deflen;
	ApplyRel   *ar;
} BatchRel;

static BatchRel *batch_rels = NULL;
static int	n_batch_rels = 0;
static int	max_batch_rels = 0;
static MemoryContext batch_cxt = NULL;	/* the batch's relations live here */
static uint64 batch_txns = 0;	/* transactions applied in this batch */
static int	batch_entries = 0;	/* entries the batch may apply */
static bool trigger_query_open = false;

static void apply_detach_shmem(int code, Datum arg);
static bool apply_resolve(void);
static void apply_load_state(void);
static void apply_batch(uint64 target);
static void apply_txn(uint64 index);
static void origin_tick(void);
static void release_relations(void);
static void tidcache_reset(void);
static void apply_install_snapshot(void);
static void set_applied_config(const bytea *config, uint64 index);
static void apply_publish(void);
static void apply_save_state(uint64 index, uint64 term);

bool
RaftpgIsApplyWorker(void)
{
	return am_apply_worker;
}

void
RaftpgApplyMain(Datum main_arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(raftpg_database, NULL, 0);
	am_apply_worker = true;
	RaftpgAttachWorker(true, apply_detach_shmem);

	/* capture stays silent, foreign keys are not checked again */
	SetConfigOption("session_replication_role", "replica",
					PGC_SUSET, PGC_S_OVERRIDE);
	/* the Raft log is the durable copy: a lost apply commit is redone */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	/*
	 * A lock held by a local session holds up apply: give up after a
	 * second, end the sessions that cannot commit anyway (below), retry.
	 */
	SetConfigOption("lock_timeout", "1000", PGC_SUSET, PGC_S_OVERRIDE);
	/* text values are read under the settings they were written with */
	SetConfigOption("DateStyle", "ISO, MDY", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("IntervalStyle", "postgres", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("extra_float_digits", "3", PGC_SUSET, PGC_S_OVERRIDE);

	apply_cxt = AllocSetContextCreate(TopMemoryContext, "raftpg apply",
									  ALLOCSET_DEFAULT_SIZES);
	initStringInfo(&txn.stream);

	ereport(LOG,
			(errmsg("raftpg apply worker started in database \"%s\"",
					raftpg_database)));

	for (;;)
	{
		uint64		commit;
		uint64		durable;
		uint64		target;
		uint64		cluster_id;
		long		linger_ms;
		bool		linger;
		bool		snapshot_wanted;

		MemoryContextReset(apply_cxt);
		MemoryContextSwitchTo(apply_cxt);
		/* before looking for work: whatever sets it later wakes the wait */
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		/*
		 * A new cluster (or none: the extension was dropped) means new
		 * tables: find them and load their state again.
		 */
		LWLockAcquire(&RaftpgShmem->lock, LW_SHARED);
		cluster_id = RaftpgShmem->cluster_id;
		LWLockRelease(&RaftpgShmem->lock);
		if (cluster_id != loaded_cluster_id)
		{
			state_relid = InvalidOid;
			loaded_cluster_id = cluster_id;
			applied_index = 0;
			applied_term = 0;
			applied_row = 0;
			/* the origin tables may be new ones */
			origin_draining = -1;
			origin_drain_until = 0;
			origin_sweeps = 2;
		}

		if (!OidIsValid(state_relid) && cluster_id != 0)
		{
			SetCurrentStatementStartTimestamp();
			StartTransactionCommand();
			PushActiveSnapshot(GetTransactionSnapshot());
			if (apply_resolve())
				apply_load_state();
			PopActiveSnapshot();
			CommitTransactionCommand();
			MemoryContextSwitchTo(apply_cxt);
		}

		/*
		 * Committed entries that are durable here too.  After a batch,
		 * the next one waits until raftpg.apply_linger after it, whether
		 * anything came yet or not: under a light, steady load that is
		 * one wake-up per batch, on the timer.  Commits wake us only once
		 * a full batch is there (or at the first one, when nothing is
		 * left to linger for); apply_wake_at, set in the same hold of the
		 * lock in which the commit index is read, tells the node worker
		 * which.  The first commit after a quiet spell is applied at once.
		 */
		linger_ms = 0;
		if (!lingered && OidIsValid(state_relid))
			linger_ms = raftpg_apply_linger -
				TimestampDifferenceMilliseconds(last_batch_end,
												GetCurrentTimestamp());
		LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
		if (RaftpgShmem->cluster_id != loaded_cluster_id)
		{
			/* reset by the node worker: start over with the new cluster */
			RaftpgShmem->apply_wake_at = 0;
			LWLockRelease(&RaftpgShmem->lock);
			continue;
		}
		commit = RaftpgShmem->status.commit_index;
		durable = RaftpgShmem->status.last_log_index;
		/* the node worker asks for a snapshot not installed yet */
		snapshot_wanted = RaftpgShmem->snap_req_seq != RaftpgShmem->snap_done_seq;
		target = Min(commit, durable);

		/*
		 * At most once per batch, and never while anyone waits: a backend
		 * for apply, the write gate, or a new leader for its sequences'
		 * reservations (sequences.c), which open local writes too.
		 */
		linger = linger_ms > 0 && !snapshot_wanted &&
			target < applied_index + APPLY_LINGER_ENTRIES &&
			RaftpgShmem->gate_index <= applied_index &&
			RaftpgShmem->apply_waiters == 0 &&
			(RaftpgShmem->ready_term == 0 ||
			 RaftpgShmem->seq_ready_term == RaftpgShmem->ready_term);
		RaftpgShmem->apply_wake_at = applied_index +
			(linger ? APPLY_LINGER_ENTRIES : 1);
		LWLockRelease(&RaftpgShmem->lock);

		if (linger)
		{
			lingered = true;
			(void) WaitLatch(MyLatch,
							 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 linger_ms, PG_WAIT_EXTENSION);
			continue;
		}
		if (OidIsValid(state_relid) && snapshot_wanted)
		{
			apply_install_snapshot();
			continue;
		}
		if (OidIsValid(state_relid) && target > applied_index)
		{
			apply_batch(target);
			last_batch_end = GetCurrentTimestamp();
			lingered = false;
			/* what the batch did to the tables, for autovacuum */
			RaftpgReportStats();
			/* under load too: reservations must keep ahead of use */
			SequencesTick(applied_index);
			origin_tick();
			continue;
		}
		if (OidIsValid(state_relid))
		{
			SequencesTick(applied_index);
			origin_tick();
		}

		RaftpgReportStats();
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 APPLY_IDLE_MS, PG_WAIT_EXTENSION);
	}
}

/*
 * Copy the snapshot the node worker asked for (snapshot.c) and write the
 * apply_state that goes with it, in one transaction, flushed before the
 * node worker hears of it: it drops its log up to there next.  An error
 * is logged and reported to the node worker, and apply goes on.
 */
static void
apply_install_snapshot(void)
{
	uint64		seq;
	uint64		min_index;
	char		name[RAFTPG_NAME_LEN];
	char		conninfo[RAFTPG_CONNINFO_LEN];
	Latch	   *latch;
	SnapshotResult res;
	MemoryContext oldcxt = CurrentMemoryContext;
	volatile bool ok = true;

	LWLockAcquire(&RaftpgShmem->lock, LW_SHARED);
	seq = RaftpgShmem->snap_req_seq;
	min_index = RaftpgShmem->snap_req_index;
	strlcpy(name, RaftpgShmem->snap_req_name, sizeof(name));
	strlcpy(conninfo, RaftpgShmem->snap_req_conninfo, sizeof(conninfo));
	LWLockRelease(&RaftpgShmem->lock);

	ereport(LOG,
			(errmsg("raftpg: copying a snapshot of the tables at log index " UINT64_FORMAT " or later from node \"%s\"",
					min_index, name)));
	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		/* the node worker deletes its log up to here next */
		(void) set_config_option("synchronous_commit", "on", PGC_SUSET,
								 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "raftpg: copying a snapshot");
		/* the order of apply_batch() */
		LockRelationOid(state_relid, RowExclusiveLock);
		tidcache_reset();
		/* never older than what the tables hold now */
		SnapshotCopy(name, conninfo, Max(min_index, applied_index), &res);
		/* in memory that outlives the transaction, until it is taken over */
		batch_config = MemoryContextAlloc(apply_cxt, VARSIZE_ANY(res.config));
		memcpy(batch_config, res.config, VARSIZE_ANY(res.config));
		batch_config_index = res.index;
		import_node = res.import_node;
		import_until = res.import_until;

		/*
		 * The copy replaced the changes of this node's own transactions
		 * committed so far: their entries after the snapshot are applied
		 * again, by their rows, which it deleted ("Origin rows").  Set
		 * before the commit, in case this worker does not live past it.
		 */
		LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
		RaftpgShmem->own_rows_until = Max(RaftpgShmem->own_rows_until,
										  RaftpgShmem->proposed_high);
		LWLockRelease(&RaftpgShmem->lock);
		apply_save_state(res.index, res.term);
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		ereport(LOG,
				(errcode(edata->sqlerrcode),
				 errmsg("raftpg: could not copy a snapshot from node \"%s\": %s",
						name, edata->message),
				 edata->detail ? errdetail("%s", edata->detail) : 0));
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	pgstat_report_activity(STATE_IDLE, NULL);

	if (ok)
	{
		snapshot_failures = 0;
		set_applied_config(batch_config, batch_config_index);
		batch_config = NULL;
		applied_index = res.index;
		applied_term = res.term;
		applied_row = 0;
		apply_publish();
		import_skipped = 0;
		import_reported = false;
		if (res.origin_rows > 0)
			origin_sweeps = Max(origin_sweeps, 1);
		ereport(LOG,
				(errmsg("raftpg: installed a snapshot at log index " UINT64_FORMAT " copied from node \"%s\": %d tables, " UINT64_FORMAT " rows, %d origin rows",
						res.index, name, res.tables, res.rows, res.origin_rows)));
	}
	else
	{
		long		delay = Min(1000L << Min(snapshot_failures, 5), 30000L);
		TimestampTz until;

		/* what the failed transaction may have left: read it again */
		batch_config = NULL;
		state_relid = InvalidOid;

		/*
		 * The leader offers the snapshot again at once: wait before saying
		 * no, longer after every failure, rather than copy it over and
		 * over while what failed (a lock held here, a foreign key) lasts.
		 */
		until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), delay);
		snapshot_failures++;
		while (RaftpgRemainingMs(until) > 0)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 RaftpgRemainingMs(until), PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
	LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
	RaftpgShmem->snap_done_seq = seq;
	RaftpgShmem->snap_ok = ok;
	latch = RaftpgShmem->worker_latch;
	LWLockRelease(&RaftpgShmem->lock);
	if (latch)
		SetLatch(latch);
}

static void
apply_detach_shmem(int code, Datum arg)
{
	LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
	if (RaftpgShmem->apply_pid == MyProcPid)
	{
		RaftpgShmem->apply_pid = 0;
		RaftpgShmem->apply_latch = NULL;
	}
	LWLockRelease(&RaftpgShmem->lock);
	ConditionVariableBroadcast(&RaftpgShmem->cv);
}

/* find the extension's tables; false if it is not installed (yet) */
static bool
apply_resolve(void)
{
	Oid			nsp = get_namespace_oid("raftpg", true);

	if (!OidIsValid(nsp))
		return false;
	state_relid = get_relname_relid("apply_state", nsp);
	if (!StorageResolve() || !OidIsValid(state_relid) ||
		!StorageResolveOrigin(origin_relid, origin_index_relid))
	{
		state_relid = InvalidOid;
		return false;
	}
	return true;
}

/* publish how far apply has come, and wake whoever waits for it */
static void
apply_publish(void)
{
	LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
	RaftpgShmem->applied_index = applied_index;
	RaftpgShmem->status.applied_index = applied_index;
	RaftpgShmem->apply_error_index = 0;
	RaftpgShmem->apply_error[0] = '\0';
	LWLockRelease(&RaftpgShmem->lock);
	ConditionVariableBroadcast(&RaftpgShmem->cv);
}

/* the configuration as of the applied index, as committed */
static void
set_applied_config(const bytea *config, uint64 index)
{
	if (applied_config)
		pfree(applied_config);
	applied_config = NULL;
	if (config)
	{
		applied_config = (bytea *) MemoryContextAlloc(TopMemoryContext,
													  VARSIZE_ANY(config));
		memcpy(applied_config, config, VARSIZE_ANY(config));
	}
	applied_config_index = index;
}

static void
apply_load_state(void)
{
	Relation	rel = table_open(state_relid, AccessShareLock);
	TableScanDesc scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	int			rows = 0;

	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		slot_getallattrs(slot);
		applied_index = (uint64) DatumGetInt64(slot->tts_values[0]);
		applied_term = (uint64) DatumGetInt64(slot->tts_values[1]);
		set_applied_config(slot->tts_isnull[3] ? NULL :
						   DatumGetByteaPP(slot->tts_values[3]),
						   (uint64) DatumGetInt64(slot->tts_values[2]));
		import_node = (uint64) DatumGetInt64(slot->tts_values[4]);
		import_until = (uint64) DatumGetInt64(slot->tts_values[5]);
		applied_row = 0;
		rows++;
	}
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, AccessShareLock);
	if (rows != 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("table raftpg.apply_state must have exactly one row, it has %d", rows)));
	apply_publish();
}

static void
apply_save_state(uint64 index, uint64 term)
{
	Relation	rel = table_open(state_relid, RowExclusiveLock);
	Snapshot	snap = GetActiveSnapshot();
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	TupleTableSlot *newslot = table_slot_create(rel, NULL);
	bool		update_indexes;

	if (!StorageFetchOnlyRow(rel, &state_row_tid, snap, slot))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("table raftpg.apply_state has no row")));
	ExecClearTuple(newslot);
	memset(newslot->tts_isnull, false, sizeof(bool) * 6);
	newslot->tts_values[0] = Int64GetDatum((int64) index);
	newslot->tts_values[1] = Int64GetDatum((int64) term);
	newslot->tts_values[2] = Int64GetDatum((int64) (batch_config ?
													 batch_config_index :
													 applied_config_index));
	newslot->tts_values[3] = PointerGetDatum(batch_config ? batch_config :
											 applied_config);
	newslot->tts_isnull[3] = batch_config == NULL && applied_config == NULL;
	newslot->tts_values[4] = Int64GetDatum((int64) import_node);
	newslot->tts_values[5] = Int64GetDatum((int64) import_until);
	ExecStoreVirtualTuple(newslot);
	simple_table_tuple_update(rel, &slot->tts_tid, newslot, snap, &update_indexes);
	state_row_tid = newslot->tts_tid;
	ExecDropSingleTupleTableSlot(slot);
	ExecDropSingleTupleTableSlot(newslot);
	table_close(rel, NoLock);
}

/* error context: which entry apply was at */
static void
apply_error_callback(void *arg)
{
	if (current_index != 0)
		errcontext("applying raftpg log entry " UINT64_FORMAT, current_index);
}

/*
 * Apply waited too long for a lock.  On a node that is not the leader, the
 * sessions that wrote replicated tables here (commit slots not IDLE) are
 * left over from when it led: their transactions cannot commit any more,
 * and an idle one would hold its row locks, and apply, forever.  End them,
 * as a hot standby ends sessions that conflict with recovery.  Readers are
 * left alone: apply waits for them.
 */
static void
end_doomed_writers(void)
{
	int		   *pids = palloc(sizeof(int) * MaxBackends);
	int			n = 0;
	int			i;

	LWLockAcquire(&RaftpgShmem->lock, LW_SHARED);
	if (RaftpgShmem->status.role != RAFTPG_ROLE_LEADER)
	{
		for (i = 0; i < MaxBackends; i++)
		{
			RaftpgCommitSlot *slot = &RaftpgCommitSlots[i];
			int			pid = ProcGlobal->allProcs[i].pid;

			if (slot->state != RAFTPG_SLOT_IDLE && pid != 0 && pid != MyProcPid)
				pids[n++] = pid;
		}
	}
	LWLockRelease(&RaftpgShmem->lock);
	for (i = 0; i < n; i++)
	{
		ereport(LOG,
				(errmsg("raftpg: ending session %d: it wrote replicated tables while this node led, cannot commit now, and holds up apply",
						pids[i])));
		(void) kill(pids[i], SIGTERM);
	}
	pfree(pids);
}

/*
 * Read and apply the entries after applied_index, up to target, inside the
 * current transaction; returns the last entry wholly handled and its term.
 */
static pg_noinline void
apply_entries(uint64 target, uint64 *done_out, uint64 *done_term_out,
			  uint64 *done_row_out)
{
	StorageLogScan scan;
	raft_entry	e;
	uint64		done = applied_index;
	uint64		done_term = applied_term;
	uint64		done_row = applied_row;
	uint64		expect = applied_index + 1;
	int			n = 0;
	Size		bytes = 0;

	/* the last batch left none open (an error ends the worker) */
	Assert(n_batch_rels == 0 && !trigger_query_open);
	batch_cxt = AllocSetContextCreate(CurrentMemoryContext, "raftpg apply batch",
									  ALLOCSET_DEFAULT_SIZES);

	StorageLogScanBegin(&scan, applied_index + 1, applied_row,
						GetActiveSnapshot());
	txn.open = false;
	while (StorageLogScanNext(&scan, &e))
	{
		uint64		index = e.index;
		uint64		term = e.term;
		const char *data = NULL;
		uint32		len = 0;
		RaftpgChunkHeader h;
		bool		is_chunk = false;

		if (index > target)
			break;
		if (index != expect)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("raftpg log has a gap: expected index " UINT64_FORMAT ", found " UINT64_FORMAT,
							expect, index)));
		expect++;
		current_index = index;

		if (e.type == RAFT_ENTRY_NORMAL)
		{
			data = (const char *) e.data;
			len = (uint32) e.len;
			bytes += len;
			is_chunk = ChangesGetHeader(data, len, &h);
		}

		/*
		 * A chunk that does not continue the open transaction, or any other
		 * entry, ends it: a change of leader cut it short.
		 */
		if (txn.open && (!is_chunk || h.chunk_no != txn.next_chunk ||
						 h.origin_fxid != txn.first.origin_fxid ||
						 h.origin_node != txn.first.origin_node))
		{
			ereport(LOG,
					(errmsg("raftpg: discarding the transaction in log entries " UINT64_FORMAT " to " UINT64_FORMAT ": a change of leader cut it short",
							txn.first_index, index - 1)));
			txn.open = false;
		}

		if (!is_chunk)
		{
			/* no-ops, configurations and opaque entries change no table */
			if (e.type == RAFT_ENTRY_CONFIG)
			{
				batch_config = (bytea *) MemoryContextAlloc(apply_cxt,
															VARHDRSZ + e.len);
				SET_VARSIZE(batch_config, VARHDRSZ + e.len);
				memcpy(VARDATA(batch_config), e.data, e.len);
				batch_config_index = index;
			}
			done = index;
			done_term = term;
			done_row = StorageLogScanRow(&scan);
		}
		else if (!txn.open && h.chunk_no != 0)
		{
			/* the rest of a transaction whose start was discarded */
			done = index;
			done_term = term;
			done_row = StorageLogScanRow(&scan);
		}
		else
		{
			if (!txn.open)
			{
				txn.open = true;
				txn.first = h;
				txn.first_index = index;
				txn.next_chunk = 0;
				resetStringInfo(&txn.stream);
			}
			appendBinaryStringInfo(&txn.stream, data + RAFTPG_CHUNK_HEADER,
								   len - RAFTPG_CHUNK_HEADER);
			txn.next_chunk++;
			if (h.flags & RAFTPG_CHUNK_LAST)
			{
				apply_txn(index);
				txn.open = false;
				done = index;
				done_term = term;
				done_row = StorageLogScanRow(&scan);
			}
		}
		if (!txn.open && (++n >= APPLY_BATCH_ENTRIES || bytes >= APPLY_BATCH_BYTES))
			break;
	}
	StorageLogScanEnd(&scan);

	release_relations();
	MemoryContextDelete(batch_cxt);
	batch_cxt = NULL;
	batch_rels = NULL;
	n_batch_rels = 0;
	max_batch_rels = 0;

	/* a transaction whose last chunk is not committed yet: read it again */
	txn.open = false;
	current_index = 0;
	*done_out = done;
	*done_term_out = done_term;
	*done_row_out = done_row;
}

/*
 * Apply committed entries after applied_index, up to target, in one
 * transaction together with the new applied_index.
 */
static void
apply_batch(uint64 target)
{
	ErrorContextCallback errcb;
	uint64		done;
	uint64		done_term;
	uint64		done_row;
	MemoryContext oldcxt = CurrentMemoryContext;

	errcb.callback = apply_error_callback;
	errcb.arg = NULL;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	batch_config = NULL;

	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "raftpg: applying the log");

		/*
		 * raftpg.apply_state before any other table: DROP EXTENSION raftpg
		 * locks it first too (ddl.c), so the two cannot deadlock -- the
		 * drop waits for the batch, or the batch for the drop.
		 */
		LockRelationOid(state_relid, RowExclusiveLock);
		batch_entries = (int) Min(target - applied_index, APPLY_BATCH_ENTRIES);
		apply_entries(target, &done, &done_term, &done_row);
		if (done > applied_index)
			apply_save_state(done, done_term);
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
		RaftpgShmem->apply_error_index = current_index;
		strlcpy(RaftpgShmem->apply_error, edata->message,
				sizeof(RaftpgShmem->apply_error));
		LWLockRelease(&RaftpgShmem->lock);
		if (edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE)
			end_doomed_writers();
		PG_RE_THROW();
	}
	PG_END_TRY();
	error_context_stack = errcb.previous;
	MemoryContextSwitchTo(oldcxt);
	pgstat_report_activity(STATE_IDLE, NULL);

	if (batch_txns > 0)
	{
		LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
		RaftpgShmem->applied_txns += batch_txns;
		LWLockRelease(&RaftpgShmem->lock);
		batch_txns = 0;
	}
	if (batch_config != NULL)
	{
		set_applied_config(batch_config, batch_config_index);
		batch_config = NULL;
	}
	if (done > applied_index)
	{
		applied_index = done;
		applied_term = done_term;
		applied_row = done_row;
		apply_publish();
		if (!import_reported && applied_index >= import_until)
		{
			import_reported = true;
			ereport(LOG,
					(errmsg("raftpg: " UINT64_FORMAT " transactions up to log index " UINT64_FORMAT " were in the snapshot copied from node " UINT64_FORMAT " already: not applied again",
							import_skipped, import_until, import_node)));
		}
	}
	else
	{
		/* nothing complete yet: a transaction's last chunk is to come */
		int			rc = WaitLatch(MyLatch,
								   WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								   APPLY_IDLE_MS, PG_WAIT_EXTENSION);

		if (rc & WL_LATCH_SET)
			ResetLatch(MyLatch);
	}
}

/* ----------
 * Applying one transaction's records
 * ----------
 */

/*
 * Wait for the transaction of this incarnation with this xid to end, if it
 * still runs; false if no transaction here ever had it.
 */
static bool
xact_wait(FullTransactionId fxid)
{
	TransactionId xid = XidFromFullTransactionId(fxid);

	if (!TransactionIdIsNormal(xid) ||
		!FullTransactionIdPrecedes(fxid, ReadNextFullTransactionId()))
		return false;
	if (TransactionIdIsInProgress(xid))
		XactLockTableWait(xid, NULL, NULL, XLTW_None);
	return true;
}

/*
 * Has the transaction of this incarnation with this xid committed?  Waits
 * for it to end first, if it still runs.  *known is false if the commit
 * log no longer holds the xid (VACUUM truncated it).
 */
static bool
xact_committed(FullTransactionId fxid, bool *known)
{
	TransactionId xid = XidFromFullTransactionId(fxid);
	int			round;

	*known = false;
	if (!TransactionIdIsNormal(xid) ||
		!FullTransactionIdPrecedes(fxid, ReadNextFullTransactionId()))
		return false;
	for (round = 0; round < 2; round++)
	{
		bool		committed = false;

		/*
		 * Committed in the commit log is final.  Not committed may still
		 * change while the transaction runs (it writes the commit log
		 * before it leaves the process array): then wait, and look again.
		 */
		if (round > 0)
			(void) xact_wait(fxid);
		/* as pg_xact_status() does: not past the commit log's truncation */
		LWLockAcquire(XactTruncationLock, LW_SHARED);
		*known = U64FromFullTransactionId(ReadNextFullTransactionId()) -
			U64FromFullTransactionId(fxid) < (uint64) 1 << 31 &&
			TransactionIdFollowsOrEquals(xid, ShmemVariableCache->oldestClogXid);
		if (*known)
			committed = TransactionIdDidCommit(xid);
		LWLockRelease(XactTruncationLock);
		if (!*known || committed)
			return committed;
	}
	return false;
}

/* is the row (incarnation, fxid) in either origin table? */
static bool
origin_row_found(uint64 incarnation, uint64 fxid_u64)
{
	Snapshot	snap = RegisterSnapshot(GetLatestSnapshot());
	bool		found = false;
	int			i;

	for (i = 0; i < 2 && !found; i++)
	{
		Relation	rel = table_open(origin_relid[i], AccessShareLock);
		Relation	idx = index_open(origin_index_relid[i], AccessShareLock);
		TupleTableSlot *slot = table_slot_create(rel, NULL);
		IndexScanDesc scan;
		ScanKeyData key[2];

		ScanKeyInit(&key[0], 1, BTEqualStrategyNumber, F_INT8EQ,
					Int64GetDatum((int64) incarnation));
		ScanKeyInit(&key[1], 2, BTEqualStrategyNumber, F_INT8EQ,
					Int64GetDatum((int64) fxid_u64));
		scan = index_beginscan(rel, idx, snap, 2, 0);
		index_rescan(scan, key, 2, NULL, 0);
		found = index_getnext_slot(scan, ForwardScanDirection, slot);
		index_endscan(scan);
		ExecDropSingleTupleTableSlot(slot);
		index_close(idx, NoLock);
		table_close(rel, NoLock);
	}
	UnregisterSnapshot(snap);
	return found;
}

/*
 * Did the transaction that made the entry at index (of this node, or
 * imported with a snapshot: its incarnation and full xid from the entry's
 * header) commit the entry's changes into the tables here itself?  Waits
 * for that transaction to end first, if it may still run.  See "Origin
 * rows" below.
 */
static bool
origin_committed(uint64 index, uint64 incarnation, uint64 fxid_u64)
{
	FullTransactionId fxid = FullTransactionIdFromU64(fxid_u64);

	if (fxid_u64 == 0)
		return false;			/* made by no local transaction */
	if (incarnation == RaftpgShmem->incarnation)
	{
		bool		known;
		bool		committed;

		if (index > RaftpgShmem->own_rows_until)
		{
			committed = xact_committed(fxid, &known);
			if (known)
				return committed;
		}
		/* the row tells; it commits with the transaction */
		(void) xact_wait(fxid);
	}

	/*
	 * Of an earlier incarnation, the transaction is over, and its xid may
	 * belong to another transaction now: only the row tells.
	 */
	return origin_row_found(incarnation, fxid_u64);
}

/* ----------
 * Origin rows
 *
 * A local transaction that writes replicated tables inserts its name,
 * (incarnation, full xid), into the origin table that is current
 * (capture.c), and commits the row with its changes.  Within one
 * incarnation, apply asks the commit log instead (xact_committed()): an
 * xid is not handed out twice before a crash.  The rows are read for
 * what an earlier incarnation left, for entries a snapshot's source
 * committed itself (imported with the copy), and for this incarnation's
 * own entries up to own_rows_until after a snapshot install: the install
 * replaced the tables, so that the changes of this node's transactions
 * committed before it are not there any more although the commit log
 * says they committed.  The install deletes their rows (keeping only the
 * source's); this node's own proposals up to then went no further than
 * proposed_high, which becomes own_rows_until.
 *
 * So no row is read or deleted per commit.  The rows are removed in bulk
 * instead: from time to time (ORIGIN_ROTATE_ROWS local commits since the
 * last time, or some and ORIGIN_ROTATE_MS) apply makes the other table
 * current, and then empties the first with a TRUNCATE, once
 *
 *	  1. it has held that table's ACCESS EXCLUSIVE lock once after the
 *		 switch: every transaction that inserted into it has ended, and
 *		 none will insert again (a backend reads which table is current
 *		 again once it holds the lock);
 *	  2. it has applied the log up to the last index proposed for a local
 *		 transaction as of then, and up to import_until: every row there
 *		 is of an entry applied (a transaction commits after its entry);
 *	  3. it has applied an entry of a term later than start_term, the
 *		 node's term when this incarnation began: then no entry of an
 *		 earlier incarnation is still to come (a node leads no term
 *		 beyond its own, and log terms only grow).
 *
 * The TRUNCATE commits after the state row that says so (it is a later
 * commit in the WAL), so that a crash keeps either both or the rows.
 * ----------
 */
#define ORIGIN_ROTATE_ROWS	20000
#define ORIGIN_ROTATE_MS	10000

/*
 * TRUNCATE of an origin table, whose ACCESS EXCLUSIVE lock is held; false
 * if its index is in use (the rebuild would wait for that).
 */
static bool
origin_truncate(int which)
{
	Relation	rel;

	if (!ConditionalLockRelationOid(origin_index_relid[which],
									AccessExclusiveLock))
		return false;
	rel = table_open(origin_relid[which], NoLock);
	ExecuteTruncateGuts(list_make1(rel), list_make1_oid(origin_relid[which]),
						NIL, DROP_RESTRICT, false);
	table_close(rel, NoLock);
	return true;
}

/* switch and empty the origin tables, when it is time (see above) */
static void
origin_tick(void)
{
	uint64		commits;
	uint64		proposed;
	uint64		start_term;
	bool		start_known;
	TimestampTz now = GetCurrentTimestamp();

	if (!OidIsValid(state_relid))
		return;
	LWLockAcquire(&RaftpgShmem->lock, LW_SHARED);
	commits = RaftpgShmem->replicated_commits;
	start_term = RaftpgShmem->start_term;
	start_known = RaftpgShmem->start_term_known &&
		RaftpgShmem->start_cluster_id == loaded_cluster_id;
	LWLockRelease(&RaftpgShmem->lock);

	if (origin_switched_at == 0)
	{
		origin_switched_at = now;
		origin_switched_commits = commits;
	}
	if (origin_draining < 0)
	{
		uint32		gen = pg_atomic_read_u32(&RaftpgShmem->origin_gen) & 1;

		if (commits - origin_switched_commits < ORIGIN_ROTATE_ROWS &&
			!((commits != origin_switched_commits || origin_sweeps > 0) &&
			  TimestampDifferenceExceeds(origin_switched_at, now,
										 ORIGIN_ROTATE_MS)))
			return;
		/* backends read it again once they hold the table's lock */
		pg_atomic_write_u32(&RaftpgShmem->origin_gen, gen ^ 1);
		pg_memory_barrier();
		origin_draining = (int) gen;
		origin_drain_until = 0;
		origin_switched_at = now;
		origin_switched_commits = commits;
		origin_sweeps = Max(origin_sweeps - 1, 0);
	}
	if (origin_drain_until != 0 &&
		(applied_index < origin_drain_until || !start_known ||
		 applied_term <= start_term))
		return;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (ConditionalLockRelationOid(origin_relid[origin_draining],
								   AccessExclusiveLock))
	{
		if (origin_drain_until == 0)
		{
			/* step 1: read after the lock was granted */
			LWLockAcquire(&RaftpgShmem->lock, LW_SHARED);
			proposed = RaftpgShmem->proposed_high;
			LWLockRelease(&RaftpgShmem->lock);
			origin_drain_until = Max(Max(proposed, import_until), 1);
		}
		else if (origin_truncate(origin_draining))
			origin_draining = -1;
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(apply_cxt);
}

static void
read_relation(RaftpgReader *r)
{
	ApplyRel   *ar = NULL;
	uint16		relref = ChangesGetU16(r);
	const char *def = r->data + r->pos;
	uint32		deflen = r->len - r->pos;
	MemoryContext oldcxt;
	int			i;

	if (relref != nrels)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("raftpg: relation %u defined out of order", relref)));
	if (nrels % 16 == 0)
		rels = rels ? repalloc(rels, sizeof(ApplyRel *) * (nrels + 16)) :
			palloc(sizeof(ApplyRel *) * 16);
	for (i = 0; i < n_batch_rels; i++)
		if (batch_rels[i].deflen == deflen &&
			memcmp(batch_rels[i].def, def, deflen) == 0)
		{
			rels[nrels++] = batch_rels[i].ar;
			return;
		}

	oldcxt = MemoryContextSwitchTo(batch_cxt);
	ar = palloc0(sizeof(ApplyRel));
	ar->nspname = ChangesGetStr(r);
	ar->relname = ChangesGetStr(r);
	ar->ncols = ChangesGetU16(r);
	ar->colnames = palloc(sizeof(char *) * Max(ar->ncols, 1));
	ar->typnames = palloc(sizeof(char *) * Max(ar->ncols, 1));
	for (i = 0; i < ar->ncols; i++)
	{
		ar->colnames[i] = ChangesGetStr(r);
		ar->typnames[i] = ChangesGetStr(r);
		(void) ChangesGetU32(r);
	}
	ar->nkeys = ChangesGetU16(r);
	ar->keypos = palloc(sizeof(int) * Max(ar->nkeys, 1));
	for (i = 0; i < ar->nkeys; i++)
	{
		ar->keypos[i] = ChangesGetU16(r);
		if (ar->keypos[i] >= ar->ncols)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("raftpg: key column out of range")));
	}
	if (n_batch_rels == max_batch_rels)
	{
		max_batch_rels = Max(16, max_batch_rels * 2);
		batch_rels = batch_rels ?
			repalloc(batch_rels, sizeof(BatchRel) * max_batch_rels) :
			palloc(sizeof(BatchRel) * max_batch_rels);
	}
	batch_rels[n_batch_rels].def = palloc(Max(deflen, 1));
	memcpy(batch_rels[n_batch_rels].def, def, deflen);
	batch_rels[n_batch_rels].deflen = deflen;
	batch_rels[n_batch_rels].ar = ar;
	n_batch_rels++;
	MemoryContextSwitchTo(oldcxt);
	rels[nrels++] = ar;
}

/* open the local table of ar and map its columns, at first use */
static ApplyRel *
use_relation(uint16 relref)
{
	ApplyRel   *ar;
	TupleDesc	desc;
	RangeTblEntry *rte;
	MemoryContext oldcxt;
	int			i;

	if (relref >= nrels)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("raftpg: change for undefined relation %u", relref)));
	ar = rels[relref];
	ar_used = ar;
	if (ar->rel != NULL)
	{
		/* opened by an earlier transaction of the batch */
		ar->estate->es_output_cid = GetCurrentCommandId(true);
		return ar;
	}
	oldcxt = MemoryContextSwitchTo(batch_cxt);

	ar->rel = table_openrv(makeRangeVar(ar->nspname, ar->relname, -1),
						   RowExclusiveLock);
	desc = RelationGetDescr(ar->rel);
	/* reopened after DDL: map the columns again, in the same array */
	if (ar->cols == NULL)
		ar->cols = palloc0(sizeof(ApplyColumn) * Max(ar->ncols, 1));
	else
		memset(ar->cols, 0, sizeof(ApplyColumn) * Max(ar->ncols, 1));
	for (i = 0; i < ar->ncols; i++)
	{
		ApplyColumn *c = &ar->cols[i];
		AttrNumber	attnum = get_attnum(RelationGetRelid(ar->rel), ar->colnames[i]);
		Form_pg_attribute att;
		Oid			fn;
		char	   *local_type;

		if (attnum == InvalidAttrNumber || attnum < 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("table \"%s.%s\" has no column \"%s\" on this node",
							ar->nspname, ar->relname, ar->colnames[i]),
					 errhint("The table was changed locally; make it match the leader's.")));
		att = TupleDescAttr(desc, attnum - 1);
		local_type = format_type_extended(att->atttypid, att->atttypmod, FORMAT_TYPE_TYPEMOD_GIVEN | FORMAT_TYPE_FORCE_QUALIFY);
		if (strcmp(local_type, ar->typnames[i]) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("column \"%s\" of table \"%s.%s\" has type %s on this node, %s on the leader",
							ar->colnames[i], ar->nspname, ar->relname,
							local_type, ar->typnames[i])));
		c->attnum = attnum;
		c->typid = att->atttypid;
		c->typmod = att->atttypmod;
		getTypeInputInfo(att->atttypid, &fn, &c->typioparam);
		fmgr_info(fn, &c->in);
		if (ChangesMethodForType(att->atttypid) == RAFTPG_VALUE_BINARY)
		{
			getTypeBinaryInputInfo(att->atttypid, &fn, &c->typioparam);
			fmgr_info(fn, &c->recv);
			c->has_recv = true;
		}
	}
	ar->pkoid = RelationGetPrimaryKeyIndex(ar->rel);
	/* cannot shrink while we hold the lock: vacuum truncates under an
	 * exclusive one */
	ar->nblocks = RelationGetNumberOfBlocks(ar->rel);
	if (!OidIsValid(ar->pkoid))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("table \"%s.%s\" has no primary key on this node",
						ar->nspname, ar->relname)));

	/* an executor state of its own, as logical replication does */
	ar->estate = CreateExecutorState();
	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(ar->rel);
	rte->relkind = ar->rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	ExecInitRangeTable(ar->estate, list_make1(rte));
	ar->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(ar->rri, ar->rel, 1, NULL, 0);
	ar->estate->es_output_cid = GetCurrentCommandId(true);
	ExecOpenIndices(ar->rri, false);
	/* the TID cache relies on the key being unique here too */
	ar->tidcache_ok = false;
	for (i = 0; i < ar->rri->ri_NumIndices; i++)
	{
		Form_pg_index pk = ar->rri->ri_IndexRelationDescs[i]->rd_index;
		int			k;

		if (pk->indexrelid != ar->pkoid)
			continue;
		ar->tidcache_ok = pk->indnkeyatts == ar->nkeys;
		for (k = 0; ar->tidcache_ok && k < ar->nkeys; k++)
			ar->tidcache_ok = pk->indkey.values[k] ==
				ar->cols[ar->keypos[k]].attnum;
	}
	ar->newslot = ExecInitExtraTupleSlot(ar->estate, desc, &TTSOpsVirtual);
	ar->keyslot = ExecInitExtraTupleSlot(ar->estate, desc, &TTSOpsVirtual);
	ar->localslot = table_slot_create(ar->rel, &ar->estate->es_tupleTable);
	if (!trigger_query_open)
	{
		AfterTriggerBeginQuery();
		trigger_query_open = true;
	}
	MemoryContextSwitchTo(oldcxt);
	return ar;
}

/*
 * Read the values of a tuple (key false: every column of the 'R' record,
 * in its order) or of a key (key true: the primary key columns, in key
 * order) into slot; the columns not read are null.
 */
static void
read_values(RaftpgReader *r, ApplyRel *ar, TupleTableSlot *slot, bool key)
{
	uint16		n = ChangesGetU16(r);
	int			expect = key ? ar->nkeys : ar->ncols;
	int			i;

	if (n != expect)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("raftpg: %s with %u columns where %d were expected",
						key ? "key" : "row", n, expect)));
	ExecClearTuple(slot);
	memset(slot->tts_isnull, true, sizeof(bool) * slot->tts_tupleDescriptor->natts);
	for (i = 0; i < n; i++)
	{
		ApplyColumn *c = &ar->cols[key ? ar->keypos[i] : i];
		int			a = c->attnum - 1;

		slot->tts_values[a] = ChangesGetValue(r, c->typid, c->typmod, c->typioparam,
											  &c->in, c->has_recv ? &c->recv : NULL,
											  &slot->tts_isnull[a]);
	}
	ExecStoreVirtualTuple(slot);
}

/* copy the key columns of a full row into the key slot */
static void
key_from_row(ApplyRel *ar, TupleTableSlot *row, TupleTableSlot *key)
{
	int			k;

	ExecClearTuple(key);
	memset(key->tts_isnull, true, sizeof(bool) * key->tts_tupleDescriptor->natts);
	for (k = 0; k < ar->nkeys; k++)
	{
		int			a = ar->cols[ar->keypos[k]].attnum - 1;

		key->tts_values[a] = row->tts_values[a];
		key->tts_isnull[a] = row->tts_isnull[a];
	}
	ExecStoreVirtualTuple(key);
}

/* ----------
 * Where this worker last left each row (the TID cache)
 *
 * An update or delete must find the row of its key.  The index search
 * (RelationFindReplTupleByIndex, which also locks the tuple, a WAL record
 * of its own) was half of a follower's apply CPU under an update load.  So
 * apply remembers, per table and key, the TID of the row version it
 * inserted or updated last, and tries there first.  The TID is only a
 * hint: the tuple there is used if it is visible to a dirty snapshot, no
 * transaction is in progress on it, and its key is equal, byte for byte,
 * to the key looked for -- then it is the one live row of that key
 * (the key is the primary key).  Otherwise the index is searched as
 * before.  No tuple lock is taken on a hit: no local transaction may
 * commit a change to a replicated table while apply has entries to apply
 * to it (a follower refuses them; a leader's write gate waits for apply),
 * and heap_update() waits for one that holds the row meanwhile; were one
 * to commit after all, the update would fail with an error and apply
 * would retry after its restart, through the index.  The key must be
 * the local primary key (tidcache_ok), so that it names one row here.
 *
 * The cache is an array of TIDCACHE_SLOTS slots, each holding the table,
 * the hash of the key and a TID; a key's slot is picked by its hash, and a
 * later key with the same slot replaces it.  Nothing is allocated or
 * compared per row but the hash: since a hit is checked against the
 * tuple's own key anyway, a collision of hashes costs a heap fetch at
 * worst, never a wrong row.  (It was a dynahash of whole keys, whose
 * upkeep was a fifth of a follower's apply CPU under an insert load.)  A
 * TRUNCATE, DDL, or a table added or removed empties it; a table
 * rewritten or vacuumed locally is caught by the checks above.
 * ----------
 */
#define TIDCACHE_SLOTS		65536	/* a power of two */

typedef struct TidCacheSlot
{
	Oid			relid;			/* InvalidOid: empty */
	uint32		hash;			/* of the key, all of it */
	ItemPointerData tid;
} TidCacheSlot;

static TidCacheSlot *tid_cache = NULL;
static bool tid_cache_empty = true;

static void
tidcache_reset(void)
{
	if (tid_cache != NULL && !tid_cache_empty)
		memset(tid_cache, 0, sizeof(TidCacheSlot) * TIDCACHE_SLOTS);
	tid_cache_empty = true;
}

/*
 * The hash of the key of the row in slot (values at the key columns) and
 * of its table; false if the key is not the primary key or has a null.
 */
static bool
tidcache_hash(ApplyRel *ar, TupleTableSlot *slot, uint32 *hash)
{
	TupleDesc	desc = RelationGetDescr(ar->rel);
	uint32		h;
	int			i;

	if (!ar->tidcache_ok)
		return false;
	h = hash_bytes_uint32((uint32) RelationGetRelid(ar->rel));
	for (i = 0; i < ar->nkeys; i++)
	{
		int			a = ar->cols[ar->keypos[i]].attnum - 1;
		Form_pg_attribute att = TupleDescAttr(desc, a);
		Datum		d = slot->tts_values[a];
		const unsigned char *p;
		int			n;

		if (slot->tts_isnull[a])
			return false;
		if (att->attbyval)
		{
			p = (const unsigned char *) &d;
			n = sizeof(Datum);
		}
		else if (att->attlen > 0)
		{
			p = (const unsigned char *) DatumGetPointer(d);
			n = att->attlen;
		}
		else if (att->attlen == -1)
		{
			struct varlena *v;

			v = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(d));
			p = (const unsigned char *) VARDATA_ANY(v);
			n = VARSIZE_ANY_EXHDR(v);
		}
		else
			return false;
		h = hash_combine(h, hash_bytes(p, n));
	}
	*hash = h;
	return true;
}

static inline TidCacheSlot *
tidcache_slot(uint32 hash)
{
	return &tid_cache[hash & (TIDCACHE_SLOTS - 1)];
}

/* remember where the row now in slot was just written */
static void
tidcache_remember(ApplyRel *ar, TupleTableSlot *slot)
{
	TidCacheSlot *e;
	uint32		h;

	if (!ItemPointerIsValid(&slot->tts_tid) || !tidcache_hash(ar, slot, &h))
		return;
	if (tid_cache == NULL)
		tid_cache = MemoryContextAllocZero(TopMemoryContext,
										   sizeof(TidCacheSlot) * TIDCACHE_SLOTS);
	e = tidcache_slot(h);
	e->relid = RelationGetRelid(ar->rel);
	e->hash = h;
	e->tid = slot->tts_tid;
	tid_cache_empty = false;
}

static void
tidcache_forget(ApplyRel *ar, TupleTableSlot *keyslot)
{
	TidCacheSlot *e;
	uint32		h;

	if (tid_cache_empty || !tidcache_hash(ar, keyslot, &h))
		return;
	e = tidcache_slot(h);
	if (e->relid == RelationGetRelid(ar->rel) && e->hash == h)
		e->relid = InvalidOid;
}

/* byte-equal values; varlena ones whatever their header or compression */
static bool
key_values_equal(Datum a, Datum b, Form_pg_attribute att)
{
	struct varlena *va;
	struct varlena *vb;

	if (att->attlen != -1)
		return datumIsEqual(a, b, att->attbyval, att->attlen);
	va = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(a));
	vb = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(b));
	return VARSIZE_ANY_EXHDR(va) == VARSIZE_ANY_EXHDR(vb) &&
		memcmp(VARDATA_ANY(va), VARDATA_ANY(vb), VARSIZE_ANY_EXHDR(va)) == 0;
}

/*
 * The row of the key in ar->keyslot, into ar->localslot, where the cache
 * says it is; false if it is not there (see above).
 */
static bool
tidcache_find(ApplyRel *ar)
{
	TidCacheSlot *e;
	uint32		h;
	SnapshotData dirty;
	HeapTupleData tuple;
	Buffer		buf;
	int			i;

	if (tid_cache_empty || !tidcache_hash(ar, ar->keyslot, &h))
		return false;
	e = tidcache_slot(h);
	if (e->relid != RelationGetRelid(ar->rel) || e->hash != h)
		return false;
	/* a block this batch added, or one a local rewrite made go away */
	if (ItemPointerGetBlockNumber(&e->tid) >= ar->nblocks)
	{
		ar->nblocks = RelationGetNumberOfBlocks(ar->rel);
		if (ItemPointerGetBlockNumber(&e->tid) >= ar->nblocks)
			return false;
	}
	/*
	 * The update that follows stays on the page (HOT) only if it has room;
	 * and so do the next ones of the batch, whose versions stay until it
	 * commits: a page they could fill is pruned now.
	 */
	StoragePrunePage(ar->rel, &e->tid, batch_entries);
	InitDirtySnapshot(dirty);
	tuple.t_self = e->tid;
	if (!heap_fetch(ar->rel, &dirty, &tuple, &buf, false))
		return false;
	if (TransactionIdIsValid(dirty.xmin) || TransactionIdIsValid(dirty.xmax))
	{
		ReleaseBuffer(buf);
		return false;
	}
	ExecStoreBufferHeapTuple(&tuple, ar->localslot, buf);
	ReleaseBuffer(buf);
	slot_getallattrs(ar->localslot);
	for (i = 0; i < ar->nkeys; i++)
	{
		int			a = ar->cols[ar->keypos[i]].attnum - 1;
		Form_pg_attribute att = TupleDescAttr(RelationGetDescr(ar->rel), a);

		if (ar->localslot->tts_isnull[a] ||
			!key_values_equal(ar->localslot->tts_values[a],
							  ar->keyslot->tts_values[a], att))
		{
			ExecClearTuple(ar->localslot);
			return false;
		}
	}
	return true;
}

static void
find_row(ApplyRel *ar, const char *what)
{
	if (tidcache_find(ar))
		return;
	if (!RelationFindReplTupleByIndex(ar->rel, ar->pkoid, LockTupleExclusive,
									  ar->keyslot, ar->localslot))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("row to %s not found in table \"%s.%s\" on this node",
						what, ar->nspname, ar->relname),
				 errdetail("The row exists on the leader; this node's copy was changed outside raftpg.")));
}

/*
 * Close the executor state of every relation opened so far, firing
 * REPLICA and ALWAYS triggers' events; the relations' descriptions stay,
 * and are resolved again at their next use.  Needed before anything that
 * must not find the tables in use (TRUNCATE, DDL), and at the end.
 */
static void
release_relations(void)
{
	int			i;

	if (trigger_query_open)
	{
		for (i = 0; i < n_batch_rels; i++)
			if (batch_rels[i].ar->estate != NULL)
			{
				AfterTriggerEndQuery(batch_rels[i].ar->estate);
				break;
			}
		trigger_query_open = false;
	}
	for (i = 0; i < n_batch_rels; i++)
	{
		ApplyRel   *ar = batch_rels[i].ar;

		if (ar->rel == NULL)
			continue;
		ExecCloseIndices(ar->rri);
		ExecCloseResultRelations(ar->estate);
		ExecResetTupleTable(ar->estate->es_tupleTable, false);
		FreeExecutorState(ar->estate);
		table_close(ar->rel, NoLock);
		ar->rel = NULL;
		ar->estate = NULL;
	}
}

/* TRUNCATE the tables of one command together */
static void
apply_truncate(RaftpgReader *r)
{
	uint16		n = ChangesGetU16(r);
	List	   *trels = NIL;
	List	   *relids = NIL;
	ListCell   *lc;
	int			i;

	release_relations();
	for (i = 0; i < n; i++)
	{
		uint16		relref = ChangesGetU16(r);
		ApplyRel   *ar;
		Relation	rel;

		if (relref >= nrels)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("raftpg: truncate of undefined relation %u", relref)));
		ar = rels[relref];
		rel = table_openrv(makeRangeVar(ar->nspname, ar->relname, -1),
						   AccessExclusiveLock);
		trels = lappend(trels, rel);
		relids = lappend_oid(relids, RelationGetRelid(rel));
	}
	ExecuteTruncateGuts(trels, relids, NIL, DROP_RESTRICT, false);
	foreach(lc, trels)
		table_close((Relation) lfirst(lc), NoLock);
}

/* apply the transaction whose last chunk is entry index */
static void
apply_txn(uint64 index)
{
	RaftpgReader r;
	MemoryContext cxt;
	MemoryContext rec_cxt;
	MemoryContext old;
	bool		origin_here = txn.first.origin_node == RaftpgShmem->status.node_id;

	/*
	 * Up to import_until, an entry of another node may have been committed
	 * by that node's own transaction into the snapshot copied last, or into
	 * the one its source had copied (and so on): its origin row came along.
	 */
	bool		imported = !origin_here && index <= import_until;

	if ((origin_here || imported) &&
		origin_committed(index, txn.first.origin_incarnation,
						 txn.first.origin_fxid))
	{
		if (imported)
			import_skipped++;
		return;
	}

	cxt = AllocSetContextCreate(CurrentMemoryContext, "raftpg apply transaction",
								ALLOCSET_DEFAULT_SIZES);
	rec_cxt = AllocSetContextCreate(cxt, "raftpg apply record",
									ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	ChangesReaderInit(&r, txn.stream.data, (uint32) txn.stream.len);
	nrels = 0;
	rels = NULL;
	while (!ChangesAtEnd(&r))
	{
		RaftpgReader body;
		char		tag = ChangesGetRecord(&r, &body);
		ApplyRel   *ar;

		/* what one record allocates is freed after it (use_relation aside) */
		MemoryContextReset(rec_cxt);
		MemoryContextSwitchTo(tag == RAFTPG_REC_RELATION ? cxt : rec_cxt);

		switch (tag)
		{
			case RAFTPG_REC_RELATION:
				read_relation(&body);
				break;
			case RAFTPG_REC_INSERT:
				ar = use_relation(ChangesGetU16(&body));
				read_values(&body, ar, ar->newslot, false);
				ItemPointerSetInvalid(&ar->newslot->tts_tid);
				ExecSimpleRelationInsert(ar->rri, ar->estate, ar->newslot);
				tidcache_remember(ar, ar->newslot);
				break;
			case RAFTPG_REC_UPDATE:
				{
					EPQState	epq;
					bool		changed;

					ar = use_relation(ChangesGetU16(&body));
					changed = ChangesGetU8(&body) != 0;
					if (changed)
						read_values(&body, ar, ar->keyslot, true);
					read_values(&body, ar, ar->newslot, false);
					if (!changed)
						key_from_row(ar, ar->newslot, ar->keyslot);
					find_row(ar, "update");
					if (changed)
						tidcache_forget(ar, ar->keyslot);
					ItemPointerSetInvalid(&ar->newslot->tts_tid);
					EvalPlanQualInit(&epq, ar->estate, NULL, NIL, -1);
					ExecSimpleRelationUpdate(ar->rri, ar->estate, &epq,
											 ar->localslot, ar->newslot);
					EvalPlanQualEnd(&epq);
					tidcache_remember(ar, ar->newslot);
					break;
				}
			case RAFTPG_REC_DELETE:
				{
					EPQState	epq;

					ar = use_relation(ChangesGetU16(&body));
					read_values(&body, ar, ar->keyslot, true);
					find_row(ar, "delete");
					tidcache_forget(ar, ar->keyslot);
					EvalPlanQualInit(&epq, ar->estate, NULL, NIL, -1);
					ExecSimpleRelationDelete(ar->rri, ar->estate, &epq,
											 ar->localslot);
					EvalPlanQualEnd(&epq);
					break;
				}
			case RAFTPG_REC_TRUNCATE:
				tidcache_reset();
				apply_truncate(&body);
				break;
			case RAFTPG_REC_ADD_TABLE:
				tidcache_reset();
				release_relations();
				ReplicateApplyAddTable(&body, index, origin_here);
				break;
			case RAFTPG_REC_RESERVE:
				SequencesApply(&body, origin_here);
				break;
			case RAFTPG_REC_DDL:
				tidcache_reset();
				release_relations();
				DdlApply(&body);
				break;
			case RAFTPG_REC_UNREPLICATE:
				tidcache_reset();
				release_relations();
				ReplicateApplyUnreplicate(&body);
				break;
			default:
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("raftpg: unknown change record '%c'", tag)));
		}
		if (ar_used != NULL && ar_used->estate != NULL)
			ResetPerTupleExprContext(ar_used->estate);
		ar_used = NULL;
		CommandCounterIncrement();
	}
	MemoryContextSwitchTo(cxt);
	/* the relations stay open for the batch's next transactions */
	batch_txns++;
	nrels = 0;
	rels = NULL;
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
}

/* RaftpgWaitApplied() waits no longer: also on an error, or on FATAL */
static void
wait_applied_done(int code, Datum arg)
{
	volatile bool *counted = (volatile bool *) DatumGetPointer(arg);

	ConditionVariableCancelSleep();
	if (*counted)
	{
		LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
		Assert(RaftpgShmem->apply_waiters > 0);
		RaftpgShmem->apply_waiters--;
		LWLockRelease(&RaftpgShmem->lock);
		*counted = false;
	}
}

/*
 * Wait until this node has applied the log up to index (true), or deadline
 * passed (false, with what was applied in *applied if not NULL).  Anyone
 * waiting for apply waits here: the apply worker broadcasts on the
 * condition variable after each batch.  While anyone waits, the apply
 * worker does not linger over a batch (apply_waiters), and it is woken
 * when the wait begins, in case it lingers already.
 */
bool
RaftpgWaitApplied(uint64 index, TimestampTz deadline, uint64 *applied_out)
{
	volatile bool reached = false;
	volatile bool counted = false;
	uint64		applied;
	Latch	   *latch;

	LWLockAcquire(&RaftpgShmem->lock, LW_SHARED);
	applied = RaftpgShmem->applied_index;
	LWLockRelease(&RaftpgShmem->lock);
	if (applied_out)
		*applied_out = applied;
	if (applied >= index)
		return true;

	PG_ENSURE_ERROR_CLEANUP(wait_applied_done, PointerGetDatum(&counted));
	{
		LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
		RaftpgShmem->apply_waiters++;
		counted = true;
		latch = RaftpgShmem->apply_latch;
		LWLockRelease(&RaftpgShmem->lock);
		if (latch)
			SetLatch(latch);

		ConditionVariablePrepareToSleep(&RaftpgShmem->cv);
		for (;;)
		{
			LWLockAcquire(&RaftpgShmem->lock, LW_SHARED);
			applied = RaftpgShmem->applied_index;
			LWLockRelease(&RaftpgShmem->lock);
			if (applied_out)
				*applied_out = applied;
			if (applied >= index)
			{
				reached = true;
				break;
			}
			if (RaftpgRemainingMs(deadline) == 0)
				break;
			(void) ConditionVariableTimedSleep(&RaftpgShmem->cv,
											   Min(RaftpgRemainingMs(deadline),
												   1000),
											   PG_WAIT_EXTENSION);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_END_ENSURE_ERROR_CLEANUP(wait_applied_done, PointerGetDatum(&counted));
	wait_applied_done(0, PointerGetDatum(&counted));
	return reached;
}

PG_FUNCTION_INFO_V1(raftpg_wait_for_index);

/*
 * raftpg.wait_for_index(index bigint, timeout interval DEFAULT NULL)
 * -> boolean: wait until this node has applied the log up to index (true),
 * or the timeout (NULL: raftpg.commit_timeout) passed (false).
 */
Datum
raftpg_wait_for_index(PG_FUNCTION_ARGS)
{
	int64		index;
	long		ms = raftpg_commit_timeout;
	TimestampTz deadline;
	bool		reached = false;

	RaftpgCheckPreloaded();
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	index = PG_GETARG_INT64(0);
	if (!PG_ARGISNULL(1))
	{
		Interval   *iv = PG_GETARG_INTERVAL_P(1);
		int64		us = iv->time + (int64) iv->day * USECS_PER_DAY +
			(int64) iv->month * DAYS_PER_MONTH * USECS_PER_DAY;

		if (us < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("timeout must not be negative")));
		ms = (long) Min(us / 1000, (int64) INT_MAX);
	}
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);

	reached = index <= 0 || RaftpgWaitApplied((uint64) index, deadline, NULL);
	PG_RETURN_BOOL(reached);
}
