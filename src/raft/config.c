/*-------------------------------------------------------------------------
 *
 * config.c
 *	  Cluster configurations: validation, lookup, copying and the
 *	  single-server membership changes.
 *
 * A configuration is the list of servers with their roles, names and
 * addresses.  It reaches the core from untrusted places -- a peer's
 * SNAPSHOT message, a CONFIG entry in an APPEND, the host's SQL call -- so
 * every path that admits one runs raft_config_validate() first, and every
 * helper here either produces a valid configuration or returns a code and
 * changes nothing.  Membership changes never edit a configuration in place:
 * they build a new one (dissertation 4.1: a server uses the latest
 * configuration in its log, committed or not, so the old one must stay
 * intact until the new entry is durable and the caller switches over).
 *
 * Every configuration built here is one allocation -- servers[] followed by
 * the strings -- so that copying is one call to the allocator, freeing
 * cannot half-fail, and the out-of-memory paths are few enough to test
 * exhaustively.  codec.c builds decoded configurations the same way.
 *
 *-------------------------------------------------------------------------
 */
#include "raft_int.h"

#include "config.h"

/*
 * The length of s if it is at most max bytes, without reading further than
 * max + 1 bytes: a peer-supplied name must not make us scan a megabyte.
 */
static bool
bounded_strlen(const char *s, size_t max, size_t *len)
{
	size_t		i;

	for (i = 0; i <= max; i++)
	{
		if (s[i] == '\0')
		{
			*len = i;
			return true;
		}
	}
	return false;
}

static bool
role_valid(uint8_t role)
{
	return role == RAFT_VOTER || role == RAFT_LEARNER;
}

int
raft_config_validate(const raft_config *c)
{
	uint32_t	i;
	uint32_t	j;
	uint32_t	voters = 0;

	if (c == NULL)
		return RAFT_EINVAL;
	if (c->n > RAFT_MAX_SERVERS)
		return RAFT_EBADCONFIG;
	if (c->n > 0 && c->servers == NULL)
		return RAFT_EBADCONFIG;

	/* each server on its own first, so the pairwise checks may use strcmp */
	for (i = 0; i < c->n; i++)
	{
		const raft_server *s = &c->servers[i];
		size_t		len;

		if (s->id == 0 || !role_valid(s->role))
			return RAFT_EBADCONFIG;
		if (s->name == NULL || !bounded_strlen(s->name, RAFT_MAX_NAME, &len) ||
			len == 0)
			return RAFT_EBADCONFIG;
		if (s->address == NULL ||
			!bounded_strlen(s->address, RAFT_MAX_ADDRESS, &len))
			return RAFT_EBADCONFIG;
		if (s->role == RAFT_VOTER)
			voters++;
	}
	if (voters == 0)
		return RAFT_EBADCONFIG;

	/* at most 64 servers: quadratic is cheaper than anything cleverer */
	for (i = 0; i < c->n; i++)
	{
		for (j = i + 1; j < c->n; j++)
		{
			if (c->servers[i].id == c->servers[j].id ||
				strcmp(c->servers[i].name, c->servers[j].name) == 0)
				return RAFT_EBADCONFIG;
		}
	}
	return RAFT_OK;
}

const raft_server *
raft_config_get(const raft_config *c, raft_id id)
{
	int			i = raft_config_index_of(c, id);

	return i < 0 ? NULL : &c->servers[i];
}

int
raft_config_index_of(const raft_config *c, raft_id id)
{
	uint32_t	i;

	if (c == NULL || c->servers == NULL || id == 0)
		return -1;
	for (i = 0; i < c->n; i++)
	{
		if (c->servers[i].id == id)
			return (int) i;
	}
	return -1;
}

bool
raft_config_is_voter(const raft_config *c, raft_id id)
{
	const raft_server *s = raft_config_get(c, id);

	return s != NULL && s->role == RAFT_VOTER;
}

uint32_t
raft_config_voter_count(const raft_config *c)
{
	uint32_t	i;
	uint32_t	voters = 0;

	if (c == NULL || c->servers == NULL)
		return 0;
	for (i = 0; i < c->n; i++)
	{
		if (c->servers[i].role == RAFT_VOTER)
			voters++;
	}
	return voters;
}

uint32_t
raft_config_quorum(const raft_config *c)
{
	return raft_config_voter_count(c) / 2 + 1;
}

static bool
str_equal(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

bool
raft_config_equal(const raft_config *a, const raft_config *b)
{
	uint32_t	i;

	if (a == NULL || b == NULL)
		return a == b;
	if (a->n != b->n)
		return false;
	for (i = 0; i < a->n; i++)
	{
		const raft_server *x = &a->servers[i];
		const raft_server *y = &b->servers[i];

		if (x->id != y->id || x->role != y->role ||
			!str_equal(x->name, y->name) || !str_equal(x->address, y->address))
			return false;
	}
	return true;
}

/*
 * Copy n servers into one new block: servers[] first (so the block is
 * suitably aligned for it), then each name and address with its NUL.
 */
static int
config_build(const raft_server *servers, uint32_t n, raft_config *dst)
{
	size_t		total;
	size_t		i;
	raft_server *out;
	char	   *strings;

	if (n == 0)
	{
		dst->n = 0;
		dst->servers = NULL;
		return RAFT_OK;
	}
	if (servers == NULL)
		return RAFT_EINVAL;

	/* wraps only where size_t is 32 bits */
	total = (size_t) n * sizeof(raft_server);
	if (total / sizeof(raft_server) != n)
		return RAFT_ETOOBIG;
	for (i = 0; i < n; i++)
	{
		size_t		name_len;
		size_t		address_len;

		if (servers[i].name == NULL || servers[i].address == NULL)
			return RAFT_EINVAL;
		name_len = strlen(servers[i].name);
		address_len = strlen(servers[i].address);
		/* each strlen is below SIZE_MAX, so + 1 cannot wrap */
		if (name_len + 1 > SIZE_MAX - total)
			return RAFT_ETOOBIG;
		total += name_len + 1;
		if (address_len + 1 > SIZE_MAX - total)
			return RAFT_ETOOBIG;
		total += address_len + 1;
	}

	out = raft_malloc(total);
	if (out == NULL)
		return RAFT_ENOMEM;
	strings = (char *) (out + n);
	for (i = 0; i < n; i++)
	{
		size_t		len;

		out[i].id = servers[i].id;
		out[i].role = servers[i].role;

		len = strlen(servers[i].name) + 1;
		memcpy(strings, servers[i].name, len);
		out[i].name = strings;
		strings += len;

		len = strlen(servers[i].address) + 1;
		memcpy(strings, servers[i].address, len);
		out[i].address = strings;
		strings += len;
	}
	RAFT_ASSERT((size_t) (strings - (char *) out) == total);

	dst->n = n;
	dst->servers = out;
	return RAFT_OK;
}

int
raft_config_copy(const raft_config *src, raft_config *dst)
{
	raft_config out;
	int			rc;

	if (src == NULL || dst == NULL)
		return RAFT_EINVAL;
	rc = config_build(src->servers, src->n, &out);
	if (rc != RAFT_OK)
		return rc;
	*dst = out;
	return RAFT_OK;
}

void
raft_config_free(raft_config *c)
{
	if (c == NULL)
		return;
	/* the strings live in the same block as servers[] */
	raft_free(c->servers);
	c->n = 0;
	c->servers = NULL;
}

/* src must be valid, or empty when empty_ok */
static int
check_source(const raft_config *src, raft_config *dst, bool empty_ok)
{
	if (src == NULL || dst == NULL)
		return RAFT_EINVAL;
	if (src->n == 0 && empty_ok)
		return RAFT_OK;
	return raft_config_validate(src) == RAFT_OK ? RAFT_OK : RAFT_EBADCONFIG;
}

/* the last step of every change: the result must validate, then copy */
static int
finish_change(const raft_server *servers, uint32_t n, raft_config *dst)
{
	raft_config tmp;
	raft_config out;
	int			rc;

	tmp.n = n;
	tmp.servers = (raft_server *) servers;
	if (raft_config_validate(&tmp) != RAFT_OK)
		return RAFT_EBADCONFIG;
	rc = config_build(servers, n, &out);
	if (rc != RAFT_OK)
		return rc;
	*dst = out;
	return RAFT_OK;
}

int
raft_config_add(const raft_config *src, raft_id id, uint8_t role,
				const char *name, const char *address, raft_config *dst)
{
	raft_server servers[RAFT_MAX_SERVERS];
	size_t		len;
	uint32_t	i;
	int			rc;

	rc = check_source(src, dst, true);
	if (rc != RAFT_OK)
		return rc;
	if (id == 0 || !role_valid(role) || name == NULL || address == NULL)
		return RAFT_EINVAL;
	if (!bounded_strlen(name, RAFT_MAX_NAME, &len) || len == 0)
		return RAFT_EINVAL;
	if (!bounded_strlen(address, RAFT_MAX_ADDRESS, &len))
		return RAFT_EINVAL;
	for (i = 0; i < src->n; i++)
	{
		if (src->servers[i].id == id || strcmp(src->servers[i].name, name) == 0)
			return RAFT_EDUPLICATE;
	}
	if (src->n >= RAFT_MAX_SERVERS)
		return RAFT_ETOOBIG;

	for (i = 0; i < src->n; i++)
		servers[i] = src->servers[i];
	servers[i].id = id;
	servers[i].role = role;
	servers[i].name = (char *) name;
	servers[i].address = (char *) address;
	return finish_change(servers, src->n + 1, dst);
}

int
raft_config_remove(const raft_config *src, raft_id id, raft_config *dst)
{
	raft_server servers[RAFT_MAX_SERVERS];
	uint32_t	i;
	uint32_t	n = 0;
	int			rc;

	rc = check_source(src, dst, false);
	if (rc != RAFT_OK)
		return rc;
	if (raft_config_index_of(src, id) < 0)
		return RAFT_ENOTFOUND;
	for (i = 0; i < src->n; i++)
	{
		if (src->servers[i].id != id)
			servers[n++] = src->servers[i];
	}
	/* removing the last voter leaves no one to elect a leader */
	return finish_change(servers, n, dst);
}

int
raft_config_promote(const raft_config *src, raft_id id, raft_config *dst)
{
	raft_server servers[RAFT_MAX_SERVERS];
	uint32_t	i;
	int			pos;
	int			rc;

	rc = check_source(src, dst, false);
	if (rc != RAFT_OK)
		return rc;
	pos = raft_config_index_of(src, id);
	if (pos < 0)
		return RAFT_ENOTFOUND;
	if (src->servers[pos].role == RAFT_VOTER)
		return RAFT_EINVAL;
	for (i = 0; i < src->n; i++)
		servers[i] = src->servers[i];
	servers[pos].role = RAFT_VOTER;
	return finish_change(servers, src->n, dst);
}

int
raft_config_encode_alloc(const raft_config *c, uint8_t **data, uint32_t *len)
{
	size_t		size;
	size_t		written;
	uint8_t    *buf;
	int			rc;

	if (c == NULL || data == NULL || len == NULL)
		return RAFT_EINVAL;
	if (raft_config_validate(c) != RAFT_OK)
		return RAFT_EBADCONFIG;
	size = raft_config_encoded_size(c);
	/* a valid configuration is at most ~70 kB */
	RAFT_ASSERT(size <= RAFT_MAX_ENTRY_BYTES);
	buf = raft_malloc(size);
	if (buf == NULL)
		return RAFT_ENOMEM;
	rc = raft_encode_config(c, buf, size, &written);
	RAFT_ASSERT(rc == RAFT_OK && written == size);
	*data = buf;
	*len = (uint32_t) size;
	return RAFT_OK;
}
