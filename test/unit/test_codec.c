/*
 * test_codec.c
 *	  Unit tests of the wire format (src/raft/codec.c).
 *
 * The codec is the core's border with the network and the log, so these
 * tests pin the format byte for byte (golden encodings), round-trip every
 * message kind, and then break a valid encoding in every way the decoder
 * must notice: each prefix, a byte too many, each field that has a set of
 * allowed values, each count and length limit.  A counting allocator
 * checks that nothing leaks on any of these paths, and an allocator that
 * fails the Nth call checks that every allocation failure is reported as
 * RAFT_ENOMEM and leaves nothing behind.
 */
#include <stdlib.h>
#include <string.h>

#include "raft.h"
#include "config.h"
#include "unit.h"
#include "msg_equal.h"

void		suite_codec(void);

/* ----------
 * A counting allocator that can fail the Nth call.
 * ----------
 */
static struct
{
	long		calls;			/* alloc + realloc calls since install */
	long		live;			/* blocks not yet freed */
	long		fail_at;		/* call number to fail, or -1 */
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
	void	   *p;

	if (ptr == NULL)
		return oom_alloc(ctx, size);
	if (oom.calls++ == oom.fail_at)
		return NULL;
	p = realloc(ptr, size);
	return p;
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

/*
 * Run op once to count its allocations, then once more failing each of
 * them in turn: every such run must return RAFT_ENOMEM and leave nothing
 * allocated.  op releases what it built when it succeeds and returns
 * RAFT_ELAST if it finds its output not as promised.
 */
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
 * Building bytes by hand, for inputs the encoder would refuse to write.
 * ----------
 */
typedef struct bytes
{
	uint8_t    *buf;
	size_t		len;
	size_t		cap;
} bytes;

static void
b_need(bytes *b, size_t n)
{
	if (b->len + n > b->cap)
	{
		b->cap = (b->len + n) * 2;
		b->buf = realloc(b->buf, b->cap);
		CHECK(b->buf != NULL);
	}
}

static void
b_mem(bytes *b, const void *p, size_t n)
{
	b_need(b, n);
	if (n > 0)
		memcpy(b->buf + b->len, p, n);
	b->len += n;
}

static void
b_le(bytes *b, uint64_t v, int width)
{
	uint8_t		tmp[8];
	int			i;

	for (i = 0; i < width; i++)
		tmp[i] = (uint8_t) (v >> (8 * i));
	b_mem(b, tmp, (size_t) width);
}

static void
b_u8(bytes *b, uint8_t v)
{
	b_le(b, v, 1);
}

static void
b_u16(bytes *b, uint16_t v)
{
	b_le(b, v, 2);
}

static void
b_u32(bytes *b, uint32_t v)
{
	b_le(b, v, 4);
}

static void
b_u64(bytes *b, uint64_t v)
{
	b_le(b, v, 8);
}

static void
b_free(bytes *b)
{
	free(b->buf);
	memset(b, 0, sizeof(*b));
}

/* overwrite a little-endian field in place */
static void
patch_le(uint8_t *p, uint64_t v, int width)
{
	int			i;

	for (i = 0; i < width; i++)
		p[i] = (uint8_t) (v >> (8 * i));
}

/* one encoded server, with explicit lengths so that they can lie */
static void
b_server(bytes *b, uint64_t id, uint8_t role, const char *name, size_t name_len,
		 const char *address, size_t address_len)
{
	b_u64(b, id);
	b_u8(b, role);
	b_u16(b, (uint16_t) name_len);
	b_mem(b, name, name_len);
	b_u16(b, (uint16_t) address_len);
	b_mem(b, address, address_len);
}

static void
b_server_str(bytes *b, uint64_t id, uint8_t role, const char *name,
			 const char *address)
{
	b_server(b, id, role, name, strlen(name), address, strlen(address));
}

/* ----------
 * Fixtures.
 * ----------
 */
static raft_server servers3[] = {
	{1, RAFT_VOTER, "node1", "host=10.0.0.1 port=5432"},
	{2, RAFT_VOTER, "node2", "host=10.0.0.2 port=5432"},
	{0x1122334455667788ULL, RAFT_LEARNER, "node3", ""},
};
static const raft_config config3 = {3, servers3};

static uint8_t payload_a[] = "INSERT INTO t VALUES (1)";
static uint8_t payload_b[] = {0, 1, 2, 0xfe, 0xff};


/*
 * A message of the given kind with every field set to something distinct,
 * as the kind allows: entries for APPEND (from ents, which must hold 4),
 * the configuration for SNAPSHOT, the transfer flag for VOTE and PREVOTE.
 */
static raft_message
sample_message(uint8_t type, raft_entry *ents)
{
	raft_message m;

	memset(&m, 0, sizeof(m));
	m.type = type;
	m.reject = type % 2 == 0;	/* the *_RESP kinds are even */
	m.from = 1;
	m.to = 0x0203040506070809ULL;
	m.term = 77;
	m.index = 1000;
	m.log_term = 76;
	m.commit = 999;
	m.hint_term = 12;
	m.hint_index = 345;
	m.ctx = 0xdeadbeefcafef00dULL;
	if (type == RAFT_MSG_VOTE || type == RAFT_MSG_PREVOTE)
		m.flags = RAFT_MSG_FLAG_TRANSFER;
	if (type == RAFT_MSG_APPEND)
	{
		memset(ents, 0, 4 * sizeof(raft_entry));
		ents[0].term = 76;
		ents[0].type = RAFT_ENTRY_NORMAL;
		ents[0].len = sizeof(payload_a);
		ents[0].data = payload_a;
		ents[1].term = 77;
		ents[1].type = RAFT_ENTRY_NOOP;
		ents[2].term = 77;
		ents[2].type = RAFT_ENTRY_CONFIG;
		ents[2].len = sizeof(payload_b);
		ents[2].data = payload_b;
		ents[3].term = 77;
		ents[3].type = RAFT_ENTRY_NORMAL;	/* empty payload */
		ents[0].index = m.index + 1;
		ents[1].index = m.index + 2;
		ents[2].index = m.index + 3;
		ents[3].index = m.index + 4;
		m.n_entries = 4;
		m.entries = ents;
	}
	if (type == RAFT_MSG_SNAPSHOT)
		m.config = config3;
	return m;
}

/* encode into a fresh malloc'd buffer of exactly the right size */
static uint8_t *
encode(const raft_message *m, size_t *len)
{
	size_t		size = raft_message_encoded_size(m);
	uint8_t    *buf = malloc(size);
	int			rc;

	CHECK(buf != NULL);
	rc = raft_encode_message(m, buf, size, len);
	CHECK_EQ(rc, RAFT_OK);
	CHECK_EQ(*len, size);
	return buf;
}

static uint8_t *
encode_config(const raft_config *c, size_t *len)
{
	size_t		size = raft_config_encoded_size(c);
	uint8_t    *buf = malloc(size);
	int			rc;

	CHECK(buf != NULL);
	rc = raft_encode_config(c, buf, size, len);
	CHECK_EQ(rc, RAFT_OK);
	CHECK_EQ(*len, size);
	return buf;
}

/*
 * Decoding must fail with expect, leave *m zeroed and leak nothing; oom.calls
 * tells the caller afterwards how many allocations it tried.
 */
static void
check_decode_fails(const uint8_t *buf, size_t len, int expect)
{
	raft_message m;
	int			rc;

	memset(&m, 0xab, sizeof(m));
	oom_install();
	rc = raft_decode_message(buf, len, &m);
	CHECK_EQ(oom.live, 0);
	oom_remove();
	CHECK_EQ(rc, expect);
	CHECK(is_zero(&m, sizeof(m)));
}

static void
check_decode_config_fails(const uint8_t *buf, size_t len, int expect)
{
	raft_config c;
	int			rc;

	memset(&c, 0xab, sizeof(c));
	oom_install();
	rc = raft_decode_config(buf, len, &c);
	CHECK_EQ(oom.live, 0);
	oom_remove();
	CHECK_EQ(rc, expect);
	CHECK_EQ(c.n, 0);
	CHECK(c.servers == NULL);
}

/* encode, decode, compare, re-encode to the same bytes, free */
static void
check_roundtrip(const raft_message *m)
{
	uint8_t    *buf;
	uint8_t    *again;
	size_t		len;
	size_t		len2;
	raft_message d;
	int			rc;

	buf = encode(m, &len);
	oom_install();
	rc = raft_decode_message(buf, len, &d);
	CHECK_EQ(rc, RAFT_OK);
	CHECK(msg_equal(m, &d));
	again = encode(&d, &len2);
	CHECK_EQ(len2, len);
	CHECK(memcmp(buf, again, len) == 0);
	raft_message_free(&d);
	CHECK(is_zero(&d, sizeof(d)));
	CHECK_EQ(oom.live, 0);
	oom_remove();
	free(again);
	free(buf);
}

/* ----------
 * Round trips.
 * ----------
 */
static void
test_roundtrip_every_type(void)
{
	raft_entry	ents[4];
	uint8_t		type;

	for (type = RAFT_MSG_APPEND; type < RAFT_MSG_LAST; type++)
	{
		raft_message m = sample_message(type, ents);

		check_roundtrip(&m);
	}
}

static void
test_roundtrip_plain(void)
{
	raft_entry	ents[4];
	uint8_t		type;

	/* every kind with nothing optional: no flags, entries or reject */
	for (type = RAFT_MSG_APPEND; type < RAFT_MSG_LAST; type++)
	{
		raft_message m = sample_message(type, ents);

		m.flags = 0;
		m.reject = false;
		m.n_entries = 0;
		m.entries = NULL;
		check_roundtrip(&m);
	}
}

static void
test_roundtrip_extremes(void)
{
	static char names[RAFT_MAX_SERVERS][RAFT_MAX_NAME + 1];
	static char address[RAFT_MAX_ADDRESS + 1];
	raft_server servers[RAFT_MAX_SERVERS];
	raft_entry	ents[4];
	raft_message m;
	int			i;

	/* every integer at its maximum; the last entry at index UINT64_MAX */
	m = sample_message(RAFT_MSG_APPEND, ents);
	m.from = m.to = m.term = m.log_term = m.commit = UINT64_MAX;
	m.hint_term = m.hint_index = m.ctx = UINT64_MAX;
	m.index = UINT64_MAX - 4;
	for (i = 0; i < 4; i++)
	{
		ents[i].term = UINT64_MAX;
		ents[i].index = m.index + 1 + (uint64_t) i;
	}
	check_roundtrip(&m);

	/* the largest configuration: 64 servers, longest names and addresses */
	memset(address, 'a', RAFT_MAX_ADDRESS);
	for (i = 0; i < RAFT_MAX_SERVERS; i++)
	{
		memset(names[i], 'n', RAFT_MAX_NAME);
		names[i][0] = (char) ('0' + i / 10);
		names[i][1] = (char) ('0' + i % 10);
		servers[i].id = UINT64_MAX - (uint64_t) i;
		servers[i].role = i % 2 ? RAFT_LEARNER : RAFT_VOTER;
		servers[i].name = names[i];
		servers[i].address = address;
	}
	m = sample_message(RAFT_MSG_SNAPSHOT, ents);
	m.config.n = RAFT_MAX_SERVERS;
	m.config.servers = servers;
	check_roundtrip(&m);
}

static void
test_roundtrip_config(void)
{
	uint8_t    *buf;
	size_t		len;
	raft_config c;
	int			rc;

	buf = encode_config(&config3, &len);
	oom_install();
	rc = raft_decode_config(buf, len, &c);
	CHECK_EQ(rc, RAFT_OK);
	CHECK(raft_config_equal(&c, &config3));
	/* copies, not pointers into the input */
	CHECK((uint8_t *) c.servers[0].name < buf ||
		  (uint8_t *) c.servers[0].name >= buf + len);
	raft_config_free(&c);
	CHECK_EQ(c.n, 0);
	CHECK(c.servers == NULL);
	CHECK_EQ(oom.live, 0);
	oom_remove();
	free(buf);
}

/* ----------
 * The format itself, byte for byte.  Changing any of these is a wire
 * format change: bump RAFT_WIRE_VERSION.
 * ----------
 */
static void
test_golden_vote(void)
{
	static const uint8_t expect[80] = {
		1, RAFT_MSG_VOTE, RAFT_MSG_FLAG_TRANSFER, 0,
		0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,	/* from */
		2, 0, 0, 0, 0, 0, 0, 0, /* to */
		3, 0, 0, 0, 0, 0, 0, 0, /* term */
		4, 0, 0, 0, 0, 0, 0, 0, /* index */
		5, 0, 0, 0, 0, 0, 0, 0, /* log_term */
		6, 0, 0, 0, 0, 0, 0, 0, /* commit */
		7, 0, 0, 0, 0, 0, 0, 0, /* hint_term */
		8, 0, 0, 0, 0, 0, 0, 0, /* hint_index */
		0x0d, 0xf0, 0, 0, 0, 0, 0, 0x80,	/* ctx */
		0, 0, 0, 0				/* n_entries */
	};
	raft_message m;
	uint8_t    *buf;
	size_t		len;

	memset(&m, 0, sizeof(m));
	m.type = RAFT_MSG_VOTE;
	m.flags = RAFT_MSG_FLAG_TRANSFER;
	m.from = 0x0102030405060708ULL;
	m.to = 2;
	m.term = 3;
	m.index = 4;
	m.log_term = 5;
	m.commit = 6;
	m.hint_term = 7;
	m.hint_index = 8;
	m.ctx = 0x800000000000f00dULL;
	buf = encode(&m, &len);
	CHECK_EQ(len, sizeof(expect));
	CHECK(memcmp(buf, expect, len) == 0);
	free(buf);
}

static void
test_golden_append(void)
{
	static const uint8_t expect[] = {
		1, RAFT_MSG_APPEND, 0, 1,
		1, 0, 0, 0, 0, 0, 0, 0, /* from */
		2, 0, 0, 0, 0, 0, 0, 0, /* to */
		7, 0, 0, 0, 0, 0, 0, 0, /* term */
		9, 0, 0, 0, 0, 0, 0, 0, /* index */
		6, 0, 0, 0, 0, 0, 0, 0, /* log_term */
		8, 0, 0, 0, 0, 0, 0, 0, /* commit */
		0, 0, 0, 0, 0, 0, 0, 0,
		0, 0, 0, 0, 0, 0, 0, 0,
		0, 0, 0, 0, 0, 0, 0, 0,
		2, 0, 0, 0,				/* n_entries */
		7, 0, 0, 0, 0, 0, 0, 0, RAFT_ENTRY_NORMAL, 3, 0, 0, 0, 'a', 'b', 'c',
		0, 1, 0, 0, 0, 0, 0, 0, RAFT_ENTRY_NOOP, 0, 0, 0, 0
	};
	raft_entry	ents[2];
	raft_message m;
	uint8_t    *buf;
	size_t		len;

	memset(&m, 0, sizeof(m));
	memset(ents, 0, sizeof(ents));
	m.type = RAFT_MSG_APPEND;
	m.reject = true;			/* meaningless here, but it travels */
	m.from = 1;
	m.to = 2;
	m.term = 7;
	m.index = 9;
	m.log_term = 6;
	m.commit = 8;
	m.n_entries = 2;
	m.entries = ents;
	ents[0].term = 7;
	ents[0].index = 10;
	ents[0].type = RAFT_ENTRY_NORMAL;
	ents[0].len = 3;
	ents[0].data = (uint8_t *) "abc";
	ents[1].term = 256;
	ents[1].index = 11;
	ents[1].type = RAFT_ENTRY_NOOP;
	buf = encode(&m, &len);
	CHECK_EQ(len, sizeof(expect));
	CHECK(memcmp(buf, expect, len) == 0);
	free(buf);
}

static void
test_golden_config(void)
{
	static const uint8_t expect[] = {
		RAFT_CONFIG_WIRE_VERSION,
		2, 0, 0, 0,				/* n */
		1, 0, 0, 0, 0, 0, 0, 0, RAFT_VOTER, 1, 0, 'a', 3, 0, 'x', ':', '1',
		0, 1, 0, 0, 0, 0, 0, 0, RAFT_LEARNER, 2, 0, 'b', 'c', 0, 0
	};
	raft_server s[2] = {
		{1, RAFT_VOTER, "a", "x:1"},
		{256, RAFT_LEARNER, "bc", ""},
	};
	raft_config c = {2, s};
	raft_entry	ents[4];
	raft_message m;
	uint8_t    *buf;
	size_t		len;

	buf = encode_config(&c, &len);
	CHECK_EQ(len, sizeof(expect));
	CHECK(memcmp(buf, expect, len) == 0);
	free(buf);

	/* a SNAPSHOT ends with the configuration's length and its encoding */
	m = sample_message(RAFT_MSG_SNAPSHOT, ents);
	m.config = c;
	buf = encode(&m, &len);
	CHECK_EQ(len, 80 + 4 + sizeof(expect));
	CHECK_EQ(buf[80], sizeof(expect));
	CHECK(is_zero(buf + 81, 3));
	CHECK(memcmp(buf + 84, expect, sizeof(expect)) == 0);
	free(buf);
}

/* ----------
 * Every prefix of a valid encoding is malformed, and so is every suffix
 * added to one.
 * ----------
 */
static void
check_every_prefix(const raft_message *m)
{
	uint8_t    *buf;
	size_t		len;
	size_t		cut;

	buf = encode(m, &len);
	for (cut = 0; cut < len; cut++)
	{
		/* a copy of exactly cut bytes, so ASan sees any read past it */
		uint8_t    *prefix = malloc(cut ? cut : 1);

		CHECK(prefix != NULL);
		memcpy(prefix, buf, cut);
		check_decode_fails(prefix, cut, RAFT_EMALFORMED);
		free(prefix);
	}
	free(buf);
}

static void
test_truncation_message(void)
{
	raft_entry	ents[4];
	uint8_t		type;

	for (type = RAFT_MSG_APPEND; type < RAFT_MSG_LAST; type++)
	{
		raft_message m = sample_message(type, ents);

		check_every_prefix(&m);
	}
	check_decode_fails(NULL, 0, RAFT_EMALFORMED);
}

static void
test_truncation_config(void)
{
	uint8_t    *buf;
	size_t		len;
	size_t		cut;

	buf = encode_config(&config3, &len);
	for (cut = 0; cut < len; cut++)
	{
		uint8_t    *prefix = malloc(cut ? cut : 1);

		CHECK(prefix != NULL);
		memcpy(prefix, buf, cut);
		check_decode_config_fails(prefix, cut, RAFT_EMALFORMED);
		free(prefix);
	}
	free(buf);
	check_decode_config_fails(NULL, 0, RAFT_EMALFORMED);
}

static void
test_trailing_bytes(void)
{
	raft_entry	ents[4];
	raft_message m;
	bytes		b = {0};
	uint8_t    *buf;
	size_t		len;
	uint8_t		type;

	for (type = RAFT_MSG_APPEND; type < RAFT_MSG_LAST; type++)
	{
		m = sample_message(type, ents);
		buf = encode(&m, &len);
		b.len = 0;
		b_mem(&b, buf, len);
		b_u8(&b, 0);
		check_decode_fails(b.buf, b.len, RAFT_EMALFORMED);
		b.buf[b.len - 1] = 0xff;
		check_decode_fails(b.buf, b.len, RAFT_EMALFORMED);
		free(buf);
	}

	/* a configuration, alone */
	buf = encode_config(&config3, &len);
	b.len = 0;
	b_mem(&b, buf, len);
	b_u8(&b, 0);
	check_decode_config_fails(b.buf, b.len, RAFT_EMALFORMED);
	free(buf);

	/*
	 * Inside a SNAPSHOT: config_len counts one byte more than the
	 * configuration, so the message is whole but the configuration is not.
	 */
	m = sample_message(RAFT_MSG_SNAPSHOT, ents);
	buf = encode(&m, &len);
	b.len = 0;
	b_mem(&b, buf, len);
	b_u8(&b, 0);
	patch_le(b.buf + 80, raft_config_encoded_size(&config3) + 1, 4);
	check_decode_fails(b.buf, b.len, RAFT_EMALFORMED);
	free(buf);
	b_free(&b);
}

/* ----------
 * Fields with a closed set of values.
 * ----------
 */
static void
test_bad_version(void)
{
	static const uint8_t versions[] = {0, RAFT_WIRE_VERSION + 1, 0xff};
	raft_entry	ents[4];
	raft_message m;
	uint8_t    *buf;
	size_t		len;
	size_t		i;

	m = sample_message(RAFT_MSG_HEARTBEAT, ents);
	buf = encode(&m, &len);
	for (i = 0; i < sizeof(versions); i++)
	{
		buf[0] = versions[i];
		check_decode_fails(buf, len, RAFT_EVERSION);
		check_decode_fails(buf, 1, RAFT_EVERSION);
	}
	free(buf);

	buf = encode_config(&config3, &len);
	for (i = 0; i < sizeof(versions); i++)
	{
		buf[0] = versions[i];
		check_decode_config_fails(buf, len, RAFT_EVERSION);
	}
	free(buf);

	/* the configuration inside a SNAPSHOT has its own version */
	m = sample_message(RAFT_MSG_SNAPSHOT, ents);
	buf = encode(&m, &len);
	CHECK_EQ(buf[84], RAFT_CONFIG_WIRE_VERSION);
	buf[84] = RAFT_CONFIG_WIRE_VERSION + 1;
	check_decode_fails(buf, len, RAFT_EVERSION);
	free(buf);
}

static void
test_bad_type(void)
{
	static const uint8_t types[] = {0, RAFT_MSG_LAST, RAFT_MSG_LAST + 1, 0xff};
	raft_entry	ents[4];
	raft_message m;
	uint8_t    *buf;
	uint8_t		out[256];
	size_t		len;
	size_t		i;

	m = sample_message(RAFT_MSG_HEARTBEAT, ents);
	buf = encode(&m, &len);
	for (i = 0; i < sizeof(types); i++)
	{
		buf[1] = types[i];
		check_decode_fails(buf, len, RAFT_EMALFORMED);
		m.type = types[i];
		CHECK_EQ(raft_encode_message(&m, out, sizeof(out), &len), RAFT_EINVAL);
	}
	free(buf);
}

static void
test_bad_flags(void)
{
	raft_entry	ents[4];
	raft_message m;
	uint8_t    *buf;
	uint8_t		out[256];
	size_t		len;
	size_t		outlen;
	uint8_t		type;
	unsigned	flags;

	for (type = RAFT_MSG_APPEND; type < RAFT_MSG_LAST; type++)
	{
		bool		transfer_ok = type == RAFT_MSG_VOTE || type == RAFT_MSG_PREVOTE;

		m = sample_message(type, ents);
		m.flags = 0;
		buf = encode(&m, &len);
		for (flags = 1; flags < 256; flags++)
		{
			bool		ok = flags == RAFT_MSG_FLAG_TRANSFER && transfer_ok;
			raft_message d;

			buf[2] = (uint8_t) flags;
			m.flags = (uint8_t) flags;
			if (ok)
			{
				CHECK_EQ(raft_decode_message(buf, len, &d), RAFT_OK);
				CHECK_EQ(d.flags, flags);
				raft_message_free(&d);
				CHECK_EQ(raft_encode_message(&m, out, sizeof(out), &outlen),
						 RAFT_OK);
			}
			else
			{
				check_decode_fails(buf, len, RAFT_EMALFORMED);
				CHECK_EQ(raft_encode_message(&m, out, sizeof(out), &outlen),
						 RAFT_EINVAL);
			}
		}
		free(buf);
	}
}

static void
test_bad_bool(void)
{
	raft_entry	ents[4];
	raft_message m;
	raft_message d;
	uint8_t    *buf;
	size_t		len;
	unsigned	v;

	m = sample_message(RAFT_MSG_APPEND_RESP, ents);
	buf = encode(&m, &len);
	CHECK_EQ(buf[3], 1);
	for (v = 0; v < 256; v++)
	{
		buf[3] = (uint8_t) v;
		if (v <= 1)
		{
			CHECK_EQ(raft_decode_message(buf, len, &d), RAFT_OK);
			CHECK_EQ(d.reject, v == 1);
			raft_message_free(&d);
		}
		else
			check_decode_fails(buf, len, RAFT_EMALFORMED);
	}
	free(buf);
}

/* ----------
 * Entries.
 * ----------
 */
static void
test_entry_type(void)
{
	raft_entry	ents[4];
	raft_message m;
	raft_message d;
	uint8_t    *buf;
	uint8_t		out[512];
	size_t		len;
	size_t		outlen;
	unsigned	t;

	/* entry 0 is NORMAL with data: its type byte is at 80 + 8 */
	m = sample_message(RAFT_MSG_APPEND, ents);
	buf = encode(&m, &len);
	CHECK_EQ(buf[88], RAFT_ENTRY_NORMAL);
	for (t = 0; t < 256; t++)
	{
		buf[88] = (uint8_t) t;
		ents[0].type = (uint8_t) t;
		if (t == RAFT_ENTRY_NORMAL || t == RAFT_ENTRY_CONFIG)
		{
			CHECK_EQ(raft_decode_message(buf, len, &d), RAFT_OK);
			CHECK_EQ(d.entries[0].type, t);
			raft_message_free(&d);
			CHECK_EQ(raft_encode_message(&m, out, sizeof(out), &outlen), RAFT_OK);
		}
		else
		{
			/* unknown, or a NOOP that carries data */
			check_decode_fails(buf, len, RAFT_EMALFORMED);
			CHECK_EQ(raft_encode_message(&m, out, sizeof(out), &outlen),
					 RAFT_EINVAL);
		}
	}
	free(buf);

	/* data missing where len says there is some */
	m = sample_message(RAFT_MSG_APPEND, ents);
	ents[0].data = NULL;
	CHECK_EQ(raft_encode_message(&m, out, sizeof(out), &outlen), RAFT_EINVAL);
	/* entries missing where n_entries says there are some */
	m = sample_message(RAFT_MSG_APPEND, ents);
	m.entries = NULL;
	CHECK_EQ(raft_encode_message(&m, out, sizeof(out), &outlen), RAFT_EINVAL);
}

static void
test_entries_contiguous(void)
{
	raft_entry	ents[4];
	raft_message m;
	raft_message d;
	uint8_t		out[512];
	uint8_t    *buf;
	size_t		len;

	/* the positive control */
	m = sample_message(RAFT_MSG_APPEND, ents);
	CHECK_EQ(raft_encode_message(&m, out, sizeof(out), &len), RAFT_OK);

	/* a gap */
	m = sample_message(RAFT_MSG_APPEND, ents);
	ents[2].index++;
	ents[3].index++;
	CHECK_EQ(raft_encode_message(&m, out, sizeof(out), &len), RAFT_EINVAL);

	/* contiguous, but not after m.index */
	m = sample_message(RAFT_MSG_APPEND, ents);
	m.index--;
	CHECK_EQ(raft_encode_message(&m, out, sizeof(out), &len), RAFT_EINVAL);
	m.index += 2;
	CHECK_EQ(raft_encode_message(&m, out, sizeof(out), &len), RAFT_EINVAL);

	/* a repeated index */
	m = sample_message(RAFT_MSG_APPEND, ents);
	ents[3].index = ents[2].index;
	CHECK_EQ(raft_encode_message(&m, out, sizeof(out), &len), RAFT_EINVAL);

	/* only the last one wrong */
	m = sample_message(RAFT_MSG_APPEND, ents);
	ents[3].index = 0;
	CHECK_EQ(raft_encode_message(&m, out, sizeof(out), &len), RAFT_EINVAL);

	/* indexes that wrap past UINT64_MAX to 0 */
	m = sample_message(RAFT_MSG_APPEND, ents);
	m.n_entries = 2;
	m.index = UINT64_MAX - 1;
	ents[0].index = UINT64_MAX;
	ents[1].index = 0;
	CHECK_EQ(raft_encode_message(&m, out, sizeof(out), &len), RAFT_EINVAL);

	/* the decoder refuses the same wrap: index UINT64_MAX - 1, 2 entries */
	m.index = UINT64_MAX - 2;
	ents[0].index = UINT64_MAX - 1;
	ents[1].index = UINT64_MAX;
	buf = encode(&m, &len);
	CHECK_EQ(raft_decode_message(buf, len, &d), RAFT_OK);
	CHECK_EQ(d.entries[1].index, UINT64_MAX);
	raft_message_free(&d);
	patch_le(buf + 28, UINT64_MAX - 1, 8);
	check_decode_fails(buf, len, RAFT_EMALFORMED);
	free(buf);
}

static void
test_entries_only_in_append(void)
{
	raft_entry	ents[4];
	raft_message m;
	raft_message d;
	uint8_t		out[512];
	uint8_t    *buf;
	bytes		b = {0};
	size_t		len;
	uint8_t		type;

	for (type = RAFT_MSG_APPEND + 1; type < RAFT_MSG_LAST; type++)
	{
		raft_entry	e = {5, 1001, RAFT_ENTRY_NOOP, 0, NULL};

		m = sample_message(type, ents);
		m.n_entries = 1;
		m.entries = &e;
		CHECK_EQ(raft_encode_message(&m, out, sizeof(out), &len), RAFT_EINVAL);

		/* and on the wire: n_entries = 1 and one NOOP entry after the header */
		m.n_entries = 0;
		m.entries = NULL;
		buf = encode(&m, &len);
		b.len = 0;
		b_mem(&b, buf, 80);
		b_u64(&b, 5);
		b_u8(&b, RAFT_ENTRY_NOOP);
		b_u32(&b, 0);
		b_mem(&b, buf + 80, len - 80);
		patch_le(b.buf + 76, 1, 4);
		check_decode_fails(b.buf, b.len, RAFT_EMALFORMED);
		free(buf);
	}

	/* the same bytes are fine in an APPEND */
	b.buf[1] = RAFT_MSG_APPEND;
	b.buf[2] = 0;
	CHECK_EQ(raft_decode_message(b.buf, b.len, &d), RAFT_OK);
	CHECK_EQ(d.n_entries, 1);
	raft_message_free(&d);
	b_free(&b);
}

static void
test_entry_count_limit(void)
{
	raft_message m;
	raft_message d;
	raft_entry *ents;
	uint8_t    *buf;
	bytes		b = {0};
	size_t		len;
	uint32_t	i;
	uint32_t	n = RAFT_MAX_MSG_ENTRIES + 1;

	ents = calloc(n, sizeof(raft_entry));
	CHECK(ents != NULL);
	memset(&m, 0, sizeof(m));
	m.type = RAFT_MSG_APPEND;
	m.index = 5;
	m.entries = ents;
	for (i = 0; i < n; i++)
	{
		ents[i].term = 1;
		ents[i].index = m.index + 1 + i;
		ents[i].type = RAFT_ENTRY_NOOP;
	}

	/* exactly the limit: fine both ways */
	m.n_entries = RAFT_MAX_MSG_ENTRIES;
	buf = encode(&m, &len);
	CHECK_EQ(raft_decode_message(buf, len, &d), RAFT_OK);
	CHECK_EQ(d.n_entries, RAFT_MAX_MSG_ENTRIES);
	CHECK_EQ(d.entries[RAFT_MAX_MSG_ENTRIES - 1].index,
			 5 + (uint64_t) RAFT_MAX_MSG_ENTRIES);
	raft_message_free(&d);

	/* one more: refused both ways, though every byte is there */
	m.n_entries = n;
	b_need(&b, len + 13);
	CHECK_EQ(raft_encode_message(&m, b.buf, len + 13, &len), RAFT_ETOOBIG);
	b_mem(&b, buf, len);
	b_u64(&b, 1);
	b_u8(&b, RAFT_ENTRY_NOOP);
	b_u32(&b, 0);
	patch_le(b.buf + 76, n, 4);
	check_decode_fails(b.buf, b.len, RAFT_EMALFORMED);

	/* an absurd count must not allocate before it is found absurd */
	patch_le(buf + 76, UINT32_MAX, 4);
	check_decode_fails(buf, 80, RAFT_EMALFORMED);
	CHECK_EQ(oom.calls, 0);
	check_decode_fails(buf, len, RAFT_EMALFORMED);
	CHECK_EQ(oom.calls, 0);
	patch_le(buf + 76, 2, 4);	/* two entries promised, one's bytes given */
	check_decode_fails(buf, 80 + 13, RAFT_EMALFORMED);
	CHECK_EQ(oom.calls, 0);

	b_free(&b);
	free(buf);
	free(ents);
}

static void
test_entry_len_limit(void)
{
	const size_t max = RAFT_MAX_ENTRY_BYTES;
	const size_t cap = 80 + 13 + max + 1;
	raft_message m;
	raft_message d;
	raft_entry	e;
	uint8_t    *data;
	uint8_t    *buf;
	size_t		len;

	data = calloc(1, max + 1);
	buf = malloc(cap);
	CHECK(data != NULL && buf != NULL);
	data[0] = 0x5a;
	data[max - 1] = 0xa5;

	memset(&m, 0, sizeof(m));
	memset(&e, 0, sizeof(e));
	m.type = RAFT_MSG_APPEND;
	m.index = 1;
	m.n_entries = 1;
	m.entries = &e;
	e.term = 1;
	e.index = 2;
	e.type = RAFT_ENTRY_NORMAL;
	e.data = data;

	/* exactly the limit */
	e.len = (uint32_t) max;
	CHECK_EQ(raft_encode_message(&m, buf, cap, &len), RAFT_OK);
	CHECK_EQ(len, cap - 1);
	CHECK_EQ(raft_decode_message(buf, len, &d), RAFT_OK);
	CHECK_EQ(d.entries[0].len, max);
	CHECK(memcmp(d.entries[0].data, data, max) == 0);
	raft_message_free(&d);

	/* one byte over, with room for it in the buffer and in the input */
	e.len = (uint32_t) max + 1;
	CHECK_EQ(raft_encode_message(&m, buf, cap, &len), RAFT_ETOOBIG);
	patch_le(buf + 80 + 9, max + 1, 4);
	buf[cap - 1] = 0;
	check_decode_fails(buf, cap, RAFT_EMALFORMED);

	/* a len far beyond the input and the limit */
	patch_le(buf + 80 + 9, UINT32_MAX, 4);
	check_decode_fails(buf, cap, RAFT_EMALFORMED);

	free(buf);
	free(data);
}

/* ----------
 * Configurations in messages.
 * ----------
 */
static void
test_config_only_in_snapshot(void)
{
	raft_server learner = {9, RAFT_LEARNER, "l", ""};
	raft_config no_voter = {1, &learner};
	raft_entry	ents[4];
	raft_message m;
	uint8_t		out[1024];
	uint8_t    *buf;
	bytes		b = {0};
	size_t		len;
	uint8_t		type;

	/* a configuration on any other kind is a caller's mistake */
	for (type = RAFT_MSG_APPEND; type < RAFT_MSG_LAST; type++)
	{
		if (type == RAFT_MSG_SNAPSHOT)
			continue;
		m = sample_message(type, ents);
		m.config = config3;
		CHECK_EQ(raft_encode_message(&m, out, sizeof(out), &len), RAFT_EINVAL);
	}

	/* a SNAPSHOT must carry a valid one */
	m = sample_message(RAFT_MSG_SNAPSHOT, ents);
	m.config.n = 0;
	m.config.servers = NULL;
	CHECK_EQ(raft_encode_message(&m, out, sizeof(out), &len), RAFT_EBADCONFIG);
	m.config = no_voter;
	CHECK_EQ(raft_encode_message(&m, out, sizeof(out), &len), RAFT_EBADCONFIG);

	/* on the wire: no configuration at all */
	m = sample_message(RAFT_MSG_SNAPSHOT, ents);
	buf = encode(&m, &len);
	b_mem(&b, buf, 80);
	b_u32(&b, 0);
	check_decode_fails(b.buf, b.len, RAFT_EMALFORMED);
	check_decode_fails(b.buf, 80, RAFT_EMALFORMED);

	/* config_len beyond the input */
	patch_le(b.buf + 80, UINT32_MAX, 4);
	check_decode_fails(b.buf, b.len, RAFT_EMALFORMED);

	/* a configuration that parses but has no voter */
	b.len = 80;
	b_u32(&b, 5 + 13 + 1);
	b_u8(&b, RAFT_CONFIG_WIRE_VERSION);
	b_u32(&b, 1);
	b_server_str(&b, 9, RAFT_LEARNER, "l", "");
	check_decode_fails(b.buf, b.len, RAFT_EBADCONFIG);

	/* a HEARTBEAT followed by a configuration section: trailing bytes */
	b.len = 0;
	b_mem(&b, buf, len);
	b.buf[1] = RAFT_MSG_HEARTBEAT;
	check_decode_fails(b.buf, b.len, RAFT_EMALFORMED);

	b_free(&b);
	free(buf);
}

/* ----------
 * Configuration decoding: each rule of raft_config_validate() must also
 * hold for what arrives as bytes.
 * ----------
 */
static void
b_config_header(bytes *b, uint32_t n)
{
	b->len = 0;
	b_u8(b, RAFT_CONFIG_WIRE_VERSION);
	b_u32(b, n);
}

static void
test_decode_config_rules(void)
{
	char		name[RAFT_MAX_NAME + 2];
	char		address[RAFT_MAX_ADDRESS + 2];
	bytes		b = {0};
	raft_config c;
	uint32_t	i;

	memset(name, 'n', sizeof(name));
	memset(address, 'a', sizeof(address));

	/* the positive control */
	b_config_header(&b, 2);
	b_server_str(&b, 1, RAFT_VOTER, "a", "x");
	b_server_str(&b, 2, RAFT_LEARNER, "b", "");
	CHECK_EQ(raft_decode_config(b.buf, b.len, &c), RAFT_OK);
	CHECK_EQ(c.n, 2);
	CHECK(strcmp(c.servers[1].name, "b") == 0);
	CHECK(strcmp(c.servers[1].address, "") == 0);
	raft_config_free(&c);

	/* unknown roles */
	for (i = 0; i < 256; i++)
	{
		if (i == RAFT_VOTER || i == RAFT_LEARNER)
			continue;
		b_config_header(&b, 2);
		b_server_str(&b, 1, RAFT_VOTER, "a", "x");
		b_server_str(&b, 2, (uint8_t) i, "b", "");
		check_decode_config_fails(b.buf, b.len, RAFT_EMALFORMED);
	}

	/* a NUL inside a name or an address */
	b_config_header(&b, 1);
	b_server(&b, 1, RAFT_VOTER, "a\0b", 3, "x", 1);
	check_decode_config_fails(b.buf, b.len, RAFT_EMALFORMED);
	b_config_header(&b, 1);
	b_server(&b, 1, RAFT_VOTER, "ab", 2, "x\0", 2);
	check_decode_config_fails(b.buf, b.len, RAFT_EMALFORMED);

	/* lengths beyond the input */
	b_config_header(&b, 1);
	b_server(&b, 1, RAFT_VOTER, "ab", 2, "x", 1);
	patch_le(b.buf + 5 + 9, 0xffff, 2);
	check_decode_config_fails(b.buf, b.len, RAFT_EMALFORMED);
	b_config_header(&b, UINT32_MAX);
	b_server_str(&b, 1, RAFT_VOTER, "a", "x");
	check_decode_config_fails(b.buf, b.len, RAFT_EMALFORMED);
	CHECK_EQ(oom.calls, 0);		/* refused before allocating */

	/* no servers */
	b_config_header(&b, 0);
	check_decode_config_fails(b.buf, b.len, RAFT_EBADCONFIG);

	/* id 0 */
	b_config_header(&b, 1);
	b_server_str(&b, 0, RAFT_VOTER, "a", "x");
	check_decode_config_fails(b.buf, b.len, RAFT_EBADCONFIG);

	/* duplicate id, duplicate name */
	b_config_header(&b, 2);
	b_server_str(&b, 1, RAFT_VOTER, "a", "x");
	b_server_str(&b, 1, RAFT_VOTER, "b", "x");
	check_decode_config_fails(b.buf, b.len, RAFT_EBADCONFIG);
	b_config_header(&b, 2);
	b_server_str(&b, 1, RAFT_VOTER, "a", "x");
	b_server_str(&b, 2, RAFT_VOTER, "a", "y");
	check_decode_config_fails(b.buf, b.len, RAFT_EBADCONFIG);

	/* empty name */
	b_config_header(&b, 1);
	b_server_str(&b, 1, RAFT_VOTER, "", "x");
	check_decode_config_fails(b.buf, b.len, RAFT_EBADCONFIG);

	/* name at the limit and one over */
	b_config_header(&b, 1);
	b_server(&b, 1, RAFT_VOTER, name, RAFT_MAX_NAME, "x", 1);
	CHECK_EQ(raft_decode_config(b.buf, b.len, &c), RAFT_OK);
	CHECK_EQ(strlen(c.servers[0].name), RAFT_MAX_NAME);
	raft_config_free(&c);
	b_config_header(&b, 1);
	b_server(&b, 1, RAFT_VOTER, name, RAFT_MAX_NAME + 1, "x", 1);
	check_decode_config_fails(b.buf, b.len, RAFT_EBADCONFIG);

	/* address at the limit and one over */
	b_config_header(&b, 1);
	b_server(&b, 1, RAFT_VOTER, "a", 1, address, RAFT_MAX_ADDRESS);
	CHECK_EQ(raft_decode_config(b.buf, b.len, &c), RAFT_OK);
	CHECK_EQ(strlen(c.servers[0].address), RAFT_MAX_ADDRESS);
	raft_config_free(&c);
	b_config_header(&b, 1);
	b_server(&b, 1, RAFT_VOTER, "a", 1, address, RAFT_MAX_ADDRESS + 1);
	check_decode_config_fails(b.buf, b.len, RAFT_EBADCONFIG);

	/* learners only */
	b_config_header(&b, 2);
	b_server_str(&b, 1, RAFT_LEARNER, "a", "x");
	b_server_str(&b, 2, RAFT_LEARNER, "b", "x");
	check_decode_config_fails(b.buf, b.len, RAFT_EBADCONFIG);

	/* RAFT_MAX_SERVERS servers, then one more */
	for (i = RAFT_MAX_SERVERS; i <= RAFT_MAX_SERVERS + 1; i++)
	{
		uint32_t	j;

		b_config_header(&b, i);
		for (j = 0; j < i; j++)
		{
			char		nm[16];

			snprintf(nm, sizeof(nm), "s%u", (unsigned) j);
			b_server_str(&b, j + 1, RAFT_VOTER, nm, "");
		}
		if (i == RAFT_MAX_SERVERS)
		{
			CHECK_EQ(raft_decode_config(b.buf, b.len, &c), RAFT_OK);
			CHECK_EQ(c.n, RAFT_MAX_SERVERS);
			raft_config_free(&c);
		}
		else
			check_decode_config_fails(b.buf, b.len, RAFT_EBADCONFIG);
	}
	b_free(&b);
}

static void
test_encode_config_refuses_invalid(void)
{
	raft_server s[2] = {
		{1, RAFT_VOTER, "a", "x"},
		{2, RAFT_VOTER, "a", "y"},	/* duplicate name */
	};
	raft_config c = {2, s};
	uint8_t		out[256];
	size_t		len = 12345;

	CHECK_EQ(raft_encode_config(&c, out, sizeof(out), &len), RAFT_EBADCONFIG);
	CHECK_EQ(len, 12345);
	c.n = 0;
	CHECK_EQ(raft_encode_config(&c, out, sizeof(out), &len), RAFT_EBADCONFIG);
	c.n = 1;
	CHECK_EQ(raft_encode_config(&c, out, sizeof(out), &len), RAFT_OK);
	CHECK_EQ(len, raft_config_encoded_size(&c));
}

/* ----------
 * The encoder's buffer handling.
 * ----------
 */
static void
test_encode_buffer(void)
{
	raft_entry	ents[4];
	raft_message m;
	uint8_t		out[512];
	size_t		size;
	size_t		len;
	size_t		i;

	m = sample_message(RAFT_MSG_APPEND, ents);
	size = raft_message_encoded_size(&m);
	CHECK(size + 16 <= sizeof(out));

	/* one byte short: refused, and told how much is needed */
	len = 0;
	CHECK_EQ(raft_encode_message(&m, out, size - 1, &len), RAFT_ETOOBIG);
	CHECK_EQ(len, size);
	len = 0;
	CHECK_EQ(raft_encode_message(&m, NULL, 0, &len), RAFT_ETOOBIG);
	CHECK_EQ(len, size);
	len = 0;
	CHECK_EQ(raft_encode_config(&config3, out, 3, &len), RAFT_ETOOBIG);
	CHECK_EQ(len, raft_config_encoded_size(&config3));

	/* room to spare: nothing written past the encoding */
	memset(out, 0xee, sizeof(out));
	CHECK_EQ(raft_encode_message(&m, out, sizeof(out), &len), RAFT_OK);
	CHECK_EQ(len, size);
	for (i = size; i < sizeof(out); i++)
		CHECK_EQ(out[i], 0xee);

	/* NULL arguments */
	CHECK_EQ(raft_encode_message(NULL, out, sizeof(out), &len), RAFT_EINVAL);
	CHECK_EQ(raft_encode_message(&m, out, sizeof(out), NULL), RAFT_EINVAL);
	CHECK_EQ(raft_encode_config(NULL, out, sizeof(out), &len), RAFT_EINVAL);
	CHECK_EQ(raft_decode_message(out, len, NULL), RAFT_EINVAL);
	CHECK_EQ(raft_decode_config(out, len, NULL), RAFT_EINVAL);
	check_decode_fails(NULL, 10, RAFT_EINVAL);
}

/* ----------
 * Ownership and out-of-memory.
 * ----------
 */
static void
test_free(void)
{
	raft_entry	ents[4];
	raft_message m;
	raft_message d;
	raft_config c;
	uint8_t    *buf;
	size_t		len;

	raft_message_free(NULL);
	memset(&d, 0, sizeof(d));
	raft_message_free(&d);
	CHECK(is_zero(&d, sizeof(d)));

	/* the configuration of a decoded SNAPSHOT can be taken away and freed alone */
	m = sample_message(RAFT_MSG_SNAPSHOT, ents);
	buf = encode(&m, &len);
	oom_install();
	CHECK_EQ(raft_decode_message(buf, len, &d), RAFT_OK);
	CHECK_EQ(oom.live, 1);
	c = d.config;
	memset(&d.config, 0, sizeof(d.config));
	raft_message_free(&d);
	CHECK_EQ(oom.live, 1);
	CHECK(raft_config_equal(&c, &config3));
	raft_config_free(&c);
	CHECK_EQ(oom.live, 0);
	oom_remove();
	free(buf);

	/* an APPEND's entries and their data are one block */
	m = sample_message(RAFT_MSG_APPEND, ents);
	buf = encode(&m, &len);
	oom_install();
	CHECK_EQ(raft_decode_message(buf, len, &d), RAFT_OK);
	CHECK_EQ(oom.calls, 1);
	CHECK(d.entries[1].data == NULL);	/* the NOOP */
	CHECK(d.entries[3].data == NULL);	/* the empty NORMAL */
	raft_message_free(&d);
	CHECK(is_zero(&d, sizeof(d)));
	CHECK_EQ(oom.live, 0);
	oom_remove();
	free(buf);
}

typedef struct decode_arg
{
	const uint8_t *buf;
	size_t		len;
	const raft_message *expect;
	const raft_config *expect_config;
} decode_arg;

static int
op_decode_message(const void *arg)
{
	const decode_arg *a = arg;
	raft_message d;
	int			rc;

	rc = raft_decode_message(a->buf, a->len, &d);
	if (rc != RAFT_OK)
		return is_zero(&d, sizeof(d)) ? rc : RAFT_ELAST;
	if (!msg_equal(&d, a->expect))
		rc = RAFT_ELAST;
	raft_message_free(&d);
	return rc;
}

static int
op_decode_config(const void *arg)
{
	const decode_arg *a = arg;
	raft_config c;
	int			rc;

	rc = raft_decode_config(a->buf, a->len, &c);
	if (rc != RAFT_OK)
		return c.n == 0 && c.servers == NULL ? rc : RAFT_ELAST;
	if (!raft_config_equal(&c, a->expect_config))
		rc = RAFT_ELAST;
	raft_config_free(&c);
	return rc;
}

static void
test_oom(void)
{
	raft_entry	ents[4];
	raft_message m;
	decode_arg	a;
	uint8_t    *buf;
	size_t		len;
	uint8_t		type;

	memset(&a, 0, sizeof(a));
	for (type = RAFT_MSG_APPEND; type < RAFT_MSG_LAST; type++)
	{
		m = sample_message(type, ents);
		buf = encode(&m, &len);
		a.buf = buf;
		a.len = len;
		a.expect = &m;
		/* APPEND's entries, SNAPSHOT's configuration; nothing otherwise */
		check_oom_loop(op_decode_message, &a,
					   type == RAFT_MSG_APPEND || type == RAFT_MSG_SNAPSHOT);
		free(buf);
	}

	buf = encode_config(&config3, &len);
	a.buf = buf;
	a.len = len;
	a.expect_config = &config3;
	check_oom_loop(op_decode_config, &a, 1);
	free(buf);
}

void
suite_codec(void)
{
	RUN(test_roundtrip_every_type);
	RUN(test_roundtrip_plain);
	RUN(test_roundtrip_extremes);
	RUN(test_roundtrip_config);
	RUN(test_golden_vote);
	RUN(test_golden_append);
	RUN(test_golden_config);
	RUN(test_truncation_message);
	RUN(test_truncation_config);
	RUN(test_trailing_bytes);
	RUN(test_bad_version);
	RUN(test_bad_type);
	RUN(test_bad_flags);
	RUN(test_bad_bool);
	RUN(test_entry_type);
	RUN(test_entries_contiguous);
	RUN(test_entries_only_in_append);
	RUN(test_entry_count_limit);
	RUN(test_entry_len_limit);
	RUN(test_config_only_in_snapshot);
	RUN(test_decode_config_rules);
	RUN(test_encode_config_refuses_invalid);
	RUN(test_encode_buffer);
	RUN(test_free);
	RUN(test_oom);
}
