/*
 * test_config.c
 *	  Unit tests of cluster configurations (src/raft/config.c).
 *
 * Each rule of raft_config_validate() is tested on its own against a
 * configuration that is valid in every other respect, next to the limit
 * it enforces (63 bytes of name pass, 64 fail), so a test fails if its rule
 * is dropped or moved by one.  The membership helpers are checked for their
 * results, their error codes, for leaving the source and *dst alone on
 * failure, and for reporting every allocation failure as RAFT_ENOMEM
 * without leaking.
 */
#include <stdlib.h>
#include <string.h>

#include "raft.h"
#include "config.h"
#include "unit.h"

void		suite_config(void);

/* ----------
 * A counting allocator that can fail the Nth call (as in test_codec.c).
 * ----------
 */
static struct
{
	long		calls;
	long		live;
	long		fail_at;
} oom;

static void *
oom_alloc(void *ctx, size_t size)
{
	void	   *p;

	(void) ctx;
	if (oom.calls++ == oom.fail_at)
		return NULL;
	p = malloc(size);
	if (p != NULL)
		oom.live++;
	return p;
}

static void *
oom_realloc(void *ctx, void *ptr, size_t size)
{
	if (ptr == NULL)
		return oom_alloc(ctx, size);
	if (oom.calls++ == oom.fail_at)
		return NULL;
	return realloc(ptr, size);
}

static void
oom_free(void *ctx, void *ptr)
{
	(void) ctx;
	oom.live--;
	free(ptr);
}

static void
oom_install(void)
{
	static const raft_allocator a = {NULL, oom_alloc, oom_realloc, oom_free};

	oom.calls = 0;
	oom.live = 0;
	oom.fail_at = -1;
	raft_set_allocator(&a);
}

static void
oom_remove(void)
{
	oom.fail_at = -1;
	raft_set_allocator(NULL);
}

typedef int (*oom_op) (const void *arg);

static void
check_oom_loop(oom_op op, const void *arg, long expect_allocs)
{
	long		needed;
	long		k;
	int			rc;

	oom_install();
	rc = op(arg);
	needed = oom.calls;
	CHECK_EQ(rc, RAFT_OK);
	CHECK_EQ(oom.live, 0);
	CHECK_EQ(needed, expect_allocs);
	for (k = 0; k < needed; k++)
	{
		oom_install();
		oom.fail_at = k;
		rc = op(arg);
		oom.fail_at = -1;
		CHECK_EQ(rc, RAFT_ENOMEM);
		CHECK_EQ(oom.live, 0);
	}
	oom_remove();
}

/* ----------
 * Fixtures: a valid configuration in writable storage, to break one rule
 * at a time.
 * ----------
 */
typedef struct fixture
{
	raft_server servers[RAFT_MAX_SERVERS + 1];
	char		names[RAFT_MAX_SERVERS + 1][RAFT_MAX_NAME + 2];
	char		addresses[RAFT_MAX_SERVERS + 1][RAFT_MAX_ADDRESS + 2];
	raft_config c;
} fixture;

static fixture fx;

/* n servers: ids 1..n, names s1..sn, voters except every third */
static raft_config *
fixture_make(uint32_t n)
{
	uint32_t	i;

	memset(&fx, 0, sizeof(fx));
	for (i = 0; i < n; i++)
	{
		snprintf(fx.names[i], sizeof(fx.names[i]), "s%u", (unsigned) (i + 1));
		snprintf(fx.addresses[i], sizeof(fx.addresses[i]),
				 "host=h%u port=5432", (unsigned) (i + 1));
		fx.servers[i].id = i + 1;
		fx.servers[i].role = i % 3 == 2 ? RAFT_LEARNER : RAFT_VOTER;
		fx.servers[i].name = fx.names[i];
		fx.servers[i].address = fx.addresses[i];
	}
	fx.c.n = n;
	fx.c.servers = fx.servers;
	return &fx.c;
}

static raft_server base_servers[] = {
	{10, RAFT_VOTER, "alpha", "host=a"},
	{20, RAFT_VOTER, "beta", "host=b"},
	{30, RAFT_LEARNER, "gamma", "host=c"},
};
static const raft_config base = {3, base_servers};

/* ----------
 * raft_config_validate, one rule at a time.
 * ----------
 */
static void
test_validate_valid(void)
{
	CHECK_EQ(raft_config_validate(&base), RAFT_OK);
	CHECK_EQ(raft_config_validate(fixture_make(1)), RAFT_OK);
	CHECK_EQ(raft_config_validate(fixture_make(7)), RAFT_OK);
	CHECK_EQ(raft_config_validate(NULL), RAFT_EINVAL);
}

static void
test_validate_max_servers(void)
{
	raft_config *c = fixture_make(RAFT_MAX_SERVERS + 1);

	c->n = RAFT_MAX_SERVERS;
	CHECK_EQ(raft_config_validate(c), RAFT_OK);
	c->n = RAFT_MAX_SERVERS + 1;
	CHECK_EQ(raft_config_validate(c), RAFT_EBADCONFIG);
}

static void
test_validate_id_zero(void)
{
	raft_config *c = fixture_make(3);

	c->servers[2].id = 0;
	CHECK_EQ(raft_config_validate(c), RAFT_EBADCONFIG);
}

static void
test_validate_duplicate_id(void)
{
	raft_config *c = fixture_make(4);

	c->servers[3].id = c->servers[1].id;
	CHECK_EQ(raft_config_validate(c), RAFT_EBADCONFIG);
	c->servers[3].id = 99;
	CHECK_EQ(raft_config_validate(c), RAFT_OK);
}

static void
test_validate_duplicate_name(void)
{
	raft_config *c = fixture_make(4);

	strcpy(fx.names[3], fx.names[0]);
	CHECK_EQ(raft_config_validate(c), RAFT_EBADCONFIG);
	/* names are compared whole, not by prefix */
	strcat(fx.names[3], "x");
	CHECK_EQ(raft_config_validate(c), RAFT_OK);
	/* an equal address is fine: two nodes behind one proxy */
	strcpy(fx.addresses[3], fx.addresses[0]);
	CHECK_EQ(raft_config_validate(c), RAFT_OK);
}

static void
test_validate_role(void)
{
	raft_config *c = fixture_make(3);
	unsigned	role;

	for (role = 0; role < 256; role++)
	{
		c->servers[1].role = (uint8_t) role;
		CHECK_EQ(raft_config_validate(c),
				 role == RAFT_VOTER || role == RAFT_LEARNER ?
				 RAFT_OK : RAFT_EBADCONFIG);
	}
}

static void
test_validate_name(void)
{
	raft_config *c = fixture_make(3);

	fx.names[1][0] = '\0';
	CHECK_EQ(raft_config_validate(c), RAFT_EBADCONFIG);
	memset(fx.names[1], 'n', RAFT_MAX_NAME);
	fx.names[1][RAFT_MAX_NAME] = '\0';
	CHECK_EQ(raft_config_validate(c), RAFT_OK);
	fx.names[1][RAFT_MAX_NAME] = 'n';
	fx.names[1][RAFT_MAX_NAME + 1] = '\0';
	CHECK_EQ(raft_config_validate(c), RAFT_EBADCONFIG);
	c->servers[1].name = NULL;
	CHECK_EQ(raft_config_validate(c), RAFT_EBADCONFIG);
}

static void
test_validate_address(void)
{
	raft_config *c = fixture_make(3);

	fx.addresses[1][0] = '\0';
	CHECK_EQ(raft_config_validate(c), RAFT_OK);
	memset(fx.addresses[1], 'a', RAFT_MAX_ADDRESS);
	fx.addresses[1][RAFT_MAX_ADDRESS] = '\0';
	CHECK_EQ(raft_config_validate(c), RAFT_OK);
	fx.addresses[1][RAFT_MAX_ADDRESS] = 'a';
	fx.addresses[1][RAFT_MAX_ADDRESS + 1] = '\0';
	CHECK_EQ(raft_config_validate(c), RAFT_EBADCONFIG);
	c->servers[1].address = NULL;
	CHECK_EQ(raft_config_validate(c), RAFT_EBADCONFIG);
}

static void
test_validate_voters(void)
{
	raft_config *c = fixture_make(3);
	raft_config empty = {0, NULL};
	raft_config dangling = {2, NULL};

	c->servers[0].role = RAFT_LEARNER;
	c->servers[1].role = RAFT_LEARNER;
	CHECK_EQ(raft_config_validate(c), RAFT_EBADCONFIG);
	c->servers[1].role = RAFT_VOTER;
	CHECK_EQ(raft_config_validate(c), RAFT_OK);
	CHECK_EQ(raft_config_validate(&empty), RAFT_EBADCONFIG);
	CHECK_EQ(raft_config_validate(&dangling), RAFT_EBADCONFIG);
}

/* ----------
 * Lookups.
 * ----------
 */
static void
test_lookups(void)
{
	const raft_server *s;
	raft_config empty = {0, NULL};

	s = raft_config_get(&base, 20);
	CHECK(s == &base.servers[1]);
	CHECK(raft_config_get(&base, 21) == NULL);
	CHECK(raft_config_get(&base, 0) == NULL);
	CHECK(raft_config_get(&empty, 10) == NULL);
	CHECK(raft_config_get(NULL, 10) == NULL);

	CHECK_EQ(raft_config_index_of(&base, 10), 0);
	CHECK_EQ(raft_config_index_of(&base, 30), 2);
	CHECK_EQ(raft_config_index_of(&base, 40), -1);
	CHECK_EQ(raft_config_index_of(NULL, 10), -1);

	CHECK(raft_config_is_voter(&base, 10));
	CHECK(raft_config_is_voter(&base, 20));
	CHECK(!raft_config_is_voter(&base, 30));	/* learner */
	CHECK(!raft_config_is_voter(&base, 40));	/* stranger */
	CHECK(!raft_config_is_voter(NULL, 10));
}

static void
test_quorum(void)
{
	/* voters -> quorum; learners (every third server) never count */
	static const uint32_t expect[] = {1, 1, 2, 2, 3, 3, 4, 4, 5};
	uint32_t	voters;

	CHECK_EQ(raft_config_voter_count(NULL), 0);
	CHECK_EQ(raft_config_quorum(NULL), 1);
	for (voters = 0; voters < sizeof(expect) / sizeof(expect[0]); voters++)
	{
		raft_config *c = fixture_make(voters + voters / 2 + 1);
		uint32_t	i;

		/* exactly `voters` voters, the rest learners */
		for (i = 0; i < c->n; i++)
			c->servers[i].role = i < voters ? RAFT_VOTER : RAFT_LEARNER;
		CHECK_EQ(raft_config_voter_count(c), voters);
		CHECK_EQ(raft_config_quorum(c), expect[voters]);
	}
	CHECK_EQ(raft_config_voter_count(&base), 2);
	CHECK_EQ(raft_config_quorum(&base), 2);
}

static void
test_equal(void)
{
	raft_server s[3];
	raft_config c = {3, s};
	char		name[8] = "alpha";
	char		address[8] = "host=a";

	memcpy(s, base_servers, sizeof(s));
	s[0].name = name;
	s[0].address = address;
	CHECK(raft_config_equal(&base, &c));
	CHECK(raft_config_equal(&c, &base));

	c.n = 2;
	CHECK(!raft_config_equal(&base, &c));
	c.n = 3;
	s[1].id = 21;
	CHECK(!raft_config_equal(&base, &c));
	s[1].id = 20;
	s[1].role = RAFT_LEARNER;
	CHECK(!raft_config_equal(&base, &c));
	s[1].role = RAFT_VOTER;
	name[0] = 'A';
	CHECK(!raft_config_equal(&base, &c));
	name[0] = 'a';
	address[5] = 'b';
	CHECK(!raft_config_equal(&base, &c));
	address[5] = 'a';
	CHECK(raft_config_equal(&base, &c));

	/* order matters */
	s[0] = base_servers[1];
	s[1] = base_servers[0];
	CHECK(!raft_config_equal(&base, &c));
}

/* ----------
 * Copy and free.
 * ----------
 */
static void
test_copy(void)
{
	raft_config *src = fixture_make(5);
	raft_config dst;
	raft_config empty = {0, NULL};
	raft_config bad = {1, NULL};
	raft_config keep;
	uint32_t	i;

	oom_install();
	CHECK_EQ(raft_config_copy(src, &dst), RAFT_OK);
	CHECK_EQ(oom.calls, 1);		/* one block */
	CHECK(raft_config_equal(src, &dst));
	for (i = 0; i < dst.n; i++)
	{
		CHECK(dst.servers[i].name != src->servers[i].name);
		CHECK(dst.servers[i].address != src->servers[i].address);
	}
	/* a deep copy: the source may change or go away */
	fx.names[0][0] = 'X';
	fx.addresses[4][0] = 'Y';
	CHECK(strcmp(dst.servers[0].name, "s1") == 0);
	CHECK(strcmp(dst.servers[4].address, "host=h5 port=5432") == 0);
	raft_config_free(&dst);
	CHECK_EQ(dst.n, 0);
	CHECK(dst.servers == NULL);
	CHECK_EQ(oom.live, 0);

	/* empty: nothing allocated */
	CHECK_EQ(raft_config_copy(&empty, &dst), RAFT_OK);
	CHECK_EQ(dst.n, 0);
	CHECK(dst.servers == NULL);
	CHECK_EQ(oom.calls, 1);

	/* bad input is refused without touching dst */
	keep.n = 77;
	keep.servers = (raft_server *) &keep;
	dst = keep;
	CHECK_EQ(raft_config_copy(&bad, &dst), RAFT_EINVAL);
	fixture_make(2)->servers[1].address = NULL;
	CHECK_EQ(raft_config_copy(&fx.c, &dst), RAFT_EINVAL);
	CHECK_EQ(raft_config_copy(NULL, &dst), RAFT_EINVAL);
	CHECK_EQ(raft_config_copy(&base, NULL), RAFT_EINVAL);
	CHECK(dst.n == keep.n && dst.servers == keep.servers);
	CHECK_EQ(oom.live, 0);
	oom_remove();

	/* free tolerates NULL and empty */
	raft_config_free(NULL);
	raft_config_free(&empty);
}

/* ----------
 * Membership changes.
 * ----------
 */
static void
check_dst_untouched(const raft_config *dst)
{
	CHECK_EQ(dst->n, 77);
	CHECK(dst->servers == (raft_server *) dst);
}

static void
poison(raft_config *dst)
{
	dst->n = 77;
	dst->servers = (raft_server *) dst;
}

static void
test_add(void)
{
	char		long_name[RAFT_MAX_NAME + 2];
	char		long_address[RAFT_MAX_ADDRESS + 2];
	raft_config empty = {0, NULL};
	raft_config dst;
	raft_config one;
	raft_config *full;

	oom_install();
	CHECK_EQ(raft_config_add(&base, 40, RAFT_LEARNER, "delta", "host=d", &dst),
			 RAFT_OK);
	CHECK_EQ(dst.n, 4);
	CHECK(raft_config_equal(&(raft_config) {3, dst.servers}, &base));
	CHECK_EQ(dst.servers[3].id, 40);
	CHECK_EQ(dst.servers[3].role, RAFT_LEARNER);
	CHECK(strcmp(dst.servers[3].name, "delta") == 0);
	CHECK(strcmp(dst.servers[3].address, "host=d") == 0);
	CHECK_EQ(raft_config_validate(&dst), RAFT_OK);
	raft_config_free(&dst);
	CHECK_EQ(oom.live, 0);
	oom_remove();

	/* from nothing: how a bootstrap configuration is built */
	CHECK_EQ(raft_config_add(&empty, 1, RAFT_VOTER, "n1", "", &one), RAFT_OK);
	CHECK_EQ(one.n, 1);
	CHECK(raft_config_is_voter(&one, 1));
	raft_config_free(&one);
	poison(&dst);
	CHECK_EQ(raft_config_add(&empty, 1, RAFT_LEARNER, "n1", "", &dst),
			 RAFT_EBADCONFIG);
	check_dst_untouched(&dst);

	/* duplicates */
	CHECK_EQ(raft_config_add(&base, 20, RAFT_LEARNER, "delta", "", &dst),
			 RAFT_EDUPLICATE);
	CHECK_EQ(raft_config_add(&base, 40, RAFT_LEARNER, "beta", "", &dst),
			 RAFT_EDUPLICATE);
	check_dst_untouched(&dst);

	/* bad arguments, each next to a good one */
	memset(long_name, 'n', sizeof(long_name));
	long_name[RAFT_MAX_NAME] = '\0';
	memset(long_address, 'a', sizeof(long_address));
	long_address[RAFT_MAX_ADDRESS] = '\0';
	CHECK_EQ(raft_config_add(&base, 40, RAFT_LEARNER, long_name, long_address,
							 &one), RAFT_OK);
	raft_config_free(&one);
	long_name[RAFT_MAX_NAME] = 'n';
	long_name[RAFT_MAX_NAME + 1] = '\0';
	long_address[RAFT_MAX_ADDRESS] = 'a';
	long_address[RAFT_MAX_ADDRESS + 1] = '\0';
	CHECK_EQ(raft_config_add(&base, 40, RAFT_LEARNER, long_name, "", &dst),
			 RAFT_EINVAL);
	CHECK_EQ(raft_config_add(&base, 40, RAFT_LEARNER, "d", long_address, &dst),
			 RAFT_EINVAL);
	CHECK_EQ(raft_config_add(&base, 0, RAFT_LEARNER, "d", "", &dst), RAFT_EINVAL);
	CHECK_EQ(raft_config_add(&base, 40, 0, "d", "", &dst), RAFT_EINVAL);
	CHECK_EQ(raft_config_add(&base, 40, 3, "d", "", &dst), RAFT_EINVAL);
	CHECK_EQ(raft_config_add(&base, 40, RAFT_LEARNER, "", "", &dst), RAFT_EINVAL);
	CHECK_EQ(raft_config_add(&base, 40, RAFT_LEARNER, NULL, "", &dst),
			 RAFT_EINVAL);
	CHECK_EQ(raft_config_add(&base, 40, RAFT_LEARNER, "d", NULL, &dst),
			 RAFT_EINVAL);
	CHECK_EQ(raft_config_add(NULL, 40, RAFT_LEARNER, "d", "", &dst), RAFT_EINVAL);
	CHECK_EQ(raft_config_add(&base, 40, RAFT_LEARNER, "d", "", NULL),
			 RAFT_EINVAL);
	check_dst_untouched(&dst);

	/* full */
	full = fixture_make(RAFT_MAX_SERVERS);
	CHECK_EQ(raft_config_add(full, 1000, RAFT_LEARNER, "d", "", &dst),
			 RAFT_ETOOBIG);
	full->n = RAFT_MAX_SERVERS - 1;
	CHECK_EQ(raft_config_add(full, 1000, RAFT_LEARNER, "d", "", &one), RAFT_OK);
	CHECK_EQ(one.n, RAFT_MAX_SERVERS);
	raft_config_free(&one);

	/* an invalid source, however the new server compares with it */
	fixture_make(3)->servers[1].id = 1;
	CHECK_EQ(raft_config_add(&fx.c, 1000, RAFT_LEARNER, "d", "", &dst),
			 RAFT_EBADCONFIG);
	fixture_make(3)->servers[1].name = NULL;
	CHECK_EQ(raft_config_add(&fx.c, 1000, RAFT_LEARNER, "d", "", &dst),
			 RAFT_EBADCONFIG);
	check_dst_untouched(&dst);
}

static void
test_remove(void)
{
	raft_server s[2] = {
		{1, RAFT_VOTER, "v", ""},
		{2, RAFT_LEARNER, "l", ""},
	};
	raft_config lone = {2, s};
	raft_config dst;

	CHECK_EQ(raft_config_remove(&base, 10, &dst), RAFT_OK);
	CHECK_EQ(dst.n, 2);
	CHECK_EQ(dst.servers[0].id, 20);	/* order kept */
	CHECK_EQ(dst.servers[1].id, 30);
	CHECK(strcmp(dst.servers[1].name, "gamma") == 0);
	raft_config_free(&dst);

	CHECK_EQ(raft_config_remove(&base, 30, &dst), RAFT_OK);
	CHECK_EQ(dst.n, 2);
	CHECK_EQ(raft_config_voter_count(&dst), 2);
	raft_config_free(&dst);

	poison(&dst);
	CHECK_EQ(raft_config_remove(&base, 40, &dst), RAFT_ENOTFOUND);
	CHECK_EQ(raft_config_remove(&base, 0, &dst), RAFT_ENOTFOUND);
	/* the last voter cannot go; the learner can */
	CHECK_EQ(raft_config_remove(&lone, 1, &dst), RAFT_EBADCONFIG);
	check_dst_untouched(&dst);
	CHECK_EQ(raft_config_remove(&lone, 2, &dst), RAFT_OK);
	CHECK_EQ(dst.n, 1);
	raft_config_free(&dst);

	poison(&dst);
	fixture_make(3)->servers[1].name = NULL;
	CHECK_EQ(raft_config_remove(&fx.c, 1, &dst), RAFT_EBADCONFIG);
	/* even when the change would drop the very server that is wrong */
	CHECK_EQ(raft_config_remove(&fx.c, 2, &dst), RAFT_EBADCONFIG);
	fixture_make(3)->servers[2].id = 1;
	CHECK_EQ(raft_config_remove(&fx.c, 1, &dst), RAFT_EBADCONFIG);
	CHECK_EQ(raft_config_remove(NULL, 1, &dst), RAFT_EINVAL);
	check_dst_untouched(&dst);
}

static void
test_promote(void)
{
	raft_config dst;

	CHECK_EQ(raft_config_promote(&base, 30, &dst), RAFT_OK);
	CHECK_EQ(dst.n, 3);
	CHECK(raft_config_is_voter(&dst, 30));
	CHECK_EQ(raft_config_index_of(&dst, 30), 2);
	CHECK_EQ(raft_config_voter_count(&dst), 3);
	CHECK(!raft_config_is_voter(&base, 30));	/* source untouched */
	raft_config_free(&dst);

	poison(&dst);
	CHECK_EQ(raft_config_promote(&base, 20, &dst), RAFT_EINVAL);
	CHECK_EQ(raft_config_promote(&base, 40, &dst), RAFT_ENOTFOUND);
	CHECK_EQ(raft_config_promote(NULL, 30, &dst), RAFT_EINVAL);
	fixture_make(3)->servers[0].role = 9;
	CHECK_EQ(raft_config_promote(&fx.c, 3, &dst), RAFT_EBADCONFIG);
	check_dst_untouched(&dst);
}

static void
test_change_in_place(void)
{
	raft_config c;
	raft_server *old;

	/* dst may be src when the caller keeps the old block to free */
	CHECK_EQ(raft_config_copy(&base, &c), RAFT_OK);
	old = c.servers;
	CHECK_EQ(raft_config_promote(&c, 30, &c), RAFT_OK);
	raft_free(old);
	old = c.servers;
	CHECK_EQ(raft_config_remove(&c, 10, &c), RAFT_OK);
	raft_free(old);
	old = c.servers;
	CHECK_EQ(raft_config_add(&c, 10, RAFT_LEARNER, "alpha2", "x", &c), RAFT_OK);
	raft_free(old);
	CHECK_EQ(c.n, 3);
	CHECK_EQ(c.servers[0].id, 20);
	CHECK_EQ(c.servers[1].id, 30);
	CHECK_EQ(c.servers[2].id, 10);
	CHECK_EQ(raft_config_voter_count(&c), 2);
	raft_config_free(&c);
}

static void
test_encode_alloc(void)
{
	raft_config bad = {0, NULL};
	raft_config back;
	uint8_t    *data = NULL;
	uint32_t	len = 0;

	CHECK_EQ(raft_config_encode_alloc(&base, &data, &len), RAFT_OK);
	CHECK_EQ(len, raft_config_encoded_size(&base));
	CHECK_EQ(raft_decode_config(data, len, &back), RAFT_OK);
	CHECK(raft_config_equal(&back, &base));
	raft_config_free(&back);
	raft_free(data);

	data = NULL;
	CHECK_EQ(raft_config_encode_alloc(&bad, &data, &len), RAFT_EBADCONFIG);
	CHECK(data == NULL);
	CHECK_EQ(raft_config_encode_alloc(NULL, &data, &len), RAFT_EINVAL);
}

/* ----------
 * Out of memory.
 * ----------
 */
enum
{
	OP_COPY,
	OP_ADD,
	OP_REMOVE,
	OP_PROMOTE,
	OP_ENCODE
};

static int
op_change(const void *arg)
{
	int			op = *(const int *) arg;
	raft_config dst;
	uint8_t    *data = NULL;
	uint8_t		expect[256];
	size_t		expect_len;
	uint32_t	len;
	int			rc = RAFT_EINVAL;

	poison(&dst);
	switch (op)
	{
		case OP_COPY:
			rc = raft_config_copy(&base, &dst);
			break;
		case OP_ADD:
			rc = raft_config_add(&base, 40, RAFT_LEARNER, "delta", "d", &dst);
			break;
		case OP_REMOVE:
			rc = raft_config_remove(&base, 20, &dst);
			break;
		case OP_PROMOTE:
			rc = raft_config_promote(&base, 30, &dst);
			break;
		case OP_ENCODE:
			rc = raft_config_encode_alloc(&base, &data, &len);
			if (rc != RAFT_OK)
				return data == NULL ? rc : RAFT_ELAST;
			/* the same bytes as the encoder writes into a caller's buffer */
			if (raft_encode_config(&base, expect, sizeof(expect),
								   &expect_len) != RAFT_OK ||
				expect_len != len || memcmp(expect, data, len) != 0)
				rc = RAFT_ELAST;
			raft_free(data);
			return rc;
	}
	if (rc != RAFT_OK)
		return dst.n == 77 && dst.servers == (raft_server *) &dst ? rc : RAFT_ELAST;
	if (raft_config_validate(&dst) != RAFT_OK)
		rc = RAFT_ELAST;
	raft_config_free(&dst);
	return rc;
}

static void
test_oom(void)
{
	int			ops[] = {OP_COPY, OP_ADD, OP_REMOVE, OP_PROMOTE, OP_ENCODE};
	size_t		i;

	for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		check_oom_loop(op_change, &ops[i], 1);
}

void
suite_config(void)
{
	RUN(test_validate_valid);
	RUN(test_validate_max_servers);
	RUN(test_validate_id_zero);
	RUN(test_validate_duplicate_id);
	RUN(test_validate_duplicate_name);
	RUN(test_validate_role);
	RUN(test_validate_name);
	RUN(test_validate_address);
	RUN(test_validate_voters);
	RUN(test_lookups);
	RUN(test_quorum);
	RUN(test_equal);
	RUN(test_copy);
	RUN(test_add);
	RUN(test_remove);
	RUN(test_promote);
	RUN(test_change_in_place);
	RUN(test_encode_alloc);
	RUN(test_oom);
}
