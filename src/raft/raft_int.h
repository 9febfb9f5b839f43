/*-------------------------------------------------------------------------
 *
 * raft_int.h
 *	  Definitions shared by the files of the consensus core, not part of
 *	  its public interface.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RAFT_INT_H
#define RAFT_INT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "raft.h"

/* allocation through the hook of heap.c */
extern void *raft_malloc(size_t size);
extern void *raft_calloc(size_t n, size_t size);
extern void *raft_realloc(void *ptr, size_t size);
/* raft_free() is public (raft.h) */

/*
 * Always-on assertions: the core's invariants are cheap to check and a
 * broken one must stop the process, not corrupt a log.  PostgreSQL's
 * Assert() is compiled out in Debian's build, so the core has its own.
 */
extern void raft_assert_fail(const char *expr, const char *file, int line);

#define RAFT_ASSERT(e) \
	((e) ? (void) 0 : raft_assert_fail(#e, __FILE__, __LINE__))

#define RAFT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define RAFT_MAX(a, b) ((a) > (b) ? (a) : (b))

#include "log.h"

/* ----------
 * Per-peer replication progress, kept by the leader (dissertation 3.5 and
 * etcd's progress states).  PROBE sends one APPEND at a time and waits for
 * its answer; REPLICATE streams up to max_inflight APPENDs optimistically;
 * SNAPSHOT waits for a snapshot to be installed.
 * ----------
 */
typedef struct raft_progress
{
	raft_id		id;
	raft_index	match;
	raft_index	next;
	uint8_t		state;			/* raft_progress_state */
	bool		probe_sent;		/* PROBE: an APPEND is out, wait */
	bool		recent_active;	/* heard from since the last CheckQuorum */
	raft_index	pending_snapshot;	/* SNAPSHOT: index sent */
	uint32_t	snapshot_ticks; /* SNAPSHOT: ticks since sent */
	uint64_t	ticks_since_contact;
	uint64_t	read_ack;		/* highest heartbeat ctx acknowledged */
	raft_index	commit_sent;	/* highest commit index sent to it */
	/* inflight APPENDs: a ring of the last index each carried */
	raft_index *inflight;
	uint32_t	in_cap;
	uint32_t	in_start;
	uint32_t	in_count;
} raft_progress;

/* a message waiting in the outbox; APPEND entries by index range */
typedef struct raft_outmsg
{
	raft_message m;				/* entries == NULL, n_entries = count */
	raft_index	first;			/* APPEND: index of the first entry */
} raft_outmsg;

typedef struct raft_outbox
{
	raft_outmsg *msgs;
	size_t		n;
	size_t		cap;
} raft_outbox;

/*
 * Entries fetched from the host (raft_options.fetch) because compaction
 * dropped them from memory: a leader sending them to a peer that is
 * behind.  A window is kept until the ready that may point into it is
 * over (raft_advance(), raft_persist_failed()); a message whose window is
 * gone by then fetches again, which yields the same entries (they are
 * committed, and committed entries never change).
 */
typedef struct raft_fetched
{
	raft_index	from;
	raft_entry *ents;
	size_t		n;
	struct raft_fetched *next;	/* the one fetched before */
} raft_fetched;

/* a linearizable read waiting for its heartbeat quorum (6.4) */
typedef struct raft_pending_read
{
	uint64_t	ctx;			/* the requester's ctx */
	raft_id		from;			/* requester; self for local reads */
	raft_index	index;			/* commit index when it was asked */
	uint64_t	seq;			/* heartbeat round that confirms it; 0 =
								 * waiting for the leader's first commit */
} raft_pending_read;

struct raft
{
	raft_options opts;
	raft_id		id;
	raft_role	role;
	raft_id		leader;

	/* hard state: current, and as last made durable by the host */
	raft_term	term;
	raft_id		vote;
	raft_index	commit;
	raft_hard_state stable_hs;
	raft_hard_state ready_hs;	/* handed out in the ready in flight */

	raft_index	applied;		/* last entry handed out to apply */
	raft_log	log;

	/*
	 * With raft_options.fetch: the host's durable log starts after
	 * host_snap_index (term host_snap_term).  Entries after it and up to
	 * log.snap_index are fetched; a peer that needs one up to it gets a
	 * snapshot.  Not used without fetch (the durable log starts where
	 * memory does).
	 */
	raft_index	host_snap_index;
	raft_term	host_snap_term;

	/* configuration: the latest in the log, else the snapshot's */
	raft_config config;
	raft_index	config_index;
	raft_config snap_config;
	raft_index	snap_config_index;	/* the entry snap_config came from */
	/* the configuration of the durable log while the overlay changes it */
	raft_config saved_config;
	raft_index	saved_config_index;
	bool		has_saved_config;

	/* timers, in ticks */
	uint32_t	election_elapsed;
	uint32_t	heartbeat_elapsed;
	uint32_t	randomized_timeout;
	uint64_t	rng;

	/*
	 * Elections: one slot per server of config, by position; cleared
	 * whenever the configuration changes, so a vote is never counted
	 * against another configuration than the one it was cast in.
	 */
	int8_t		votes[RAFT_MAX_SERVERS];	/* 0 unknown, 1 granted, -1 refused */
	bool		self_vote_pending;	/* candidate vote not yet durable */

	/* leader */
	raft_progress *prs;
	size_t		n_prs;
	raft_id		transferee;
	uint32_t	transfer_elapsed;

	/*
	 * A server the latest (uncommitted) configuration removed: the leader
	 * keeps replicating to it -- without counting it anywhere -- until it
	 * holds that configuration and knows it is committed, so that it learns
	 * of its removal instead of campaigning for ever (4.2.3).
	 */
	raft_id		retiring;

	/* ReadIndex */
	raft_pending_read *reads;
	size_t		n_reads;
	size_t		cap_reads;
	uint64_t	read_seq;		/* last heartbeat round started */
	uint64_t   *fwd_reads;		/* follower: ctxs forwarded to the leader */
	size_t		n_fwd_reads;
	size_t		cap_fwd_reads;
	raft_read_state *read_out;	/* answers for the next ready */
	size_t		n_read_out;
	size_t		cap_read_out;

	/* snapshot install requested from the host */
	bool		snap_requested;	/* in a ready, not yet done */
	bool		snap_handed;
	raft_snapshot_meta snap_req;

	/* output */
	raft_outbox outbox;			/* may be sent now */
	raft_outbox held;			/* wait for the in-flight persistence */
	bool		bcast_pending;	/* a broadcast of APPENDs is due */
	bool		in_ready;		/* between raft_get_ready and advance */
	raft_message *rd_msgs;		/* the ready's materialized messages */
	size_t		rd_n_msgs;
	raft_entry *rd_committed;
	raft_read_state *rd_reads;
	raft_fetched *fetched;		/* newest first */
};

/* raft.c */
extern void raft_emit(raft *r, const raft_message *m, raft_index first);
extern uint32_t raft_random(raft *r, uint32_t bound);
extern void raft_drop_appends(raft *r);
extern void raft_drop_stale_held(raft *r);
extern const raft_entry *raft_entry_held(const raft *r, raft_index i);
extern const raft_entry *raft_entry_at(raft *r, raft_index i);
extern void raft_free_fetched(raft *r);

/* election.c */
extern void election_reset_timeout(raft *r);
extern void become_follower(raft *r, raft_term term, raft_id leader);
extern void become_leader(raft *r);
extern int	election_start(raft *r, bool pre_vote, bool transfer);
extern bool election_promotable(const raft *r);
extern void election_tick(raft *r);
extern void election_handle_vote(raft *r, const raft_message *m);
extern void election_handle_vote_resp(raft *r, const raft_message *m);
extern void election_self_vote_durable(raft *r);
extern void election_handle_timeout_now(raft *r, const raft_message *m);

/* replication.c */
extern bool replication_send_append(raft *r, raft_progress *pr, bool send_empty);
extern void replication_broadcast_append(raft *r);
extern void replication_flush_broadcast(raft *r);
extern void replication_broadcast_heartbeat(raft *r, uint64_t ctx);
extern int	replication_handle_append(raft *r, const raft_message *m);
extern void replication_handle_append_resp(raft *r, const raft_message *m);
extern void replication_handle_heartbeat(raft *r, const raft_message *m);
extern void replication_handle_heartbeat_resp(raft *r, const raft_message *m);
extern void replication_handle_snapshot(raft *r, const raft_message *m);
extern bool replication_maybe_commit(raft *r);
extern void replication_leader_tick(raft *r);
extern int	replication_append_local(raft *r, raft_entry *ents, size_t n);

/* progress.c */
extern int	progress_rebuild(raft *r);
extern int	progress_prepare(raft *r, const raft_config *c, raft_id retiring,
							 raft_progress **out, size_t *out_n);
extern void progress_install(raft *r, raft_progress *nprs, size_t n);
extern bool progress_owns_ring(const raft *r, const raft_index *ring);
extern raft_progress *progress_get(raft *r, raft_id id);
extern void progress_free_all(raft *r);
extern void progress_reset(raft *r, raft_progress *pr);
extern void progress_become_probe(raft_progress *pr);
extern void progress_become_replicate(raft_progress *pr);
extern void progress_become_snapshot(raft_progress *pr, raft_index index);
extern bool progress_is_paused(const raft *r, const raft_progress *pr);
extern bool progress_maybe_update(raft_progress *pr, raft_index index);
extern bool progress_maybe_decr(raft *r, raft_progress *pr, const raft_message *m);
extern void progress_inflight_add(raft_progress *pr, raft_index last);
extern void progress_inflight_free_to(raft_progress *pr, raft_index index);
extern void progress_inflight_free_first(raft_progress *pr);
extern bool progress_inflight_full(const raft *r, const raft_progress *pr);

/* membership.c */
extern int	membership_config_at(raft *r, raft_index upto, raft_config *out,
								 raft_index *out_index);
extern void membership_install(raft *r, raft_config *c, raft_index index,
							   raft_progress *nprs, size_t n_prs);
extern void membership_stabilized(raft *r);
extern void membership_revert(raft *r);
extern int	membership_check_entries(const raft_entry *ents, size_t n);
extern bool membership_leader_removed(raft *r);
extern void membership_retire_done(raft *r, raft_progress *pr);

/* readindex.c */
extern void readindex_leader_committed(raft *r);
extern void readindex_handle_request(raft *r, const raft_message *m);
extern void readindex_handle_resp(raft *r, const raft_message *m);
extern void readindex_heartbeat_acked(raft *r);
extern void readindex_clear(raft *r);
extern int	readindex_push_answer(raft *r, uint64_t ctx, raft_index index);

/* true when the leader has committed an entry of its own term */
extern bool raft_committed_own_term(const raft *r);

#endif							/* RAFT_INT_H */
