/*-------------------------------------------------------------------------
 *
 * readindex.c
 *	  Linearizable read points: ReadIndex (dissertation 6.4).
 *
 * A read asked of the leader is answered with the commit index at the time
 * of asking, once a heartbeat round started after the request has been
 * acknowledged by a majority: then no other leader can have committed
 * anything newer, and a host that applied up to that index may read.  A
 * leader that has not yet committed an entry of its own term does not know
 * the full commit index; its reads wait for that commit (the no-op entry
 * of become_leader exists for this).  A follower forwards its request to
 * the leader and gets the index back.
 *
 * Heartbeats carry a sequence number (ctx); each peer's highest
 * acknowledged one is kept in its progress, so one round answers every read
 * queued before it -- reads are batched for free.
 *
 *-------------------------------------------------------------------------
 */
#include "raft_int.h"
#include "config.h"

/*
 * A role or term change: the leader's pending reads die (their requesters
 * time out and ask again); so do a follower's forwarded ones, whose
 * answers could now come from a leader that no longer knows the commit
 * index of the time they were asked.
 */
void
readindex_clear(raft *r)
{
	r->n_reads = 0;
	r->n_fwd_reads = 0;
}

int
readindex_push_answer(raft *r, uint64_t ctx, raft_index index)
{
	if (r->n_read_out == r->cap_read_out)
	{
		size_t		ncap = r->cap_read_out ? r->cap_read_out * 2 : 8;
		raft_read_state *p = raft_realloc(r->read_out, ncap * sizeof(raft_read_state));

		if (p == NULL)
			return RAFT_ENOMEM;
		r->read_out = p;
		r->cap_read_out = ncap;
	}
	r->read_out[r->n_read_out].ctx = ctx;
	r->read_out[r->n_read_out].index = index;
	r->n_read_out++;
	return RAFT_OK;
}

static void
answer(raft *r, const raft_pending_read *p)
{
	raft_message m;

	if (p->from == r->id)
	{
		(void) readindex_push_answer(r, p->ctx, p->index);
		return;
	}
	memset(&m, 0, sizeof(m));
	m.type = RAFT_MSG_READ_INDEX_RESP;
	m.to = p->from;
	m.term = r->term;
	m.index = p->index;
	m.ctx = p->ctx;
	raft_emit(r, &m, 0);
}

/* the leader is the only voter: its commit index needs no confirmation */
static bool
sole_voter(const raft *r)
{
	return raft_config_quorum(&r->config) == 1 &&
		raft_config_is_voter(&r->config, r->id);
}

static int
leader_read(raft *r, uint64_t ctx, raft_id from)
{
	raft_pending_read p;

	p.ctx = ctx;
	p.from = from;
	p.index = r->commit;
	p.seq = 0;
	if (raft_committed_own_term(r) && sole_voter(r))
	{
		answer(r, &p);
		return RAFT_OK;
	}
	if (r->n_reads == r->cap_reads)
	{
		size_t		ncap = r->cap_reads ? r->cap_reads * 2 : 8;
		raft_pending_read *np = raft_realloc(r->reads, ncap * sizeof(raft_pending_read));

		if (np == NULL)
			return RAFT_ENOMEM;
		r->reads = np;
		r->cap_reads = ncap;
	}
	if (raft_committed_own_term(r))
	{
		p.seq = ++r->read_seq;
		replication_broadcast_heartbeat(r, p.seq);
	}
	r->reads[r->n_reads++] = p;
	return RAFT_OK;
}

int
raft_read_index(raft *r, uint64_t ctx)
{
	raft_message m;

	RAFT_ASSERT(!r->in_ready);
	if (r->role == RAFT_LEADER)
		return leader_read(r, ctx, r->id);
	if (r->leader == 0)
		return RAFT_ENOTLEADER;
	/* remember it: answers are accepted once, for reads still asked */
	if (r->n_fwd_reads == r->cap_fwd_reads)
	{
		size_t		ncap = r->cap_fwd_reads ? r->cap_fwd_reads * 2 : 8;
		uint64_t   *p;

		if (ncap > 65536)
			return RAFT_EBUSY;
		p = raft_realloc(r->fwd_reads, ncap * sizeof(uint64_t));
		if (p == NULL)
			return RAFT_ENOMEM;
		r->fwd_reads = p;
		r->cap_fwd_reads = ncap;
	}
	r->fwd_reads[r->n_fwd_reads++] = ctx;
	memset(&m, 0, sizeof(m));
	m.type = RAFT_MSG_READ_INDEX;
	m.to = r->leader;
	m.term = r->term;
	m.ctx = ctx;
	raft_emit(r, &m, 0);
	return RAFT_OK;
}

void
readindex_handle_request(raft *r, const raft_message *m)
{
	if (r->role != RAFT_LEADER)
		return;					/* the follower's host times out and retries */
	(void) leader_read(r, m->ctx, m->from);
}

void
readindex_handle_resp(raft *r, const raft_message *m)
{
	size_t		i;

	if (m->from != r->leader)
		return;
	/* a duplicate, or an answer to a read this node no longer waits for */
	for (i = 0; i < r->n_fwd_reads; i++)
		if (r->fwd_reads[i] == m->ctx)
			break;
	if (i == r->n_fwd_reads)
		return;
	if (readindex_push_answer(r, m->ctx, m->index) != RAFT_OK)
		return;
	r->fwd_reads[i] = r->fwd_reads[--r->n_fwd_reads];
}

/*
 * Commit advanced on the leader.  Reads that waited for the first commit of
 * its term get the commit index now and one heartbeat round between them.
 */
void
readindex_leader_committed(raft *r)
{
	size_t		i;
	uint64_t	seq = 0;

	for (i = 0; i < r->n_reads; i++)
	{
		if (r->reads[i].seq != 0)
			continue;
		if (seq == 0)
			seq = ++r->read_seq;
		r->reads[i].seq = seq;
		r->reads[i].index = r->commit;
	}
	if (seq == 0)
		return;
	if (sole_voter(r))
		readindex_heartbeat_acked(r);
	else
		replication_broadcast_heartbeat(r, seq);
}

static int
cmp_u64_desc(const void *a, const void *b)
{
	uint64_t	x = *(const uint64_t *) a;
	uint64_t	y = *(const uint64_t *) b;

	return x < y ? 1 : (x > y ? -1 : 0);
}

/* answer every read whose heartbeat round a majority acknowledged */
void
readindex_heartbeat_acked(raft *r)
{
	uint64_t	acks[RAFT_MAX_SERVERS];
	uint32_t	k = 0;
	uint32_t	i;
	uint64_t	confirmed;
	size_t		j,
				keep;

	if (r->role != RAFT_LEADER || r->n_reads == 0)
		return;
	for (i = 0; i < r->config.n; i++)
	{
		const raft_server *s = &r->config.servers[i];
		raft_progress *pr;

		if (s->role != RAFT_VOTER)
			continue;
		if (s->id == r->id)
			acks[k++] = r->read_seq;
		else
			acks[k++] = (pr = progress_get(r, s->id)) ? pr->read_ack : 0;
	}
	if (k == 0)
		return;
	qsort(acks, k, sizeof(uint64_t), cmp_u64_desc);
	confirmed = acks[raft_config_quorum(&r->config) - 1];

	for (j = 0, keep = 0; j < r->n_reads; j++)
	{
		if (r->reads[j].seq != 0 && r->reads[j].seq <= confirmed)
			answer(r, &r->reads[j]);
		else
			r->reads[keep++] = r->reads[j];
	}
	r->n_reads = keep;
}
