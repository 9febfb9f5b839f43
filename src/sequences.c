/*-------------------------------------------------------------------------
 *
 * sequences.c
 *	  Sequences of replicated tables (serial and identity columns): no value
 *	  is ever handed out twice, across any number of failovers.
 *
 * Rows travel with their values, so followers never call nextval; what
 * must be replicated is how far the leader may go.  The log holds
 * reservations: a 'Q' record says "values up to R of sequence s are
 * reserved".  On every node, applying it sets the sequence's MAXVALUE to R
 * (the fence: the leader cannot hand out a value the log has not
 * reserved), and on the nodes that did not propose it also moves the
 * sequence to R, so that whoever leads next starts after every value the
 * old leader could have handed out -- including values of transactions
 * that never committed.
 *
 * The apply worker of the leader keeps reservations ahead of use: five
 * times a second, also under load, for each sequence with less than half of
 * raftpg.sequence_reserve values left below its fence, it proposes a new
 * reservation.  A new leader proposes one for every sequence before it
 * opens local writes (RaftpgShmem->seq_ready_term): its sequences stand at
 * the last committed reservation, which may be all used up.
 *
 * replicate_table() reserves the first block of each of the table's
 * sequences in the same log entry as the table, and DDL that adds a serial
 * or identity column to a replicated table that of the new sequence, in
 * the transaction of the DDL (SequencesFenceNew()).  Only ascending sequences
 * are supported.  Gaps of up to one reservation appear after a failover,
 * as they do after a crash with sequence caching.
 *
 * src/sequences.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_sequence.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "raftpg.h"
#include "capture.h"
#include "changes.h"
#include "sequences.h"

int			raftpg_sequence_reserve = 100000;

/* how often the leader looks at how much of its reservations is left */
#define RAFTPG_REFILL_CHECK_MS	200

/*
 * The sequences owned by columns of relid (if valid) or of every replicated
 * table, with their position and fence: schema, name, the last value
 * handed out (or the one before the start), max value, increment, type.
 */
static const char *const seq_query =
"SELECT n.nspname, c.relname, "
"       coalesce(pg_catalog.pg_sequence_last_value(c.oid), q.seqstart - q.seqincrement), "
"       q.seqmax, q.seqincrement, q.seqtypid, c.oid "
"FROM pg_catalog.pg_depend d "
"JOIN pg_catalog.pg_class c ON c.oid = d.objid AND c.relkind = 'S' "
"JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
"JOIN pg_catalog.pg_sequence q ON q.seqrelid = c.oid "
"WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass "
"  AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass "
"  AND d.deptype IN ('a', 'i') AND %s "
"ORDER BY 1, 2";

/*
 * seq_query for the sequences of relid, or of every replicated table: also
 * what a node copying a snapshot asks this one (snapshot.c)
 */
char *
SequencesOwnedQuery(Oid relid)
{
	return psprintf(seq_query,
					OidIsValid(relid) ? psprintf("d.refobjid = %u", relid) :
					"d.refobjid IN (SELECT relid FROM raftpg.replicated)");
}

typedef struct SeqInfo
{
	Oid			oid;
	char	   *nspname;
	char	   *relname;
	int64		last;
	int64		max;
	int64		increment;
	int64		type_max;
} SeqInfo;

/* the largest value of a sequence's type */
static int64
seq_type_max(Oid type)
{
	return type == INT2OID ? PG_INT16_MAX :
		type == INT4OID ? PG_INT32_MAX : PG_INT64_MAX;
}

/*
 * Whether an ascending sequence needs a reservation now.  One whose
 * MAXVALUE is still its type's has no fence yet (one created by DDL since
 * the table was replicated); one with a fence is refilled once less than
 * half a reserve is left below it.
 */
static bool
seq_needs_reservation(int64 last, int64 max, int64 increment, int64 type_max)
{
	return max >= type_max ||
		max - last <= ((int64) raftpg_sequence_reserve / 2) * increment;
}

static List *
owned_sequences(Oid relid)
{
	MemoryContext caller = CurrentMemoryContext;
	char	   *sql = SequencesOwnedQuery(relid);
	List	   *out = NIL;
	uint64		i;

	SPI_connect();
	if (SPI_execute(sql, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "raftpg: could not read the sequences of replicated tables");
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Oid			type;
		MemoryContext old = MemoryContextSwitchTo(caller);
		SeqInfo    *s = palloc(sizeof(SeqInfo));

		s->nspname = pstrdup(SPI_getvalue(tup, desc, 1));
		s->relname = pstrdup(SPI_getvalue(tup, desc, 2));
		s->last = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		s->max = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
		s->increment = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
		type = DatumGetObjectId(SPI_getbinval(tup, desc, 6, &isnull));
		s->oid = DatumGetObjectId(SPI_getbinval(tup, desc, 7, &isnull));
		s->type_max = seq_type_max(type);
		out = lappend(out, s);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return out;
}

/* the reservation after last: one reserve further, within the type */
static int64
next_reservation(const SeqInfo *s, int64 from)
{
	int64		step = (int64) raftpg_sequence_reserve * s->increment;

	if (from > s->type_max - step)
		return s->type_max;
	return from + step;
}

/* a 'Q' record for the given (sequence, reservation) pairs */
static void
put_reservations(StringInfo buf, List *seqs, List *upto)
{
	ListCell   *a;
	ListCell   *b;

	ChangesPutU16(buf, (uint16) list_length(seqs));
	forboth(a, seqs, b, upto)
	{
		SeqInfo    *s = lfirst(a);

		ChangesPutStr(buf, s->nspname);
		ChangesPutStr(buf, s->relname);
		ChangesPutU64(buf, (uint64) *(int64 *) lfirst(b));
	}
}

/* set a sequence's fence (and, if move, its position) to upto */
static void
set_fence(const char *nspname, const char *relname, int64 upto, bool move)
{
	char	   *name = quote_qualified_identifier(nspname, relname);

	SPI_connect();
	if (SPI_execute(psprintf("ALTER SEQUENCE %s MAXVALUE " INT64_FORMAT, name, upto),
					false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "raftpg: could not set the fence of sequence %s", name);
	if (move &&
		SPI_execute(psprintf("SELECT pg_catalog.setval('%s', " INT64_FORMAT ", true)",
							 name, upto), false, 0) != SPI_OK_SELECT)
		elog(ERROR, "raftpg: could not move sequence %s", name);
	SPI_finish();
}

/*
 * replicate_table(): reserve the first block of relid's sequences in the
 * transaction that adds it, and set their fences here.
 */
void
SequencesReplicateTable(Oid relid)
{
	List	   *seqs = owned_sequences(relid);
	List	   *upto = NIL;
	ListCell   *lc;
	StringInfoData rec;

	if (seqs == NIL)
		return;
	foreach(lc, seqs)
	{
		SeqInfo    *s = lfirst(lc);
		int64	   *r = palloc(sizeof(int64));

		if (s->increment <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("sequence \"%s.%s\" of table \"%s\" is descending",
							s->nspname, s->relname, get_rel_name(relid)),
					 errdetail("raftpg replicates ascending sequences only."),
					 errhint("Use ALTER SEQUENCE ... INCREMENT BY with a positive value.")));
		*r = next_reservation(s, s->last);
		upto = lappend(upto, r);
		set_fence(s->nspname, s->relname, *r, false);
	}
	initStringInfo(&rec);
	put_reservations(&rec, seqs, upto);
	CaptureAppendRecord(RAFTPG_REC_RESERVE, rec.data, rec.len);
}

/*
 * DDL on replicated table relid (ddl.c): reserve the first block of its
 * sequences that have no fence yet (MAXVALUE still their type's), in the
 * current transaction, and set their fences here.
 */
void
SequencesFenceNew(Oid relid)
{
	List	   *seqs = owned_sequences(relid);
	List	   *fresh = NIL;
	List	   *upto = NIL;
	ListCell   *lc;
	StringInfoData rec;

	foreach(lc, seqs)
	{
		SeqInfo    *s = lfirst(lc);
		int64	   *r;

		if (s->increment <= 0 || s->max < s->type_max)
			continue;
		r = palloc(sizeof(int64));
		*r = next_reservation(s, s->last);
		if (*r == s->max)
			continue;
		set_fence(s->nspname, s->relname, *r, false);
		fresh = lappend(fresh, s);
		upto = lappend(upto, r);
	}
	if (fresh == NIL)
		return;
	CommandCounterIncrement();
	initStringInfo(&rec);
	put_reservations(&rec, fresh, upto);
	CaptureAppendRecord(RAFTPG_REC_RESERVE, rec.data, rec.len);
}

/* apply a 'Q' record */
void
SequencesApply(RaftpgReader *r, bool origin_here)
{
	uint16		n = ChangesGetU16(r);
	int			i;

	for (i = 0; i < n; i++)
	{
		char	   *nspname = ChangesGetStr(r);
		char	   *relname = ChangesGetStr(r);
		int64		upto = (int64) ChangesGetU64(r);
		Oid			seqid;

		seqid = RangeVarGetRelid(makeRangeVar(nspname, relname, -1), RowExclusiveLock, true);
		if (!OidIsValid(seqid))
			continue;			/* dropped since */
		set_fence(nspname, relname, upto, !origin_here);
	}
}

/*
 * The sequences the leader's refill check looks at five times a second:
 * their oids, from owned_sequences()'s catalog query, which costs the
 * apply worker most of a millisecond each time -- in the way of the
 * commits that need the CPU then.  The list holds until a relation cache
 * invalidation: every change to which sequences belong to replicated
 * tables (replicate_table(), unreplicate_table(), DDL) sends one, and so
 * does every fence set by ALTER SEQUENCE.
 */
static Oid *refill_oids = NULL;
static int	n_refill_oids = 0;
static bool refill_oids_valid = false;

static void
refill_oids_inval(Datum arg, Oid relid)
{
	refill_oids_valid = false;
}

static void
refill_oids_remember(List *seqs)
{
	ListCell   *lc;

	if (refill_oids)
		pfree(refill_oids);
	refill_oids = MemoryContextAlloc(TopMemoryContext,
									 sizeof(Oid) * Max(1, list_length(seqs)));
	n_refill_oids = 0;
	foreach(lc, seqs)
		refill_oids[n_refill_oids++] = ((SeqInfo *) lfirst(lc))->oid;
	refill_oids_valid = true;
}

/*
 * Whether a sequence of the remembered list may need a reservation, by the
 * rule of propose_reservations(), read from the syscache and the sequence
 * itself: no query.  True as well when the list is not known.
 */
static bool
refill_may_be_needed(void)
{
	int			i;

	if (!refill_oids_valid)
		return true;
	for (i = 0; i < n_refill_oids; i++)
	{
		HeapTuple	tup;
		Form_pg_sequence seq;
		int64		last;
		LOCAL_FCINFO(fcinfo, 1);

		tup = SearchSysCache1(SEQRELID, ObjectIdGetDatum(refill_oids[i]));
		if (!HeapTupleIsValid(tup))
			return true;		/* dropped: the query will tell */
		seq = (Form_pg_sequence) GETSTRUCT(tup);
		if (seq->seqincrement <= 0)
		{
			ReleaseSysCache(tup);
			continue;
		}
		InitFunctionCallInfoData(*fcinfo, NULL, 1, InvalidOid, NULL, NULL);
		fcinfo->args[0].value = ObjectIdGetDatum(refill_oids[i]);
		fcinfo->args[0].isnull = false;
		last = DatumGetInt64(pg_sequence_last_value(fcinfo));
		if (fcinfo->isnull)
			last = seq->seqstart - seq->seqincrement;
		if (seq_needs_reservation(last, seq->seqmax, seq->seqincrement,
								  seq_type_max(seq->seqtypid)))
		{
			ReleaseSysCache(tup);
			return true;
		}
		ReleaseSysCache(tup);
	}
	return false;
}

/*
 * Build and propose a reservation for the sequences that need one (all of
 * them when all is true); *index is its entry, 0 if none was needed.
 * Returns false if the node worker refused it (not the leader of term any
 * more).  Runs in the apply worker on the leader, in a transaction; term is
 * the term the reservation must be made in.
 */
static bool
propose_reservations(bool all, uint64 term, uint64 *index)
{
	List	   *seqs;
	List	   *need = NIL;
	List	   *upto = NIL;
	ListCell   *lc;
	StringInfoData rec;
	StringInfoData chunk;
	StringInfoData body;
	RaftpgChunkHeader h;
	RaftpgRequest req;
	RaftpgReply reply;
	uint32		n = 1;
	uint32		clen;

	seqs = owned_sequences(InvalidOid);
	refill_oids_remember(seqs);
	foreach(lc, seqs)
	{
		SeqInfo    *s = lfirst(lc);
		int64	   *r;
		bool		unfenced;

		if (s->increment <= 0)
			continue;

		/*
		 * An unfenced sequence is reserved from where it is, one with a
		 * fence from the fence on: a fence never moves down, the other
		 * nodes' sequences stand at it.
		 */
		if (!all && !seq_needs_reservation(s->last, s->max, s->increment,
										   s->type_max))
			continue;
		unfenced = s->max >= s->type_max;
		r = palloc(sizeof(int64));
		*r = next_reservation(s, unfenced ? s->last : Max(s->last, s->max));
		if (*r == s->max)
			continue;			/* at the end of its type: nothing to move */
		need = lappend(need, s);
		upto = lappend(upto, r);
	}
	*index = 0;
	if (need == NIL)
		return true;

	initStringInfo(&rec);
	put_reservations(&rec, need, upto);
	initStringInfo(&chunk);
	h.flags = RAFTPG_CHUNK_FIRST | RAFTPG_CHUNK_LAST;
	h.origin_node = RaftpgReadStatus().node_id;
	h.origin_incarnation = RaftpgShmem->incarnation;
	h.origin_fxid = 0;			/* no transaction commits it locally */
	h.origin_term = term;
	h.chunk_no = 0;
	ChangesPutHeader(&chunk, &h);
	ChangesPutU8(&chunk, RAFTPG_REC_RESERVE);
	ChangesPutU32(&chunk, (uint32) rec.len);
	appendBinaryStringInfo(&chunk, rec.data, rec.len);

	initStringInfo(&body);
	appendBinaryStringInfo(&body, (char *) &n, sizeof(n));
	clen = (uint32) chunk.len;
	appendBinaryStringInfo(&body, (char *) &clen, sizeof(clen));
	appendBinaryStringInfo(&body, chunk.data, chunk.len);

	memset(&req, 0, sizeof(req));
	req.kind = RAFTPG_REQ_PROPOSE_TXN;
	req.id = term;
	/* no transaction commits it: the slot is claimed with no xid */
	CaptureSetSlot(RAFTPG_SLOT_PROPOSING, InvalidTransactionId);
	PG_TRY();
	{
		reply = RaftpgSubmit(&req, body.data, body.len);
	}
	PG_FINALLY();
	{
		CaptureSetSlot(RAFTPG_SLOT_IDLE, InvalidTransactionId);
	}
	PG_END_TRY();
	if (reply.rc != RAFT_OK)
		return false;
	*index = reply.index;
	return true;
}

/*
 * The apply worker's part, called after each pass: the new leader's
 * takeover reservation, and refills.  applied is what apply has committed.
 */
void
SequencesTick(uint64 applied)
{
	static uint64 takeover_term = 0;	/* term of the pending takeover */
	static uint64 takeover_index = 0;
	static TimestampTz next_refill = 0;
	static bool inval_registered = false;
	RaftpgNodeStatus st;
	uint64		ready_term;
	uint64		gate_index;
	uint64		seq_ready;
	TimestampTz now = GetCurrentTimestamp();
	uint64		refill_index;
	bool		ok;

	LWLockAcquire(&RaftpgShmem->lock, LW_SHARED);
	st = RaftpgShmem->status;
	ready_term = RaftpgShmem->ready_term;
	gate_index = RaftpgShmem->gate_index;
	seq_ready = RaftpgShmem->seq_ready_term;
	LWLockRelease(&RaftpgShmem->lock);

	if (st.role != RAFTPG_ROLE_LEADER || ready_term != st.term)
	{
		takeover_term = 0;
		takeover_index = 0;
		return;
	}

	if (seq_ready != st.term)
	{
		/* a new leader: reserve a fresh block of everything, then open */
		if (takeover_term != st.term)
		{
			if (applied < gate_index)
				return;			/* the log is not applied yet */
			SetCurrentStatementStartTimestamp();
			StartTransactionCommand();
			PushActiveSnapshot(GetTransactionSnapshot());
			ok = propose_reservations(true, st.term, &takeover_index);
			PopActiveSnapshot();
			CommitTransactionCommand();
			if (!ok)
				return;			/* no longer the leader of st.term */
			takeover_term = st.term;
		}
		if (applied >= takeover_index)
		{
			LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
			if (RaftpgShmem->status.term == takeover_term)
				RaftpgShmem->seq_ready_term = takeover_term;
			LWLockRelease(&RaftpgShmem->lock);
			ConditionVariableBroadcast(&RaftpgShmem->cv);
			next_refill = now;
		}
		return;
	}

	if (now < next_refill)
		return;
	next_refill = TimestampTzPlusMilliseconds(now, RAFTPG_REFILL_CHECK_MS);
	if (!inval_registered)
	{
		CacheRegisterRelcacheCallback(refill_oids_inval, (Datum) 0);
		inval_registered = true;
	}
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (refill_may_be_needed())
		(void) propose_reservations(false, st.term, &refill_index);
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/*
 * unreplicate_table(): the sequences of relid lose their fence (it stays
 * where it is on the other nodes until they apply the unreplicate).
 */
void
SequencesUnreplicate(Oid relid)
{
	List	   *seqs = owned_sequences(relid);
	ListCell   *lc;

	foreach(lc, seqs)
	{
		SeqInfo    *s = lfirst(lc);
		char	   *name = quote_qualified_identifier(s->nspname, s->relname);

		SPI_connect();
		if (SPI_execute(psprintf("ALTER SEQUENCE %s NO MAXVALUE", name), false, 0) != SPI_OK_UTILITY)
			elog(ERROR, "raftpg: could not lift the fence of sequence %s", name);
		SPI_finish();
	}
}

/*
 * Snapshot install (snapshot.c): the sequence stands at its fence upto on
 * the snapshot's source; set it here and move it there, as applying the
 * reservation would on a node that did not propose it.
 */
void
SequencesSnapshotFence(const char *nspname, const char *relname, int64 upto)
{
	if (!OidIsValid(RangeVarGetRelid(makeRangeVar(pstrdup(nspname), pstrdup(relname), -1),
									 RowExclusiveLock, true)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("sequence \"%s.%s\" of the snapshot's source does not exist here",
						nspname, relname)));
	set_fence(nspname, relname, upto, true);
}
