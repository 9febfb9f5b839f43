/*-------------------------------------------------------------------------
 *
 * capture.c
 *	  Row changes of replicated tables on the leader, and the commit
 *	  protocol that puts them through Raft before the local commit.
 *
 * replicate_table() installs three triggers on a table: a BEFORE STATEMENT
 * guard (enabled ALWAYS), an AFTER ROW capture trigger and an AFTER
 * STATEMENT TRUNCATE capture trigger (both fire on origin only, so they are
 * silent in the apply worker, which runs as a replica).  Triggers see every
 * source of changes: plain DML, COPY FROM, INSERT ... ON CONFLICT, writable
 * CTEs, cascaded foreign key actions and user triggers, and they see the
 * final row, after BEFORE triggers and constraints.
 *
 * The guard refuses a write at once unless this node is the leader with
 * its write gate open (see below), and refuses SERIALIZABLE transactions.
 *
 * The capture trigger encodes each change (changes.h) into the
 * transaction's capture state, which lives in a child of
 * TopTransactionContext and is created by the first change: a transaction
 * that touches no replicated table pays one pointer test in each callback.
 * Each record is tagged with the command id that made it; nested queries
 * (user triggers that write) fire their AFTER events before the rest of
 * the outer query's, and a stable sort by command id at pre-commit restores
 * the order in which the changes were made.  A savepoint rolled back
 * truncates the stream to where the savepoint began.
 *
 * At XACT_EVENT_PRE_COMMIT, after deferred triggers and constraints ran,
 * the stream is cut into chunks of at most raftpg.max_entry_size, handed to
 * the node worker in one request (so they become contiguous entries of one
 * term, proposed only if that is still the term the write gate was opened
 * in), the transaction's name -- the server's incarnation and its full
 * xid, which every chunk's header carries too -- is inserted into the
 * current origin table (raftpg.origin_commits_0 or _1) while the worker
 * proposes, and the backend waits until a majority has the entries.  Then
 * PostgreSQL commits, and the origin row with it: the apply worker skips
 * the entries of transactions that committed (by the commit log, or after
 * a crash by their rows) and applies the others, so an entry is applied
 * exactly once whichever way the local transaction ends.
 *
 * The hand-off goes through the backend's commit slot (raftpg.h): the
 * node worker proposes only if it can claim the slot, so a backend that
 * stops waiting for the worker ends with a definite error, never with a
 * proposal nobody waits for.  The backend waits on its own latch, which
 * the node worker sets when the entry commits or the term moves.  A
 * transaction that wrote nothing but replicated tables (see the executor
 * and utility hooks below) then commits locally without waiting for its
 * WAL flush: the log is durable, and a lost local commit loses its
 * origin row too, so apply redoes it.
 *
 * Where the outcome cannot be known (the term changed, cancel,
 * raftpg.commit_timeout, termination, an error after the proposal), the
 * transaction fails with SQLSTATE 08007; if the entry commits after all,
 * the apply worker applies it.  (statement_timeout does not cover a commit,
 * in PostgreSQL as here.)  An error after the cluster committed is
 * rewritten to 08007 by emit_log_hook.  Nothing reports failure for a
 * write that happened, or success for one that did not.
 *
 * The write gate.  Once a transaction with a proposed entry aborts, its row
 * locks are gone and other transactions could build on rows the entry
 * changed before anyone knows whether it commits.  So every abort after a
 * proposal raises RaftpgShmem->gate_index to the entry, and local writes
 * wait until the apply worker has applied up to there; the commit slots
 * close the window between the abort's end in the process array and its
 * callback.  A new leader's gate starts at its first own entry (node.c),
 * and opens once its sequences are reserved (sequences.c): its tables must
 * reflect the whole log before local transactions build on them.
 *
 * src/capture.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "commands/defrem.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "parser/parsetree.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "tcop/utility.h"
#include "storage/dsm.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"

#include "raftpg.h"
#include "capture.h"
#include "changes.h"
#include "storage.h"

int			raftpg_max_entry_size = 1024 * 1024;

/* ----------
 * The layout of a replicated relation, as this backend encodes it
 * ----------
 */
typedef struct CaptureColumn
{
	AttrNumber	attnum;
	Oid			typid;
	RaftpgValueMethod method;
	FmgrInfo	fn;				/* output or send function, if needed */
} CaptureColumn;

typedef struct CaptureRel
{
	Oid			relid;			/* hash key */
	bool		valid;
	uint32		generation;		/* bumped on every rebuild */
	int			ncols;
	CaptureColumn *cols;
	int			nkeys;
	int		   *keypos;			/* positions in cols of the key columns */
	int			natts;			/* of the tuple descriptor */
	bool		has_text;		/* a column goes as text output */
	char	   *relrec;			/* body of the 'R' record after relref */
	int			relrec_len;
} CaptureRel;

static HTAB *capture_rels = NULL;
static MemoryContext capture_cache_cxt = NULL;
static uint32 capture_generation = 0;

/* ----------
 * The capture state of the current transaction
 * ----------
 */
typedef struct CaptureRef
{
	Oid			relid;
	uint32		generation;
	uint16		relref;
} CaptureRef;

typedef struct CaptureSavepoint
{
	SubTransactionId subid;
	int			stream_len;
	int			nrecords;
} CaptureSavepoint;

typedef struct Capture
{
	MemoryContext cxt;
	uint64		term;			/* the term the guard opened the gate in */
	StringInfoData rels;		/* 'R' records */
	StringInfoData stream;		/* change records */
	uint32	   *cids;			/* command id of each record */
	int			nrecords;
	int			maxrecords;
	bool		sorted;			/* cids never decreased */
	int			last_truncate;	/* offset of a trailing 'T' record, or -1 */
	CommandId	last_truncate_cid;
	CaptureRef *refs;
	int			nrefs;
	int			maxrefs;
	CaptureSavepoint *saves;
	int			nsaves;
	int			maxsaves;
	uint64		proposed_index; /* last chunk's index once proposed */
	uint64		proposed_term;
} Capture;

static Capture *cap = NULL;

/* this session's last replicated commit, for raftpg.last_write_index() */
static uint64 last_write_index = 0;

/* the cluster committed this transaction's entry (until it ends here) */
static uint64 committed_index = 0;

/*
 * Did this transaction write anything but replicated tables (a local
 * table through the executor, or any utility statement)?  If not, its
 * local commit need not wait for its WAL flush: see capture_pre_commit().
 */
static bool local_writes = false;
static int	saved_synchronous_commit = -1;
static ExecutorStart_hook_type prev_executor_start = NULL;
static ProcessUtility_hook_type prev_process_utility = NULL;
static void capture_executor_start(QueryDesc *queryDesc, int eflags);
static void capture_process_utility(PlannedStmt *pstmt, const char *queryString,
									bool readOnlyTree, ProcessUtilityContext context,
									ParamListInfo params, QueryEnvironment *queryEnv,
									DestReceiver *dest, QueryCompletion *qc);
static emit_log_hook_type prev_emit_log_hook = NULL;
static void capture_emit_log(ErrorData *edata);

/* raftpg.origin_commits_0 and _1 and their indexes, resolved once per backend */
static Oid	origin_relid[2] = {InvalidOid, InvalidOid};
static Oid	origin_index_relid[2] = {InvalidOid, InvalidOid};

static void capture_xact_callback(XactEvent event, void *arg);
static void capture_subxact_callback(SubXactEvent event,
									 SubTransactionId mySubid,
									 SubTransactionId parentSubid, void *arg);
static void capture_relcache_callback(Datum arg, Oid relid);

void
CaptureInit(void)
{
	RegisterXactCallback(capture_xact_callback, NULL);
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = capture_emit_log;
	prev_executor_start = ExecutorStart_hook;
	ExecutorStart_hook = capture_executor_start;
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = capture_process_utility;
	RegisterSubXactCallback(capture_subxact_callback, NULL);
	CacheRegisterRelcacheCallback(capture_relcache_callback, (Datum) 0);
}

/* has this transaction already put changes through Raft? */
bool
CaptureHasProposed(void)
{
	return cap != NULL && cap->proposed_index != 0;
}

uint64
CaptureLastWriteIndex(void)
{
	return last_write_index;
}

static void
capture_relcache_callback(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS seq;
	CaptureRel *r;

	if (relid == InvalidOid ||
		relid == origin_relid[0] || relid == origin_index_relid[0] ||
		relid == origin_relid[1] || relid == origin_index_relid[1])
	{
		origin_relid[0] = origin_relid[1] = InvalidOid;
		origin_index_relid[0] = origin_index_relid[1] = InvalidOid;
	}
	if (capture_rels == NULL)
		return;
	if (relid != InvalidOid)
	{
		r = hash_search(capture_rels, &relid, HASH_FIND, NULL);
		if (r != NULL)
			r->valid = false;
		return;
	}
	hash_seq_init(&seq, capture_rels);
	while ((r = hash_seq_search(&seq)) != NULL)
		r->valid = false;
}

/* Build rel's layout: the columns sent, how, and its 'R' record body. */
static void
build_capture_rel(CaptureRel *cr, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Oid			pkoid = RelationGetPrimaryKeyIndex(rel);
	Relation	pk;
	StringInfoData buf;
	StringInfoData cols;
	MemoryContext old;
	int			i;
	int			k;

	if (!OidIsValid(pkoid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("replicated table \"%s\" has no primary key",
						RelationGetRelationName(rel)),
				 errhint("raftpg finds rows by their primary key; add one back, or unreplicate the table with raftpg.unreplicate_table().")));

	if (cr->cols)
		pfree(cr->cols);
	if (cr->keypos)
		pfree(cr->keypos);
	if (cr->relrec)
		pfree(cr->relrec);
	cr->cols = NULL;
	cr->keypos = NULL;
	cr->relrec = NULL;
	cr->valid = false;

	old = MemoryContextSwitchTo(capture_cache_cxt);
	cr->cols = palloc0(sizeof(CaptureColumn) * Max(desc->natts, 1));
	cr->ncols = 0;
	cr->natts = desc->natts;
	cr->has_text = false;
	initStringInfo(&cols);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		CaptureColumn *c;

		/* stored generated columns are recomputed where they are applied */
		if (att->attisdropped || att->attgenerated)
			continue;
		c = &cr->cols[cr->ncols++];
		c->attnum = att->attnum;
		c->typid = att->atttypid;
		c->method = ChangesMethodForType(att->atttypid);
		if (c->method == RAFTPG_VALUE_TEXT || c->method == RAFTPG_VALUE_BINARY)
		{
			Oid			fn;
			bool		varlena;

			if (c->method == RAFTPG_VALUE_TEXT)
			{
				getTypeOutputInfo(att->atttypid, &fn, &varlena);
				cr->has_text = true;
			}
			else
				getTypeBinaryOutputInfo(att->atttypid, &fn, &varlena);
			fmgr_info_cxt(fn, &c->fn, capture_cache_cxt);
		}
		ChangesPutStr(&cols, NameStr(att->attname));
		ChangesPutStr(&cols, format_type_extended(att->atttypid, att->atttypmod, FORMAT_TYPE_TYPEMOD_GIVEN | FORMAT_TYPE_FORCE_QUALIFY));
		ChangesPutU32(&cols, att->atttypid < FirstNormalObjectId ? att->atttypid : 0);
	}
	initStringInfo(&buf);
	ChangesPutStr(&buf, get_namespace_name(RelationGetNamespace(rel)));
	ChangesPutStr(&buf, RelationGetRelationName(rel));
	ChangesPutU16(&buf, (uint16) cr->ncols);
	appendBinaryStringInfo(&buf, cols.data, cols.len);
	pfree(cols.data);

	pk = index_open(pkoid, AccessShareLock);
	cr->nkeys = pk->rd_index->indnkeyatts;
	cr->keypos = palloc(sizeof(int) * cr->nkeys);
	ChangesPutU16(&buf, (uint16) cr->nkeys);
	for (k = 0; k < cr->nkeys; k++)
	{
		AttrNumber	attnum = pk->rd_index->indkey.values[k];

		cr->keypos[k] = -1;
		for (i = 0; i < cr->ncols; i++)
			if (cr->cols[i].attnum == attnum)
				cr->keypos[k] = i;
		if (cr->keypos[k] < 0)
			elog(ERROR, "primary key column %d of \"%s\" is not replicated",
				 attnum, RelationGetRelationName(rel));
		ChangesPutU16(&buf, (uint16) cr->keypos[k]);
	}
	index_close(pk, AccessShareLock);

	cr->relrec = buf.data;
	cr->relrec_len = buf.len;
	cr->generation = ++capture_generation;
	cr->valid = true;
	MemoryContextSwitchTo(old);
}

static CaptureRel *
capture_rel(Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	CaptureRel *cr;
	bool		found;

	if (capture_rels == NULL)
	{
		HASHCTL		ctl;

		capture_cache_cxt = AllocSetContextCreate(TopMemoryContext,
												  "raftpg capture cache",
												  ALLOCSET_DEFAULT_SIZES);
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(CaptureRel);
		ctl.hcxt = capture_cache_cxt;
		capture_rels = hash_create("raftpg capture relations", 32, &ctl,
								   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	cr = hash_search(capture_rels, &relid, HASH_ENTER, &found);
	if (!found)
	{
		cr->valid = false;
		cr->cols = NULL;
		cr->keypos = NULL;
		cr->relrec = NULL;
	}
	if (!cr->valid)
		build_capture_rel(cr, rel);
	return cr;
}

/* ----------
 * The capture state
 * ----------
 */
static Capture *
capture_begin(void)
{
	MemoryContext cxt;
	MemoryContext old;
	Capture    *c;

	CaptureSetSlot(RAFTPG_SLOT_WRITING, InvalidTransactionId);

	cxt = AllocSetContextCreate(TopTransactionContext, "raftpg capture",
								ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	c = palloc0(sizeof(Capture));
	c->cxt = cxt;
	initStringInfo(&c->rels);
	initStringInfo(&c->stream);
	c->maxrecords = 256;
	c->cids = palloc(sizeof(uint32) * c->maxrecords);
	c->sorted = true;
	c->last_truncate = -1;
	c->maxrefs = 4;
	c->refs = palloc(sizeof(CaptureRef) * c->maxrefs);
	c->maxsaves = 4;
	c->saves = palloc(sizeof(CaptureSavepoint) * c->maxsaves);
	MemoryContextSwitchTo(old);
	return c;
}

/* this transaction's reference to rel's current layout, with its 'R' */
static uint16
capture_relref(CaptureRel *cr)
{
	int			i;
	int			start;
	CaptureRef *ref;

	for (i = cap->nrefs - 1; i >= 0; i--)
		if (cap->refs[i].relid == cr->relid)
		{
			if (cap->refs[i].generation == cr->generation)
				return cap->refs[i].relref;
			break;
		}
	if (cap->nrefs == PG_UINT16_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many replicated table layouts in one transaction")));
	if (cap->nrefs == cap->maxrefs)
	{
		cap->maxrefs *= 2;
		cap->refs = repalloc(cap->refs, sizeof(CaptureRef) * cap->maxrefs);
	}
	ref = &cap->refs[cap->nrefs];
	ref->relid = cr->relid;
	ref->generation = cr->generation;
	ref->relref = (uint16) cap->nrefs;
	cap->nrefs++;

	start = ChangesBeginRecord(&cap->rels, RAFTPG_REC_RELATION);
	ChangesPutU16(&cap->rels, ref->relref);
	appendBinaryStringInfo(&cap->rels, cr->relrec, cr->relrec_len);
	ChangesEndRecord(&cap->rels, start);
	return ref->relref;
}

/*
 * Before a record is captured: refuse it if raftpg.replicate_table() or
 * unreplicate_table() already put what the transaction captured through
 * Raft (CaptureCommitNow) -- its origin row is written and its entry
 * committed, and a second entry would share that row, so apply could not
 * tell which of the two the local commit holds -- and remember where the
 * current subtransaction's changes begin.
 */
static void
capture_before_record(void)
{
	SubTransactionId sub = GetCurrentSubTransactionId();

	if (cap->proposed_index != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot write replicated tables after raftpg.replicate_table() or raftpg.unreplicate_table() in the same transaction"),
				 errhint("Write them in a transaction of their own.")));

	if (sub == TopSubTransactionId)
		return;
	if (cap->nsaves > 0 && cap->saves[cap->nsaves - 1].subid >= sub)
		return;
	if (cap->nsaves == cap->maxsaves)
	{
		cap->maxsaves *= 2;
		cap->saves = repalloc(cap->saves, sizeof(CaptureSavepoint) * cap->maxsaves);
	}
	cap->saves[cap->nsaves].subid = sub;
	cap->saves[cap->nsaves].stream_len = cap->stream.len;
	cap->saves[cap->nsaves].nrecords = cap->nrecords;
	cap->nsaves++;
}

static void
capture_note_record(CommandId cid)
{
	if (cap->nrecords == cap->maxrecords)
	{
		cap->maxrecords *= 2;
		cap->cids = repalloc_huge(cap->cids, sizeof(uint32) * cap->maxrecords);
	}
	if (cap->nrecords > 0 && cid < cap->cids[cap->nrecords - 1])
		cap->sorted = false;
	cap->cids[cap->nrecords++] = cid;
	cap->last_truncate = -1;
}

/*
 * Append the values of a row (key false: every replicated column) or of
 * its key (key true: the primary key columns, in key order).  Text output
 * depends on session settings (DateStyle, IntervalStyle,
 * extra_float_digits): values go out under the fixed settings the apply
 * worker reads them with (changes.c).
 */
static void
put_values(StringInfo buf, CaptureRel *cr, Datum *values, bool *nulls, bool key)
{
	RaftpgTextSettings saved;
	int			n = key ? cr->nkeys : cr->ncols;

	if (cr->has_text)
		ChangesEnterTextSettings(&saved);
	PG_TRY();
	{
		int			i;

		ChangesPutU16(buf, (uint16) n);
		for (i = 0; i < n; i++)
		{
			CaptureColumn *c = &cr->cols[key ? cr->keypos[i] : i];
			int			a = c->attnum - 1;

			ChangesPutValue(buf, c->method, c->typid, &c->fn, values[a], nulls[a]);
		}
	}
	PG_FINALLY();
	{
		if (cr->has_text)
			ChangesLeaveTextSettings(&saved);
	}
	PG_END_TRY();
}

static bool
key_changed(CaptureRel *cr, Relation rel, Datum *ov, bool *on, Datum *nv,
			bool *nn)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			k;

	for (k = 0; k < cr->nkeys; k++)
	{
		int			a = cr->cols[cr->keypos[k]].attnum - 1;
		Form_pg_attribute att = TupleDescAttr(desc, a);

		if (on[a] != nn[a])
			return true;
		if (!on[a] && !datumIsEqual(ov[a], nv[a], att->attbyval, att->attlen))
			return true;
	}
	return false;
}

/* ----------
 * The triggers
 * ----------
 */

/*
 * Something done to replicated table relname that this node may not do,
 * because it is not the leader: 25006, naming the leader.  action is the
 * verb of the message ("write", "lock rows of").
 */
static void refuse_not_leader(const char *relname, const char *action) pg_attribute_noreturn();

static void
refuse_not_leader(const char *relname, const char *action)
{
	RaftpgNodeStatus st = RaftpgReadStatus();
	RaftpgMember leader;

	if (st.role == RAFTPG_ROLE_UNCONFIGURED)
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot %s replicated table \"%s\": this server is not a member of a raftpg cluster",
						action, relname),
				 errhint("Unreplicate the table with raftpg.unreplicate_table(), or add this server to the cluster.")));
	if (st.leader_id != 0 && RaftpgFindMember(st.leader_id, NULL, &leader))
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot %s replicated table \"%s\" on a raftpg follower",
						action, relname),
				 errhint("The leader is node \"%s\", reachable at \"%s\".",
						 leader.name, leader.conninfo)));
	ereport(ERROR,
			(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
			 errmsg("cannot %s replicated table \"%s\": no raftpg leader is known",
					action, relname),
			 errhint("An election is under way; try again shortly.")));
}

/* a write of replicated table relname, or DDL on it, on a non-leader */
void
CaptureRefuseNotLeader(const char *relname)
{
	refuse_not_leader(relname, "write");
}

/* this backend's commit slot (raftpg.h) */
void
CaptureSetSlot(RaftpgSlotState state, TransactionId xid)
{
	RaftpgCommitSlot *slot = &RaftpgCommitSlots[MyProc->pgprocno];

	LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
	if (state != RAFTPG_SLOT_IDLE && slot->state == RAFTPG_SLOT_IDLE)
		RaftpgShmem->active_slots++;
	else if (state == RAFTPG_SLOT_IDLE && slot->state != RAFTPG_SLOT_IDLE)
		RaftpgShmem->active_slots--;
	slot->state = state;
	slot->xid = xid;
	slot->index = 0;
	LWLockRelease(&RaftpgShmem->lock);
}

/*
 * An orphan not yet behind the gate: a transaction that proposed an entry
 * and has ended in the process array without committing, but has not run
 * its abort callback (which raises the gate) yet.  Its rows are free to
 * others already.  Returns the highest such entry index, 0 if none.
 */
static uint64
unclosed_orphan(void)
{
	RaftpgCommitSlot *copy;
	int			n = 0;
	int			i;
	uint64		orphan = 0;

	LWLockAcquire(&RaftpgShmem->lock, LW_SHARED);
	if (RaftpgShmem->active_slots == 0)
	{
		LWLockRelease(&RaftpgShmem->lock);
		return 0;
	}
	copy = palloc(sizeof(RaftpgCommitSlot) * RaftpgShmem->active_slots);
	/*
	 * A transaction is still running while its backend's PGPROC shows its
	 * xid (ProcArrayEndTransaction clears it): one read per slot, without
	 * scanning the process array.  Only a slot whose backend has let go of
	 * its xid needs the commit log.
	 */
	for (i = 0; i < MaxBackends && n < RaftpgShmem->active_slots; i++)
		if (RaftpgCommitSlots[i].state == RAFTPG_SLOT_PROPOSED &&
			RaftpgCommitSlots[i].index != 0 &&
			TransactionIdIsNormal(RaftpgCommitSlots[i].xid) &&
			i != MyProc->pgprocno &&
			ProcGlobal->allProcs[i].xid != RaftpgCommitSlots[i].xid)
			copy[n++] = RaftpgCommitSlots[i];
	LWLockRelease(&RaftpgShmem->lock);

	for (i = 0; i < n; i++)
		if (!TransactionIdIsInProgress(copy[i].xid) &&
			!TransactionIdDidCommit(copy[i].xid))
			orphan = Max(orphan, copy[i].index);
	pfree(copy);
	if (orphan != 0)
	{
		Latch	   *apply_latch;

		LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
		RaftpgShmem->gate_index = Max(RaftpgShmem->gate_index, orphan);
		apply_latch = RaftpgShmem->apply_latch;
		LWLockRelease(&RaftpgShmem->lock);
		if (apply_latch)
			SetLatch(apply_latch);
	}
	return orphan;
}

/*
 * The write gate, as a backend sees it: 0 when it is open, else the
 * SQLSTATE of the refusal; *term is the term it is open in.
 */
static void
check_gate(bool at_commit, uint64 *term)
{
	TimestampTz deadline =
		TimestampTzPlusMilliseconds(GetCurrentTimestamp(), raftpg_commit_timeout);
	bool		waited = false;

	for (;;)
	{
		RaftpgNodeStatus st;
		uint64		ready_term;
		uint64		gate_index;
		uint64		applied;

		LWLockAcquire(&RaftpgShmem->lock, LW_SHARED);
		st = RaftpgShmem->status;
		ready_term = RaftpgShmem->ready_term;
		if (ready_term != 0 && ready_term <= RaftpgShmem->fenced_term)
			ready_term = 0;		/* not in this term any more */
		if (RaftpgShmem->seq_ready_term != ready_term)
			ready_term = 0;		/* sequences not reserved yet */
		gate_index = RaftpgShmem->gate_index;
		applied = RaftpgShmem->applied_index;
		LWLockRelease(&RaftpgShmem->lock);

		if (st.role != RAFTPG_ROLE_LEADER)
		{
			if (waited)
				ConditionVariableCancelSleep();
			if (at_commit)
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("this node stopped being the raftpg leader before the transaction committed"),
						 errdetail("Nothing was sent to the cluster; the transaction is rolled back."),
						 errhint("Retry the transaction on the new leader.")));
			RaftpgRequireLeader();
		}
		if (ready_term == st.term && applied >= gate_index &&
			(*term == 0 || *term == st.term) &&
			(!at_commit || unclosed_orphan() == 0))
		{
			if (waited)
				ConditionVariableCancelSleep();
			*term = st.term;
			return;
		}
		if (at_commit || *term != 0 || RaftpgRemainingMs(deadline) == 0)
		{
			if (waited)
				ConditionVariableCancelSleep();
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("the raftpg leader is not accepting writes right now"),
					 errdetail("It is applying log entries up to index " UINT64_FORMAT " (applied: " UINT64_FORMAT ") after %s.",
							   gate_index, applied,
							   *term != 0 && *term != st.term ? "a change of term" :
							   "an election or a transaction whose outcome was unknown"),
					 errhint("Retry the transaction.")));
		}
		/* nothing written yet: wait for the gate to open */
		if (!waited)
		{
			ConditionVariablePrepareToSleep(&RaftpgShmem->cv);
			waited = true;
		}
		(void) ConditionVariableTimedSleep(&RaftpgShmem->cv,
										   Min(RaftpgRemainingMs(deadline), 100),
										   PG_WAIT_EXTENSION);
		CHECK_FOR_INTERRUPTS();
	}
}

/* are both capture triggers of rel there, enabled as installed (origin)? */
static bool
capture_enabled(Relation rel)
{
	TriggerDesc *desc = rel->trigdesc;
	int			found = 0;
	int			i;

	if (desc == NULL)
		return false;
	for (i = 0; i < desc->numtriggers; i++)
	{
		Trigger    *t = &desc->triggers[i];

		if (t->tgenabled == TRIGGER_FIRES_ON_ORIGIN &&
			(strcmp(t->tgname, "raftpg_capture") == 0 ||
			 strcmp(t->tgname, "raftpg_capture_truncate") == 0))
			found++;
	}
	return found == 2;
}

PG_FUNCTION_INFO_V1(raftpg_guard);

/*
 * BEFORE STATEMENT, enabled ALWAYS: refuse writes this node may not make,
 * before any row is touched.
 */
Datum
raftpg_guard(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	uint64		term;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "raftpg.guard() must be called as a trigger");
	if (RaftpgIsApplyWorker())
		return PointerGetDatum(NULL);
	RaftpgCheckPreloaded();

	if (SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("cannot write replicated table \"%s\" with session_replication_role = replica",
						RelationGetRelationName(td->tg_relation)),
				 errdetail("Its changes would not be captured, and the servers would diverge.")));
	if (IsolationIsSerializable())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot write replicated table \"%s\" in a SERIALIZABLE transaction",
						RelationGetRelationName(td->tg_relation)),
				 errdetail("raftpg orders transactions by the Raft log, which does not provide serializable isolation across servers."),
				 errhint("Use REPEATABLE READ or READ COMMITTED for transactions that write replicated tables.")));
	if (RaftpgReadStatus().role != RAFTPG_ROLE_LEADER)
		CaptureRefuseNotLeader(RelationGetRelationName(td->tg_relation));
	if (!capture_enabled(td->tg_relation))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the raftpg capture triggers of replicated table \"%s\" are missing or disabled",
						RelationGetRelationName(td->tg_relation)),
				 errdetail("Its changes would not reach the other nodes."),
				 errhint("Enable triggers raftpg_capture and raftpg_capture_truncate again, or unreplicate the table with raftpg.unreplicate_table().")));

	term = cap ? cap->term : 0;
	check_gate(false, &term);
	if (cap == NULL)
	{
		cap = capture_begin();
		cap->term = term;
	}
	return PointerGetDatum(NULL);
}

PG_FUNCTION_INFO_V1(raftpg_capture);

/* AFTER ROW INSERT OR UPDATE OR DELETE: encode the change */
Datum
raftpg_capture(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	CaptureRel *cr;
	MemoryContext old;
	uint16		relref;
	int			start;
	CommandId	cid = InvalidCommandId;
	Datum	   *nv = NULL;
	bool	   *nn = NULL;
	Datum	   *ov = NULL;
	bool	   *on = NULL;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		elog(ERROR, "raftpg.capture() must be called as an AFTER ROW trigger");
	if (cap == NULL)
	{
		/* the guard ran unless it was disabled; never write uncaptured */
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("replicated table \"%s\" was written without its raftpg guard trigger",
						RelationGetRelationName(td->tg_relation)),
				 errhint("Re-enable trigger raftpg_guard, or unreplicate the table with raftpg.unreplicate_table().")));
	}

	rel = td->tg_relation;
	desc = RelationGetDescr(rel);
	cr = capture_rel(rel);

	old = MemoryContextSwitchTo(cap->cxt);
	capture_before_record();
	relref = capture_relref(cr);
	MemoryContextSwitchTo(old);

	if (TRIGGER_FIRED_BY_INSERT(td->tg_event) || TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		HeapTuple	newtup = TRIGGER_FIRED_BY_INSERT(td->tg_event) ?
			td->tg_trigtuple : td->tg_newtuple;

		nv = palloc(sizeof(Datum) * desc->natts);
		nn = palloc(sizeof(bool) * desc->natts);
		heap_deform_tuple(newtup, desc, nv, nn);
		cid = HeapTupleHeaderGetCmin(newtup->t_data);
	}
	if (TRIGGER_FIRED_BY_UPDATE(td->tg_event) || TRIGGER_FIRED_BY_DELETE(td->tg_event))
	{
		ov = palloc(sizeof(Datum) * desc->natts);
		on = palloc(sizeof(bool) * desc->natts);
		heap_deform_tuple(td->tg_trigtuple, desc, ov, on);
		if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
			cid = HeapTupleHeaderGetCmax(td->tg_trigtuple->t_data);
	}

	/* values are encoded straight into the stream, which lives in cap->cxt */
	if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
	{
		start = ChangesBeginRecord(&cap->stream, RAFTPG_REC_INSERT);
		ChangesPutU16(&cap->stream, relref);
		put_values(&cap->stream, cr, nv, nn, false);
	}
	else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		bool		changed = key_changed(cr, rel, ov, on, nv, nn);

		start = ChangesBeginRecord(&cap->stream, RAFTPG_REC_UPDATE);
		ChangesPutU16(&cap->stream, relref);
		ChangesPutU8(&cap->stream, changed ? 1 : 0);
		if (changed)
			put_values(&cap->stream, cr, ov, on, true);
		put_values(&cap->stream, cr, nv, nn, false);
	}
	else
	{
		start = ChangesBeginRecord(&cap->stream, RAFTPG_REC_DELETE);
		ChangesPutU16(&cap->stream, relref);
		put_values(&cap->stream, cr, ov, on, true);
	}
	ChangesEndRecord(&cap->stream, start);

	old = MemoryContextSwitchTo(cap->cxt);
	capture_note_record(cid);
	MemoryContextSwitchTo(old);
	return PointerGetDatum(NULL);
}

PG_FUNCTION_INFO_V1(raftpg_capture_truncate);

/*
 * AFTER STATEMENT TRUNCATE.  TRUNCATE of several tables fires once per
 * table; the tables of one command become one record, so that apply
 * truncates them together (as foreign keys between them require).
 */
Datum
raftpg_capture_truncate(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	CaptureRel *cr;
	MemoryContext old;
	uint16		relref;
	CommandId	cid = GetCurrentCommandId(false);

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
		elog(ERROR, "raftpg.capture_truncate() must be called as a TRUNCATE trigger");
	if (cap == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("replicated table \"%s\" was truncated without its raftpg guard trigger",
						RelationGetRelationName(td->tg_relation))));

	cr = capture_rel(td->tg_relation);
	old = MemoryContextSwitchTo(cap->cxt);
	capture_before_record();
	relref = capture_relref(cr);

	if (cap->last_truncate >= 0 && cap->last_truncate_cid == cid)
	{
		/* one more table of the same TRUNCATE: extend its record */
		int			at = cap->last_truncate;
		uint16		n;

		memcpy(&n, cap->stream.data + at + RAFTPG_REC_HEADER, sizeof(n));
		n = pg_hton16((uint16) (pg_ntoh16(n) + 1));
		memcpy(cap->stream.data + at + RAFTPG_REC_HEADER, &n, sizeof(n));
		ChangesPutU16(&cap->stream, relref);
		ChangesEndRecord(&cap->stream, at);
	}
	else
	{
		int			start = ChangesBeginRecord(&cap->stream, RAFTPG_REC_TRUNCATE);

		ChangesPutU16(&cap->stream, 1);
		ChangesPutU16(&cap->stream, relref);
		ChangesEndRecord(&cap->stream, start);
		capture_note_record(cid);
		cap->last_truncate = start;
		cap->last_truncate_cid = cid;
	}
	MemoryContextSwitchTo(old);
	return PointerGetDatum(NULL);
}

/*
 * Append a record made elsewhere (replicate_table, DDL) to this
 * transaction's stream, opening the capture state if needed.  The caller
 * has checked that this node is the leader.
 */
void
CaptureAppendRecord(char tag, const char *body, int len)
{
	MemoryContext old;
	int			start;

	if (cap == NULL)
	{
		uint64		term = 0;

		check_gate(false, &term);
		cap = capture_begin();
		cap->term = term;
	}
	old = MemoryContextSwitchTo(cap->cxt);
	capture_before_record();
	start = ChangesBeginRecord(&cap->stream, tag);
	appendBinaryStringInfo(&cap->stream, body, len);
	ChangesEndRecord(&cap->stream, start);
	capture_note_record(GetCurrentCommandId(false));
	MemoryContextSwitchTo(old);
}

/* Append an insert of a row of rel (replicate_table's copy of the rows). */
void
CaptureInsertRow(Relation rel, HeapTuple tuple)
{
	TupleDesc	desc = RelationGetDescr(rel);
	CaptureRel *cr = capture_rel(rel);
	MemoryContext old;
	Datum	   *v = palloc(sizeof(Datum) * desc->natts);
	bool	   *n = palloc(sizeof(bool) * desc->natts);
	uint16		relref;
	int			start;

	Assert(cap != NULL);
	old = MemoryContextSwitchTo(cap->cxt);
	relref = capture_relref(cr);
	MemoryContextSwitchTo(old);
	heap_deform_tuple(tuple, desc, v, n);
	start = ChangesBeginRecord(&cap->stream, RAFTPG_REC_INSERT);
	ChangesPutU16(&cap->stream, relref);
	put_values(&cap->stream, cr, v, n, false);
	ChangesEndRecord(&cap->stream, start);
	old = MemoryContextSwitchTo(cap->cxt);
	capture_note_record(GetCurrentCommandId(false));
	MemoryContextSwitchTo(old);
	pfree(v);
	pfree(n);
}

/* ----------
 * Pre-commit: through Raft, then the local commit
 * ----------
 */
typedef struct SortItem
{
	uint32		cid;
	uint32		seq;
	uint32		off;
	uint32		len;
} SortItem;

static int
sort_item_cmp(const void *a, const void *b)
{
	const SortItem *x = a;
	const SortItem *y = b;

	if (x->cid != y->cid)
		return x->cid < y->cid ? -1 : 1;
	return x->seq < y->seq ? -1 : (x->seq > y->seq ? 1 : 0);
}

/*
 * The changes in command order: the capture buffer itself when no nested
 * query reordered them, else a copy stably sorted by command id.
 */
static StringInfo
sorted_changes(void)
{
	StringInfo	out;
	SortItem   *items;
	uint32		off = 0;
	int			i;

	if (cap->sorted)
		return &cap->stream;
	items = palloc_extended(sizeof(SortItem) * cap->nrecords, MCXT_ALLOC_HUGE);
	for (i = 0; i < cap->nrecords; i++)
	{
		uint32		blen;

		memcpy(&blen, cap->stream.data + off + 1, sizeof(blen));
		items[i].cid = cap->cids[i];
		items[i].seq = (uint32) i;
		items[i].off = off;
		items[i].len = RAFTPG_REC_HEADER + pg_ntoh32(blen);
		off += items[i].len;
	}
	Assert(off == (uint32) cap->stream.len);
	qsort(items, cap->nrecords, sizeof(SortItem), sort_item_cmp);
	out = makeStringInfo();
	enlargeStringInfo(out, cap->stream.len);
	for (i = 0; i < cap->nrecords; i++)
		appendBinaryStringInfo(out, cap->stream.data + items[i].off,
							   (int) items[i].len);
	pfree(items);
	return out;
}

/*
 * The stream is the relation records followed by the changes; copy bytes
 * [from, from + len) of it to dst.
 */
static void
copy_stream(StringInfo changes, uint32 from, uint32 len, char *dst)
{
	uint32		nrels = (uint32) cap->rels.len;

	if (from < nrels)
	{
		uint32		n = Min(len, nrels - from);

		memcpy(dst, cap->rels.data + from, n);
		dst += n;
		from += n;
		len -= n;
	}
	if (len > 0)
		memcpy(dst, changes->data + (from - nrels), len);
}

/* size of the request body for a stream of total bytes: see fill_body */
static Size
body_size(uint64 total, uint32 *nchunks)
{
	uint32		room = (uint32) raftpg_max_entry_size - RAFTPG_CHUNK_HEADER;
	uint64		n = (total + room - 1) / room;

	if (n == 0)
		n = 1;
	if (n > PG_INT32_MAX || total + n * (sizeof(uint32) + RAFTPG_CHUNK_HEADER) >= MaxAllocHugeSize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("transaction too large for raftpg: " UINT64_FORMAT " bytes of changes", total)));
	*nchunks = (uint32) n;
	return sizeof(uint32) + n * (sizeof(uint32) + RAFTPG_CHUNK_HEADER) + total;
}

/*
 * The request body, written to dst: u32 n, then each chunk as u32 length
 * and bytes; each chunk is a header and a slice of the stream.
 */
static void
fill_body(StringInfo changes, uint32 n, char *dst)
{
	uint32		room = (uint32) raftpg_max_entry_size - RAFTPG_CHUNK_HEADER;
	uint32		total = (uint32) cap->rels.len + (uint32) changes->len;
	RaftpgChunkHeader h;
	StringInfoData hbuf;
	uint32		i;

	memcpy(dst, &n, sizeof(n));
	dst += sizeof(n);
	h.origin_node = RaftpgReadStatus().node_id;
	h.origin_incarnation = RaftpgShmem->incarnation;
	h.origin_fxid = U64FromFullTransactionId(GetTopFullTransactionId());
	h.origin_term = cap->term;
	initStringInfo(&hbuf);
	for (i = 0; i < n; i++)
	{
		uint32		from = i * room;
		uint32		len = Min(room, total - from);
		uint32		clen = RAFTPG_CHUNK_HEADER + len;

		h.flags = (i == 0 ? RAFTPG_CHUNK_FIRST : 0) |
			(i == n - 1 ? RAFTPG_CHUNK_LAST : 0);
		h.chunk_no = i;
		memcpy(dst, &clen, sizeof(clen));
		dst += sizeof(clen);
		resetStringInfo(&hbuf);
		ChangesPutHeader(&hbuf, &h);
		Assert(hbuf.len == RAFTPG_CHUNK_HEADER);
		memcpy(dst, hbuf.data, RAFTPG_CHUNK_HEADER);
		dst += RAFTPG_CHUNK_HEADER;
		copy_stream(changes, from, len, dst);
		dst += len;
		CHECK_FOR_INTERRUPTS();
	}
	pfree(hbuf.data);
}

/*
 * Open the current one of raftpg.origin_commits_0 and _1 and its index for
 * insert_origin_commit(), taking their locks now: the insert runs while
 * interrupts are held, where a lock wait could not be cancelled.
 *
 * Which is current is read again once its lock is held: the apply worker
 * makes the other current before it takes the first's lock to see that
 * its last writer is done (apply.c, "Origin rows"), so no row goes into a
 * table after that.
 */
static void
open_origin_commits(Relation *relp, Relation *idxp)
{
	Oid			relid[2];
	Oid			indexid[2];
	uint32		gen;

	/*
	 * Resolved into locals: opening a relation processes invalidations,
	 * and the relcache callback may reset the cached OIDs meanwhile.
	 */
	memcpy(relid, origin_relid, sizeof(relid));
	memcpy(indexid, origin_index_relid, sizeof(indexid));
	if ((!OidIsValid(relid[0]) || !OidIsValid(relid[1]) ||
		 !OidIsValid(indexid[0]) || !OidIsValid(indexid[1])) &&
		!StorageResolveOrigin(relid, indexid))
		elog(ERROR, "the tables raftpg.origin_commits_0 and _1 are missing");
	for (;;)
	{
		gen = pg_atomic_read_u32(&RaftpgShmem->origin_gen) & 1;
		LockRelationOid(relid[gen], RowExclusiveLock);
		pg_memory_barrier();
		if ((pg_atomic_read_u32(&RaftpgShmem->origin_gen) & 1) == gen)
			break;
		UnlockRelationOid(relid[gen], RowExclusiveLock);
	}
	*relp = table_open(relid[gen], NoLock);
	*idxp = index_open(indexid[gen], RowExclusiveLock);
	memcpy(origin_relid, relid, sizeof(relid));
	memcpy(origin_index_relid, indexid, sizeof(indexid));
}

/*
 * Insert (incarnation, full xid) of this transaction into the origin table
 * open_origin_commits() opened, with the transaction: the row that tells
 * apply after a crash that its entries are in the tables here already.
 * Closes the relations.
 */
static void
insert_origin_commit(Relation rel, Relation idx)
{
	TupleTableSlot *slot;
	Datum		key[2];
	bool		keynull[2] = {false, false};

	slot = table_slot_create(rel, NULL);
	ExecClearTuple(slot);
	key[0] = Int64GetDatum((int64) RaftpgShmem->incarnation);
	key[1] = Int64GetDatum((int64) U64FromFullTransactionId(GetTopFullTransactionId()));
	slot->tts_values[0] = key[0];
	slot->tts_values[1] = key[1];
	slot->tts_isnull[0] = slot->tts_isnull[1] = false;
	ExecStoreVirtualTuple(slot);
	table_tuple_insert(rel, slot, GetCurrentCommandId(true), 0, NULL);
	index_insert(idx, key, keynull, &slot->tts_tid, rel, UNIQUE_CHECK_YES,
				 false, BuildIndexInfo(idx));
	ExecDropSingleTupleTableSlot(slot);
	index_close(idx, NoLock);
	table_close(rel, NoLock);
}

/* the outcome of our entry is unknown: say so, and close the gate */
static void
unknown_outcome(const char *why, const char *hint)
{
	uint64		index = cap->proposed_index;
	uint64		term = cap->proposed_term;

	ereport(ERROR,
			(errcode(ERRCODE_TRANSACTION_RESOLUTION_UNKNOWN),
			 errmsg("the outcome of this transaction is unknown: %s", why),
			 errdetail("Its changes are log entry " UINT64_FORMAT " of term " UINT64_FORMAT "; if a majority has it, every node applies it.",
					   index, term),
			 errhint("%s", hint)));
}

/*
 * Wait until the majority has our entries, or raise 08007 once deadline
 * (raftpg.commit_timeout after the hand-off began) has passed.
 */
static void
wait_for_majority(TimestampTz deadline)
{
	/*
	 * The node worker sets our latch when our entry is committed or the
	 * term moves (node.c, node_publish()).
	 */
	HOLD_INTERRUPTS();
	for (;;)
	{
		RaftpgNodeStatus st;
		const char *why = NULL;
		const char *hint = "Check with raftpg.wait_for_index() or by reading the rows whether it was applied.";

		ResetLatch(MyLatch);
		st = RaftpgReadStatus();

		if (st.term == cap->proposed_term && st.commit_index >= cap->proposed_index)
			break;
		if (st.term != cap->proposed_term)
			why = "leadership changed while it was being committed";
		else if (ProcDiePending)
			why = "the session was terminated while it was being committed";
		else if (QueryCancelPending)
		{
			QueryCancelPending = false;
			why = get_timeout_indicator(STATEMENT_TIMEOUT, false) ?
				"statement timeout while it was being committed" :
				"canceled while it was being committed";
		}
		else if (RaftpgRemainingMs(deadline) == 0)
		{
			why = "raftpg.commit_timeout expired while it was being committed";
			hint = "Check that a majority of the nodes is reachable (raftpg.nodes).";
		}
		if (why != NULL)
		{
			RESUME_INTERRUPTS();
			unknown_outcome(why, hint);
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(RaftpgRemainingMs(deadline), 1000), PG_WAIT_EXTENSION);
	}
	RESUME_INTERRUPTS();
}

/*
 * The hand-off to the node worker failed (it did not answer in time, the
 * request could not be queued, the origin row could not be
 * written): find out from our slot whether the changes were proposed, and
 * raise the error that is true.  Called in a PG_CATCH block; does not
 * return.
 */
static void
submit_failed(uint64 term)
{
	RaftpgCommitSlot *slot = &RaftpgCommitSlots[MyProc->pgprocno];
	RaftpgSlotState state;
	uint64		index;
	char	   *why = NULL;
	int			polls = 0;
	bool		ours = geterrcode() != ERRCODE_TRANSACTION_RESOLUTION_UNKNOWN;

	LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
	state = (RaftpgSlotState) slot->state;
	index = slot->index;

	/*
	 * An error of ours (not the worker's silence) while the worker is in
	 * the middle of proposing: it settles the index within moments, and
	 * that is better than fencing the whole term below.
	 */
	while (ours && state == RAFTPG_SLOT_PROPOSED && index == 0 &&
		   polls++ < 1000)
	{
		LWLockRelease(&RaftpgShmem->lock);
		pg_usleep(1000L);
		LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
		state = (RaftpgSlotState) slot->state;
		index = slot->index;
	}
	if (state == RAFTPG_SLOT_PROPOSING)
		slot->state = RAFTPG_SLOT_IDLE;		/* never to be proposed now */
	else if (state == RAFTPG_SLOT_PROPOSED && index == 0)
	{
		/*
		 * Claimed, and the worker is still inside the proposal after
		 * raftpg.commit_timeout: no local write may build on this term.
		 */
		RaftpgShmem->fenced_term = Max(RaftpgShmem->fenced_term, term);
	}
	if (state == RAFTPG_SLOT_PROPOSING)
		RaftpgShmem->active_slots--;
	LWLockRelease(&RaftpgShmem->lock);

	if (state == RAFTPG_SLOT_PROPOSING)
	{
		/* definite: nothing was or will be proposed */
		if (ours)
			PG_RE_THROW();
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("the raftpg node worker did not take the transaction within raftpg.commit_timeout"),
				 errdetail("Nothing was sent to the cluster; the transaction is rolled back."),
				 errhint("Check the server log and raftpg.status(), then retry.")));
	}
	if (ours)
	{
		/* an error of ours, after the worker took the changes */
		ErrorData  *edata;

		MemoryContextSwitchTo(cap->cxt);
		edata = CopyErrorData();
		why = edata->message;
	}
	FlushErrorState();
	cap->proposed_index = index;
	cap->proposed_term = term;
	if (index == 0)
		ereport(ERROR,
				(errcode(ERRCODE_TRANSACTION_RESOLUTION_UNKNOWN),
				 errmsg("the outcome of this transaction is unknown: %s",
						why ? why : "the raftpg node worker did not answer"),
				 errhint("Check the server log and raftpg.status().")));
	unknown_outcome(why ? why : "the raftpg node worker did not answer in time",
					"Check the server log and raftpg.status().");
}

static void
capture_pre_commit(void)
{
	StringInfo	changes;
	char	   *volatile body = NULL;
	dsm_segment *volatile seg = NULL;
	Size		size;
	RaftpgRequest req;
	RaftpgReply r;
	uint32		nchunks;
	uint64		term = cap->term;
	TimestampTz deadline;
	Relation	origin_rel;
	Relation	origin_idx;

	if (cap->nrecords == 0)
		return;					/* everything was rolled back to savepoints */
	if (IsolationIsSerializable())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot commit a SERIALIZABLE transaction that wrote replicated tables")));

	check_gate(true, &term);

	changes = sorted_changes();
	size = body_size((uint64) cap->rels.len + (uint64) changes->len, &nchunks);
	if (size <= RAFTPG_MAX_INLINE_BODY)
	{
		body = palloc(size);
		fill_body(changes, nchunks, body);
	}
	else
	{
		/* large: through a shared memory segment of its own */
		seg = dsm_create(size, 0);
		fill_body(changes, nchunks, dsm_segment_address(seg));
	}
	if (changes != &cap->stream)
	{
		pfree(changes->data);
		pfree(changes);
	}

	memset(&req, 0, sizeof(req));
	req.kind = RAFTPG_REQ_PROPOSE_TXN;
	req.id = term;
	req.dsm = seg ? dsm_segment_handle(seg) : DSM_HANDLE_INVALID;

	/*
	 * Once the request is in the mailbox the worker may propose it, so an
	 * interrupt must not turn this wait into a definite error: interrupts
	 * are held (a cancel is noticed by wait_for_majority()).  If the worker
	 * does not answer in time, the slot says what happened: still
	 * PROPOSING means it will never propose (we take the slot back), an
	 * index means it did.
	 */
	req.xid = GetTopTransactionId();
	open_origin_commits(&origin_rel, &origin_idx);
	CaptureSetSlot(RAFTPG_SLOT_PROPOSING, req.xid);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										   raftpg_commit_timeout);

	/*
	 * The worker answers a refusal at once, but does not wake us for an
	 * accepted proposal: we are woken when its entries commit or the term
	 * moves (or by an interrupt), and then find its answer here -- one
	 * wake-up per transaction.  So by the time RaftpgSubmitWait() returns,
	 * wait_for_majority() usually has nothing left to wait for.
	 *
	 * The origin row is written while the worker proposes and the
	 * followers persist, off the commit's critical path (its locks were
	 * taken above, where a wait can still be cancelled).  It names this
	 * transaction, not its entry (whose index we do not know yet); if it
	 * cannot be written, the slot says whether that error is the whole
	 * truth (nothing proposed) or the outcome is unknown (submit_failed).
	 */
	HOLD_INTERRUPTS();
	PG_TRY();
	{
		RaftpgSubmitStart(&req, body, body ? size : 0);
		insert_origin_commit(origin_rel, origin_idx);
		r = RaftpgSubmitWait(&req, deadline);
	}
	PG_CATCH();
	{
		submit_failed(term);
	}
	PG_END_TRY();
	RESUME_INTERRUPTS();
	if (seg)
		dsm_detach(seg);
	else
		pfree(body);
	if (r.rc != RAFT_OK)
		CaptureSetSlot(RAFTPG_SLOT_IDLE, InvalidTransactionId);
	if (r.rc == RAFT_ENOTLEADER)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("this node stopped being the raftpg leader before the transaction committed"),
				 errdetail("Nothing was sent to the cluster; the transaction is rolled back."),
				 errhint("Retry the transaction on the new leader.")));
	RaftpgReportRefusal(r.rc, "commit the transaction");

	cap->proposed_index = r.index + nchunks - 1;
	cap->proposed_term = r.term;

	/*
	 * From here on, an error must say that the outcome is unknown: the
	 * entry is in the log and may commit whatever happens to us.
	 */
	wait_for_majority(deadline);
	committed_index = cap->proposed_index;

	/*
	 * The cluster has the changes durably, and the origin row that
	 * marks them applied here commits with them: if this commit record is
	 * lost in a crash, so is that row, and the apply worker applies the
	 * entry from the log.  So a transaction that wrote nothing else need
	 * not wait for its own WAL flush -- one disk flush less on the commit
	 * path.  Anything else it wrote keeps the session's setting.
	 */
	if (!local_writes && saved_synchronous_commit < 0)
	{
		saved_synchronous_commit = synchronous_commit;
		synchronous_commit = SYNCHRONOUS_COMMIT_OFF;
	}
	LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
	RaftpgShmem->replicated_commits++;
	if (saved_synchronous_commit >= 0)
		RaftpgShmem->replicated_commits_async++;
	LWLockRelease(&RaftpgShmem->lock);
}

/*
 * emit_log_hook: an error raised after the cluster committed this
 * transaction's entry, but before the local commit record (a later
 * pre-commit callback, NOTIFY's queue, ...), must not read as a plain
 * failure: the entry is applied on every node, this one included.
 */
static void
capture_emit_log(ErrorData *edata)
{
	if (committed_index != 0 && edata->elevel >= ERROR &&
		edata->sqlerrcode != ERRCODE_TRANSACTION_RESOLUTION_UNKNOWN)
	{
		MemoryContext old = MemoryContextSwitchTo(ErrorContext);

		edata->detail = psprintf("The cluster committed this transaction as log entry " UINT64_FORMAT " before the error; every node applies it, this one included.",
								 committed_index);
		edata->message = psprintf("the outcome of this transaction is unknown: %s",
								  edata->message);
		edata->sqlerrcode = ERRCODE_TRANSACTION_RESOLUTION_UNKNOWN;
		MemoryContextSwitchTo(old);
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/*
 * Put what this transaction captured so far through Raft now, inside a
 * function (replicate_table), rather than at commit; returns the last
 * entry's index.  What the transaction captures afterwards goes at commit
 * as usual.
 */
uint64
CaptureCommitNow(void)
{
	if (cap == NULL || cap->nrecords == 0)
		elog(ERROR, "raftpg: nothing captured to commit");
	capture_pre_commit();
	resetStringInfo(&cap->stream);
	resetStringInfo(&cap->rels);
	cap->nrecords = 0;
	cap->nrefs = 0;
	cap->nsaves = 0;
	cap->sorted = true;
	cap->last_truncate = -1;
	return cap->proposed_index;
}

static void
capture_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		committed_index = 0;
		local_writes = false;
		if (saved_synchronous_commit >= 0)
		{
			synchronous_commit = saved_synchronous_commit;
			saved_synchronous_commit = -1;
		}
	}
	if (cap == NULL)
		return;
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
			capture_pre_commit();
			break;
		case XACT_EVENT_PRE_PREPARE:
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot PREPARE a transaction that wrote replicated tables")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (cap->proposed_index != 0)
				last_write_index = cap->proposed_index;
			CaptureSetSlot(RAFTPG_SLOT_IDLE, InvalidTransactionId);
			cap = NULL;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			if (cap->proposed_index != 0)
			{
				/*
				 * Our entry may commit while our rows are free again: nobody
				 * may build on them until apply has decided (see above).
				 */
				Latch	   *apply_latch;

				LWLockAcquire(&RaftpgShmem->lock, LW_EXCLUSIVE);
				RaftpgShmem->gate_index = Max(RaftpgShmem->gate_index,
											  cap->proposed_index);
				apply_latch = RaftpgShmem->apply_latch;
				LWLockRelease(&RaftpgShmem->lock);
				/* apply decides it without lingering */
				if (apply_latch)
					SetLatch(apply_latch);
			}
			CaptureSetSlot(RAFTPG_SLOT_IDLE, InvalidTransactionId);
			cap = NULL;
			break;
		default:
			break;
	}
}

static void
capture_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	int			i;

	if (cap == NULL)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		/* drop every change made since mySubid began */
		for (i = 0; i < cap->nsaves; i++)
			if (cap->saves[i].subid >= mySubid)
				break;
		if (i < cap->nsaves)
		{
			cap->stream.len = cap->saves[i].stream_len;
			cap->stream.data[cap->stream.len] = '\0';
			cap->nrecords = cap->saves[i].nrecords;
			cap->nsaves = i;
			cap->last_truncate = -1;
		}
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		/* its changes now belong to the parent */
		if (cap->nsaves > 0 && cap->saves[cap->nsaves - 1].subid == mySubid)
		{
			if (parentSubid != TopSubTransactionId &&
				(cap->nsaves < 2 || cap->saves[cap->nsaves - 2].subid != parentSubid))
				cap->saves[cap->nsaves - 1].subid = parentSubid;
			else
				cap->nsaves--;
		}
	}
}

/* is rel a replicated table (its capture trigger is installed)? */
static bool
is_captured(Relation rel)
{
	TriggerDesc *desc = rel->trigdesc;
	int			i;

	if (desc == NULL)
		return false;
	for (i = 0; i < desc->numtriggers; i++)
		if (strcmp(desc->triggers[i].tgname, "raftpg_capture") == 0)
			return true;
	return false;
}

/*
 * ExecutorStart_hook: note a statement that writes a table that is not
 * replicated.  A SELECT without data-modifying CTEs costs one test.
 */
static void
capture_executor_start(QueryDesc *queryDesc, int eflags)
{
	ListCell   *lc;

	/*
	 * Row locks on a follower would hold up apply, as on a hot standby:
	 * refused like writes.
	 */
	if (queryDesc->plannedstmt->rowMarks != NIL && !RaftpgIsApplyWorker() &&
		RaftpgShmem != NULL &&
		RaftpgReadStatus().role != RAFTPG_ROLE_LEADER)
	{
		foreach(lc, queryDesc->plannedstmt->rowMarks)
		{
			PlanRowMark *rm = lfirst(lc);
			RangeTblEntry *rte = rt_fetch(rm->rti, queryDesc->plannedstmt->rtable);
			Relation	rel;
			bool		replicated;

			if (rte->rtekind != RTE_RELATION || rm->markType == ROW_MARK_COPY ||
				rm->markType == ROW_MARK_REFERENCE)
				continue;
			rel = RelationIdGetRelation(rte->relid);
			if (rel == NULL)
				continue;
			replicated = is_captured(rel);
			RelationClose(rel);
			if (replicated)
				refuse_not_leader(get_rel_name(rte->relid), "lock rows of");
		}
	}

	if (prev_executor_start)
		prev_executor_start(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);

	if (local_writes || (queryDesc->operation == CMD_SELECT &&
						 !queryDesc->plannedstmt->hasModifyingCTE))
		return;
	if ((eflags & EXEC_FLAG_EXPLAIN_ONLY) || queryDesc->estate == NULL)
		return;
	foreach(lc, queryDesc->estate->es_opened_result_relations)
	{
		ResultRelInfo *rri = lfirst(lc);

		if (!is_captured(rri->ri_RelationDesc))
			local_writes = true;
	}
	if (queryDesc->operation != CMD_SELECT &&
		queryDesc->estate->es_opened_result_relations == NIL)
		local_writes = true;	/* be safe: a write we cannot see */
}

/*
 * COPY ... FREEZE writes rows already frozen, whose command ids capture
 * cannot read: refused on replicated tables.
 */
static void
check_copy_freeze(CopyStmt *stmt)
{
	ListCell   *lc;
	bool		freeze = false;
	Oid			relid;
	Relation	rel;
	bool		replicated;

	if (!stmt->is_from || stmt->relation == NULL)
		return;
	foreach(lc, stmt->options)
	{
		DefElem    *opt = lfirst_node(DefElem, lc);

		if (strcmp(opt->defname, "freeze") == 0)
			freeze = opt->arg == NULL || defGetBoolean(opt);
	}
	if (!freeze)
		return;
	relid = RangeVarGetRelid(stmt->relation, NoLock, true);
	if (!OidIsValid(relid))
		return;
	rel = RelationIdGetRelation(relid);
	if (rel == NULL)
		return;
	replicated = is_captured(rel);
	RelationClose(rel);
	if (replicated)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot COPY FREEZE into replicated table \"%s\"",
						stmt->relation->relname),
				 errhint("Use COPY without FREEZE.")));
}

/*
 * ProcessUtility_hook: any utility statement but transaction control,
 * settings and cursors may write locally (DDL, COPY, ...).
 */
static void
capture_process_utility(PlannedStmt *pstmt, const char *queryString,
						bool readOnlyTree, ProcessUtilityContext context,
						ParamListInfo params, QueryEnvironment *queryEnv,
						DestReceiver *dest, QueryCompletion *qc)
{
	if (IsA(pstmt->utilityStmt, CopyStmt))
		check_copy_freeze((CopyStmt *) pstmt->utilityStmt);

	switch (nodeTag(pstmt->utilityStmt))
	{
		case T_TransactionStmt:
		case T_VariableSetStmt:
		case T_VariableShowStmt:
		case T_DeclareCursorStmt:
		case T_FetchStmt:
		case T_ClosePortalStmt:
		case T_PrepareStmt:
		case T_ExecuteStmt:
		case T_DeallocateStmt:
		case T_ExplainStmt:
			break;
		default:
			local_writes = true;
			break;
	}
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context,
							 params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

PG_FUNCTION_INFO_V1(raftpg_last_write_index);

/* raftpg.last_write_index(): this session's last replicated commit */
Datum
raftpg_last_write_index(PG_FUNCTION_ARGS)
{
	if (last_write_index == 0)
		PG_RETURN_NULL();
	PG_RETURN_INT64((int64) last_write_index);
}
