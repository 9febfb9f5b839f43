/*-------------------------------------------------------------------------
 *
 * snapshot.c
 *	  Snapshots: a node that needs log entries no longer kept copies the
 *	  replicated tables from another node instead of replaying them.
 *
 * Every node compacts raftpg.log (node.c): it deletes entries it applied
 * long ago.  A peer that needs one of them -- a new member, or one that
 * was away for long -- gets a snapshot instead: the consensus core sends
 * it a SNAPSHOT message that names the leader and the least index the
 * snapshot must reach.  There are no snapshot files: the state machine is
 * the replicated tables, and the source's tables, read in one MVCC
 * snapshot, are the snapshot.  The node worker hands the request to the
 * apply worker (it may take long, and only apply writes those tables),
 * which does all of this in ONE local transaction (SnapshotCopy(), then
 * apply.c writes raftpg.apply_state and commits):
 *
 *	  1. connect to the source (the leader that asked), wait until it has
 *		 applied the index asked for, and open a REPEATABLE READ
 *		 transaction there whose replicated tables are locked against DDL
 *		 before its snapshot is taken (LOCK TABLE takes none);
 *	  2. read there, all in that snapshot: raftpg.apply_state (the index
 *		 and term applied and the configuration in force there), the
 *		 replicated tables with their definitions, the fences of their
 *		 sequences, and raftpg.origin_commits;
 *	  3. here: stop replicating the tables the source does not replicate
 *		 (they stay as local tables, rows and all), create those missing,
 *		 re-create those defined otherwise, truncate them all and COPY the
 *		 source's rows into them, set the sequences' fences, and replace
 *		 all origin rows here with the source's.
 *
 * Then the node worker drops the log up to the snapshot's index in a
 * transaction of its own (StorageInstallSnapshot()) and tells the core.  A
 * crash between the two commits leaves the tables ahead of the log, which
 * is harmless: apply waits until the committed log passes them, and the
 * leader sends the snapshot again if the log cannot get there.
 *
 * Why the origin rows travel: a transaction of the source's own writes its
 * changes into the tables itself, once the cluster committed its entries
 * and before the source's apply worker passes them (apply.c).  So the
 * source's tables may hold, beyond its applied index, the changes of some
 * later entries: exactly those whose transactions' rows in
 * raftpg.origin_commits are visible in the same snapshot (it holds rows of
 * earlier ones too, until a TRUNCATE removes them; the copy locks the two
 * tables against that).  Their rows come along, and apply_state
 * here names the source and its commit index as read after the snapshot
 * was taken (import_node, import_until): apply skips those entries here
 * as the source would (apply.c, origin_committed()).
 *
 * Values travel in COPY's text format under the settings apply reads
 * with (DateStyle ISO, IntervalStyle postgres, extra_float_digits 3) and
 * the database encoding: binary COPY would carry type OIDs, which differ
 * between the servers for types that are not built in.
 *
 * src/snapshot.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/copy.h"
#include "commands/tablecmds.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "libpq-fe.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_relation.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "raftpg.h"
#include "ddl.h"
#include "replicate.h"
#include "sequences.h"
#include "snapshot.h"
#include "tabledef.h"

/* how long the source may take to apply what was asked, and to answer */
#define SNAPSHOT_WAIT_APPLIED	"30 s"
#define SNAPSHOT_ANSWER_MS		(60 * 1000)
/* attempts at a snapshot whose set of tables did not change meanwhile */
#define SNAPSHOT_ATTEMPTS		3

typedef struct SnapTable
{
	char	   *nspname;
	char	   *relname;
	char	   *qualified;
	uint64		added_index;
	List	   *ddl;
	Oid			relid;			/* here */
	bool		create;			/* missing here, or to be re-created */
	bool		recreate;		/* defined otherwise here */
} SnapTable;

/* the COPY being read, for snapshot_copy_read() */
static PGconn *copy_conn = NULL;
static const char *copy_name = NULL;
static char *copy_buf = NULL;
static int	copy_len = 0;
static int	copy_pos = 0;
static bool copy_done = false;

/*
 * The source's results not cleared yet: libpq's memory is not the
 * transaction's, so an error must not leave them behind (results_clear()).
 */
#define SNAPSHOT_MAX_RESULTS	8
static PGresult *results[SNAPSHOT_MAX_RESULTS];

static PGresult *
result_keep(PGresult *res)
{
	int			i;

	for (i = 0; i < SNAPSHOT_MAX_RESULTS; i++)
		if (results[i] == NULL)
		{
			results[i] = res;
			return res;
		}
	PQclear(res);
	elog(ERROR, "raftpg: too many results of the snapshot's source at once");
	return NULL;				/* keep the compiler quiet */
}

static void
result_free(PGresult *res)
{
	int			i;

	for (i = 0; i < SNAPSHOT_MAX_RESULTS; i++)
		if (results[i] == res)
			results[i] = NULL;
	PQclear(res);
}

static void
results_clear(void)
{
	int			i;

	for (i = 0; i < SNAPSHOT_MAX_RESULTS; i++)
	{
		if (results[i] != NULL)
			PQclear(results[i]);
		results[i] = NULL;
	}
}

static TimestampTz
answer_deadline(void)
{
	return TimestampTzPlusMilliseconds(GetCurrentTimestamp(), SNAPSHOT_ANSWER_MS);
}

static PGresult *
source_exec(PGconn *conn, const char *name, const char *sql, int nparams,
			const char *const *values)
{
	return result_keep(RaftpgRemoteExec(conn, name, sql, nparams, values,
										"could not serve a snapshot",
										answer_deadline()));
}

static void
source_command(PGconn *conn, const char *name, const char *sql)
{
	result_free(source_exec(conn, name, sql, 0, NULL));
}

/* COPY FROM's data source: the CopyData messages of copy_conn */
static int
snapshot_copy_read(void *outbuf, int minread, int maxread)
{
	int			n = 0;

	while (n < maxread)
	{
		int			r;

		if (copy_pos < copy_len)
		{
			int			take = Min(copy_len - copy_pos, maxread - n);

			memcpy((char *) outbuf + n, copy_buf + copy_pos, take);
			copy_pos += take;
			n += take;
			continue;
		}
		if (copy_done || n >= minread)
			break;
		if (copy_buf != NULL)
			PQfreemem(copy_buf);
		copy_buf = NULL;
		copy_len = copy_pos = 0;
		r = PQgetCopyData(copy_conn, &copy_buf, 1);
		if (r > 0)
			copy_len = r;
		else if (r == 0)
			RaftpgRemoteWait(copy_conn, copy_name, answer_deadline());
		else if (r == -1)
			copy_done = true;
		else
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("lost the connection to node \"%s\" while copying a snapshot",
							copy_name),
					 errdetail("%s", pchomp(PQerrorMessage(copy_conn)))));
	}
	return n;
}

static void
copy_reset(void)
{
	if (copy_buf != NULL)
		PQfreemem(copy_buf);
	copy_buf = NULL;
	copy_len = copy_pos = 0;
	copy_done = false;
	copy_conn = NULL;
	copy_name = NULL;
}

/* COPY the source's rows of t into the (empty) table here */
static uint64
copy_table(PGconn *conn, const char *name, SnapTable *t)
{
	PGresult   *res;
	Relation	rel;
	ParseState *pstate;
	CopyFromState cstate;
	uint64		rows;
	List	   *options;

	res = source_exec(conn, name,
					  psprintf("COPY %s TO STDOUT", t->qualified), 0, NULL);
	if (PQresultStatus(res) != PGRES_COPY_OUT)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("node \"%s\" did not start copying table %s", name,
						t->qualified)));
	result_free(res);

	rel = table_open(t->relid, RowExclusiveLock);
	pstate = make_parsestate(NULL);
	(void) addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock,
										 NULL, false, false);
	options = list_make1(makeDefElem("encoding",
									 (Node *) makeString((char *) GetDatabaseEncodingName()),
									 -1));
	copy_reset();
	copy_conn = conn;
	copy_name = name;
	cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false, snapshot_copy_read,
						   NIL, options);
	rows = CopyFrom(cstate);
	EndCopyFrom(cstate);
	/* the rest of the data, if COPY FROM stopped early, then the result */
	while (!copy_done)
	{
		char		discard[1024];

		if (snapshot_copy_read(discard, 1, sizeof(discard)) == 0 && !copy_done)
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("node \"%s\" sent more than the rows of table %s",
							name, t->qualified)));
	}
	copy_reset();
	for (;;)
	{
		while (PQisBusy(conn))
			RaftpgRemoteWait(conn, name, answer_deadline());
		res = PQgetResult(conn);
		if (res == NULL)
			break;
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
		{
			char	   *msg = pstrdup(pchomp(PQresultErrorMessage(res)));

			PQclear(res);
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("node \"%s\" could not copy table %s: %s", name,
							t->qualified, msg)));
		}
		PQclear(res);
	}
	table_close(rel, NoLock);
	free_parsestate(pstate);
	return rows;
}

/* the source's replicated tables, by qualified name */
#define REPLICATED_TABLES \
"FROM raftpg.replicated r " \
"JOIN pg_catalog.pg_class c ON c.oid = r.relid " \
"JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace " \
"ORDER BY 1"

/* their names, to lock them before the snapshot is taken */
static const char *const tables_query =
"SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) "
REPLICATED_TABLES;

/* ... and in the transaction's snapshot, with their definitions */
static const char *const definitions_query =
"SELECT pg_catalog.format('%I.%I', n.nspname, c.relname), n.nspname, "
"       c.relname, r.added_index, raftpg.table_definition(r.relid) "
REPLICATED_TABLES;

static uint64
result_u64(PGresult *res, int row, int col)
{
	return (uint64) strtou64(PQgetvalue(res, row, col), NULL, 10);
}

/* open the source's transaction, its tables locked; the table list */
static PGresult *
begin_source_snapshot(PGconn *conn, const char *name, PGresult **state)
{
	int			attempt;

	for (attempt = 1;; attempt++)
	{
		PGresult   *before = source_exec(conn, name, tables_query, 0, NULL);
		PGresult   *defs;
		StringInfoData lock;
		bool		same;
		int			i;

		source_command(conn, name,
					   "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
		/*
		 * The origin tables too: their rows go by TRUNCATE (apply.c, "Origin
		 * rows"), which a snapshot taken before it would not survive.
		 */
		initStringInfo(&lock);
		appendStringInfoString(&lock,
							   "LOCK TABLE raftpg.origin_commits_0, raftpg.origin_commits_1");
		for (i = 0; i < PQntuples(before); i++)
			appendStringInfo(&lock, ", %s", PQgetvalue(before, i, 0));
		appendStringInfoString(&lock, " IN ACCESS SHARE MODE");
		source_command(conn, name, lock.data);
		pfree(lock.data);
		/* the first query that takes the transaction's snapshot */
		*state = source_exec(conn, name,
							 "SELECT a.applied_index, a.applied_term, a.config, s.node_id, "
							 "       greatest(s.commit_index, a.import_until) "
							 "FROM raftpg.apply_state a, raftpg.snapshot_source() s",
							 0, NULL);
		defs = source_exec(conn, name, definitions_query, 0, NULL);
		same = PQntuples(defs) == PQntuples(before);
		for (i = 0; same && i < PQntuples(defs); i++)
			same = strcmp(PQgetvalue(defs, i, 0), PQgetvalue(before, i, 0)) == 0;
		result_free(before);
		if (same)
			return defs;
		result_free(defs);
		result_free(*state);
		*state = NULL;
		source_command(conn, name, "ROLLBACK");
		if (attempt == SNAPSHOT_ATTEMPTS)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the replicated tables of node \"%s\" kept changing while a snapshot was taken",
							name),
					 errhint("The snapshot is asked for again.")));
	}
}

/* truncate the tables here, all at once (foreign keys between them) */
static void
truncate_tables(List *tables)
{
	List	   *rels = NIL;
	List	   *relids = NIL;
	ListCell   *lc;

	if (tables == NIL)
		return;
	foreach(lc, tables)
	{
		SnapTable  *t = lfirst(lc);
		Relation	rel = table_open(t->relid, AccessExclusiveLock);

		rels = lappend(rels, rel);
		relids = lappend_oid(relids, t->relid);
	}
	ExecuteTruncateGuts(rels, relids, NIL, DROP_RESTRICT, false);
	foreach(lc, rels)
		table_close((Relation) lfirst(lc), NoLock);
	CommandCounterIncrement();
}

/*
 * Replace the origin rows here with the source's, put into the origin
 * table that is current (apply.c, "Origin rows"): the changes of the
 * transactions this node committed are gone with the copy, so that their
 * entries after the snapshot must be applied.
 */
static void
replace_origin_rows(PGresult *origins)
{
	StringInfoData inc;
	StringInfoData fxid;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	char		query[256];
	int			i;

	initStringInfo(&inc);
	initStringInfo(&fxid);
	appendStringInfoChar(&inc, '{');
	appendStringInfoChar(&fxid, '{');
	for (i = 0; i < PQntuples(origins); i++)
	{
		appendStringInfo(&inc, "%s%s", i > 0 ? "," : "", PQgetvalue(origins, i, 0));
		appendStringInfo(&fxid, "%s%s", i > 0 ? "," : "", PQgetvalue(origins, i, 1));
	}
	appendStringInfoChar(&inc, '}');
	appendStringInfoChar(&fxid, '}');
	values[0] = CStringGetTextDatum(inc.data);
	values[1] = CStringGetTextDatum(fxid.data);
	snprintf(query, sizeof(query),
			 "INSERT INTO raftpg.origin_commits_%u "
			 "SELECT * FROM unnest($1::bigint[], $2::bigint[])",
			 pg_atomic_read_u32(&RaftpgShmem->origin_gen) & 1);
	SPI_connect();
	if (SPI_execute("DELETE FROM raftpg.origin_commits_0", false, 0) != SPI_OK_DELETE ||
		SPI_execute("DELETE FROM raftpg.origin_commits_1", false, 0) != SPI_OK_DELETE ||
		SPI_execute_with_args(query, 2, types, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "raftpg: could not replace the origin rows with the source's");
	SPI_finish();
}

/*
 * Is stmt, of the definition of the table named qualified, the one that
 * adds a foreign key (named conname, if not NULL)?  The definition's
 * statements are tabledef.c's: "ALTER TABLE <table> ADD CONSTRAINT <name>
 * FOREIGN KEY ...".
 */
static bool
is_foreign_key(const char *stmt, const char *qualified, const char *conname)
{
	const char *p;
	char	   *prefix = psprintf("ALTER TABLE %s ADD CONSTRAINT ", qualified);
	size_t		len = strlen(prefix);

	if (strncmp(stmt, prefix, len) != 0)
		return false;
	p = stmt + len;
	if (conname != NULL)
	{
		const char *q = quote_identifier(conname);

		if (strncmp(p, q, strlen(q)) != 0)
			return false;
		p += strlen(q);
	}
	else if (*p == '"')
	{
		for (p++; *p != '\0'; p++)
			if (*p == '"' && *++p != '"')
				break;
	}
	else
		while (*p != '\0' && *p != ' ')
			p++;
	return strncmp(p, " FOREIGN KEY", 12) == 0;
}

static void
spi_run(const char *sql)
{
	if (SPI_execute(sql, false, 0) < 0)
		elog(ERROR, "raftpg: \"%s\" failed", sql);
}

/*
 * Before t, defined otherwise here, is dropped: drop the foreign keys of
 * the other replicated tables of the snapshot that reference it, and note
 * them in *readd as (table, constraint name) to add again from their
 * definitions.  A foreign key of any other table makes it an error: the
 * table cannot be re-created without losing it.
 */
static void
drop_references(SnapTable *t, List *tables, List **readd)
{
	char	   *sql = psprintf("SELECT conrelid, conname FROM pg_catalog.pg_constraint "
							   "WHERE contype = 'f' AND confrelid = %u AND conrelid <> %u",
							   t->relid, t->relid);
	MemoryContext outer = CurrentMemoryContext;
	uint64		i;

	SPI_connect();
	if (SPI_execute(sql, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "raftpg: could not read pg_constraint");
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Oid			from = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
														  SPI_tuptable->tupdesc, 1, &isnull));
		char	   *conname = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		char	   *qualified = RaftpgQualifiedName(from);
		SnapTable  *ref = NULL;
		ListCell   *lc;
		MemoryContext spi;

		foreach(lc, tables)
			if (strcmp(((SnapTable *) lfirst(lc))->qualified, qualified) == 0)
				ref = lfirst(lc);
		if (ref == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("table %s must be re-created from the snapshot, but foreign key \"%s\" of table %s references it",
							t->qualified, conname, qualified),
					 errhint("Drop that foreign key; the snapshot is asked for again.")));
		spi = MemoryContextSwitchTo(outer);
		*readd = lappend(*readd, list_make2(ref, pstrdup(conname)));
		MemoryContextSwitchTo(spi);
		spi_run(psprintf("ALTER TABLE %s DROP CONSTRAINT %s", qualified,
						 quote_identifier(conname)));
	}
	SPI_finish();
}

/*
 * Make the source's replicated tables exist here as it defines them:
 * create the missing ones and re-create those defined otherwise, without
 * their foreign keys (they may reference each other, in any order), and
 * put them all under Raft.  Their rows are not touched.  Returns the
 * foreign keys of tables kept that were dropped, for add_foreign_keys().
 */
static List *
prepare_tables(List *tables)
{
	List	   *readd = NIL;
	ListCell   *lc;
	ListCell   *s;

	foreach(lc, tables)
	{
		SnapTable  *t = lfirst(lc);

		t->relid = RangeVarGetRelid(makeRangeVar(t->nspname, t->relname, -1),
									AccessExclusiveLock, true);
		t->create = !OidIsValid(t->relid);
		if (!t->create)
		{
			bool		same = RaftpgDefinitionDifference(RaftpgTableDefinition(t->relid),
														  t->ddl) < 0;

			ReplicateSnapshotCheck(t->relid, same);
			t->create = t->recreate = !same;
		}
	}

	DdlBeginInternal();
	foreach(lc, tables)
	{
		SnapTable  *t = lfirst(lc);

		if (!t->recreate)
			continue;
		ereport(LOG,
				(errmsg("raftpg: table %s is defined differently on the snapshot's source: re-creating it",
						t->qualified)));
		drop_references(t, tables, &readd);
		ReplicateSnapshotUninstall(t->relid);
		SPI_connect();
		spi_run(psprintf("DROP TABLE %s", t->qualified));
		SPI_finish();
		CommandCounterIncrement();
	}

	SPI_connect();
	foreach(lc, tables)
	{
		SnapTable  *t = lfirst(lc);

		if (!t->create)
			continue;
		if (!OidIsValid(get_namespace_oid(t->nspname, true)))
			spi_run(psprintf("CREATE SCHEMA %s", quote_identifier(t->nspname)));
		foreach(s, t->ddl)
			if (!is_foreign_key(lfirst(s), t->qualified, NULL))
				spi_run(lfirst(s));
	}
	SPI_finish();
	DdlEndInternal();
	CommandCounterIncrement();

	foreach(lc, tables)
	{
		SnapTable  *t = lfirst(lc);

		if (t->create)
			t->relid = RangeVarGetRelid(makeRangeVar(t->nspname, t->relname, -1),
										AccessExclusiveLock, false);
		ReplicateSnapshotInstall(t->relid, t->added_index);
	}
	CommandCounterIncrement();
	return readd;
}

/*
 * The foreign keys prepare_tables() left out: those of the tables it
 * created, and those of tables kept that it dropped with what they
 * referenced.  After the truncation, so that checking them costs nothing.
 */
static void
add_foreign_keys(List *tables, List *readd)
{
	ListCell   *lc;
	ListCell   *s;

	DdlBeginInternal();
	SPI_connect();
	foreach(lc, tables)
	{
		SnapTable  *t = lfirst(lc);

		if (!t->create)
			continue;
		foreach(s, t->ddl)
			if (is_foreign_key(lfirst(s), t->qualified, NULL))
				spi_run(lfirst(s));
	}
	foreach(lc, readd)
	{
		SnapTable  *t = linitial(lfirst(lc));
		char	   *conname = lsecond(lfirst(lc));

		if (t->create)
			continue;
		foreach(s, t->ddl)
			if (is_foreign_key(lfirst(s), t->qualified, conname))
				spi_run(lfirst(s));
	}
	SPI_finish();
	DdlEndInternal();
	CommandCounterIncrement();
}

/*
 * Copy a snapshot from node name at conninfo that reaches index min_index
 * at least into this node's tables, in the current transaction, as the
 * file's header says; *res describes it.  Everything but raftpg.apply_state,
 * which the caller writes.
 */
void
SnapshotCopy(const char *name, const char *conninfo, uint64 min_index,
			 SnapshotResult *res)
{
	PGconn	   *volatile conn;

	memset(res, 0, sizeof(*res));
	conn = RaftpgRemoteConnect(name, conninfo, answer_deadline());
	PG_TRY();
	{
		PGresult   *pr;
		PGresult   *state = NULL;
		PGresult   *defs;
		PGresult   *fences;
		PGresult   *origins;
		const char *values[2];
		char		idx[32];
		List	   *tables = NIL;
		List	   *readd;
		ListCell   *lc;
		int			i;
		SPITupleTable *tt;
		MemoryContext outer;

		source_command(conn, name,
					   psprintf("SET DateStyle = 'ISO, MDY'; SET IntervalStyle = postgres; "
								"SET extra_float_digits = 3; SET client_encoding = '%s'",
								GetDatabaseEncodingName()));

		/* the source must have applied what the leader's log no longer has */
		snprintf(idx, sizeof(idx), UINT64_FORMAT, min_index);
		values[0] = idx;
		values[1] = SNAPSHOT_WAIT_APPLIED;
		pr = source_exec(conn, name, "SELECT raftpg.wait_for_index($1, $2)",
						 2, values);
		if (PQntuples(pr) != 1 || strcmp(PQgetvalue(pr, 0, 0), "t") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("node \"%s\" has not applied log entry " UINT64_FORMAT " yet",
							name, min_index),
					 errhint("The snapshot is asked for again.")));
		result_free(pr);

		defs = begin_source_snapshot(conn, name, &state);
		if (PQntuples(state) != 1)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("node \"%s\" has no apply state", name)));
		res->index = result_u64(state, 0, 0);
		res->term = result_u64(state, 0, 1);
		if (!PQgetisnull(state, 0, 2))
			res->config = DatumGetByteaPP(DirectFunctionCall1(byteain,
															  CStringGetDatum(PQgetvalue(state, 0, 2))));
		res->import_node = result_u64(state, 0, 3);
		res->import_until = result_u64(state, 0, 4);
		result_free(state);
		if (res->index < min_index || res->config == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("node \"%s\" offers a snapshot at index " UINT64_FORMAT ", not at " UINT64_FORMAT " or later",
							name, res->index, min_index)));

		for (i = 0; i < PQntuples(defs); i++)
		{
			SnapTable  *t = palloc0(sizeof(SnapTable));
			Datum		arr;

			t->qualified = pstrdup(PQgetvalue(defs, i, 0));
			t->nspname = pstrdup(PQgetvalue(defs, i, 1));
			t->relname = pstrdup(PQgetvalue(defs, i, 2));
			t->added_index = result_u64(defs, i, 3);
			arr = OidInputFunctionCall(F_ARRAY_IN, PQgetvalue(defs, i, 4),
									   TEXTOID, -1);
			t->ddl = RaftpgDefinitionFromArray(DatumGetArrayTypeP(arr));
			tables = lappend(tables, t);
		}
		result_free(defs);
		/* the sequences: schema, name, ..., fence (sequences.c) */
		fences = source_exec(conn, name,
							 SequencesOwnedQuery(InvalidOid),
							 0, NULL);
		origins = source_exec(conn, name,
							  "SELECT incarnation, fxid FROM raftpg.origin_commits",
							  0, NULL);

		/* here: first the tables this node replicates and the source not */
		outer = CurrentMemoryContext;
		SPI_connect();
		if (SPI_execute("SELECT relid FROM raftpg.replicated", true, 0) != SPI_OK_SELECT)
			elog(ERROR, "raftpg: could not read raftpg.replicated");
		tt = SPI_tuptable;
		for (i = 0; i < (int) SPI_processed; i++)
		{
			bool		isnull;
			Oid			relid = DatumGetObjectId(SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull));
			char	   *q = RaftpgQualifiedName(relid);
			bool		found = false;

			foreach(lc, tables)
				if (strcmp(((SnapTable *) lfirst(lc))->qualified, q) == 0)
					found = true;
			if (!found)
			{
				MemoryContext spi = MemoryContextSwitchTo(outer);

				res->dropped = lappend_oid(res->dropped, relid);
				MemoryContextSwitchTo(spi);
			}
		}
		SPI_finish();
		foreach(lc, res->dropped)
		{
			ereport(LOG,
					(errmsg("raftpg: table %s is not replicated on the snapshot's source: it stays here as a local table",
							RaftpgQualifiedName(lfirst_oid(lc)))));
			ReplicateSnapshotUninstall(lfirst_oid(lc));
		}

		readd = prepare_tables(tables);
		truncate_tables(tables);
		add_foreign_keys(tables, readd);
		foreach(lc, tables)
		{
			SnapTable  *t = lfirst(lc);
			uint64		rows = copy_table(conn, name, t);

			res->rows += rows;
			res->tables++;
			ereport(LOG,
					(errmsg("raftpg: snapshot from node \"%s\": copied " UINT64_FORMAT " rows of table %s",
							name, rows, t->qualified)));
		}
		CommandCounterIncrement();
		for (i = 0; i < PQntuples(fences); i++)
			SequencesSnapshotFence(PQgetvalue(fences, i, 0),
								   PQgetvalue(fences, i, 1),
								   (int64) strtoi64(PQgetvalue(fences, i, 3), NULL, 10));
		result_free(fences);
		replace_origin_rows(origins);
		res->origin_rows = PQntuples(origins);
		result_free(origins);
		source_command(conn, name, "ROLLBACK");
	}
	PG_CATCH();
	{
		copy_reset();
		results_clear();
		PQfinish(conn);
		PG_RE_THROW();
	}
	PG_END_TRY();
	PQfinish(conn);
}

/*
 * raftpg.snapshot_source(): what a node copying a snapshot from this one
 * reads beside the tables, after the snapshot was taken -- this node's id
 * and its commit index, which is at least the index of every transaction
 * of its own that the snapshot shows committed (they commit only once the
 * cluster has).
 */
PG_FUNCTION_INFO_V1(raftpg_snapshot_source);
Datum
raftpg_snapshot_source(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};

	RaftpgCheckPreloaded();
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	LWLockAcquire(&RaftpgShmem->lock, LW_SHARED);
	values[0] = Int64GetDatum((int64) RaftpgShmem->status.node_id);
	values[1] = Int64GetDatum((int64) RaftpgShmem->status.commit_index);
	LWLockRelease(&RaftpgShmem->lock);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc),
													  values, nulls)));
}
