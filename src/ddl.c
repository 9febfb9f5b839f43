/*-------------------------------------------------------------------------
 *
 * ddl.c
 *	  DDL on replicated tables, replicated in log order.
 *
 * A statement that changes the definition of a replicated table (ALTER
 * TABLE, renaming the table, a column, a constraint or an index, SET
 * SCHEMA, CREATE INDEX, DROP TABLE, DROP INDEX) must run on every server,
 * at the same point of the table's history.  The utility hook runs it
 * like any change of the table: on the leader it appends an 'S' record
 * (the statement's own text, the search path it was resolved with, and
 * the settings that change how its constants read) to the transaction's
 * capture stream, tagged with the current command id, before the
 * statement runs.  Capture sorts records by command id, so the rows the
 * transaction wrote before the statement come before it in the log, and
 * the rows written after it come after; at commit the whole goes through
 * Raft like any transaction, and every other node's apply worker runs the
 * statement between the same rows (DdlApply).  Capture's layout cache is
 * invalidated by the statement's relcache invalidation, so the next change
 * to the table carries a fresh 'R' record with the new columns.
 *
 * On a follower such a statement is refused (25006, naming the leader),
 * as a write would be.  Statements that would unhook the table from
 * replication or make it something raftpg cannot replicate are refused
 * everywhere (0A000): SET ACCESS METHOD, SET UNLOGGED, enabling or
 * disabling the raftpg triggers (by name, ALL or USER), dropping or
 * renaming them, partitions and inheritance, CONCURRENTLY (it cannot run
 * in the transaction that carries the record), foreign keys to tables that
 * are not replicated, and statements that mix replicated tables with
 * others.  What raftpg.table_definition() does not show stays local to
 * each server and is allowed anywhere: owner, tablespace, storage
 * parameters, statistics targets, CLUSTER ON, replica identity, rules, row
 * security, and the user's own triggers.
 *
 * After the statement has run, the leader checks what would make the
 * servers diverge, while the transaction can still roll back (nothing is
 * proposed before commit): the table must keep its primary key, by which
 * other servers find rows; and where the statement computes values for
 * existing rows (a column added with a default, an identity or serial
 * column, ALTER COLUMN TYPE's conversion), the expression must be
 * immutable, or the table empty, since every server computes those values
 * itself.
 *
 * An object access hook refuses to drop a replicated table or one of its
 * columns as a side effect of another statement (DROP SCHEMA ... CASCADE,
 * DROP TYPE ... CASCADE, DROP OWNED), which would happen on this server
 * only.
 *
 * Whether a table is replicated is cached per backend and relid: the
 * statements that put a table under Raft or take it out create or drop
 * its triggers, whose relcache invalidation clears the entry.  Statements
 * that touch no replicated table cost a name lookup and a hash probe; a
 * table that became replicated while the statement waited for its lock is
 * caught after it ran (40001).
 *
 * The apply worker runs the statement under the recorded search path and
 * settings, with this hook passive.  A DROP TABLE takes the table's row in
 * raftpg.replicated with it, on the leader in the hook and elsewhere when
 * the record is applied.
 *
 * src/ddl.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_class.h"
#include "commands/tablecmds.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_coerce.h"
#include "parser/parse_expr.h"
#include "parser/parse_node.h"
#include "parser/parse_relation.h"
#include "parser/parse_type.h"
#include "parser/scansup.h"
#include "storage/lmgr.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/varlena.h"

#include "raftpg.h"
#include "capture.h"
#include "changes.h"
#include "ddl.h"
#include "sequences.h"
#include "tabledef.h"

#define RAFTPG_TRIGGER_PREFIX	"raftpg_"

/*
 * The settings that change how a statement's text reads (the constants of
 * a default, a USING clause), shipped with it and set around it on every
 * server.  The search path travels separately, resolved.
 */
static const char *const ddl_settings[] = {
	"DateStyle",
	"IntervalStyle",
	"TimeZone",
	"standard_conforming_strings",
};

#define DDL_NSETTINGS	((int) lengthof(ddl_settings))

static ProcessUtility_hook_type prev_ProcessUtility = NULL;
static object_access_hook_type prev_object_access = NULL;

/* is relid replicated?  a backend-local cache */
typedef struct DdlCacheEntry
{
	Oid			relid;			/* hash key */
	bool		replicated;
} DdlCacheEntry;

static HTAB *ddl_cache = NULL;

/* raftpg.replicated, resolved when the extension is found */
static Oid	replicated_relid = InvalidOid;

/* replicated tables the statement being replicated may drop parts of */
static List *ddl_allowed = NIL;

/* DdlBeginInternal() depth */
static int	ddl_internal = 0;

/* What a statement does to which tables. */
typedef enum DdlAction
{
	DDL_LOCAL,					/* run it here only */
	DDL_REPLICATE				/* run it everywhere, in log order */
} DdlAction;

typedef struct DdlTargets
{
	DdlAction	action;
	List	   *replicated;		/* replicated tables it touches */
	List	   *plain;			/* other tables it touches */
	bool		drops_tables;	/* DROP TABLE */
	AlterTableStmt *alter;		/* ALTER TABLE on a replicated table */
} DdlTargets;

/* What the checks after an ALTER TABLE need from before it. */
typedef struct DdlFills
{
	bool		prepared;
	int			old_natts;		/* columns above this one were added */
	List	   *conversions;	/* columns converted with a mutable expression */
} DdlFills;

static void ddl_process_utility(PlannedStmt *pstmt, const char *queryString,
								bool readOnlyTree,
								ProcessUtilityContext context,
								ParamListInfo params,
								QueryEnvironment *queryEnv,
								DestReceiver *dest, QueryCompletion *qc);
static void ddl_object_access(ObjectAccessType access, Oid classId,
							  Oid objectId, int subId, void *arg);
static void ddl_relcache_callback(Datum arg, Oid relid);
static void ddl_xact_callback(XactEvent event, void *arg);

void
DdlInit(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = ddl_process_utility;
	prev_object_access = object_access_hook;
	object_access_hook = ddl_object_access;
	CacheRegisterRelcacheCallback(ddl_relcache_callback, (Datum) 0);
	RegisterXactCallback(ddl_xact_callback, NULL);
}

void
DdlBeginInternal(void)
{
	ddl_internal++;
}

void
DdlEndInternal(void)
{
	if (ddl_internal > 0)
		ddl_internal--;
}

static void
ddl_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			ddl_internal = 0;
			ddl_allowed = NIL;
			break;
		default:
			break;
	}
}

/* ----------
 * Is a table replicated?
 * ----------
 */

static void
ddl_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == replicated_relid)
	{
		replicated_relid = InvalidOid;
		if (ddl_cache != NULL)
		{
			hash_destroy(ddl_cache);
			ddl_cache = NULL;
		}
		return;
	}
	if (ddl_cache != NULL)
		(void) hash_search(ddl_cache, &relid, HASH_REMOVE, NULL);
}

/* raftpg.replicated, or InvalidOid where the extension is not installed */
static Oid
ddl_replicated_relid(void)
{
	if (!OidIsValid(replicated_relid))
	{
		Oid			nsp = get_namespace_oid("raftpg", true);

		if (OidIsValid(nsp))
			replicated_relid = get_relname_relid("replicated", nsp);
	}
	return replicated_relid;
}

/* look relid up in raftpg.replicated, with a snapshot taken now */
static bool
ddl_lookup(Oid relid)
{
	Oid			rr = ddl_replicated_relid();
	Relation	rel;
	TableScanDesc scan;
	TupleTableSlot *slot;
	ScanKeyData key;
	Snapshot	snap;
	bool		found;

	if (!OidIsValid(rr))
		return false;

	/*
	 * A plain scan with a key, not the primary key index: the table holds a
	 * row per replicated table, and DROP EXTENSION may have dropped the
	 * index before it asks us about a table.
	 */
	rel = table_open(rr, AccessShareLock);
	snap = RegisterSnapshot(GetLatestSnapshot());
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	scan = table_beginscan(rel, snap, 1, &key);
	slot = table_slot_create(rel, NULL);
	found = table_scan_getnextslot(scan, ForwardScanDirection, slot);
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(rel, AccessShareLock);
	return found;
}

static bool
ddl_is_replicated(Oid relid)
{
	DdlCacheEntry *e;
	bool		found;
	bool		replicated;

	if (!OidIsValid(relid) || !OidIsValid(ddl_replicated_relid()))
		return false;
	if (ddl_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(DdlCacheEntry);
		ctl.hcxt = TopMemoryContext;
		ddl_cache = hash_create("raftpg replicated tables", 64, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	e = hash_search(ddl_cache, &relid, HASH_FIND, NULL);
	if (e != NULL)
		return e->replicated;

	/* the lookup may take invalidations that reset the cache: enter after */
	replicated = ddl_lookup(relid);
	if (ddl_cache != NULL)
	{
		e = hash_search(ddl_cache, &relid, HASH_ENTER, &found);
		e->replicated = replicated;
	}
	return replicated;
}

/* the table a relation name stands for: itself, or an index's table */
static Oid
ddl_table_of(RangeVar *rv)
{
	Oid			relid;
	char		relkind;

	if (rv == NULL)
		return InvalidOid;
	relid = RangeVarGetRelid(rv, NoLock, true);
	if (!OidIsValid(relid))
		return InvalidOid;
	relkind = get_rel_relkind(relid);
	if (relkind == RELKIND_INDEX || relkind == RELKIND_PARTITIONED_INDEX)
		relid = IndexGetRelation(relid, true);
	return relid;
}

/* note a table the statement touches, replicated or not */
static bool
ddl_note(DdlTargets *t, Oid relid)
{
	bool		replicated;

	if (!OidIsValid(relid))
		return false;
	replicated = ddl_is_replicated(relid);
	if (replicated)
		t->replicated = list_append_unique_oid(t->replicated, relid);
	else
		t->plain = list_append_unique_oid(t->plain, relid);
	return replicated;
}

static bool
ddl_is_raftpg_trigger(const char *name)
{
	return name != NULL &&
		strncmp(name, RAFTPG_TRIGGER_PREFIX, strlen(RAFTPG_TRIGGER_PREFIX)) == 0;
}

/* ----------
 * What each statement does
 * ----------
 */

static void
ddl_refuse_triggers(Oid relid, const char *trigger, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("cannot %s trigger \"%s\" of replicated table \"%s\"",
					what, trigger, get_rel_name(relid)),
			 errdetail("raftpg captures the table's changes with it."),
			 errhint("To stop replicating the table, use raftpg.unreplicate_table().")));
}

static void
ddl_refuse_mix(Oid replicated, Oid plain)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("cannot use replicated table \"%s\" and table \"%s\", which is not replicated, in one statement",
					get_rel_name(replicated), get_rel_name(plain)),
			 errdetail("raftpg runs a statement on a replicated table on every server, where the other table may not exist or differ."),
			 errhint("Use a separate statement for each table.")));
}

static void
ddl_refuse_hierarchy(Oid relid, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("cannot use %s with replicated table \"%s\"",
					what, get_rel_name(relid)),
			 errdetail("raftpg replicates plain tables, without partitions or inheritance.")));
}

/* a foreign key of a replicated table must point at a replicated table */
static void
ddl_check_reference(Oid relid, Constraint *con)
{
	Oid			other;

	if (con == NULL || con->contype != CONSTR_FOREIGN)
		return;
	other = RangeVarGetRelid(con->pktable, NoLock, true);
	if (!OidIsValid(other) || other == relid || ddl_is_replicated(other))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("replicated table \"%s\" cannot reference table \"%s\", which is not replicated",
					get_rel_name(relid), get_rel_name(other)),
			 errdetail("Other servers apply changes without checking foreign keys, so the constraint would hold there only if both tables are replicated."),
			 errhint("Replicate table \"%s\" first.", get_rel_name(other))));
}

/* Is this subcommand local to each server?  Refuse it if it cannot be. */
static bool
ddl_alter_cmd_is_local(Oid relid, AlterTableCmd *cmd)
{
	ListCell   *lc;

	switch (cmd->subtype)
	{
		case AT_SetAccessMethod:
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot change the access method of replicated table \"%s\"",
							get_rel_name(relid)),
					 errdetail("raftpg replicates heap tables only."),
					 errhint("To stop replicating the table, use raftpg.unreplicate_table().")));
			break;
		case AT_SetUnLogged:
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot make replicated table \"%s\" unlogged",
							get_rel_name(relid)),
					 errhint("To stop replicating the table, use raftpg.unreplicate_table().")));
			break;
		case AT_EnableTrigAll:
		case AT_DisableTrigAll:
		case AT_EnableTrigUser:
		case AT_DisableTrigUser:
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot enable or disable all triggers of replicated table \"%s\"",
							get_rel_name(relid)),
					 errdetail("That would include the raftpg triggers, which capture the table's changes."),
					 errhint("Name the triggers one by one.")));
			break;
		case AT_EnableTrig:
		case AT_EnableAlwaysTrig:
		case AT_EnableReplicaTrig:
		case AT_DisableTrig:
			if (ddl_is_raftpg_trigger(cmd->name))
				ddl_refuse_triggers(relid, cmd->name, "enable or disable");
			return true;		/* the user's own triggers are local */
		case AT_AttachPartition:
		case AT_DetachPartition:
		case AT_DetachPartitionFinalize:
			ddl_refuse_hierarchy(relid, "ATTACH or DETACH PARTITION");
			break;
		case AT_AddInherit:
		case AT_DropInherit:
			ddl_refuse_hierarchy(relid, "INHERIT or NO INHERIT");
			break;

			/* what raftpg.table_definition() does not show */
		case AT_ChangeOwner:
		case AT_SetTableSpace:
		case AT_SetRelOptions:
		case AT_ResetRelOptions:
		case AT_ReplaceRelOptions:
		case AT_SetStatistics:
		case AT_SetOptions:
		case AT_ResetOptions:
		case AT_SetStorage:
		case AT_SetCompression:
		case AT_ClusterOn:
		case AT_DropCluster:
		case AT_SetLogged:
		case AT_ReplicaIdentity:
		case AT_EnableRule:
		case AT_EnableAlwaysRule:
		case AT_EnableReplicaRule:
		case AT_DisableRule:
		case AT_EnableRowSecurity:
		case AT_DisableRowSecurity:
		case AT_ForceRowSecurity:
		case AT_NoForceRowSecurity:
		case AT_GenericOptions:
			return true;

		case AT_AddConstraint:
			ddl_check_reference(relid, (Constraint *) cmd->def);
			break;
		case AT_AddColumn:
			foreach(lc, ((ColumnDef *) cmd->def)->constraints)
				ddl_check_reference(relid, lfirst_node(Constraint, lc));
			break;
		default:
			break;
	}
	return false;
}

static void
ddl_classify_alter(AlterTableStmt *stmt, DdlTargets *t)
{
	Oid			relid = ddl_table_of(stmt->relation);
	int			nlocal = 0;
	int			nreplicated = 0;
	ListCell   *lc;

	if (!ddl_note(t, relid))
	{
		/* a plain table may not take a replicated one as partition or parent */
		foreach(lc, stmt->cmds)
		{
			AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);
			Oid			other = InvalidOid;

			if (cmd->subtype == AT_AttachPartition ||
				cmd->subtype == AT_DetachPartition ||
				cmd->subtype == AT_DetachPartitionFinalize)
				other = ddl_table_of(((PartitionCmd *) cmd->def)->name);
			else if (cmd->subtype == AT_AddInherit ||
					 cmd->subtype == AT_DropInherit)
				other = ddl_table_of((RangeVar *) cmd->def);
			if (OidIsValid(other) && ddl_note(t, other))
				ddl_refuse_hierarchy(other,
									 cmd->subtype == AT_AddInherit ||
									 cmd->subtype == AT_DropInherit ?
									 "INHERIT or NO INHERIT" :
									 "ATTACH or DETACH PARTITION");
		}
		t->action = DDL_LOCAL;
		return;
	}

	foreach(lc, stmt->cmds)
	{
		if (ddl_alter_cmd_is_local(relid, lfirst_node(AlterTableCmd, lc)))
			nlocal++;
		else
			nreplicated++;
	}
	if (nlocal > 0 && nreplicated > 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot mix replicated and local changes of replicated table \"%s\" in one statement",
						get_rel_name(relid)),
				 errdetail("The owner, tablespace, storage parameters, statistics, CLUSTER ON, REPLICA IDENTITY, rules, row level security and the table's own triggers are set on each server; the other changes apply to every server."),
				 errhint("Make the local changes in a statement of their own.")));
	t->action = nreplicated > 0 ? DDL_REPLICATE : DDL_LOCAL;
	t->alter = stmt;
}

static void
ddl_classify_rename(RenameStmt *stmt, DdlTargets *t)
{
	Oid			relid = ddl_table_of(stmt->relation);

	t->action = DDL_LOCAL;
	if (!ddl_note(t, relid))
		return;
	if (stmt->renameType == OBJECT_TRIGGER)
	{
		if (ddl_is_raftpg_trigger(stmt->subname))
			ddl_refuse_triggers(relid, stmt->subname, "rename");
		return;					/* the user's own triggers are local */
	}
	t->action = DDL_REPLICATE;
}

static void
ddl_classify_index(IndexStmt *stmt, DdlTargets *t)
{
	Oid			relid = ddl_table_of(stmt->relation);

	t->action = DDL_LOCAL;
	if (!ddl_note(t, relid))
		return;
	if (stmt->concurrent)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot create index CONCURRENTLY on replicated table \"%s\"",
						get_rel_name(relid)),
				 errdetail("raftpg replicates the statement inside its transaction, and CONCURRENTLY cannot run inside a transaction block."),
				 errhint("Create the index without CONCURRENTLY.")));
	t->action = DDL_REPLICATE;
}

static void
ddl_classify_drop(DropStmt *stmt, const char *queryString,
				  ProcessUtilityContext context, DdlTargets *t)
{
	ListCell   *lc;

	t->action = DDL_LOCAL;
	if (stmt->removeType == OBJECT_TRIGGER)
	{
		List	   *names = linitial_node(List, stmt->objects);
		List	   *relname = list_copy_head(names, list_length(names) - 1);
		const char *trigger = strVal(llast(names));
		Oid			relid = RangeVarGetRelid(makeRangeVarFromNameList(relname),
											 NoLock, true);

		if (!ddl_note(t, relid) || !ddl_is_raftpg_trigger(trigger))
			return;

		ddl_refuse_triggers(relid, trigger, "drop");
	}

	foreach(lc, stmt->objects)
	{
		RangeVar   *rv = makeRangeVarFromNameList(lfirst_node(List, lc));
		Oid			relid = RangeVarGetRelid(rv, NoLock, true);

		if (stmt->removeType == OBJECT_INDEX && OidIsValid(relid))
		{
			char		relkind = get_rel_relkind(relid);

			if (relkind != RELKIND_INDEX && relkind != RELKIND_PARTITIONED_INDEX)
				continue;		/* PostgreSQL says what is wrong */
			relid = IndexGetRelation(relid, true);
		}
		(void) ddl_note(t, relid);
	}
	if (t->replicated == NIL)
		return;
	if (t->plain != NIL)
		ddl_refuse_mix(linitial_oid(t->replicated), linitial_oid(t->plain));
	if (stmt->concurrent)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot drop index CONCURRENTLY on replicated table \"%s\"",
						get_rel_name(linitial_oid(t->replicated))),
				 errdetail("raftpg replicates the statement inside its transaction, and CONCURRENTLY cannot run inside a transaction block."),
				 errhint("Drop the index without CONCURRENTLY.")));
	t->action = DDL_REPLICATE;
	t->drops_tables = stmt->removeType == OBJECT_TABLE;
}

/* the statements the hook looks at; everything else goes straight through */
static bool
ddl_handled(Node *parsetree)
{
	switch (nodeTag(parsetree))
	{
		case T_AlterTableStmt:
		case T_IndexStmt:
			return true;
		case T_RenameStmt:
			switch (((RenameStmt *) parsetree)->renameType)
			{
				case OBJECT_TABLE:
				case OBJECT_COLUMN:
				case OBJECT_TABCONSTRAINT:
				case OBJECT_INDEX:
				case OBJECT_TRIGGER:
					return true;
				default:
					return false;
			}
		case T_AlterObjectSchemaStmt:
			return ((AlterObjectSchemaStmt *) parsetree)->objectType == OBJECT_TABLE;
		case T_DropStmt:
			switch (((DropStmt *) parsetree)->removeType)
			{
				case OBJECT_TABLE:
				case OBJECT_INDEX:
				case OBJECT_TRIGGER:
					return true;
				default:
					return false;
			}
		default:
			return false;
	}
}

static void
ddl_classify(Node *parsetree, const char *queryString,
			 ProcessUtilityContext context, DdlTargets *t)
{
	switch (nodeTag(parsetree))
	{
		case T_AlterTableStmt:
			ddl_classify_alter((AlterTableStmt *) parsetree, t);
			break;
		case T_RenameStmt:
			ddl_classify_rename((RenameStmt *) parsetree, t);
			break;
		case T_AlterObjectSchemaStmt:
			{
				RangeVar   *rv = ((AlterObjectSchemaStmt *) parsetree)->relation;

				t->action = ddl_note(t, ddl_table_of(rv)) ?
					DDL_REPLICATE : DDL_LOCAL;
				break;
			}
		case T_IndexStmt:
			ddl_classify_index((IndexStmt *) parsetree, t);
			break;
		case T_DropStmt:
			ddl_classify_drop((DropStmt *) parsetree, queryString, context, t);
			break;
		default:
			elog(ERROR, "raftpg: unexpected utility statement %d",
				 (int) nodeTag(parsetree));
	}
}

/* ----------
 * The 'S' record
 * ----------
 */

/* the statement's own text in queryString, without its semicolon */
static char *
ddl_statement_text(PlannedStmt *pstmt, const char *queryString)
{
	const char *start;
	size_t		len;

	if (queryString == NULL)
		elog(ERROR, "raftpg: utility statement without query text");
	start = queryString + Max(pstmt->stmt_location, 0);
	len = pstmt->stmt_len > 0 ? (size_t) pstmt->stmt_len : strlen(start);
	while (len > 0 && (start[len - 1] == ';' || scanner_isspace(start[len - 1])))
		len--;
	return pnstrdup(start, len);
}

/*
 * The schemas the search path names that this session can use, as a
 * search_path value: "$user" resolved, missing schemas and the temporary
 * schema left out.  Another server resolves names the way this one did,
 * whoever runs the statement there and whatever schemas exist only there.
 */
static char *
ddl_search_path(void)
{
	char	   *raw = pstrdup(GetConfigOption("search_path", false, false));
	List	   *names;
	ListCell   *lc;
	StringInfoData buf;

	if (!SplitIdentifierString(raw, ',', &names))
		elog(ERROR, "raftpg: invalid search_path \"%s\"", raw);
	initStringInfo(&buf);
	foreach(lc, names)
	{
		char	   *name = lfirst(lc);
		Oid			nsp;

		if (strcmp(name, "$user") == 0)
		{
			name = GetUserNameFromId(GetUserId(), true);
			if (name == NULL)
				continue;
		}
		nsp = get_namespace_oid(name, true);
		if (!OidIsValid(nsp) || isAnyTempNamespace(nsp) ||
			pg_namespace_aclcheck(nsp, GetUserId(), ACL_USAGE) != ACLCHECK_OK)
			continue;
		if (buf.len > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfoString(&buf, quote_identifier(name));
	}
	return buf.data;
}

/*
 * 'S': str search_path, u32 length and the statement's text, u16 n, then n
 * settings as (str name, str value).
 */
static void
ddl_record(PlannedStmt *pstmt, const char *queryString)
{
	char	   *stmt = ddl_statement_text(pstmt, queryString);
	StringInfoData body;
	int			i;

	initStringInfo(&body);
	ChangesPutStr(&body, ddl_search_path());
	ChangesPutU32(&body, (uint32) strlen(stmt));
	appendBinaryStringInfo(&body, stmt, (int) strlen(stmt));
	ChangesPutU16(&body, (uint16) DDL_NSETTINGS);
	for (i = 0; i < DDL_NSETTINGS; i++)
	{
		ChangesPutStr(&body, ddl_settings[i]);
		ChangesPutStr(&body, GetConfigOption(ddl_settings[i], false, false));
	}
	CaptureAppendRecord(RAFTPG_REC_DDL, body.data, body.len);
	pfree(body.data);
}

/* ----------
 * Checks before and after the statement runs on the leader
 * ----------
 */

/*
 * ALTER COLUMN TYPE converts every row with its USING expression, or the
 * column itself, coerced to the new type, as ATPrepAlterColumnType builds
 * it.  Is that expression the same on every server?
 */
static bool
ddl_conversion_is_mutable(Relation rel, AlterTableCmd *cmd,
						  const char *queryString)
{
	ColumnDef  *def = (ColumnDef *) cmd->def;
	AttrNumber	attnum = get_attnum(RelationGetRelid(rel), cmd->name);
	Form_pg_attribute att;
	ParseState *pstate;
	Node	   *expr;
	Oid			typid;
	int32		typmod;

	if (attnum <= 0)
		return false;			/* PostgreSQL says what is wrong */
	att = TupleDescAttr(RelationGetDescr(rel), attnum - 1);
	typenameTypeIdAndMod(NULL, def->typeName, &typid, &typmod);

	pstate = make_parsestate(NULL);
	pstate->p_sourcetext = queryString;
	if (def->raw_default != NULL)
	{
		ParseNamespaceItem *nsitem;

		nsitem = addRangeTableEntryForRelation(pstate, rel, AccessShareLock,
											   NULL, false, true);
		addNSItemToQuery(pstate, nsitem, false, true, true);
		expr = transformExpr(pstate, copyObject(def->raw_default),
							 EXPR_KIND_ALTER_COL_TRANSFORM);
	}
	else
		expr = (Node *) makeVar(1, attnum, att->atttypid, att->atttypmod,
								att->attcollation, 0);
	expr = coerce_to_target_type(pstate, expr, exprType(expr), typid, typmod,
								 COERCION_ASSIGNMENT, COERCE_IMPLICIT_CAST, -1);
	free_parsestate(pstate);
	return expr != NULL && contain_mutable_functions(expr);
}

/*
 * Before an ALTER TABLE that may compute values for existing rows: lock
 * the table as the statement will (if the user may alter it at all,
 * otherwise PostgreSQL refuses the statement), and note its columns and
 * the conversions that are not immutable.
 */
static void
ddl_prepare_fills(Oid relid, AlterTableStmt *stmt, const char *queryString,
				  DdlFills *fills)
{
	ListCell   *lc;
	bool		needed = false;
	Relation	rel;

	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

		if (cmd->subtype == AT_AddColumn || cmd->subtype == AT_AlterColumnType)
			needed = true;
	}
	if (!needed || !pg_class_ownercheck(relid, GetUserId()))
		return;

	LockRelationOid(relid, AlterTableGetLockLevel(stmt->cmds));
	rel = try_relation_open(relid, NoLock);
	if (rel == NULL)
		return;
	fills->prepared = true;
	fills->old_natts = RelationGetDescr(rel)->natts;
	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

		if (cmd->subtype == AT_AlterColumnType &&
			ddl_conversion_is_mutable(rel, cmd, queryString))
			fills->conversions = lappend(fills->conversions, pstrdup(cmd->name));
	}
	relation_close(rel, NoLock);
}

static bool
ddl_has_rows(Relation rel)
{
	Snapshot	snap = RegisterSnapshot(GetLatestSnapshot());
	TableScanDesc scan = table_beginscan(rel, snap, 0, NULL);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	bool		found = table_scan_getnextslot(scan, ForwardScanDirection, slot);

	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	UnregisterSnapshot(snap);
	return found;
}

/* the default of column attnum, or NULL */
static Node *
ddl_column_default(Relation rel, AttrNumber attnum)
{
	TupleConstr *constr = RelationGetDescr(rel)->constr;
	int			i;

	if (constr == NULL)
		return NULL;
	for (i = 0; i < constr->num_defval; i++)
		if (constr->defval[i].adnum == attnum)
			return stringToNode(constr->defval[i].adbin);
	return NULL;
}

/*
 * Where the statement filled existing rows with values every server
 * computes itself, they must come out the same everywhere.
 */
static void
ddl_check_fills(Relation rel, DdlFills *fills)
{
	TupleDesc	desc = RelationGetDescr(rel);
	const char *relname = RelationGetRelationName(rel);
	int			i;
	bool		checked_rows = false;

	for (i = fills->old_natts; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Node	   *def;

		if (att->attisdropped || att->attgenerated)
			continue;			/* generated columns are immutable */
		def = ddl_column_default(rel, att->attnum);
		if (att->attidentity == '\0' &&
			(def == NULL || !contain_mutable_functions(def)))
			continue;
		if (!checked_rows && !ddl_has_rows(rel))
			return;
		checked_rows = true;
		if (att->attidentity != '\0')
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot add identity column \"%s\" to replicated table \"%s\", which has rows",
							NameStr(att->attname), relname),
					 errdetail("Every server would number the existing rows itself, in its own order."),
					 errhint("Add the column without identity, fill it with UPDATE, then make it an identity column with ALTER COLUMN ... ADD GENERATED ALWAYS AS IDENTITY.")));
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot add column \"%s\" to replicated table \"%s\", which has rows, with a default that is not immutable",
						NameStr(att->attname), relname),
				 errdetail("Every server would compute the default for the existing rows itself, and get a different value."),
				 errhint("Add the column without the default, fill it with UPDATE, then set the default with ALTER COLUMN ... SET DEFAULT.")));
	}
	if (fills->conversions != NIL && (checked_rows || ddl_has_rows(rel)))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot change the type of column \"%s\" of replicated table \"%s\", which has rows, with a conversion that is not immutable",
						(char *) linitial(fills->conversions), relname),
				 errdetail("Every server would convert the existing rows itself, and could get different values."),
				 errhint("Add a column of the new type, fill it with UPDATE, then drop the old column.")));
}

/* after the statement: what would make the servers diverge */
static void
ddl_check_after(DdlTargets *t, DdlFills *fills)
{
	ListCell   *lc;

	foreach(lc, t->replicated)
	{
		Oid			relid = lfirst_oid(lc);
		Relation	rel = try_relation_open(relid, AccessShareLock);

		if (rel == NULL)
			continue;			/* dropped */
		if (!OidIsValid(RelationGetPrimaryKeyIndex(rel)))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("replicated table \"%s\" must keep a primary key",
							RelationGetRelationName(rel)),
					 errdetail("Other servers find the table's rows by their primary key."),
					 errhint("Add the new primary key in the same ALTER TABLE statement, or unreplicate the table with raftpg.unreplicate_table() first.")));
		if (fills->prepared)
			ddl_check_fills(rel, fills);
		relation_close(rel, AccessShareLock);
	}
}

/* the rows of raftpg.replicated whose table is gone */
static void
ddl_forget_dropped(void)
{
	Oid			rr = ddl_replicated_relid();
	Relation	rel;
	TableScanDesc scan;
	TupleTableSlot *slot;
	Snapshot	snap;

	if (!OidIsValid(rr))
		return;
	rel = table_open(rr, RowExclusiveLock);
	snap = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(rel, snap, 0, NULL);
	slot = table_slot_create(rel, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		Oid			relid = DatumGetObjectId(slot_getattr(slot, 1, &isnull));

		if (!isnull && !SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
			simple_table_tuple_delete(rel, &slot->tts_tid, snap);
	}
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(rel, NoLock);
	CommandCounterIncrement();
}

/*
 * DROP EXTENSION raftpg locks the extension's tables one by one, in an
 * order of PostgreSQL's; the apply worker's batch locks some of them in
 * another, and the two could deadlock.  Both take raftpg.apply_state
 * first (apply_batch()), so that one simply waits for the other.
 */
static void
ddl_lock_for_drop_extension(DropStmt *stmt)
{
	ListCell   *lc;
	Oid			nsp;
	Oid			relid;

	foreach(lc, stmt->objects)
	{
		if (strcmp(strVal(lfirst(lc)), "raftpg") != 0)
			continue;
		nsp = get_namespace_oid("raftpg", true);
		relid = OidIsValid(nsp) ? get_relname_relid("apply_state", nsp) :
			InvalidOid;
		if (OidIsValid(relid))
			LockRelationOid(relid, AccessExclusiveLock);
		return;
	}
}

/* ----------
 * The hooks
 * ----------
 */

static void
ddl_next(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
		 ProcessUtilityContext context, ParamListInfo params,
		 QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
							queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

static void
ddl_process_utility(PlannedStmt *pstmt, const char *queryString,
					bool readOnlyTree, ProcessUtilityContext context,
					ParamListInfo params, QueryEnvironment *queryEnv,
					DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	DdlTargets	t;
	DdlFills	fills;
	List	   *saved_allowed;
	ListCell   *lc;

	if (IsA(parsetree, DropStmt) &&
		((DropStmt *) parsetree)->removeType == OBJECT_EXTENSION)
		ddl_lock_for_drop_extension((DropStmt *) parsetree);

	if (!ddl_handled(parsetree) || context == PROCESS_UTILITY_SUBCOMMAND ||
		RaftpgIsApplyWorker() || ddl_internal > 0 ||
		!OidIsValid(ddl_replicated_relid()))
	{
		ddl_next(pstmt, queryString, readOnlyTree, context, params, queryEnv,
				 dest, qc);
		return;
	}

	memset(&t, 0, sizeof(t));
	ddl_classify(parsetree, queryString, context, &t);

	if (t.action == DDL_LOCAL)
	{
		ddl_next(pstmt, queryString, readOnlyTree, context, params, queryEnv,
				 dest, qc);

		/*
		 * The statement took its locks, and with them the invalidations of
		 * a replicate_table() that committed while it waited.
		 */
		foreach(lc, t.plain)
		{
			if (ddl_is_replicated(lfirst_oid(lc)))
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("table \"%s\" was put under raftpg replication while this statement waited for it",
								get_rel_name(lfirst_oid(lc))),
						 errhint("Retry the statement.")));
		}
		return;
	}

	if (RaftpgReadStatus().role != RAFTPG_ROLE_LEADER)
		CaptureRefuseNotLeader(get_rel_name(linitial_oid(t.replicated)));

	/* before it runs, so that it comes after the rows written before it */
	ddl_record(pstmt, queryString);

	memset(&fills, 0, sizeof(fills));
	if (t.alter != NULL)
		ddl_prepare_fills(linitial_oid(t.replicated), t.alter, queryString,
						  &fills);

	saved_allowed = ddl_allowed;
	ddl_allowed = list_concat_copy(saved_allowed, t.replicated);
	PG_TRY();
	{
		ddl_next(pstmt, queryString, readOnlyTree, context, params, queryEnv,
				 dest, qc);
	}
	PG_FINALLY();
	{
		ddl_allowed = saved_allowed;
	}
	PG_END_TRY();

	CommandCounterIncrement();
	ddl_check_after(&t, &fills);
	if (t.drops_tables)
		ddl_forget_dropped();

	/*
	 * A serial or identity column added by the statement brings a sequence
	 * without a fence: reserve its first block in this transaction, after
	 * the statement, so that no failover can hand its values out again.
	 */
	if (t.alter != NULL)
	{
		foreach(lc, t.replicated)
			SequencesFenceNew(lfirst_oid(lc));
	}
}

/*
 * Dropping a replicated table or one of its columns as a side effect of
 * another statement would drop it on this server only.
 */
static void
ddl_object_access(ObjectAccessType access, Oid classId, Oid objectId,
				  int subId, void *arg)
{
	Oid			nsp;

	if (prev_object_access)
		prev_object_access(access, classId, objectId, subId, arg);

	if (access != OAT_DROP || classId != RelationRelationId ||
		RaftpgIsApplyWorker() || ddl_internal > 0 ||
		list_member_oid(ddl_allowed, objectId) ||
		!OidIsValid(ddl_replicated_relid()))
		return;
	if (get_rel_relkind(objectId) != RELKIND_RELATION ||
		get_rel_persistence(objectId) == RELPERSISTENCE_TEMP)
		return;
	nsp = get_rel_namespace(objectId);
	if (!OidIsValid(nsp) || nsp == get_namespace_oid("raftpg", true) ||
		!ddl_is_replicated(objectId))
		return;

	if (subId == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot drop replicated table \"%s\" along with other objects",
						get_rel_name(objectId)),
				 errdetail("Only DROP TABLE drops a replicated table on every server."),
				 errhint("Drop the table with DROP TABLE first, or unreplicate it with raftpg.unreplicate_table().")));
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("cannot drop column \"%s\" of replicated table \"%s\" along with other objects",
					get_attname(objectId, (AttrNumber) subId, false),
					get_rel_name(objectId)),
			 errdetail("Only ALTER TABLE ... DROP COLUMN drops a column of a replicated table on every server."),
			 errhint("Drop the column with ALTER TABLE ... DROP COLUMN first.")));
}

/* ----------
 * Apply
 * ----------
 */

static void
ddl_apply_error_callback(void *arg)
{
	errcontext("running replicated statement: %s", (const char *) arg);
}

void
DdlApply(RaftpgReader *r)
{
	char	   *search_path = ChangesGetStr(r);
	uint32		len = ChangesGetU32(r);
	char	   *stmt = pnstrdup(ChangesGetBytes(r, len), len);
	uint16		n = ChangesGetU16(r);
	int			nestlevel = NewGUCNestLevel();
	ErrorContextCallback errcb;
	int			rc;
	int			i;

	(void) set_config_option("search_path", search_path, PGC_SUSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	for (i = 0; i < n; i++)
	{
		char	   *name = ChangesGetStr(r);
		char	   *value = ChangesGetStr(r);
		int			k;

		for (k = 0; k < DDL_NSETTINGS; k++)
			if (pg_strcasecmp(name, ddl_settings[k]) == 0)
				break;
		if (k == DDL_NSETTINGS)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("raftpg: replicated statement with unexpected setting \"%s\"",
							name)));
		(void) set_config_option(name, value, PGC_SUSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	}
	if (!ChangesAtEnd(r))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("raftpg: trailing bytes after a replicated statement")));

	errcb.callback = ddl_apply_error_callback;
	errcb.arg = stmt;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = SPI_execute(stmt, false, 0);
	if (rc < 0)
		elog(ERROR, "raftpg: replicated statement failed: %s",
			 SPI_result_code_string(rc));
	SPI_finish();

	error_context_stack = errcb.previous;
	AtEOXact_GUC(true, nestlevel);

	CommandCounterIncrement();
	ddl_forget_dropped();
}
