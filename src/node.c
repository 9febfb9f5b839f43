/*-------------------------------------------------------------------------
 *
 * node.c
 *	  The raftpg node worker: the one process per server that runs the Raft
 *	  node.
 *
 * The postmaster starts this background worker because raftpg registered
 * it from shared_preload_libraries, and restarts it a few seconds after it
 * dies.  It connects to raftpg.database, publishes its pid and latch, and
 * runs one event loop.  Until this server is a member of a cluster (the
 * state row of raftpg.state names a node id, written by create_cluster()
 * or by a leader's add_node()), the loop only looks for that every quarter
 * second.  Then it loads the log and hard state from the tables, creates
 * the consensus core from them, and each pass of the loop:
 *
 *	  1. waits on its latch, the peer sockets and the next tick;
 *	  2. feeds the core every message peers delivered to the inbox;
 *	  3. carries out what backends asked for (proposals, membership
 *		 changes, transfers) and answers them;
 *	  4. ticks the core as many times as the clock says;
 *	  5. drains the core's ready batches: sends their messages first (the
 *		 leader's disk write overlaps replication), persists their entries
 *		 and hard state in one transaction (storage.c), and only after the
 *		 commit returned tells the core -- or, if the transaction failed,
 *		 tells the core that, so that it returns to the durable state;
 *	  6. publishes what the durable state and the core now say to shared
 *		 memory, and wakes the backends waiting on it;
 *	  7. drops old applied entries from the core's memory
 *		 (raftpg.log_memory_entries), and reads them back from raftpg.log
 *		 (node_fetch) for a peer that needs them; once a second, deletes
 *		 the entries applied long ago from raftpg.log too
 *		 (raftpg.log_keep_entries, node_compact_log), and tells the core,
 *		 which sends a peer that needs one of those a snapshot;
 *	  8. hands a snapshot the core asks to install to the apply worker,
 *		 and once that copied it (snapshot.c), drops the log up to it and
 *		 tells the core (node_snapshot_finish).
 *
 * Crash safety needs nothing more: everything the core believes is rebuilt
 * from the tables when the worker starts, and the tables only ever hold
 * whole batches.
 *
 * The shape is that of PostgreSQL's own workers: signal handlers before
 * BackgroundWorkerUnblockSignals(), WL_EXIT_ON_PM_DEATH, ResetLatch()
 * before looking for work, CHECK_FOR_INTERRUPTS() at a safe point, a
 * memory context reset on every pass.
 *
 * src/node.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "raftpg.h"
#include "mailbox.h"
#include "storage.h"
#include "transport.h"

/* while not a member, look for membership this often */
#define RAFTPG_UNCONFIGURED_POLL_MS 250
/*
 * At most this many ticks are caught up after a long pause (a large
 * persistence, a stall of the machine).  Catching up many at once would
 * run out election and CheckQuorum timers in one pass, before the messages
 * that arrived during the pause have been answered: a leader would step
 * down and followers would campaign only because this process was busy.
 * Time lost in a pause just makes timeouts a little longer.
 */
#define RAFTPG_MAX_CATCHUP_TICKS	2
/* how often a member checks that its tables still exist */
#define RAFTPG_TABLE_CHECK_MS		1000
/* how often the log table is looked at for compaction, and how much goes */
#define RAFTPG_COMPACT_CHECK_MS		1000
#define RAFTPG_COMPACT_MAX_ROWS		4096

/* applied entries the core keeps in memory (node_compact_memory) */
int			raftpg_log_memory_entries = 10000;
/* applied entries raftpg.log keeps (node_compact_log) */
int			raftpg_log_keep_entries = 100000;

/*
 * Backends waiting for a read point.  Requests that arrive in one pass
 * share one raft_read_index() round (ctx); the answer goes to all of them.
 */
typedef struct ReadWaiter
{
	int32		procno;
	uint64		seq;
	uint64		ctx;			/* 0 until its round is asked for */
	uint64		term;			/* the term its round was asked in */
	TimestampTz asked;			/* when its round was asked for */
	TimestampTz deadline;		/* refused if not answered by then */
} ReadWaiter;

#define RAFTPG_MAX_READ_WAITERS 1024

static ReadWaiter read_waiters[RAFTPG_MAX_READ_WAITERS];
static int	n_read_waiters = 0;
static uint64 next_read_ctx = 0;

/* backends to wake after a publish (node_publish), MaxBackends of them */
static int *wake_procs = NULL;

static raft *core = NULL;
static RaftpgStateRow state;	/* raftpg.state as last committed */
static MemoryContext loop_cxt = NULL;
static StringInfoData drain_buf;
static TimestampTz next_tick = 0;
static TimestampTz next_sweep = 0;	/* when a pass reads every socket again */
static TimestampTz next_table_check = 0;
static Oid	loaded_log_relid = InvalidOid;	/* the raftpg.log the core is of */
static TimestampTz next_compact_check = 0;
/* the snapshot request handed to the apply worker, 0 if none */
static uint64 snap_waiting_seq = 0;
static RaftpgStats stats;

/* what was last published, to log changes */
static raft_role last_role = 0;
static uint64 last_term = 0;
static uint64 last_leader = 0;
static uint64 last_config_index = 0;

static void node_detach_shmem(int code, Datum arg);
static void node_try_load(void);
static void node_wait(void);
static void node_receive(void);
static void node_requests(void);
static void node_tick(void);
static void node_process_ready(void);
static void node_publish(void);
static void node_publish_commit(void);
static void node_refuse_requests(void);
static void node_check_tables(void);
static int	node_fetch(void *ctx, raft_index from, uint32_t max_n,
					   size_t max_bytes, raft_entry **ents, size_t *n);
static void node_compact_memory(void);
static void node_compact_log(void);
static bool compact_log(uint64 keep, uint64 step);
static void node_snapshot_request(const raft_ready *rd);
static void node_snapshot_finish(void);
static bool read_rounds_expire(void);
static bool read_round_start(void);

void
RaftpgNodeMain(Datum main_arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(raftpg_database, NULL, 0);

	RaftpgAttachWorker(false, node_detach_shmem);

	/*
	 * The log must be on disk before anything depends on it, whatever the
	 * server's default is.
	 */
	SetConfigOption("synchronous_commit", "on", PGC_SUSET, PGC_S_OVERRIDE);

	RaftpgUseCoreAllocator();
	TransportInit();
	wake_procs = MemoryContextAlloc(TopMemoryContext, sizeof(int) * MaxBackends);
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "raftpg node loop",
									 ALLOCSET_DEFAULT_SIZES);
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		initStringInfo(&drain_buf);
		MemoryContextSwitchTo(old);
	}

	ereport(LOG,
			(errmsg("raftpg node worker started for node \"%s\" in database \"%s\"",
					raftpg_node_name, raftpg_database)));

	for (;;)
	{
		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(loop_cxt);

		if (core == NULL)
			node_try_load();

		node_wait();

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		if (core == NULL)
		{
			node_refuse_requests();
			continue;
		}

		stats.worker_passes++;
		node_check_tables();
		if (core == NULL)
			continue;
		TransportPoll((uint64) state.cluster_id);
		node_receive();
		node_publish_commit();
		node_requests();
		if (n_read_waiters > 0 && read_rounds_expire())
			ConditionVariableBroadcast(&RaftpgShmem->cv);
		node_snapshot_finish();
		node_tick();
		node_process_ready();
		TransportFlush();
		node_publish();
		node_compact_memory();
		node_compact_log();
		/* raftpg.log and raftpg.state need autovacuum too (freezing) */
		RaftpgReportStats();
	}
}

/*
 * before_shmem_exit callback: withdraw this process from shared memory, so
 * that nobody reports or signals a worker that is gone, and wake backends
 * waiting for it.
 */
static void
node_detach_shmem(int code, Datum arg)
{
	TransportShutdown();
	TransportDirectShutdown();
	LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
	if (RaftpgShmem->worker_pid == MyProcPid)
	{
		RaftpgShmem->worker_pid = 0;
		RaftpgShmem->worker_latch = NULL;
		/* what is not durable is unknown now; status() must not claim it */
		RaftpgShmem->status.role = RaftpgShmem->status.node_id ?
			RAFTPG_ROLE_FOLLOWER : RAFTPG_ROLE_UNCONFIGURED;
		RaftpgShmem->status.leader_id = 0;
		RaftpgShmem->status.leader_name[0] = '\0';
		RaftpgShmem->ready_term = 0;
	}
	LWLockRelease(&RaftpgShmem->lock);
	ConditionVariableBroadcast(&RaftpgShmem->cv);
}

/* ----------
 * Loading
 * ----------
 */

static void
node_options(raft_options *o, uint64 id)
{
	raft_options_init(o, id);
	o->heartbeat_ticks = 1;
	o->election_ticks = Max(2, raftpg_election_timeout / raftpg_heartbeat_interval);
	o->pre_vote = true;
	o->check_quorum = true;
	/*
	 * At most 8 x 1 MB of appends in flight per peer: what a follower's
	 * inbox (raftpg.inbox_size, 16 MB by default) takes without dropping,
	 * and little enough queued on a connection that heartbeats behind it
	 * arrive in time while a large transaction streams.  Each message
	 * batches up to 4096 entries, so small commits are not held back.
	 */
	o->max_msg_entries = 4096;
	o->max_msg_bytes = 1024 * 1024;
	o->max_inflight = 8;

	/*
	 * A new commit index rides on the next APPEND or heartbeat: under
	 * writes the next APPEND follows at once, and an empty APPEND of its
	 * own would cost every follower a delivery, a wake-up and an answer per
	 * commit.  Followers apply the last commit before a pause at most one
	 * heartbeat interval later.
	 */
	o->lazy_commit = true;
	o->seed = id ^ ((uint64) MyProcPid << 20) ^ (uint64) GetCurrentTimestamp();

	/* the core keeps recent entries only (node_compact_memory) */
	o->fetch = node_fetch;
	o->fetch_ctx = NULL;
}

/*
 * In a PG_CATCH() of the worker's loop: abort the transaction and log the
 * error as "raftpg: what: message", keeping its SQLSTATE; the worker goes
 * on.
 */
static void
abort_and_log(MemoryContext oldcxt, const char *what)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(oldcxt);
	edata = CopyErrorData();
	FlushErrorState();
	AbortCurrentTransaction();
	ereport(LOG,
			(errcode(edata->sqlerrcode),
			 errmsg("raftpg: %s: %s", what, edata->message)));
	FreeErrorData(edata);
}

/*
 * raft_options.fetch: entries the core dropped from memory, read back from
 * raftpg.log for a peer that is behind.  Runs outside any transaction (the
 * core calls it from the worker's loop, never while a batch persists), in
 * a transaction of its own that only reads; an error is logged and
 * reported to the core, which sends what it has and tries again later.
 */
static int
node_fetch(void *ctx, raft_index from, uint32_t max_n, size_t max_bytes,
		   raft_entry **ents, size_t *n)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	raft_entry *volatile out = NULL;
	volatile size_t cap = Min(max_n, 64);
	volatile size_t k = 0;
	volatile int rc = RAFT_OK;

	(void) ctx;
	*ents = NULL;
	*n = 0;
	if (IsTransactionState())
	{
		elog(LOG, "raftpg: log entries cannot be read back inside a transaction");
		return RAFT_EINVAL;
	}
	out = RaftpgCoreAlloc(sizeof(raft_entry) * cap);
	if (out == NULL)
		return RAFT_ENOMEM;

	PG_TRY();
	{
		StorageLogScan scan;
		raft_entry	e;
		size_t		bytes = 0;

		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		StorageLogScanBegin(&scan, (uint64) from, 0, GetActiveSnapshot());
		while (k < max_n && StorageLogScanNext(&scan, &e))
		{
			if (e.index != from + k)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("raftpg: entry " UINT64_FORMAT " of the log is missing",
								(uint64) (from + k))));
			if (k > 0 && bytes + e.len > max_bytes)
				break;
			if (k == cap)
			{
				raft_entry *bigger = RaftpgCoreAlloc(sizeof(raft_entry) * cap * 2);

				if (bigger == NULL)
					ereport(ERROR,
							(errcode(ERRCODE_OUT_OF_MEMORY),
							 errmsg("out of memory")));
				memcpy(bigger, out, sizeof(raft_entry) * cap);
				raft_free(out);
				out = bigger;
				cap *= 2;
			}
			out[k] = e;
			out[k].data = NULL;
			if (e.len > 0)
			{
				out[k].data = RaftpgCoreAlloc(e.len);
				if (out[k].data == NULL)
					ereport(ERROR,
							(errcode(ERRCODE_OUT_OF_MEMORY),
							 errmsg("out of memory")));
				memcpy(out[k].data, e.data, e.len);
			}
			bytes += e.len;
			k++;
		}
		StorageLogScanEnd(&scan);
		PopActiveSnapshot();
		CommitTransactionCommand();
		if (k == 0)
			ereport(LOG,
					(errmsg("raftpg: entry " UINT64_FORMAT " is not in raftpg.log",
							(uint64) from)));
	}
	PG_CATCH();
	{
		char		what[80];

		snprintf(what, sizeof(what),
				 "could not read log entries from index " UINT64_FORMAT " back",
				 (uint64) from);
		abort_and_log(oldcxt, what);
		rc = RAFT_ENOMEM;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);

	if (rc != RAFT_OK || k == 0)
	{
		size_t		i;

		for (i = 0; i < k; i++)
			raft_free(out[i].data);
		raft_free(out);
		return rc != RAFT_OK ? rc : RAFT_ENOTFOUND;
	}
	stats.entries_fetched += k;
	*ents = out;
	*n = k;
	return RAFT_OK;
}

/*
 * Keep the core's copy of the log small: once more than twice
 * raftpg.log_memory_entries applied entries are in memory, drop all but
 * the last raftpg.log_memory_entries of them.  raftpg.log keeps every
 * entry; a peer that needs a dropped one gets it from there (node_fetch).
 * Without this the worker's memory grows with every commit for as long
 * as it runs.
 */
static void
node_compact_memory(void)
{
	raft_status st;
	raft_index	upto;
	raft_term	term;
	int			rc;

	raft_get_status(core, &st);
	if (st.applied <= st.snapshot_index + 2 * (raft_index) raftpg_log_memory_entries)
		return;
	upto = st.applied - (raft_index) raftpg_log_memory_entries;
	rc = raft_term_at(core, upto, &term);
	if (rc == RAFT_OK)
		rc = raft_compact(core, upto, term);
	if (rc != RAFT_OK)
		elog(LOG, "raftpg: could not drop log entries up to " UINT64_FORMAT " from memory: %s",
			 (uint64) upto, raft_strerror(rc));
}

/*
 * Delete the entries this node applied long ago from raftpg.log: all but
 * the last raftpg.log_keep_entries before the applied index, once that
 * many more than that have gathered.  On the leader, also keep what a
 * member it is in contact with still needs, up to ten times as many.
 */
static void
node_compact_log(void)
{
	uint64		keep = (uint64) raftpg_log_keep_entries;

	if (snap_waiting_seq != 0 || GetCurrentTimestamp() < next_compact_check)
		return;
	next_compact_check = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													 RAFTPG_COMPACT_CHECK_MS);
	if (compact_log(keep, Max(keep / 2, 64)))
		next_compact_check = 0; /* more to delete, perhaps */
}

/*
 * Delete the applied entries up to keep before the applied index (the
 * leader keeps what members in contact need, up to ten times keep), if at
 * least step of them can go: one transaction of at most
 * RAFTPG_COMPACT_MAX_ROWS rows, then the core hears of it -- a peer that
 * needs a deleted entry gets a snapshot.  True if it stopped at the row
 * limit.
 *
 * The apply worker's commits do not wait for their WAL flush, but the
 * applied index read here was published after such a commit, and this
 * transaction's commit, which does wait, flushes the WAL up to past it:
 * no entry is deleted whose application a crash could still undo.
 */
static bool
compact_log(uint64 keep, uint64 step)
{
	raft_status st;
	uint64		applied;
	uint64		upto;
	volatile uint64 done = 0;
	bool		more = false;
	RaftpgStateRow st_new;
	MemoryContext oldcxt = CurrentMemoryContext;
	volatile bool ok = true;
	int			rc;

	st_new = state;
	raft_get_status(core, &st);
	LWLockAcquire(&RaftpgShmem->lock, LW_SHARED);
	applied = RaftpgShmem->applied_index;
	LWLockRelease(&RaftpgShmem->lock);
	applied = Min(applied, Min((uint64) st.applied, (uint64) st.stable_index));
	if (applied <= keep)
		return false;
	upto = applied - keep;
	if (st.role == RAFT_LEADER)
	{
		const raft_config *c = raft_get_config(core);
		uint64		floor = applied > 10 * keep ? applied - 10 * keep : 0;
		uint32		i;

		for (i = 0; i < c->n; i++)
		{
			raft_progress_info pi;

			if (c->servers[i].id == (raft_id) state.node_id ||
				raft_get_progress(core, c->servers[i].id, &pi) != RAFT_OK ||
				!pi.recent_active)
				continue;
			if (pi.match < upto)
				upto = Max((uint64) pi.match, floor);
		}
	}
	/* in steps, not a few entries every time */
	if (upto < (uint64) state.snapshot_index + step)
		return false;

	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "raftpg: compacting the log");
		done = StorageCompact(&state, upto, RAFTPG_COMPACT_MAX_ROWS, &st_new,
							  &more);
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		abort_and_log(oldcxt, "could not compact the log");
		if (st_new.snapshot_config.servers != state.snapshot_config.servers)
			raft_config_free(&st_new.snapshot_config);
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	pgstat_report_activity(STATE_IDLE, NULL);
	if (!ok || done == 0)
		return false;

	stats.entries_compacted += done - (uint64) state.snapshot_index;
	if (st_new.snapshot_config.servers != state.snapshot_config.servers)
		raft_config_free(&state.snapshot_config);
	state = st_new;
	rc = raft_compact_durable(core, (raft_index) done,
							  (raft_term) state.snapshot_term);
	if (rc != RAFT_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("raftpg: the log was compacted up to " UINT64_FORMAT ", which the consensus node refuses: %s",
						(uint64) done, raft_strerror(rc))));
	return more;
}

/*
 * The core asks for a snapshot (rd->snapshot): hand it to the apply
 * worker, which copies it from the node that asked (snapshot.c).  The
 * core stays a follower meanwhile, refusing appends.
 */
static void
node_snapshot_request(const raft_ready *rd)
{
	const raft_server *src = raft_config_get(&rd->snapshot.config,
											 rd->snapshot.from);
	Latch	   *latch;

	if (src == NULL)
		src = raft_config_get(raft_get_config(core), rd->snapshot.from);
	if (src == NULL)
	{
		ereport(LOG,
				(errmsg("raftpg: node " UINT64_FORMAT " offered a snapshot but is not a member this node knows",
						(uint64) rd->snapshot.from)));
		(void) raft_snapshot_done(core, false, 0, 0, NULL);
		return;
	}
	ereport(LOG,
			(errmsg("raftpg: the log of node \"%s\" no longer has what this node needs: installing a snapshot of index " UINT64_FORMAT " or later from it",
					src->name, (uint64) rd->snapshot.index)));
	LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
	snap_waiting_seq = Max(RaftpgShmem->snap_req_seq, RaftpgShmem->snap_done_seq) + 1;
	RaftpgShmem->snap_req_seq = snap_waiting_seq;
	RaftpgShmem->snap_req_index = (uint64) rd->snapshot.index;
	strlcpy(RaftpgShmem->snap_req_name, src->name, RAFTPG_NAME_LEN);
	strlcpy(RaftpgShmem->snap_req_conninfo, src->address, RAFTPG_CONNINFO_LEN);
	latch = RaftpgShmem->apply_latch;
	LWLockRelease(&RaftpgShmem->lock);
	if (latch)
		SetLatch(latch);
}

/* read raftpg.apply_state: the snapshot the apply worker installed */
static void
read_installed(uint64 *index, uint64 *term, raft_config *c)
{
	bool		isnull;
	Datum		d;
	bytea	   *b;
	int			rc;

	SPI_connect();
	if (SPI_execute("SELECT applied_index, applied_term, config FROM raftpg.apply_state",
					true, 0) != SPI_OK_SELECT || SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("table raftpg.apply_state must have exactly one row")));
	*index = (uint64) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
												  SPI_tuptable->tupdesc, 1, &isnull));
	*term = (uint64) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
												 SPI_tuptable->tupdesc, 2, &isnull));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("the installed snapshot has no configuration")));
	b = DatumGetByteaPP(d);
	rc = raft_decode_config((const uint8_t *) VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b), c);
	SPI_finish();
	if (rc != RAFT_OK)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("the configuration of the installed snapshot does not decode: %s",
						raft_strerror(rc))));
}

/*
 * The apply worker is done with the snapshot asked for: if it installed
 * it, drop the log up to it in one transaction with the state row
 * (StorageInstallSnapshot) and tell the core; else tell the core it
 * failed (the leader asks again).
 */
static void
node_snapshot_finish(void)
{
	bool		done;
	bool		ok;
	volatile uint64 index = 0;
	volatile uint64 term = 0;
	uint64		i;
	uint64		t;
	raft_config c;
	raft_status st;
	RaftpgStateRow st_new;
	MemoryContext oldcxt = CurrentMemoryContext;
	volatile bool stored = true;
	int			rc;

	if (snap_waiting_seq == 0)
		return;
	LWLockAcquire(&RaftpgShmem->lock, LW_SHARED);
	done = RaftpgShmem->snap_done_seq == snap_waiting_seq;
	ok = RaftpgShmem->snap_ok;
	LWLockRelease(&RaftpgShmem->lock);
	if (!done)
		return;
	snap_waiting_seq = 0;
	if (!ok)
	{
		(void) raft_snapshot_done(core, false, 0, 0, NULL);
		return;
	}

	memset(&c, 0, sizeof(c));
	raft_get_status(core, &st);
	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "raftpg: dropping the log up to a snapshot");
		read_installed(&i, &t, &c);
		index = i;
		term = t;
		if (index < (uint64) st.applied)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the snapshot at index " UINT64_FORMAT " is older than what this node applied",
							index)));
		StorageInstallSnapshot(&state, index, term, &c, &st_new);
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		abort_and_log(oldcxt, "could not drop the log up to the installed snapshot");
		stored = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	pgstat_report_activity(STATE_IDLE, NULL);
	if (!stored)
	{
		raft_config_free(&c);
		(void) raft_snapshot_done(core, false, 0, 0, NULL);
		return;
	}

	raft_config_free(&state.snapshot_config);
	state = st_new;				/* it owns c now */
	rc = raft_snapshot_done(core, true, (raft_index) index, (raft_term) term, &c);
	if (rc != RAFT_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("raftpg: the consensus node refused the snapshot installed at index " UINT64_FORMAT ": %s",
						index, raft_strerror(rc))));
	stats.snapshots_installed++;
	ereport(LOG,
			(errmsg("raftpg: the log now starts after the snapshot at index " UINT64_FORMAT " (term " UINT64_FORMAT ")",
					index, term)));
}

/*
 * This node's local transactions so far committed into tables that are
 * gone, or into another cluster's: should their entries come again (a node
 * removed and added back replays its log), apply decides them by their
 * origin rows, which went with the tables, not by the commit log
 * (apply.c, "Origin rows").  Called with the lock held.
 */
static void
node_forget_proposals(void)
{
	RaftpgShmem->own_rows_until = Max(RaftpgShmem->own_rows_until,
									  RaftpgShmem->proposed_high);
	RaftpgShmem->proposed_high = 0;
}

/*
 * If this server is a member, build the core from the tables.  Runs in a
 * transaction of its own; an error (a log that disagrees with its state
 * row) ends the worker with that error in the server log.
 */
static void
node_try_load(void)
{
	raft_entry *entries = NULL;
	size_t		n = 0;
	raft_options opts;
	raft_restore rs;
	int			rc;
	bool		member = false;
	bool		resolved = false;
	uint64		base = 0;
	raft_term	base_term = 0;
	raft_config base_config;
	uint64		base_config_index = 0;

	memset(&base_config, 0, sizeof(base_config));
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "raftpg: loading the log");
	if (StorageResolve())
	{
		resolved = true;
		loaded_log_relid = StorageLogRelid();
		raft_config_free(&state.snapshot_config);
		raft_config_free(&state.contacts);
		StorageReadState(&state);
		if (state.node_id != 0)
		{
			/*
			 * Of the committed entries, keep raftpg.log_memory_entries in
			 * memory, as node_compact_memory() would: a restart must not
			 * bring the whole log into memory.
			 */
			uint64		commit = Min((uint64) state.hs.commit,
									 (uint64) state.last_log_index);

			if (commit > (uint64) state.snapshot_index +
				(uint64) raftpg_log_memory_entries)
				base = commit - (uint64) raftpg_log_memory_entries;
			StorageLoadLog(&state, base, &entries, &n, &base_term,
						   &base_config, &base_config_index);
			member = true;
		}
	}

	if (member)
	{
		node_options(&opts, (uint64) state.node_id);
		memset(&rs, 0, sizeof(rs));
		rs.hard_state = state.hs;
		rs.snapshot_index = (raft_index) state.snapshot_index;
		rs.snapshot_term = (raft_term) state.snapshot_term;
		rs.snapshot_config = state.snapshot_config;
		rs.entries = entries;
		rs.n_entries = n;
		rs.applied = (raft_index) state.snapshot_index;
		if (base > (uint64) state.snapshot_index)
		{
			/* the durable log starts earlier than memory */
			rs.durable_index = (raft_index) state.snapshot_index;
			rs.durable_term = (raft_term) state.snapshot_term;
			rs.snapshot_index = (raft_index) base;
			rs.snapshot_term = base_term;
			if (base_config.n > 0)
			{
				rs.snapshot_config = base_config;
				rs.snapshot_config_index = (raft_index) base_config_index;
			}
			rs.applied = (raft_index) base;
		}
		rc = raft_create(&opts, &rs, &core);
		raft_config_free(&base_config);
		if (rc != RAFT_OK)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("raftpg cannot start its consensus node: %s",
							raft_strerror(rc))));
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);

	/*
	 * No entry of an earlier incarnation of this server is of a later term
	 * than the one it finds on its first load (apply.c, "Origin rows").
	 */
	LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
	if (resolved && state.node_id != 0 &&
		(!RaftpgShmem->start_term_known ||
		 RaftpgShmem->start_cluster_id != (uint64) state.cluster_id))
	{
		RaftpgShmem->start_term = (uint64) state.hs.term;
		RaftpgShmem->start_cluster_id = (uint64) state.cluster_id;
		RaftpgShmem->start_term_known = true;
	}
	LWLockRelease(&RaftpgShmem->lock);

	if (!member)
		return;

	ereport(LOG,
			(errmsg("raftpg node \"%s\" (id " INT64_FORMAT ") loaded its log: term " UINT64_FORMAT ", last index " INT64_FORMAT ", commit " UINT64_FORMAT,
					raftpg_node_name, state.node_id, (uint64) state.hs.term,
					state.last_log_index, (uint64) state.hs.commit)));
	/* a node that just joined answers the members it was told of */
	TransportSetPeers(raft_get_config(core)->n > 0 ? raft_get_config(core) :
					  &state.contacts, (uint64) state.node_id);
	{
		raft_status st;

		raft_get_status(core, &st);
		last_config_index = st.config_index;
	}
	next_tick = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											raftpg_heartbeat_interval);

	LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
	if (RaftpgShmem->cluster_id != (uint64) state.cluster_id)
	{
		/* another cluster: nothing of the last one's write gate holds */
		RaftpgShmem->gate_index = 0;
		RaftpgShmem->fenced_term = 0;
		RaftpgShmem->seq_ready_term = 0;
		RaftpgShmem->ready_term = 0;
		node_forget_proposals();
	}
	RaftpgShmem->cluster_id = (uint64) state.cluster_id;
	RaftpgShmem->status.node_id = (uint64) state.node_id;
	LWLockRelease(&RaftpgShmem->lock);
	TransportDirectAccepting(true);

	/* alone in the configuration: no reason to wait for a timeout */
	{
		const raft_config *c = raft_get_config(core);

		if (c->n == 1 && c->servers[0].id == (uint64) state.node_id &&
			c->servers[0].role == RAFT_VOTER)
			(void) raft_campaign(core);
	}
	node_publish();
}

/*
 * DROP EXTENSION takes the log away: when the tables are gone (or are other
 * tables now), let go of the node and go back to waiting for a cluster.
 */
static void
node_check_tables(void)
{
	bool		ok;
	RaftpgStateRow st;

	if (GetCurrentTimestamp() < next_table_check && !RaftpgShmem->check_tables)
		return;
	RaftpgShmem->check_tables = false;
	next_table_check = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												   RAFTPG_TABLE_CHECK_MS);
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	ok = StorageResolve();
	if (ok)
	{
		/*
		 * The same table: a re-created extension may hold the same node
		 * and cluster again already (the node joined again at once).
		 */
		StorageReadState(&st);
		ok = StorageLogRelid() == loaded_log_relid &&
			st.node_id == state.node_id && st.cluster_id == state.cluster_id;
		raft_config_free(&st.snapshot_config);
		raft_config_free(&st.contacts);
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	if (ok)
		return;

	ereport(LOG,
			(errmsg("raftpg: the log of node \"%s\" is gone (extension dropped?); the node stops",
					raftpg_node_name)));
	raft_destroy(core);
	core = NULL;
	snap_waiting_seq = 0;
	TransportDirectAccepting(false);
	raft_config_free(&state.snapshot_config);
	raft_config_free(&state.contacts);
	memset(&state, 0, sizeof(state));
	TransportSetPeers(&state.contacts, 0);
	last_role = 0;
	last_term = 0;
	last_leader = 0;
	last_config_index = 0;
	LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
	RaftpgShmem->cluster_id = 0;
	node_forget_proposals();
	RaftpgShmem->applied_index = 0;
	RaftpgShmem->apply_wake_at = 0;
	RaftpgShmem->status.applied_index = 0;
	memset(&RaftpgShmem->status, 0, sizeof(RaftpgShmem->status));
	RaftpgShmem->status.role = RAFTPG_ROLE_UNCONFIGURED;
	RaftpgShmem->n_members = 0;
	LWLockRelease(&RaftpgShmem->lock);
	ConditionVariableBroadcast(&RaftpgShmem->cv);
}

/* ----------
 * Waiting
 * ----------
 */
/*
 * The wait set, kept from one pass to the next: building one costs an
 * epoll descriptor, a system call per socket and closing the descriptor
 * again, on every pass that sleeps.  It is built anew only when the
 * sockets to wait on change (a connection opened or lost, or one still
 * being set up, whose socket libpq may replace under the same number);
 * otherwise each socket's events are adjusted, which costs nothing unless
 * they changed.
 */
static WaitEventSet *wait_set = NULL;
static int	wait_n = 0;
static TransportWait wait_socks[TRANSPORT_MAX_WAIT];	/* as the set has them */
static int	wait_pos[TRANSPORT_MAX_WAIT];

/* the next pass reads every socket, and the next sweep is due an interval on */
static void
node_read_every_socket(TimestampTz now)
{
	TransportAllReadable();
	next_sweep = TimestampTzPlusMilliseconds(now, raftpg_heartbeat_interval);
}

static bool
wait_set_reusable(const TransportWait *w, int n)
{
	int			i;

	if (wait_set == NULL || n != wait_n)
		return false;
	for (i = 0; i < n; i++)
		if (!w[i].settled || !wait_socks[i].settled ||
			w[i].sock != wait_socks[i].sock ||
			w[i].conn_serial != wait_socks[i].conn_serial ||
			w[i].peer != wait_socks[i].peer)
			return false;
	return true;
}

static void
node_wait(void)
{
	WaitEvent	events[TRANSPORT_MAX_WAIT + 2];
	TransportWait w[TRANSPORT_MAX_WAIT];
	long		timeout;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz reconnect;
	int			n;
	int			i;

	/*
	 * Rounded up (TimestampDifferenceMilliseconds): truncated, the last
	 * millisecond before every tick was a timeout of 0, spent going round
	 * the loop without sleeping -- up to a millisecond of CPU per tick and
	 * node, in the way of whatever the machine had to do then.
	 */
	if (core == NULL)
		timeout = RAFTPG_UNCONFIGURED_POLL_MS;
	else
		timeout = TimestampDifferenceMilliseconds(now, next_tick);

	/*
	 * Under load the latch is set again before the pass ends (messages and
	 * requests keep arriving): go round at once, without even looking at
	 * the wait set, and read every socket.
	 */
	if (MyLatch->is_set || timeout == 0)
	{
		ResetLatch(MyLatch);
		node_read_every_socket(now);
		return;
	}

	/* a worker that is no member yet leaves streams unread */
	n = TransportWaitSockets(w, core != NULL, &reconnect);
	if (reconnect != 0)
		timeout = Min(timeout, TimestampDifferenceMilliseconds(now, reconnect));

	if (wait_set_reusable(w, n))
	{
		for (i = 0; i < n; i++)
			ModifyWaitEvent(wait_set, wait_pos[i], w[i].events, NULL);
	}
	else
	{
		if (wait_set != NULL)
			FreeWaitEventSet(wait_set);
		wait_set = CreateWaitEventSet(TopMemoryContext, n + 2);
		AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		for (i = 0; i < n; i++)
			wait_pos[i] = AddWaitEventToSet(wait_set, w[i].events, w[i].sock,
											NULL, w[i].peer);
		memcpy(wait_socks, w, sizeof(TransportWait) * n);
		wait_n = n;
	}

	/*
	 * The pass reads just the sockets the wait found readable: all of them
	 * are in one answer, the latch's event too if it woke the wait.  (Set
	 * just before the wait begins, the latch ends it without a look at the
	 * sockets; one with data is then read on the next pass.)  Once per
	 * heartbeat interval every socket is read anyway: libpq may hold input
	 * it read while a send was blocked, which no wait reports.
	 */
	n = WaitEventSetWait(wait_set, timeout, events, lengthof(events),
						 PG_WAIT_EXTENSION);
	for (i = 0; i < n; i++)
		if (events[i].events & WL_SOCKET_READABLE)
			TransportReadable(events[i].fd);
	now = GetCurrentTimestamp();
	if (now >= next_sweep)
		node_read_every_socket(now);
	ResetLatch(MyLatch);
}

/* ----------
 * Input
 * ----------
 */
/* one batch of length-prefixed messages, from the inbox or a stream */
static void
node_receive_batch(const char *rec, uint32 len)
{
	uint32		off = 0;

	while (off + sizeof(uint32) <= len)
	{
		uint32		mlen;
		raft_message m;
		int			rc;

		memcpy(&mlen, rec + off, sizeof(uint32));
		off += sizeof(uint32);
		if (mlen > len - off)
		{
			stats.messages_malformed++;
			ereport(LOG,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("raftpg: dropped a truncated message batch")));
			break;
		}
		rc = raft_decode_message((const uint8_t *) rec + off, mlen, &m);
		off += mlen;
		stats.messages_in++;
		stats.bytes_in += mlen;
		if (rc != RAFT_OK)
		{
			stats.messages_malformed++;
			ereport(LOG,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("raftpg: dropped a malformed message: %s",
							raft_strerror(rc))));
			continue;
		}
		if (m.type == RAFT_MSG_APPEND_RESP && m.reject)
			stats.append_rejects_received++;
		rc = raft_step(core, &m);
		if (rc != RAFT_OK && rc != RAFT_EINVAL)
		{
			stats.entries_refused++;
			ereport(LOG,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("raftpg: refused log entries from node " UINT64_FORMAT " after index " UINT64_FORMAT ": %s",
							(uint64) m.from, (uint64) m.index,
							raft_strerror(rc)),
					 errdetail("Nothing was stored; the sender was told the append failed.")));
		}
		raft_message_free(&m);
	}
}

/*
 * Feed the core what peers sent: first what backends passed on through the
 * inbox, then what the streams the worker reads itself hold.  A stream is
 * handed over only after everything its backend passed on is in the inbox,
 * and the hand-offs are taken first, so each stream's messages keep their
 * order.
 */
static void
node_receive(void)
{
	int			cursor = 0;
	const char *rec;
	uint32		len;

	TransportDirectAccept((uint64) state.cluster_id);
	resetStringInfo(&drain_buf);
	if (MailboxDrain(RaftpgInbox, &drain_buf) > 0)
	{
		while (MailboxNext(&drain_buf, &cursor, &rec, &len))
			node_receive_batch(rec, len);
	}
	TransportDirectRead(node_receive_batch);
}

static void
reply_wake(const RaftpgRequest *req, int rc, uint64 index, uint64 term,
		   bool wake)
{
	RaftpgReply *r;

	if (req->procno < 0 || req->procno >= RaftpgShmem->n_replies)
		return;
	LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
	r = &RaftpgShmem->replies[req->procno];
	r->rc = rc;
	r->index = index;
	r->term = term;
	r->seq = req->seq;
	LWLockRelease(&RaftpgShmem->lock);
	/* the asking backend waits on its own latch (api.c) */
	if (wake)
		SetLatch(&ProcGlobal->allProcs[req->procno].procLatch);
}

static void
reply(const RaftpgRequest *req, int rc, uint64 index, uint64 term)
{
	reply_wake(req, rc, index, term, true);
}

/*
 * Claim the asking backend's commit slot before proposing its changes
 * (raftpg.h): false if the backend has given up on this request.
 */
static bool
claim_slot(const RaftpgRequest *req)
{
	RaftpgCommitSlot *slot;
	bool		ok = false;

	if (req->procno < 0 || req->procno >= RaftpgShmem->n_replies)
		return false;
	slot = &RaftpgCommitSlots[req->procno];
	LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
	if (slot->state == RAFTPG_SLOT_PROPOSING && slot->xid == req->xid)
	{
		slot->state = RAFTPG_SLOT_PROPOSED;
		slot->index = 0;
		ok = true;
	}
	LWLockRelease(&RaftpgShmem->lock);
	return ok;
}

/* the claimed slot's entry index, or back to PROPOSING if none was made */
static void
settle_slot(const RaftpgRequest *req, uint64 last)
{
	RaftpgCommitSlot *slot = &RaftpgCommitSlots[req->procno];

	LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
	if (slot->xid == req->xid)
	{
		slot->index = last;
		slot->term = req->id;
		if (last == 0)
			slot->state = RAFTPG_SLOT_PROPOSING;
	}
	/* whatever the slot: the backend may still commit (apply.c) */
	RaftpgShmem->proposed_high = Max(RaftpgShmem->proposed_high, last);
	LWLockRelease(&RaftpgShmem->lock);
}

/*
 * A transaction's chunks, proposed as contiguous entries of one term, and
 * only in the term the backend checked the write gate in: a leader that
 * lost its term in between, even if it won the next, refuses, so that no
 * entry is built on a state it has not applied (capture.c).
 */
static int
propose_txn(const RaftpgRequest *req, const char *body, uint32 len,
			raft_index *first)
{
	raft_status st;
	raft_buf   *bufs;
	uint32		n;
	uint32		i;
	uint32		off = sizeof(uint32);
	int			rc;

	raft_get_status(core, &st);
	if (st.role != RAFT_LEADER || st.term != req->id)
		return RAFT_ENOTLEADER;
	if (!claim_slot(req))
		return RAFT_EINVAL;		/* the backend gave up on it */
	if (len < sizeof(uint32))
		return RAFT_EINVAL;
	memcpy(&n, body, sizeof(uint32));
	if (n == 0 || n > len)
		return RAFT_EINVAL;
	bufs = palloc(sizeof(raft_buf) * n);
	for (i = 0; i < n; i++)
	{
		uint32		clen;

		if (len - off < sizeof(uint32))
			return RAFT_EINVAL;
		memcpy(&clen, body + off, sizeof(uint32));
		off += sizeof(uint32);
		if (len - off < clen)
			return RAFT_EINVAL;
		bufs[i].base = body + off;
		bufs[i].len = clen;
		off += clen;
	}
	rc = raft_propose(core, bufs, n, first);
	pfree(bufs);
	settle_slot(req, rc == RAFT_OK ? *first + n - 1 : 0);
	return rc;
}

/*
 * Ask for one read round for every waiter that has none yet.  Returns true
 * if waiters were answered (refused) here.
 */
/*
 * Refuse the waiters whose round was not answered in time (a forwarded
 * request or its answer lost, a step-down within the term): they would
 * wait forever.  Returns true if any was refused.
 */
static bool
read_rounds_expire(void)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		any = false;
	int			i;

	for (i = 0; i < n_read_waiters; i++)
	{
		ReadWaiter *w = &read_waiters[i];
		RaftpgRequest req;

		/*
		 * A round unanswered for an election timeout was lost (a forwarded
		 * request or its answer dropped): ask again.
		 */
		if (w->ctx != 0 &&
			now >= TimestampTzPlusMilliseconds(w->asked, raftpg_election_timeout))
			w->ctx = 0;
		if (now < w->deadline)
			continue;
		req.procno = w->procno;
		req.seq = w->seq;
		reply(&req, RAFT_ENOTLEADER, 0, 0);
		*w = read_waiters[--n_read_waiters];
		i--;
		any = true;
	}
	if (read_round_start())
		any = true;
	return any;
}

static bool
read_round_start(void)
{
	raft_status st;
	int			i;
	int			rc;
	bool		fresh = false;

	for (i = 0; i < n_read_waiters; i++)
		if (read_waiters[i].ctx == 0)
			fresh = true;
	if (!fresh)
		return false;
	raft_get_status(core, &st);
	rc = raft_read_index(core, ++next_read_ctx);
	for (i = 0; i < n_read_waiters; i++)
	{
		ReadWaiter *w = &read_waiters[i];

		if (w->ctx != 0)
			continue;
		if (rc == RAFT_OK)
		{
			w->ctx = next_read_ctx;
			w->term = st.term;
			w->asked = GetCurrentTimestamp();
		}
		else
		{
			RaftpgRequest req;

			req.procno = w->procno;
			req.seq = w->seq;
			reply(&req, rc, 0, st.term);
			*w = read_waiters[--n_read_waiters];
			i--;
		}
	}
	return rc != RAFT_OK;
}

/*
 * Answer the waiters of the rounds in rd; refuse every waiter if the term
 * moved (the round may never be answered).
 */
static void
read_rounds_answer(const raft_ready *rd)
{
	raft_status st;
	size_t		r;
	int			i;
	bool		any = false;

	if (n_read_waiters == 0)
		return;
	raft_get_status(core, &st);
	for (i = 0; i < n_read_waiters; i++)
	{
		ReadWaiter *w = &read_waiters[i];
		RaftpgRequest req;
		bool		done = false;

		req.procno = w->procno;
		req.seq = w->seq;
		/* a later round's read point serves an earlier request too */
		for (r = 0; r < rd->n_reads; r++)
			if (w->ctx != 0 && rd->reads[r].ctx >= w->ctx)
			{
				reply(&req, RAFT_OK, rd->reads[r].index, st.term);
				done = true;
				break;
			}
		if (!done && w->ctx != 0 && st.term != w->term)
		{
			/* its round may never be answered */
			reply(&req, RAFT_ENOTLEADER, 0, st.term);
			done = true;
		}
		if (done)
		{
			*w = read_waiters[--n_read_waiters];
			i--;
			any = true;
		}
	}
	if (any)
		ConditionVariableBroadcast(&RaftpgShmem->cv);
}

static void
node_requests(void)
{
	int			cursor = 0;
	const char *rec;
	uint32		len;
	bool		any = false;

	resetStringInfo(&drain_buf);
	if (MailboxDrain(RaftpgRequests, &drain_buf) == 0)
		return;

	while (MailboxNext(&drain_buf, &cursor, &rec, &len))
	{
		RaftpgRequest req;
		raft_index	index = 0;
		raft_status st;
		int			rc;

		if (len < sizeof(RaftpgRequest))
			continue;
		memcpy(&req, rec, sizeof(RaftpgRequest));
		if (core == NULL)
		{
			/* not a member (yet, or any more) */
			reply(&req, RAFT_ENOTLEADER, 0, 0);
			any = true;
			continue;
		}
		switch (req.kind)
		{
			case RAFTPG_REQ_PROPOSE:
				{
					raft_buf	b;

					b.base = rec + sizeof(RaftpgRequest);
					b.len = len - sizeof(RaftpgRequest);
					rc = raft_propose(core, &b, 1, &index);
					break;
				}
			case RAFTPG_REQ_PROPOSE_TXN:
				if (req.dsm != DSM_HANDLE_INVALID)
				{
					/* a large transaction: its body is in a segment */
					dsm_segment *seg = dsm_attach(req.dsm);

					if (seg == NULL)
						rc = RAFT_EINVAL;	/* the backend gave up */
					else
					{
						Size		size = dsm_segment_map_length(seg);

						rc = size > PG_UINT32_MAX ? RAFT_EINVAL :
							propose_txn(&req, dsm_segment_address(seg),
										(uint32) size, &index);
						dsm_detach(seg);
					}
				}
				else
					rc = propose_txn(&req, rec + sizeof(RaftpgRequest),
									 len - sizeof(RaftpgRequest), &index);
				break;
			case RAFTPG_REQ_READ_INDEX:
				if (n_read_waiters < RAFTPG_MAX_READ_WAITERS)
				{
					ReadWaiter *w = &read_waiters[n_read_waiters++];

					w->procno = req.procno;
					w->seq = req.seq;
					w->ctx = 0;
					w->term = 0;
					w->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															  raftpg_commit_timeout);
					continue;	/* answered when its round completes */
				}
				rc = RAFT_EBUSY;
				break;
			case RAFTPG_REQ_ADD:
				if (len - sizeof(RaftpgRequest) != sizeof(RaftpgMemberArgs))
					rc = RAFT_EINVAL;
				else
				{
					RaftpgMemberArgs args;

					memcpy(&args, rec + sizeof(RaftpgRequest), sizeof(args));
					args.name[RAFTPG_NAME_LEN - 1] = '\0';
					args.conninfo[RAFTPG_CONNINFO_LEN - 1] = '\0';
					rc = raft_add_server(core, req.id, args.name, args.conninfo,
										 &index);
				}
				break;
			case RAFTPG_REQ_PROMOTE:
				rc = raft_promote(core, req.id, &index);
				break;
			case RAFTPG_REQ_REMOVE:
				rc = raft_remove_server(core, req.id, &index);
				break;
			case RAFTPG_REQ_TRANSFER:
				rc = raft_transfer_leadership(core, req.id);
				break;
			default:
				rc = RAFT_EINVAL;
				break;
		}
		raft_get_status(core, &st);

		/*
		 * The backend of a transaction whose entries were proposed is not
		 * woken for this answer: it goes on waiting for their commit, and
		 * node_publish() wakes it when they commit or the term moves (its
		 * commit slot holds the index now).  One wake-up per transaction
		 * instead of two.
		 */
		reply_wake(&req, rc, index, st.term,
				   !(req.kind == RAFTPG_REQ_PROPOSE_TXN && rc == RAFT_OK));
		any = true;
	}
	if (read_round_start())
		any = true;
	if (any)
		ConditionVariableBroadcast(&RaftpgShmem->cv);
}

/* not a member: requests are refused (node_requests), messages dropped */
static void
node_refuse_requests(void)
{
	node_requests();
	resetStringInfo(&drain_buf);
	(void) MailboxDrain(RaftpgInbox, &drain_buf);
}

static void
node_tick(void)
{
	TimestampTz now = GetCurrentTimestamp();
	int			n = 0;

	while (now >= next_tick && n < RAFTPG_MAX_CATCHUP_TICKS)
	{
		raft_tick(core);
		next_tick = TimestampTzPlusMilliseconds(next_tick, raftpg_heartbeat_interval);
		n++;
	}
	if (now >= next_tick)
		next_tick = TimestampTzPlusMilliseconds(now, raftpg_heartbeat_interval);
}

/* ----------
 * Output
 * ----------
 */
static void
send_messages(const raft_ready *rd)
{
	size_t		i;

	for (i = 0; i < rd->n_messages; i++)
	{
		const raft_message *m = &rd->messages[i];
		TransportPeer *p = TransportGetPeer(m->to);
		size_t		size;
		size_t		len;
		uint8	   *buf;

		if (p == NULL || p->state != PEER_READY)
		{
			stats.messages_dropped++;
			continue;
		}
		size = raft_message_encoded_size(m);
		buf = palloc(size);
		if (raft_encode_message(m, buf, size, &len) != RAFT_OK)
		{
			elog(LOG, "raftpg: could not encode a %s message",
				 raft_msg_type_name(m->type));
			pfree(buf);
			continue;
		}
		TransportQueue(p, buf, len);
		stats.messages_out++;
		stats.bytes_out += len;
		pfree(buf);
	}
}

/*
 * Persist one ready batch in one transaction.  Returns whether it
 * committed; on failure the transaction was rolled back and the error
 * logged, and nothing in memory has moved.
 */
static bool
persist_ready(const raft_ready *rd)
{
	raft_status after;
	RaftpgStateRow st_new;
	MemoryContext oldcxt = CurrentMemoryContext;
	volatile bool ok = true;
	bool		commit_only;

	if (!rd->hard_state_changed && rd->n_entries == 0 && rd->truncate_from == 0)
		return true;
	raft_get_status(core, &after);

	/*
	 * A batch that only moves the commit index is not written at all: Raft
	 * keeps the commit index in volatile state (a restart that finds an
	 * older one learns the newer one from the leader), and writing it would
	 * put one more transaction -- and, synchronously, one more disk flush --
	 * on every commit's path, on every node.  The state row's commit_index
	 * is the one of the last batch that wrote entries or a term or vote.
	 */
	commit_only = rd->n_entries == 0 && rd->truncate_from == 0 &&
		rd->hard_state.term == state.hs.term &&
		rd->hard_state.vote == state.hs.vote;
	if (commit_only)
	{
		state.hs.commit = rd->hard_state.commit;
		return true;
	}

	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "raftpg: appending to the log");
		StoragePersist(rd, &state, &after, raft_get_config(core), &st_new);
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		abort_and_log(oldcxt, "could not persist the log, nothing was stored");
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	pgstat_report_activity(STATE_IDLE, NULL);

	if (ok)
	{
		state = st_new;
		stats.appends++;
		stats.entries_appended += rd->n_entries;
	}
	else
		stats.persist_failures++;
	return ok;
}

static void
node_process_ready(void)
{
	while (raft_has_ready(core))
	{
		raft_ready	rd;
		int			rc;
		bool		ok;

		rc = raft_get_ready(core, &rd);
		if (rc != RAFT_OK)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("raftpg: %s", raft_strerror(rc))));

		/* replicate first: the leader's own write overlaps the followers' */
		send_messages(&rd);
		TransportFlush();

		ok = persist_ready(&rd);

		/*
		 * Committed entries are already durable here: the apply worker
		 * reads them from the log table.  A snapshot to install goes to
		 * it too, once the batch that asked is persisted (a failed one
		 * asks again).
		 */
		read_rounds_answer(&rd);
		if (ok && rd.snapshot_pending)
			node_snapshot_request(&rd);

		if (ok)
			raft_advance(core);
		else
			raft_persist_failed(core);
	}
}

/* ----------
 * Publishing
 * ----------
 */
static RaftpgRole
map_role(raft_role r)
{
	switch (r)
	{
		case RAFT_LEADER:
			return RAFTPG_ROLE_LEADER;
		case RAFT_CANDIDATE:
		case RAFT_PRECANDIDATE:
			return RAFTPG_ROLE_CANDIDATE;
		case RAFT_FOLLOWER:
			return RAFTPG_ROLE_FOLLOWER;
	}
	return RAFTPG_ROLE_FOLLOWER;
}

static void
log_changes(const raft_status *st, const raft_config *c)
{
	if (st->role != last_role || st->term != last_term)
	{
		if (st->role == RAFT_CANDIDATE && (last_role != RAFT_CANDIDATE || st->term != last_term))
			stats.elections++;
		if (st->role != last_role)
			ereport(LOG,
					(errmsg("raftpg: node \"%s\" is now %s in term " UINT64_FORMAT,
							raftpg_node_name, raft_role_name(st->role),
							(uint64) st->term)));
	}
	if (st->leader != last_leader && st->leader != 0)
	{
		const raft_server *s = raft_config_get(c, st->leader);

		stats.leader_changes++;
		ereport(LOG,
				(errmsg("raftpg: node \"%s\" follows leader \"%s\" in term " UINT64_FORMAT,
						raftpg_node_name, s ? s->name : "?", (uint64) st->term)));
	}
	if (st->config_index != last_config_index)
	{
		StringInfoData buf;
		uint32		i;

		initStringInfo(&buf);
		for (i = 0; i < c->n; i++)
			appendStringInfo(&buf, "%s%s%s", i ? ", " : "", c->servers[i].name,
							 c->servers[i].role == RAFT_LEARNER ? " (learner)" : "");
		ereport(LOG,
				(errmsg("raftpg: configuration at index " UINT64_FORMAT ": %s",
						(uint64) st->config_index, buf.data)));
		if (c->n > 0)
			TransportSetPeers(c, (uint64) state.node_id);
		pfree(buf.data);
	}
	last_role = st->role;
	last_term = st->term;
	last_leader = st->leader;
	last_config_index = st->config_index;
}

/*
 * On a leader, acknowledgements that committed entries wake their
 * backends at once, not at the end of the pass: under load the pass goes
 * on to propose and persist the next batch, and its disk flush would keep
 * every backend whose commit already arrived waiting for another flush.
 * Not in a new leader's first pass: its first publication sets the write
 * gate at its durable log, which must hold its first own entry by then.
 * Only this process writes the status, so it reads it without the lock.
 */
static void
node_publish_commit(void)
{
	raft_status st;

	raft_get_status(core, &st);
	if (st.role == RAFT_LEADER &&
		RaftpgShmem->ready_term == st.term &&
		st.commit != RaftpgShmem->status.commit_index)
		node_publish();
}

static void
node_publish(void)
{
	raft_status st;
	const raft_config *c = raft_get_config(core);
	RaftpgNodeStatus ns;
	const raft_server *leader;
	TimestampTz now = GetCurrentTimestamp();
	uint32		i;
	bool		wake;
	Latch	   *apply_latch = NULL;
	uint64		applicable;
	int			n_wake = 0;

	raft_get_status(core, &st);
	log_changes(&st, c);
	stats.entries_in_memory = st.last_index - st.snapshot_index;

	memset(&ns, 0, sizeof(ns));
	ns.role = map_role(st.role);
	ns.voter = st.voter;
	ns.node_id = (uint64) state.node_id;
	ns.term = st.term;
	ns.leader_id = st.leader;
	leader = st.leader ? raft_config_get(c, st.leader) : NULL;
	if (leader)
		strlcpy(ns.leader_name, leader->name, sizeof(ns.leader_name));
	/* the log as the tables hold it, never what is not durable */
	ns.last_log_index = (uint64) state.last_log_index;
	ns.last_log_term = (uint64) state.last_log_term;
	ns.commit_index = st.commit;
	/* what the apply worker has committed to the tables, filled in below */
	ns.applied_index = 0;
	ns.config_index = st.config_index;
	ns.transferring = st.transferee != 0;

	LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
	wake = RaftpgShmem->status.commit_index != ns.commit_index ||
		RaftpgShmem->status.term != ns.term ||
		RaftpgShmem->status.role != ns.role ||
		RaftpgShmem->status.leader_id != ns.leader_id ||
		RaftpgShmem->status.config_index != ns.config_index;
	/*
	 * Wake the apply worker once the committed and durable log reaches the
	 * index it asked for (apply.c): a batch it lingers over is not woken
	 * for every commit.
	 */
	applicable = Min(ns.commit_index, ns.last_log_index);
	if (applicable > Min(RaftpgShmem->status.commit_index,
						 RaftpgShmem->status.last_log_index) &&
		applicable >= RaftpgShmem->apply_wake_at)
		apply_latch = RaftpgShmem->apply_latch;
	ns.applied_index = RaftpgShmem->applied_index;
	RaftpgShmem->status = ns;

	/*
	 * A new leader opens local writes once it has applied every entry up to
	 * its own first one (capture.c, the write gate).
	 */
	if (st.role == RAFT_LEADER && RaftpgShmem->ready_term != st.term)
	{
		RaftpgShmem->ready_term = st.term;
		RaftpgShmem->gate_index = Max(RaftpgShmem->gate_index,
									  (uint64) state.last_log_index);
		/* and applies it without lingering */
		if (RaftpgShmem->gate_index > RaftpgShmem->applied_index)
			apply_latch = RaftpgShmem->apply_latch;
	}
	else if (st.role != RAFT_LEADER)
		RaftpgShmem->ready_term = 0;
	stats.socket_reads_empty = TransportEmptyReads();
	RaftpgShmem->stats = stats;
	RaftpgShmem->stats.messages_dropped += RaftpgInbox->dropped;
	RaftpgShmem->n_members = (int) c->n;
	for (i = 0; i < c->n; i++)
	{
		const raft_server *s = &c->servers[i];
		RaftpgMember *mb = &RaftpgShmem->members[i];
		raft_progress_info pi;
		TransportPeer *p = TransportGetPeer(s->id);

		mb->id = s->id;
		mb->voter = s->role == RAFT_VOTER;
		strlcpy(mb->name, s->name, sizeof(mb->name));
		strlcpy(mb->conninfo, s->address, sizeof(mb->conninfo));
		mb->reachable = (s->id == (uint64) state.node_id) ||
			(p != NULL && p->state == PEER_READY);
		mb->progress_known = raft_get_progress(core, s->id, &pi) == RAFT_OK;
		if (mb->progress_known)
		{
			mb->match_index = pi.match;
			mb->last_contact = now - (TimestampTz) pi.ticks_since_contact *
				raftpg_heartbeat_interval * 1000;
		}
	}
	/*
	 * Backends waiting for their commit (capture.c) wait on their own
	 * latches: wake those whose entry is now committed, or all of them if
	 * the term moved.  One latch each, not a broadcast to every waiter.
	 */
	if (wake && RaftpgShmem->active_slots > 0)
	{
		int			n = 0;

		for (i = 0; i < (uint32) RaftpgShmem->n_replies && n < RaftpgShmem->active_slots; i++)
		{
			RaftpgCommitSlot *slot = &RaftpgCommitSlots[i];

			if (slot->state == RAFTPG_SLOT_IDLE)
				continue;
			n++;
			if (slot->state == RAFTPG_SLOT_PROPOSED && slot->index != 0 &&
				(slot->index <= ns.commit_index || slot->term != ns.term))
				wake_procs[n_wake++] = i;
		}
	}
	LWLockRelease(&RaftpgShmem->lock);
	for (i = 0; i < (uint32) n_wake; i++)
		SetLatch(&ProcGlobal->allProcs[wake_procs[i]].procLatch);
	if (apply_latch)
		SetLatch(apply_latch);
	if (wake)
		ConditionVariableBroadcast(&RaftpgShmem->cv);
}
