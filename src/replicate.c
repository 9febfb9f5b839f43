/*-------------------------------------------------------------------------
 *
 * replicate.c
 *	  Putting a table under Raft (raftpg.replicate_table) and taking it out
 *	  (raftpg.unreplicate_table), on the leader and, through the log, on
 *	  every other node.
 *
 * replicate_table() runs on the leader as a transaction of its own.  It
 * checks that the table can be replicated (tabledef.c), takes an EXCLUSIVE
 * lock (readers go on, writers wait), and asks every member over libpq
 * whether it can take the table: absent there (the statements are tried
 * and rolled back), or present, identical and empty.  Only then does it
 * install the triggers (capture.c) and write one transaction to the log:
 * an 'A' record with the table's definition, then an insert per row.  It
 * waits until a majority has it, and then until every member has applied
 * it, warning about members that have not within raftpg.commit_timeout.
 *
 * The apply worker of every other node applies 'A' by creating the table
 * from the statements (or adopting an identical empty one), installing the
 * same triggers and its raftpg.replicated row, and then the rows.  On the
 * leader the entry is skipped like every transaction the leader committed
 * itself.
 *
 * unreplicate_table() drops the triggers and the raftpg.replicated row on
 * the leader and writes an 'X' record that does the same everywhere; the
 * table and its rows stay, a plain local table on every node.
 *
 * src/replicate.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "raftpg.h"
#include "capture.h"
#include "changes.h"
#include "ddl.h"
#include "replicate.h"
#include "sequences.h"
#include "tabledef.h"

/* run one statement through SPI (the caller is connected) */
static void
spi_exec(const char *sql, int expected)
{
	int			rc = SPI_execute(sql, false, 0);

	if (rc != expected)
		elog(ERROR, "raftpg: \"%s\" failed: %s", sql, SPI_result_code_string(rc));
}

/* the triggers of a replicated table, and its raftpg.replicated row */
static void
install(Oid relid, uint64 index)
{
	char	   *name = RaftpgQualifiedName(relid);
	StringInfoData sql;

	SPI_connect();
	DdlBeginInternal();
	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "CREATE TRIGGER raftpg_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s "
					 "FOR EACH STATEMENT EXECUTE FUNCTION raftpg.guard()", name);
	spi_exec(sql.data, SPI_OK_UTILITY);
	resetStringInfo(&sql);
	appendStringInfo(&sql, "ALTER TABLE %s ENABLE ALWAYS TRIGGER raftpg_guard", name);
	spi_exec(sql.data, SPI_OK_UTILITY);
	resetStringInfo(&sql);
	appendStringInfo(&sql,
					 "CREATE TRIGGER raftpg_capture AFTER INSERT OR UPDATE OR DELETE ON %s "
					 "FOR EACH ROW EXECUTE FUNCTION raftpg.capture()", name);
	spi_exec(sql.data, SPI_OK_UTILITY);
	resetStringInfo(&sql);
	appendStringInfo(&sql,
					 "CREATE TRIGGER raftpg_capture_truncate AFTER TRUNCATE ON %s "
					 "FOR EACH STATEMENT EXECUTE FUNCTION raftpg.capture_truncate()", name);
	spi_exec(sql.data, SPI_OK_UTILITY);
	resetStringInfo(&sql);
	appendStringInfo(&sql, "INSERT INTO raftpg.replicated VALUES (%u, " UINT64_FORMAT ")",
					 relid, index);
	spi_exec(sql.data, SPI_OK_INSERT);
	DdlEndInternal();
	SPI_finish();
}

static void
uninstall(Oid relid)
{
	char	   *name = RaftpgQualifiedName(relid);
	StringInfoData sql;

	SPI_connect();
	DdlBeginInternal();
	initStringInfo(&sql);
	appendStringInfo(&sql, "DROP TRIGGER IF EXISTS raftpg_guard ON %s", name);
	spi_exec(sql.data, SPI_OK_UTILITY);
	resetStringInfo(&sql);
	appendStringInfo(&sql, "DROP TRIGGER IF EXISTS raftpg_capture ON %s", name);
	spi_exec(sql.data, SPI_OK_UTILITY);
	resetStringInfo(&sql);
	appendStringInfo(&sql, "DROP TRIGGER IF EXISTS raftpg_capture_truncate ON %s", name);
	spi_exec(sql.data, SPI_OK_UTILITY);
	resetStringInfo(&sql);
	appendStringInfo(&sql, "DELETE FROM raftpg.replicated WHERE relid = %u", relid);
	spi_exec(sql.data, SPI_OK_DELETE);
	DdlEndInternal();
	SPI_finish();
}

static bool
is_replicated(Oid relid)
{
	char		sql[128];
	bool		found;

	SPI_connect();
	snprintf(sql, sizeof(sql), "SELECT 1 FROM raftpg.replicated WHERE relid = %u", relid);
	if (SPI_execute(sql, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "raftpg: could not read raftpg.replicated");
	found = SPI_processed > 0;
	SPI_finish();
	return found;
}

static void
update_added_index(Oid relid, uint64 index)
{
	char		sql[160];

	snprintf(sql, sizeof(sql),
			 "UPDATE raftpg.replicated SET added_index = " UINT64_FORMAT " WHERE relid = %u",
			 index, relid);
	SPI_connect();
	spi_exec(sql, SPI_OK_UPDATE);
	SPI_finish();
}

/* the definition as a text[] literal's elements, for check_table_definition */
static char *
definition_array(List *ddl)
{
	ArrayBuildState *astate = NULL;
	ListCell   *lc;

	Oid			out;
	bool		isvarlena;

	foreach(lc, ddl)
		astate = accumArrayResult(astate, CStringGetTextDatum((char *) lfirst(lc)),
								  false, TEXTOID, CurrentMemoryContext);
	getTypeOutputInfo(TEXTARRAYOID, &out, &isvarlena);
	return OidOutputFunctionCall(out, makeArrayResult(astate, CurrentMemoryContext));
}

/* every other member must be able to take the table: ask each one */
static void
check_members(const char *qualname, List *ddl)
{
	RaftpgMember *members = palloc(sizeof(RaftpgMember) * RAFT_MAX_SERVERS);
	uint64		self;
	int			n;
	int			i;
	const char *values[2];

	LWLockAcquire(&RaftpgShmem->lock, LW_SHARED);
	n = RaftpgShmem->n_members;
	memcpy(members, RaftpgShmem->members, sizeof(RaftpgMember) * n);
	self = RaftpgShmem->status.node_id;
	LWLockRelease(&RaftpgShmem->lock);

	values[0] = qualname;
	values[1] = definition_array(ddl);
	for (i = 0; i < n; i++)
	{
		char	   *encoding;

		if (members[i].id == self)
			continue;

		encoding = RaftpgRemoteCall(members[i].name, members[i].conninfo,
									"SELECT pg_catalog.getdatabaseencoding() "
									"FROM raftpg.check_table_definition($1, $2)",
									2, values, "cannot take the table",
									TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
																raftpg_commit_timeout));
		if (encoding == NULL || strcmp(encoding, GetDatabaseEncodingName()) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("node \"%s\" cannot take the table: its database encoding is %s, this one's is %s",
							members[i].name, encoding ? encoding : "unknown",
							GetDatabaseEncodingName()),
					 errdetail("Replicated tables carry text in the server encoding, which must be the same on every node.")));
	}
	pfree(members);
}

/* wait until every member has applied index; warn about those that have not */
static void
wait_members(uint64 index)
{
	RaftpgMember *members = palloc(sizeof(RaftpgMember) * RAFT_MAX_SERVERS);
	TimestampTz deadline =
		TimestampTzPlusMilliseconds(GetCurrentTimestamp(), raftpg_commit_timeout);
	uint64		self;
	int			n;
	int			i;

	LWLockAcquire(&RaftpgShmem->lock, LW_SHARED);
	n = RaftpgShmem->n_members;
	memcpy(members, RaftpgShmem->members, sizeof(RaftpgMember) * n);
	self = RaftpgShmem->status.node_id;
	LWLockRelease(&RaftpgShmem->lock);

	for (i = 0; i < n; i++)
	{
		char		idx[32];
		char		ms[32];
		const char *values[2];
		char	   *volatile ok = NULL;
		MemoryContext cxt = CurrentMemoryContext;

		if (members[i].id == self)
			continue;
		snprintf(idx, sizeof(idx), UINT64_FORMAT, index);
		snprintf(ms, sizeof(ms), "%ld ms", Max(RaftpgRemainingMs(deadline), 1));
		values[0] = idx;
		values[1] = ms;
		PG_TRY();
		{
			ok = RaftpgRemoteCall(members[i].name, members[i].conninfo,
								  "SELECT raftpg.wait_for_index($1, $2)",
								  2, values, "could not be asked",
								  TimestampTzPlusMilliseconds(deadline, 1000));
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			FlushErrorState();
			ereport(WARNING,
					(errmsg("could not confirm that node \"%s\" applied log entry " UINT64_FORMAT ": %s",
							members[i].name, index, edata->message),
					 errhint("It will apply it when it catches up.")));
			FreeErrorData(edata);
			continue;
		}
		PG_END_TRY();
		if (ok == NULL || strcmp(ok, "t") != 0)
			ereport(WARNING,
					(errmsg("node \"%s\" has not applied log entry " UINT64_FORMAT " within raftpg.commit_timeout",
							members[i].name, index),
					 errhint("It will apply it when it catches up.")));
	}
	pfree(members);
}

/*
 * Put what this function captured through Raft now.  Once that returned,
 * the entry is committed, and the local transaction must commit too: the
 * rest of the function runs with interrupts held (its waits have their own
 * deadline) and turns its errors into warnings; the caller resumes
 * interrupts before returning.
 */
static uint64
commit_now(void)
{
	uint64		index = CaptureCommitNow();

	HOLD_INTERRUPTS();
	return index;
}

/*
 * The end of what commit_now() began.  A cancel that arrived meanwhile is
 * dropped: the work it would cancel is committed by the cluster, and
 * rolling back the local transaction now would only make this node differ.
 */
static void
finish_interrupts(void)
{
	QueryCancelPending = false;
	RESUME_INTERRUPTS();
}

/* one replicate_table() or unreplicate_table() per transaction */
static void
check_once(const char *fn)
{
	if (CaptureHasProposed())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s cannot run twice in one transaction", fn),
				 errhint("Call it in a statement of its own for each table.")));
}

PG_FUNCTION_INFO_V1(raftpg_replicate_table);

/* raftpg.replicate_table(regclass) -> bigint */
Datum
raftpg_replicate_table(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	List	   *ddl;
	char	   *qualname;
	StringInfoData rec;
	ListCell   *lc;
	Relation	rel;
	TableScanDesc scan;
	TupleTableSlot *slot;
	Snapshot	snap;
	MemoryContext rowcxt;
	uint64		index;

	RaftpgCheckPreloaded();
	RaftpgRequireSuperuser("raftpg.replicate_table()");
	RaftpgRequireRaftpgDatabase();
	PreventInTransactionBlock(true, "raftpg.replicate_table()");
	check_once("raftpg.replicate_table()");
	RaftpgRequireLeader();

	RaftpgCheckReplicable(relid, false);
	LockRelationOid(relid, ExclusiveLock);
	ddl = RaftpgTableDefinition(relid);
	qualname = RaftpgQualifiedName(relid);

	check_members(qualname, ddl);

	install(relid, 0);

	/* the definition, then the rows */
	initStringInfo(&rec);
	ChangesPutStr(&rec, get_namespace_name(get_rel_namespace(relid)));
	ChangesPutStr(&rec, get_rel_name(relid));
	ChangesPutU16(&rec, (uint16) list_length(ddl));
	foreach(lc, ddl)
	{
		const char *stmt = lfirst(lc);

		ChangesPutU32(&rec, (uint32) strlen(stmt));
		appendBinaryStringInfoNT(&rec, stmt, (int) strlen(stmt));
	}
	CaptureAppendRecord(RAFTPG_REC_ADD_TABLE, rec.data, rec.len);

	/*
	 * The rows as of now: writers that held the table when this statement
	 * began have committed while we waited for the lock, and the
	 * statement's snapshot would miss their rows.
	 */
	snap = RegisterSnapshot(GetLatestSnapshot());
	rel = table_open(relid, NoLock);
	slot = table_slot_create(rel, NULL);
	scan = table_beginscan(rel, snap, 0, NULL);
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "raftpg replicate row",
								   ALLOCSET_DEFAULT_SIZES);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		should_free;
		HeapTuple	tup = ExecFetchSlotHeapTuple(slot, false, &should_free);
		MemoryContext old = MemoryContextSwitchTo(rowcxt);

		CaptureInsertRow(rel, tup);
		MemoryContextSwitchTo(old);
		MemoryContextReset(rowcxt);
		if (should_free)
			heap_freetuple(tup);
		CHECK_FOR_INTERRUPTS();
	}
	MemoryContextDelete(rowcxt);
	table_endscan(scan);
	UnregisterSnapshot(snap);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, NoLock);

	SequencesReplicateTable(relid);

	index = commit_now();
	update_added_index(relid, index);
	wait_members(index);
	finish_interrupts();
	PG_RETURN_INT64((int64) index);
}

PG_FUNCTION_INFO_V1(raftpg_unreplicate_table);

/* raftpg.unreplicate_table(regclass) -> bigint */
Datum
raftpg_unreplicate_table(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	StringInfoData rec;
	uint64		index;

	RaftpgCheckPreloaded();
	RaftpgRequireSuperuser("raftpg.unreplicate_table()");
	RaftpgRequireRaftpgDatabase();
	PreventInTransactionBlock(true, "raftpg.unreplicate_table()");
	check_once("raftpg.unreplicate_table()");
	RaftpgRequireLeader();

	LockRelationOid(relid, ExclusiveLock);
	if (!is_replicated(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not replicated", get_rel_name(relid))));

	initStringInfo(&rec);
	ChangesPutStr(&rec, get_namespace_name(get_rel_namespace(relid)));
	ChangesPutStr(&rec, get_rel_name(relid));
	CaptureAppendRecord(RAFTPG_REC_UNREPLICATE, rec.data, rec.len);
	uninstall(relid);
	SequencesUnreplicate(relid);

	index = commit_now();
	wait_members(index);
	finish_interrupts();
	PG_RETURN_INT64((int64) index);
}

/* ----------
 * Apply, on the other nodes
 * ----------
 */

/* is the table empty? */
static bool
table_is_empty(Oid relid)
{
	Relation	rel = table_open(relid, AccessShareLock);
	TableScanDesc scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	bool		empty = !table_scan_getnextslot(scan, ForwardScanDirection, slot);

	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, AccessShareLock);
	return empty;
}

void
ReplicateApplyAddTable(RaftpgReader *r, uint64 index, bool origin_here)
{
	char	   *nspname = ChangesGetStr(r);
	char	   *relname = ChangesGetStr(r);
	uint16		n = ChangesGetU16(r);
	List	   *ddl = NIL;
	Oid			relid;
	int			i;

	for (i = 0; i < n; i++)
	{
		uint32		len = ChangesGetU32(r);
		const char *p = ChangesGetBytes(r, len);

		ddl = lappend(ddl, pnstrdup(p, len));
	}

	relid = RangeVarGetRelid(makeRangeVar(nspname, relname, -1), AccessExclusiveLock, true);
	if (OidIsValid(relid))
	{
		List	   *local = RaftpgTableDefinition(relid);
		ListCell   *a;
		ListCell   *b;

		if (list_length(local) != list_length(ddl))
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_TABLE),
					 errmsg("a different table named \"%s.%s\" exists on this node",
							nspname, relname),
					 errhint("Drop or rename it; apply resumes with the next attempt.")));
		forboth(a, local, b, ddl)
			if (strcmp(lfirst(a), lfirst(b)) != 0)
				ereport(ERROR,
						(errcode(ERRCODE_DUPLICATE_TABLE),
						 errmsg("a different table named \"%s.%s\" exists on this node",
								nspname, relname),
						 errdetail("Here: %s; on the leader: %s",
								   (char *) lfirst(a), (char *) lfirst(b)),
						 errhint("Drop or rename it; apply resumes with the next attempt.")));
		if (origin_here && !table_is_empty(relid))
		{
			/*
			 * This node wrote the entry but its own transaction did not
			 * commit: the table holds its old rows, the entry holds them as
			 * the cluster has them.
			 */
			char		sql[NAMEDATALEN * 2 + 32];

			snprintf(sql, sizeof(sql), "TRUNCATE %s", quote_qualified_identifier(nspname, relname));
			SPI_connect();
			spi_exec(sql, SPI_OK_UTILITY);
			SPI_finish();
		}
		else if (!table_is_empty(relid))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("table \"%s.%s\" exists on this node and is not empty",
							nspname, relname),
					 errhint("Empty or drop it; apply resumes with the next attempt.")));
		if (is_replicated(relid))
			uninstall(relid);
	}
	else
	{
		ListCell   *lc;

		SPI_connect();
		if (!OidIsValid(get_namespace_oid(nspname, true)))
			spi_exec(psprintf("CREATE SCHEMA %s", quote_identifier(nspname)),
					 SPI_OK_UTILITY);
		foreach(lc, ddl)
			spi_exec(lfirst(lc), SPI_OK_UTILITY);
		SPI_finish();
		CommandCounterIncrement();
		relid = RangeVarGetRelid(makeRangeVar(nspname, relname, -1), AccessExclusiveLock, false);
	}
	install(relid, index);
}

void
ReplicateApplyUnreplicate(RaftpgReader *r)
{
	char	   *nspname = ChangesGetStr(r);
	char	   *relname = ChangesGetStr(r);
	Oid			relid = RangeVarGetRelid(makeRangeVar(nspname, relname, -1),
										 AccessExclusiveLock, true);

	if (OidIsValid(relid))
	{
		uninstall(relid);
		SequencesUnreplicate(relid);
	}
}

/* ----------
 * Snapshot install (snapshot.c)
 * ----------
 */

/*
 * Put relid under Raft as added at added_index, or only note that index if
 * it is already.
 */
void
ReplicateSnapshotInstall(Oid relid, uint64 added_index)
{
	if (is_replicated(relid))
		update_added_index(relid, added_index);
	else
		install(relid, added_index);
}

/*
 * A table of the snapshot's source exists here: may its definition and
 * rows be replaced?  A replicated one's may (they are the cluster's); a
 * local table's only if it is defined the same and empty, as when a table
 * is added (ReplicateApplyAddTable()): no local data is thrown away.
 */
void
ReplicateSnapshotCheck(Oid relid, bool same)
{
	if (is_replicated(relid))
		return;
	if (!same)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("a different table named %s exists on this node",
						RaftpgQualifiedName(relid)),
				 errhint("Drop or rename it; the snapshot is asked for again.")));
	if (!table_is_empty(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table %s exists on this node and is not empty",
						RaftpgQualifiedName(relid)),
				 errhint("Empty or drop it; the snapshot is asked for again.")));
}

/*
 * Take a table out of Raft here: one the snapshot's source does not
 * replicate (it stays as a local table), or one to be dropped and created
 * again.
 */
void
ReplicateSnapshotUninstall(Oid relid)
{
	if (is_replicated(relid))
	{
		uninstall(relid);
		SequencesUnreplicate(relid);
	}
}
