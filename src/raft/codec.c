/*-------------------------------------------------------------------------
 *
 * codec.c
 *	  The wire format of messages and configurations.
 *
 * Every byte a peer sends reaches the core through raft_decode_message(),
 * and every configuration stored in the log or carried by a snapshot
 * through raft_decode_config().  Both treat their input as hostile: each
 * length is compared with the bytes that remain before it is used (as
 * "len > remaining", never "offset + len > size", which can wrap), every
 * count is bounded before anything is allocated for it, and whatever is
 * not exactly one of the values we write -- a type, a flag bit, a role, a
 * bool that is not 0 or 1, a byte after the end -- is refused.  The format
 * is therefore canonical: a byte string that decodes re-encodes to itself,
 * which is what the fuzzer (test/unit/fuzz_codec.c) checks.
 *
 * The codec checks structure only.  Protocol rules (terms of entries not
 * above the message's term, a CONFIG entry's payload being a valid
 * configuration) are raft_step()'s to enforce, where the core's state is
 * at hand.
 *
 * Message, RAFT_WIRE_VERSION 1 (all integers little-endian, unaligned):
 *
 *	  offset size  field
 *	  0		 1	   version		RAFT_WIRE_VERSION, else RAFT_EVERSION
 *	  1		 1	   type			RAFT_MSG_APPEND .. RAFT_MSG_LAST - 1
 *	  2		 1	   flags		RAFT_MSG_FLAG_TRANSFER, on VOTE/PREVOTE only
 *	  3		 1	   reject		0 or 1
 *	  4		 8	   from
 *	  12	 8	   to
 *	  20	 8	   term
 *	  28	 8	   index
 *	  36	 8	   log_term
 *	  44	 8	   commit
 *	  52	 8	   hint_term
 *	  60	 8	   hint_index
 *	  68	 8	   ctx
 *	  76	 4	   n_entries	0 unless APPEND; <= RAFT_MAX_MSG_ENTRIES
 *	  80	 ...   n_entries times:
 *					 term (8), type (1), len (4), len bytes of data
 *				   type is a raft_entry_type, len <= RAFT_MAX_ENTRY_BYTES,
 *				   NOOP entries have len 0.  Entry i's index is not sent:
 *				   it is index + 1 + i, and the encoder refuses entries
 *				   that are not numbered so.
 *	  ...	 4	   SNAPSHOT only: config_len, followed by config_len bytes
 *				   holding exactly one encoded configuration (below),
 *				   which must be valid.  Other kinds carry no
 *				   configuration: the encoder refuses one with n != 0.
 *
 * Configuration, RAFT_CONFIG_WIRE_VERSION 1:
 *
 *	  version (1), n (4), then n times:
 *		  id (8), role (1), name_len (2), name, address_len (2), address
 *
 *	  Strings carry no NUL; decoding copies them NUL-terminated and then
 *	  runs raft_config_validate(), so bytes that parse but describe an
 *	  invalid configuration give RAFT_EBADCONFIG rather than
 *	  RAFT_EMALFORMED.
 *
 * Decoded memory.  A decoded message owns at most two allocations: one
 * block with entries[] followed by every entry's data (entry data points
 * into it; copy what must outlive the message), and the configuration,
 * which is one block as described in config.h and may therefore be moved
 * out of the message and freed on its own with raft_config_free().
 * raft_message_free() releases both and zeroes the struct.  On any error
 * the output struct is left zeroed and nothing stays allocated.
 *
 * Errors.  Decoding: RAFT_EVERSION for an unknown first byte (of the
 * message, or of the configuration inside a SNAPSHOT), RAFT_EBADCONFIG
 * for a configuration that parses but does not validate, RAFT_ENOMEM,
 * and RAFT_EMALFORMED for everything else, an unknown role included.
 * Encoding refuses, before writing a byte, what the decoder would refuse:
 * RAFT_EINVAL for a struct that is wrong (kind, flags, entries on a kind
 * other than APPEND or not numbered index + 1 + i, NOOP with data),
 * RAFT_ETOOBIG for a count or length over its limit, RAFT_EBADCONFIG for
 * an invalid configuration, and RAFT_ETOOBIG with *len set to the size
 * needed when cap is too small.
 *
 *-------------------------------------------------------------------------
 */
#include "raft_int.h"

#include "config.h"

#define MSG_HEADER_SIZE		80	/* version .. n_entries */
#define ENTRY_HEADER_SIZE	13	/* term, type, len */
#define CONFIG_HEADER_SIZE	5	/* version, n */
#define SERVER_MIN_SIZE		13	/* id, role, name_len, address_len */

/* ----------
 * Little-endian integers, byte by byte: no unaligned loads, no host order.
 * ----------
 */
static void
put_u16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t) v;
	p[1] = (uint8_t) (v >> 8);
}

static void
put_u32(uint8_t *p, uint32_t v)
{
	int			i;

	for (i = 0; i < 4; i++)
		p[i] = (uint8_t) (v >> (8 * i));
}

static void
put_u64(uint8_t *p, uint64_t v)
{
	int			i;

	for (i = 0; i < 8; i++)
		p[i] = (uint8_t) (v >> (8 * i));
}

static uint16_t
get_u16(const uint8_t *p)
{
	return (uint16_t) (p[0] | (p[1] << 8));
}

static uint32_t
get_u32(const uint8_t *p)
{
	uint32_t	v = 0;
	int			i;

	for (i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t
get_u64(const uint8_t *p)
{
	uint64_t	v = 0;
	int			i;

	for (i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* ----------
 * Writer.  The encoders size the output exactly before writing, so running
 * out of room here is a bug in this file, not bad input.
 * ----------
 */
typedef struct writer
{
	uint8_t    *p;
	size_t		left;
} writer;

static uint8_t *
writer_take(writer *w, size_t n)
{
	uint8_t    *p = w->p;

	RAFT_ASSERT(n <= w->left);
	w->p += n;
	w->left -= n;
	return p;
}

static void
write_u8(writer *w, uint8_t v)
{
	*writer_take(w, 1) = v;
}

static void
write_u16(writer *w, uint16_t v)
{
	put_u16(writer_take(w, 2), v);
}

static void
write_u32(writer *w, uint32_t v)
{
	put_u32(writer_take(w, 4), v);
}

static void
write_u64(writer *w, uint64_t v)
{
	put_u64(writer_take(w, 8), v);
}

static void
write_bytes(writer *w, const void *src, size_t n)
{
	if (n > 0)
		memcpy(writer_take(w, n), src, n);
}

/* ----------
 * Reader.  Every read compares its length with what is left, so no length
 * from the input is ever added to a pointer or an offset unchecked.
 * ----------
 */
typedef struct reader
{
	const uint8_t *p;
	size_t		left;
} reader;

static bool
read_bytes(reader *r, size_t n, const uint8_t **out)
{
	if (n > r->left)
		return false;
	*out = r->p;
	if (n > 0)
		r->p += n;
	r->left -= n;
	return true;
}

static bool
read_u8(reader *r, uint8_t *v)
{
	const uint8_t *p;

	if (!read_bytes(r, 1, &p))
		return false;
	*v = p[0];
	return true;
}

static bool
read_u16(reader *r, uint16_t *v)
{
	const uint8_t *p;

	if (!read_bytes(r, 2, &p))
		return false;
	*v = get_u16(p);
	return true;
}

static bool
read_u32(reader *r, uint32_t *v)
{
	const uint8_t *p;

	if (!read_bytes(r, 4, &p))
		return false;
	*v = get_u32(p);
	return true;
}

static bool
read_u64(reader *r, uint64_t *v)
{
	const uint8_t *p;

	if (!read_bytes(r, 8, &p))
		return false;
	*v = get_u64(p);
	return true;
}

/* a + b, or SIZE_MAX if that does not fit */
static size_t
add_sat(size_t a, size_t b)
{
	return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

/* a * b, or SIZE_MAX if that does not fit */
static size_t
mul_sat(size_t a, size_t b)
{
	return b != 0 && a > SIZE_MAX / b ? SIZE_MAX : a * b;
}

static bool
entry_type_valid(uint8_t type)
{
	return type == RAFT_ENTRY_NORMAL || type == RAFT_ENTRY_NOOP ||
		type == RAFT_ENTRY_CONFIG;
}

static bool
flags_valid(uint8_t type, uint8_t flags)
{
	if ((flags & ~RAFT_MSG_FLAG_TRANSFER) != 0)
		return false;
	if ((flags & RAFT_MSG_FLAG_TRANSFER) != 0 &&
		type != RAFT_MSG_VOTE && type != RAFT_MSG_PREVOTE)
		return false;
	return true;
}

/* ----------
 * Configurations.
 * ----------
 */

/*
 * The bytes raft_encode_config() would write.  Defined for any
 * configuration, valid or not (missing strings count as empty), saturating
 * at SIZE_MAX, so that it can never be the thing that crashes.
 */
size_t
raft_config_encoded_size(const raft_config *c)
{
	size_t		size = CONFIG_HEADER_SIZE;
	uint32_t	i;

	if (c == NULL || c->servers == NULL)
		return size;
	for (i = 0; i < c->n; i++)
	{
		const raft_server *s = &c->servers[i];

		size = add_sat(size, SERVER_MIN_SIZE);
		if (s->name != NULL)
			size = add_sat(size, strlen(s->name));
		if (s->address != NULL)
			size = add_sat(size, strlen(s->address));
	}
	return size;
}

/* c has been validated: every length fits its field */
static void
config_write(writer *w, const raft_config *c)
{
	uint32_t	i;

	write_u8(w, RAFT_CONFIG_WIRE_VERSION);
	write_u32(w, c->n);
	for (i = 0; i < c->n; i++)
	{
		const raft_server *s = &c->servers[i];
		size_t		name_len = strlen(s->name);
		size_t		address_len = strlen(s->address);

		write_u64(w, s->id);
		write_u8(w, s->role);
		write_u16(w, (uint16_t) name_len);
		write_bytes(w, s->name, name_len);
		write_u16(w, (uint16_t) address_len);
		write_bytes(w, s->address, address_len);
	}
}

int
raft_encode_config(const raft_config *c, uint8_t *buf, size_t cap, size_t *len)
{
	size_t		size;
	writer		w;

	if (c == NULL || len == NULL)
		return RAFT_EINVAL;
	/* what we write must decode, and decoding validates */
	if (raft_config_validate(c) != RAFT_OK)
		return RAFT_EBADCONFIG;
	size = raft_config_encoded_size(c);
	if (size > cap)
	{
		*len = size;
		return RAFT_ETOOBIG;
	}
	if (buf == NULL)
		return RAFT_EINVAL;

	w.p = buf;
	w.left = size;
	config_write(&w, c);
	RAFT_ASSERT(w.left == 0);
	*len = size;
	return RAFT_OK;
}

/* one server as it lies in the input */
typedef struct server_view
{
	raft_id		id;
	uint8_t		role;
	uint16_t	name_len;
	const uint8_t *name;
	uint16_t	address_len;
	const uint8_t *address;
} server_view;

static bool
server_read(reader *r, server_view *v)
{
	if (!read_u64(r, &v->id) || !read_u8(r, &v->role))
		return false;
	if (v->role != RAFT_VOTER && v->role != RAFT_LEARNER)
		return false;
	if (!read_u16(r, &v->name_len) ||
		!read_bytes(r, v->name_len, &v->name) ||
		!read_u16(r, &v->address_len) ||
		!read_bytes(r, v->address_len, &v->address))
		return false;
	/* the decoded strings are C strings: an embedded NUL would cut them */
	if (memchr(v->name, 0, v->name_len) != NULL ||
		memchr(v->address, 0, v->address_len) != NULL)
		return false;
	return true;
}

/*
 * Decode exactly len bytes as one configuration into *out (which the
 * caller has zeroed).  Two passes over the input: the first checks the
 * structure and sizes the block, so that the one allocation comes after
 * every way the bytes can be malformed; the second fills the block.
 */
static int
config_decode(const uint8_t *buf, size_t len, raft_config *out)
{
	reader		r;
	reader		servers_start;
	server_view v;
	uint8_t		version;
	uint32_t	n;
	uint32_t	i;
	size_t		total;
	raft_server *servers;
	char	   *strings;
	raft_config c;

	r.p = buf;
	r.left = len;
	if (!read_u8(&r, &version))
		return RAFT_EMALFORMED;
	if (version != RAFT_CONFIG_WIRE_VERSION)
		return RAFT_EVERSION;
	if (!read_u32(&r, &n))
		return RAFT_EMALFORMED;
	/* bounds n, and so the allocation, by the input's size */
	if (n > r.left / SERVER_MIN_SIZE)
		return RAFT_EMALFORMED;

	servers_start = r;
	total = mul_sat(n, sizeof(raft_server));
	for (i = 0; i < n; i++)
	{
		if (!server_read(&r, &v))
			return RAFT_EMALFORMED;
		total = add_sat(total, (size_t) v.name_len + v.address_len + 2);
	}
	if (r.left != 0)
		return RAFT_EMALFORMED;
	if (n == 0)
		return RAFT_EBADCONFIG;	/* parses, but has no voter */
	/* only reachable on a 32-bit host with a gigabyte of input */
	if (total == SIZE_MAX)
		return RAFT_ENOMEM;

	servers = raft_malloc(total);
	if (servers == NULL)
		return RAFT_ENOMEM;
	strings = (char *) (servers + n);
	r = servers_start;
	for (i = 0; i < n; i++)
	{
		bool		ok = server_read(&r, &v);

		RAFT_ASSERT(ok);
		servers[i].id = v.id;
		servers[i].role = v.role;
		servers[i].name = strings;
		memcpy(strings, v.name, v.name_len);
		strings += v.name_len;
		*strings++ = '\0';
		servers[i].address = strings;
		memcpy(strings, v.address, v.address_len);
		strings += v.address_len;
		*strings++ = '\0';
	}
	RAFT_ASSERT((size_t) (strings - (char *) servers) == total);

	c.n = n;
	c.servers = servers;
	if (raft_config_validate(&c) != RAFT_OK)
	{
		raft_free(servers);
		return RAFT_EBADCONFIG;
	}
	*out = c;
	return RAFT_OK;
}

int
raft_decode_config(const uint8_t *buf, size_t len, raft_config *c)
{
	if (c == NULL)
		return RAFT_EINVAL;
	c->n = 0;
	c->servers = NULL;
	if (buf == NULL && len > 0)
		return RAFT_EINVAL;
	return config_decode(buf, len, c);
}

/* ----------
 * Messages.
 * ----------
 */

/*
 * The bytes raft_encode_message() would write, for any message: entries
 * are counted whenever entries[] is set, and the configuration section only
 * for SNAPSHOT, as the encoder does.  Saturates at SIZE_MAX.
 */
size_t
raft_message_encoded_size(const raft_message *m)
{
	size_t		size = MSG_HEADER_SIZE;
	uint32_t	i;

	if (m == NULL)
		return 0;
	if (m->entries != NULL)
	{
		for (i = 0; i < m->n_entries; i++)
			size = add_sat(add_sat(size, ENTRY_HEADER_SIZE), m->entries[i].len);
	}
	if (m->type == RAFT_MSG_SNAPSHOT)
		size = add_sat(add_sat(size, 4), raft_config_encoded_size(&m->config));
	return size;
}

/* everything the encoder refuses, before a byte is written */
static int
message_check(const raft_message *m)
{
	uint32_t	i;

	if (m->type < RAFT_MSG_APPEND || m->type >= RAFT_MSG_LAST)
		return RAFT_EINVAL;
	if (!flags_valid(m->type, m->flags))
		return RAFT_EINVAL;

	if (m->n_entries > 0)
	{
		if (m->type != RAFT_MSG_APPEND || m->entries == NULL)
			return RAFT_EINVAL;
		if (m->n_entries > RAFT_MAX_MSG_ENTRIES)
			return RAFT_ETOOBIG;
		/* the last entry's index must not wrap */
		if (m->index > UINT64_MAX - m->n_entries)
			return RAFT_EINVAL;
		for (i = 0; i < m->n_entries; i++)
		{
			const raft_entry *e = &m->entries[i];

			/* the decoder derives indexes; anything else would not survive */
			if (e->index != m->index + 1 + i)
				return RAFT_EINVAL;
			if (!entry_type_valid(e->type))
				return RAFT_EINVAL;
			if (e->len > RAFT_MAX_ENTRY_BYTES)
				return RAFT_ETOOBIG;
			if (e->type == RAFT_ENTRY_NOOP && e->len != 0)
				return RAFT_EINVAL;
			if (e->len > 0 && e->data == NULL)
				return RAFT_EINVAL;
		}
	}

	if (m->type == RAFT_MSG_SNAPSHOT)
	{
		if (raft_config_validate(&m->config) != RAFT_OK)
			return RAFT_EBADCONFIG;
	}
	else if (m->config.n != 0)
		return RAFT_EINVAL;
	return RAFT_OK;
}

int
raft_encode_message(const raft_message *m, uint8_t *buf, size_t cap,
					size_t *len)
{
	size_t		size;
	writer		w;
	uint32_t	i;
	int			rc;

	if (m == NULL || len == NULL)
		return RAFT_EINVAL;
	rc = message_check(m);
	if (rc != RAFT_OK)
		return rc;
	size = raft_message_encoded_size(m);
	if (size > cap)
	{
		*len = size;
		return RAFT_ETOOBIG;
	}
	if (buf == NULL)
		return RAFT_EINVAL;

	w.p = buf;
	w.left = size;
	write_u8(&w, RAFT_WIRE_VERSION);
	write_u8(&w, m->type);
	write_u8(&w, m->flags);
	write_u8(&w, m->reject ? 1 : 0);
	write_u64(&w, m->from);
	write_u64(&w, m->to);
	write_u64(&w, m->term);
	write_u64(&w, m->index);
	write_u64(&w, m->log_term);
	write_u64(&w, m->commit);
	write_u64(&w, m->hint_term);
	write_u64(&w, m->hint_index);
	write_u64(&w, m->ctx);
	write_u32(&w, m->n_entries);
	for (i = 0; i < m->n_entries; i++)
	{
		const raft_entry *e = &m->entries[i];

		write_u64(&w, e->term);
		write_u8(&w, e->type);
		write_u32(&w, e->len);
		write_bytes(&w, e->data, e->len);
	}
	if (m->type == RAFT_MSG_SNAPSHOT)
	{
		size_t		config_size = raft_config_encoded_size(&m->config);

		/* a valid configuration is at most ~70 kB */
		RAFT_ASSERT(config_size <= UINT32_MAX);
		write_u32(&w, (uint32_t) config_size);
		config_write(&w, &m->config);
	}
	RAFT_ASSERT(w.left == 0);
	*len = size;
	return RAFT_OK;
}

/* one entry as it lies in the input */
typedef struct entry_view
{
	raft_term	term;
	uint8_t		type;
	uint32_t	len;
	const uint8_t *data;
} entry_view;

static bool
entry_read(reader *r, entry_view *v)
{
	if (!read_u64(r, &v->term) || !read_u8(r, &v->type) ||
		!read_u32(r, &v->len))
		return false;
	if (!entry_type_valid(v->type) || v->len > RAFT_MAX_ENTRY_BYTES)
		return false;
	if (v->type == RAFT_ENTRY_NOOP && v->len != 0)
		return false;
	return read_bytes(r, v->len, &v->data);
}

/*
 * Like config_decode(): check the whole structure first, then decode the
 * configuration (its own allocation), then allocate and fill the entries'
 * block.
 */
int
raft_decode_message(const uint8_t *buf, size_t len, raft_message *m)
{
	reader		r;
	reader		entries_start;
	raft_message out;
	entry_view	v;
	uint8_t		version;
	uint8_t		reject;
	uint32_t	i;
	size_t		data_bytes = 0;
	const uint8_t *config_bytes = NULL;
	uint32_t	config_len = 0;
	size_t		total;
	uint8_t    *data;
	int			rc;

	if (m == NULL)
		return RAFT_EINVAL;
	memset(m, 0, sizeof(*m));
	if (buf == NULL && len > 0)
		return RAFT_EINVAL;
	memset(&out, 0, sizeof(out));

	r.p = buf;
	r.left = len;
	if (!read_u8(&r, &version))
		return RAFT_EMALFORMED;
	if (version != RAFT_WIRE_VERSION)
		return RAFT_EVERSION;
	if (!read_u8(&r, &out.type) || !read_u8(&r, &out.flags) ||
		!read_u8(&r, &reject) ||
		!read_u64(&r, &out.from) || !read_u64(&r, &out.to) ||
		!read_u64(&r, &out.term) || !read_u64(&r, &out.index) ||
		!read_u64(&r, &out.log_term) || !read_u64(&r, &out.commit) ||
		!read_u64(&r, &out.hint_term) || !read_u64(&r, &out.hint_index) ||
		!read_u64(&r, &out.ctx) || !read_u32(&r, &out.n_entries))
		return RAFT_EMALFORMED;

	if (out.type < RAFT_MSG_APPEND || out.type >= RAFT_MSG_LAST)
		return RAFT_EMALFORMED;
	if (!flags_valid(out.type, out.flags) || reject > 1)
		return RAFT_EMALFORMED;
	out.reject = reject == 1;

	if (out.n_entries > 0)
	{
		if (out.type != RAFT_MSG_APPEND ||
			out.n_entries > RAFT_MAX_MSG_ENTRIES ||
			out.n_entries > r.left / ENTRY_HEADER_SIZE ||
			out.index > UINT64_MAX - out.n_entries)
			return RAFT_EMALFORMED;
	}
	entries_start = r;
	for (i = 0; i < out.n_entries; i++)
	{
		if (!entry_read(&r, &v))
			return RAFT_EMALFORMED;
		/* each len was within the input, so the sum is at most len */
		data_bytes += v.len;
	}

	if (out.type == RAFT_MSG_SNAPSHOT)
	{
		if (!read_u32(&r, &config_len) ||
			!read_bytes(&r, config_len, &config_bytes))
			return RAFT_EMALFORMED;
	}
	if (r.left != 0)
		return RAFT_EMALFORMED;

	if (out.type == RAFT_MSG_SNAPSHOT)
	{
		rc = config_decode(config_bytes, config_len, &out.config);
		if (rc != RAFT_OK)
			return rc;
	}

	if (out.n_entries > 0)
	{
		/* n_entries <= 65536 and data_bytes <= len, but be exact anyway */
		total = (size_t) out.n_entries * sizeof(raft_entry);
		if (data_bytes > SIZE_MAX - total)
		{
			raft_config_free(&out.config);
			return RAFT_ENOMEM;
		}
		total += data_bytes;
		out.entries = raft_malloc(total);
		if (out.entries == NULL)
		{
			raft_config_free(&out.config);
			return RAFT_ENOMEM;
		}
		data = (uint8_t *) (out.entries + out.n_entries);
		r = entries_start;
		for (i = 0; i < out.n_entries; i++)
		{
			raft_entry *e = &out.entries[i];
			bool		ok = entry_read(&r, &v);

			RAFT_ASSERT(ok);
			e->term = v.term;
			e->index = out.index + 1 + i;
			e->type = v.type;
			e->len = v.len;
			e->data = NULL;
			if (v.len > 0)
			{
				memcpy(data, v.data, v.len);
				e->data = data;
				data += v.len;
			}
		}
	}

	*m = out;
	return RAFT_OK;
}

void
raft_message_free(raft_message *m)
{
	if (m == NULL)
		return;
	/* entry data lives in the entries[] block */
	raft_free(m->entries);
	raft_config_free(&m->config);
	memset(m, 0, sizeof(*m));
}
