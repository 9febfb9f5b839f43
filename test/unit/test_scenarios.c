/*
 * test_scenarios.c
 *	  Data-driven protocol tests: text scripts in test/unit/scenarios/,
 *	  in the spirit of etcd's raft interaction tests.
 *
 * Each script is a list of directives:
 *
 *	  command arg key=value ...
 *	  ----
 *	  expected output, up to a blank line
 *
 * A small in-memory host drives real cores through the ready/persist/
 * advance contract; every message travels through the codec.  Messages
 * wait in a queue until a directive delivers them, so a script controls
 * exactly which message arrives when.  Lines starting with '#' are
 * comments.  REWRITE=1 in the environment rewrites the expected output in
 * place (review the diff before committing it).
 *
 * Commands (nodes are numbered 1..n):
 *	  cluster voters=N [learners=M] [prevote=0|1] [checkquorum=0|1]
 *			  [election=T] [heartbeat=T] [inflight=K] [maxentries=K]
 *			  [lazycommit=0|1]
 *	  campaign N | tick N [count]
 *	  tick-all [count]	tick every node, then stabilize, count times
 *	  propose N text | add N id | promote N id | remove N id
 *	  transfer N target | read-index N ctx | compact N index
 *	  process [N]		run ready cycles (persist, advance) on N or all
 *	  deliver [from=N] [to=N] [type=name] [drop=1]
 *						deliver (or drop) queued messages, printing them
 *	  stabilize [verbose=1]	process and deliver until quiet
 *	  cut A B			drop messages from A to B (one way); heal
 *	  crash N | restart N | wipe N (restart with nothing, like a new server)
 *	  fail-persist N	the next persistence on N fails
 *	  inject from to text	send a raw message, fields in key=value form
 *	  status N | log N | applied N | reads N | msgs
 */
#include <ctype.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "raft.h"
#include "unit.h"

#define MAXN 8
#define OUTMAX 65536

typedef struct snode
{
	raft	   *r;
	bool		up;
	bool		fail_next;
	/* durable storage */
	raft_hard_state hs;
	raft_entry *log;			/* after snapshot */
	size_t		n_log;
	raft_index	snap_index;
	raft_term	snap_term;
	raft_config snap_config;
	raft_index	applied;
	char		applied_text[4096];
	char		snap_text[4096];	/* state machine at snap_index */
	int			install_from;	/* snapshot to install after advance */
	raft_read_state reads[64];
	size_t		n_reads;
} snode;

typedef struct qmsg
{
	raft_id		from;
	raft_id		to;
	uint8_t    *buf;
	size_t		len;
} qmsg;

static snode nodes[MAXN + 1];
static int	n_nodes;
static raft_options base_opts;
static qmsg *queue;
static size_t n_queue,
			cap_queue;
static bool cut[MAXN + 1][MAXN + 1];
static char out[OUTMAX];
static size_t out_len;

static void
emit(const char *fmt,...)
{
	va_list		ap;
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(out + out_len, OUTMAX - out_len, fmt, ap);
	va_end(ap);
	if (n > 0)
		out_len = out_len + (size_t) n < OUTMAX - 1 ? out_len + (size_t) n : OUTMAX - 1;
}

/* ---------- storage ---------- */

static void
free_entry_copies(raft_entry *e, size_t n)
{
	size_t		i;

	for (i = 0; i < n; i++)
		free(e[i].data);
}

static void
storage_append(snode *s, const raft_entry *e)
{
	s->log = realloc(s->log, (s->n_log + 1) * sizeof(raft_entry));
	s->log[s->n_log] = *e;
	s->log[s->n_log].data = NULL;
	if (e->len)
	{
		s->log[s->n_log].data = malloc(e->len);
		memcpy(s->log[s->n_log].data, e->data, e->len);
	}
	s->n_log++;
}

static void
storage_truncate(snode *s, raft_index from)
{
	size_t		keep;

	if (from <= s->snap_index)
		keep = 0;
	else
		keep = (size_t) (from - s->snap_index - 1);
	if (keep < s->n_log)
	{
		free_entry_copies(s->log + keep, s->n_log - keep);
		s->n_log = keep;
	}
}

static void
node_start(int id)
{
	snode	   *s = &nodes[id];
	raft_options o = base_opts;
	raft_restore rs;
	int			rc;

	o.id = (raft_id) id;
	o.seed = (uint64_t) id * 7919;
	memset(&rs, 0, sizeof(rs));
	rs.hard_state = s->hs;
	rs.snapshot_index = s->snap_index;
	rs.snapshot_term = s->snap_term;
	rs.snapshot_config = s->snap_config;
	rs.entries = s->log;
	rs.n_entries = s->n_log;
	rs.applied = s->applied;
	rc = raft_create(&o, &rs, &s->r);
	CHECK_EQ(rc, RAFT_OK);
	s->up = true;
}

/* ---------- messages ---------- */

static const char *
entry_type_name(uint8_t t)
{
	switch (t)
	{
		case RAFT_ENTRY_NORMAL:
			return "normal";
		case RAFT_ENTRY_NOOP:
			return "noop";
		case RAFT_ENTRY_CONFIG:
			return "config";
	}
	return "?";
}

static void
emit_config(const raft_config *c)
{
	uint32_t	i;

	for (i = 0; i < c->n; i++)
		emit("%s%llu%s", i ? " " : "", (unsigned long long) c->servers[i].id,
			 c->servers[i].role == RAFT_LEARNER ? "L" : "");
}

static void
emit_entry(const raft_entry *e)
{
	emit("%llu/%llu %s", (unsigned long long) e->term,
		 (unsigned long long) e->index, entry_type_name(e->type));
	if (e->type == RAFT_ENTRY_NORMAL)
		emit(" \"%.*s\"", (int) e->len, (const char *) e->data);
	else if (e->type == RAFT_ENTRY_CONFIG)
	{
		raft_config c;

		if (raft_decode_config(e->data, e->len, &c) == RAFT_OK)
		{
			emit(" [");
			emit_config(&c);
			emit("]");
			raft_config_free(&c);
		}
		else
			emit(" <invalid>");
	}
}

static void
emit_message(const raft_message *m)
{
	uint32_t	i;

	emit("%llu->%llu %s term=%llu", (unsigned long long) m->from,
		 (unsigned long long) m->to, raft_msg_type_name(m->type),
		 (unsigned long long) m->term);
	switch (m->type)
	{
		case RAFT_MSG_APPEND:
			emit(" index=%llu logterm=%llu commit=%llu",
				 (unsigned long long) m->index, (unsigned long long) m->log_term,
				 (unsigned long long) m->commit);
			if (m->n_entries)
			{
				emit(" entries=[");
				for (i = 0; i < m->n_entries; i++)
				{
					if (i)
						emit(", ");
					emit_entry(&m->entries[i]);
				}
				emit("]");
			}
			break;
		case RAFT_MSG_APPEND_RESP:
			emit(" index=%llu", (unsigned long long) m->index);
			if (m->reject)
				emit(" reject hint=%llu/%llu", (unsigned long long) m->hint_term,
					 (unsigned long long) m->hint_index);
			break;
		case RAFT_MSG_VOTE:
		case RAFT_MSG_PREVOTE:
			emit(" last=%llu/%llu%s", (unsigned long long) m->log_term,
				 (unsigned long long) m->index,
				 (m->flags & RAFT_MSG_FLAG_TRANSFER) ? " transfer" : "");
			break;
		case RAFT_MSG_VOTE_RESP:
		case RAFT_MSG_PREVOTE_RESP:
			emit(m->reject ? " reject" : " granted");
			break;
		case RAFT_MSG_HEARTBEAT:
			emit(" commit=%llu ctx=%llu", (unsigned long long) m->commit,
				 (unsigned long long) m->ctx);
			break;
		case RAFT_MSG_HEARTBEAT_RESP:
			emit(" ctx=%llu", (unsigned long long) m->ctx);
			break;
		case RAFT_MSG_SNAPSHOT:
			emit(" snap=%llu/%llu [", (unsigned long long) m->log_term,
				 (unsigned long long) m->index);
			emit_config(&m->config);
			emit("]");
			break;
		case RAFT_MSG_READ_INDEX:
			emit(" ctx=%llu", (unsigned long long) m->ctx);
			break;
		case RAFT_MSG_READ_INDEX_RESP:
			emit(" ctx=%llu index=%llu", (unsigned long long) m->ctx,
				 (unsigned long long) m->index);
			break;
	}
	emit("\n");
}

static void
enqueue(const raft_message *m)
{
	size_t		size = raft_message_encoded_size(m);
	size_t		len;
	uint8_t    *buf = malloc(size);

	CHECK_EQ(raft_encode_message(m, buf, size, &len), RAFT_OK);
	if (n_queue == cap_queue)
	{
		cap_queue = cap_queue ? cap_queue * 2 : 64;
		queue = realloc(queue, cap_queue * sizeof(qmsg));
	}
	queue[n_queue].from = m->from;
	queue[n_queue].to = m->to;
	queue[n_queue].buf = buf;
	queue[n_queue].len = len;
	n_queue++;
}

/* the configuration in force at index of s's durable log */
static void
config_at(snode *s, raft_index index, raft_config *c)
{
	size_t		i = (size_t) (index - s->snap_index);

	while (i > 0)
	{
		const raft_entry *e = &s->log[i - 1];

		if (e->type == RAFT_ENTRY_CONFIG)
		{
			CHECK_EQ(raft_decode_config(e->data, e->len, c), RAFT_OK);
			return;
		}
		i--;
	}
	CHECK_EQ(raft_config_copy(&s->snap_config, c), RAFT_OK);
}

static void
compact(int id, raft_index index)
{
	snode	   *s = &nodes[id];
	raft_term	term;
	raft_config c;
	size_t		drop;

	CHECK(index > s->snap_index && index <= s->snap_index + s->n_log);
	CHECK_EQ(index, s->applied);
	term = s->log[index - s->snap_index - 1].term;
	CHECK_EQ(raft_compact(s->r, index, term), RAFT_OK);
	config_at(s, index, &c);
	drop = (size_t) (index - s->snap_index);
	free_entry_copies(s->log, drop);
	memmove(s->log, s->log + drop, (s->n_log - drop) * sizeof(raft_entry));
	s->n_log -= drop;
	raft_config_free(&s->snap_config);
	s->snap_config = c;
	s->snap_index = index;
	s->snap_term = term;
	memcpy(s->snap_text, s->applied_text, sizeof(s->snap_text));
}

/*
 * Copy the sender's snapshot, persist it the way raft.h asks (keep the log
 * after it only if it has the snapshot's entry), then tell the core.
 */
static void
install_snapshot(int id)
{
	snode	   *s = &nodes[id];
	snode	   *src = &nodes[s->install_from];
	raft_index	idx = src->snap_index;
	raft_term	term = src->snap_term;
	size_t		keep_from;

	s->install_from = 0;
	if (idx > s->snap_index && idx <= s->snap_index + s->n_log &&
		s->log[idx - s->snap_index - 1].term == term)
	{
		keep_from = (size_t) (idx - s->snap_index);
		free_entry_copies(s->log, keep_from);
		memmove(s->log, s->log + keep_from, (s->n_log - keep_from) * sizeof(raft_entry));
		s->n_log -= keep_from;
	}
	else
	{
		free_entry_copies(s->log, s->n_log);
		s->n_log = 0;
	}
	raft_config_free(&s->snap_config);
	CHECK_EQ(raft_config_copy(&src->snap_config, &s->snap_config), RAFT_OK);
	s->snap_index = idx;
	s->snap_term = term;
	if (s->hs.commit < idx)
		s->hs.commit = idx;
	s->applied = idx;
	memmove(s->applied_text, src->snap_text, sizeof(s->applied_text));
	memmove(s->snap_text, src->snap_text, sizeof(s->snap_text));
	emit("node %d: installed snapshot %llu/%llu from %d\n", id,
		 (unsigned long long) term, (unsigned long long) idx, (int) (src - nodes));
	CHECK_EQ(raft_snapshot_done(s->r, true, idx, term, &s->snap_config), RAFT_OK);
}

/* one ready cycle on node id; returns whether there was anything */
static bool
process_one(int id)
{
	snode	   *s = &nodes[id];
	raft_ready	rd;
	size_t		i;

	if (!s->up || !raft_has_ready(s->r))
		return false;
	CHECK_EQ(raft_get_ready(s->r, &rd), RAFT_OK);
	for (i = 0; i < rd.n_messages; i++)
		enqueue(&rd.messages[i]);
	for (i = 0; i < rd.n_committed; i++)
	{
		const raft_entry *e = &rd.committed[i];

		CHECK_EQ(e->index, s->applied + 1);
		s->applied = e->index;
		if (e->type == RAFT_ENTRY_NORMAL)
		{
			size_t		l = strlen(s->applied_text);

			snprintf(s->applied_text + l, sizeof(s->applied_text) - l, "%s%.*s",
					 l ? " " : "", (int) e->len, (const char *) e->data);
		}
	}
	for (i = 0; i < rd.n_reads && s->n_reads < 64; i++)
		s->reads[s->n_reads++] = rd.reads[i];
	if (rd.snapshot_pending)
		s->install_from = (int) rd.snapshot.from;
	if (s->fail_next)
	{
		s->fail_next = false;
		raft_persist_failed(s->r);
		emit("node %d: persistence failed\n", id);
		return true;
	}
	if (rd.truncate_from)
		storage_truncate(s, rd.truncate_from);
	for (i = 0; i < rd.n_entries; i++)
	{
		/* the core must have said to truncate whatever this overwrites */
		CHECK_EQ(rd.entries[i].index, s->snap_index + s->n_log + 1);
		storage_append(s, &rd.entries[i]);
	}
	if (rd.hard_state_changed)
		s->hs = rd.hard_state;
	raft_advance(s->r);
	if (s->install_from)
		install_snapshot(id);
	return true;
}

static bool
process_all(void)
{
	bool		any = false;
	int			i;

	for (i = 1; i <= n_nodes; i++)
		while (process_one(i))
			any = true;
	return any;
}

static bool
match_filter(const qmsg *q, int from, int to, int type)
{
	if (from && q->from != (raft_id) from)
		return false;
	if (to && q->to != (raft_id) to)
		return false;
	if (type)
	{
		raft_message m;
		bool		ok;

		if (raft_decode_message(q->buf, q->len, &m) != RAFT_OK)
			return false;
		ok = m.type == type;
		raft_message_free(&m);
		return ok;
	}
	return true;
}

/* deliver (or drop) the queued messages that match; returns how many */
static int
deliver(int from, int to, int type, bool drop, bool print)
{
	qmsg	   *batch;
	size_t		n = 0,
				i,
				keep = 0;

	batch = malloc((n_queue ? n_queue : 1) * sizeof(qmsg));
	for (i = 0; i < n_queue; i++)
	{
		if (match_filter(&queue[i], from, to, type))
			batch[n++] = queue[i];
		else
			queue[keep++] = queue[i];
	}
	n_queue = keep;
	for (i = 0; i < n; i++)
	{
		raft_message m;
		snode	   *dst = &nodes[batch[i].to];

		CHECK_EQ(raft_decode_message(batch[i].buf, batch[i].len, &m), RAFT_OK);
		if (print)
		{
			if (drop || !dst->up || cut[batch[i].from][batch[i].to])
				emit("dropped: ");
			emit_message(&m);
		}
		if (!drop && dst->up && !cut[batch[i].from][batch[i].to])
			(void) raft_step(dst->r, &m);
		raft_message_free(&m);
		free(batch[i].buf);
	}
	free(batch);
	return (int) n;
}

/* process and deliver until nothing moves */
static void
stabilize(bool verbose)
{
	int			rounds = 0;

	while (rounds++ < 1000)
	{
		bool		any = process_all();

		if (deliver(0, 0, 0, false, verbose) == 0 && !any)
			break;
	}
}

/* ---------- commands ---------- */

typedef struct args
{
	int			argc;
	char	   *argv[16];
} args;

static const char *
kv(const args *a, const char *key)
{
	int			i;
	size_t		kl = strlen(key);

	for (i = 1; i < a->argc; i++)
		if (strncmp(a->argv[i], key, kl) == 0 && a->argv[i][kl] == '=')
			return a->argv[i] + kl + 1;
	return NULL;
}

static long
kv_num(const args *a, const char *key, long dflt)
{
	const char *v = kv(a, key);

	return v ? strtol(v, NULL, 10) : dflt;
}

static int
arg_num(const args *a, int i)
{
	CHECK(i < a->argc);
	return atoi(a->argv[i]);
}

static void
reset_world(void)
{
	int			i;

	for (i = 1; i <= MAXN; i++)
	{
		snode	   *s = &nodes[i];

		raft_destroy(s->r);
		free_entry_copies(s->log, s->n_log);
		free(s->log);
		raft_config_free(&s->snap_config);
		memset(s, 0, sizeof(*s));
	}
	for (i = 0; i < (int) n_queue; i++)
		free(queue[i].buf);
	free(queue);
	queue = NULL;
	n_queue = cap_queue = 0;
	memset(cut, 0, sizeof(cut));
	n_nodes = 0;
}

static void
cmd_cluster(const args *a)
{
	int			voters = (int) kv_num(a, "voters", 3);
	int			learners = (int) kv_num(a, "learners", 0);
	raft_config c;
	raft_server servers[MAXN];
	char		names[MAXN][16];
	raft_entry	boot;
	int			i;

	reset_world();
	raft_options_init(&base_opts, 1);
	base_opts.pre_vote = kv_num(a, "prevote", 1) != 0;
	base_opts.check_quorum = kv_num(a, "checkquorum", 1) != 0;
	base_opts.lazy_commit = kv_num(a, "lazycommit", 0) != 0;
	base_opts.election_ticks = (uint32_t) kv_num(a, "election", 10);
	base_opts.heartbeat_ticks = (uint32_t) kv_num(a, "heartbeat", 1);
	base_opts.max_inflight = (uint32_t) kv_num(a, "inflight", 64);
	base_opts.max_msg_entries = (uint32_t) kv_num(a, "maxentries", 1024);
	n_nodes = voters + learners;
	CHECK(n_nodes <= MAXN);
	for (i = 0; i < n_nodes; i++)
	{
		snprintf(names[i], sizeof(names[i]), "n%d", i + 1);
		servers[i].id = (raft_id) (i + 1);
		servers[i].role = i < voters ? RAFT_VOTER : RAFT_LEARNER;
		servers[i].name = names[i];
		servers[i].address = names[i];
	}
	c.n = (uint32_t) n_nodes;
	c.servers = servers;
	CHECK_EQ(raft_bootstrap_entry(&c, &boot), RAFT_OK);
	for (i = 1; i <= n_nodes; i++)
	{
		storage_append(&nodes[i], &boot);
		nodes[i].hs.term = 1;
		node_start(i);
	}
	raft_free(boot.data);
}

static void
print_status(int id)
{
	raft_status st;

	if (!nodes[id].up)
	{
		emit("%d: down\n", id);
		return;
	}
	raft_get_status(nodes[id].r, &st);
	emit("%d: %s term=%llu vote=%llu leader=%llu last=%llu/%llu commit=%llu applied=%llu",
		 id, raft_role_name(st.role), (unsigned long long) st.term,
		 (unsigned long long) st.vote, (unsigned long long) st.leader,
		 (unsigned long long) st.last_term, (unsigned long long) st.last_index,
		 (unsigned long long) st.commit, (unsigned long long) st.applied);
	emit(" config=[");
	emit_config(raft_get_config(nodes[id].r));
	emit("]\n");
}

static void
report_rc(int rc)
{
	if (rc != RAFT_OK)
		emit("error: %s\n", raft_strerror(rc));
	else
		emit("ok\n");
}

static void
cmd_inject(const args *a)
{
	raft_message m;
	raft_entry	e;
	const char *type = kv(a, "type");
	const char *payload = kv(a, "entry");
	int			i;

	memset(&m, 0, sizeof(m));
	m.from = (raft_id) arg_num(a, 1);
	m.to = (raft_id) arg_num(a, 2);
	for (i = 1; i < RAFT_MSG_LAST; i++)
		if (type && strcmp(type, raft_msg_type_name(i)) == 0)
			m.type = (uint8_t) i;
	CHECK(m.type != 0);
	m.term = (raft_term) kv_num(a, "term", 0);
	m.index = (raft_index) kv_num(a, "index", 0);
	m.log_term = (raft_term) kv_num(a, "logterm", 0);
	m.commit = (raft_index) kv_num(a, "commit", 0);
	if (payload)
	{
		/* entry=config-garbage | config-novoter | normal:text */
		memset(&e, 0, sizeof(e));
		e.term = (raft_term) kv_num(a, "entryterm", (long) m.term);
		e.index = m.index + 1;
		if (strncmp(payload, "normal:", 7) == 0)
		{
			e.type = RAFT_ENTRY_NORMAL;
			e.data = (uint8_t *) payload + 7;
			e.len = (uint32_t) strlen(payload + 7);
		}
		else
		{
			e.type = RAFT_ENTRY_CONFIG;
			e.data = (uint8_t *) payload;
			e.len = (uint32_t) strlen(payload);
		}
		m.entries = &e;
		m.n_entries = 1;
	}
	enqueue(&m);
	emit("queued\n");
}

static void
run_command(const args *a)
{
	const char *c = a->argv[0];
	int			rc;
	raft_index	idx = 0;

	if (strcmp(c, "cluster") == 0)
		cmd_cluster(a);
	else if (strcmp(c, "campaign") == 0)
		report_rc(raft_campaign(nodes[arg_num(a, 1)].r));
	else if (strcmp(c, "tick") == 0)
	{
		int			n = a->argc > 2 ? arg_num(a, 2) : 1;

		while (n-- > 0)
			raft_tick(nodes[arg_num(a, 1)].r);
	}
	else if (strcmp(c, "tick-all") == 0)
	{
		int			n = a->argc > 1 ? arg_num(a, 1) : 1;
		int			i;

		while (n-- > 0)
		{
			for (i = 1; i <= n_nodes; i++)
				if (nodes[i].up)
					raft_tick(nodes[i].r);
			stabilize(false);
		}
	}
	else if (strcmp(c, "propose") == 0)
	{
		raft_buf	b;

		CHECK(a->argc > 2);
		b.base = a->argv[2];
		b.len = strlen(a->argv[2]);
		rc = raft_propose(nodes[arg_num(a, 1)].r, &b, 1, &idx);
		if (rc == RAFT_OK)
			emit("index %llu\n", (unsigned long long) idx);
		else
			report_rc(rc);
	}
	else if (strcmp(c, "add") == 0)
	{
		int			id = arg_num(a, 2);
		char		name[16];

		snprintf(name, sizeof(name), "n%d", id);
		rc = raft_add_server(nodes[arg_num(a, 1)].r, (raft_id) id, name, name, &idx);
		if (rc == RAFT_OK)
		{
			emit("index %llu\n", (unsigned long long) idx);
			if (id > n_nodes)
			{
				/* a new, empty server */
				n_nodes = id;
				node_start(id);
			}
		}
		else
			report_rc(rc);
	}
	else if (strcmp(c, "promote") == 0 || strcmp(c, "remove") == 0)
	{
		raft	   *r = nodes[arg_num(a, 1)].r;

		rc = c[1] == 'r' ? raft_promote(r, (raft_id) arg_num(a, 2), &idx)
			: raft_remove_server(r, (raft_id) arg_num(a, 2), &idx);
		if (rc == RAFT_OK)
			emit("index %llu\n", (unsigned long long) idx);
		else
			report_rc(rc);
	}
	else if (strcmp(c, "transfer") == 0)
		report_rc(raft_transfer_leadership(nodes[arg_num(a, 1)].r,
										   (raft_id) arg_num(a, 2)));
	else if (strcmp(c, "read-index") == 0)
		report_rc(raft_read_index(nodes[arg_num(a, 1)].r,
								  (uint64_t) arg_num(a, 2)));
	else if (strcmp(c, "process") == 0)
	{
		if (a->argc > 1)
			while (process_one(arg_num(a, 1)));
		else
			process_all();
	}
	else if (strcmp(c, "deliver") == 0)
	{
		int			type = 0;
		int			i;
		const char *t = kv(a, "type");

		for (i = 1; t && i < RAFT_MSG_LAST; i++)
			if (strcmp(t, raft_msg_type_name(i)) == 0)
				type = i;
		process_all();
		deliver((int) kv_num(a, "from", 0), (int) kv_num(a, "to", 0), type,
				kv_num(a, "drop", 0) != 0, true);
	}
	else if (strcmp(c, "stabilize") == 0)
		stabilize(kv_num(a, "verbose", 0) != 0);
	else if (strcmp(c, "cut") == 0)
		cut[arg_num(a, 1)][arg_num(a, 2)] = true;
	else if (strcmp(c, "heal") == 0)
		memset(cut, 0, sizeof(cut));
	else if (strcmp(c, "crash") == 0)
	{
		snode	   *s = &nodes[arg_num(a, 1)];

		raft_destroy(s->r);
		s->r = NULL;
		s->up = false;
	}
	else if (strcmp(c, "restart") == 0)
		node_start(arg_num(a, 1));
	else if (strcmp(c, "wipe") == 0)
	{
		/* the server loses all it had and starts again empty */
		snode	   *s = &nodes[arg_num(a, 1)];

		raft_destroy(s->r);
		free_entry_copies(s->log, s->n_log);
		free(s->log);
		raft_config_free(&s->snap_config);
		memset(s, 0, sizeof(*s));
		node_start(arg_num(a, 1));
	}
	else if (strcmp(c, "compact") == 0)
		compact(arg_num(a, 1), (raft_index) arg_num(a, 2));
	else if (strcmp(c, "fail-persist") == 0)
		nodes[arg_num(a, 1)].fail_next = true;
	else if (strcmp(c, "inject") == 0)
		cmd_inject(a);
	else if (strcmp(c, "status") == 0)
	{
		int			i;

		if (a->argc > 1)
			print_status(arg_num(a, 1));
		else
			for (i = 1; i <= n_nodes; i++)
				print_status(i);
	}
	else if (strcmp(c, "log") == 0)
	{
		snode	   *s = &nodes[arg_num(a, 1)];
		size_t		i;

		emit("durable term=%llu vote=%llu commit=%llu\n",
			 (unsigned long long) s->hs.term, (unsigned long long) s->hs.vote,
			 (unsigned long long) s->hs.commit);
		for (i = 0; i < s->n_log; i++)
		{
			emit_entry(&s->log[i]);
			emit("\n");
		}
	}
	else if (strcmp(c, "applied") == 0)
		emit("%s\n", nodes[arg_num(a, 1)].applied_text);
	else if (strcmp(c, "reads") == 0)
	{
		snode	   *s = &nodes[arg_num(a, 1)];
		size_t		i;

		for (i = 0; i < s->n_reads; i++)
			emit("ctx=%llu index=%llu\n", (unsigned long long) s->reads[i].ctx,
				 (unsigned long long) s->reads[i].index);
		s->n_reads = 0;
	}
	else if (strcmp(c, "msgs") == 0)
	{
		size_t		i;

		process_all();
		for (i = 0; i < n_queue; i++)
		{
			raft_message m;

			CHECK_EQ(raft_decode_message(queue[i].buf, queue[i].len, &m), RAFT_OK);
			emit_message(&m);
			raft_message_free(&m);
		}
	}
	else
		unit_fail(__FILE__, __LINE__, "unknown command %s", c);
}

/* ---------- the script runner ---------- */

static char *
read_file(const char *path)
{
	FILE	   *f = fopen(path, "rb");
	long		n;
	char	   *buf;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t) n + 1);
	if (fread(buf, 1, (size_t) n, f) != (size_t) n)
		n = 0;
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static const char *scenario_path;
static int	scenario_failures;

static void
run_script(void)
{
	char	   *text = read_file(scenario_path);
	char	   *p;
	FILE	   *rewrite = NULL;
	char		tmp[1024];
	int			lineno = 0;

	CHECK(text != NULL);
	if (getenv("REWRITE"))
	{
		snprintf(tmp, sizeof(tmp), "%s.new", scenario_path);
		rewrite = fopen(tmp, "w");
	}
	scenario_failures = 0;
	p = text;
	while (*p)
	{
		char	   *line = p;
		char	   *nl = strchr(p, '\n');
		char		cmdline[1024];
		char		expected[OUTMAX];
		size_t		exp_len = 0;
		args		a;
		char	   *tok;
		int			cmd_line;

		if (nl)
			*nl = '\0';
		p = nl ? nl + 1 : p + strlen(p);
		lineno++;
		if (line[0] == '#' || line[0] == '\0')
		{
			if (rewrite)
				fprintf(rewrite, "%s\n", line);
			continue;
		}
		cmd_line = lineno;
		snprintf(cmdline, sizeof(cmdline), "%s", line);
		/* expect ---- */
		line = p;
		nl = strchr(p, '\n');
		if (nl)
			*nl = '\0';
		p = nl ? nl + 1 : p + strlen(p);
		lineno++;
		if (strcmp(line, "----") != 0)
			unit_fail(scenario_path, cmd_line, "missing ---- after command");
		expected[0] = '\0';
		while (*p)
		{
			line = p;
			nl = strchr(p, '\n');
			if (nl)
				*nl = '\0';
			p = nl ? nl + 1 : p + strlen(p);
			lineno++;
			if (line[0] == '\0')
				break;
			exp_len += (size_t) snprintf(expected + exp_len, OUTMAX - exp_len, "%s\n", line);
		}

		/* run it */
		a.argc = 0;
		{
			char		copy[1024];

			snprintf(copy, sizeof(copy), "%s", cmdline);
			for (tok = strtok(copy, " \t"); tok && a.argc < 16; tok = strtok(NULL, " \t"))
				a.argv[a.argc++] = strdup(tok);
		}
		out_len = 0;
		out[0] = '\0';
		run_command(&a);
		while (a.argc > 0)
			free(a.argv[--a.argc]);

		if (rewrite)
			fprintf(rewrite, "%s\n----\n%s\n", cmdline, out);
		else if (strcmp(out, expected) != 0)
		{
			printf("%s:%d: %s\n--- expected\n%s--- got\n%s", scenario_path,
				   cmd_line, cmdline, expected, out);
			scenario_failures++;
		}
	}
	free(text);
	reset_world();
	if (rewrite)
	{
		fclose(rewrite);
		rename(tmp, scenario_path);
	}
	CHECK_EQ(scenario_failures, 0);
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

void		suite_scenarios(void);

void
suite_scenarios(void)
{
	const char *dir = getenv("SCENARIO_DIR") ? getenv("SCENARIO_DIR") : "scenarios";
	DIR		   *d = opendir(dir);
	struct dirent *de;
	char	   *names[256];
	int			n = 0,
				i;
	char		path[1024];

	if (d == NULL)
	{
		printf("FAIL suite_scenarios: cannot open %s\n", dir);
		unit_failed++;
		return;
	}
	while ((de = readdir(d)) != NULL && n < 256)
	{
		size_t		l = strlen(de->d_name);

		if (l > 4 && strcmp(de->d_name + l - 4, ".txt") == 0)
			names[n++] = strdup(de->d_name);
	}
	closedir(d);
	qsort(names, (size_t) n, sizeof(char *), cmp_str);
	for (i = 0; i < n; i++)
	{
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		scenario_path = path;
		unit_run(names[i], run_script);
		free(names[i]);
	}
}
