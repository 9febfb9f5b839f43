/*-------------------------------------------------------------------------
 *
 * raftpg.c
 *	  Module entry point: configuration, shared memory and the registration
 *	  of the node worker.
 *
 * raftpg only works when it is loaded into the postmaster through
 * shared_preload_libraries: the node worker must be registered before the
 * postmaster starts, and the shared state it publishes must be allocated
 * with the rest of shared memory.  _PG_init() therefore does its real work
 * only while process_shared_preload_libraries_in_progress is true.  When the
 * library is loaded later into a single backend (by CREATE EXTENSION, or
 * LOAD), _PG_init() does nothing at all -- not even define the GUCs, since
 * PostgreSQL forbids creating PGC_POSTMASTER parameters after startup --
 * and every SQL-callable function then refuses to run with the error of
 * RaftpgCheckPreloaded(), and so does the extension's install script.
 * _PG_init() itself never raises an error: that would abort the load of the
 * library in whatever context happened to load it.
 *
 * Shared memory follows PostgreSQL 15's protocol: the size is requested in
 * shmem_request_hook, and the struct is created or attached in
 * shmem_startup_hook under AddinShmemInitLock.  Its LWLock lives inside it,
 * in a tranche named "raftpg".
 *
 * src/raftpg.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "raftpg.h"
#include "capture.h"
#include "ddl.h"
#include "mailbox.h"
#include "reads.h"
#include "sequences.h"
#include "transport.h"

PG_MODULE_MAGIC;

/* Seconds the postmaster waits before restarting a node worker that died. */
#define RAFTPG_WORKER_RESTART_SECS	5
/* ... and before restarting an apply worker that stopped on an error */
#define RAFTPG_APPLY_RESTART_SECS	1

/* GUC variables */
char	   *raftpg_node_name = NULL;
char	   *raftpg_database = NULL;
int			raftpg_heartbeat_interval = 100;
int			raftpg_election_timeout = 1000;
int			raftpg_commit_timeout = 30000;
static int	raftpg_inbox_size = 16384;	/* kB */

/* The shared state; NULL unless loaded via shared_preload_libraries. */
RaftpgShared *RaftpgShmem = NULL;
RaftpgMailbox *RaftpgInbox = NULL;
RaftpgMailbox *RaftpgRequests = NULL;
RaftpgCommitSlot *RaftpgCommitSlots = NULL;

/* True when _PG_init() ran while the postmaster preloaded libraries. */
static bool rp_preloaded = false;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static bool rp_check_node_name(char **newval, void **extra, GucSource source);
static void rp_shmem_request(void);
static void rp_shmem_startup(void);
static void rp_register_node_worker(void);

void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;

	rp_preloaded = true;

	DefineCustomStringVariable("raftpg.node_name",
							   "This server's name in the raftpg cluster.",
							   "Every server of a cluster needs a distinct "
							   "name.  Empty means not configured.",
							   &raftpg_node_name,
							   "",
							   PGC_POSTMASTER,
							   0,
							   rp_check_node_name, NULL, NULL);

	DefineCustomStringVariable("raftpg.database",
							   "Database the raftpg node worker connects to.",
							   "raftpg keeps its log and its replicated "
							   "tables in this database.",
							   &raftpg_database,
							   "postgres",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("raftpg.heartbeat_interval",
							"Interval between the leader's heartbeats.",
							"Also the node worker's clock tick.",
							&raftpg_heartbeat_interval,
							100, 10, 10000,
							PGC_POSTMASTER,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("raftpg.election_timeout",
							"Time without a leader after which a follower "
							"starts an election.",
							"Each election waits a random time between this "
							"and twice this.  Must be at least twice "
							"raftpg.heartbeat_interval.",
							&raftpg_election_timeout,
							1000, 20, 600000,
							PGC_POSTMASTER,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("raftpg.apply_linger",
							"How long the apply worker lets committed entries "
							"gather into one batch under a light load.",
							"A batch of fewer than 64 entries waits this long "
							"after the last batch; not while anyone waits for "
							"apply.  0 applies every commit at once.",
							&raftpg_apply_linger,
							20, 0, 10000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("raftpg.log_memory_entries",
							"How many applied log entries the node worker keeps "
							"in memory.",
							"Older ones are dropped from memory once twice as "
							"many have gathered, and read back from raftpg.log "
							"when a node that is behind needs them.",
							&raftpg_log_memory_entries,
							10000, 16, 100000000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("raftpg.log_keep_entries",
							"How many applied log entries raftpg.log keeps "
							"for members that are behind.",
							"Older ones are deleted; a member that needs one "
							"copies a snapshot of the tables instead.  The "
							"leader also keeps what a member it is in contact "
							"with still needs, up to ten times as many.",
							&raftpg_log_keep_entries,
							100000, 0, INT_MAX,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("raftpg.commit_timeout",
							"How long a backend waits for the cluster to "
							"commit what it asked for.",
							NULL,
							&raftpg_commit_timeout,
							30000, 10, INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("raftpg.inbox_size",
							"Shared memory for messages from peers waiting "
							"for the node worker.",
							"When it is full, messages are dropped (and "
							"resent by the protocol).",
							&raftpg_inbox_size,
							16384, 1024, 1024 * 1024,
							PGC_POSTMASTER,
							GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("raftpg.max_entry_size",
							"Largest log entry a transaction's changes are "
							"cut into.",
							"A larger transaction becomes several "
							"contiguous entries.",
							&raftpg_max_entry_size,
							1024 * 1024, 8192, 4 * 1024 * 1024,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("raftpg.direct_receive",
							 "Lets the node worker read peers' message streams "
							 "from their sockets itself.",
							 "Off: the backend that receives a stream passes "
							 "each message on through shared memory.  Streams "
							 "over SSL or GSSAPI encryption are always passed "
							 "on.",
							 &raftpg_direct_receive,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("raftpg.sequence_reserve",
							"Values of a replicated table's sequence the "
							"leader reserves through the log at a time.",
							"After a failover, the new leader continues "
							"after the last reservation: gaps of up to this "
							"many values.",
							&raftpg_sequence_reserve,
							100000, 10, 100000000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	/*
	 * Every backend: capture of changes to replicated tables, DDL, reads.
	 * They define settings of their own, so before the prefix is reserved.
	 */
	CaptureInit();
	DdlInit();
	ReadsInit();

	MarkGUCPrefixReserved("raftpg");

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = rp_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = rp_shmem_startup;

	rp_register_node_worker();
	TransportDirectInit();

}

/*
 * Node names end up in fixed-size shared-memory slots, log lines, hints and
 * (later) other servers' configuration, so keep them short and plain.
 */
static bool
rp_check_node_name(char **newval, void **extra, GucSource source)
{
	const char *p;

	if (strlen(*newval) >= RAFTPG_NAME_LEN)
	{
		GUC_check_errdetail("A node name must be shorter than %d bytes.",
							RAFTPG_NAME_LEN);
		return false;
	}

	for (p = *newval; *p != '\0'; p++)
	{
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' ||
			  *p == '.'))
		{
			GUC_check_errdetail("A node name may contain only ASCII letters, "
								"digits, \"_\", \"-\" and \".\".");
			return false;
		}
	}

	return true;
}

static Size
rp_shared_size(void)
{
	return add_size(offsetof(RaftpgShared, replies),
					mul_size(MaxBackends, sizeof(RaftpgReply)));
}

static Size
rp_inbox_capacity(void)
{
	return (Size) raftpg_inbox_size * 1024;
}

Size
RaftpgShmemSize(void)
{
	Size		size = MAXALIGN(rp_shared_size());

	size = add_size(size, MAXALIGN(MailboxShmemSize(rp_inbox_capacity())));
	size = add_size(size, MAXALIGN(MailboxShmemSize(RAFTPG_REQUEST_MAILBOX_SIZE)));
	size = add_size(size, MAXALIGN(mul_size(MaxBackends, sizeof(RaftpgCommitSlot))));
	return size;
}

static void
rp_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();

	RequestAddinShmemSpace(RaftpgShmemSize());
}

static void
rp_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);

	RaftpgShmem = ShmemInitStruct("raftpg", rp_shared_size(), &found);
	RaftpgInbox = ShmemInitStruct("raftpg inbox",
								  MailboxShmemSize(rp_inbox_capacity()), &found);
	RaftpgRequests = ShmemInitStruct("raftpg requests",
									 MailboxShmemSize(RAFTPG_REQUEST_MAILBOX_SIZE),
									 &found);
	RaftpgCommitSlots = ShmemInitStruct("raftpg commit slots",
										mul_size(MaxBackends, sizeof(RaftpgCommitSlot)),
										&found);
	if (!found)
	{
		int			tranche = LWLockNewTrancheId();

		/* zero is the "unconfigured" state of every field */
		memset(RaftpgShmem, 0, rp_shared_size());
		LWLockInitialize(&RaftpgShmem->lock, tranche);
		RaftpgShmem->status.role = RAFTPG_ROLE_UNCONFIGURED;
		RaftpgShmem->n_replies = MaxBackends;
		RaftpgShmem->next_seq = 1;
		pg_atomic_init_u32(&RaftpgShmem->origin_gen, 0);
		if (!pg_strong_random(&RaftpgShmem->incarnation,
							  sizeof(RaftpgShmem->incarnation)))
			ereport(FATAL,
					(errmsg("raftpg could not draw a random incarnation number")));
		ConditionVariableInit(&RaftpgShmem->cv);
		MailboxInit(RaftpgInbox, rp_inbox_capacity(), tranche);
		MailboxInit(RaftpgRequests, RAFTPG_REQUEST_MAILBOX_SIZE, tranche);
		memset(RaftpgCommitSlots, 0, mul_size(MaxBackends, sizeof(RaftpgCommitSlot)));
	}

	LWLockRelease(AddinShmemInitLock);

	/* every process that sees the lock must know the tranche's name */
	LWLockRegisterTranche(RaftpgShmem->lock.tranche, "raftpg");
}

static void
rp_register_node_worker(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* the worker will write its log, so not before recovery is over */
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = RAFTPG_WORKER_RESTART_SECS;
	strlcpy(worker.bgw_library_name, "raftpg", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "RaftpgNodeMain", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "raftpg node worker", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "raftpg node", BGW_MAXLEN);
	worker.bgw_main_arg = (Datum) 0;
	worker.bgw_notify_pid = 0;

	RegisterBackgroundWorker(&worker);

	/* the apply worker: committed entries into the tables (apply.c) */
	strlcpy(worker.bgw_function_name, "RaftpgApplyMain", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "raftpg apply worker", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "raftpg apply", BGW_MAXLEN);
	worker.bgw_restart_time = RAFTPG_APPLY_RESTART_SECS;
	RegisterBackgroundWorker(&worker);
}

/*
 * Publish this process as the node worker (apply false) or the apply
 * worker in RaftpgShared, with detach to run before it leaves shared
 * memory.  The postmaster runs at most one instance of a registered
 * worker, so the fields are free unless shared memory is corrupt.
 */
void
RaftpgAttachWorker(bool apply, pg_on_exit_callback detach)
{
	pid_t	   *pid;
	Latch	  **latch;
	pid_t		other;

	if (RaftpgShmem == NULL)
		elog(FATAL, "raftpg shared memory is not initialized");
	before_shmem_exit(detach, (Datum) 0);
	pid = apply ? &RaftpgShmem->apply_pid : &RaftpgShmem->worker_pid;
	latch = apply ? &RaftpgShmem->apply_latch : &RaftpgShmem->worker_latch;
	LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
	other = *pid;
	if (other == 0)
	{
		*pid = MyProcPid;
		*latch = MyLatch;
	}
	LWLockRelease(&RaftpgShmem->lock);
	if (other != 0)
		elog(FATAL, "raftpg %s worker already running with pid %d",
			 apply ? "apply" : "node", (int) other);
}

/*
 * Error out unless raftpg was loaded via shared_preload_libraries in this
 * server.  Every SQL-callable function calls this first.
 */
void
RaftpgCheckPreloaded(void)
{
	if (!rp_preloaded || RaftpgShmem == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("raftpg must be loaded via shared_preload_libraries"),
				 errhint("Add raftpg to shared_preload_libraries in "
						 "postgresql.conf and restart the server.")));
}

const char *
RaftpgRoleName(RaftpgRole role)
{
	switch (role)
	{
		case RAFTPG_ROLE_UNCONFIGURED:
			return "unconfigured";
		case RAFTPG_ROLE_FOLLOWER:
			return "follower";
		case RAFTPG_ROLE_CANDIDATE:
			return "candidate";
		case RAFTPG_ROLE_LEADER:
			return "leader";
	}

	elog(ERROR, "unrecognized raftpg role: %d", (int) role);
	return NULL;				/* keep compiler quiet */
}

static const char *const fault_names[RAFTPG_FAULT_LAST] = {
	"none", "after_entries", "config", "after_state", "before_commit"
};

const char *
RaftpgFaultName(RaftpgFaultPoint point)
{
	if (point < 0 || point >= RAFTPG_FAULT_LAST)
		return "unknown";
	return fault_names[point];
}

RaftpgFaultPoint
RaftpgFaultByName(const char *name)
{
	int			i;

	for (i = 1; i < RAFTPG_FAULT_LAST; i++)
		if (strcmp(name, fault_names[i]) == 0)
			return (RaftpgFaultPoint) i;
	return RAFTPG_FAULT_NONE;
}

/* the node worker reached point: should it fail there? */
bool
RaftpgConsumeFault(RaftpgFaultPoint point)
{
	bool		fire = false;

	LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
	if (RaftpgShmem->fault_point == point && RaftpgShmem->fault_remaining > 0)
	{
		fire = true;
		if (--RaftpgShmem->fault_remaining == 0)
			RaftpgShmem->fault_point = RAFTPG_FAULT_NONE;
	}
	LWLockRelease(&RaftpgShmem->lock);
	return fire;
}

/* ----------
 * The consensus core's allocator: a memory context of its own, so that its
 * memory shows up as such in memory context dumps, and allocation failures
 * come back as NULL (RAFT_ENOMEM) instead of an ERROR that would longjmp
 * through the core.  Each block carries its size, because PostgreSQL 15 has
 * no repalloc variant that returns NULL on failure.
 * ----------
 */
static MemoryContext RaftpgCoreContext = NULL;

#define CORE_HDR MAXALIGN(sizeof(Size))

static void *
core_alloc(void *ctx, size_t size)
{
	char	   *p = MemoryContextAllocExtended(RaftpgCoreContext, size + CORE_HDR,
											   MCXT_ALLOC_NO_OOM | MCXT_ALLOC_HUGE);

	(void) ctx;
	if (p == NULL)
		return NULL;
	*(Size *) p = size;
	return p + CORE_HDR;
}

static void
core_free(void *ctx, void *ptr)
{
	(void) ctx;
	if (ptr)
		pfree((char *) ptr - CORE_HDR);
}

static void *
core_realloc(void *ctx, void *ptr, size_t size)
{
	void	   *n;
	Size		old;

	if (ptr == NULL)
		return core_alloc(ctx, size);
	old = *(Size *) ((char *) ptr - CORE_HDR);
	n = core_alloc(ctx, size);
	if (n == NULL)
		return NULL;
	memcpy(n, ptr, Min(old, size));
	core_free(ctx, ptr);
	return n;
}

/* memory the core owns and frees (what raft_options.fetch hands out) */
void *
RaftpgCoreAlloc(Size size)
{
	return core_alloc(NULL, size);
}

void
RaftpgUseCoreAllocator(void)
{
	raft_allocator a;

	if (RaftpgCoreContext == NULL)
		RaftpgCoreContext = AllocSetContextCreate(TopMemoryContext,
												  "raftpg consensus core",
												  ALLOCSET_DEFAULT_SIZES);
	a.ctx = NULL;
	a.alloc = core_alloc;
	a.realloc = core_realloc;
	a.free = core_free;
	raft_set_allocator(&a);
}
