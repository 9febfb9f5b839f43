/*-------------------------------------------------------------------------
 *
 * changes.h
 *	  The encoding of a transaction's changes to replicated tables: what
 *	  capture.c writes into log entries and apply.c reads back.
 *
 * A transaction that wrote replicated tables becomes one or more
 * contiguous log entries of one term ("chunks").  Each chunk's payload is a
 * fixed header followed by a slice of one byte stream; a record of the
 * stream may straddle two chunks.  All integers are big-endian.
 *
 *	chunk header (RAFTPG_CHUNK_HEADER bytes):
 *	  u8  kind = RAFTPG_PAYLOAD_TXN
 *	  u8  version = RAFTPG_CHANGES_VERSION
 *	  u16 flags (RAFTPG_CHUNK_FIRST, RAFTPG_CHUNK_LAST)
 *	  u64 origin node id, u64 origin incarnation, u64 origin full
 *	  transaction id, u64 origin term
 *	  u32 chunk number (0 for the first)
 *
 *	stream: records, each u8 tag, u32 body length, body:
 *	  'R' relation	u16 relref, str schema, str table, u16 natts,
 *					natts x (str column, str type, u32 builtin type oid or 0),
 *					u16 nkeys, nkeys x u16 position in the column list
 *	  'I' insert	u16 relref, tuple
 *	  'U' update	u16 relref, u8 key changed, [key], tuple
 *	  'D' delete	u16 relref, key
 *	  'T' truncate	u16 n, n x u16 relref
 *	  'A' add table	str schema, str table, u16 n, n x text statement
 *	  'X' unreplicate str schema, str table
 *	  'S' ddl		str search_path, text statement,
 *					u16 n, n x (str setting, str value)
 *	  'Q' reserve	u16 n, n x (str schema, str sequence, u64 reserved up to)
 *
 *	  str: u16 length, bytes (no terminator)
 *	  text: u32 length, bytes (no terminator)
 *	  tuple: u16 n, n values (the 'R' record's columns, in its order)
 *	  key: u16 n, n values (the primary key columns, in key order)
 *	  value: 'n' (null)
 *			 'r' u8 width, width bytes: a fixed-width built-in type
 *			 'v' u32 length, bytes: a built-in text or bytea value
 *			 'b' u32 length, bytes: the type's binary send format
 *			 't' u32 length, bytes: the type's text output
 *
 * Values travel by column name and type name, never by OID: the servers
 * are independent and their OIDs differ.  Only built-in types (whose OIDs
 * are fixed by PostgreSQL) use the raw encodings 'r' and 'v'.
 *
 * Decoding checks every length against what remains and fails with
 * ERRCODE_DATA_CORRUPTED rather than read past the end: a payload comes
 * from the log, which came from the network.
 *
 * src/changes.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef RAFTPG_CHANGES_H
#define RAFTPG_CHANGES_H

#include "lib/stringinfo.h"

#define RAFTPG_CHANGES_VERSION	2
#define RAFTPG_CHUNK_HEADER		40

#define RAFTPG_CHUNK_FIRST		0x0001
#define RAFTPG_CHUNK_LAST		0x0002

#define RAFTPG_REC_RELATION		'R'
#define RAFTPG_REC_INSERT		'I'
#define RAFTPG_REC_UPDATE		'U'
#define RAFTPG_REC_DELETE		'D'
#define RAFTPG_REC_TRUNCATE		'T'
#define RAFTPG_REC_ADD_TABLE	'A'
#define RAFTPG_REC_UNREPLICATE	'X'
#define RAFTPG_REC_DDL			'S'
#define RAFTPG_REC_RESERVE		'Q'

/* bytes before a record's body: tag and length */
#define RAFTPG_REC_HEADER		5

typedef struct RaftpgChunkHeader
{
	uint16		flags;
	uint64		origin_node;
	uint64		origin_incarnation; /* RaftpgShmem->incarnation there */
	uint64		origin_fxid;
	uint64		origin_term;
	uint32		chunk_no;
} RaftpgChunkHeader;

/* how one column's values are encoded (the value tags above) */
typedef enum RaftpgValueMethod
{
	RAFTPG_VALUE_RAW = 'r',
	RAFTPG_VALUE_VARLENA = 'v',
	RAFTPG_VALUE_BINARY = 'b',
	RAFTPG_VALUE_TEXT = 't'
} RaftpgValueMethod;

/* A reader over a byte range; every get checks what remains. */
typedef struct RaftpgReader
{
	const char *data;
	uint32		len;
	uint32		pos;
} RaftpgReader;

/*
 * Session settings that change the text output of some types, saved while
 * values are written under fixed ones (DateStyle ISO, IntervalStyle
 * postgres, extra_float_digits 3): what the apply worker reads with.
 */
typedef struct RaftpgTextSettings
{
	int			date_style;
	int			date_order;
	int			interval_style;
	int			float_digits;
} RaftpgTextSettings;

extern void ChangesEnterTextSettings(RaftpgTextSettings *saved);
extern void ChangesLeaveTextSettings(const RaftpgTextSettings *saved);

/* writing */
extern void ChangesPutHeader(StringInfo buf, const RaftpgChunkHeader *h);
extern void ChangesPutU8(StringInfo buf, uint8 v);
extern void ChangesPutU16(StringInfo buf, uint16 v);
extern void ChangesPutU32(StringInfo buf, uint32 v);
extern void ChangesPutU64(StringInfo buf, uint64 v);
extern void ChangesPutStr(StringInfo buf, const char *s);
extern int	ChangesBeginRecord(StringInfo buf, char tag);
extern void ChangesEndRecord(StringInfo buf, int start);
extern RaftpgValueMethod ChangesMethodForType(Oid typid);
extern void ChangesPutValue(StringInfo buf, RaftpgValueMethod method,
							Oid typid, FmgrInfo *fn, Datum value, bool isnull);

/* reading */
extern bool ChangesGetHeader(const char *payload, uint32 len,
							 RaftpgChunkHeader *h);
extern void ChangesReaderInit(RaftpgReader *r, const char *data, uint32 len);
extern bool ChangesAtEnd(const RaftpgReader *r);
extern uint8 ChangesGetU8(RaftpgReader *r);
extern uint16 ChangesGetU16(RaftpgReader *r);
extern uint32 ChangesGetU32(RaftpgReader *r);
extern uint64 ChangesGetU64(RaftpgReader *r);
extern char *ChangesGetStr(RaftpgReader *r);
extern const char *ChangesGetBytes(RaftpgReader *r, uint32 n);
extern char ChangesGetRecord(RaftpgReader *r, RaftpgReader *body);
extern Datum ChangesGetValue(RaftpgReader *r, Oid typid, int32 typmod,
							 Oid typioparam, FmgrInfo *in, FmgrInfo *recv,
							 bool *isnull);

#endif							/* RAFTPG_CHANGES_H */
