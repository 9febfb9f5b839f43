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
#include "storage/latch.h"
#include "storage/lwlock.h"

/* Longest node name, terminator included; names go into fixed-size slots. */
#define RAFTPG_NAME_LEN		NAMEDATALEN

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
	uint64		term;			/* current term */
	/* the leader's node name, "" while no leader is known */
	char		leader_name[RAFTPG_NAME_LEN];
	uint64		last_log_index; /* last entry durable in raftpg's log */
	uint64		last_log_term;
	uint64		commit_index;	/* highest index known committed */
	uint64		applied_index;	/* highest index applied locally */
} RaftpgNodeStatus;

typedef struct RaftpgShared
{
	LWLock		lock;			/* protects everything below */

	/*
	 * The node worker, while it runs: 0 and NULL otherwise.  Backends that
	 * hand work to the worker set worker_latch to wake it.
	 */
	pid_t		worker_pid;
	Latch	   *worker_latch;

	RaftpgNodeStatus status;
} RaftpgShared;

/* raftpg.c */
extern char *raftpg_node_name;
extern char *raftpg_database;
extern RaftpgShared *RaftpgShmem;

extern void _PG_init(void);
extern Size RaftpgShmemSize(void);
extern void RaftpgCheckPreloaded(void);
extern const char *RaftpgRoleName(RaftpgRole role);

/* node.c */
extern PGDLLEXPORT void RaftpgNodeMain(Datum main_arg) pg_attribute_noreturn();

#endif							/* RAFTPG_H */
