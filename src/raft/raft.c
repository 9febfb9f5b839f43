/*-------------------------------------------------------------------------
 *
 * raft.c
 *	  The consensus core's entry points: creation, the step dispatcher, the
 *	  tick, proposals, and the ready/advance cycle with the host.
 *
 * Output goes through raft_emit().  A message is put in the outbox, which
 * the next ready batch hands to the host to send at once, only when sending
 * it cannot get ahead of the host's disk: its term is durable, the vote it
 * grants is durable, the entries it acknowledges are durable.  Anything
 * else waits in the held box and is released by raft_advance(), when the
 * host has persisted what it depends on.  That is the whole of "no message
 * of a new term leaves before that term and vote are durable", and of "a
 * follower acknowledges only what it has on disk", in one place.
 *
 * raft_persist_failed() returns every in-memory view to the last durable
 * state: the log overlay is dropped, term and vote go back, a leader or
 * candidate steps down, held acknowledgements become refusals so the sender
 * learns the append failed.  The core then agrees with the host's tables,
 * which is what the project exists to guarantee.
 *
 *-------------------------------------------------------------------------
 */
#include "raft_int.h"
#include "config.h"

static const char *const error_names[RAFT_ELAST] = {
	"success",
	"out of memory",
	"invalid argument",
	"not the leader",
	"a membership change or leadership transfer is in progress",
	"the leader has not yet committed an entry of its term",
	"malformed data",
	"invalid configuration",
	"too big",
	"unknown server",
	"server already a member",
	"index compacted",
	"unsupported wire format version",
};

const char *
raft_strerror(int rc)
{
	if (rc < 0 || rc >= RAFT_ELAST)
		return "unknown error";
	return error_names[rc];
}

const char *
raft_role_name(raft_role role)
{
	switch (role)
	{
		case RAFT_FOLLOWER:
			return "follower";
		case RAFT_PRECANDIDATE:
			return "precandidate";
		case RAFT_CANDIDATE:
			return "candidate";
		case RAFT_LEADER:
			return "leader";
	}
	return "unknown";
}

const char *
raft_msg_type_name(int type)
{
	static const char *const names[RAFT_MSG_LAST] = {
		"?", "append", "append_resp", "vote", "vote_resp", "prevote",
		"prevote_resp", "heartbeat", "heartbeat_resp", "snapshot",
		"timeout_now", "read_index", "read_index_resp"
	};

	if (type <= 0 || type >= RAFT_MSG_LAST)
		return "unknown";
	return names[type];
}

void
raft_options_init(raft_options *o, raft_id id)
{
	memset(o, 0, sizeof(*o));
	o->id = id;
	o->election_ticks = 10;
	o->heartbeat_ticks = 1;
	o->pre_vote = true;
	o->check_quorum = true;
	o->max_msg_entries = 1024;
	o->max_msg_bytes = 1024 * 1024;
	o->max_inflight = 64;
	o->seed = id;
}

/* splitmix64: small, good enough for timeouts, and ours */
uint32_t
raft_random(raft *r, uint32_t bound)
{
	uint64_t	z;

	r->rng += 0x9e3779b97f4a7c15ULL;
	z = r->rng;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	z ^= z >> 31;
	return bound ? (uint32_t) (z % bound) : 0;
}

/* ----------
 * Creation
 * ----------
 */
int
raft_create(const raft_options *o, const raft_restore *rs, raft **out)
{
	raft	   *r;
	int			rc;

	*out = NULL;
	if (o->id == 0 || o->election_ticks < 2 ||
		o->heartbeat_ticks == 0 || o->heartbeat_ticks >= o->election_ticks ||
		o->max_inflight == 0 || o->max_msg_entries == 0)
		return RAFT_EINVAL;
	if (rs->hard_state.vote != 0 && rs->hard_state.term == 0)
		return RAFT_EINVAL;

	r = raft_calloc(1, sizeof(raft));
	if (r == NULL)
		return RAFT_ENOMEM;
	r->opts = *o;
	r->id = o->id;
	r->rng = o->seed;
	log_init(&r->log, rs->snapshot_index, rs->snapshot_term);

	rc = log_restore(&r->log, rs->entries, rs->n_entries);
	if (rc == RAFT_OK && rs->snapshot_config.n > 0)
		rc = raft_config_copy(&rs->snapshot_config, &r->snap_config);
	r->snap_config_index = rs->snapshot_config_index != 0 ?
		rs->snapshot_config_index : rs->snapshot_index;
	if (rc == RAFT_OK)
		rc = membership_config_at(r, log_last_index(&r->log), &r->config,
								  &r->config_index);
	if (rc == RAFT_OK &&
		(rs->applied > log_last_index(&r->log) ||
		 rs->applied < rs->snapshot_index))
		rc = RAFT_EINVAL;
	if (rc != RAFT_OK)
	{
		raft_destroy(r);
		return rc;
	}

	r->host_snap_index = rs->snapshot_index;
	r->host_snap_term = rs->snapshot_term;
	if (o->fetch != NULL && rs->durable_index != 0)
	{
		if (rs->durable_index > rs->snapshot_index)
		{
			raft_destroy(r);
			return RAFT_EINVAL;
		}
		r->host_snap_index = rs->durable_index;
		r->host_snap_term = rs->durable_term;
	}
	r->term = rs->hard_state.term;
	r->vote = rs->hard_state.vote;
	/* a commit index beyond the log cannot be trusted: the entries are gone */
	r->commit = RAFT_MIN(rs->hard_state.commit, log_last_index(&r->log));
	r->commit = RAFT_MAX(r->commit, rs->applied);
	r->stable_hs = rs->hard_state;
	r->stable_hs.commit = r->commit;
	r->applied = rs->applied;
	r->role = RAFT_FOLLOWER;
	election_reset_timeout(r);
	*out = r;
	return RAFT_OK;
}

/* ----------
 * Entries compacted from memory, fetched from the host
 * ----------
 */
void
raft_free_fetched(raft *r)
{
	while (r->fetched != NULL)
	{
		raft_fetched *f = r->fetched;
		size_t		i;

		r->fetched = f->next;
		for (i = 0; i < f->n; i++)
			raft_free(f->ents[i].data);
		raft_free(f->ents);
		raft_free(f);
	}
}

/* entry i from memory or a window already fetched; NULL if neither has it */
const raft_entry *
raft_entry_held(const raft *r, raft_index i)
{
	const raft_entry *e = log_get(&r->log, i);
	const raft_fetched *f;

	if (e != NULL || i == 0 || i > r->log.snap_index)
		return e;
	for (f = r->fetched; f != NULL; f = f->next)
		if (i >= f->from && i < f->from + f->n)
			return &f->ents[i - f->from];
	return NULL;
}

/*
 * Entry i of the log: from memory, or for a compacted one from a window
 * fetched from the host (raft_options.fetch), fetching one that starts at
 * i if no window has it.  NULL when it is neither in memory nor to be had.
 * The entry stays valid until the current ready is over.
 */
const raft_entry *
raft_entry_at(raft *r, raft_index i)
{
	const raft_entry *e = raft_entry_held(r, i);
	raft_fetched *f;
	raft_entry *ents = NULL;
	size_t		n = 0;
	size_t		k;

	if (e != NULL || i == 0 || i > r->log.snap_index || r->opts.fetch == NULL ||
		i <= r->host_snap_index)
		return e;

	f = raft_malloc(sizeof(raft_fetched));
	if (f == NULL)
		return NULL;
	/* one more than an APPEND holds: a window fetched for prev serves it */
	if (r->opts.fetch(r->opts.fetch_ctx, i, r->opts.max_msg_entries + 1,
					  r->opts.max_msg_bytes, &ents, &n) != RAFT_OK ||
		n == 0 || ents == NULL)
	{
		for (k = 0; ents != NULL && k < n; k++)
			raft_free(ents[k].data);
		raft_free(ents);
		raft_free(f);
		return NULL;
	}
	/* the host must hand out exactly the entries asked for */
	for (k = 0; k < n; k++)
		RAFT_ASSERT(ents[k].index == i + k);
	f->from = i;
	f->ents = ents;
	f->n = n;
	f->next = r->fetched;
	r->fetched = f;
	return &ents[0];
}

static void
outbox_clear(raft_outbox *b)
{
	b->n = 0;
}

static void
outbox_free(raft_outbox *b)
{
	raft_free(b->msgs);
	memset(b, 0, sizeof(*b));
}

static void
free_ready_arrays(raft *r)
{
	size_t		i;

	for (i = 0; i < r->rd_n_msgs; i++)
		raft_free(r->rd_msgs[i].entries);
	raft_free(r->rd_msgs);
	raft_free(r->rd_committed);
	raft_free(r->rd_reads);
	r->rd_msgs = NULL;
	r->rd_n_msgs = 0;
	r->rd_committed = NULL;
	r->rd_reads = NULL;
}

void
raft_destroy(raft *r)
{
	if (r == NULL)
		return;
	free_ready_arrays(r);
	raft_free_fetched(r);
	log_free(&r->log);
	raft_config_free(&r->config);
	raft_config_free(&r->snap_config);
	raft_config_free(&r->saved_config);
	raft_config_free(&r->snap_req.config);
	progress_free_all(r);
	raft_free(r->reads);
	raft_free(r->fwd_reads);
	raft_free(r->read_out);
	outbox_free(&r->outbox);
	outbox_free(&r->held);
	raft_free(r);
}

int
raft_bootstrap_entry(const raft_config *c, raft_entry *e)
{
	size_t		size;
	size_t		len;
	int			rc;

	memset(e, 0, sizeof(*e));
	rc = raft_config_validate(c);
	if (rc != RAFT_OK)
		return rc;
	size = raft_config_encoded_size(c);
	e->data = raft_malloc(size);
	if (e->data == NULL)
		return RAFT_ENOMEM;
	rc = raft_encode_config(c, e->data, size, &len);
	if (rc != RAFT_OK)
	{
		raft_free(e->data);
		e->data = NULL;
		return rc;
	}
	e->term = 1;
	e->index = 1;
	e->type = RAFT_ENTRY_CONFIG;
	e->len = (uint32_t) len;
	return RAFT_OK;
}

/* ----------
 * Output
 * ----------
 */

/* may m leave now, or must it wait for the in-flight persistence? */
static bool
message_is_safe(const raft *r, const raft_message *m)
{
	/* PreVote messages carry a term the node has not entered (9.6) */
	if (m->type == RAFT_MSG_PREVOTE || m->type == RAFT_MSG_PREVOTE_RESP)
		return true;
	if (m->term > r->stable_hs.term)
		return false;
	if (m->type == RAFT_MSG_VOTE_RESP && !m->reject &&
		!(r->stable_hs.term == m->term && r->stable_hs.vote == m->to))
		return false;
	if (m->type == RAFT_MSG_VOTE &&
		!(r->stable_hs.term == m->term && r->stable_hs.vote == r->id))
		return false;
	if (m->type == RAFT_MSG_APPEND_RESP && !m->reject &&
		m->index > log_stable_index(&r->log))
		return false;
	return true;
}

static int
outbox_push(raft_outbox *b, const raft_message *m, raft_index first)
{
	if (b->n == b->cap)
	{
		size_t		ncap = b->cap ? b->cap * 2 : 16;
		raft_outmsg *p = raft_realloc(b->msgs, ncap * sizeof(raft_outmsg));

		if (p == NULL)
			return RAFT_ENOMEM;
		b->msgs = p;
		b->cap = ncap;
	}
	b->msgs[b->n].m = *m;
	b->msgs[b->n].m.entries = NULL;
	b->msgs[b->n].first = first;
	b->n++;
	return RAFT_OK;
}

/*
 * Queue a message.  APPEND entries are given as the range first ..
 * first + n_entries - 1 of the log and materialized by raft_get_ready().
 * For a successful APPEND_RESP, first is the prev index of the APPEND it
 * answers, so that raft_persist_failed() can turn it into a refusal.
 * A message that cannot be queued for lack of memory is dropped: the
 * protocol survives lost messages, and resends.
 */
void
raft_emit(raft *r, const raft_message *m, raft_index first)
{
	raft_message copy = *m;

	copy.from = r->id;
	if (message_is_safe(r, &copy))
		(void) outbox_push(&r->outbox, &copy, first);
	else
		(void) outbox_push(&r->held, &copy, first);
}

/*
 * Forget queued APPENDs and SNAPSHOTs: the log they point into is about to
 * change under them (a leader stepping down, a compaction).  Lost messages
 * are part of the model; progress tracking resends.
 */
void
raft_drop_appends(raft *r)
{
	size_t		i,
				j;

	for (i = 0, j = 0; i < r->outbox.n; i++)
	{
		if ((r->outbox.msgs[i].m.type == RAFT_MSG_APPEND &&
			 r->outbox.msgs[i].m.n_entries > 0) ||
			r->outbox.msgs[i].m.type == RAFT_MSG_SNAPSHOT)
			continue;
		r->outbox.msgs[j++] = r->outbox.msgs[i];
	}
	r->outbox.n = j;
}

static raft_index
persist_commit(const raft *r)
{
	return RAFT_MIN(r->commit, log_last_index(&r->log));
}

static raft_index
apply_limit(const raft *r)
{
	return RAFT_MIN(r->commit, log_stable_index(&r->log));
}

bool
raft_has_ready(const raft *r)
{
	if (r->in_ready)
		return false;
	if (r->term != r->stable_hs.term || r->vote != r->stable_hs.vote ||
		persist_commit(r) != r->stable_hs.commit)
		return true;
	if (log_has_overlay(&r->log))
		return true;
	if (r->outbox.n > 0 || r->n_read_out > 0)
		return true;
	if (r->bcast_pending && r->role == RAFT_LEADER)
		return true;
	if (apply_limit(r) > r->applied)
		return true;
	if (r->snap_requested && !r->snap_handed)
		return true;
	return false;
}

static int
materialize(raft *r, const raft_outmsg *om, raft_message *out)
{
	uint32_t	k;

	*out = om->m;
	out->entries = NULL;
	if (om->m.type == RAFT_MSG_SNAPSHOT)
		out->config = r->snap_config;
	if (om->m.type != RAFT_MSG_APPEND || om->m.n_entries == 0)
		return RAFT_OK;
	out->entries = raft_malloc(om->m.n_entries * sizeof(raft_entry));
	if (out->entries == NULL)
		return RAFT_ENOMEM;
	for (k = 0; k < om->m.n_entries; k++)
	{
		const raft_entry *e = raft_entry_at(r, om->first + k);

		if (e == NULL)
		{
			/* compacted, and the host could not fetch it: drop the message */
			raft_free(out->entries);
			out->entries = NULL;
			return RAFT_ECOMPACTED;
		}
		out->entries[k] = *e;
	}
	return RAFT_OK;
}

/*
 * Does a later message of the outbox make its message i redundant?  A
 * successful APPEND_RESP tells the leader "my log matches yours up to
 * index"; a later one of the same term to the same leader that says so of
 * an index at least as high tells it everything the earlier one would
 * (the leader frees its in-flight window up to the index it is told).  A
 * follower that took several APPENDs in one persistence answers once.
 */
static bool
ack_superseded(const raft_outbox *b, size_t i)
{
	const raft_message *m = &b->msgs[i].m;
	size_t		j;

	if (m->type != RAFT_MSG_APPEND_RESP || m->reject)
		return false;
	for (j = i + 1; j < b->n; j++)
	{
		const raft_message *l = &b->msgs[j].m;

		if (l->type == RAFT_MSG_APPEND_RESP && !l->reject &&
			l->to == m->to && l->term == m->term && l->index >= m->index)
			return true;
	}
	return false;
}

int
raft_get_ready(raft *r, raft_ready *rd)
{
	size_t		i;
	raft_index	lim;
	raft_index	idx;
	int			rc;

	RAFT_ASSERT(!r->in_ready);
	memset(rd, 0, sizeof(*rd));

	/* messages: the pending broadcast first, then what is queued */
	replication_flush_broadcast(r);
	if (r->outbox.n > 0)
	{
		r->rd_msgs = raft_calloc(r->outbox.n, sizeof(raft_message));
		if (r->rd_msgs == NULL)
			return RAFT_ENOMEM;
		for (i = 0; i < r->outbox.n; i++)
		{
			if (ack_superseded(&r->outbox, i))
				continue;
			rc = materialize(r, &r->outbox.msgs[i], &r->rd_msgs[r->rd_n_msgs]);
			if (rc == RAFT_ECOMPACTED)
				continue;		/* lost, as messages may be; resent later */
			r->rd_n_msgs++;
			if (rc != RAFT_OK)
			{
				free_ready_arrays(r);
				return rc;
			}
		}
	}

	/* committed entries */
	lim = apply_limit(r);
	if (lim > r->applied)
	{
		r->rd_committed = raft_malloc((size_t) (lim - r->applied) * sizeof(raft_entry));
		if (r->rd_committed == NULL)
		{
			free_ready_arrays(r);
			return RAFT_ENOMEM;
		}
		for (idx = r->applied + 1, i = 0; idx <= lim; idx++, i++)
		{
			const raft_entry *e = log_get(&r->log, idx);

			RAFT_ASSERT(e != NULL);
			r->rd_committed[i] = *e;
		}
		rd->committed = r->rd_committed;
		rd->n_committed = (size_t) (lim - r->applied);
	}

	/* read states */
	if (r->n_read_out > 0)
	{
		r->rd_reads = raft_malloc(r->n_read_out * sizeof(raft_read_state));
		if (r->rd_reads == NULL)
		{
			free_ready_arrays(r);
			return RAFT_ENOMEM;
		}
		memcpy(r->rd_reads, r->read_out, r->n_read_out * sizeof(raft_read_state));
		rd->reads = r->rd_reads;
		rd->n_reads = r->n_read_out;
	}

	/* nothing can fail from here on */
	rd->messages = r->rd_msgs;
	rd->n_messages = r->rd_n_msgs;
	outbox_clear(&r->outbox);
	r->n_read_out = 0;
	if (lim > r->applied)
		r->applied = lim;

	r->ready_hs.term = r->term;
	r->ready_hs.vote = r->vote;
	r->ready_hs.commit = persist_commit(r);
	if (r->ready_hs.term != r->stable_hs.term ||
		r->ready_hs.vote != r->stable_hs.vote ||
		r->ready_hs.commit != r->stable_hs.commit)
	{
		rd->hard_state_changed = true;
		rd->hard_state = r->ready_hs;
	}
	if (log_has_overlay(&r->log))
	{
		if (r->log.ov_from <= r->log.snap_index + r->log.n)
			rd->truncate_from = r->log.ov_from;
		rd->entries = r->log.ov;
		rd->n_entries = r->log.ov_n;
	}
	if (r->snap_requested && !r->snap_handed)
	{
		rd->snapshot_pending = true;
		rd->snapshot = r->snap_req;
		r->snap_handed = true;
	}
	r->in_ready = true;
	return RAFT_OK;
}

/*
 * The term moved on: held messages of older terms are of no use to anyone
 * (a vote or an acknowledgement for a term that is over), drop them.
 */
void
raft_drop_stale_held(raft *r)
{
	size_t		i,
				j;

	for (i = 0, j = 0; i < r->held.n; i++)
		if (r->held.msgs[i].m.term >= r->term ||
			r->held.msgs[i].m.type == RAFT_MSG_PREVOTE ||
			r->held.msgs[i].m.type == RAFT_MSG_PREVOTE_RESP)
			r->held.msgs[j++] = r->held.msgs[i];
	r->held.n = j;
}

/* move held messages that became safe into the outbox */
static void
release_held(raft *r)
{
	size_t		i,
				j;

	for (i = 0, j = 0; i < r->held.n; i++)
	{
		raft_outmsg *om = &r->held.msgs[i];

		if (message_is_safe(r, &om->m) &&
			outbox_push(&r->outbox, &om->m, om->first) == RAFT_OK)
			continue;
		r->held.msgs[j++] = *om;
	}
	r->held.n = j;
}

void
raft_advance(raft *r)
{
	RAFT_ASSERT(r->in_ready);
	free_ready_arrays(r);
	raft_free_fetched(r);
	r->in_ready = false;
	r->stable_hs = r->ready_hs;
	log_stabilize(&r->log);
	membership_stabilized(r);
	release_held(r);

	if (r->role == RAFT_CANDIDATE)
		election_self_vote_durable(r);
	else if (r->role == RAFT_LEADER)
	{
		/* the leader's own entries count from now on (3.5, 10.2.1) */
		if (replication_maybe_commit(r))
			replication_broadcast_append(r);
	}
}

void
raft_persist_failed(raft *r)
{
	size_t		i,
				j;

	raft_index	safe_commit;

	RAFT_ASSERT(r->in_ready);
	free_ready_arrays(r);
	raft_free_fetched(r);
	r->in_ready = false;
	/* a snapshot request in the failed batch is offered again */
	r->snap_handed = false;
	/* entries below the overlay agree with the leader; the overlay is gone */
	safe_commit = RAFT_MAX(r->stable_hs.commit,
						   RAFT_MIN(r->commit, log_stable_index(&r->log)));
	log_discard_overlay(&r->log);

	/* held acknowledgements become refusals; every other held message dies */
	for (i = 0, j = 0; i < r->held.n; i++)
	{
		raft_message *m = &r->held.msgs[i].m;

		if (m->type != RAFT_MSG_APPEND_RESP || m->reject ||
			m->term > r->stable_hs.term)
			continue;
		/* refuse the APPEND it answered: its prev index was kept in first */
		m->reject = true;
		m->index = r->held.msgs[i].first;
		m->hint_term = 0;
		m->hint_index = log_last_index(&r->log) + 1;
		r->held.msgs[j++] = r->held.msgs[i];
	}
	r->held.n = j;

	if (r->term != r->stable_hs.term || r->vote != r->stable_hs.vote ||
		r->role == RAFT_LEADER || r->role == RAFT_CANDIDATE ||
		r->role == RAFT_PRECANDIDATE)
	{
		raft_term	old = r->stable_hs.term;

		r->term = old;
		r->vote = r->stable_hs.vote;
		become_follower(r, old, 0);
	}
	r->commit = safe_commit;
	membership_revert(r);
	release_held(r);
}

/* ----------
 * Input
 * ----------
 */

static bool
in_lease(const raft *r)
{
	return r->opts.check_quorum && r->leader != 0 &&
		r->election_elapsed < r->opts.election_ticks;
}

int
raft_step(raft *r, const raft_message *m)
{
	RAFT_ASSERT(!r->in_ready);
	if (m->type == 0 || m->type >= RAFT_MSG_LAST || m->from == 0 ||
		m->from == r->id || (m->to != 0 && m->to != r->id))
		return RAFT_EINVAL;

	/* term normalization (3.3; 9.6 for PreVote; 4.2.3 for leases) */
	if (m->term > r->term)
	{
		if ((m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE) &&
			!(m->flags & RAFT_MSG_FLAG_TRANSFER) && in_lease(r))
			return RAFT_OK;		/* a leader is alive: disregard */
		if (m->type == RAFT_MSG_PREVOTE ||
			(m->type == RAFT_MSG_PREVOTE_RESP && !m->reject))
		{
			/* a term in the sender's future: do not enter it */
		}
		else if (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
				 m->type == RAFT_MSG_SNAPSHOT)
			become_follower(r, m->term, m->from);
		else if (m->type == RAFT_MSG_VOTE)
		{
			/*
			 * A higher-term candidate: step down, but keep the election
			 * timer running -- only granting the vote restarts it (Figure
			 * 3.1), or a stale candidate with a fast clock could keep an
			 * up-to-date server from ever standing.
			 */
			uint32_t	elapsed = r->election_elapsed;
			uint32_t	timeout = r->randomized_timeout;

			become_follower(r, m->term, 0);
			r->election_elapsed = elapsed;
			r->randomized_timeout = timeout;
		}
		else
			become_follower(r, m->term, 0);
	}
	else if (m->term < r->term)
	{
		if (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT)
		{
			/*
			 * A deposed leader cut off by a partition: tell it our term, or
			 * with CheckQuorum and PreVote it would never learn of it.
			 */
			raft_message resp;

			memset(&resp, 0, sizeof(resp));
			resp.type = RAFT_MSG_APPEND_RESP;
			resp.to = m->from;
			resp.term = r->term;
			resp.reject = true;
			resp.index = m->index;
			resp.hint_index = log_last_index(&r->log) + 1;
			raft_emit(r, &resp, 0);
		}
		else if (m->type == RAFT_MSG_PREVOTE)
		{
			raft_message resp;

			memset(&resp, 0, sizeof(resp));
			resp.type = RAFT_MSG_PREVOTE_RESP;
			resp.to = m->from;
			resp.term = r->term;
			resp.reject = true;
			raft_emit(r, &resp, 0);
		}
		return RAFT_OK;
	}

	switch (m->type)
	{
		case RAFT_MSG_VOTE:
		case RAFT_MSG_PREVOTE:
			election_handle_vote(r, m);
			break;
		case RAFT_MSG_VOTE_RESP:
		case RAFT_MSG_PREVOTE_RESP:
			election_handle_vote_resp(r, m);
			break;
		case RAFT_MSG_APPEND:
			return replication_handle_append(r, m);
		case RAFT_MSG_APPEND_RESP:
			replication_handle_append_resp(r, m);
			break;
		case RAFT_MSG_HEARTBEAT:
			replication_handle_heartbeat(r, m);
			break;
		case RAFT_MSG_HEARTBEAT_RESP:
			replication_handle_heartbeat_resp(r, m);
			break;
		case RAFT_MSG_SNAPSHOT:
			replication_handle_snapshot(r, m);
			break;
		case RAFT_MSG_TIMEOUT_NOW:
			election_handle_timeout_now(r, m);
			break;
		case RAFT_MSG_READ_INDEX:
			readindex_handle_request(r, m);
			break;
		case RAFT_MSG_READ_INDEX_RESP:
			readindex_handle_resp(r, m);
			break;
	}
	return RAFT_OK;
}

void
raft_tick(raft *r)
{
	RAFT_ASSERT(!r->in_ready);
	if (r->role == RAFT_LEADER)
		replication_leader_tick(r);
	else
		election_tick(r);
}

int
raft_campaign(raft *r)
{
	RAFT_ASSERT(!r->in_ready);
	if (r->role == RAFT_LEADER)
		return RAFT_OK;
	if (!election_promotable(r))
		return RAFT_EINVAL;
	return election_start(r, r->opts.pre_vote, false);
}

bool
raft_committed_own_term(const raft *r)
{
	return log_term_or_zero(&r->log, r->commit) == r->term;
}

int
raft_propose(raft *r, const raft_buf *bufs, size_t n, raft_index *first)
{
	raft_entry *ents;
	size_t		i;
	int			rc;

	RAFT_ASSERT(!r->in_ready);
	if (r->role != RAFT_LEADER)
		return RAFT_ENOTLEADER;
	if (r->transferee != 0)
		return RAFT_EBUSY;
	if (n == 0)
		return RAFT_EINVAL;
	for (i = 0; i < n; i++)
		if (bufs[i].len > RAFT_MAX_ENTRY_BYTES)
			return RAFT_ETOOBIG;

	ents = raft_calloc(n, sizeof(raft_entry));
	if (ents == NULL)
		return RAFT_ENOMEM;
	for (i = 0; i < n; i++)
	{
		ents[i].term = r->term;
		ents[i].type = RAFT_ENTRY_NORMAL;
		ents[i].len = (uint32_t) bufs[i].len;
		if (bufs[i].len > 0)
		{
			ents[i].data = raft_malloc(bufs[i].len);
			if (ents[i].data == NULL)
			{
				while (i-- > 0)
					raft_free(ents[i].data);
				raft_free(ents);
				return RAFT_ENOMEM;
			}
			memcpy(ents[i].data, bufs[i].base, bufs[i].len);
		}
	}
	if (first)
		*first = log_last_index(&r->log) + 1;
	rc = replication_append_local(r, ents, n);
	if (rc != RAFT_OK)
	{
		for (i = 0; i < n; i++)
			raft_free(ents[i].data);
	}
	raft_free(ents);
	return rc;
}

int
raft_term_at(const raft *r, raft_index i, raft_term *term)
{
	return log_term(&r->log, i, term);
}

int
raft_compact(raft *r, raft_index index, raft_term term)
{
	raft_term	t;
	int			rc;
	raft_config c;
	const raft_entry *e = NULL;
	raft_index	i;
	bool		found;

	RAFT_ASSERT(!r->in_ready);
	if (index <= r->log.snap_index)
		return RAFT_OK;
	if (index > r->applied || index > log_stable_index(&r->log))
		return RAFT_EINVAL;
	if (log_term(&r->log, index, &t) != RAFT_OK || t != term)
		return RAFT_EINVAL;

	/* the configuration as of index: the last config entry up to it */
	memset(&c, 0, sizeof(c));
	for (i = index; i > r->log.snap_index; i--)
	{
		e = log_get(&r->log, i);
		if (e->type == RAFT_ENTRY_CONFIG)
			break;
	}
	found = i > r->log.snap_index;
	if (found)
		rc = raft_decode_config(e->data, e->len, &c);
	else
		rc = raft_config_copy(&r->snap_config, &c);
	if (rc != RAFT_OK)
		return rc;

	/* with fetch, queued APPENDs get their entries from the host instead */
	if (r->opts.fetch == NULL)
		raft_drop_appends(r);
	log_compact(&r->log, index, term);
	raft_config_free(&r->snap_config);
	r->snap_config = c;
	if (found)
		r->snap_config_index = i;
	return RAFT_OK;
}

int
raft_compact_durable(raft *r, raft_index index, raft_term term)
{
	int			rc;

	RAFT_ASSERT(!r->in_ready);
	if (index > r->applied || index > log_stable_index(&r->log))
		return RAFT_EINVAL;
	if (index > r->log.snap_index)
	{
		rc = raft_compact(r, index, term);
		if (rc != RAFT_OK)
			return rc;
	}
	else if (index == r->log.snap_index && term != r->log.snap_term)
		return RAFT_EINVAL;
	if (r->opts.fetch == NULL || index <= r->host_snap_index)
		return RAFT_OK;
	r->host_snap_index = index;
	r->host_snap_term = term;
	/* what was fetched may be gone now */
	raft_free_fetched(r);
	return RAFT_OK;
}

/* ----------
 * Inspection
 * ----------
 */
void
raft_get_status(const raft *r, raft_status *s)
{
	memset(s, 0, sizeof(*s));
	s->id = r->id;
	s->role = r->role;
	s->voter = raft_config_is_voter(&r->config, r->id);
	s->term = r->term;
	s->vote = r->vote;
	s->leader = r->leader;
	s->first_index = log_first_index(&r->log);
	s->last_index = log_last_index(&r->log);
	s->last_term = log_last_term(&r->log);
	s->stable_index = log_stable_index(&r->log);
	s->commit = r->commit;
	s->applied = r->applied;
	s->snapshot_index = r->log.snap_index;
	s->snapshot_term = r->log.snap_term;
	s->config_index = r->config_index;
	s->transferee = r->transferee;
}

const raft_config *
raft_get_config(const raft *r)
{
	return &r->config;
}

int
raft_get_progress(const raft *r, raft_id id, raft_progress_info *p)
{
	size_t		i;

	memset(p, 0, sizeof(*p));
	if (r->role != RAFT_LEADER)
		return RAFT_ENOTLEADER;
	if (id == r->id)
	{
		p->match = log_stable_index(&r->log);
		p->next = log_last_index(&r->log) + 1;
		p->state = RAFT_PROGRESS_REPLICATE;
		p->recent_active = true;
		return RAFT_OK;
	}
	for (i = 0; i < r->n_prs; i++)
	{
		const raft_progress *pr = &r->prs[i];

		if (pr->id != id)
			continue;
		p->match = pr->match;
		p->next = pr->next;
		p->state = pr->state;
		p->recent_active = pr->recent_active;
		p->inflight = pr->in_count;
		p->ticks_since_contact = pr->ticks_since_contact;
		return RAFT_OK;
	}
	return RAFT_ENOTFOUND;
}
