/*
 * sim_node.c
 *	  raftsim's hosts: durable storage, the host loop of raft.h's contract,
 *	  crash and restart, snapshot install and compaction.
 *
 * Every ready batch is checked against the contract before it is acted on:
 * what it asks to persist (contiguous, never truncating what is committed,
 * terms and votes that only move forward), what it sends (no message ahead
 * of the durable term, no vote granted before it is durable, no append
 * acknowledged before it is durable) and what it hands out to apply
 * (contiguous, committed, already durable on this node).
 */
#include <stdlib.h>
#include <string.h>

#include "sim.h"

/* the core's allocator (src/raft/heap.c): what fetch hands out, it frees */
extern void *raft_malloc(size_t size);

/* ----------
 * Storage
 * ----------
 */
raft_index
st_last_index(const sim_storage *st)
{
	return st->snap_index + st->n_log;
}

const sim_entry *
st_entry(const sim_storage *st, raft_index i)
{
	if (i <= st->snap_index || i > st_last_index(st))
		return NULL;
	return &st->log[i - st->snap_index - 1];
}

/* term at i; 0 when unknown (compacted or beyond the log) */
raft_term
st_term_at(const sim_storage *st, raft_index i)
{
	const sim_entry *e;

	if (i == 0)
		return 0;
	if (i == st->snap_index)
		return st->snap_term;
	e = st_entry(st, i);
	return e ? e->term : 0;
}

static void
st_truncate(sim_storage *st, raft_index from)
{
	while (st_last_index(st) >= from && st->n_log > 0)
	{
		st->n_log--;
		free(st->log[st->n_log].data);
	}
}

static void
st_append(sim_storage *st, const raft_entry *e, uint64_t hash)
{
	sim_entry  *x;

	if (st->n_log == st->cap_log)
	{
		st->cap_log = st->cap_log ? st->cap_log * 2 : 64;
		st->log = xrealloc(st->log, st->cap_log * sizeof(sim_entry));
	}
	x = &st->log[st->n_log++];
	x->index = e->index;
	x->term = e->term;
	x->type = e->type;
	x->len = e->len;
	x->hash = hash;
	x->data = NULL;
	if (e->len)
	{
		x->data = xmalloc(e->len);
		memcpy(x->data, e->data, e->len);
	}
}

/* drop entries up to and including index */
static void
st_drop_prefix(sim_storage *st, raft_index index)
{
	size_t		k,
				drop;

	if (index <= st->snap_index)
		return;
	drop = (size_t) (index - st->snap_index);
	if (drop > st->n_log)
		drop = st->n_log;
	for (k = 0; k < drop; k++)
		free(st->log[k].data);
	memmove(st->log, st->log + drop, (st->n_log - drop) * sizeof(sim_entry));
	st->n_log -= drop;
}

static void
sm_free_cfgs(sim_sm *sm)
{
	size_t		i;

	for (i = 0; i < sm->n_cfgs; i++)
		raft_config_free(&sm->cfgs[i].cfg);
	free(sm->cfgs);
	sm->cfgs = NULL;
	sm->n_cfgs = sm->cap_cfgs = 0;
}

static void
sm_push_cfg(sim *s, sim_sm *sm, raft_index index, const raft_config *c)
{
	int			rc;

	if (sm->n_cfgs == sm->cap_cfgs)
	{
		sm->cap_cfgs = sm->cap_cfgs ? sm->cap_cfgs * 2 : 8;
		sm->cfgs = xrealloc(sm->cfgs, sm->cap_cfgs * sizeof(sim_cfg_rec));
	}
	sm->cfgs[sm->n_cfgs].index = index;
	memset(&sm->cfgs[sm->n_cfgs].cfg, 0, sizeof(raft_config));
	rc = raft_config_copy(c, &sm->cfgs[sm->n_cfgs].cfg);
	if (rc != RAFT_OK)
		sim_fail(s, "raft_config_copy failed: %s", raft_strerror(rc));
	sm->n_cfgs++;
}

const raft_config *
sm_config_at(const sim_sm *sm, raft_index i)
{
	size_t		k = sm->n_cfgs;

	while (k > 0)
	{
		k--;
		if (sm->cfgs[k].index <= i)
			return &sm->cfgs[k].cfg;
	}
	return NULL;
}

void
st_free(sim_storage *st)
{
	st_truncate(st, 0);
	free(st->log);
	raft_config_free(&st->snap_cfg);
	sm_free_cfgs(&st->sm);
	memset(st, 0, sizeof(*st));
}

void
node_init_storage(sim *s, sim_node *n, const raft_entry *boot)
{
	(void) s;
	memset(&n->st, 0, sizeof(n->st));
	if (boot)
	{
		st_append(&n->st, boot, entry_hash(boot->type, boot->data, boot->len));
		n->st.hs.term = 1;
	}
	n->started = true;
}

/* ----------
 * Start, crash
 * ----------
 */
static void
schedule_tick(sim *s, sim_node *n)
{
	sim_event	e;

	memset(&e, 0, sizeof(e));
	e.type = EV_TICK;
	e.node = (uint8_t) n->id;
	e.inc = n->inc;
	e.time = s->now + n->tick_period;
	ev_push(s, &e);
}

/*
 * raft_options.fetch: the entries from "from" on out of the durable log,
 * as the core's allocator owns them; fails now and then when the profile
 * says so (the core must survive a host that cannot read its log).
 */
static int
sim_fetch(void *ctx, raft_index from, uint32_t max_n, size_t max_bytes,
		  raft_entry **ents, size_t *n)
{
	sim_node   *node = ctx;
	sim		   *s = node->sim;
	const sim_storage *st = &node->st;
	raft_entry *out;
	size_t		k = 0;
	size_t		bytes = 0;
	raft_index	i;

	*ents = NULL;
	*n = 0;
	if (rng_chance(&s->rng, s->p.p_fetch_fail))
		return RAFT_ENOMEM;
	if (st_entry(st, from) == NULL)
		sim_fail(s, "node %llu: the core fetched entry %llu, which its durable log (%llu..%llu) does not hold",
				 (unsigned long long) node->id, (unsigned long long) from,
				 (unsigned long long) st->snap_index + 1,
				 (unsigned long long) st_last_index(st));
	if (from > node->mem_snap)
		sim_fail(s, "node %llu: the core fetched entry %llu, which it holds in memory (compacted to %llu)",
				 (unsigned long long) node->id, (unsigned long long) from,
				 (unsigned long long) node->mem_snap);
	out = raft_malloc(sizeof(raft_entry) * max_n);
	if (out == NULL)
		return RAFT_ENOMEM;
	for (i = from; k < max_n && st_entry(st, i) != NULL; i++)
	{
		const sim_entry *e = st_entry(st, i);

		if (k > 0 && bytes + e->len > max_bytes)
			break;
		out[k].index = e->index;
		out[k].term = e->term;
		out[k].type = e->type;
		out[k].len = e->len;
		out[k].data = NULL;
		if (e->len > 0)
		{
			out[k].data = raft_malloc(e->len);
			if (out[k].data == NULL)
			{
				while (k > 0)
					raft_free(out[--k].data);
				raft_free(out);
				return RAFT_ENOMEM;
			}
			memcpy(out[k].data, e->data, e->len);
		}
		bytes += e->len;
		k++;
	}
	s->stats.fetches++;
	*ents = out;
	*n = k;
	return RAFT_OK;
}

void
node_start(sim *s, sim_node *n)
{
	raft_options o;
	raft_restore rs;
	raft_entry *ents;
	size_t		i;
	int			rc;
	raft_status st;

	raft_options_init(&o, n->id);
	o.election_ticks = s->p.election_ticks;
	o.heartbeat_ticks = s->p.heartbeat_ticks;
	o.pre_vote = s->p.pre_vote;
	o.check_quorum = s->p.check_quorum;
	o.lazy_commit = s->p.lazy_commit;
	o.max_msg_entries = s->p.max_msg_entries;
	o.max_msg_bytes = s->p.max_msg_bytes;
	o.max_inflight = s->p.max_inflight;
	o.seed = hash_mix(s->seed, n->id * 1000003ULL + n->inc);
	if (s->p.fetch)
	{
		o.fetch = sim_fetch;
		o.fetch_ctx = n;
	}
	n->sim = s;
	n->mem_snap = n->st.snap_index;

	memset(&rs, 0, sizeof(rs));
	rs.hard_state = n->st.hs;
	rs.snapshot_index = n->st.snap_index;
	rs.snapshot_term = n->st.snap_term;
	rs.snapshot_config = n->st.snap_cfg;
	ents = xcalloc(n->st.n_log, sizeof(raft_entry));
	for (i = 0; i < n->st.n_log; i++)
	{
		ents[i].index = n->st.log[i].index;
		ents[i].term = n->st.log[i].term;
		ents[i].type = n->st.log[i].type;
		ents[i].len = n->st.log[i].len;
		ents[i].data = n->st.log[i].data;
	}
	rs.entries = ents;
	rs.n_entries = n->st.n_log;
	rs.applied = n->st.sm.applied;

	rc = raft_create(&o, &rs, &n->r);
	free(ents);
	if (rc != RAFT_OK)
		sim_fail(s, "node %llu: raft_create from its durable storage failed: %s "
				 "(term %llu, vote %llu, commit %llu, snapshot %llu/%llu, log %llu..%llu, applied %llu)",
				 (unsigned long long) n->id, raft_strerror(rc),
				 (unsigned long long) n->st.hs.term, (unsigned long long) n->st.hs.vote,
				 (unsigned long long) n->st.hs.commit,
				 (unsigned long long) n->st.snap_index, (unsigned long long) n->st.snap_term,
				 (unsigned long long) n->st.snap_index + 1,
				 (unsigned long long) st_last_index(&n->st),
				 (unsigned long long) n->st.sm.applied);
	n->inc++;
	n->up = true;
	n->ready_scheduled = false;
	n->snap_pending = false;
	memset(n->vreq, 0, sizeof(n->vreq));
	memset(&n->last, 0, sizeof(n->last));
	n->n_props = 0;
	n->n_reads = 0;
	n->tick_period = SIM_TICK +
		rng_range(&s->rng, -(int64_t) (s->p.skew * SIM_TICK), (int64_t) (s->p.skew * SIM_TICK));

	raft_get_status(n->r, &st);
	if (st.term != n->st.hs.term || st.vote != n->st.hs.vote ||
		st.last_index != st_last_index(&n->st) ||
		st.snapshot_index != n->st.snap_index ||
		st.applied != n->st.sm.applied || st.role != RAFT_FOLLOWER)
		sim_fail(s, "node %llu restarted with a view unlike its storage: status term %llu vote %llu "
				 "last %llu snapshot %llu applied %llu role %s; storage term %llu vote %llu last %llu "
				 "snapshot %llu applied %llu",
				 (unsigned long long) n->id,
				 (unsigned long long) st.term, (unsigned long long) st.vote,
				 (unsigned long long) st.last_index, (unsigned long long) st.snapshot_index,
				 (unsigned long long) st.applied, raft_role_name(st.role),
				 (unsigned long long) n->st.hs.term, (unsigned long long) n->st.hs.vote,
				 (unsigned long long) st_last_index(&n->st),
				 (unsigned long long) n->st.snap_index,
				 (unsigned long long) n->st.sm.applied);
	sim_log(s, "node %llu up (incarnation %u): term %llu vote %llu commit %llu log %llu..%llu applied %llu",
			(unsigned long long) n->id, n->inc,
			(unsigned long long) n->st.hs.term, (unsigned long long) n->st.hs.vote,
			(unsigned long long) n->st.hs.commit,
			(unsigned long long) n->st.snap_index + 1,
			(unsigned long long) st_last_index(&n->st),
			(unsigned long long) n->st.sm.applied);
	schedule_tick(s, n);
	node_after_input(s, n);
}

/* crashes keep at most about half of the servers down at once */
bool
node_may_crash(sim *s)
{
	int			i,
				started = 0,
				down = 0;

	for (i = 1; i <= s->n_ids; i++)
	{
		if (!s->nodes[i].started || s->nodes[i].retired)
			continue;
		started++;
		if (!s->nodes[i].up)
			down++;
	}
	return (down + 1) * 2 <= started + 1;
}

void
node_schedule_restart(sim *s, sim_node *n)
{
	sim_event	e;

	memset(&e, 0, sizeof(e));
	e.type = EV_RESTART;
	e.node = (uint8_t) n->id;
	e.time = s->now + rng_range(&s->rng, 1, s->p.down_max);
	ev_push(s, &e);
}

void
node_crash(sim *s, sim_node *n, const char *why)
{
	if (!n->up)
		return;
	sim_log(s, "node %llu CRASH (%s)", (unsigned long long) n->id, why);
	raft_destroy(n->r);
	n->r = NULL;
	n->up = false;
	n->ready_scheduled = false;
	n->snap_pending = false;
	n->n_props = 0;
	n->n_reads = 0;
	s->stats.crashes++;
}

/* ----------
 * Contract checks on a ready batch, before anything is acted on
 * ----------
 */
static void
check_ready(sim *s, sim_node *n, const raft_ready *rd, const raft_status *before)
{
	const sim_storage *st = &n->st;
	raft_index	last = st_last_index(st);
	raft_index	new_last = last;
	raft_term	new_term = st->hs.term;
	raft_term	prev;
	size_t		i;
	unsigned long long id = (unsigned long long) n->id;

	if (rd->hard_state_changed)
	{
		const raft_hard_state *hs = &rd->hard_state;

		if (hs->term < st->hs.term)
			sim_fail(s, "node %llu: ready lowers the durable term %llu to %llu",
					 id, (unsigned long long) st->hs.term, (unsigned long long) hs->term);
		if (hs->term == st->hs.term && st->hs.vote != 0 && hs->vote != st->hs.vote)
			sim_fail(s, "node %llu: ready changes the durable vote of term %llu from %llu to %llu (double vote)",
					 id, (unsigned long long) hs->term,
					 (unsigned long long) st->hs.vote, (unsigned long long) hs->vote);
		if (hs->commit < st->hs.commit)
			sim_fail(s, "node %llu term %llu: ready lowers the durable commit %llu to %llu",
					 id, (unsigned long long) hs->term,
					 (unsigned long long) st->hs.commit, (unsigned long long) hs->commit);
		new_term = hs->term;
	}

	if (rd->truncate_from)
	{
		raft_index	tf = rd->truncate_from;
		raft_index	k;

		if (tf <= st->snap_index || tf > last)
			sim_fail(s, "node %llu: truncate_from %llu outside the durable log %llu..%llu",
					 id, (unsigned long long) tf,
					 (unsigned long long) st->snap_index + 1, (unsigned long long) last);
		if (tf <= st->sm.applied)
			sim_fail(s, "node %llu: truncate_from %llu removes applied entries (applied %llu)",
					 id, (unsigned long long) tf, (unsigned long long) st->sm.applied);
		if (tf <= st->hs.commit)
			sim_fail(s, "node %llu: truncate_from %llu removes entries of the durable commit %llu",
					 id, (unsigned long long) tf, (unsigned long long) st->hs.commit);
		for (k = tf; k <= last && k <= s->max_applied; k++)
		{
			const sim_entry *e = st_entry(st, k);

			if (e && e->term == s->applied[k].term && e->hash == s->applied[k].hash)
				sim_fail(s, "node %llu: truncate_from %llu removes entry %llu (term %llu), "
						 "which is committed (applied on node %llu)",
						 id, (unsigned long long) tf, (unsigned long long) k,
						 (unsigned long long) e->term,
						 (unsigned long long) s->applied[k].node);
		}
		new_last = tf - 1;
	}

	prev = st_term_at(st, new_last);
	for (i = 0; i < rd->n_entries; i++)
	{
		const raft_entry *e = &rd->entries[i];

		if (e->index != new_last + 1 + i)
			sim_fail(s, "node %llu: ready entry #%zu has index %llu, expected %llu "
					 "(durable last %llu, truncate_from %llu)",
					 id, i, (unsigned long long) e->index,
					 (unsigned long long) (new_last + 1 + i),
					 (unsigned long long) last, (unsigned long long) rd->truncate_from);
		if (e->term < prev)
			sim_fail(s, "node %llu: ready entry %llu has term %llu below its predecessor's %llu",
					 id, (unsigned long long) e->index,
					 (unsigned long long) e->term, (unsigned long long) prev);
		if (e->term > new_term)
			sim_fail(s, "node %llu: ready entry %llu has term %llu above the node's term %llu",
					 id, (unsigned long long) e->index,
					 (unsigned long long) e->term, (unsigned long long) new_term);
		if (e->type < RAFT_ENTRY_NORMAL || e->type > RAFT_ENTRY_CONFIG)
			sim_fail(s, "node %llu: ready entry %llu has type %u",
					 id, (unsigned long long) e->index, e->type);
		prev = e->term;
	}
	new_last += rd->n_entries;
	if (rd->hard_state_changed && rd->hard_state.commit > new_last &&
		rd->hard_state.commit > st->snap_index)
		sim_fail(s, "node %llu: ready persists commit %llu beyond its log (last %llu)",
				 id, (unsigned long long) rd->hard_state.commit,
				 (unsigned long long) new_last);

	for (i = 0; i < rd->n_committed; i++)
	{
		const raft_entry *e = &rd->committed[i];
		const sim_entry *d = st_entry(st, e->index);

		if (e->index != st->sm.applied + 1 + i)
			sim_fail(s, "node %llu: committed entry #%zu has index %llu, expected %llu (applied %llu)",
					 id, i, (unsigned long long) e->index,
					 (unsigned long long) (st->sm.applied + 1 + i),
					 (unsigned long long) st->sm.applied);
		if (e->index > before->commit)
			sim_fail(s, "node %llu: hands out entry %llu to apply beyond its commit %llu",
					 id, (unsigned long long) e->index, (unsigned long long) before->commit);
		if (d == NULL)
			sim_fail(s, "node %llu term %llu: hands out entry %llu to apply, which is not in its "
					 "durable log %llu..%llu (applying what is not yet persisted)",
					 id, (unsigned long long) before->term, (unsigned long long) e->index,
					 (unsigned long long) st->snap_index + 1, (unsigned long long) last);
		if (d->term != e->term || d->hash != entry_hash(e->type, e->data, e->len))
			sim_fail(s, "node %llu: entry %llu handed out to apply (term %llu) differs from the "
					 "durable one (term %llu)",
					 id, (unsigned long long) e->index,
					 (unsigned long long) e->term, (unsigned long long) d->term);
		if (rd->truncate_from && e->index >= rd->truncate_from)
			sim_fail(s, "node %llu: entry %llu handed out to apply is truncated by the same batch",
					 id, (unsigned long long) e->index);
	}
}

/* a message about to be sent, against the durable state before this batch */
static void
check_send(sim *s, sim_node *n, const raft_message *m)
{
	const sim_storage *st = &n->st;
	raft_index	last = st_last_index(st);
	unsigned long long id = (unsigned long long) n->id;
	char		desc[256];

	if (m->from != n->id)
		sim_fail(s, "node %llu sends a message from %llu", id, (unsigned long long) m->from);
	if (m->to == n->id || m->to == 0)
		sim_fail(s, "node %llu sends %s to itself or nobody", id,
				 msg_describe(m, desc, sizeof(desc)));
	if (m->type == 0 || m->type >= RAFT_MSG_LAST)
		sim_fail(s, "node %llu sends a message of type %u", id, m->type);

	/*
	 * PreVote (9.6) is exempt from the durable-term rule: a pre-vote asks
	 * about a term nobody enters, and its answers are not adopted.
	 */
	if (m->type == RAFT_MSG_PREVOTE)
	{
	}
	else if (m->type == RAFT_MSG_PREVOTE_RESP)
	{
		/* a grant carries the term of the request, in the candidate's future */
		if (!m->reject)
		{
			const sim_vreq *v = &n->vreq[m->to < SIM_MAX_NODES ? m->to : 0][1][m->term % SIM_VREQ_RING];

			if (v->term != m->term)
				sim_fail(s, "node %llu grants a pre-vote of term %llu to %llu, which did not ask for it "
						 "(last request term %llu)",
						 id, (unsigned long long) m->term, (unsigned long long) m->to,
						 (unsigned long long) v->term);
			if (!v->ok)
				sim_fail(s, "node %llu grants a pre-vote of term %llu to %llu whose log (last %llu/%llu) "
						 "is behind its own (last %llu/%llu when asked)",
						 id, (unsigned long long) m->term, (unsigned long long) m->to,
						 (unsigned long long) v->index, (unsigned long long) v->log_term,
						 (unsigned long long) v->my_index, (unsigned long long) v->my_term);
		}
	}
	else if (m->term > st->hs.term)
		sim_fail(s, "node %llu sends %s before its term is durable (durable term %llu)",
				 id, msg_describe(m, desc, sizeof(desc)), (unsigned long long) st->hs.term);

	switch (m->type)
	{
		case RAFT_MSG_VOTE:
			if (st->hs.term != m->term || st->hs.vote != n->id)
				sim_fail(s, "node %llu asks for votes in term %llu before its own vote is durable "
						 "(durable term %llu vote %llu)",
						 id, (unsigned long long) m->term,
						 (unsigned long long) st->hs.term, (unsigned long long) st->hs.vote);
			break;
		case RAFT_MSG_VOTE_RESP:
			if (!m->reject)
			{
				const sim_vreq *v = &n->vreq[m->to < SIM_MAX_NODES ? m->to : 0][0][m->term % SIM_VREQ_RING];

				if (st->hs.term != m->term || st->hs.vote != m->to)
					sim_fail(s, "node %llu grants its vote in term %llu to %llu before the vote is durable "
							 "(durable term %llu vote %llu)",
							 id, (unsigned long long) m->term, (unsigned long long) m->to,
							 (unsigned long long) st->hs.term, (unsigned long long) st->hs.vote);
				if (v->term == m->term && !v->ok)
					sim_fail(s, "node %llu grants its vote in term %llu to %llu whose log (last %llu/%llu) "
							 "is behind its own (last %llu/%llu when asked): the up-to-date check (3.6.1)",
							 id, (unsigned long long) m->term, (unsigned long long) m->to,
							 (unsigned long long) v->index, (unsigned long long) v->log_term,
							 (unsigned long long) v->my_index, (unsigned long long) v->my_term);
			}
			break;
		case RAFT_MSG_APPEND_RESP:
			if (!m->reject && m->index > last)
				sim_fail(s, "node %llu term %llu acknowledges entries up to %llu, but only %llu are durable",
						 id, (unsigned long long) m->term, (unsigned long long) m->index,
						 (unsigned long long) last);
			break;
		case RAFT_MSG_APPEND:
			{
				uint32_t	k;
				raft_term	prev = m->log_term;

				for (k = 0; k < m->n_entries; k++)
				{
					const raft_entry *e = &m->entries[k];

					if (e->index != m->index + 1 + k)
						sim_fail(s, "node %llu: %s carries entry index %llu at position %u",
								 id, msg_describe(m, desc, sizeof(desc)),
								 (unsigned long long) e->index, k);
					if (e->term < prev || e->term > m->term)
						sim_fail(s, "node %llu: %s carries entry %llu of term %llu (prev %llu)",
								 id, msg_describe(m, desc, sizeof(desc)),
								 (unsigned long long) e->index,
								 (unsigned long long) e->term, (unsigned long long) prev);
					check_log_entry(s, n, e->index, e->term,
									entry_hash(e->type, e->data, e->len),
									k == 0 ? m->log_term : m->entries[k - 1].term,
									"sent");
					prev = e->term;
				}
				break;
			}
		default:
			break;
	}
}

/* ----------
 * Persist, apply, answer
 * ----------
 */
static void
persist(sim *s, sim_node *n, const raft_ready *rd)
{
	sim_storage *st = &n->st;
	size_t		i;

	if (rd->truncate_from)
		st_truncate(st, rd->truncate_from);
	for (i = 0; i < rd->n_entries; i++)
	{
		const raft_entry *e = &rd->entries[i];
		uint64_t	h = entry_hash(e->type, e->data, e->len);

		check_log_entry(s, n, e->index, e->term, h,
						st_term_at(st, e->index - 1), "persisted");
		st_append(st, e, h);
	}
	if (rd->hard_state_changed)
		st->hs = rd->hard_state;
}

static void
apply_entry(sim *s, sim_node *n, const raft_entry *e)
{
	sim_storage *st = &n->st;
	sim_entry	x;
	size_t		i;

	x.index = e->index;
	x.term = e->term;
	x.type = e->type;
	x.len = e->len;
	x.data = e->data;
	x.hash = entry_hash(e->type, e->data, e->len);
	record_applied(s, n, &x);

	if (e->type == RAFT_ENTRY_CONFIG)
	{
		raft_config c;
		int			rc;

		memset(&c, 0, sizeof(c));
		rc = raft_decode_config(e->data, e->len, &c);
		if (rc != RAFT_OK)
			sim_fail(s, "node %llu: committed config entry %llu does not decode: %s",
					 (unsigned long long) n->id, (unsigned long long) e->index,
					 raft_strerror(rc));
		sm_push_cfg(s, &st->sm, e->index, &c);
		record_committed_config(s, e->index, &c);
		raft_config_free(&c);
	}

	/*
	 * The client's proposals: acknowledged when applied where proposed.
	 * One incarnation may have several at an index (an older term's was
	 * overwritten): every one of them is decided now.
	 */
	for (i = 0; i < n->n_props;)
	{
		sim_prop   *p = &n->props[i];

		if (p->index > e->index)
		{
			i++;
			continue;
		}
		if (p->index == e->index && p->hash == x.hash && e->type == RAFT_ENTRY_NORMAL)
		{
			if (e->index > s->max_acked)
				s->max_acked = e->index;
			s->stats.acked++;
			if (p->final)
			{
				s->final_acked = true;
				s->final_index = e->index;
			}
			if (s->trace)
				sim_log(s, "node %llu: proposal at %llu acknowledged",
						(unsigned long long) n->id, (unsigned long long) e->index);
		}
		else if (s->trace)
			sim_log(s, "node %llu: proposal at %llu lost (another entry committed there)",
					(unsigned long long) n->id, (unsigned long long) p->index);
		n->props[i] = n->props[--n->n_props];
	}
}

static void
answer_read(sim *s, sim_node *n, const raft_read_state *rs)
{
	size_t		i;

	for (i = 0; i < n->n_reads; i++)
	{
		sim_read   *r = &n->reads[i];

		if (r->ctx != rs->ctx)
			continue;
		if (rs->index < r->min_index)
			sim_fail(s, "node %llu: read (ctx %llu, asked at step %llu) answered with index %llu, "
					 "but commit index %llu had already been reached when it was asked "
					 "(linearizability)",
					 (unsigned long long) n->id, (unsigned long long) rs->ctx,
					 (unsigned long long) r->step, (unsigned long long) rs->index,
					 (unsigned long long) r->min_index);
		if (rs->index > s->max_commit)
			sim_fail(s, "node %llu: read (ctx %llu) answered with index %llu, beyond any commit index (%llu)",
					 (unsigned long long) n->id, (unsigned long long) rs->ctx,
					 (unsigned long long) rs->index, (unsigned long long) s->max_commit);
		if (s->trace)
			sim_log(s, "node %llu: read ctx %llu answered: index %llu (>= %llu)",
					(unsigned long long) n->id, (unsigned long long) rs->ctx,
					(unsigned long long) rs->index, (unsigned long long) r->min_index);
		s->stats.reads_ok++;
		n->reads[i] = n->reads[--n->n_reads];
		return;
	}
	/*
	 * raft.h: a read state may come twice (a duplicated message) or for a
	 * ctx the host no longer waits for (asked before a restart); the host
	 * ignores it.  ctx values are unique in a run.
	 */
	s->stats.reads_ignored++;
	if (s->trace)
		sim_log(s, "node %llu: read ctx %llu answered again or after a restart: ignored",
				(unsigned long long) n->id, (unsigned long long) rs->ctx);
}

static void
post_check(sim *s, sim_node *n, bool failed)
{
	raft_status st;
	raft_index	last = st_last_index(&n->st);

	raft_get_status(n->r, &st);
	/* after advance a new leader may already have its no-op in memory */
	if (st.stable_index != last || (failed ? st.last_index != last : st.last_index < last))
		sim_fail(s, "node %llu: after raft_%s its log is %llu (stable %llu) but its durable log ends at %llu",
				 (unsigned long long) n->id, failed ? "persist_failed" : "advance",
				 (unsigned long long) st.last_index, (unsigned long long) st.stable_index,
				 (unsigned long long) last);
	if (st.term != n->st.hs.term || st.vote != n->st.hs.vote)
		sim_fail(s, "node %llu: after raft_%s it has term %llu vote %llu, durable term %llu vote %llu",
				 (unsigned long long) n->id, failed ? "persist_failed" : "advance",
				 (unsigned long long) st.term, (unsigned long long) st.vote,
				 (unsigned long long) n->st.hs.term, (unsigned long long) n->st.hs.vote);
	if (st.snapshot_index != n->mem_snap)
		sim_fail(s, "node %llu: core snapshot index %llu, expected %llu",
				 (unsigned long long) n->id, (unsigned long long) st.snapshot_index,
				 (unsigned long long) n->mem_snap);
	check_commit_claim(s, n, st.commit);
	if (st.applied != n->st.sm.applied)
		sim_fail(s, "node %llu: core applied %llu, host applied %llu",
				 (unsigned long long) n->id, (unsigned long long) st.applied,
				 (unsigned long long) n->st.sm.applied);
}

void
node_host_loop(sim *s, sim_node *n)
{
	int			guard = 0;

	n->ready_scheduled = false;
	while (n->up && raft_has_ready(n->r))
	{
		raft_status before;
		raft_ready	rd;
		size_t		i;
		int			rc;
		bool		work,
					failed;
		uint64_t	sig = 0;

		if (++guard > 1000)
			sim_fail(s, "node %llu: raft_has_ready() stays true after 1000 batches",
					 (unsigned long long) n->id);
		raft_get_status(n->r, &before);
		rc = raft_get_ready(n->r, &rd);
		if (rc != RAFT_OK)
			sim_fail(s, "node %llu: raft_get_ready failed: %s",
					 (unsigned long long) n->id, raft_strerror(rc));
		check_ready(s, n, &rd, &before);

		for (i = 0; i < rd.n_messages; i++)
		{
			check_send(s, n, &rd.messages[i]);
			net_send(s, n, &rd.messages[i]);
		}

		if (!s->healing && rng_chance(&s->rng, s->p.p_crash_mid) && node_may_crash(s))
		{
			s->stats.crash_mid++;
			node_crash(s, n, "after raft_get_ready, before persisting");
			node_schedule_restart(s, n);
			return;
		}

		work = rd.hard_state_changed || rd.truncate_from || rd.n_entries;
		failed = work && !s->healing && rng_chance(&s->rng, s->p.p_persist_fail);
		if (failed)
		{
			sig = hash_mix(hash_mix(n->st.hs.term, n->st.hs.vote),
						   hash_mix(n->st.hs.commit, st_last_index(&n->st)));
			s->stats.persist_fails++;
			if (sim_logging(s))
				sim_log(s, "node %llu: persistence of a batch FAILS (%zu entries, truncate %llu, hs %s)",
						(unsigned long long) n->id, rd.n_entries,
						(unsigned long long) rd.truncate_from,
						rd.hard_state_changed ? "changed" : "same");
		}
		else
		{
			if (s->trace && work)
				sim_log(s, "node %llu: persist %zu entries, truncate_from %llu, hs term %llu vote %llu commit %llu",
						(unsigned long long) n->id, rd.n_entries,
						(unsigned long long) rd.truncate_from,
						(unsigned long long) (rd.hard_state_changed ? rd.hard_state.term : n->st.hs.term),
						(unsigned long long) (rd.hard_state_changed ? rd.hard_state.vote : n->st.hs.vote),
						(unsigned long long) (rd.hard_state_changed ? rd.hard_state.commit : n->st.hs.commit));
			persist(s, n, &rd);
		}

		/* committed entries are already durable: applying them is separate */
		for (i = 0; i < rd.n_committed; i++)
			apply_entry(s, n, &rd.committed[i]);
		for (i = 0; i < rd.n_reads; i++)
			answer_read(s, n, &rd.reads[i]);
		/*
		 * A snapshot request is acted on once its batch is persisted; the
		 * core offers the request of a failed batch again.  (It may be
		 * obsolete by then; the install copies something newer, or says
		 * no.)
		 */
		if (rd.snapshot_pending && s->p.fetch && !s->p.durable_compact)
			sim_fail(s, "node %llu: asked for a snapshot, although every leader fetches compacted entries",
					 (unsigned long long) n->id);
		if (rd.snapshot_pending && !failed)
		{
			sim_event	e;

			n->snap_pending = true;
			n->snap_req = rd.snapshot.index;
			n->snap_from = rd.snapshot.from;
			sim_log(s, "node %llu: asked to install a snapshot at %llu/%llu from node %llu",
					(unsigned long long) n->id, (unsigned long long) rd.snapshot.index,
					(unsigned long long) rd.snapshot.term,
					(unsigned long long) rd.snapshot.from);
			memset(&e, 0, sizeof(e));
			e.type = EV_SNAPSHOT;
			e.node = (uint8_t) n->id;
			e.inc = n->inc;
			e.time = s->now + rng_range(&s->rng, 0, 2 * SIM_TICK);
			ev_push(s, &e);
		}

		if (failed)
		{
			raft_status fs;

			raft_persist_failed(n->r);
			/*
			 * Like a restart of the volatile state: the commit index may
			 * fall back to what the durable log holds, never below what is
			 * durable or applied.
			 */
			raft_get_status(n->r, &fs);
			if (fs.commit < n->st.hs.commit || fs.commit < n->st.sm.applied)
				sim_fail(s, "node %llu: after raft_persist_failed its commit is %llu, below the durable "
						 "commit %llu or applied %llu", (unsigned long long) n->id,
						 (unsigned long long) fs.commit, (unsigned long long) n->st.hs.commit,
						 (unsigned long long) n->st.sm.applied);
			n->last.commit = fs.commit;
			if (sig != hash_mix(hash_mix(n->st.hs.term, n->st.hs.vote),
								hash_mix(n->st.hs.commit, st_last_index(&n->st))))
				sim_fail(s, "node %llu: durable storage changed by a failed batch",
						 (unsigned long long) n->id);
		}
		else
			raft_advance(n->r);
		post_check(s, n, failed);
		check_status(s, n);
	}
}

/* after any input: inspect, then run the host loop now or a little later */
void
node_after_input(sim *s, sim_node *n)
{
	if (!n->up)
		return;
	check_status(s, n);
	if (!raft_has_ready(n->r))
		return;
	if (!s->healing && rng_chance(&s->rng, s->p.p_lazy))
	{
		if (!n->ready_scheduled)
		{
			sim_event	e;

			memset(&e, 0, sizeof(e));
			e.type = EV_READY;
			e.node = (uint8_t) n->id;
			e.inc = n->inc;
			e.time = s->now + rng_range(&s->rng, 1, SIM_TICK / 3);
			ev_push(s, &e);
			n->ready_scheduled = true;
		}
		return;
	}
	node_host_loop(s, n);
}

/* ----------
 * Snapshots
 * ----------
 */
void
node_snapshot_install(sim *s, sim_node *n)
{
	sim_node   *src = NULL;
	int			i,
				cands = 0;
	raft_index	idx;
	raft_term	term;
	const raft_config *cfg;
	sim_storage *st = &n->st;
	raft_config empty;
	int			rc;
	raft_status status;

	if (!n->up || !n->snap_pending)
		return;
	/* the host serializes: finish the batch in progress first */
	node_host_loop(s, n);
	if (!n->up || !n->snap_pending)
		return;
	n->snap_pending = false;

	/* a live copy of any server that has applied at least what was asked */
	if (n->snap_from < SIM_MAX_NODES && n->snap_from != n->id &&
		s->nodes[n->snap_from].up &&
		s->nodes[n->snap_from].st.sm.applied >= n->snap_req &&
		s->nodes[n->snap_from].st.sm.applied > st->sm.applied &&
		rng_chance(&s->rng, 0.7))
		src = &s->nodes[n->snap_from];
	for (i = 1; src == NULL && i <= s->n_ids; i++)
	{
		sim_node   *x = &s->nodes[i];

		if (x != n && x->up && x->st.sm.applied >= n->snap_req &&
			x->st.sm.applied > st->sm.applied)
			cands++;
	}
	if (src == NULL && cands > 0)
	{
		int			pick = (int) rng_below(&s->rng, (uint64_t) cands);

		for (i = 1; i <= s->n_ids; i++)
		{
			sim_node   *x = &s->nodes[i];

			if (x != n && x->up && x->st.sm.applied >= n->snap_req &&
				x->st.sm.applied > st->sm.applied && pick-- == 0)
			{
				src = x;
				break;
			}
		}
	}
	memset(&empty, 0, sizeof(empty));
	if (src == NULL)
	{
		sim_log(s, "node %llu: no server to copy a snapshot >= %llu from: snapshot_done(false)",
				(unsigned long long) n->id, (unsigned long long) n->snap_req);
		rc = raft_snapshot_done(n->r, false, n->snap_req, 0, &empty);
		if (rc != RAFT_OK)
			sim_fail(s, "node %llu: raft_snapshot_done(false) returned %s",
					 (unsigned long long) n->id, raft_strerror(rc));
		node_after_input(s, n);
		return;
	}

	idx = src->st.sm.applied;
	term = src->st.sm.applied_term;
	cfg = sm_config_at(&src->st.sm, idx);
	if (cfg == NULL)
		sim_fail(s, "node %llu has applied %llu but knows no configuration",
				 (unsigned long long) src->id, (unsigned long long) idx);
	if (idx > s->max_applied || s->applied[idx].cum != src->st.sm.cum)
		sim_fail(s, "snapshot source node %llu: state at %llu differs from the committed one",
				 (unsigned long long) src->id, (unsigned long long) idx);

	/* durable first, in one transaction: log, snapshot meta, hard state, state */
	if (st_entry(st, idx) && st_entry(st, idx)->term == term)
		st_drop_prefix(st, idx);
	else
		st_truncate(st, 0);
	st->snap_index = idx;
	st->snap_term = term;
	raft_config_free(&st->snap_cfg);
	rc = raft_config_copy(cfg, &st->snap_cfg);
	if (rc != RAFT_OK)
		sim_fail(s, "raft_config_copy: %s", raft_strerror(rc));
	if (st->hs.commit < idx)
		st->hs.commit = idx;
	sm_free_cfgs(&st->sm);
	st->sm.applied = idx;
	st->sm.applied_term = term;
	st->sm.cum = src->st.sm.cum;
	sm_push_cfg(s, &st->sm, idx, cfg);
	s->stats.snapshots++;
	sim_log(s, "node %llu: installed a snapshot at %llu/%llu copied from node %llu (asked %llu)",
			(unsigned long long) n->id, (unsigned long long) idx,
			(unsigned long long) term, (unsigned long long) src->id,
			(unsigned long long) n->snap_req);

	n->mem_snap = idx;
	rc = raft_snapshot_done(n->r, true, idx, term, cfg);
	if (rc != RAFT_OK)
		sim_fail(s, "node %llu: raft_snapshot_done(true, %llu) returned %s",
				 (unsigned long long) n->id, (unsigned long long) idx, raft_strerror(rc));
	raft_get_status(n->r, &status);
	if (status.snapshot_index != idx || status.applied != idx || status.commit < idx ||
		status.last_index != st_last_index(st))
		sim_fail(s, "node %llu: after raft_snapshot_done(%llu) the core has snapshot %llu applied %llu "
				 "commit %llu last %llu (durable last %llu)",
				 (unsigned long long) n->id, (unsigned long long) idx,
				 (unsigned long long) status.snapshot_index,
				 (unsigned long long) status.applied, (unsigned long long) status.commit,
				 (unsigned long long) status.last_index,
				 (unsigned long long) st_last_index(st));
	node_after_input(s, n);
}

/* drop the durable log up to idx (term, configuration cfg there) */
static void
st_compact(sim *s, sim_storage *st, raft_index idx, raft_term term,
		   const raft_config *cfg)
{
	raft_config copy;
	int			rc;

	memset(&copy, 0, sizeof(copy));
	rc = raft_config_copy(cfg, &copy);
	if (rc != RAFT_OK)
		sim_fail(s, "raft_config_copy: %s", raft_strerror(rc));
	st_drop_prefix(st, idx);
	st->snap_index = idx;
	st->snap_term = term;
	raft_config_free(&st->snap_cfg);
	st->snap_cfg = copy;
}

/* compact at applied minus a random slack; returns 1 when it did */
int
node_compact(sim *s, sim_node *n)
{
	sim_storage *st = &n->st;
	raft_index	idx;
	raft_term	term;
	const raft_config *cfg;
	int			rc;
	uint64_t	slack = rng_below(&s->rng, (uint64_t) s->p.compact_slack + 1);

	if (!n->up || st->sm.applied <= slack)
		return 0;
	idx = st->sm.applied - slack;
	if (idx <= st->snap_index || (s->p.fetch && idx <= n->mem_snap))
		return 0;
	term = st_term_at(st, idx);
	cfg = sm_config_at(&st->sm, idx);
	if (term == 0 || cfg == NULL)
		sim_fail(s, "node %llu: applied entry %llu is not in its durable log (or no config)",
				 (unsigned long long) n->id, (unsigned long long) idx);
	rc = raft_compact(n->r, idx, term);
	if (rc != RAFT_OK)
		sim_fail(s, "node %llu: raft_compact(%llu, %llu) returned %s (applied %llu, log %llu..%llu)",
				 (unsigned long long) n->id, (unsigned long long) idx,
				 (unsigned long long) term, raft_strerror(rc),
				 (unsigned long long) st->sm.applied,
				 (unsigned long long) st->snap_index + 1,
				 (unsigned long long) st_last_index(st));
	/* with fetch, memory only: the durable log keeps everything */
	if (!s->p.fetch)
		st_compact(s, st, idx, term, cfg);
	n->mem_snap = idx;

	/*
	 * With fetch, now and then the durable log loses a prefix too, up to
	 * somewhere at or before idx: entries after it are fetched, a peer
	 * that needs one before it gets a snapshot.
	 */
	if (s->p.fetch && s->p.durable_compact && rng_chance(&s->rng, 0.5))
	{
		raft_index	didx = st->snap_index + 1 +
			rng_below(&s->rng, (uint64_t) (idx - st->snap_index));
		raft_term	dterm = st_term_at(st, didx);
		const raft_config *dcfg = sm_config_at(&st->sm, didx);

		if (dterm == 0 || dcfg == NULL)
			sim_fail(s, "node %llu: applied entry %llu is not in its durable log (or no config)",
					 (unsigned long long) n->id, (unsigned long long) didx);
		st_compact(s, st, didx, dterm, dcfg);
		rc = raft_compact_durable(n->r, didx, dterm);
		if (rc != RAFT_OK)
			sim_fail(s, "node %llu: raft_compact_durable(%llu, %llu) returned %s",
					 (unsigned long long) n->id, (unsigned long long) didx,
					 (unsigned long long) dterm, raft_strerror(rc));
		if (s->trace)
			sim_log(s, "node %llu: compacted its durable log up to %llu/%llu",
					(unsigned long long) n->id, (unsigned long long) didx,
					(unsigned long long) dterm);
	}
	s->stats.compactions++;
	if (s->trace)
		sim_log(s, "node %llu: compacted %sup to %llu/%llu", (unsigned long long) n->id,
				s->p.fetch ? "memory " : "",
				(unsigned long long) idx, (unsigned long long) term);
	node_after_input(s, n);
	return 1;
}
