/*-------------------------------------------------------------------------
 *
 * ddl.c
 *	  DDL on replicated tables (not written yet: DDL is not replicated).
 *
 * src/ddl.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "raftpg.h"
#include "ddl.h"

void
DdlInit(void)
{
}

void
DdlApply(RaftpgReader *r)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("raftpg: this server cannot apply replicated DDL yet")));
}
