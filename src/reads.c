/*-------------------------------------------------------------------------
 *
 * reads.c
 *	  Linearizable reads of replicated tables (not written yet).
 *
 * src/reads.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "raftpg.h"
#include "reads.h"

void
ReadsInit(void)
{
}
