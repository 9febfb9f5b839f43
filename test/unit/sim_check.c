/*
 * sim_check.c
 *	  raftsim's global invariants (dissertation figure 3.2 and 3.6):
 *
 *	  Election Safety		at most one leader per term
 *	  Log Matching			one (index, term) is one entry with one
 *							predecessor, on every node, sent or persisted
 *	  Leader Completeness	a new leader's durable log holds every entry
 *							committed in an earlier term
 *	  State Machine Safety	one entry per index is applied anywhere; the
 *							state machines agree (running hash); a commit
 *							index always names the entry committed there
 *	  the commit rule		a leader advances its commit only to an entry
 *							of its own term, held durably by a majority of
 *							the voters of its configuration
 *	  monotonicity			commit within an incarnation, durable term
 *
 * The host-contract checks (what a ready batch persists, sends and hands
 * out) are in sim_node.c; linearizable reads and the membership-change
 * rules of raft.h are checked where the client calls the core (sim_node.c,
 * raftsim.c).
 */
#include <stdlib.h>
#include <string.h>

#include "sim.h"

bool
config_has(const raft_config *c, raft_id id, bool voter_only)
{
	uint32_t	i;

	for (i = 0; i < c->n; i++)
		if (c->servers[i].id == id)
			return !voter_only || c->servers[i].role == RAFT_VOTER;
	return false;
}

int
config_voters(const raft_config *c)
{
	uint32_t	i;
	int			v = 0;

	for (i = 0; i < c->n; i++)
		if (c->servers[i].role == RAFT_VOTER)
			v++;
	return v;
}

void
check_log_entry(sim *s, sim_node *n, raft_index index, raft_term term,
				uint64_t hash, raft_term prev_term, const char *what)
{
	logmap_slot *sl = logmap_get(&s->lmap, index, term);

	if (sl->index == 0)
	{
		sl->index = index;
		sl->term = term;
		sl->hash = hash;
		sl->prev_term = prev_term;
		sl->first_node = n->id;
		sl->first_step = s->step;
		return;
	}
	if (sl->hash != hash)
		sim_fail(s, "Log Matching: node %llu %s entry %llu of term %llu with a content "
				 "different from the one node %llu had at step %llu",
				 (unsigned long long) n->id, what, (unsigned long long) index,
				 (unsigned long long) term, (unsigned long long) sl->first_node,
				 (unsigned long long) sl->first_step);
	if (sl->prev_term != prev_term)
		sim_fail(s, "Log Matching: node %llu %s entry %llu of term %llu after an entry of term %llu; "
				 "node %llu had it after term %llu (step %llu)",
				 (unsigned long long) n->id, what, (unsigned long long) index,
				 (unsigned long long) term, (unsigned long long) prev_term,
				 (unsigned long long) sl->first_node,
				 (unsigned long long) sl->prev_term,
				 (unsigned long long) sl->first_step);
}

static void
applied_reserve(sim *s, raft_index idx)
{
	if (idx >= s->cap_applied)
	{
		raft_index	ncap = s->cap_applied ? s->cap_applied * 2 : 1024;

		while (ncap <= idx)
			ncap *= 2;
		s->applied = xrealloc(s->applied, ncap * sizeof(sim_applied));
		memset(s->applied + s->cap_applied, 0,
			   (ncap - s->cap_applied) * sizeof(sim_applied));
		s->cap_applied = ncap;
	}
}

/*
 * A node's commit index names an entry of its log, which must be the one
 * committed there: every node that names index i names the same term, and
 * it is the term applied at i.  Checked when the node's view equals its
 * durable log (after advance or persist_failed).
 */
void
check_commit_claim(sim *s, sim_node *n, raft_index c)
{
	raft_term	t;
	sim_applied *a;

	if (c == 0 || c <= n->st.snap_index || c > st_last_index(&n->st))
		return;
	t = st_term_at(&n->st, c);
	applied_reserve(s, c);
	a = &s->applied[c];
	if (c <= s->max_applied && a->term != t)
		sim_fail(s, "node %llu (term %llu) has commit index %llu on its entry of term %llu, but the "
				 "entry committed there has term %llu (applied on node %llu)",
				 (unsigned long long) n->id, (unsigned long long) n->last.term,
				 (unsigned long long) c, (unsigned long long) t,
				 (unsigned long long) a->term, (unsigned long long) a->node);
	if (a->claim == 0)
	{
		a->claim = t;
		a->claim_node = n->id;
	}
	else if (a->claim != t)
		sim_fail(s, "node %llu has commit index %llu on an entry of term %llu, node %llu had it on "
				 "one of term %llu",
				 (unsigned long long) n->id, (unsigned long long) c, (unsigned long long) t,
				 (unsigned long long) a->claim_node, (unsigned long long) a->claim);
}

void
record_applied(sim *s, sim_node *n, const sim_entry *x)
{
	sim_sm	   *sm = &n->st.sm;
	raft_index	idx = x->index;
	uint64_t	cum = hash_mix(sm->cum, hash_mix(x->hash, x->term));

	if (idx != sm->applied + 1)
		sim_fail(s, "node %llu applies %llu after %llu", (unsigned long long) n->id,
				 (unsigned long long) idx, (unsigned long long) sm->applied);
	applied_reserve(s, idx);
	if (idx <= s->max_applied)
	{
		sim_applied *a = &s->applied[idx];

		if (a->term != x->term || a->hash != x->hash)
			sim_fail(s, "State Machine Safety: node %llu applies entry %llu of term %llu (type %u), "
					 "node %llu applied term %llu (type %u) there",
					 (unsigned long long) n->id, (unsigned long long) idx,
					 (unsigned long long) x->term, x->type,
					 (unsigned long long) a->node, (unsigned long long) a->term, a->type);
		if (a->cum != cum)
			sim_fail(s, "State Machine Safety: node %llu's state after applying %llu differs "
					 "from node %llu's", (unsigned long long) n->id,
					 (unsigned long long) idx, (unsigned long long) a->node);
	}
	else
	{
		sim_applied *a = &s->applied[idx];

		if (idx != s->max_applied + 1)
			sim_fail(s, "node %llu applies %llu, but nothing was ever applied at %llu",
					 (unsigned long long) n->id, (unsigned long long) idx,
					 (unsigned long long) s->max_applied + 1);
		if (a->claim != 0 && a->claim != x->term)
			sim_fail(s, "State Machine Safety: node %llu applies entry %llu of term %llu, but node %llu "
					 "had its commit index on an entry of term %llu there",
					 (unsigned long long) n->id, (unsigned long long) idx,
					 (unsigned long long) x->term, (unsigned long long) a->claim_node,
					 (unsigned long long) a->claim);
		a->term = x->term;
		a->type = x->type;
		a->hash = x->hash;
		a->cum = cum;
		a->node = n->id;
		s->max_applied = idx;
		s->stats.applied_max = idx;
	}
	sm->applied = idx;
	sm->applied_term = x->term;
	sm->cum = cum;
	if (s->trace)
		sim_log(s, "node %llu: apply %llu (term %llu, %s)", (unsigned long long) n->id,
				(unsigned long long) idx, (unsigned long long) x->term,
				x->type == RAFT_ENTRY_NORMAL ? "normal" :
				x->type == RAFT_ENTRY_NOOP ? "noop" : "config");
}

static void
schedule_retire(sim *s, raft_id id)
{
	sim_node   *n = &s->nodes[id];
	sim_event	e;

	if (n->retired || n->retire_pending)
		return;
	n->retire_pending = true;
	memset(&e, 0, sizeof(e));
	e.type = EV_RETIRE;
	e.node = (uint8_t) id;
	e.time = s->now + (s->healing ? 0 :
					   rng_range(&s->rng, 0, (int64_t) s->p.election_ticks * 4 * SIM_TICK));
	ev_push(s, &e);
}

/* a configuration was applied: servers it removed are shut down later */
void
record_committed_config(sim *s, raft_index index, const raft_config *c)
{
	uint32_t	i;
	int			rc;

	if (index <= s->committed_cfg_index)
		return;
	for (i = 0; i < s->committed_cfg.n; i++)
	{
		raft_id		id = s->committed_cfg.servers[i].id;

		if (!config_has(c, id, false) && id < SIM_MAX_NODES)
		{
			sim_log(s, "committed config at %llu removes node %llu", (unsigned long long) index,
					(unsigned long long) id);
			schedule_retire(s, id);
		}
	}
	raft_config_free(&s->committed_cfg);
	rc = raft_config_copy(c, &s->committed_cfg);
	if (rc != RAFT_OK)
		sim_fail(s, "raft_config_copy: %s", raft_strerror(rc));
	s->committed_cfg_index = index;
	if (sim_logging(s))
	{
		char		buf[512];
		size_t		k = 0;

		buf[0] = '\0';
		for (i = 0; i < c->n && k < sizeof(buf) - 16; i++)
			k += (size_t) snprintf(buf + k, sizeof(buf) - k, " %llu%s",
								   (unsigned long long) c->servers[i].id,
								   c->servers[i].role == RAFT_VOTER ? "" : "(learner)");
		sim_log(s, "committed config at %llu:%s", (unsigned long long) index, buf);
	}
}

void
check_leader_completeness(sim *s, sim_node *n, raft_term term)
{
	const sim_storage *st = &n->st;
	raft_index	k;

	if (st->snap_index > 0 && st->snap_index <= s->max_applied &&
		s->applied[st->snap_index].term != st->snap_term)
		sim_fail(s, "Leader Completeness: new leader %llu of term %llu has a snapshot at %llu of term "
				 "%llu, but the entry committed there has term %llu",
				 (unsigned long long) n->id, (unsigned long long) term,
				 (unsigned long long) st->snap_index, (unsigned long long) st->snap_term,
				 (unsigned long long) s->applied[st->snap_index].term);
	for (k = st->snap_index + 1; k <= s->max_applied; k++)
	{
		const sim_entry *e = st_entry(st, k);
		const sim_applied *a = &s->applied[k];

		/*
		 * Only what was committed in an earlier term: a candidate can
		 * collect late votes for a term below that of a leader that has
		 * committed more since (it then leads nobody).
		 */
		if (k > s->cterm_mark || a->cterm == 0 || a->cterm >= term)
			continue;
		if (e == NULL)
			sim_fail(s, "Leader Completeness: node %llu became leader of term %llu without committed "
					 "entry %llu (term %llu, applied on node %llu); its durable log ends at %llu",
					 (unsigned long long) n->id, (unsigned long long) term,
					 (unsigned long long) k, (unsigned long long) a->term,
					 (unsigned long long) a->node,
					 (unsigned long long) st_last_index(st));
		if (e->term != a->term || e->hash != a->hash)
			sim_fail(s, "Leader Completeness: node %llu became leader of term %llu with entry %llu of "
					 "term %llu, but the committed entry there has term %llu (applied on node %llu)",
					 (unsigned long long) n->id, (unsigned long long) term,
					 (unsigned long long) k, (unsigned long long) e->term,
					 (unsigned long long) a->term, (unsigned long long) a->node);
	}
}

void
check_commit_quorum(sim *s, sim_node *n, raft_index c)
{
	const sim_storage *st = &n->st;
	const raft_config *cfg = raft_get_config(n->r);
	raft_term	t;
	int			voters = 0,
				have = 0;
	uint32_t	i;
	char		who[256];
	size_t		k = 0;

	if (c <= st->snap_index)
		return;
	if (c > st_last_index(st))
		sim_fail(s, "leader %llu of term %llu advanced its commit to %llu, beyond its durable log "
				 "(%llu): it counted entries not yet persisted",
				 (unsigned long long) n->id, (unsigned long long) n->last.term,
				 (unsigned long long) c, (unsigned long long) st_last_index(st));
	t = st_term_at(st, c);
	if (t != n->last.term)
		sim_fail(s, "leader %llu of term %llu advanced its commit to %llu, an entry of term %llu: "
				 "only entries of the leader's term are committed by counting replicas (3.6.2)",
				 (unsigned long long) n->id, (unsigned long long) n->last.term,
				 (unsigned long long) c, (unsigned long long) t);
	who[0] = '\0';
	for (i = 0; i < cfg->n; i++)
	{
		raft_id		id = cfg->servers[i].id;
		const sim_storage *xs;

		if (cfg->servers[i].role != RAFT_VOTER)
			continue;
		voters++;
		if (id >= SIM_MAX_NODES || !s->nodes[id].started)
			continue;
		xs = &s->nodes[id].st;
		if (xs->snap_index >= c || st_term_at(xs, c) == t)
		{
			have++;
			if (k < sizeof(who) - 24)
				k += (size_t) snprintf(who + k, sizeof(who) - k, " %llu", (unsigned long long) id);
		}
	}
	if (have * 2 <= voters)
		sim_fail(s, "leader %llu of term %llu advanced its commit to %llu, but only %d of its %d voters "
				 "hold that entry durably (nodes:%s)",
				 (unsigned long long) n->id, (unsigned long long) n->last.term,
				 (unsigned long long) c, have, voters, who);
}

void
check_status(sim *s, sim_node *n)
{
	raft_status st;
	raft_status *prev = &n->last;
	bool		fresh = prev->role == 0;

	raft_get_status(n->r, &st);
	if (st.id != n->id)
		sim_fail(s, "node %llu reports id %llu", (unsigned long long) n->id,
				 (unsigned long long) st.id);
	if (!fresh && st.commit < prev->commit)
		sim_fail(s, "node %llu: commit index went back from %llu to %llu (term %llu)",
				 (unsigned long long) n->id, (unsigned long long) prev->commit,
				 (unsigned long long) st.commit, (unsigned long long) st.term);
	if (st.term < n->st.hs.term)
		sim_fail(s, "node %llu: term %llu below its durable term %llu",
				 (unsigned long long) n->id, (unsigned long long) st.term,
				 (unsigned long long) n->st.hs.term);
	if (st.commit > st.last_index && st.commit > st.snapshot_index)
		sim_fail(s, "node %llu: commit %llu beyond its last index %llu",
				 (unsigned long long) n->id, (unsigned long long) st.commit,
				 (unsigned long long) st.last_index);
	if (st.applied > st.commit)
		sim_fail(s, "node %llu: applied %llu beyond commit %llu",
				 (unsigned long long) n->id, (unsigned long long) st.applied,
				 (unsigned long long) st.commit);
	if (st.commit > s->max_commit)
		s->max_commit = st.commit;

	if (st.role == RAFT_LEADER)
	{
		/* entries this leader's commit covers first are committed in its term */
		if (st.commit > s->cterm_mark)
		{
			raft_index	k;

			applied_reserve(s, st.commit);
			for (k = s->cterm_mark + 1; k <= st.commit; k++)
				s->applied[k].cterm = st.term;
			s->cterm_mark = st.commit;
		}
		if (st.term >= s->cap_leaders)
		{
			raft_term	ncap = s->cap_leaders ? s->cap_leaders * 2 : 256;

			while (ncap <= st.term)
				ncap *= 2;
			s->leaders = xrealloc(s->leaders, ncap * sizeof(raft_id));
			memset(s->leaders + s->cap_leaders, 0,
				   (ncap - s->cap_leaders) * sizeof(raft_id));
			s->cap_leaders = ncap;
		}
		if (s->leaders[st.term] == 0)
		{
			s->leaders[st.term] = n->id;
			s->stats.elections++;
		}
		else if (s->leaders[st.term] != n->id)
			sim_fail(s, "Election Safety: node %llu and node %llu are both leaders of term %llu",
					 (unsigned long long) s->leaders[st.term],
					 (unsigned long long) n->id, (unsigned long long) st.term);
		if (prev->role != RAFT_LEADER || prev->term != st.term)
		{
			sim_log(s, "node %llu is LEADER of term %llu (log %llu/%llu, commit %llu)",
					(unsigned long long) n->id, (unsigned long long) st.term,
					(unsigned long long) st.last_index, (unsigned long long) st.last_term,
					(unsigned long long) st.commit);
			check_leader_completeness(s, n, st.term);
		}
		else if (st.commit > prev->commit)
		{
			n->last = st;
			check_commit_quorum(s, n, st.commit);
		}
	}
	else if (sim_logging(s) && !fresh && (prev->role != st.role || prev->term != st.term))
		sim_log(s, "node %llu is %s of term %llu", (unsigned long long) n->id,
				raft_role_name(st.role), (unsigned long long) st.term);
	n->last = st;
}
