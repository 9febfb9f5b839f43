/*
 * sim.h
 *	  The deterministic simulator of the consensus core (raftsim).
 *
 * One run ("seed") simulates a cluster of hosts that each keep the contract
 * of raft.h: durable storage (hard state, log, snapshot metadata, a state
 * machine), a raft * created from it, and the host loop ready -> send ->
 * persist -> advance / persist_failed.  A network of encoded messages
 * drops, duplicates, delays, reorders and partitions; hosts crash (losing
 * everything not persisted) and restart; a client proposes, reads and
 * changes the membership.  After every step the safety properties of the
 * dissertation (and the host contract) are checked; at the end of a run
 * the cluster is healed and must make progress (liveness).
 *
 * All randomness comes from one generator seeded by the seed, so a failing
 * seed reproduces exactly.
 *
 * Files: raftsim.c (command line, seeds, the scenario), sim_node.c (hosts:
 * storage, the host loop, crash/restart, snapshots), sim_net.c (events, the
 * network, the codec round trip), sim_check.c (global invariants),
 * sim_util.c (generator, hashing, maps, failure reporting).
 */
#ifndef RAFTSIM_H
#define RAFTSIM_H

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "raft.h"

#define SIM_MAX_NODES	20		/* node ids 1 .. SIM_MAX_NODES - 1 */
#define SIM_TICK		1000	/* simulated time units per nominal tick */
#define SIM_RING		1000		/* trace lines kept for a failure report */

/* ----------
 * sim_util.c
 * ----------
 */
typedef struct sim_rng
{
	uint64_t	s;
} sim_rng;

extern uint64_t rng_next(sim_rng *g);
extern uint64_t rng_below(sim_rng *g, uint64_t n);	/* [0, n) */
extern int64_t rng_range(sim_rng *g, int64_t lo, int64_t hi);	/* [lo, hi] */
extern bool rng_chance(sim_rng *g, double p);
extern uint64_t hash_bytes(const void *p, size_t n);
extern uint64_t hash_mix(uint64_t a, uint64_t b);
extern uint64_t entry_hash(uint8_t type, const uint8_t *data, uint32_t len);

extern void *xmalloc(size_t n);
extern void *xcalloc(size_t n, size_t size);
extern void *xrealloc(void *p, size_t n);

/* (index, term) -> (entry hash, term of the previous entry): Log Matching */
typedef struct logmap_slot
{
	raft_index	index;			/* 0: empty */
	raft_term	term;
	raft_term	prev_term;
	uint64_t	hash;
	raft_id		first_node;		/* who created/persisted it first */
	uint64_t	first_step;
} logmap_slot;

typedef struct logmap
{
	logmap_slot *slots;
	size_t		cap;			/* power of two */
	size_t		n;
} logmap;

extern void logmap_free(logmap *m);
/* the slot for (index, term), inserted empty (index 0) when absent */
extern logmap_slot *logmap_get(logmap *m, raft_index index, raft_term term);

/* ----------
 * Storage: what survives a crash.
 * ----------
 */
typedef struct sim_entry
{
	raft_index	index;
	raft_term	term;
	uint8_t		type;
	uint32_t	len;
	uint8_t    *data;
	uint64_t	hash;
} sim_entry;

typedef struct sim_cfg_rec
{
	raft_index	index;			/* of the config entry (or snapshot) */
	raft_config cfg;
} sim_cfg_rec;

/* the state machine: a running hash of the applied entries */
typedef struct sim_sm
{
	raft_index	applied;
	raft_term	applied_term;
	uint64_t	cum;
	sim_cfg_rec *cfgs;			/* configurations applied, by index */
	size_t		n_cfgs;
	size_t		cap_cfgs;
} sim_sm;

typedef struct sim_storage
{
	raft_hard_state hs;
	raft_index	snap_index;
	raft_term	snap_term;
	raft_config snap_cfg;
	sim_entry  *log;			/* snap_index + 1 ... */
	size_t		n_log;
	size_t		cap_log;
	sim_sm		sm;
} sim_storage;

/* ----------
 * A host.
 * ----------
 */
typedef struct sim_vreq
{
	raft_term	term;
	bool		ok;				/* some request of this term was at least as
								 * up-to-date as the voter's log then */
	raft_index	index;			/* the candidate's last entry (last request) */
	raft_term	log_term;
	raft_index	my_index;		/* the voter's log (in memory) then */
	raft_term	my_term;
} sim_vreq;

typedef struct sim_prop
{
	raft_index	index;
	uint64_t	hash;
	bool		final;			/* the heal phase's fresh proposal */
} sim_prop;

typedef struct sim_read
{
	uint64_t	ctx;
	raft_index	min_index;
	uint64_t	step;
} sim_read;

typedef struct sim_node
{
	raft_id		id;
	bool		started;		/* has storage (initial member or added) */
	bool		up;
	bool		retired;		/* removed by a committed change: stays down */
	bool		retire_pending;
	raft	   *r;
	uint32_t	inc;			/* incarnation */
	sim_storage st;
	int64_t		tick_period;
	int64_t		restart_at;		/* when down: scheduled restart time */

	raft_status last;			/* last status polled in this incarnation */
	bool		ready_scheduled;

	/* with fetch: where the core's memory was last compacted to */
	raft_index	mem_snap;
	struct sim *sim;			/* for the fetch callback */

	/* an asynchronous snapshot install in progress */
	bool		snap_pending;
	raft_index	snap_req;
	raft_id		snap_from;

	/*
	 * VOTE / PREVOTE requests received from each candidate, by term, in a
	 * small ring, with this node's log at that moment.
	 */
#define SIM_VREQ_RING 8
	sim_vreq	vreq[SIM_MAX_NODES][2][SIM_VREQ_RING];

	/* client operations of this incarnation */
	sim_prop   *props;
	size_t		n_props;
	size_t		cap_props;
	sim_read   *reads;
	size_t		n_reads;
	size_t		cap_reads;
} sim_node;

/* ----------
 * Events.
 * ----------
 */
enum
{
	EV_DELIVER = 1,
	EV_TICK,
	EV_READY,
	EV_SNAPSHOT,
	EV_CHAOS,
	EV_CLIENT,
	EV_RESTART,
	EV_RETIRE,
	EV_PARTITION
};

typedef struct sim_event
{
	int64_t		time;
	uint64_t	seq;
	uint8_t		type;
	uint8_t		node;
	uint8_t		from;
	uint32_t	inc;
	uint8_t    *buf;			/* EV_DELIVER: encoded message */
	size_t		len;
} sim_event;

/* what is known committed at an index: the first application of it */
typedef struct sim_applied
{
	raft_term	claim;			/* term some node's commit index named here */
	raft_id		claim_node;
	raft_term	cterm;			/* the first leader term whose commit covered it */
	raft_term	term;
	uint8_t		type;
	uint64_t	hash;
	uint64_t	cum;			/* running hash of the state up to here */
	raft_id		node;			/* who applied it first */
} sim_applied;

/* per-seed knobs, drawn from the seed */
typedef struct sim_profile
{
	bool		bootstrap_all;	/* all initial voters hold entry 1 */
	int			min_voters;
	int			max_members;
	uint32_t	election_ticks;
	uint32_t	heartbeat_ticks;
	bool		pre_vote;
	bool		check_quorum;
	bool		lazy_commit;
	bool		fetch;			/* compaction drops entries from memory
								 * only; the leader fetches them back */
	bool		durable_compact;	/* with fetch: compaction sometimes drops
									 * a durable prefix too; peers behind it
									 * get a snapshot */
	double		p_fetch_fail;
	uint32_t	max_msg_entries;
	size_t		max_msg_bytes;
	uint32_t	max_inflight;
	double		skew;			/* tick rate spread */
	double		p_drop;
	double		p_dup;
	int64_t		delay_min;
	int64_t		delay_max;
	int64_t		heal_delay_max;	/* in the heal phase */
	double		p_long_delay;
	double		p_persist_fail;
	double		p_crash_mid;	/* crash between get_ready and persist */
	double		p_lazy;			/* host loop deferred after an input */
	int64_t		chaos_mean;		/* mean time between chaos actions */
	int			w_propose,
				w_read,
				w_crash,
				w_partition,
				w_member,
				w_transfer,
				w_compact,
				w_campaign;
	int64_t		down_max;		/* longest downtime */
	int			compact_slack;
	bool		campaign_at_start;
	bool		storm;			/* membership storm */
} sim_profile;

typedef struct sim_stats
{
	uint64_t	steps;
	uint64_t	msgs_sent;
	uint64_t	msgs_delivered;
	uint64_t	msgs_dropped;
	uint64_t	elections;		/* distinct leader terms */
	uint64_t	crashes;
	uint64_t	crash_mid;
	uint64_t	persist_fails;
	uint64_t	proposals;
	uint64_t	acked;
	uint64_t	applied_max;
	uint64_t	snapshots;
	uint64_t	compactions;
	uint64_t	fetches;
	uint64_t	reads_ok;
	uint64_t	reads_ignored;
	uint64_t	member_changes;
	uint64_t	transfers;
	uint64_t	heal_ticks;
} sim_stats;

typedef struct sim
{
	uint64_t	seed;
	int			n_init;			/* initial cluster size */
	int			n_ids;			/* ids 1 .. n_ids exist (incl. spares) */
	bool		verbose;
	bool		trace;
	uint64_t	fault_steps;
	sim_profile p;
	sim_rng		rng;

	int64_t		now;
	uint64_t	step;
	bool		healing;
	uint64_t	seq;

	sim_node	nodes[SIM_MAX_NODES];
	bool		blocked[SIM_MAX_NODES][SIM_MAX_NODES];	/* from -> to cut */
	int			next_spare;		/* next id to add */

	sim_event  *heap;
	size_t		n_heap;
	size_t		cap_heap;

	/* global knowledge */
	logmap		lmap;
	sim_applied *applied;		/* index -> first application */
	raft_index	cap_applied;
	raft_index	max_applied;
	raft_id    *leaders;		/* term -> leader */
	raft_term	cap_leaders;
	raft_index	max_commit;		/* highest commit any node reached */
	raft_index	cterm_mark;		/* applied[1..cterm_mark].cterm are set */
	raft_index	max_acked;
	raft_index	committed_cfg_index;	/* latest config applied anywhere */
	raft_config committed_cfg;
	uint64_t	prop_counter;
	uint64_t	read_ctx;

	/* the heal phase's fresh proposal */
	bool		final_acked;
	raft_index	final_index;
	uint64_t	final_tries;
	int64_t		final_next_try;

	/* scratch owned across a possible failure */
	raft_message scratch_msg;
	bool		scratch_live;
	uint8_t    *encbuf;
	size_t		enccap;
	uint8_t    *cur_buf;		/* the message being delivered */

	/* failure */
	jmp_buf		fail_jmp;
	char		fail_msg[2048];

	/* recent trace lines, for the report of a failure in verbose mode */
	char	  **ring;
	size_t		ring_pos;

	sim_stats	stats;
} sim;

/* sim_util.c */
extern void sim_fail(sim *s, const char *fmt,...)
			__attribute__((format(printf, 2, 3), noreturn));
extern void sim_log(sim *s, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));
extern bool sim_logging(const sim *s);
extern void sim_dump_ring(sim *s);

/* sim_net.c */
extern void ev_push(sim *s, const sim_event *e);
extern bool ev_pop(sim *s, sim_event *e);
extern void ev_free_all(sim *s);
extern void net_send(sim *s, sim_node *n, const raft_message *m);
extern void net_deliver(sim *s, const sim_event *e);
extern void net_heal(sim *s);
extern void net_partition(sim *s);
extern const char *msg_describe(const raft_message *m, char *buf, size_t cap);

/* sim_node.c */
extern raft_index st_last_index(const sim_storage *st);
extern raft_term st_term_at(const sim_storage *st, raft_index i);
extern const sim_entry *st_entry(const sim_storage *st, raft_index i);
extern void st_free(sim_storage *st);
extern void node_init_storage(sim *s, sim_node *n, const raft_entry *boot);
extern void node_start(sim *s, sim_node *n);
extern void node_crash(sim *s, sim_node *n, const char *why);
extern void node_schedule_restart(sim *s, sim_node *n);
extern bool node_may_crash(sim *s);
extern void node_after_input(sim *s, sim_node *n);
extern void node_host_loop(sim *s, sim_node *n);
extern void node_snapshot_install(sim *s, sim_node *n);
extern int	node_compact(sim *s, sim_node *n);
extern const raft_config *sm_config_at(const sim_sm *sm, raft_index i);

/* sim_check.c */
extern void check_status(sim *s, sim_node *n);
extern void check_leader_completeness(sim *s, sim_node *n, raft_term term);
extern void check_commit_quorum(sim *s, sim_node *n, raft_index commit);
extern void check_log_entry(sim *s, sim_node *n, raft_index index,
							raft_term term, uint64_t hash, raft_term prev_term,
							const char *what);
extern void record_applied(sim *s, sim_node *n, const sim_entry *e);
extern void record_committed_config(sim *s, raft_index index,
									const raft_config *c);
extern void check_commit_claim(sim *s, sim_node *n, raft_index commit);
extern bool config_has(const raft_config *c, raft_id id, bool voter_only);
extern int	config_voters(const raft_config *c);

#endif							/* RAFTSIM_H */
