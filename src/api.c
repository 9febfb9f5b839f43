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
#include "access/xact.h"
#include "commands/dbcommands.h"
#include "common/pg_prng.h"
#include "fmgr.h"
#include "funcapi.h"
#include "libpq-fe.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "raftpg.h"
#include "mailbox.h"
#include "storage.h"
#include "transport.h"

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

/* ----------
 * Talking to the node worker
 * ----------
 */

RaftpgNodeStatus
RaftpgReadStatus(void)
{
	RaftpgNodeStatus st;

	LWLockAcquire(&RaftpgShmem->lock, LW_SHARED);
	st = RaftpgShmem->status;
	LWLockRelease(&RaftpgShmem->lock);
	return st;
}

/* the member with this id (conninfo and name), false if none */
bool
RaftpgFindMember(uint64 id, const char *name, RaftpgMember *out)
{
	int			i;
	bool		found = false;

	LWLockAcquire(&RaftpgShmem->lock, LW_SHARED);
	for (i = 0; i < RaftpgShmem->n_members; i++)
	{
		RaftpgMember *m = &RaftpgShmem->members[i];

		if ((name == NULL && m->id == id) ||
			(name != NULL && strcmp(m->name, name) == 0))
		{
			*out = *m;
			found = true;
			break;
		}
	}
	LWLockRelease(&RaftpgShmem->lock);
	return found;
}

/*
 * Error out unless this node is the leader, naming the leader in the hint:
 * cluster operations go to the leader.
 */
void
RaftpgRequireLeader(void)
{
	RaftpgNodeStatus st = RaftpgReadStatus();
	RaftpgMember leader;

	if (st.role == RAFTPG_ROLE_LEADER)
		return;
	if (st.role == RAFTPG_ROLE_UNCONFIGURED)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this server is not a member of a raftpg cluster"),
				 errhint("Create a cluster with raftpg.create_cluster(), or add this server to one with raftpg.add_node() on its leader.")));
	if (st.leader_id != 0 && RaftpgFindMember(st.leader_id, NULL, &leader))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this node is not the leader of the raftpg cluster"),
				 errhint("The leader is node \"%s\", reachable at \"%s\".",
						 leader.name, leader.conninfo)));
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("this node is not the leader of the raftpg cluster"),
			 errhint("No leader is known right now; an election is under way. Try again shortly.")));
}

void
RaftpgRequireSuperuser(const char *fn)
{
	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only superusers may call %s", fn)));
}

/*
 * The log lives in raftpg.database: functions that write it must run
 * there, or the node worker would never see what they wrote.
 */
void
RaftpgRequireRaftpgDatabase(void)
{
	if (MyDatabaseId != get_database_oid(raftpg_database, true))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("raftpg serves database \"%s\", not this one", raftpg_database),
				 errhint("Connect to database \"%s\" (raftpg.database) and create the extension there.",
						 raftpg_database)));
}

/*
 * A background worker's pending table statistics, reported at most once a
 * second.  pgstat_report_stat(false) alone is not enough for a worker that
 * goes idle: it measures the interval from the end of the last transaction,
 * so with no transaction after it the statistics stay pending for good
 * (backends have their idle timeout for that).  Without them autovacuum
 * never learns of the rows the apply worker updates and deletes, and the
 * followers' copies of the tables and indexes bloat without end.
 */
void
RaftpgReportStats(void)
{
	static TimestampTz last = 0;
	TimestampTz now = GetCurrentTimestamp();

	if (IsTransactionOrTransactionBlock())
		return;					/* pgstat reports between transactions */
	if (TimestampDifferenceExceeds(last, now, 1000))
	{
		pgstat_report_stat(true);
		last = now;
	}
}

long
RaftpgRemainingMs(TimestampTz deadline)
{
	long		ms = (long) ((deadline - GetCurrentTimestamp()) / 1000);

	return ms > 0 ? ms : 0;
}

/*
 * One wait on the worker's condition variable, at most max_ms and never
 * past deadline; the caller has prepared to sleep and re-checks its
 * condition after.
 */
static void
wait_step(TimestampTz deadline, long max_ms)
{
	(void) ConditionVariableTimedSleep(&RaftpgShmem->cv,
									   Min(RaftpgRemainingMs(deadline), max_ms),
									   PG_WAIT_EXTENSION);
	CHECK_FOR_INTERRUPTS();
}

/*
 * Hand a request to the worker and wait for its answer (not for the
 * commit).  body may be NULL.
 */
RaftpgReply
RaftpgSubmit(RaftpgRequest *req, const void *body, Size len)
{
	TimestampTz deadline =
		TimestampTzPlusMilliseconds(GetCurrentTimestamp(), raftpg_commit_timeout);

	RaftpgSubmitStart(req, body, len);
	return RaftpgSubmitWait(req, deadline);
}

/* Hand a request to the worker, and wake it; the answer comes later. */
void
RaftpgSubmitStart(RaftpgRequest *req, const void *body, Size len)
{
	Latch	   *latch;
	int			procno = MyProc->pgprocno;

	if (procno < 0 || procno >= RaftpgShmem->n_replies)
		elog(ERROR, "raftpg: backend slot %d out of range", procno);

	LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
	req->seq = RaftpgShmem->next_seq++;
	req->procno = procno;
	RaftpgShmem->replies[procno].seq = 0;
	latch = RaftpgShmem->worker_latch;
	LWLockRelease(&RaftpgShmem->lock);

	if (latch == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the raftpg node worker is not running"),
				 errhint("The postmaster restarts it within seconds; check the server log.")));
	if (!MailboxPut(RaftpgRequests, req, sizeof(*req), body, len))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the raftpg request queue is full"),
				 errhint("Try again; the node worker drains it continuously.")));
	SetLatch(latch);
}

/*
 * Wait for the worker's answer to req, which RaftpgSubmitStart() handed
 * it, until deadline.
 */
RaftpgReply
RaftpgSubmitWait(const RaftpgRequest *req, TimestampTz deadline)
{
	RaftpgReply r;
	int			procno = MyProc->pgprocno;

	/* the worker sets our latch when it has answered (node.c, reply()) */
	for (;;)
	{
		int			rc;

		ResetLatch(MyLatch);
		LWLockAcquire(&RaftpgShmem->lock, LW_SHARED);
		r = RaftpgShmem->replies[procno];
		LWLockRelease(&RaftpgShmem->lock);
		if (r.seq == req->seq)
			break;
		if (RaftpgRemainingMs(deadline) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_TRANSACTION_RESOLUTION_UNKNOWN),
					 errmsg("the raftpg node worker did not answer within raftpg.commit_timeout"),
					 errhint("Check the server log and raftpg.status().")));
		rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					   Min(RaftpgRemainingMs(deadline), 1000), PG_WAIT_EXTENSION);
		(void) rc;
		CHECK_FOR_INTERRUPTS();
	}
	return r;
}

/* turn a refusal of the worker into the error a user should see */
void
RaftpgReportRefusal(int rc, const char *what)
{
	switch (rc)
	{
		case RAFT_OK:
			return;
		case RAFT_ENOTLEADER:
			RaftpgRequireLeader();
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("this node is not the leader of the raftpg cluster")));
			break;
		case RAFT_EBUSY:
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot %s: a membership change or leadership transfer is in progress", what),
					 errhint("Wait until it completes (see raftpg.status() and raftpg.nodes), then try again.")));
			break;
		case RAFT_ENOTREADY:
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot %s: the new leader has not committed an entry of its term yet", what),
					 errhint("Try again in a moment.")));
			break;
		case RAFT_EBADCONFIG:
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot %s: the cluster would be left without a voter", what),
					 errhint("Add another voting node first.")));
			break;
		case RAFT_EDUPLICATE:
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("cannot %s: a node with that id or name is already a member", what)));
			break;
		case RAFT_ENOTFOUND:
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("cannot %s: no such member", what)));
			break;
		case RAFT_ETOOBIG:
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("cannot %s: %s", what, raft_strerror(rc))));
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("cannot %s: %s", what, raft_strerror(rc))));
	}
}

/*
 * Wait until the entry (index, term) this node proposed as leader is
 * committed.  It is, once the commit index reaches it while the term is
 * unchanged (a leader never overwrites its own entries).  If the term moves
 * first, the entry may or may not commit later: the outcome is unknown, and
 * so is it after raftpg.commit_timeout.
 */
static void
wait_commit(uint64 index, uint64 term, const char *what)
{
	TimestampTz deadline =
		TimestampTzPlusMilliseconds(GetCurrentTimestamp(), raftpg_commit_timeout);

	ConditionVariablePrepareToSleep(&RaftpgShmem->cv);
	for (;;)
	{
		RaftpgNodeStatus st = RaftpgReadStatus();

		if (st.term == term && st.commit_index >= index)
			break;
		if (st.term != term)
		{
			ConditionVariableCancelSleep();
			ereport(ERROR,
					(errcode(ERRCODE_TRANSACTION_RESOLUTION_UNKNOWN),
					 errmsg("leadership changed before %s was committed", what),
					 errdetail("It was log entry " UINT64_FORMAT " of term " UINT64_FORMAT "; it may still be committed by the new leader.",
							   index, term),
					 errhint("Check raftpg.status() and raftpg.nodes for the outcome.")));
		}
		if (RaftpgRemainingMs(deadline) == 0)
		{
			ConditionVariableCancelSleep();
			ereport(ERROR,
					(errcode(ERRCODE_TRANSACTION_RESOLUTION_UNKNOWN),
					 errmsg("%s was not committed within raftpg.commit_timeout", what),
					 errdetail("It is log entry " UINT64_FORMAT " of term " UINT64_FORMAT "; it may still be committed.",
							   index, term),
					 errhint("Check that a majority of the nodes is reachable (raftpg.nodes).")));
		}
		wait_step(deadline, 1000);
	}
	ConditionVariableCancelSleep();
}

/* the member called name, or an error */
static RaftpgMember
member_by_name(const char *name)
{
	RaftpgMember m;

	if (!RaftpgFindMember(0, name, &m))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("node \"%s\" is not a member of the cluster", name)));
	return m;
}

/*
 * Ask the worker for a membership change and wait until it is committed.
 * what names it in errors ("add the node").
 */
static void
change_membership(RaftpgRequestKind kind, uint64 id, const char *name,
				  const char *conninfo, const char *what)
{
	RaftpgRequest req;
	RaftpgMemberArgs args;
	RaftpgReply r;

	memset(&req, 0, sizeof(req));
	memset(&args, 0, sizeof(args));
	req.kind = kind;
	req.id = id;
	if (name)
		strlcpy(args.name, name, sizeof(args.name));
	if (conninfo)
		strlcpy(args.conninfo, conninfo, sizeof(args.conninfo));
	r = RaftpgSubmit(&req, &args, sizeof(args));
	RaftpgReportRefusal(r.rc, what);
	wait_commit(r.index, r.term, psprintf("the change (%s)", what));
}

static void
check_node_name(const char *name)
{
	const char *p;

	if (name[0] == '\0' || strlen(name) >= RAFTPG_NAME_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid node name \"%s\"", name),
				 errdetail("A node name must be 1 to %d bytes long.", RAFTPG_NAME_LEN - 1)));
	for (p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' || *p == '.'))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid node name \"%s\"", name),
					 errdetail("A node name may contain only ASCII letters, digits, \"_\", \"-\" and \".\".")));
}

static void
check_conninfo(const char *conninfo)
{
	char	   *err;

	if (strlen(conninfo) >= RAFTPG_CONNINFO_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("conninfo is too long"),
				 errdetail("At most %d bytes are allowed.", RAFTPG_CONNINFO_LEN - 1)));
	err = TransportCheckConninfo(conninfo);
	if (err)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid conninfo \"%s\"", conninfo),
				 errdetail("%s", err)));
}

/* ----------
 * raftpg.create_cluster(conninfo text)
 * ----------
 */
PG_FUNCTION_INFO_V1(raftpg_create_cluster);

Datum
raftpg_create_cluster(PG_FUNCTION_ARGS)
{
	char	   *conninfo = text_to_cstring(PG_GETARG_TEXT_PP(0));
	RaftpgStateRow st;
	raft_server self;
	raft_config c;
	raft_entry	e;
	int			rc;
	uint64		cluster_id;
	Latch	   *latch;

	RaftpgCheckPreloaded();
	RaftpgRequireSuperuser("raftpg.create_cluster()");
	RaftpgRequireRaftpgDatabase();
	if (raftpg_node_name == NULL || raftpg_node_name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("raftpg.node_name is not set"),
				 errhint("Set raftpg.node_name in postgresql.conf and restart the server.")));
	check_conninfo(conninfo);
	if (!StorageResolve())
		elog(ERROR, "raftpg tables are missing");
	StorageReadState(&st);
	if (st.node_id != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this server is already a member of a raftpg cluster"),
				 errhint("See raftpg.status(); to start over, drop and create the extension again.")));

	/* a random, non-zero cluster id keeps other clusters' messages out */
	do
	{
		if (!pg_strong_random(&cluster_id, sizeof(cluster_id)))
			elog(ERROR, "could not generate a random cluster id");
		cluster_id &= PG_INT64_MAX;
	} while (cluster_id == 0);

	self.id = 1;
	self.role = RAFT_VOTER;
	self.name = raftpg_node_name;
	self.address = conninfo;
	c.n = 1;
	c.servers = &self;
	rc = raft_bootstrap_entry(&c, &e);
	if (rc != RAFT_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot create the cluster: %s", raft_strerror(rc))));
	StorageAppendEntry(&e);
	raft_free(e.data);

	st.node_id = 1;
	st.cluster_id = (int64) cluster_id;
	st.hs.term = 1;
	st.hs.vote = 0;
	st.hs.commit = 0;
	st.last_log_index = 1;
	st.last_log_term = 1;
	StorageWriteState(&st, &c, 1);

	/* the worker picks the cluster up once this transaction commits */
	LWLockAcquire(&RaftpgShmem->lock, LW_SHARED);
	latch = RaftpgShmem->worker_latch;
	LWLockRelease(&RaftpgShmem->lock);
	if (latch)
		SetLatch(latch);
	PG_RETURN_VOID();
}

/* ----------
 * raftpg.prepare_join(cluster_id bigint, node_id bigint, node_name text,
 *					   members bytea)
 *
 * Runs on a server about to be added, called by the leader's add_node():
 * checks the name, records the id it will have and the current members,
 * whom it must be able to answer before its log tells it about them.
 * ----------
 */
/*
 * The node worker may still run the node this server was before its
 * extension was re-created: it looks at the tables once a second.  Until
 * it lets go, it would answer the leader for the log it had -- and a node
 * removed and added back gets its old id again, so the leader would
 * believe it.  Have it look now, and wait.
 */
static void
wait_worker_let_go(const char *name)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   raftpg_commit_timeout);

	ConditionVariablePrepareToSleep(&RaftpgShmem->cv);
	for (;;)
	{
		bool		held;
		Latch	   *latch;

		LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
		held = RaftpgShmem->cluster_id != 0;
		if (held)
			RaftpgShmem->check_tables = true;
		latch = RaftpgShmem->worker_latch;
		LWLockRelease(&RaftpgShmem->lock);
		if (!held)
			break;
		if (RaftpgRemainingMs(deadline) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the node worker of node \"%s\" still runs its earlier membership", name),
					 errhint("Check the server log of node \"%s\", and add it again.", name)));
		if (latch)
			SetLatch(latch);
		wait_step(deadline, 100);
	}
	ConditionVariableCancelSleep();
}

PG_FUNCTION_INFO_V1(raftpg_prepare_join);

Datum
raftpg_prepare_join(PG_FUNCTION_ARGS)
{
	int64		cluster_id = PG_GETARG_INT64(0);
	int64		node_id = PG_GETARG_INT64(1);
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(2));
	bytea	   *contacts = PG_GETARG_BYTEA_PP(3);
	raft_config c;
	int			rc;
	RaftpgStateRow st;
	Latch	   *latch;

	RaftpgCheckPreloaded();
	RaftpgRequireSuperuser("raftpg.prepare_join()");
	RaftpgRequireRaftpgDatabase();
	if (raftpg_node_name == NULL || strcmp(raftpg_node_name, name) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("this server is node \"%s\", not \"%s\"",
						raftpg_node_name ? raftpg_node_name : "", name),
				 errhint("Pass the name set in raftpg.node_name on that server.")));
	if (!StorageResolve())
		elog(ERROR, "raftpg tables are missing");
	StorageReadState(&st);
	if (st.node_id == node_id && st.cluster_id == cluster_id)
		PG_RETURN_VOID();		/* a retried add_node */
	if (st.node_id != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("node \"%s\" is already a member of a raftpg cluster", name),
				 errhint("Remove it from its cluster and re-create the extension on it first.")));
	rc = raft_decode_config((const uint8_t *) VARDATA_ANY(contacts),
							VARSIZE_ANY_EXHDR(contacts), &c);
	if (rc != RAFT_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid member list: %s", raft_strerror(rc))));
	wait_worker_let_go(name);
	st.node_id = node_id;
	st.cluster_id = cluster_id;
	/* until its log arrives, these are the members it can answer */
	StorageWriteState(&st, &c, 0);
	raft_config_free(&c);

	LWLockAcquire(&RaftpgShmem->lock, LW_SHARED);
	latch = RaftpgShmem->worker_latch;
	LWLockRelease(&RaftpgShmem->lock);
	if (latch)
		SetLatch(latch);
	PG_RETURN_VOID();
}

/*
 * Connect to the server at conninfo (node name), waiting interruptibly
 * until deadline; an error if that fails.  The caller PQfinish()es it.
 */
PGconn *
RaftpgRemoteConnect(const char *name, const char *conninfo, TimestampTz deadline)
{
	PGconn	   *conn;
	volatile PostgresPollingStatusType ps = PGRES_POLLING_WRITING;

	conn = TransportConnectStart(conninfo);
	if (conn == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid conninfo \"%s\"", conninfo)));
	PG_TRY();
	{
		while (PQstatus(conn) != CONNECTION_BAD && ps != PGRES_POLLING_OK)
		{
			int			ev = ps == PGRES_POLLING_READING ? WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE;

			if (RaftpgRemainingMs(deadline) == 0)
				break;
			(void) WaitLatchOrSocket(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH | ev,
									 PQsocket(conn), RaftpgRemainingMs(deadline), PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			ps = PQconnectPoll(conn);
			if (ps == PGRES_POLLING_FAILED)
				break;
		}
		if (PQstatus(conn) != CONNECTION_OK)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not connect to node \"%s\" at \"%s\"", name, conninfo),
					 errdetail("%s", pchomp(PQerrorMessage(conn)))));
	}
	PG_CATCH();
	{
		PQfinish(conn);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return conn;
}

/*
 * Wait interruptibly until deadline for input on conn and read it; an
 * error if the deadline passes or the connection breaks.
 */
void
RaftpgRemoteWait(PGconn *conn, const char *name, TimestampTz deadline)
{
	int			rc;

	if (RaftpgRemainingMs(deadline) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("node \"%s\" did not answer in time", name)));
	rc = WaitLatchOrSocket(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH | WL_SOCKET_READABLE,
						   PQsocket(conn), RaftpgRemainingMs(deadline), PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	if ((rc & (WL_TIMEOUT | WL_SOCKET_READABLE | WL_LATCH_SET)) == WL_TIMEOUT)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("node \"%s\" did not answer in time", name)));
	CHECK_FOR_INTERRUPTS();
	if (PQconsumeInput(conn) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("lost the connection to node \"%s\"", name),
				 errdetail("%s", pchomp(PQerrorMessage(conn)))));
}

/*
 * Run sql on conn (with text parameters, or several statements if
 * nparams is 0), waiting interruptibly until deadline, and return its last
 * result: rows, a command's completion or the start of a COPY TO STDOUT.
 * An error there is raised here with its SQLSTATE, as "node "name"
 * <refusal>: message".  The caller PQclear()s the result.
 */
PGresult *
RaftpgRemoteExec(PGconn *conn, const char *name, const char *sql, int nparams,
				 const char *const *values, const char *refusal,
				 TimestampTz deadline)
{
	PGresult   *res;
	PGresult   *volatile last = NULL;
	ExecStatusType status;
	int			ok;

	ok = nparams > 0 ?
		PQsendQueryParams(conn, sql, nparams, NULL, values, NULL, NULL, 0) :
		PQsendQuery(conn, sql);
	if (ok != 1)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not send a request to node \"%s\"", name),
				 errdetail("%s", pchomp(PQerrorMessage(conn)))));
	PG_TRY();
	{
		for (;;)
		{
			while (PQisBusy(conn))
				RaftpgRemoteWait(conn, name, deadline);
			res = PQgetResult(conn);
			if (res == NULL)
				break;
			if (last)
				PQclear(last);
			last = res;
			/* COPY OUT: the data follows, the result after it */
			if (PQresultStatus(res) == PGRES_COPY_OUT)
				break;
		}
	}
	PG_CATCH();
	{
		if (last)
			PQclear(last);
		PG_RE_THROW();
	}
	PG_END_TRY();
	status = last ? PQresultStatus(last) : PGRES_FATAL_ERROR;
	if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK &&
		status != PGRES_COPY_OUT)
	{
		const char *state = last ? PQresultErrorField(last, PG_DIAG_SQLSTATE) : NULL;
		const char *primary = last ? PQresultErrorField(last, PG_DIAG_MESSAGE_PRIMARY) : NULL;
		char	   *msg = pstrdup(primary ? primary :
								  last ? pchomp(PQresultErrorMessage(last)) : "no result");
		const char *detail = last ? PQresultErrorField(last, PG_DIAG_MESSAGE_DETAIL) : NULL;
		char	   *detailc = detail ? pstrdup(detail) : NULL;
		const char *hint = last ? PQresultErrorField(last, PG_DIAG_MESSAGE_HINT) : NULL;
		char	   *hintc = hint ? pstrdup(hint) : NULL;
		int			code = state && strlen(state) == 5 ?
			MAKE_SQLSTATE(state[0], state[1], state[2], state[3], state[4]) :
			ERRCODE_CONNECTION_FAILURE;

		if (last)
			PQclear(last);
		ereport(ERROR,
				(errcode(code),
				 errmsg("node \"%s\" %s: %s", name, refusal, msg),
				 detailc ? errdetail("%s", detailc) : 0,
				 hintc ? errhint("%s", hintc) : 0));
	}
	return last;
}

/*
 * Run one query with text parameters on the server at conninfo (node
 * name), waiting interruptibly until deadline, and return the first
 * column of its first row (NULL if none or null).  An error there is
 * raised here with its SQLSTATE, as "node "name" <refusal>: message".
 */
char *
RaftpgRemoteCall(const char *name, const char *conninfo, const char *sql,
				 int nparams, const char *const *values, const char *refusal,
				 TimestampTz deadline)
{
	PGconn	   *volatile conn = NULL;
	char	   *volatile result = NULL;

	conn = RaftpgRemoteConnect(name, conninfo, deadline);
	PG_TRY();
	{
		PGresult   *last = RaftpgRemoteExec(conn, name, sql, nparams, values,
											refusal, deadline);

		if (PQresultStatus(last) == PGRES_TUPLES_OK && PQntuples(last) > 0 &&
			PQnfields(last) > 0 && !PQgetisnull(last, 0, 0))
			result = pstrdup(PQgetvalue(last, 0, 0));
		PQclear(last);
	}
	PG_CATCH();
	{
		PQfinish(conn);
		PG_RE_THROW();
	}
	PG_END_TRY();
	PQfinish(conn);
	return result;
}

/* Run "SELECT raftpg.prepare_join(...)" on the server being added. */
static void
remote_prepare_join(const char *conninfo, uint64 cluster_id, uint64 node_id,
					const char *name, const char *members_hex)
{
	char		cid[32],
				nid[32];
	const char *values[4];

	snprintf(cid, sizeof(cid), UINT64_FORMAT, cluster_id);
	snprintf(nid, sizeof(nid), UINT64_FORMAT, node_id);
	values[0] = cid;
	values[1] = nid;
	values[2] = name;
	values[3] = members_hex;
	(void) RaftpgRemoteCall(name, conninfo,
							"SELECT raftpg.prepare_join($1, $2, $3, $4)",
							4, values, "refused to join",
							TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														raftpg_commit_timeout));
}

/* the current members, encoded as a configuration, in bytea's hex format */
static char *
members_as_hex(void)
{
	RaftpgMember *members = palloc(sizeof(RaftpgMember) * RAFT_MAX_SERVERS);
	raft_server *servers = palloc(sizeof(raft_server) * RAFT_MAX_SERVERS);
	raft_config c;
	int			n;
	int			i;
	size_t		size;
	size_t		len;
	uint8	   *buf;
	char	   *hex;

	LWLockAcquire(&RaftpgShmem->lock, LW_SHARED);
	n = RaftpgShmem->n_members;
	memcpy(members, RaftpgShmem->members, sizeof(RaftpgMember) * n);
	LWLockRelease(&RaftpgShmem->lock);
	for (i = 0; i < n; i++)
	{
		servers[i].id = members[i].id;
		servers[i].role = members[i].voter ? RAFT_VOTER : RAFT_LEARNER;
		servers[i].name = members[i].name;
		servers[i].address = members[i].conninfo;
	}
	c.n = (uint32) n;
	c.servers = servers;
	size = raft_config_encoded_size(&c);
	buf = palloc(size);
	if (raft_encode_config(&c, buf, size, &len) != RAFT_OK)
		elog(ERROR, "raftpg: cannot encode the member list");
	hex = palloc(len * 2 + 3);
	hex[0] = '\\';
	hex[1] = 'x';
	hex_encode((const char *) buf, len, hex + 2);
	hex[len * 2 + 2] = '\0';
	return hex;
}

/* ----------
 * raftpg.add_node(node_name text, conninfo text, voter boolean DEFAULT true)
 * ----------
 */
PG_FUNCTION_INFO_V1(raftpg_add_node);

Datum
raftpg_add_node(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *conninfo = text_to_cstring(PG_GETARG_TEXT_PP(1));
	bool		voter = PG_GETARG_BOOL(2);
	RaftpgMember m;
	uint64		id = 0;
	uint64		cluster_id;
	int			i;
	TimestampTz deadline;

	RaftpgCheckPreloaded();
	RaftpgRequireSuperuser("raftpg.add_node()");
	check_node_name(name);
	check_conninfo(conninfo);
	RaftpgRequireLeader();
	if (RaftpgFindMember(0, name, &m))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("node \"%s\" is already a member of the cluster", name)));

	LWLockAcquire(&RaftpgShmem->lock, LW_SHARED);
	cluster_id = RaftpgShmem->cluster_id;
	for (i = 0; i < RaftpgShmem->n_members; i++)
	{
		id = Max(id, RaftpgShmem->members[i].id);
		if (strcmp(RaftpgShmem->members[i].conninfo, conninfo) == 0)
		{
			char		other[RAFTPG_NAME_LEN];

			strlcpy(other, RaftpgShmem->members[i].name, sizeof(other));
			LWLockRelease(&RaftpgShmem->lock);
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("node \"%s\" already uses conninfo \"%s\"", other, conninfo)));
		}
	}
	LWLockRelease(&RaftpgShmem->lock);
	id++;

	/* the new server checks its name and records its id */
	remote_prepare_join(conninfo, cluster_id, id, name, members_as_hex());

	change_membership(RAFTPG_REQ_ADD, id, name, conninfo, "add the node");

	if (!voter)
		PG_RETURN_VOID();

	/* a learner first: promote it once it has caught up (4.2.1) */
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), raftpg_commit_timeout);
	ConditionVariablePrepareToSleep(&RaftpgShmem->cv);
	for (;;)
	{
		RaftpgNodeStatus st = RaftpgReadStatus();

		if (!RaftpgFindMember(id, NULL, &m))
		{
			ConditionVariableCancelSleep();
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("node \"%s\" left the configuration before it was promoted", name)));
		}
		if (m.progress_known && m.match_index >= st.commit_index)
			break;
		if (st.role != RAFTPG_ROLE_LEADER)
		{
			ConditionVariableCancelSleep();
			RaftpgRequireLeader();
		}
		if (RaftpgRemainingMs(deadline) == 0)
		{
			ConditionVariableCancelSleep();
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("node \"%s\" joined as a learner but did not catch up within raftpg.commit_timeout", name),
					 errhint("Check that the leader can reach it at \"%s\"; promote it later by calling raftpg.add_node() again is not possible, remove and add it instead.", conninfo)));
		}
		wait_step(deadline, 100);
	}
	ConditionVariableCancelSleep();

	change_membership(RAFTPG_REQ_PROMOTE, id, NULL, NULL, "promote the node");
	PG_RETURN_VOID();
}

/* ----------
 * raftpg.remove_node(node_name text)
 * ----------
 */
PG_FUNCTION_INFO_V1(raftpg_remove_node);

Datum
raftpg_remove_node(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));

	RaftpgCheckPreloaded();
	RaftpgRequireSuperuser("raftpg.remove_node()");
	RaftpgRequireLeader();
	change_membership(RAFTPG_REQ_REMOVE, member_by_name(name).id, NULL, NULL,
					  "remove the node");
	PG_RETURN_VOID();
}

/* ----------
 * raftpg.transfer_leadership(node_name text DEFAULT NULL)
 * ----------
 */
PG_FUNCTION_INFO_V1(raftpg_transfer_leadership);

Datum
raftpg_transfer_leadership(PG_FUNCTION_ARGS)
{
	RaftpgRequest req;
	RaftpgReply r;
	RaftpgMember m;
	TimestampTz deadline;
	uint64		self;
	bool		seen_transfer = false;
	char	   *name = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));

	RaftpgCheckPreloaded();
	RaftpgRequireSuperuser("raftpg.transfer_leadership()");
	RaftpgRequireLeader();
	memset(&req, 0, sizeof(req));
	req.kind = RAFTPG_REQ_TRANSFER;
	if (name)
	{
		m = member_by_name(name);
		if (!m.voter)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("node \"%s\" is a learner and cannot lead", name)));
		req.id = m.id;
	}
	self = RaftpgReadStatus().node_id;
	if (req.id == self)
		PG_RETURN_VOID();		/* already the leader */
	r = RaftpgSubmit(&req, NULL, 0);
	RaftpgReportRefusal(r.rc, "transfer leadership");

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), raftpg_commit_timeout);
	ConditionVariablePrepareToSleep(&RaftpgShmem->cv);
	for (;;)
	{
		RaftpgNodeStatus st = RaftpgReadStatus();

		if (st.leader_id != 0 && st.leader_id != self)
		{
			ConditionVariableCancelSleep();
			if (req.id != 0 && st.leader_id != req.id)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("another node than \"%s\" became the leader", name)));
			break;
		}
		/* the worker publishes after answering: see the transfer start */
		if (st.transferring)
			seen_transfer = true;
		if (seen_transfer && st.role == RAFTPG_ROLE_LEADER && !st.transferring)
		{
			ConditionVariableCancelSleep();
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the leadership transfer did not complete within an election timeout"),
					 errhint("The target must be reachable and able to catch up; see raftpg.nodes.")));
		}
		if (RaftpgRemainingMs(deadline) == 0)
		{
			ConditionVariableCancelSleep();
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("no new leader emerged within raftpg.commit_timeout")));
		}
		wait_step(deadline, 100);
	}
	PG_RETURN_VOID();
}

/* ----------
 * raftpg.propose(payload bytea) -> bigint: append an entry (tests)
 * ----------
 */
PG_FUNCTION_INFO_V1(raftpg_propose);

Datum
raftpg_propose(PG_FUNCTION_ARGS)
{
	bytea	   *payload = PG_GETARG_BYTEA_PP(0);
	RaftpgRequest req;
	RaftpgReply r;
	char	   *body;

	RaftpgCheckPreloaded();
	RaftpgRequireSuperuser("raftpg.propose()");
	RaftpgRequireLeader();
	memset(&req, 0, sizeof(req));
	req.kind = RAFTPG_REQ_PROPOSE;
	/* an opaque entry: the kind byte, then the caller's bytes */
	body = palloc(VARSIZE_ANY_EXHDR(payload) + 1);
	body[0] = RAFTPG_PAYLOAD_OPAQUE;
	memcpy(body + 1, VARDATA_ANY(payload), VARSIZE_ANY_EXHDR(payload));
	r = RaftpgSubmit(&req, body, VARSIZE_ANY_EXHDR(payload) + 1);
	RaftpgReportRefusal(r.rc, "append the entry");
	wait_commit(r.index, r.term, "the entry");
	PG_RETURN_INT64((int64) r.index);
}

/* ----------
 * raftpg.inject_fault(point text, times integer DEFAULT 1)
 * ----------
 */
PG_FUNCTION_INFO_V1(raftpg_inject_fault);

Datum
raftpg_inject_fault(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int32		times = PG_GETARG_INT32(1);
	RaftpgFaultPoint point = RaftpgFaultByName(name);

	RaftpgCheckPreloaded();
	RaftpgRequireSuperuser("raftpg.inject_fault()");
	if (point == RAFTPG_FAULT_NONE && strcmp(name, "none") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown fault point \"%s\"", name),
				 errhint("Use after_entries, config, after_state, before_commit or none.")));
	if (times < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("times must not be negative")));
	LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
	RaftpgShmem->fault_point = times > 0 ? point : RAFTPG_FAULT_NONE;
	RaftpgShmem->fault_remaining = times;
	LWLockRelease(&RaftpgShmem->lock);
	PG_RETURN_VOID();
}

/* ----------
 * raftpg.nodes(): every member as this node sees it
 * ----------
 */
PG_FUNCTION_INFO_V1(raftpg_nodes);

Datum
raftpg_nodes(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RaftpgMember *members;
	int			n;
	int			i;
	RaftpgNodeStatus st;

	RaftpgCheckPreloaded();
	InitMaterializedSRF(fcinfo, 0);

	members = palloc(sizeof(RaftpgMember) * RAFT_MAX_SERVERS);
	LWLockAcquire(&RaftpgShmem->lock, LW_SHARED);
	n = RaftpgShmem->status.role == RAFTPG_ROLE_UNCONFIGURED ? 0 : RaftpgShmem->n_members;
	memcpy(members, RaftpgShmem->members, sizeof(RaftpgMember) * n);
	st = RaftpgShmem->status;
	LWLockRelease(&RaftpgShmem->lock);

	for (i = 0; i < n; i++)
	{
		Datum		values[10];
		bool		nulls[10];
		RaftpgMember *m = &members[i];
		bool		self = m->id == st.node_id;

		memset(nulls, 0, sizeof(nulls));
		values[0] = CStringGetTextDatum(m->name);
		values[1] = Int64GetDatum((int64) m->id);
		values[2] = CStringGetTextDatum(m->conninfo);
		values[3] = CStringGetTextDatum(m->voter ? "voter" : "learner");
		values[4] = BoolGetDatum(m->id == st.leader_id);
		values[5] = BoolGetDatum(self);
		values[6] = BoolGetDatum(m->reachable);
		if (self && st.role == RAFTPG_ROLE_LEADER)
		{
			values[7] = Int64GetDatum((int64) st.last_log_index);
			values[8] = Int64GetDatum(0);
			nulls[9] = true;
		}
		else if (m->progress_known)
		{
			values[7] = Int64GetDatum((int64) m->match_index);
			values[8] = Int64GetDatum((int64) (st.last_log_index > m->match_index ?
											   st.last_log_index - m->match_index : 0));
			values[9] = TimestampTzGetDatum(m->last_contact);
		}
		else
		{
			nulls[7] = nulls[8] = nulls[9] = true;
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* ----------
 * raftpg.stats(): cumulative counters
 * ----------
 */
PG_FUNCTION_INFO_V1(raftpg_stats);

Datum
raftpg_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	RaftpgStats s;
	uint64		commits;
	uint64		commits_async;
	uint64		applied_entries;
	Datum		values[22];
	bool		nulls[22];
	int			i = 0;

	RaftpgCheckPreloaded();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	LWLockAcquire(&RaftpgShmem->lock, LW_SHARED);
	s = RaftpgShmem->stats;
	commits = RaftpgShmem->replicated_commits;
	commits_async = RaftpgShmem->replicated_commits_async;
	applied_entries = RaftpgShmem->applied_txns;
	LWLockRelease(&RaftpgShmem->lock);
	memset(nulls, 0, sizeof(nulls));
	values[i++] = Int64GetDatum((int64) s.elections);
	values[i++] = Int64GetDatum((int64) s.leader_changes);
	values[i++] = Int64GetDatum((int64) s.messages_in);
	values[i++] = Int64GetDatum((int64) s.messages_out);
	values[i++] = Int64GetDatum((int64) s.bytes_in);
	values[i++] = Int64GetDatum((int64) s.bytes_out);
	values[i++] = Int64GetDatum((int64) s.messages_dropped);
	values[i++] = Int64GetDatum((int64) s.messages_malformed);
	values[i++] = Int64GetDatum((int64) s.entries_refused);
	values[i++] = Int64GetDatum((int64) s.appends);
	values[i++] = Int64GetDatum((int64) s.entries_appended);
	values[i++] = Int64GetDatum((int64) s.persist_failures);
	values[i++] = Int64GetDatum((int64) s.append_rejects_received);
	values[i++] = Int64GetDatum((int64) commits);
	values[i++] = Int64GetDatum((int64) commits_async);
	values[i++] = Int64GetDatum((int64) applied_entries);
	values[i++] = Int64GetDatum((int64) s.worker_passes);
	values[i++] = Int64GetDatum((int64) s.socket_reads_empty);
	values[i++] = Int64GetDatum((int64) s.entries_in_memory);
	values[i++] = Int64GetDatum((int64) s.entries_fetched);
	values[i++] = Int64GetDatum((int64) s.entries_compacted);
	values[i++] = Int64GetDatum((int64) s.snapshots_installed);
	Assert(i == tupdesc->natts);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
