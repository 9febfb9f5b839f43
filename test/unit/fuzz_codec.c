/*
 * fuzz_codec.c
 *	  libFuzzer target for the wire format (src/raft/codec.c).
 *
 * Every input is decoded twice: as a message and as a configuration.  A
 * decoder may refuse, but only with one of its documented codes, leaving
 * its output zeroed and nothing allocated.  What it accepts must be
 * canonical: it re-encodes to exactly the input bytes, the encoded size
 * agrees, the re-encoding decodes to an equal value, and a buffer one byte
 * short is refused.  The decode is then repeated with each of its
 * allocations failing in turn, which must give RAFT_ENOMEM and leak
 * nothing.  A counting allocator checks, after every input, that every
 * block the core allocated was freed; AddressSanitizer checks every read.
 *
 * Built by test/unit/Makefile (make build/fuzz_codec) with clang and
 * -fsanitize=fuzzer,address,undefined; run.sh runs it on a scratch corpus
 * seeded from fuzz-seeds/, a handful of valid encodings.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "raft.h"
#include "config.h"
#include "msg_equal.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(e) \
	do { \
		if (!(e)) \
		{ \
			fprintf(stderr, "fuzz_codec: check \"%s\" failed at %s:%d\n", \
					#e, __FILE__, __LINE__); \
			abort(); \
		} \
	} while (0)

/* ----------
 * Counting allocator that can fail the Nth call.
 * ----------
 */
static long calls;
static long live;
static long fail_at = -1;

static void *
count_alloc(void *ctx, size_t size)
{
	void	   *p;

	(void) ctx;
	if (calls++ == fail_at)
		return NULL;
	p = malloc(size);
	if (p != NULL)
		live++;
	return p;
}

static void *
count_realloc(void *ctx, void *ptr, size_t size)
{
	if (ptr == NULL)
		return count_alloc(ctx, size);
	if (calls++ == fail_at)
		return NULL;
	return realloc(ptr, size);
}

static void
count_free(void *ctx, void *ptr)
{
	(void) ctx;
	live--;
	free(ptr);
}

static const raft_allocator counting = {NULL, count_alloc, count_realloc, count_free};


static void
fuzz_message(const uint8_t *data, size_t size)
{
	raft_message m;
	raft_message again;
	uint8_t    *buf;
	size_t		len;
	long		needed;
	long		k;
	int			rc;

	calls = 0;
	rc = raft_decode_message(data, size, &m);
	if (rc != RAFT_OK)
	{
		FUZZ_CHECK(rc == RAFT_EMALFORMED || rc == RAFT_EVERSION ||
				   rc == RAFT_EBADCONFIG);
		FUZZ_CHECK(is_zero(&m, sizeof(m)));
		FUZZ_CHECK(live == 0);
		return;
	}
	needed = calls;

	/* what decodes is canonical: it encodes back to the same bytes */
	FUZZ_CHECK(m.type >= RAFT_MSG_APPEND && m.type < RAFT_MSG_LAST);
	FUZZ_CHECK(m.n_entries <= RAFT_MAX_MSG_ENTRIES);
	FUZZ_CHECK(raft_message_encoded_size(&m) == size);
	buf = malloc(size);
	FUZZ_CHECK(buf != NULL);
	rc = raft_encode_message(&m, buf, size, &len);
	FUZZ_CHECK(rc == RAFT_OK);
	FUZZ_CHECK(len == size);
	FUZZ_CHECK(memcmp(buf, data, size) == 0);
	rc = raft_encode_message(&m, buf, size - 1, &len);
	FUZZ_CHECK(rc == RAFT_ETOOBIG && len == size);

	rc = raft_decode_message(buf, size, &again);
	FUZZ_CHECK(rc == RAFT_OK);
	FUZZ_CHECK(msg_equal(&m, &again));
	raft_message_free(&again);
	FUZZ_CHECK(is_zero(&again, sizeof(again)));
	raft_message_free(&m);
	FUZZ_CHECK(is_zero(&m, sizeof(m)));
	free(buf);
	FUZZ_CHECK(live == 0);

	/* each allocation of this decode failing in turn */
	for (k = 0; k < needed; k++)
	{
		calls = 0;
		fail_at = k;
		rc = raft_decode_message(data, size, &m);
		fail_at = -1;
		FUZZ_CHECK(rc == RAFT_ENOMEM);
		FUZZ_CHECK(is_zero(&m, sizeof(m)));
		FUZZ_CHECK(live == 0);
	}
}

/*
 * The membership helpers on a configuration that arrived as bytes: each
 * change gives a valid result or the documented refusal, and leaks
 * nothing.
 */
static void
fuzz_changes(const raft_config *c)
{
	uint32_t	voters = raft_config_voter_count(c);
	long		live_before = live;
	raft_id		fresh = 1;
	raft_config out;
	uint32_t	i;
	int			rc;

	FUZZ_CHECK(voters >= 1 && raft_config_quorum(c) == voters / 2 + 1);
	for (i = 0; i < c->n; i++)
	{
		const raft_server *s = &c->servers[i];
		bool		voter = s->role == RAFT_VOTER;

		FUZZ_CHECK(raft_config_index_of(c, s->id) == (int) i);
		FUZZ_CHECK(raft_config_get(c, s->id) == s);
		FUZZ_CHECK(raft_config_is_voter(c, s->id) == voter);
		if (s->id >= fresh && s->id != UINT64_MAX)
			fresh = s->id + 1;

		rc = raft_config_remove(c, s->id, &out);
		if (voter && voters == 1)
			FUZZ_CHECK(rc == RAFT_EBADCONFIG);
		else
		{
			FUZZ_CHECK(rc == RAFT_OK);
			FUZZ_CHECK(out.n == c->n - 1 && raft_config_get(&out, s->id) == NULL);
			FUZZ_CHECK(raft_config_validate(&out) == RAFT_OK);
			raft_config_free(&out);
		}

		rc = raft_config_promote(c, s->id, &out);
		if (voter)
			FUZZ_CHECK(rc == RAFT_EINVAL);
		else
		{
			FUZZ_CHECK(rc == RAFT_OK);
			FUZZ_CHECK(raft_config_voter_count(&out) == voters + 1);
			raft_config_free(&out);
		}

		rc = raft_config_add(c, 0xfffffffffffffff0ULL, RAFT_LEARNER, s->name,
							 "", &out);
		FUZZ_CHECK(rc == RAFT_EDUPLICATE);
	}

	if (raft_config_get(c, fresh) == NULL)
	{
		rc = raft_config_add(c, fresh, RAFT_LEARNER, "fuzz-new-server", "x",
							 &out);
		if (rc == RAFT_OK)
		{
			FUZZ_CHECK(c->n < RAFT_MAX_SERVERS);
			FUZZ_CHECK(out.n == c->n + 1 && raft_config_validate(&out) == RAFT_OK);
			raft_config_free(&out);
		}
		else
			FUZZ_CHECK(rc == RAFT_ETOOBIG || rc == RAFT_EDUPLICATE);
	}
	FUZZ_CHECK(live == live_before);
}

static void
fuzz_config(const uint8_t *data, size_t size)
{
	raft_config c;
	raft_config again;
	raft_config copy;
	uint8_t    *buf;
	size_t		len;
	long		needed;
	long		k;
	int			rc;

	calls = 0;
	rc = raft_decode_config(data, size, &c);
	if (rc != RAFT_OK)
	{
		FUZZ_CHECK(rc == RAFT_EMALFORMED || rc == RAFT_EVERSION ||
				   rc == RAFT_EBADCONFIG);
		FUZZ_CHECK(c.n == 0 && c.servers == NULL);
		FUZZ_CHECK(live == 0);
		return;
	}
	needed = calls;

	FUZZ_CHECK(raft_config_validate(&c) == RAFT_OK);
	FUZZ_CHECK(raft_config_encoded_size(&c) == size);
	buf = malloc(size);
	FUZZ_CHECK(buf != NULL);
	rc = raft_encode_config(&c, buf, size, &len);
	FUZZ_CHECK(rc == RAFT_OK);
	FUZZ_CHECK(len == size);
	FUZZ_CHECK(memcmp(buf, data, size) == 0);
	rc = raft_encode_config(&c, buf, size - 1, &len);
	FUZZ_CHECK(rc == RAFT_ETOOBIG && len == size);

	rc = raft_decode_config(buf, size, &again);
	FUZZ_CHECK(rc == RAFT_OK);
	FUZZ_CHECK(raft_config_equal(&c, &again));
	raft_config_free(&again);

	/* and a copy is equal too */
	rc = raft_config_copy(&c, &copy);
	FUZZ_CHECK(rc == RAFT_OK);
	FUZZ_CHECK(raft_config_equal(&c, &copy));
	raft_config_free(&copy);

	fuzz_changes(&c);
	raft_config_free(&c);
	FUZZ_CHECK(c.n == 0 && c.servers == NULL);
	free(buf);
	FUZZ_CHECK(live == 0);

	for (k = 0; k < needed; k++)
	{
		calls = 0;
		fail_at = k;
		rc = raft_decode_config(data, size, &c);
		fail_at = -1;
		FUZZ_CHECK(rc == RAFT_ENOMEM);
		FUZZ_CHECK(c.n == 0 && c.servers == NULL);
		FUZZ_CHECK(live == 0);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	raft_set_allocator(&counting);
	live = 0;
	fuzz_message(data, size);
	fuzz_config(data, size);
	raft_set_allocator(NULL);
	return 0;
}
