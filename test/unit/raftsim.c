/*
 * raftsim.c
 *	  The deterministic simulator of raftpg's consensus core.
 *
 * Usage:
 *	  raftsim [--seeds N] [--first-seed S] [--nodes K] [--steps T]
 *			  [--verbose] [--trace] [--no-fork]
 *
 * Runs N seeds, S .. S+N-1 (default 1 seed, from 1).  Each seed simulates
 * one run of a cluster of K servers (3, 5 or 7, drawn from the seed unless
 * --nodes), with spare ids for membership changes:
 *
 *	  fault phase	T events (default DEFAULT_STEPS): message deliveries,
 *					ticks at skewed rates, client proposals and reads, crashes
 *					(also between raft_get_ready and persisting), failed
 *					persists, partitions (symmetric and one-way), drops,
 *					duplicates, delays, membership changes, transfers,
 *					compactions, snapshot installs;
 *	  heal phase	every server up, a reliable network.  The cluster must
 *					keep making progress (no HEAL_WINDOW election timeouts
 *					without a log, commit or apply index moving) until a
 *					leader has a fresh entry applied and every member of its
 *					configuration has applied it and every acknowledged one.
 *
 * Each seed also draws a profile: bootstrap mode (all initial voters hold
 * entry 1, or node 1 alone and the others added), timeouts, PreVote and
 * CheckQuorum, message and in-flight limits, fault rates, a membership
 * storm.  --verbose prints it.
 *
 * Safety is checked after every event: sim_check.c (Election Safety, Log
 * Matching, Leader Completeness, State Machine Safety, the commit rule,
 * monotonicity, linearizable reads) and the host-contract checks of
 * sim_node.c (what a ready batch persists, sends and hands out to apply).
 *
 * A failing seed prints one line
 *	  FAIL seed=S nodes=K: <what broke at which step>  reproduce: <command>
 * and the run ends with "N passed, M failed"; the exit status is non-zero
 * when a seed failed.  --verbose prints the seed's profile, the main
 * events and, on a failure, the last SIM_RING of them; --trace prints
 * every message and state change as it happens.
 *
 * Each seed runs in a child process (unless --no-fork, handy under gdb),
 * so that an assertion in the core, a crash, a hang (SIGALRM) or a
 * sanitizer report fails that seed alone, and names it.  A run is
 * deterministic: the same seed gives the same events in every build.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sim.h"

#define DEFAULT_STEPS 60000
#define HEAL_WINDOW 20			/* election timeouts without progress */
#define HEAL_CAP 2000			/* election timeouts in all (plus the backlog) */
#define STR2(x) #x
#define STR(x) STR2(x)

typedef struct shared_progress
{
	uint64_t	seed;
	uint64_t	step;
	sim_stats	total;
	uint64_t	runs;
} shared_progress;

static shared_progress *progress;
static shared_progress local_progress;

/* options */
static uint64_t opt_seeds = 1;
static uint64_t opt_first = 1;
static int	opt_nodes = 0;
static uint64_t opt_steps = 0;
static bool opt_verbose = false;
static bool opt_trace = false;
static bool opt_fork = true;
static const char *opt_binary = "test/unit/build/raftsim";

static void
reproduce(char *buf, size_t cap, uint64_t seed)
{
	int			k;

	k = snprintf(buf, cap, "%s --seeds 1 --first-seed %llu", opt_binary,
				 (unsigned long long) seed);
	if (opt_nodes)
		k += snprintf(buf + k, cap - (size_t) k, " --nodes %d", opt_nodes);
	if (opt_steps)
		k += snprintf(buf + k, cap - (size_t) k, " --steps %llu",
					  (unsigned long long) opt_steps);
	snprintf(buf + k, cap - (size_t) k, " --verbose");
}

static int
pick_int(sim_rng *g, const int *v, size_t n)
{
	return v[rng_below(g, n)];
}

static double
pick_dbl(sim_rng *g, const double *v, size_t n)
{
	return v[rng_below(g, n)];
}

#define PICK_I(g, ...) pick_int(g, (const int[]){__VA_ARGS__}, \
	sizeof((const int[]){__VA_ARGS__}) / sizeof(int))
#define PICK_D(g, ...) pick_dbl(g, (const double[]){__VA_ARGS__}, \
	sizeof((const double[]){__VA_ARGS__}) / sizeof(double))

static void
draw_profile(sim *s)
{
	sim_profile *p = &s->p;
	sim_rng    *g = &s->rng;

	p->bootstrap_all = rng_chance(g, 0.7);
	p->election_ticks = (uint32_t) PICK_I(g, 5, 8, 10, 10, 16);
	p->heartbeat_ticks = 1 + (uint32_t) rng_below(g, p->election_ticks / 4 + 1);
	if (p->heartbeat_ticks >= p->election_ticks)
		p->heartbeat_ticks = 1;
	p->pre_vote = rng_chance(g, 0.7);
	p->check_quorum = rng_chance(g, 0.7);
	p->max_msg_entries = (uint32_t) PICK_I(g, 1, 2, 3, 8, 64, 1024);
	p->max_msg_bytes = (size_t) PICK_I(g, 1, 64, 4096, 1 << 20);
	p->max_inflight = (uint32_t) PICK_I(g, 1, 2, 4, 64);
	p->skew = PICK_D(g, 0, 0.05, 0.1, 0.2);
	p->p_drop = PICK_D(g, 0, 0.01, 0.05, 0.15, 0.3);
	p->p_dup = PICK_D(g, 0, 0.01, 0.05);
	p->delay_min = rng_range(g, 5, 100);
	p->delay_max = p->delay_min + PICK_I(g, 50, 300, 800, 2000);
	/*
	 * Faults may delay messages as long as an election timeout, which
	 * makes for spurious elections and divergent logs; a healed network
	 * meets Raft's timing requirement, broadcast time << election timeout
	 * (3.4).
	 */
	p->heal_delay_max = p->delay_max;
	if (p->heal_delay_max > (int64_t) p->election_ticks * SIM_TICK / 4)
		p->heal_delay_max = (int64_t) p->election_ticks * SIM_TICK / 4;
	if (p->heal_delay_max < p->delay_min)
		p->heal_delay_max = p->delay_min;
	p->p_long_delay = PICK_D(g, 0, 0.002, 0.01);
	p->p_persist_fail = PICK_D(g, 0, 0.005, 0.02, 0.06);
	p->p_crash_mid = PICK_D(g, 0, 0.0005, 0.002);
	p->p_lazy = PICK_D(g, 0, 0.3, 0.5, 0.7);
	p->chaos_mean = PICK_I(g, 300, 1000, 1000, 3000);
	p->w_propose = 40;
	p->w_read = PICK_I(g, 0, 10, 30);
	p->w_crash = PICK_I(g, 0, 1, 3, 6);
	p->w_partition = PICK_I(g, 0, 1, 3, 6);
	p->w_member = PICK_I(g, 0, 2, 5, 10);
	if (!p->bootstrap_all && p->w_member == 0)
		p->w_member = 2;
	p->w_transfer = PICK_I(g, 0, 1, 4);
	p->w_compact = PICK_I(g, 0, 2, 8);
	p->w_campaign = PICK_I(g, 0, 0, 1);
	p->down_max = (int64_t) p->election_ticks * SIM_TICK * PICK_I(g, 1, 3, 10);
	p->compact_slack = PICK_I(g, 0, 3, 20, 100);
	/*
	 * Small voter sets matter: with one voter and learners, a leader that
	 * counted its own unpersisted entries would commit them at once.
	 */
	p->min_voters = rng_chance(g, 0.3) ? PICK_I(g, 1, 1, 2) : 3;
	if (p->min_voters > s->n_init)
		p->min_voters = s->n_init;
	p->max_members = s->n_init + (int) rng_below(g, 3);
	p->campaign_at_start = rng_chance(g, 0.5);

	/*
	 * A membership storm: changes as fast as the leader takes them, with
	 * crashes, so that uncommitted configurations of different leaders
	 * meet (the single-server change bug of the dissertation's errata).
	 */
	p->storm = rng_chance(g, 0.2);
	if (p->storm)
	{
		p->w_member = 60;
		p->w_crash = PICK_I(g, 3, 6, 10);
		p->min_voters = PICK_I(g, 2, 3, 3);
		if (p->min_voters > s->n_init)
			p->min_voters = s->n_init;
		p->max_members = s->n_init + 1 + (int) rng_below(g, 2);
	}

	/*
	 * Without PreVote and CheckQuorum there is no lease (4.2.3): a server
	 * removed by a change it never received deposes every leader forever.
	 * That configuration is only run with a fixed membership.
	 */
	if (!p->pre_vote && !p->check_quorum && (p->w_member > 0 || !p->bootstrap_all))
	{
		if (rng_chance(g, 0.5))
			p->pre_vote = true;
		else
			p->check_quorum = true;
	}
	p->lazy_commit = rng_chance(g, 0.5);
	p->fetch = rng_chance(g, 0.5);
	p->p_fetch_fail = p->fetch ? PICK_D(g, 0, 0.05, 0.3) : 0;
	p->durable_compact = p->fetch && rng_chance(g, 0.5);
}

static void
print_profile(sim *s)
{
	sim_profile *p = &s->p;

	printf("seed %llu: %d nodes (%s), ids up to %d, election %u ticks, heartbeat %u, pre_vote %d, "
		   "check_quorum %d, lazy_commit %d, fetch %d (fails %.2f, durable compaction %d)\n",
		   (unsigned long long) s->seed, s->n_init,
		   p->bootstrap_all ? "all bootstrapped" : "node 1 bootstrapped, others added",
		   s->n_ids, p->election_ticks, p->heartbeat_ticks, p->pre_vote, p->check_quorum,
		   p->lazy_commit, p->fetch, p->p_fetch_fail, p->durable_compact);
	printf("  max_msg_entries %u max_msg_bytes %zu max_inflight %u skew %.2f\n",
		   p->max_msg_entries, p->max_msg_bytes, p->max_inflight, p->skew);
	printf("  drop %.3f dup %.3f delay %lld..%lld (healed ..%lld) long %.3f persist_fail %.3f crash_mid %.3f lazy %.1f\n",
		   p->p_drop, p->p_dup, (long long) p->delay_min, (long long) p->delay_max,
		   (long long) p->heal_delay_max,
		   p->p_long_delay, p->p_persist_fail, p->p_crash_mid, p->p_lazy);
	if (p->storm)
		printf("  membership storm\n");
	printf("  chaos every ~%lld: propose %d read %d crash %d partition %d member %d transfer %d "
		   "compact %d (slack %d) campaign %d; min voters %d, max members %d; %llu fault steps\n",
		   (long long) p->chaos_mean, p->w_propose, p->w_read, p->w_crash, p->w_partition,
		   p->w_member, p->w_transfer, p->w_compact, p->compact_slack, p->w_campaign,
		   p->min_voters, p->max_members, (unsigned long long) s->fault_steps);
}

/* ----------
 * Client and operator actions
 * ----------
 */
static sim_node *
random_up(sim *s, bool leader_only)
{
	int			ids[SIM_MAX_NODES];
	int			n = 0,
				i;

	for (i = 1; i <= s->n_ids; i++)
	{
		sim_node   *x = &s->nodes[i];

		if (x->up && (!leader_only || x->last.role == RAFT_LEADER))
			ids[n++] = i;
	}
	if (n == 0)
		return NULL;
	return &s->nodes[ids[rng_below(&s->rng, (uint64_t) n)]];
}

static void
push_prop(sim_node *n, raft_index index, uint64_t hash, bool final)
{
	if (n->n_props == n->cap_props)
	{
		n->cap_props = n->cap_props ? n->cap_props * 2 : 16;
		n->props = xrealloc(n->props, n->cap_props * sizeof(sim_prop));
	}
	n->props[n->n_props].index = index;
	n->props[n->n_props].hash = hash;
	n->props[n->n_props].final = final;
	n->n_props++;
}

static int
propose(sim *s, sim_node *n, int count, bool final)
{
	char		payload[3][64];
	raft_buf	bufs[3];
	raft_index	first = 0;
	int			rc,
				i;

	for (i = 0; i < count; i++)
	{
		s->prop_counter++;
		snprintf(payload[i], sizeof(payload[i]), "%llu:%llu%s",
				 (unsigned long long) s->seed, (unsigned long long) s->prop_counter,
				 final ? ":final" : "");
		bufs[i].base = payload[i];
		bufs[i].len = strlen(payload[i]);
	}
	rc = raft_propose(n->r, bufs, (size_t) count, &first);
	if (rc == RAFT_OK)
	{
		if (n->last.role != RAFT_LEADER)
			sim_fail(s, "node %llu (a %s) accepted a proposal",
					 (unsigned long long) n->id, raft_role_name(n->last.role));
		if (first <= n->last.last_index || first <= n->last.commit)
			sim_fail(s, "node %llu: raft_propose placed an entry at %llu, inside its log (last %llu)",
					 (unsigned long long) n->id, (unsigned long long) first,
					 (unsigned long long) n->last.last_index);
		for (i = 0; i < count; i++)
			push_prop(n, first + (raft_index) i,
					  entry_hash(RAFT_ENTRY_NORMAL, (const uint8_t *) payload[i],
								 (uint32_t) bufs[i].len), final);
		s->stats.proposals += (uint64_t) count;
		if (s->trace)
			sim_log(s, "client: node %llu accepted %d proposal(s) at %llu%s",
					(unsigned long long) n->id, count, (unsigned long long) first,
					final ? " (final)" : "");
	}
	else if (rc == RAFT_ENOTLEADER || rc == RAFT_EBUSY)
	{
		if (rc == RAFT_ENOTLEADER && n->last.role == RAFT_LEADER)
			sim_fail(s, "node %llu, a leader, refused a proposal: not the leader",
					 (unsigned long long) n->id);
	}
	else
		sim_fail(s, "node %llu: raft_propose returned %s", (unsigned long long) n->id,
				 raft_strerror(rc));
	node_after_input(s, n);
	return rc;
}

static void
act_propose(sim *s)
{
	sim_node   *n = random_up(s, true);

	if (n == NULL)
	{
		/* no leader: a follower must refuse */
		n = random_up(s, false);
		if (n == NULL)
			return;
	}
	propose(s, n, 1 + (int) rng_below(&s->rng, 3), false);
}

static void
act_read(sim *s)
{
	sim_node   *n = random_up(s, rng_chance(&s->rng, 0.5));
	uint64_t	ctx;
	int			rc;

	if (n == NULL)
		return;
	ctx = ++s->read_ctx;
	rc = raft_read_index(n->r, ctx);
	if (rc == RAFT_OK)
	{
		if (n->n_reads == n->cap_reads)
		{
			n->cap_reads = n->cap_reads ? n->cap_reads * 2 : 16;
			n->reads = xrealloc(n->reads, n->cap_reads * sizeof(sim_read));
		}
		n->reads[n->n_reads].ctx = ctx;
		n->reads[n->n_reads].min_index = s->max_commit;
		n->reads[n->n_reads].step = s->step;
		n->n_reads++;
		if (s->trace)
			sim_log(s, "client: read ctx %llu on node %llu (must see >= %llu)",
					(unsigned long long) ctx, (unsigned long long) n->id,
					(unsigned long long) s->max_commit);
	}
	else if (rc != RAFT_ENOTLEADER && rc != RAFT_EBUSY)
		sim_fail(s, "node %llu: raft_read_index returned %s", (unsigned long long) n->id,
				 raft_strerror(rc));
	node_after_input(s, n);
}

static void
act_crash(sim *s)
{
	sim_node   *n;

	if (!node_may_crash(s))
		return;
	n = random_up(s, rng_chance(&s->rng, 0.3));
	if (n == NULL)
		n = random_up(s, false);
	if (n == NULL || n->retired)
		return;
	node_crash(s, n, "chaos");
	node_schedule_restart(s, n);
}

static const char *
ok_or(int rc)
{
	return rc == RAFT_OK ? "ok" : raft_strerror(rc);
}

/*
 * raft.h: a leader takes a membership change only when the previous one is
 * committed (else RAFT_EBUSY) and it has committed an entry of its own
 * term (else RAFT_ENOTREADY, the fix of the dissertation's errata).
 * before is the leader's status just before the call that succeeded.
 */
static void
check_change_allowed(sim *s, sim_node *l, const raft_status *before, const char *what)
{
	raft_term	t;

	if (before->config_index > before->commit)
		sim_fail(s, "leader %llu of term %llu accepted %s while the configuration at %llu is not "
				 "committed (commit %llu): one change at a time (4.1)",
				 (unsigned long long) l->id, (unsigned long long) before->term, what,
				 (unsigned long long) before->config_index,
				 (unsigned long long) before->commit);
	if (before->commit >= l->st.snap_index)
	{
		t = st_term_at(&l->st, before->commit);
		if (t != before->term)
			sim_fail(s, "leader %llu of term %llu accepted %s before committing an entry of its term "
					 "(commit %llu is of term %llu)",
					 (unsigned long long) l->id, (unsigned long long) before->term, what,
					 (unsigned long long) before->commit, (unsigned long long) t);
	}
}

static void
act_member(sim *s)
{
	sim_node   *l = random_up(s, true);
	const raft_config *c;
	raft_index	idx = 0;
	int			rc,
				voters;
	uint32_t	i;
	raft_id		learner = 0;
	bool		growing;
	raft_status before;

	if (l == NULL)
		return;
	raft_get_status(l->r, &before);
	c = raft_get_config(l->r);
	voters = config_voters(c);
	for (i = 0; i < c->n; i++)
		if (c->servers[i].role == RAFT_LEARNER)
			learner = c->servers[i].id;
	growing = !s->p.bootstrap_all && config_voters(&s->committed_cfg) < s->n_init;

	if (learner != 0 && (growing || rng_chance(&s->rng, 0.8)))
	{
		raft_progress_info pi;

		rc = raft_get_progress(l->r, learner, &pi);
		if (rc != RAFT_OK)
			sim_fail(s, "leader %llu: raft_get_progress(%llu) of a learner in its config: %s",
					 (unsigned long long) l->id, (unsigned long long) learner, raft_strerror(rc));
		if (pi.match + 3 < l->last.last_index && rng_chance(&s->rng, 0.8))
			return;				/* not caught up yet */
		if (voters == 1 && rng_chance(&s->rng, 0.7))
			return;				/* a while longer with one voter and learners */
		rc = raft_promote(l->r, learner, &idx);
		sim_log(s, "member: leader %llu promotes %llu (match %llu of %llu): %s",
				(unsigned long long) l->id, (unsigned long long) learner,
				(unsigned long long) pi.match, (unsigned long long) l->last.last_index,
				ok_or(rc));
		if (rc == RAFT_OK)
			check_change_allowed(s, l, &before, "a promotion");
		else if (rc != RAFT_EBUSY && rc != RAFT_ENOTREADY)
			sim_fail(s, "leader %llu: raft_promote(%llu) returned %s", (unsigned long long) l->id,
					 (unsigned long long) learner, raft_strerror(rc));
	}
	else if ((growing || rng_chance(&s->rng, 0.5)) && (int) c->n < s->p.max_members &&
			 s->next_spare <= s->n_ids)
	{
		raft_id		id = (raft_id) s->next_spare;
		char		name[32],
					addr[32];

		snprintf(name, sizeof(name), "n%llu", (unsigned long long) id);
		snprintf(addr, sizeof(addr), "addr%llu", (unsigned long long) id);
		rc = raft_add_server(l->r, id, name, addr, &idx);
		sim_log(s, "member: leader %llu adds %llu as learner: %s (index %llu)",
				(unsigned long long) l->id, (unsigned long long) id, ok_or(rc),
				(unsigned long long) idx);
		if (rc == RAFT_OK)
		{
			sim_node   *n = &s->nodes[id];

			check_change_allowed(s, l, &before, "an addition");
			s->next_spare++;
			s->stats.member_changes++;
			node_after_input(s, l);
			if (!n->started)
			{
				node_init_storage(s, n, NULL);
				node_start(s, n);
			}
			return;
		}
		if (rc != RAFT_EBUSY && rc != RAFT_ENOTREADY)
			sim_fail(s, "leader %llu: raft_add_server(%llu) returned %s", (unsigned long long) l->id,
					 (unsigned long long) id, raft_strerror(rc));
	}
	else if (!growing && c->n > 1)
	{
		/* copy: the call replaces the configuration c points into */
		raft_server v = c->servers[rng_below(&s->rng, c->n)];

		if (v.role == RAFT_VOTER && voters - 1 < s->p.min_voters)
			return;
		rc = raft_remove_server(l->r, v.id, &idx);
		sim_log(s, "member: leader %llu removes %llu (%s): %s (index %llu)",
				(unsigned long long) l->id, (unsigned long long) v.id,
				v.role == RAFT_VOTER ? "voter" : "learner", ok_or(rc),
				(unsigned long long) idx);
		if (rc == RAFT_OK)
			check_change_allowed(s, l, &before, "a removal");
		else if (rc != RAFT_EBUSY && rc != RAFT_ENOTREADY)
			sim_fail(s, "leader %llu: raft_remove_server(%llu) returned %s",
					 (unsigned long long) l->id, (unsigned long long) v.id, raft_strerror(rc));
	}
	else
		return;
	if (rc == RAFT_OK)
		s->stats.member_changes++;
	node_after_input(s, l);
}

static void
act_transfer(sim *s)
{
	sim_node   *l = random_up(s, true);
	const raft_config *c;
	raft_id		target = 0;
	int			rc;

	if (l == NULL)
		return;
	c = raft_get_config(l->r);
	if (c->n > 0 && rng_chance(&s->rng, 0.75))
	{
		const raft_server *v = &c->servers[rng_below(&s->rng, c->n)];

		if (v->id == l->id || v->role != RAFT_VOTER)
			return;
		target = v->id;
	}
	rc = raft_transfer_leadership(l->r, target);
	sim_log(s, "operator: leader %llu transfers leadership to %llu: %s",
			(unsigned long long) l->id, (unsigned long long) target, ok_or(rc));
	if (rc == RAFT_OK)
		s->stats.transfers++;
	else if (rc != RAFT_EBUSY && rc != RAFT_ENOTREADY && rc != RAFT_EINVAL &&
			 rc != RAFT_ENOTFOUND)
		sim_fail(s, "leader %llu: raft_transfer_leadership(%llu) returned %s",
				 (unsigned long long) l->id, (unsigned long long) target, raft_strerror(rc));
	node_after_input(s, l);
}

static void
act_campaign(sim *s)
{
	sim_node   *n = random_up(s, false);
	int			rc;

	if (n == NULL)
		return;
	rc = raft_campaign(n->r);
	sim_log(s, "operator: node %llu campaigns: %s", (unsigned long long) n->id, ok_or(rc));
	if (rc != RAFT_OK && rc != RAFT_EINVAL && rc != RAFT_EBUSY)
		sim_fail(s, "node %llu: raft_campaign returned %s", (unsigned long long) n->id,
				 raft_strerror(rc));
	node_after_input(s, n);
}

static void
chaos(sim *s)
{
	sim_profile *p = &s->p;
	int			total = p->w_propose + p->w_read + p->w_crash + p->w_member +
		p->w_transfer + p->w_compact + p->w_campaign;
	int			x = (int) rng_below(&s->rng, (uint64_t) total);
	sim_event	e;

	/* a cluster that is still being assembled grows first */
	if (!p->bootstrap_all && config_voters(&s->committed_cfg) < s->n_init &&
		rng_chance(&s->rng, 0.5))
		act_member(s);
	else if ((x -= p->w_propose) < 0)
		act_propose(s);
	else if ((x -= p->w_read) < 0)
		act_read(s);
	else if ((x -= p->w_crash) < 0)
		act_crash(s);
	else if ((x -= p->w_member) < 0)
		act_member(s);
	else if ((x -= p->w_transfer) < 0)
		act_transfer(s);
	else if ((x -= p->w_compact) < 0)
	{
		sim_node   *n = random_up(s, false);

		if (n)
			node_compact(s, n);
	}
	else
		act_campaign(s);

	memset(&e, 0, sizeof(e));
	e.type = EV_CHAOS;
	e.time = s->now + rng_range(&s->rng, 1, 2 * p->chaos_mean);
	ev_push(s, &e);
}

static void
schedule_partition(sim *s)
{
	sim_event	e;

	if (s->p.w_partition == 0)
		return;
	memset(&e, 0, sizeof(e));
	e.type = EV_PARTITION;
	e.time = s->now + rng_range(&s->rng, 1,
								(int64_t) s->p.election_ticks * SIM_TICK * 20 / s->p.w_partition);
	ev_push(s, &e);
}

/* ----------
 * The heal phase
 * ----------
 */
static void
retire(sim *s, sim_node *n)
{
	n->retire_pending = false;
	if (n->retired)
		return;
	sim_log(s, "node %llu retired (removed from the configuration)", (unsigned long long) n->id);
	n->retired = true;
	if (n->up)
	{
		node_crash(s, n, "retired");
		s->stats.crashes--;
	}
}

static void
begin_heal(sim *s)
{
	int			i;

	s->healing = true;
	sim_log(s, "=== heal phase: network reliable, every server up ===");
	net_heal(s);
	for (i = 1; i <= s->n_ids; i++)
	{
		sim_node   *n = &s->nodes[i];

		if (n->retire_pending)
			retire(s, n);
		else if (n->started && !n->retired && !n->up)
			node_start(s, n);
	}
}

static sim_node *
current_leader(sim *s)
{
	sim_node   *best = NULL;
	int			i;

	for (i = 1; i <= s->n_ids; i++)
	{
		sim_node   *n = &s->nodes[i];

		if (n->up && n->last.role == RAFT_LEADER &&
			(best == NULL || n->last.term > best->last.term))
			best = n;
	}
	return best;
}

/* true once the cluster has made the progress the heal phase asks for */
static bool
heal_done(sim *s)
{
	sim_node   *l = current_leader(s);
	const raft_config *c;
	raft_index	target;
	uint32_t	i;
	size_t		k;

	if (l == NULL)
		return false;
	if (!s->final_acked)
	{
		bool		pending = false;

		for (k = 0; k < l->n_props; k++)
			if (l->props[k].final)
				pending = true;
		/* a refused proposal (a transfer in progress) is retried later */
		if (!pending && l->last.commit > 0 && s->now >= s->final_next_try)
		{
			s->final_tries++;
			s->final_next_try = s->now + SIM_TICK / 2;
			propose(s, l, 1, true);
		}
		return false;
	}
	target = s->final_index > s->max_acked ? s->final_index : s->max_acked;
	c = raft_get_config(l->r);
	for (i = 0; i < c->n; i++)
	{
		raft_id		id = c->servers[i].id;

		if (id >= SIM_MAX_NODES || !s->nodes[id].up ||
			s->nodes[id].st.sm.applied < target)
			return false;
	}
	return true;
}

/* what the heal phase watches for progress: logs, commit and apply indexes, the leader's view of its followers */
static uint64_t
progress_mark(sim *s)
{
	uint64_t	h = s->final_acked ? 1 : 0;
	int			i,
				j;

	for (i = 1; i <= s->n_ids; i++)
	{
		sim_node   *n = &s->nodes[i];

		if (!n->up)
			continue;
		h = hash_mix(h, n->st.sm.applied);
		h = hash_mix(h, n->last.commit);
		h = hash_mix(h, st_last_index(&n->st));
		/* a leader backing off through a long divergent log moves too */
		if (n->last.role == RAFT_LEADER)
			for (j = 1; j <= s->n_ids; j++)
			{
				raft_progress_info pi;

				if (j != i && raft_get_progress(n->r, (raft_id) j, &pi) == RAFT_OK)
					h = hash_mix(hash_mix(h, pi.next), pi.match);
			}
	}
	return h;
}

/* entries the furthest behind server may have to receive when healed */
static raft_index
heal_backlog(sim *s)
{
	raft_index	hi = 0,
				lo = UINT64_MAX;
	int			i;

	for (i = 1; i <= s->n_ids; i++)
	{
		sim_node   *n = &s->nodes[i];

		if (!n->started || n->retired)
			continue;
		if (st_last_index(&n->st) > hi)
			hi = st_last_index(&n->st);
		if (n->st.sm.applied < lo)
			lo = n->st.sm.applied;
	}
	return hi > lo ? hi - lo : 0;
}

static void
liveness_failure(sim *s, const char *why)
{
	char		buf[1536];
	size_t		k = 0;
	int			i;
	sim_node   *l = current_leader(s);
	raft_index	target = s->final_index > s->max_acked ? s->final_index : s->max_acked;

	k += (size_t) snprintf(buf + k, sizeof(buf) - k,
						   "liveness: %s "
						   "(leader %llu, final proposal %s, must apply %llu):",
						   why, l ? (unsigned long long) l->id : 0ULL,
						   s->final_acked ? "acknowledged" : "not acknowledged",
						   (unsigned long long) target);
	for (i = 1; i <= s->n_ids && k < sizeof(buf) - 160; i++)
	{
		sim_node   *n = &s->nodes[i];

		if (!n->started)
			continue;
		if (!n->up)
		{
			k += (size_t) snprintf(buf + k, sizeof(buf) - k, " [n%d %s]", i,
								   n->retired ? "retired" : "down");
			continue;
		}
		k += (size_t) snprintf(buf + k, sizeof(buf) - k,
							   " [n%d %s t%llu last %llu commit %llu applied %llu%s%s]", i,
							   raft_role_name(n->last.role),
							   (unsigned long long) n->last.term,
							   (unsigned long long) n->last.last_index,
							   (unsigned long long) n->last.commit,
							   (unsigned long long) n->st.sm.applied,
							   n->last.voter ? "" : " non-voter",
							   n->snap_pending ? " snapshot pending" : "");
	}
	sim_fail(s, "%s", buf);
}

/* ----------
 * One seed
 * ----------
 */
static void
build_config(sim *s, raft_config *c, int n, raft_server *servers, char names[][2][16])
{
	int			i;

	(void) s;
	c->n = (uint32_t) n;
	c->servers = servers;
	for (i = 0; i < n; i++)
	{
		snprintf(names[i][0], 16, "n%d", i + 1);
		snprintf(names[i][1], 16, "addr%d", i + 1);
		servers[i].id = (raft_id) (i + 1);
		servers[i].role = RAFT_VOTER;
		servers[i].name = names[i][0];
		servers[i].address = names[i][1];
	}
}

static void
cleanup(sim *s)
{
	int			i;
	size_t		k;

	for (i = 0; i < SIM_MAX_NODES; i++)
	{
		sim_node   *n = &s->nodes[i];

		if (n->r)
			raft_destroy(n->r);
		n->r = NULL;
		st_free(&n->st);
		free(n->props);
		free(n->reads);
	}
	if (s->scratch_live)
		raft_message_free(&s->scratch_msg);
	s->scratch_live = false;
	free(s->cur_buf);
	s->cur_buf = NULL;
	ev_free_all(s);
	logmap_free(&s->lmap);
	free(s->applied);
	free(s->leaders);
	free(s->encbuf);
	raft_config_free(&s->committed_cfg);
	if (s->ring)
	{
		for (k = 0; k < SIM_RING; k++)
			free(s->ring[k]);
		free(s->ring);
	}
}

static void
add_stats(sim_stats *t, const sim_stats *x)
{
	t->steps += x->steps;
	t->msgs_sent += x->msgs_sent;
	t->msgs_delivered += x->msgs_delivered;
	t->msgs_dropped += x->msgs_dropped;
	t->elections += x->elections;
	t->crashes += x->crashes;
	t->crash_mid += x->crash_mid;
	t->persist_fails += x->persist_fails;
	t->proposals += x->proposals;
	t->acked += x->acked;
	t->applied_max += x->applied_max;
	t->snapshots += x->snapshots;
	t->compactions += x->compactions;
	t->fetches += x->fetches;
	t->reads_ok += x->reads_ok;
	t->reads_ignored += x->reads_ignored;
	t->member_changes += x->member_changes;
	t->transfers += x->transfers;
	t->heal_ticks += x->heal_ticks;
}

static void
print_stats(const char *what, const sim_stats *t)
{
	printf("%s: %llu steps, %llu messages (%llu delivered, %llu dropped), %llu leaders elected, "
		   "%llu crashes (%llu between ready and persist), %llu failed persists, %llu proposals "
		   "(%llu acknowledged), %llu entries applied, %llu snapshots installed, %llu compactions, "
		   "%llu fetches, %llu reads answered (%llu unexpected answers ignored), %llu membership changes, "
		   "%llu transfers\n",
		   what,
		   (unsigned long long) t->steps, (unsigned long long) t->msgs_sent,
		   (unsigned long long) t->msgs_delivered, (unsigned long long) t->msgs_dropped,
		   (unsigned long long) t->elections, (unsigned long long) t->crashes,
		   (unsigned long long) t->crash_mid, (unsigned long long) t->persist_fails,
		   (unsigned long long) t->proposals, (unsigned long long) t->acked,
		   (unsigned long long) t->applied_max, (unsigned long long) t->snapshots,
		   (unsigned long long) t->compactions, (unsigned long long) t->fetches,
		   (unsigned long long) t->reads_ok,
		   (unsigned long long) t->reads_ignored,
		   (unsigned long long) t->member_changes, (unsigned long long) t->transfers);
}

/* the cluster size of a seed: the first draw of its generator */
static int
seed_nodes(sim_rng *g)
{
	int			k = PICK_I(g, 3, 3, 5, 5, 7);

	return opt_nodes ? opt_nodes : k;
}

/* returns true when the seed passed */
static bool
run_seed(uint64_t seed)
{
	static sim	S;				/* large; one at a time */
	sim		   *s = &S;
	raft_server servers[SIM_MAX_NODES];
	char		names[SIM_MAX_NODES][2][16];
	raft_config boot_cfg;
	raft_entry	boot;
	sim_event	e;
	int			i,
				rc;
	volatile bool passed = false;
	volatile int64_t heal_start = 0;
	volatile int64_t last_progress = 0;
	volatile uint64_t mark = 0;
	volatile raft_index backlog = 0;
	int64_t		window,
				cap;
	char		cmd[256];

	memset(s, 0, sizeof(*s));
	s->seed = seed;
	s->verbose = opt_verbose;
	s->trace = opt_trace;
	s->rng.s = hash_mix(seed, 0x5241465453494dULL);
	s->n_init = seed_nodes(&s->rng);
	s->n_ids = s->n_init + 10;	/* spare ids to add; never reused */
	if (s->n_ids > SIM_MAX_NODES - 1)
		s->n_ids = SIM_MAX_NODES - 1;
	s->fault_steps = opt_steps ? opt_steps : DEFAULT_STEPS;
	draw_profile(s);
	memset(&boot, 0, sizeof(boot));

	if (setjmp(s->fail_jmp) != 0)
	{
		reproduce(cmd, sizeof(cmd), seed);
		if (s->verbose)
			sim_dump_ring(s);
		printf("FAIL seed=%llu nodes=%d: %s  reproduce: %s\n",
			   (unsigned long long) seed, s->n_init, s->fail_msg, cmd);
		goto out;
	}

	if (s->verbose)
		print_profile(s);
	for (i = 1; i < SIM_MAX_NODES; i++)
		s->nodes[i].id = (raft_id) i;

	/* the cluster as formed before the run */
	build_config(s, &boot_cfg, s->p.bootstrap_all ? s->n_init : 1, servers, names);
	rc = raft_bootstrap_entry(&boot_cfg, &boot);
	if (rc != RAFT_OK)
		sim_fail(s, "raft_bootstrap_entry: %s", raft_strerror(rc));
	if (boot.index != 1 || boot.term != 1 || boot.type != RAFT_ENTRY_CONFIG)
		sim_fail(s, "raft_bootstrap_entry: entry %llu term %llu type %u, expected 1/1/config",
				 (unsigned long long) boot.index, (unsigned long long) boot.term, boot.type);
	for (i = 1; i <= (s->p.bootstrap_all ? s->n_init : 1); i++)
	{
		node_init_storage(s, &s->nodes[i], &boot);
		check_log_entry(s, &s->nodes[i], 1, 1,
						entry_hash(boot.type, boot.data, boot.len), 0, "bootstrapped");
	}
	raft_free(boot.data);
	boot.data = NULL;
	/* in the other mode the remaining initial servers join as spares */
	s->next_spare = s->p.bootstrap_all ? s->n_init + 1 : 2;
	for (i = 1; i <= s->n_ids; i++)
		if (s->nodes[i].started)
			node_start(s, &s->nodes[i]);
	if (!s->p.bootstrap_all || s->p.campaign_at_start)
	{
		sim_node   *n = &s->nodes[1 + rng_below(&s->rng, s->p.bootstrap_all ? (uint64_t) s->n_init : 1)];

		rc = raft_campaign(n->r);
		sim_log(s, "operator: node %llu campaigns at start: %s",
				(unsigned long long) n->id, ok_or(rc));
		if (rc != RAFT_OK)
			sim_fail(s, "node %llu: raft_campaign at start returned %s",
					 (unsigned long long) n->id, raft_strerror(rc));
		node_after_input(s, n);
	}

	memset(&e, 0, sizeof(e));
	e.type = EV_CHAOS;
	e.time = s->now + 1;
	ev_push(s, &e);
	schedule_partition(s);

	while (ev_pop(s, &e))
	{
		sim_node   *n = e.node ? &s->nodes[e.node] : NULL;

		s->now = e.time;
		s->step++;
		progress->step = s->step;
		if (!s->healing && s->step > s->fault_steps)
		{
			begin_heal(s);
			heal_start = last_progress = s->now;
			mark = progress_mark(s);
			backlog = heal_backlog(s);
		}
		switch (e.type)
		{
			case EV_DELIVER:
				s->cur_buf = e.buf;
				net_deliver(s, &e);
				free(e.buf);
				s->cur_buf = NULL;
				break;
			case EV_TICK:
				if (n->up && n->inc == e.inc)
				{
					raft_tick(n->r);
					node_after_input(s, n);
					if (n->up && n->inc == e.inc)
					{
						e.time = s->now + n->tick_period;
						ev_push(s, &e);
					}
				}
				break;
			case EV_READY:
				if (n->up && n->inc == e.inc && n->ready_scheduled)
					node_host_loop(s, n);
				break;
			case EV_SNAPSHOT:
				if (n->up && n->inc == e.inc)
					node_snapshot_install(s, n);
				break;
			case EV_CHAOS:
				if (!s->healing)
					chaos(s);
				break;
			case EV_PARTITION:
				if (!s->healing)
				{
					net_partition(s);
					schedule_partition(s);
				}
				break;
			case EV_RESTART:
				if (!s->healing && !n->up && !n->retired)
					node_start(s, n);
				break;
			case EV_RETIRE:
				if (n->retire_pending)
					retire(s, n);
				break;
		}
		/*
		 * Liveness: once healed, the cluster must keep making progress --
		 * no window of HEAL_WINDOW election timeouts without a commit or
		 * apply index moving -- and be done within HEAL_CAP of them.
		 */
		if (s->healing)
		{
			uint64_t	m;

			if (heal_done(s))
			{
				s->stats.heal_ticks = (uint64_t) ((s->now - heal_start) / SIM_TICK);
				break;
			}
			m = progress_mark(s);
			if (m != mark)
			{
				mark = m;
				last_progress = s->now;
			}
			window = (int64_t) s->p.election_ticks * HEAL_WINDOW * SIM_TICK;
			cap = ((int64_t) s->p.election_ticks * HEAL_CAP + 4 * (int64_t) backlog) * SIM_TICK;
			if (s->now - last_progress > window)
				liveness_failure(s, "no progress for " STR(HEAL_WINDOW) " election timeouts after healing");
			if (s->now - heal_start > cap)
				liveness_failure(s, "not done " STR(HEAL_CAP) " election timeouts (plus 4 ticks an entry "
								 "of backlog) after healing");
		}
	}
	if (!s->healing)
		sim_fail(s, "the event queue ran dry");
	passed = true;
	s->stats.steps = s->step;
	if (s->verbose)
	{
		print_stats("seed stats", &s->stats);
		printf("seed %llu passed (heal phase took %llu ticks)\n", (unsigned long long) seed,
			   (unsigned long long) s->stats.heal_ticks);
	}

out:
	s->stats.steps = s->step;
	add_stats(&progress->total, &s->stats);
	progress->runs++;
	cleanup(s);
	fflush(stdout);
	return passed;
}

static void
usage(void)
{
	fprintf(stderr,
			"usage: raftsim [--seeds N] [--first-seed S] [--nodes 3|5|7] [--steps T]\n"
			"               [--verbose] [--trace] [--no-fork]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	int			i;
	uint64_t	passed = 0,
				failed = 0,
				seed;
	struct timespec t0,
				t1;
	double		secs;

	/* a failure of the sanitizer build is reproduced with that build */
	if (strstr(argv[0], "build-san") != NULL)
		opt_binary = "test/unit/build-san/raftsim";
	for (i = 1; i < argc; i++)
	{
		const char *a = argv[i];

		if (strcmp(a, "--seeds") == 0 && i + 1 < argc)
			opt_seeds = strtoull(argv[++i], NULL, 10);
		else if (strcmp(a, "--first-seed") == 0 && i + 1 < argc)
			opt_first = strtoull(argv[++i], NULL, 10);
		else if (strcmp(a, "--nodes") == 0 && i + 1 < argc)
		{
			opt_nodes = atoi(argv[++i]);
			if (opt_nodes < 1 || opt_nodes > SIM_MAX_NODES - 5)
				usage();
		}
		else if (strcmp(a, "--steps") == 0 && i + 1 < argc)
			opt_steps = strtoull(argv[++i], NULL, 10);
		else if (strcmp(a, "--verbose") == 0)
			opt_verbose = true;
		else if (strcmp(a, "--trace") == 0)
			opt_trace = true;
		else if (strcmp(a, "--no-fork") == 0)
			opt_fork = false;
		else
			usage();
	}

	/* shared with the children (POSIX has no MAP_ANONYMOUS: map /dev/zero) */
	{
		int			fd = open("/dev/zero", O_RDWR);

		progress = fd < 0 ? MAP_FAILED :
			mmap(NULL, sizeof(shared_progress), PROT_READ | PROT_WRITE,
				 MAP_SHARED, fd, 0);
		if (fd >= 0)
			close(fd);
		if (progress == MAP_FAILED)
			progress = &local_progress;
	}
	memset(progress, 0, sizeof(*progress));
	clock_gettime(CLOCK_MONOTONIC, &t0);

	for (seed = opt_first; seed < opt_first + opt_seeds; seed++)
	{
		bool		ok;

		progress->seed = seed;
		progress->step = 0;
		if (!opt_fork)
			ok = run_seed(seed);
		else
		{
			pid_t		pid;
			int			status;

			fflush(stdout);
			fflush(stderr);
			pid = fork();
			if (pid < 0)
			{
				perror("fork");
				return 2;
			}
			if (pid == 0)
			{
				alarm(20);
				exit(run_seed(seed) ? 0 : 3);
			}
			if (waitpid(pid, &status, 0) < 0)
			{
				perror("waitpid");
				return 2;
			}
			ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
			if (!ok && !(WIFEXITED(status) && WEXITSTATUS(status) == 3))
			{
				char		cmd[256];
				sim_rng		g;
				int			nodes;

				g.s = hash_mix(seed, 0x5241465453494dULL);
				nodes = seed_nodes(&g);
				reproduce(cmd, sizeof(cmd), seed);
				if (WIFSIGNALED(status))
					printf("FAIL seed=%llu nodes=%d: step %llu: the simulation died of signal %d (%s; an "
						   "assertion in the core, a crash or a hang)  reproduce: %s\n",
						   (unsigned long long) seed, nodes,
						   (unsigned long long) progress->step, WTERMSIG(status),
						   strsignal(WTERMSIG(status)), cmd);
				else
					printf("FAIL seed=%llu nodes=%d: step %llu: the simulation exited with status %d "
						   "(a sanitizer report above?)  reproduce: %s\n",
						   (unsigned long long) seed, nodes,
						   (unsigned long long) progress->step, WEXITSTATUS(status), cmd);
			}
		}
		if (ok)
			passed++;
		else
			failed++;
		fflush(stdout);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double) (t1.tv_sec - t0.tv_sec) + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9;
	if (opt_seeds > 1)
	{
		print_stats("raftsim totals", &progress->total);
		printf("raftsim: %llu seeds in %.1f s (%.1f seeds/s)\n",
			   (unsigned long long) opt_seeds, secs, secs > 0 ? (double) opt_seeds / secs : 0.0);
	}
	printf("%llu passed, %llu failed\n", (unsigned long long) passed,
		   (unsigned long long) failed);
	return failed ? 1 : 0;
}
