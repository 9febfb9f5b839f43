/*-------------------------------------------------------------------------
 *
 * changes.c
 *	  Writing and reading the change stream of replicated transactions
 *	  (the format is described in changes.h).
 *
 * Only primitives live here: integers, strings, records and column values.
 * What a record means is capture.c's and apply.c's business; this file
 * guarantees that whatever one writes the other reads back byte for byte,
 * and that a damaged payload is an error, never a read out of bounds.
 *
 * src/changes.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "port/pg_bswap.h"
#include "miscadmin.h"
#include "utils/float.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "raftpg.h"
#include "changes.h"

/* ----------
 * Writing
 * ----------
 */
void
ChangesEnterTextSettings(RaftpgTextSettings *saved)
{
	saved->date_style = DateStyle;
	saved->date_order = DateOrder;
	saved->interval_style = IntervalStyle;
	saved->float_digits = extra_float_digits;
	DateStyle = USE_ISO_DATES;
	DateOrder = DATEORDER_MDY;
	IntervalStyle = INTSTYLE_POSTGRES;
	extra_float_digits = 3;
}

void
ChangesLeaveTextSettings(const RaftpgTextSettings *saved)
{
	DateStyle = saved->date_style;
	DateOrder = saved->date_order;
	IntervalStyle = saved->interval_style;
	extra_float_digits = saved->float_digits;
}

void
ChangesPutU8(StringInfo buf, uint8 v)
{
	appendStringInfoCharMacro(buf, (char) v);
}

void
ChangesPutU16(StringInfo buf, uint16 v)
{
	uint16		be = pg_hton16(v);

	appendBinaryStringInfo(buf, (char *) &be, sizeof(be));
}

void
ChangesPutU32(StringInfo buf, uint32 v)
{
	uint32		be = pg_hton32(v);

	appendBinaryStringInfo(buf, (char *) &be, sizeof(be));
}

void
ChangesPutU64(StringInfo buf, uint64 v)
{
	uint64		be = pg_hton64(v);

	appendBinaryStringInfo(buf, (char *) &be, sizeof(be));
}

void
ChangesPutStr(StringInfo buf, const char *s)
{
	size_t		len = strlen(s);

	if (len > PG_UINT16_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("name too long for raftpg: \"%.64s...\"", s)));
	ChangesPutU16(buf, (uint16) len);
	appendBinaryStringInfo(buf, s, (int) len);
}

void
ChangesPutHeader(StringInfo buf, const RaftpgChunkHeader *h)
{
	ChangesPutU8(buf, RAFTPG_PAYLOAD_TXN);
	ChangesPutU8(buf, RAFTPG_CHANGES_VERSION);
	ChangesPutU16(buf, h->flags);
	ChangesPutU64(buf, h->origin_node);
	ChangesPutU64(buf, h->origin_incarnation);
	ChangesPutU64(buf, h->origin_fxid);
	ChangesPutU64(buf, h->origin_term);
	ChangesPutU32(buf, h->chunk_no);
}

/* start a record; returns where it starts, for ChangesEndRecord */
int
ChangesBeginRecord(StringInfo buf, char tag)
{
	int			start = buf->len;

	ChangesPutU8(buf, (uint8) tag);
	ChangesPutU32(buf, 0);		/* the length, filled in at the end */
	return start;
}

void
ChangesEndRecord(StringInfo buf, int start)
{
	uint32		be = pg_hton32((uint32) (buf->len - start - RAFTPG_REC_HEADER));

	memcpy(buf->data + start + 1, &be, sizeof(be));
}

/*
 * How values of a column of this type travel.  Built-in fixed-width types
 * go raw; built-in text and bytea as their bytes (every member shares the
 * server encoding, checked when a table is replicated); a few built-in
 * types whose binary format is compact and free of encoding conversion go
 * through send/receive; everything else as text, whose output is in the
 * server encoding and so independent of any client_encoding.
 */
RaftpgValueMethod
ChangesMethodForType(Oid typid)
{
	switch (typid)
	{
		case BOOLOID:
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case OIDOID:
		case FLOAT4OID:
		case FLOAT8OID:
		case DATEOID:
		case TIMEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			return RAFTPG_VALUE_RAW;
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
		case BYTEAOID:
			return RAFTPG_VALUE_VARLENA;
		case NUMERICOID:
		case UUIDOID:
		case INTERVALOID:
		case TIMETZOID:
		case CASHOID:			/* its text depends on lc_monetary */
			return RAFTPG_VALUE_BINARY;
		default:
			return RAFTPG_VALUE_TEXT;
	}
}

/* width of a raw value of a built-in type, 0 if it has no raw form */
static int
raw_width(Oid typid)
{
	switch (typid)
	{
		case BOOLOID:
			return 1;
		case INT2OID:
			return 2;
		case INT4OID:
		case OIDOID:
		case FLOAT4OID:
		case DATEOID:
			return 4;
		case INT8OID:
		case FLOAT8OID:
		case TIMEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			return 8;
		default:
			return 0;
	}
}

/*
 * Append one value.  fn is the type's output function for
 * RAFTPG_VALUE_TEXT, its send function for RAFTPG_VALUE_BINARY, unused
 * otherwise.
 */
void
ChangesPutValue(StringInfo buf, RaftpgValueMethod method, Oid typid,
				FmgrInfo *fn, Datum value, bool isnull)
{
	if (isnull)
	{
		ChangesPutU8(buf, 'n');
		return;
	}
	switch (method)
	{
		case RAFTPG_VALUE_RAW:
			{
				int			width = raw_width(typid);

				ChangesPutU8(buf, 'r');
				ChangesPutU8(buf, (uint8) width);
				switch (typid)
				{
					case BOOLOID:
						ChangesPutU8(buf, DatumGetBool(value) ? 1 : 0);
						break;
					case INT2OID:
						ChangesPutU16(buf, (uint16) DatumGetInt16(value));
						break;
					case INT4OID:
					case DATEOID:
						ChangesPutU32(buf, (uint32) DatumGetInt32(value));
						break;
					case OIDOID:
						ChangesPutU32(buf, DatumGetObjectId(value));
						break;
					case FLOAT4OID:
						{
							float4		f = DatumGetFloat4(value);
							uint32		bits;

							memcpy(&bits, &f, sizeof(bits));
							ChangesPutU32(buf, bits);
							break;
						}
					case FLOAT8OID:
						{
							float8		f = DatumGetFloat8(value);
							uint64		bits;

							memcpy(&bits, &f, sizeof(bits));
							ChangesPutU64(buf, bits);
							break;
						}
					default:	/* int8, time, timestamp, timestamptz */
						ChangesPutU64(buf, (uint64) DatumGetInt64(value));
						break;
				}
				break;
			}
		case RAFTPG_VALUE_VARLENA:
			{
				struct varlena *v = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(value));

				ChangesPutU8(buf, 'v');
				ChangesPutU32(buf, VARSIZE_ANY_EXHDR(v));
				appendBinaryStringInfo(buf, VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v));
				if ((Pointer) v != DatumGetPointer(value))
					pfree(v);
				break;
			}
		case RAFTPG_VALUE_BINARY:
			{
				bytea	   *b = SendFunctionCall(fn, value);

				ChangesPutU8(buf, 'b');
				ChangesPutU32(buf, VARSIZE(b) - VARHDRSZ);
				appendBinaryStringInfo(buf, VARDATA(b), VARSIZE(b) - VARHDRSZ);
				pfree(b);
				break;
			}
		case RAFTPG_VALUE_TEXT:
			{
				char	   *s = OutputFunctionCall(fn, value);
				size_t		len = strlen(s);

				ChangesPutU8(buf, 't');
				ChangesPutU32(buf, (uint32) len);
				appendBinaryStringInfo(buf, s, (int) len);
				pfree(s);
				break;
			}
	}
}

/* ----------
 * Reading
 * ----------
 */
static void
malformed(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("raftpg: malformed change record: %s", what)));
}

void
ChangesReaderInit(RaftpgReader *r, const char *data, uint32 len)
{
	r->data = data;
	r->len = len;
	r->pos = 0;
}

bool
ChangesAtEnd(const RaftpgReader *r)
{
	return r->pos >= r->len;
}

const char *
ChangesGetBytes(RaftpgReader *r, uint32 n)
{
	const char *p;

	if (r->len - r->pos < n)
		malformed("truncated");
	p = r->data + r->pos;
	r->pos += n;
	return p;
}

uint8
ChangesGetU8(RaftpgReader *r)
{
	return (uint8) *ChangesGetBytes(r, 1);
}

uint16
ChangesGetU16(RaftpgReader *r)
{
	uint16		v;

	memcpy(&v, ChangesGetBytes(r, sizeof(v)), sizeof(v));
	return pg_ntoh16(v);
}

uint32
ChangesGetU32(RaftpgReader *r)
{
	uint32		v;

	memcpy(&v, ChangesGetBytes(r, sizeof(v)), sizeof(v));
	return pg_ntoh32(v);
}

uint64
ChangesGetU64(RaftpgReader *r)
{
	uint64		v;

	memcpy(&v, ChangesGetBytes(r, sizeof(v)), sizeof(v));
	return pg_ntoh64(v);
}

/* a palloc'd, terminated copy of a string */
char *
ChangesGetStr(RaftpgReader *r)
{
	uint16		len = ChangesGetU16(r);
	const char *p = ChangesGetBytes(r, len);

	if (memchr(p, '\0', len) != NULL)
		malformed("string with an embedded zero byte");
	return pnstrdup(p, len);
}

/*
 * The next record: returns its tag and points body at it.  The record must
 * lie wholly inside the reader.
 */
char
ChangesGetRecord(RaftpgReader *r, RaftpgReader *body)
{
	char		tag = (char) ChangesGetU8(r);
	uint32		len = ChangesGetU32(r);

	ChangesReaderInit(body, ChangesGetBytes(r, len), len);
	return tag;
}

/*
 * Parse a chunk header.  Returns false when the payload is not a chunk of
 * a transaction (another kind of entry); a chunk of an unknown version is
 * an error, since skipping it would lose changes.
 */
bool
ChangesGetHeader(const char *payload, uint32 len, RaftpgChunkHeader *h)
{
	RaftpgReader r;
	uint8		version;

	if (len == 0 || (uint8) payload[0] != RAFTPG_PAYLOAD_TXN)
		return false;
	if (len < RAFTPG_CHUNK_HEADER)
		malformed("short chunk header");
	ChangesReaderInit(&r, payload, len);
	(void) ChangesGetU8(&r);
	version = ChangesGetU8(&r);
	if (version != RAFTPG_CHANGES_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("raftpg: log entry written in change format %u, this server reads format %u",
						version, RAFTPG_CHANGES_VERSION),
				 errhint("Upgrade raftpg on this server to the version of the other members.")));
	h->flags = ChangesGetU16(&r);
	h->origin_node = ChangesGetU64(&r);
	h->origin_incarnation = ChangesGetU64(&r);
	h->origin_fxid = ChangesGetU64(&r);
	h->origin_term = ChangesGetU64(&r);
	h->chunk_no = ChangesGetU32(&r);
	Assert(r.pos == RAFTPG_CHUNK_HEADER);
	return true;
}

/*
 * Read one value for a local column of type typid (typmod, typioparam):
 * in is its input function, recv its receive function (may be NULL when
 * the type has none; a binary value then is an error).
 */
Datum
ChangesGetValue(RaftpgReader *r, Oid typid, int32 typmod, Oid typioparam,
				FmgrInfo *in, FmgrInfo *recv, bool *isnull)
{
	char		tag = (char) ChangesGetU8(r);

	*isnull = false;
	switch (tag)
	{
		case 'n':
			*isnull = true;
			return (Datum) 0;
		case 'r':
			{
				int			width = ChangesGetU8(r);

				if (width != raw_width(typid) || width == 0)
					malformed("raw value of the wrong width for its column");
				switch (typid)
				{
					case BOOLOID:
						return BoolGetDatum(ChangesGetU8(r) != 0);
					case INT2OID:
						return Int16GetDatum((int16) ChangesGetU16(r));
					case INT4OID:
					case DATEOID:
						return Int32GetDatum((int32) ChangesGetU32(r));
					case OIDOID:
						return ObjectIdGetDatum(ChangesGetU32(r));
					case FLOAT4OID:
						{
							uint32		bits = ChangesGetU32(r);
							float4		f;

							memcpy(&f, &bits, sizeof(f));
							return Float4GetDatum(f);
						}
					case FLOAT8OID:
						{
							uint64		bits = ChangesGetU64(r);
							float8		f;

							memcpy(&f, &bits, sizeof(f));
							return Float8GetDatum(f);
						}
					default:
						return Int64GetDatum((int64) ChangesGetU64(r));
				}
			}
		case 'v':
			{
				uint32		len = ChangesGetU32(r);
				const char *p = ChangesGetBytes(r, len);
				struct varlena *v;

				if (ChangesMethodForType(typid) != RAFTPG_VALUE_VARLENA)
					malformed("raw text value for a column of another type");
				if (len > MaxAllocSize - VARHDRSZ)
					malformed("value too long");
				v = palloc(len + VARHDRSZ);
				SET_VARSIZE(v, len + VARHDRSZ);
				memcpy(VARDATA(v), p, len);
				return PointerGetDatum(v);
			}
		case 'b':
			{
				uint32		len = ChangesGetU32(r);
				const char *p = ChangesGetBytes(r, len);
				StringInfoData sbuf;
				Datum		d;

				if (recv == NULL)
					malformed("binary value for a type without a receive function");
				initStringInfo(&sbuf);
				appendBinaryStringInfo(&sbuf, p, (int) len);
				d = ReceiveFunctionCall(recv, &sbuf, typioparam, typmod);
				if (sbuf.cursor != sbuf.len)
					malformed("binary value longer than its type reads");
				pfree(sbuf.data);
				return d;
			}
		case 't':
			{
				uint32		len = ChangesGetU32(r);
				const char *p = ChangesGetBytes(r, len);
				char	   *s;

				if (memchr(p, '\0', len) != NULL)
					malformed("text value with an embedded zero byte");
				s = pnstrdup(p, len);
				return InputFunctionCall(in, s, typioparam, typmod);
			}
		default:
			malformed("unknown value tag");
	}
	return (Datum) 0;			/* keep the compiler quiet */
}
