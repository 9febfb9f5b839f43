/*-------------------------------------------------------------------------
 *
 * tabledef.h
 *	  The definition of a table as SQL statements, and whether a table can
 *	  be replicated (see tabledef.c).
 *
 * src/tabledef.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef RAFTPG_TABLEDEF_H
#define RAFTPG_TABLEDEF_H

#include "utils/array.h"

#include "nodes/pg_list.h"

/*
 * The statements that recreate relid's definition, every name qualified
 * (List of char *).  Two servers with the same catalog contents produce the
 * same list, byte for byte.
 */
extern List *RaftpgTableDefinition(Oid relid);

/* ERROR unless relid can be put under Raft (or is, if allow_replicated). */
extern void RaftpgCheckReplicable(Oid relid, bool allow_replicated);

/* The qualified, quoted name "schema.table" of relid. */
extern char *RaftpgQualifiedName(Oid relid);
extern List *RaftpgDefinitionFromArray(ArrayType *array);
extern int	RaftpgDefinitionDifference(List *a, List *b);

#endif							/* RAFTPG_TABLEDEF_H */
