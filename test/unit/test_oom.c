/*
 * test_oom.c
 *	  Out of memory inside the consensus core: fail the k-th allocation of
 *	  a call, for every k, and check that the call either succeeds or
 *	  returns RAFT_ENOMEM with the node exactly as it was (raft.h's
 *	  contract), never aborts, and that the node works on afterwards.
 */
#include <stdlib.h>
#include <string.h>

#include "raft.h"
#include "unit.h"

void		suite_oom(void);

static long countdown = -1;		/* fail when it reaches 0 */

static void *
oom_alloc(void *c, size_t n)
{
	(void) c;
	if (countdown >= 0 && countdown-- == 0)
		return NULL;
	return malloc(n);
}

static void *
oom_realloc(void *c, void *p, size_t n)
{
	(void) c;
	if (countdown >= 0 && countdown-- == 0)
		return NULL;
	return realloc(p, n);
}

static void
oom_free(void *c, void *p)
{
	(void) c;
	free(p);
}

static const raft_allocator oom = {NULL, oom_alloc, oom_realloc, oom_free};

static raft_server servers[3] = {
	{1, RAFT_VOTER, "n1", "a1"}, {2, RAFT_VOTER, "n2", "a2"}, {3, RAFT_LEARNER, "n3", "a3"}
};

/* node id of a cluster bootstrapped with configuration c, term 1 */
static raft *
make_node_of(raft_id id, const raft_config *c)
{
	raft_entry	boot;
	raft_options o;
	raft_restore rs;
	raft	   *r;

	CHECK_EQ(raft_bootstrap_entry(c, &boot), RAFT_OK);
	raft_options_init(&o, id);
	memset(&rs, 0, sizeof(rs));
	rs.hard_state.term = 1;
	rs.entries = &boot;
	rs.n_entries = 1;
	CHECK_EQ(raft_create(&o, &rs, &r), RAFT_OK);
	raft_free(boot.data);
	return r;
}

/* a node of the configuration {1, 2, 3L} with only the bootstrap entry */
static raft *
make_node(raft_id id)
{
	raft_config c = {3, servers};

	return make_node_of(id, &c);
}

static void
drain(raft *r)
{
	raft_ready	rd;

	while (raft_has_ready(r))
	{
		CHECK_EQ(raft_get_ready(r, &rd), RAFT_OK);
		raft_advance(r);
	}
}

static bool
same_status(const raft_status *a, const raft_status *b)
{
	return a->role == b->role && a->term == b->term && a->vote == b->vote &&
		a->last_index == b->last_index && a->last_term == b->last_term &&
		a->commit == b->commit && a->config_index == b->config_index;
}

/* an APPEND from leader 1 in term 2 carrying a normal and a config entry */
static void
follower_append(void)
{
	long		k;

	for (k = 0;; k++)
	{
		raft	   *r = make_node(2);
		raft_status before,
					after;
		raft_message m;
		raft_entry	ents[2];
		raft_server two[2] = {{1, RAFT_VOTER, "n1", "a1"}, {2, RAFT_VOTER, "n2", "a2"}};
		raft_config c2 = {2, two};
		raft_entry	cfg;
		int			rc;

		CHECK_EQ(raft_bootstrap_entry(&c2, &cfg), RAFT_OK);
		memset(&m, 0, sizeof(m));
		m.type = RAFT_MSG_APPEND;
		m.from = 1;
		m.to = 2;
		m.term = 2;
		m.index = 1;
		m.log_term = 1;
		memset(ents, 0, sizeof(ents));
		ents[0].term = 2;
		ents[0].index = 2;
		ents[0].type = RAFT_ENTRY_NORMAL;
		ents[0].len = 3;
		ents[0].data = (uint8_t *) "abc";
		ents[1] = cfg;
		ents[1].term = 2;
		ents[1].index = 3;
		m.entries = ents;
		m.n_entries = 2;

		raft_get_status(r, &before);
		raft_set_allocator(&oom);
		countdown = k;
		rc = raft_step(r, &m);
		countdown = -1;
		raft_get_status(r, &after);
		if (rc == RAFT_ENOMEM)
		{
			/* the term moved (a leader of a newer term spoke), the log not */
			CHECK_EQ(after.last_index, before.last_index);
			CHECK_EQ(after.config_index, before.config_index);
			CHECK_EQ(raft_get_config(r)->n, 3);
		}
		else
		{
			CHECK_EQ(rc, RAFT_OK);
			CHECK_EQ(after.last_index, 3);
			CHECK_EQ(after.config_index, 3);
			CHECK_EQ(raft_get_config(r)->n, 2);
		}
		drain(r);
		raft_set_allocator(NULL);
		raft_free(cfg.data);
		raft_destroy(r);
		if (rc == RAFT_OK)
			break;
		CHECK(k < 1000);
	}
}

/* a single-voter leader: propose, add a server, get a ready batch */
static void
leader_calls(void)
{
	long		k;
	int			op;

	for (op = 0; op < 3; op++)
		for (k = 0;; k++)
		{
			raft_server one = {1, RAFT_VOTER, "n1", "a1"};
			raft_config c = {1, &one};
			raft	   *r;
			raft_status before,
						after;
			raft_buf	b = {"payload", 7};
			raft_index	idx;
			raft_ready	rd;
			int			rc;

			r = make_node_of(1, &c);
			CHECK_EQ(raft_campaign(r), RAFT_OK);
			drain(r);
			drain(r);

			raft_get_status(r, &before);
			CHECK_EQ(before.role, RAFT_LEADER);
			raft_set_allocator(&oom);
			if (op == 0)
			{
				countdown = k;
				rc = raft_propose(r, &b, 1, &idx);
			}
			else if (op == 1)
			{
				countdown = k;
				rc = raft_add_server(r, 2, "n2", "a2", &idx);
			}
			else
			{
				CHECK_EQ(raft_propose(r, &b, 1, &idx), RAFT_OK);
				raft_get_status(r, &before);
				countdown = k;
				rc = raft_get_ready(r, &rd);
				if (rc == RAFT_OK)
					raft_advance(r);
			}
			countdown = -1;
			raft_get_status(r, &after);
			if (rc == RAFT_ENOMEM)
				CHECK(same_status(&before, &after));
			else
				CHECK_EQ(rc, RAFT_OK);
			/* and it works on */
			drain(r);
			CHECK_EQ(raft_propose(r, &b, 1, &idx), RAFT_OK);
			drain(r);
			raft_get_status(r, &after);
			CHECK_EQ(after.commit, idx);
			raft_set_allocator(NULL);
			raft_destroy(r);
			if (rc == RAFT_OK)
				break;
			CHECK(k < 1000);
		}
}

void
suite_oom(void)
{
	RUN(follower_append);
	RUN(leader_calls);
}
