/*
 * sim_net.c
 *	  raftsim's event queue and network.
 *
 * Every message a host sends is encoded with raft_encode_message(), checked
 * to decode back to itself, and travels as bytes; the receiving host decodes
 * it on delivery.  The network drops, duplicates, delays (so reorders) and
 * cuts directed links; in the heal phase it is reliable.
 */
#include <stdlib.h>
#include <string.h>

#include "sim.h"

/* ----------
 * Event heap, ordered by (time, seq)
 * ----------
 */
static bool
ev_less(const sim_event *a, const sim_event *b)
{
	if (a->time != b->time)
		return a->time < b->time;
	return a->seq < b->seq;
}

void
ev_push(sim *s, const sim_event *e)
{
	size_t		i;

	if (s->n_heap == s->cap_heap)
	{
		s->cap_heap = s->cap_heap ? s->cap_heap * 2 : 1024;
		s->heap = xrealloc(s->heap, s->cap_heap * sizeof(sim_event));
	}
	i = s->n_heap++;
	s->heap[i] = *e;
	s->heap[i].seq = ++s->seq;
	while (i > 0)
	{
		size_t		parent = (i - 1) / 2;
		sim_event	tmp;

		if (!ev_less(&s->heap[i], &s->heap[parent]))
			break;
		tmp = s->heap[i];
		s->heap[i] = s->heap[parent];
		s->heap[parent] = tmp;
		i = parent;
	}
}

bool
ev_pop(sim *s, sim_event *e)
{
	size_t		i = 0;

	if (s->n_heap == 0)
		return false;
	*e = s->heap[0];
	s->heap[0] = s->heap[--s->n_heap];
	for (;;)
	{
		size_t		l = 2 * i + 1,
					r = l + 1,
					m = i;
		sim_event	tmp;

		if (l < s->n_heap && ev_less(&s->heap[l], &s->heap[m]))
			m = l;
		if (r < s->n_heap && ev_less(&s->heap[r], &s->heap[m]))
			m = r;
		if (m == i)
			break;
		tmp = s->heap[i];
		s->heap[i] = s->heap[m];
		s->heap[m] = tmp;
		i = m;
	}
	return true;
}

void
ev_free_all(sim *s)
{
	size_t		i;

	for (i = 0; i < s->n_heap; i++)
		free(s->heap[i].buf);
	free(s->heap);
	s->heap = NULL;
	s->n_heap = s->cap_heap = 0;
}

/* ----------
 * Describing messages (trace)
 * ----------
 */
const char *
msg_describe(const raft_message *m, char *buf, size_t cap)
{
	int			k;

	k = snprintf(buf, cap, "%s n%llu->n%llu term=%llu",
				 raft_msg_type_name(m->type),
				 (unsigned long long) m->from, (unsigned long long) m->to,
				 (unsigned long long) m->term);
	switch (m->type)
	{
		case RAFT_MSG_APPEND:
			snprintf(buf + k, cap - (size_t) k,
					 " prev=%llu/%llu commit=%llu entries=%u%s",
					 (unsigned long long) m->index, (unsigned long long) m->log_term,
					 (unsigned long long) m->commit, m->n_entries,
					 m->n_entries ? "" : " (empty)");
			if (m->n_entries)
			{
				size_t		l = strlen(buf);

				snprintf(buf + l, cap - l, " [%llu..%llu last term %llu]",
						 (unsigned long long) m->entries[0].index,
						 (unsigned long long) m->entries[m->n_entries - 1].index,
						 (unsigned long long) m->entries[m->n_entries - 1].term);
			}
			break;
		case RAFT_MSG_APPEND_RESP:
			snprintf(buf + k, cap - (size_t) k, " %s index=%llu hint=%llu/%llu",
					 m->reject ? "REJECT" : "ok",
					 (unsigned long long) m->index,
					 (unsigned long long) m->hint_term,
					 (unsigned long long) m->hint_index);
			break;
		case RAFT_MSG_VOTE:
		case RAFT_MSG_PREVOTE:
			snprintf(buf + k, cap - (size_t) k, " last=%llu/%llu%s",
					 (unsigned long long) m->index, (unsigned long long) m->log_term,
					 (m->flags & RAFT_MSG_FLAG_TRANSFER) ? " transfer" : "");
			break;
		case RAFT_MSG_VOTE_RESP:
		case RAFT_MSG_PREVOTE_RESP:
			snprintf(buf + k, cap - (size_t) k, " %s",
					 m->reject ? "REJECT" : "GRANT");
			break;
		case RAFT_MSG_HEARTBEAT:
			snprintf(buf + k, cap - (size_t) k, " commit=%llu ctx=%llu",
					 (unsigned long long) m->commit, (unsigned long long) m->ctx);
			break;
		case RAFT_MSG_HEARTBEAT_RESP:
		case RAFT_MSG_READ_INDEX:
			snprintf(buf + k, cap - (size_t) k, " ctx=%llu%s",
					 (unsigned long long) m->ctx, m->reject ? " REJECT" : "");
			break;
		case RAFT_MSG_READ_INDEX_RESP:
			snprintf(buf + k, cap - (size_t) k, " ctx=%llu index=%llu%s",
					 (unsigned long long) m->ctx, (unsigned long long) m->index,
					 m->reject ? " REJECT" : "");
			break;
		case RAFT_MSG_SNAPSHOT:
			snprintf(buf + k, cap - (size_t) k, " snap=%llu/%llu commit=%llu servers=%u",
					 (unsigned long long) m->index, (unsigned long long) m->log_term,
					 (unsigned long long) m->commit, m->config.n);
			break;
		default:
			break;
	}
	return buf;
}

/* ----------
 * Codec round trip: what decodes must be what was encoded
 * ----------
 */
static bool
str_eq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return (a == NULL || *a == '\0') && (b == NULL || *b == '\0');
	return strcmp(a, b) == 0;
}

static const char *
roundtrip_diff(const raft_message *a, const raft_message *b)
{
	uint32_t	i;

	if (a->type != b->type)
		return "type";
	if (a->from != b->from || a->to != b->to)
		return "from/to";
	if (a->term != b->term)
		return "term";
	switch (a->type)
	{
		case RAFT_MSG_APPEND:
			if (a->index != b->index || a->log_term != b->log_term)
				return "prev index/term";
			if (a->commit != b->commit)
				return "commit";
			if (a->n_entries != b->n_entries)
				return "n_entries";
			for (i = 0; i < a->n_entries; i++)
			{
				const raft_entry *x = &a->entries[i],
						   *y = &b->entries[i];

				if (x->term != y->term || x->index != y->index ||
					x->type != y->type || x->len != y->len ||
					(x->len && memcmp(x->data, y->data, x->len) != 0))
					return "entries";
			}
			break;
		case RAFT_MSG_APPEND_RESP:
			if (a->reject != b->reject || a->index != b->index)
				return "reject/index";
			if (a->reject &&
				(a->hint_term != b->hint_term || a->hint_index != b->hint_index))
				return "hint";
			break;
		case RAFT_MSG_VOTE:
		case RAFT_MSG_PREVOTE:
			if (a->index != b->index || a->log_term != b->log_term)
				return "last index/term";
			if ((a->flags & RAFT_MSG_FLAG_TRANSFER) != (b->flags & RAFT_MSG_FLAG_TRANSFER))
				return "flags";
			break;
		case RAFT_MSG_VOTE_RESP:
		case RAFT_MSG_PREVOTE_RESP:
			if (a->reject != b->reject)
				return "reject";
			break;
		case RAFT_MSG_HEARTBEAT:
			if (a->commit != b->commit || a->ctx != b->ctx)
				return "commit/ctx";
			break;
		case RAFT_MSG_HEARTBEAT_RESP:
		case RAFT_MSG_READ_INDEX:
			if (a->ctx != b->ctx || a->reject != b->reject)
				return "ctx/reject";
			break;
		case RAFT_MSG_READ_INDEX_RESP:
			if (a->ctx != b->ctx || a->index != b->index || a->reject != b->reject)
				return "ctx/index/reject";
			break;
		case RAFT_MSG_SNAPSHOT:
			if (a->index != b->index || a->log_term != b->log_term ||
				a->commit != b->commit)
				return "index/term/commit";
			if (a->config.n != b->config.n)
				return "config size";
			for (i = 0; i < a->config.n; i++)
			{
				const raft_server *x = &a->config.servers[i],
						   *y = &b->config.servers[i];

				if (x->id != y->id || x->role != y->role ||
					!str_eq(x->name, y->name) || !str_eq(x->address, y->address))
					return "config servers";
			}
			break;
		default:
			break;
	}
	return NULL;
}

static int64_t
net_delay(sim *s)
{
	if (!s->healing && rng_chance(&s->rng, s->p.p_long_delay))
		return rng_range(&s->rng, s->p.delay_max,
						 (int64_t) s->p.election_ticks * 3 * SIM_TICK);
	return rng_range(&s->rng, s->p.delay_min,
					 s->healing ? s->p.heal_delay_max : s->p.delay_max);
}

void
net_send(sim *s, sim_node *n, const raft_message *m)
{
	size_t		size,
				len = 0;
	int			rc;
	const char *diff;
	sim_event	e;
	int			copies,
				k;
	char		desc[256];

	size = raft_message_encoded_size(m);
	if (size > s->enccap)
	{
		s->enccap = size * 2;
		s->encbuf = xrealloc(s->encbuf, s->enccap);
	}
	rc = raft_encode_message(m, s->encbuf, size, &len);
	if (rc != RAFT_OK || len > size)
		sim_fail(s, "codec: node %llu cannot encode %s (rc=%s, len %zu, size %zu)",
				 (unsigned long long) n->id, msg_describe(m, desc, sizeof(desc)),
				 raft_strerror(rc), len, size);

	/* round trip */
	memset(&s->scratch_msg, 0, sizeof(s->scratch_msg));
	rc = raft_decode_message(s->encbuf, len, &s->scratch_msg);
	if (rc != RAFT_OK)
		sim_fail(s, "codec: %s does not decode after encoding (%s)",
				 msg_describe(m, desc, sizeof(desc)), raft_strerror(rc));
	s->scratch_live = true;
	diff = roundtrip_diff(m, &s->scratch_msg);
	if (diff)
		sim_fail(s, "codec: %s decodes with a different %s",
				 msg_describe(m, desc, sizeof(desc)), diff);
	raft_message_free(&s->scratch_msg);
	s->scratch_live = false;

	s->stats.msgs_sent++;
	if (s->trace)
		sim_log(s, "send %s", msg_describe(m, desc, sizeof(desc)));

	if (m->to == 0 || m->to >= (raft_id) s->n_ids + 1 || !s->nodes[m->to].started)
	{
		s->stats.msgs_dropped++;
		return;
	}
	if (!s->healing &&
		(s->blocked[n->id][m->to] || rng_chance(&s->rng, s->p.p_drop)))
	{
		s->stats.msgs_dropped++;
		return;
	}
	copies = (!s->healing && rng_chance(&s->rng, s->p.p_dup)) ? 2 : 1;
	for (k = 0; k < copies; k++)
	{
		memset(&e, 0, sizeof(e));
		e.type = EV_DELIVER;
		e.time = s->now + net_delay(s);
		e.node = (uint8_t) m->to;
		e.from = (uint8_t) n->id;
		e.buf = xmalloc(len);
		memcpy(e.buf, s->encbuf, len);
		e.len = len;
		ev_push(s, &e);
	}
}

void
net_deliver(sim *s, const sim_event *e)
{
	sim_node   *n = &s->nodes[e->node];
	raft_message *m = &s->scratch_msg;
	int			rc;
	char		desc[256];

	if (!n->up || (!s->healing && s->blocked[e->from][e->node]))
	{
		s->stats.msgs_dropped++;
		return;
	}
	memset(m, 0, sizeof(*m));
	rc = raft_decode_message(e->buf, e->len, m);
	if (rc != RAFT_OK)
		sim_fail(s, "codec: a message from node %u to node %u does not decode (%s)",
				 e->from, e->node, raft_strerror(rc));
	s->scratch_live = true;
	s->stats.msgs_delivered++;
	if (s->trace)
		sim_log(s, "recv %s", msg_describe(m, desc, sizeof(desc)));

	/* remember vote requests: the grant is checked against them */
	if ((m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE) &&
		m->from > 0 && m->from < SIM_MAX_NODES)
	{
		sim_vreq   *ring = n->vreq[m->from][m->type == RAFT_MSG_PREVOTE];
		sim_vreq   *v = &ring[m->term % SIM_VREQ_RING];

		raft_status st;
		bool		ok;

		raft_get_status(n->r, &st);
		ok = m->log_term > st.last_term ||
			(m->log_term == st.last_term && m->index >= st.last_index);
		if (v->term != m->term)
		{
			v->term = m->term;
			v->ok = false;
		}
		v->ok |= ok;
		v->index = m->index;
		v->log_term = m->log_term;
		v->my_index = st.last_index;
		v->my_term = st.last_term;
	}

	rc = raft_step(n->r, m);
	if (rc != RAFT_OK)
		sim_fail(s, "node %llu: raft_step(%s) returned %s",
				 (unsigned long long) n->id, msg_describe(m, desc, sizeof(desc)),
				 raft_strerror(rc));
	raft_message_free(m);
	s->scratch_live = false;
	node_after_input(s, n);
}

/* ----------
 * Partitions: a set of cut directed links
 * ----------
 */
void
net_heal(sim *s)
{
	memset(s->blocked, 0, sizeof(s->blocked));
}

static void
cut(sim *s, int a, int b, bool both)
{
	s->blocked[a][b] = true;
	if (both)
		s->blocked[b][a] = true;
}

void
net_partition(sim *s)
{
	int			kind = (int) rng_below(&s->rng, 7);
	int			i,
				j,
				x;
	int			ids[SIM_MAX_NODES];
	int			n = 0;

	net_heal(s);
	for (i = 1; i <= s->n_ids; i++)
		if (s->nodes[i].started)
			ids[n++] = i;
	if (n < 2)
		return;
	switch (kind)
	{
		case 0:
			sim_log(s, "partition: healed");
			break;
		case 1:					/* isolate one node */
		case 2:
			x = ids[rng_below(&s->rng, (uint64_t) n)];
			for (i = 0; i < n; i++)
				if (ids[i] != x)
					cut(s, x, ids[i], true);
			sim_log(s, "partition: node %d isolated", x);
			break;
		case 3:					/* two groups */
			{
				bool		side[SIM_MAX_NODES] = {false};

				for (i = 0; i < n; i++)
					side[ids[i]] = rng_chance(&s->rng, 0.5);
				for (i = 0; i < n; i++)
					for (j = 0; j < n; j++)
						if (side[ids[i]] != side[ids[j]])
							cut(s, ids[i], ids[j], false);
				sim_log(s, "partition: two groups");
				break;
			}
		case 4:					/* random one-way cuts */
			for (i = 0; i < n; i++)
				for (j = 0; j < n; j++)
					if (i != j && rng_chance(&s->rng, 0.25))
						cut(s, ids[i], ids[j], false);
			sim_log(s, "partition: random one-way cuts");
			break;
		case 5:					/* isolate a leader */
			{
				int			leader = 0;

				for (i = 0; i < n; i++)
					if (s->nodes[ids[i]].up &&
						s->nodes[ids[i]].last.role == RAFT_LEADER)
						leader = ids[i];
				if (leader == 0)
					leader = ids[rng_below(&s->rng, (uint64_t) n)];
				for (i = 0; i < n; i++)
					if (ids[i] != leader)
						cut(s, leader, ids[i], true);
				sim_log(s, "partition: leader %d isolated", leader);
				break;
			}
		case 6:					/* a node that hears but is not heard, or
								 * the reverse */
			{
				bool		deaf = rng_chance(&s->rng, 0.5);

				x = ids[rng_below(&s->rng, (uint64_t) n)];
				for (i = 0; i < n; i++)
					if (ids[i] != x)
					{
						if (deaf)
							cut(s, ids[i], x, false);
						else
							cut(s, x, ids[i], false);
					}
				sim_log(s, "partition: node %d %s", x,
						deaf ? "cannot receive" : "cannot send");
				break;
			}
	}
}
