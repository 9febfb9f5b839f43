/*-------------------------------------------------------------------------
 *
 * tabledef.c
 *	  A table's definition as SQL statements, whether a table can be put
 *	  under Raft, and whether a server can receive a table.
 *
 * replicate_table() sends a table's definition through the log as a list
 * of statements, and every server either creates the table from them or
 * adopts a table it already has.  "Already has" is decided by comparing
 * text: the server produces the definition of its own table with the same
 * function and the two lists must be equal, statement by statement.  The
 * one invariant this file keeps is therefore:
 *
 *	  the same catalog contents on two servers give byte-identical lists.
 *
 * So the output holds no OIDs and no name derived from one, each part is
 * listed in a fixed order (attnum, or name under the C collation of type
 * name), and it is produced under fixed settings: search_path =
 * pg_catalog, so that every name outside pg_catalog comes out qualified,
 * plus the settings that change how a constant in a default is printed
 * (DateStyle, IntervalStyle, TimeZone, extra_float_digits, bytea_output,
 * standard_conforming_strings, quote_all_identifiers), which pg_dump pins
 * for the same reason.  The definition is, in this order:
 *
 *	  1. CREATE SEQUENCE for the serial sequences (owned, not identity);
 *	  2. CREATE TABLE with the columns, their types, collations, identity,
 *		 generation expressions, defaults and NOT NULL;
 *	  3. ALTER TABLE ADD CONSTRAINT for primary key, unique, check and
 *		 exclusion constraints, then foreign keys;
 *	  4. CREATE INDEX for the indexes that back no constraint;
 *	  5. ALTER SEQUENCE OWNED BY for the sequences of step 1.
 *
 * The catalogs are read with SPI and PostgreSQL's own deparsing functions
 * (format_type, pg_get_expr, pg_get_constraintdef, pg_get_indexdef), so
 * that the text is the one PostgreSQL itself would print; none of this is
 * on a hot path.
 *
 * check_table_definition() runs on a server that is to receive a table.
 * When the table is absent it runs the statements in a subtransaction that
 * it always rolls back, which catches what this server lacks (a type, a
 * collation, a referenced table) before anything is proposed, and checks
 * that the table it created gives back the same definition.
 *
 * src/tabledef.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/catalog.h"
#include "catalog/namespace.h"
#include "catalog/pg_am_d.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_class.h"
#include "catalog/pg_namespace_d.h"
#include "catalog/pg_type_d.h"
#include "commands/defrem.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "tabledef.h"

PG_FUNCTION_INFO_V1(raftpg_table_definition);
PG_FUNCTION_INFO_V1(raftpg_check_table_definition);

/*
 * The settings under which definitions are produced and dry-run: every
 * name qualified, every constant printed the same way on every server.
 */
static const struct
{
	const char *name;
	const char *value;
}			tabledef_settings[] =
{
	{"search_path", "pg_catalog"},
	{"DateStyle", "ISO, YMD"},
	{"IntervalStyle", "postgres"},
	{"TimeZone", "UTC"},
	{"extra_float_digits", "3"},
	{"bytea_output", "hex"},
	{"standard_conforming_strings", "on"},
	{"quote_all_identifiers", "off"},
};

/*
 * The options of the sequence "s", as CREATE SEQUENCE and GENERATED AS
 * IDENTITY (...) take them.  No AS: an identity sequence takes its column's
 * type and refuses a second one; serial sequences add it themselves.
 */
#define TABLEDEF_SEQ_OPTIONS \
	"format('INCREMENT BY %s MINVALUE %s MAXVALUE %s START WITH %s CACHE %s %s', " \
	"s.seqincrement, s.seqmin, s.seqmax, s.seqstart, s.seqcache, " \
	"CASE WHEN s.seqcycle THEN 'CYCLE' ELSE 'NO CYCLE' END)"

/*
 * The sequences owned by a column: c, n and s are the sequence's pg_class,
 * pg_namespace and pg_sequence rows, d its dependency on the column.
 */
#define TABLEDEF_OWNED_SEQUENCES \
	"pg_depend d " \
	"JOIN pg_class c ON c.oid = d.objid AND c.relkind = 'S' " \
	"JOIN pg_namespace n ON n.oid = c.relnamespace " \
	"JOIN pg_sequence s ON s.seqrelid = c.oid "

/* ... on the condition that d is such a dependency, of type T */
#define TABLEDEF_OWNED_BY(T) \
	"d.classid = 'pg_class'::regclass " \
	"AND d.refclassid = 'pg_class'::regclass " \
	"AND d.refobjsubid > 0 AND d.deptype IN (" T ") "

/* step 1 and 5: serial sequences, with the column that owns each */
static const char *const tabledef_serial_sql =
"SELECT format('%I.%I', n.nspname, c.relname), "
"       'AS ' || format_type(s.seqtypid, NULL) || ' ' || " TABLEDEF_SEQ_OPTIONS ", "
"       quote_ident(a.attname) "
"FROM " TABLEDEF_OWNED_SEQUENCES
"JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid "
"WHERE " TABLEDEF_OWNED_BY("'a'") "AND d.refobjid = $1 "
"ORDER BY n.nspname, c.relname";

/*
 * step 2: the columns.  The collation only when it is not the type's own;
 * the identity sequence's name and options for identity columns.
 */
static const char *const tabledef_columns_sql =
"SELECT quote_ident(a.attname), "
"       format_type(a.atttypid, a.atttypmod), "
"       CASE WHEN a.attcollation <> t.typcollation "
"            THEN a.attcollation::regcollation::text END, "
"       a.attidentity, a.attgenerated, "
"       pg_get_expr(ad.adbin, ad.adrelid), "
"       a.attnotnull, "
"       idseq.name, idseq.options "
"FROM pg_attribute a "
"JOIN pg_type t ON t.oid = a.atttypid "
"LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum "
"LEFT JOIN LATERAL ("
"  SELECT format('%I.%I', n.nspname, c.relname) AS name, "
"         " TABLEDEF_SEQ_OPTIONS " AS options "
"  FROM " TABLEDEF_OWNED_SEQUENCES
"  WHERE " TABLEDEF_OWNED_BY("'i'")
"  AND d.refobjid = a.attrelid AND d.refobjsubid = a.attnum"
") idseq ON a.attidentity <> '' "
"WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped "
"ORDER BY a.attnum";

/* step 3: constraints, foreign keys last */
static const char *const tabledef_constraints_sql =
"SELECT quote_ident(conname), pg_get_constraintdef(oid) "
"FROM pg_constraint "
"WHERE conrelid = $1 AND contype IN ('p', 'u', 'c', 'x', 'f') "
"ORDER BY CASE contype WHEN 'p' THEN 1 WHEN 'u' THEN 2 WHEN 'c' THEN 3 "
"                      WHEN 'x' THEN 4 ELSE 5 END, conname";

/* step 4: indexes that no constraint of the table owns */
static const char *const tabledef_indexes_sql =
"SELECT pg_get_indexdef(i.indexrelid) "
"FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
"WHERE i.indrelid = $1 "
"AND NOT EXISTS (SELECT 1 FROM pg_constraint k "
"                WHERE k.conrelid = i.indrelid "
"                AND k.conindid = i.indexrelid "
"                AND k.contype IN ('p', 'u', 'x')) "
"ORDER BY c.relname";

/* the checks of RaftpgCheckReplicable that read more than pg_class */
static const char *const tabledef_is_replicated_sql =
"SELECT 1 FROM raftpg.replicated WHERE relid = $1";

static const char *const tabledef_parent_sql =
"SELECT inhparent FROM pg_inherits WHERE inhrelid = $1 "
"ORDER BY inhseqno LIMIT 1";

static const char *const tabledef_child_sql =
"SELECT inhrelid FROM pg_inherits WHERE inhparent = $1 "
"ORDER BY inhrelid LIMIT 1";

static const char *const tabledef_primary_key_sql =
"SELECT condeferrable FROM pg_constraint "
"WHERE conrelid = $1 AND contype = 'p'";

static const char *const tabledef_fk_out_sql =
"SELECT k.conname, k.confrelid FROM pg_constraint k "
"WHERE k.conrelid = $1 AND k.contype = 'f' AND k.confrelid <> k.conrelid "
"AND NOT EXISTS (SELECT 1 FROM raftpg.replicated r "
"                WHERE r.relid = k.confrelid) "
"ORDER BY k.conname LIMIT 1";

static const char *const tabledef_fk_in_sql =
"SELECT k.conname, k.conrelid FROM pg_constraint k "
"WHERE k.confrelid = $1 AND k.contype = 'f' AND k.conrelid <> k.confrelid "
"AND NOT EXISTS (SELECT 1 FROM raftpg.replicated r "
"                WHERE r.relid = k.conrelid) "
"ORDER BY k.conname LIMIT 1";

static const char *const tabledef_cycle_sql =
"SELECT c.oid FROM " TABLEDEF_OWNED_SEQUENCES
"WHERE " TABLEDEF_OWNED_BY("'a', 'i'")
"AND d.refobjid = $1 AND s.seqcycle "
"ORDER BY n.nspname, c.relname LIMIT 1";

/* ----------
 * Helpers
 * ----------
 */

/*
 * Enter the settings of tabledef_settings; the caller leaves them with
 * AtEOXact_GUC(true, nestlevel), or by raising an error.
 */
static int
tabledef_enter_settings(void)
{
	int			nestlevel = NewGUCNestLevel();
	int			i;

	for (i = 0; i < (int) lengthof(tabledef_settings); i++)
		(void) set_config_option(tabledef_settings[i].name,
								 tabledef_settings[i].value,
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	return nestlevel;
}

/*
 * Run a catalog query with $1 = relid; the rows are in SPI_tuptable.  Not
 * read-only: the query must see what this transaction did last (the dry
 * run's CREATE TABLE), not the snapshot of the calling statement.
 */
static void
tabledef_query(const char *sql, Oid relid)
{
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};
	int			ret;

	ret = SPI_execute_with_args(sql, 1, argtypes, values, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "catalog query failed: %s", SPI_result_code_string(ret));
}

/* column col (from 1) of row row of the last query, as text; NULL if null */
static char *
tabledef_text(uint64 row, int col)
{
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}

static Datum
tabledef_datum(uint64 row, int col)
{
	bool		isnull;
	Datum		d;

	d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col,
					  &isnull);
	if (isnull)
		elog(ERROR, "unexpected null in column %d of a catalog query", col);
	return d;
}

/* the schema and name of relid, or an ERROR if it is gone */
static void
tabledef_names(Oid relid, char **nspname, char **relname)
{
	*relname = get_rel_name(relid);
	*nspname = NULL;
	if (*relname != NULL)
		*nspname = get_namespace_name(get_rel_namespace(relid));
	if (*relname == NULL || *nspname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
}

/*
 * "schema.table" for messages, unquoted, as PostgreSQL writes
 * relation "%s.%s".
 */
static char *
tabledef_display_name(Oid relid)
{
	char	   *nspname;
	char	   *relname;

	tabledef_names(relid, &nspname, &relname);
	return psprintf("%s.%s", nspname, relname);
}

char *
RaftpgQualifiedName(Oid relid)
{
	char	   *nspname;
	char	   *relname;

	tabledef_names(relid, &nspname, &relname);
	return quote_qualified_identifier(nspname, relname);
}

/* ----------
 * The definition
 * ----------
 */

List *
RaftpgTableDefinition(Oid relid)
{
	MemoryContext callercxt = CurrentMemoryContext;
	char	   *qualname;
	List	   *stmts = NIL;
	List	   *owned_by = NIL;
	StringInfoData buf;
	int			nestlevel;
	uint64		i;

	nestlevel = tabledef_enter_settings();
	qualname = RaftpgQualifiedName(relid);	/* under quote_all_identifiers = off */
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/*
	 * Every SPI call returns in SPI's own memory context; what we keep is
	 * built in the caller's.
	 */

	/* 1. serial sequences; 5. who owns them */
	tabledef_query(tabledef_serial_sql, relid);
	MemoryContextSwitchTo(callercxt);
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *seqname = tabledef_text(i, 1);

		stmts = lappend(stmts, psprintf("CREATE SEQUENCE %s %s",
										seqname, tabledef_text(i, 2)));
		owned_by = lappend(owned_by,
						   psprintf("ALTER SEQUENCE %s OWNED BY %s.%s",
									seqname, qualname, tabledef_text(i, 3)));
	}

	/* 2. the table and its columns */
	tabledef_query(tabledef_columns_sql, relid);
	MemoryContextSwitchTo(callercxt);
	initStringInfo(&buf);
	appendStringInfo(&buf, "CREATE TABLE %s (", qualname);
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *colname = tabledef_text(i, 1);
		char	   *collation = tabledef_text(i, 3);
		char		identity = DatumGetChar(tabledef_datum(i, 4));
		char		generated = DatumGetChar(tabledef_datum(i, 5));
		char	   *expr = tabledef_text(i, 6);

		if (i > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfo(&buf, "%s %s", colname, tabledef_text(i, 2));
		if (collation != NULL)
			appendStringInfo(&buf, " COLLATE %s", collation);

		if (identity != '\0')
		{
			char	   *seqname = tabledef_text(i, 8);

			if (seqname == NULL)
				elog(ERROR, "identity column %s of table %s has no sequence",
					 colname, qualname);
			appendStringInfo(&buf,
							 " GENERATED %s AS IDENTITY (SEQUENCE NAME %s %s)",
							 identity == ATTRIBUTE_IDENTITY_ALWAYS ?
							 "ALWAYS" : "BY DEFAULT",
							 seqname, tabledef_text(i, 9));
		}

		if (generated == ATTRIBUTE_GENERATED_STORED)
		{
			if (expr == NULL)
				elog(ERROR, "generated column %s of table %s has no expression",
					 colname, qualname);
			appendStringInfo(&buf, " GENERATED ALWAYS AS (%s) STORED", expr);
		}
		else if (expr != NULL)
			appendStringInfo(&buf, " DEFAULT %s", expr);

		if (DatumGetBool(tabledef_datum(i, 7)))
			appendStringInfoString(&buf, " NOT NULL");
	}
	appendStringInfoChar(&buf, ')');
	stmts = lappend(stmts, buf.data);

	/* 3. constraints */
	tabledef_query(tabledef_constraints_sql, relid);
	MemoryContextSwitchTo(callercxt);
	for (i = 0; i < SPI_processed; i++)
		stmts = lappend(stmts, psprintf("ALTER TABLE %s ADD CONSTRAINT %s %s",
										qualname, tabledef_text(i, 1),
										tabledef_text(i, 2)));

	/* 4. indexes of their own */
	tabledef_query(tabledef_indexes_sql, relid);
	MemoryContextSwitchTo(callercxt);
	for (i = 0; i < SPI_processed; i++)
		stmts = lappend(stmts, tabledef_text(i, 1));

	/* 5. */
	stmts = list_concat(stmts, owned_by);

	SPI_finish();
	AtEOXact_GUC(true, nestlevel);

	return stmts;
}

/* ----------
 * Can the table be replicated?
 * ----------
 */

void
RaftpgCheckReplicable(Oid relid, bool allow_replicated)
{
	HeapTuple	tuple;
	Form_pg_class form;
	char		relkind;
	char		relpersistence;
	bool		relispartition;
	Oid			relam;
	Oid			relnamespace;
	char	   *name;
	int			nestlevel;

	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tuple))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	form = (Form_pg_class) GETSTRUCT(tuple);
	relkind = form->relkind;
	relpersistence = form->relpersistence;
	relispartition = form->relispartition;
	relam = form->relam;
	relnamespace = form->relnamespace;
	ReleaseSysCache(tuple);

	name = tabledef_display_name(relid);

	/* what belongs to the system or to raftpg itself */
	if (IsCatalogRelationOid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot replicate system catalog \"%s\"", name)));
	if (relnamespace == PG_CATALOG_NAMESPACE ||
		relnamespace == get_namespace_oid("information_schema", true) ||
		relnamespace == get_namespace_oid("raftpg", true))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot replicate table \"%s\"", name),
				 errdetail("raftpg never replicates the tables of schema \"%s\".",
						   get_namespace_name(relnamespace))));

	/* plain tables, each on its own */
	if (relkind == RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot replicate partitioned table \"%s\"", name),
				 errdetail("raftpg replicates plain tables, without partitions or inheritance.")));
	if (relkind != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot replicate relation \"%s\"", name),
				 errdetail_relkind_not_supported(relkind)));
	if (relpersistence == RELPERSISTENCE_TEMP)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot replicate temporary table \"%s\"", name)));
	if (relpersistence == RELPERSISTENCE_UNLOGGED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot replicate unlogged table \"%s\"", name),
				 errhint("Make it logged with ALTER TABLE ... SET LOGGED.")));
	if (relam != HEAP_TABLE_AM_OID)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot replicate table \"%s\"", name),
				 errdetail("It uses table access method \"%s\"; raftpg replicates heap tables only.",
						   get_am_name(relam)),
				 errhint("Change it with ALTER TABLE ... SET ACCESS METHOD heap.")));

	nestlevel = tabledef_enter_settings();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	tabledef_query(tabledef_parent_sql, relid);
	if (SPI_processed > 0)
	{
		char	   *parent;

		parent = tabledef_display_name(DatumGetObjectId(tabledef_datum(0, 1)));
		if (relispartition)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot replicate table \"%s\"", name),
					 errdetail("It is a partition of table \"%s\".", parent)));
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot replicate table \"%s\"", name),
				 errdetail("It inherits from table \"%s\"; raftpg replicates tables without inheritance.",
						   parent),
				 errhint("ALTER TABLE ... NO INHERIT removes the inheritance.")));
	}
	tabledef_query(tabledef_child_sql, relid);
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot replicate table \"%s\"", name),
				 errdetail("Table \"%s\" inherits from it; raftpg replicates tables without inheritance.",
						   tabledef_display_name(DatumGetObjectId(tabledef_datum(0, 1)))),
				 errhint("ALTER TABLE ... NO INHERIT removes the inheritance.")));

	tabledef_query(tabledef_is_replicated_sql, relid);
	if (SPI_processed > 0 && !allow_replicated)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("table \"%s\" is already replicated", name)));

	/* the apply worker finds rows by their primary key */
	tabledef_query(tabledef_primary_key_sql, relid);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" has no primary key", name),
				 errhint("Add one with ALTER TABLE ... ADD PRIMARY KEY; raftpg finds rows on other servers by their primary key.")));
	if (DatumGetBool(tabledef_datum(0, 1)))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("the primary key of table \"%s\" is deferrable", name),
				 errdetail("raftpg finds rows on other servers by their primary key, which must be unique at all times."),
				 errhint("Replace it with a primary key that is not DEFERRABLE.")));

	/*
	 * Other servers apply changes without foreign key checks: a constraint
	 * holds there only if both of its tables are replicated.
	 */
	tabledef_query(tabledef_fk_out_sql, relid);
	if (SPI_processed > 0)
	{
		char	   *conname = tabledef_text(0, 1);
		char	   *other;

		other = tabledef_display_name(DatumGetObjectId(tabledef_datum(0, 2)));
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("table \"%s\" references table \"%s\", which is not replicated",
						name, other),
				 errdetail("Other servers apply changes without checking foreign keys, so constraint \"%s\" holds there only if both tables are replicated.",
						   conname),
				 errhint("Replicate table \"%s\" first, or drop constraint \"%s\".",
						 other, conname)));
	}
	tabledef_query(tabledef_fk_in_sql, relid);
	if (SPI_processed > 0)
	{
		char	   *conname = tabledef_text(0, 1);
		char	   *other;

		other = tabledef_display_name(DatumGetObjectId(tabledef_datum(0, 2)));
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("table \"%s\" is referenced by table \"%s\", which is not replicated",
						name, other),
				 errdetail("Other servers apply changes without checking foreign keys, so constraint \"%s\" of table \"%s\" would not hold there.",
						   conname, other),
				 errhint("Drop constraint \"%s\" of table \"%s\", replicate both tables, then add the constraint again.",
						 conname, other)));
	}

	/* sequence values are reserved in ascending blocks (design, 6.) */
	tabledef_query(tabledef_cycle_sql, relid);
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot replicate table \"%s\" with cycling sequence \"%s\"",
						name,
						tabledef_display_name(DatumGetObjectId(tabledef_datum(0, 1)))),
				 errdetail("raftpg reserves sequence values in blocks through the log, and a cycling sequence would hand values out again."),
				 errhint("Make it stop cycling with ALTER SEQUENCE ... NO CYCLE.")));

	SPI_finish();
	AtEOXact_GUC(true, nestlevel);
}

/* ----------
 * Comparing definitions
 * ----------
 */

/*
 * The position of the first statement in which a and b differ, or -1 if
 * they are equal; when one is a prefix of the other, the length of the
 * shorter.
 */
int
RaftpgDefinitionDifference(List *a, List *b)
{
	int			n = Min(list_length(a), list_length(b));
	int			i;

	for (i = 0; i < n; i++)
		if (strcmp(list_nth(a, i), list_nth(b, i)) != 0)
			return i;
	return list_length(a) == list_length(b) ? -1 : n;
}

/* errdetail() saying where the definition here and the given one part */
static int
tabledef_errdetail_difference(List *here, List *given, int pos)
{
	if (pos < list_length(here) && pos < list_length(given))
		return errdetail("Statement %d here: %s\nStatement %d of the definition: %s",
						 pos + 1, (char *) list_nth(here, pos),
						 pos + 1, (char *) list_nth(given, pos));
	if (pos < list_length(here))
		return errdetail("The definition has %d statements, here there are %d; the first one more here: %s",
						 list_length(given), list_length(here),
						 (char *) list_nth(here, pos));
	return errdetail("The definition has %d statements, here there are %d; the first one more in the definition: %s",
					 list_length(given), list_length(here),
					 (char *) list_nth(given, pos));
}

/* the statements of a text[], neither empty nor with nulls */
List *
RaftpgDefinitionFromArray(ArrayType *array)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;
	List	   *result = NIL;

	if (ARR_NDIM(array) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("the table definition must be a one-dimensional array")));
	deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the table definition is empty")));
	for (i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("the table definition must not contain nulls")));
		result = lappend(result, TextDatumGetCString(elems[i]));
	}
	return result;
}

/* does the table have no row visible to this statement? */
static bool
tabledef_is_empty(Oid relid)
{
	Relation	rel = table_open(relid, AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	TableScanDesc scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
	bool		empty;

	empty = !table_scan_getnextslot(scan, ForwardScanDirection, slot);

	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, AccessShareLock);
	return empty;
}

/*
 * Run the statements of given in a subtransaction that is always rolled
 * back (the pattern of PL/pgSQL's exception blocks), and check that they
 * create table rv with exactly that definition.  ERROR if a statement
 * fails, keeping its SQLSTATE.
 */
static void
tabledef_dry_run(RangeVar *rv, const char *name, List *given)
{
	MemoryContext oldcontext = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile int stmtno = 0;	/* the statement being run, from 1 */
	List	   *volatile created = NIL;
	volatile bool is_table = false;
	int			nestlevel;
	int			pos;

	nestlevel = tabledef_enter_settings();

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcontext);

	PG_TRY();
	{
		ListCell   *lc;
		Oid			relid;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		/* a missing schema is created with the table (replicate.c) */
		if (rv->schemaname != NULL &&
			!OidIsValid(get_namespace_oid(rv->schemaname, true)) &&
			SPI_execute(psprintf("CREATE SCHEMA IF NOT EXISTS %s",
								 quote_identifier(rv->schemaname)),
						false, 0) != SPI_OK_UTILITY)
			elog(ERROR, "could not create schema \"%s\"", rv->schemaname);
		foreach(lc, given)
		{
			int			ret;

			stmtno++;
			ret = SPI_execute((char *) lfirst(lc), false, 0);
			if (ret < 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
						 errmsg("statement not allowed in a table definition: %s",
								SPI_result_code_string(ret))));
		}
		stmtno = 0;
		SPI_finish();

		relid = RangeVarGetRelid(rv, NoLock, true);
		if (OidIsValid(relid) && get_rel_relkind(relid) == RELKIND_RELATION)
		{
			is_table = true;
			created = RaftpgTableDefinition(relid);
		}

		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcontext);
		edata = CopyErrorData();
		FlushErrorState();

		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcontext);
		CurrentResourceOwner = oldowner;

		/* a cancel, or a failure of our own, goes on as it was */
		if (stmtno == 0 || edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			ReThrowError(edata);

		ereport(ERROR,
				(errcode(edata->sqlerrcode),
				 errmsg("table \"%s\" could not be created on this server",
						name),
				 errdetail("Statement %d of the definition failed: %s\nStatement %d: %s",
						   (int) stmtno, edata->message,
						   (int) stmtno, (char *) list_nth(given, stmtno - 1)),
				 errhint("Provide on this server what the definition uses (types, collations, functions, referenced tables), then try again.")));
	}
	PG_END_TRY();

	AtEOXact_GUC(true, nestlevel);

	if (!is_table)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("the definition does not create table \"%s\"", name)));
	pos = RaftpgDefinitionDifference(created, given);
	if (pos >= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("the definition of table \"%s\" creates a different table on this server",
						name),
				 tabledef_errdetail_difference(created, given, pos),
				 errhint("Definitions must come from raftpg.table_definition(), on servers running the same versions of PostgreSQL and raftpg.")));
}

/* ----------
 * SQL-callable functions
 * ----------
 */

/*
 * raftpg.table_definition(rel regclass) -> text[]
 *
 * The definition of a table that can be replicated (or is), an error
 * saying why not for any other.
 */
Datum
raftpg_table_definition(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	List	   *stmts;
	ListCell   *lc;
	Datum	   *elems;
	int			n = 0;

	LockRelationOid(relid, AccessShareLock);
	RaftpgCheckReplicable(relid, true);
	stmts = RaftpgTableDefinition(relid);

	elems = palloc(sizeof(Datum) * list_length(stmts));
	foreach(lc, stmts)
		elems[n++] = CStringGetTextDatum((char *) lfirst(lc));
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, n, TEXTOID, -1, false,
										  TYPALIGN_INT));
}

/*
 * raftpg.check_table_definition(qualified_name text, definition text[])
 *	 -> text
 *
 * Can this server receive the table?  'absent' (and the definition runs
 * here), 'identical' (an empty table with the same definition exists and
 * can be adopted), or an error saying why not.
 */
Datum
raftpg_check_table_definition(PG_FUNCTION_ARGS)
{
	char	   *qualified_name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	List	   *given = RaftpgDefinitionFromArray(PG_GETARG_ARRAYTYPE_P(1));
	List	   *here;
	RangeVar   *rv;
	Oid			relid;
	char		relkind;
	char	   *name;
	int			pos;

	rv = makeRangeVarFromNameList(stringToQualifiedNameList(qualified_name));
	if (rv->schemaname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("table name \"%s\" is not qualified with a schema",
						qualified_name)));
	name = psprintf("%s.%s", rv->schemaname, rv->relname);

	relid = RangeVarGetRelid(rv, AccessShareLock, true);
	if (!OidIsValid(relid))
	{
		tabledef_dry_run(rv, name, given);
		PG_RETURN_TEXT_P(cstring_to_text("absent"));
	}

	relkind = get_rel_relkind(relid);
	if (relkind != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("a relation named \"%s\" exists on this server and is not a table",
						name),
				 errdetail_relkind_not_supported(relkind),
				 errhint("Drop or rename it on this server, then try again.")));

	here = RaftpgTableDefinition(relid);
	pos = RaftpgDefinitionDifference(here, given);
	if (pos >= 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("a different table named \"%s\" exists on this server",
						name),
				 tabledef_errdetail_difference(here, given, pos),
				 errhint("Drop or rename the table on this server, then try again.")));

	if (!tabledef_is_empty(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" already exists on this server and is not empty",
						name),
				 errdetail("An existing table is adopted only when it is empty: its rows come from the leader."),
				 errhint("Empty it with TRUNCATE, or drop or rename it, then try again.")));

	PG_RETURN_TEXT_P(cstring_to_text("identical"));
}
