/*-------------------------------------------------------------------------
 *
 * node.c
 *	  The raftpg node worker: the one process per server that will run the
 *	  Raft node.
 *
 * The postmaster starts this background worker because raftpg registered
 * it from shared_preload_libraries, and restarts it a few seconds after it
 * dies.  The worker connects to the database named by raftpg.database,
 * publishes its pid and latch in shared memory, and then runs a single
 * event loop.  Everything the node does will happen in that loop, one step
 * at a time between waits: ticking the consensus core, persisting what it
 * hands back (one transaction per batch), sending messages to peers and
 * handing committed entries to the apply side.  Later issues add those
 * steps; for now the worker only waits on its latch until it is configured,
 * answering configuration reloads and shutdown requests.
 *
 * The shape is that of PostgreSQL's own workers (worker_spi, autoprewarm,
 * the logical replication launcher): signal handlers installed before the
 * signals are unblocked, WaitLatch() with WL_EXIT_ON_PM_DEATH so that the
 * worker never outlives its postmaster, ResetLatch() before looking for
 * work, and CHECK_FOR_INTERRUPTS() to act on SIGTERM at a safe point.
 *
 * src/node.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"

#include "raftpg.h"

/*
 * How long the loop sleeps when nothing wakes it.  With no consensus node
 * yet there is nothing to do on a timeout; the tick interval will take this
 * place.
 */
#define RAFTPG_IDLE_WAIT_MS		10000

static void node_attach_shmem(void);
static void node_detach_shmem(int code, Datum arg);

void
RaftpgNodeMain(Datum main_arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(raftpg_database, NULL, 0);

	node_attach_shmem();

	ereport(LOG,
			(errmsg("raftpg node worker started for node \"%s\" in database \"%s\"",
					raftpg_node_name, raftpg_database)));

	for (;;)
	{
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 RAFTPG_IDLE_WAIT_MS,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);

		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
}

/*
 * Publish this process as the node worker.  The postmaster runs at most one
 * instance of a registered worker, so the slot is free unless shared memory
 * is corrupt.
 */
static void
node_attach_shmem(void)
{
	pid_t		other;

	if (RaftpgShmem == NULL)
		elog(FATAL, "raftpg shared memory is not initialized");

	before_shmem_exit(node_detach_shmem, (Datum) 0);

	LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
	other = RaftpgShmem->worker_pid;
	if (other == 0)
	{
		RaftpgShmem->worker_pid = MyProcPid;
		RaftpgShmem->worker_latch = MyLatch;
	}
	LWLockRelease(&RaftpgShmem->lock);

	if (other != 0)
		elog(FATAL, "raftpg node worker already running with pid %d",
			 (int) other);
}

/*
 * before_shmem_exit callback: withdraw this process from shared memory, so
 * that nobody reports or signals a worker that is gone.
 */
static void
node_detach_shmem(int code, Datum arg)
{
	LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
	if (RaftpgShmem->worker_pid == MyProcPid)
	{
		RaftpgShmem->worker_pid = 0;
		RaftpgShmem->worker_latch = NULL;
	}
	LWLockRelease(&RaftpgShmem->lock);
}
