/*-------------------------------------------------------------------------
 *
 * raftpg.h
 *	  Declarations shared by the PostgreSQL side of raftpg.
 *
 * This header owns the one piece of state every raftpg process can see:
 * the shared-memory struct RaftpgShared.  The node worker is its only
 * writer; SQL functions read it to answer raftpg.status().  The struct
 * embeds its own LWLock, which protects every other field.
 *
 * What the struct shows about the cluster (role, term, leader, indexes) is
 * a copy of what the node worker has made durable, taken after the commit
 * that made it so, never before (see DESIGN.md, "the one invariant").  Until
 * the consensus node exists it stays zero: role "unconfigured", no leader,
 * every index 0.
 *
 * To extend the shared state, add fields to RaftpgNodeStatus when
 * raftpg.status() or a view should show them, or to RaftpgShared when they
 * are private to the worker's protocol, and grow RaftpgShmemSize() if the
 * addition is variable-sized.
 *
 * The consensus core (src/raft) is pure C99 and never includes this file,
 * nor anything from PostgreSQL.
 *
 * src/raftpg.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef RAFTPG_H
#define RAFTPG_H

#include "fmgr.h"
#include "access/transam.h"
#include "storage/condition_variable.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"

#include "raft.h"

/* Longest node name, terminator included; names go into fixed-size slots. */
#define RAFTPG_NAME_LEN		NAMEDATALEN
/* Longest conninfo kept in shared memory, terminator included. */
#define RAFTPG_CONNINFO_LEN	(RAFT_MAX_ADDRESS + 1)

/* The node's role in the cluster, as raftpg.status() reports it. */
typedef enum RaftpgRole
{
	RAFTPG_ROLE_UNCONFIGURED = 0,	/* no cluster yet: the zeroed state */
	RAFTPG_ROLE_FOLLOWER,
	RAFTPG_ROLE_CANDIDATE,
	RAFTPG_ROLE_LEADER
} RaftpgRole;

/*
 * What raftpg.status() shows.  Kept as one struct so that a reader copies a
 * consistent snapshot of it under the lock in one assignment.
 */
typedef struct RaftpgNodeStatus
{
	RaftpgRole	role;
	bool		voter;			/* a voting member (not a learner) */
	uint64		node_id;		/* this node's id, 0 before it joins */
	uint64		term;			/* current term */
	uint64		leader_id;
	/* the leader's node name, "" while no leader is known */
	char		leader_name[RAFTPG_NAME_LEN];
	uint64		last_log_index; /* last entry durable in raftpg's log */
	uint64		last_log_term;
	uint64		commit_index;	/* highest index known committed */
	uint64		applied_index;	/* highest index applied locally */
	uint64		config_index;	/* index of the current configuration */
	bool		transferring;	/* leader: a leadership transfer is on */
} RaftpgNodeStatus;

/* One member of the configuration, as raftpg.nodes shows it. */
typedef struct RaftpgMember
{
	uint64		id;
	bool		voter;
	bool		reachable;		/* self, or a live connection from us */
	bool		progress_known; /* leader only: match and contact below */
	uint64		match_index;
	TimestampTz last_contact;
	char		name[RAFTPG_NAME_LEN];
	char		conninfo[RAFTPG_CONNINFO_LEN];
} RaftpgMember;

/* Cumulative counters, as raftpg.stats shows them (since server start). */
typedef struct RaftpgStats
{
	uint64		elections;		/* campaigns this node started */
	uint64		leader_changes; /* times this node saw a new leader */
	uint64		messages_in;
	uint64		messages_out;
	uint64		bytes_in;
	uint64		bytes_out;
	uint64		messages_dropped;	/* inbox full, peer not connected */
	uint64		messages_malformed;
	uint64		entries_refused;	/* APPENDs refused by validation */
	uint64		appends;		/* persistence transactions committed */
	uint64		entries_appended;
	uint64		persist_failures;	/* persistence transactions aborted */
	uint64		append_rejects_received;	/* leader: refusals from peers */
	uint64		worker_passes;	/* rounds of the node worker's event loop */
	uint64		socket_reads_empty; /* reads of a peer's socket that found
									 * nothing */
	uint64		entries_in_memory;	/* the core's copy of the log, now */
	uint64		entries_fetched;	/* read back from raftpg.log for peers */
	uint64		entries_compacted;	/* deleted from raftpg.log */
	uint64		snapshots_installed;
} RaftpgStats;

/* Where a persistence can be made to fail (raftpg.inject_fault). */
typedef enum RaftpgFaultPoint
{
	RAFTPG_FAULT_NONE = 0,
	RAFTPG_FAULT_AFTER_ENTRIES, /* entries written, state row not yet */
	RAFTPG_FAULT_CONFIG,		/* while processing a configuration entry */
	RAFTPG_FAULT_AFTER_STATE,	/* state row written */
	RAFTPG_FAULT_BEFORE_COMMIT, /* everything written, not committed */
	RAFTPG_FAULT_LAST
} RaftpgFaultPoint;

/* What a backend asks of the node worker. */
typedef enum RaftpgRequestKind
{
	RAFTPG_REQ_PROPOSE = 1,		/* body: the entry's payload */
	RAFTPG_REQ_ADD,				/* id, name, conninfo */
	RAFTPG_REQ_PROMOTE,			/* id */
	RAFTPG_REQ_REMOVE,			/* id */
	RAFTPG_REQ_TRANSFER,		/* id, or 0 for any */
	RAFTPG_REQ_PROPOSE_TXN,		/* body: u32 n, then n x (u32 len, bytes);
								 * refused unless leader in term id */
	RAFTPG_REQ_READ_INDEX		/* a linearizable read point: the reply's
								 * index, once a quorum confirmed it */
} RaftpgRequestKind;

/*
 * The first byte of every normal entry's payload says what it carries.
 * Opaque entries (raftpg.propose()) are skipped by apply.
 */
#define RAFTPG_PAYLOAD_OPAQUE	0
#define RAFTPG_PAYLOAD_TXN		1	/* a chunk of a transaction (changes.h) */

/* the mailbox backends hand requests to the node worker through */
#define RAFTPG_REQUEST_MAILBOX_SIZE	(16 * 1024 * 1024)
/* the largest body a request carries in the mailbox; larger ones go by DSM */
#define RAFTPG_MAX_INLINE_BODY		(1024 * 1024)

typedef struct RaftpgRequest
{
	int32		kind;			/* RaftpgRequestKind */
	int32		procno;			/* the asking backend's reply slot */
	uint64		seq;			/* matches the reply to the request */
	uint64		id;
	dsm_handle	dsm;			/* PROPOSE_TXN: the body is in this segment */
	TransactionId xid;			/* PROPOSE_TXN: the slot it must claim */
} RaftpgRequest;

/*
 * The body of an ADD request (the request header stays small: every
 * transaction's proposal copies one through the request mailbox).
 */
typedef struct RaftpgMemberArgs
{
	char		name[RAFTPG_NAME_LEN];
	char		conninfo[RAFTPG_CONNINFO_LEN];
} RaftpgMemberArgs;

/* The worker's answer, in the asking backend's slot. */
typedef struct RaftpgReply
{
	uint64		seq;			/* of the request answered; 0 = none */
	int32		rc;				/* RAFT_OK or a raft error code */
	uint64		index;			/* log index of the new entry */
	uint64		term;			/* its term */
} RaftpgReply;

typedef struct RaftpgMailbox RaftpgMailbox;

/*
 * A backend's replicated commit in flight (capture.c), one slot per
 * backend, protected by RaftpgShared.lock.
 *
 * A backend's slot is WRITING from its first change to a replicated table
 * on (the apply worker of a node that is no longer the leader ends such
 * sessions when they hold up apply: their transactions cannot commit).
 * The backend fills it (PROPOSING, its xid) before handing its changes to
 * the node worker.  The worker proposes them only if it can claim the slot
 * (PROPOSING with that xid -> PROPOSED, then the index of the last entry):
 * a backend that gave up waiting takes the slot back (IDLE), and the
 * outcome is then definite -- nothing will ever be proposed.  While a slot
 * is PROPOSED, the write gate uses it to see a transaction that has ended
 * in the process array without committing, but has not yet closed the
 * gate behind it.  The commit and abort callbacks set it IDLE.
 */
typedef enum RaftpgSlotState
{
	RAFTPG_SLOT_IDLE = 0,
	RAFTPG_SLOT_WRITING,		/* has written replicated tables */
	RAFTPG_SLOT_PROPOSING,
	RAFTPG_SLOT_PROPOSED
} RaftpgSlotState;

typedef struct RaftpgCommitSlot
{
	int32		state;			/* RaftpgSlotState */
	TransactionId xid;
	uint64		index;			/* PROPOSED: last entry, 0 until known */
	uint64		term;			/* PROPOSED: the term it was proposed in */
} RaftpgCommitSlot;

/*
 * Streams read by the node worker itself (transport.c).  A backend running
 * raftpg.stream() may hand its client socket to the node worker, which
 * then reads the peer's messages straight from it: no copy through the
 * inbox, and one process less to wake per message.  The slot says who
 * reads the socket: the backend until the worker took it (OFFERED ->
 * TAKEN), the worker after.  Whichever side ends the stream first says so
 * (CLOSED_BY_*), and the other then lets go of its end; the backend's exit
 * or the worker's frees the slot.
 */
#define RAFTPG_MAX_DIRECT	(2 * RAFT_MAX_SERVERS)

typedef enum RaftpgDirectState
{
	RAFTPG_DIRECT_FREE = 0,
	RAFTPG_DIRECT_OFFERED,		/* socket sent, the worker has not taken it */
	RAFTPG_DIRECT_TAKEN,		/* the worker reads it */
	RAFTPG_DIRECT_CLOSED_BY_WORKER, /* the backend is to end the session */
	RAFTPG_DIRECT_CLOSED_BY_BACKEND /* the worker is to close its end */
} RaftpgDirectState;

typedef struct RaftpgDirectSlot
{
	int32		state;			/* RaftpgDirectState */
	int			procno;			/* the backend's PGPROC, for its latch */
	uint64		serial;			/* names this hand-off */
	uint64		cluster_id;		/* the stream's */
} RaftpgDirectSlot;

typedef struct RaftpgShared
{
	LWLock		lock;			/* protects everything below */

	/*
	 * The node worker, while it runs: 0 and NULL otherwise.  Backends that
	 * hand work to the worker set worker_latch to wake it.
	 */
	pid_t		worker_pid;
	Latch	   *worker_latch;

	uint64		cluster_id;		/* 0 until this node is in a cluster */

	/*
	 * Random, drawn whenever shared memory is created: at server start and
	 * after a crash.  With a transaction's full xid it names that
	 * transaction uniquely for ever (xids of transactions whose WAL a crash
	 * lost are handed out again, but in another incarnation): the key of
	 * raftpg.origin_commits (capture.c, apply.c).
	 */
	uint64		incarnation;

	/*
	 * Origin rows (apply.c, "Origin rows"): origin_gen says which of
	 * raftpg.origin_commits_0 and _1 local transactions insert into; only
	 * the apply worker changes it, and it is read without the lock.
	 * proposed_high is the last log index the node worker handed to a local
	 * transaction in this incarnation; start_term the node's term when its
	 * worker first loaded its state as a member of cluster start_cluster_id
	 * in this incarnation.
	 */
	pg_atomic_uint32 origin_gen;
	uint64		proposed_high;
	uint64		own_rows_until; /* set by snapshot installs (apply.c) */
	uint64		start_term;
	uint64		start_cluster_id;
	bool		start_term_known;
	RaftpgNodeStatus status;
	RaftpgStats stats;
	int			n_members;
	RaftpgMember members[RAFT_MAX_SERVERS];

	/*
	 * The apply worker (apply.c), while it runs, and how far it has
	 * applied the log to the tables: applied_index is a copy of
	 * raftpg.apply_state, taken after the commit that wrote it.
	 */
	pid_t		apply_pid;
	Latch	   *apply_latch;
	uint64		applied_index;

	/*
	 * When the node worker wakes the apply worker: once the committed and
	 * durable log reaches apply_wake_at.  The apply worker sets it under
	 * the lock, in the same hold in which it reads the commit index, to
	 * the next entry when it waits for work and further ahead while it
	 * lingers to gather a batch.  Whoever waits for apply (apply_waiters,
	 * RaftpgWaitApplied()) or raises gate_index sets its latch directly:
	 * then it applies at once.
	 */
	uint64		apply_wake_at;
	uint32		apply_waiters;
	uint64		apply_error_index;	/* entry apply last failed on, 0 if none */
	char		apply_error[256];

	/*
	 * The write gate (capture.c): local transactions may write replicated
	 * tables only while this node is the leader of term ready_term and has
	 * applied everything up to gate_index.  The node worker sets both when
	 * it becomes leader; a transaction whose outcome became unknown raises
	 * gate_index to its entry, so nothing is built on a state that may
	 * lack it.
	 */
	uint64		ready_term;
	uint64		gate_index;
	uint64		fenced_term;	/* no local writes in this term or before */
	uint64		seq_ready_term; /* sequences reserved by this leader (sequences.c) */
	int			active_slots;	/* RaftpgCommitSlots in use */

	/* counters of the commit path and of apply, for raftpg.stats */
	uint64		replicated_commits; /* local commits of replicated changes */
	uint64		replicated_commits_async;	/* ... without a WAL flush */
	uint64		applied_txns;	/* transactions the apply worker applied */

	/*
	 * A snapshot to install (snapshot.c): the node worker asks by raising
	 * snap_req_seq, naming the node to copy from; the apply worker answers
	 * by setting snap_done_seq to it, and snap_ok.  Why it failed is in
	 * the server log.
	 */
	uint64		snap_req_seq;
	uint64		snap_req_index; /* at least this index */
	char		snap_req_name[RAFTPG_NAME_LEN];
	char		snap_req_conninfo[RAFTPG_CONNINFO_LEN];
	uint64		snap_done_seq;
	bool		snap_ok;

	/* look at the tables now, not at the next second (node.c) */
	bool		check_tables;

	/* fault injection, superuser only */
	RaftpgFaultPoint fault_point;
	int			fault_remaining;

	/* streams handed to the node worker */
	bool		direct_accepting;	/* the worker has a core: it takes them */
	uint64		direct_serial;	/* of the last hand-off */
	RaftpgDirectSlot direct[RAFTPG_MAX_DIRECT];

	/* backends wait here for replies and for commit progress */
	ConditionVariable cv;
	uint64		next_seq;
	int			n_replies;
	RaftpgReply replies[FLEXIBLE_ARRAY_MEMBER];	/* one per backend */
} RaftpgShared;

/* raftpg.c */
extern char *raftpg_node_name;
extern char *raftpg_database;
extern int	raftpg_heartbeat_interval;
extern int	raftpg_election_timeout;
extern int	raftpg_commit_timeout;
extern int	raftpg_apply_linger;
extern int	raftpg_log_memory_entries;
extern int	raftpg_log_keep_entries;
extern RaftpgShared *RaftpgShmem;
extern RaftpgMailbox *RaftpgInbox;
extern RaftpgMailbox *RaftpgRequests;
extern RaftpgCommitSlot *RaftpgCommitSlots;	/* MaxBackends of them */

extern void _PG_init(void);
extern Size RaftpgShmemSize(void);
extern void RaftpgCheckPreloaded(void);
extern const char *RaftpgRoleName(RaftpgRole role);
extern bool RaftpgConsumeFault(RaftpgFaultPoint point);
extern const char *RaftpgFaultName(RaftpgFaultPoint point);
extern RaftpgFaultPoint RaftpgFaultByName(const char *name);
extern void RaftpgUseCoreAllocator(void);
extern void *RaftpgCoreAlloc(Size size);
extern void RaftpgAttachWorker(bool apply, pg_on_exit_callback detach);

/* node.c */
extern PGDLLEXPORT void RaftpgNodeMain(Datum main_arg) pg_attribute_noreturn();

/* api.c: talking to the node worker */
extern RaftpgNodeStatus RaftpgReadStatus(void);
extern bool RaftpgFindMember(uint64 id, const char *name, RaftpgMember *out);
extern void RaftpgRequireLeader(void);
extern RaftpgReply RaftpgSubmit(RaftpgRequest *req, const void *body, Size len);
extern void RaftpgSubmitStart(RaftpgRequest *req, const void *body, Size len);
extern RaftpgReply RaftpgSubmitWait(const RaftpgRequest *req, TimestampTz deadline);
extern void RaftpgReportRefusal(int rc, const char *what);
extern long RaftpgRemainingMs(TimestampTz deadline);
extern void RaftpgReportStats(void);
typedef struct pg_conn PGconn;
typedef struct pg_result PGresult;
extern PGconn *RaftpgRemoteConnect(const char *name, const char *conninfo,
								   TimestampTz deadline);
extern void RaftpgRemoteWait(PGconn *conn, const char *name, TimestampTz deadline);
extern PGresult *RaftpgRemoteExec(PGconn *conn, const char *name, const char *sql,
								  int nparams, const char *const *values,
								  const char *refusal, TimestampTz deadline);
extern char *RaftpgRemoteCall(const char *name, const char *conninfo,
							  const char *sql, int nparams,
							  const char *const *values, const char *refusal,
							  TimestampTz deadline);
extern void RaftpgRequireSuperuser(const char *fn);
extern void RaftpgRequireRaftpgDatabase(void);

/* apply.c */
extern PGDLLEXPORT void RaftpgApplyMain(Datum main_arg) pg_attribute_noreturn();
extern bool RaftpgIsApplyWorker(void);
extern bool RaftpgWaitApplied(uint64 index, TimestampTz deadline,
							  uint64 *applied);

#endif							/* RAFTPG_H */
