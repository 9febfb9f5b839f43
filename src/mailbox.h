/*-------------------------------------------------------------------------
 *
 * mailbox.h
 *	  Bounded byte buffers in shared memory, from many writers to the node
 *	  worker (see mailbox.c).
 *
 * src/mailbox.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef RAFTPG_MAILBOX_H
#define RAFTPG_MAILBOX_H

#include "lib/stringinfo.h"
#include "storage/lwlock.h"

struct RaftpgMailbox
{
	LWLock		lock;
	Size		capacity;
	Size		used;			/* bytes of records in data, from its start */
	uint64		records;
	uint64		dropped;		/* records refused for lack of room */
	char		data[FLEXIBLE_ARRAY_MEMBER];
};

extern Size MailboxShmemSize(Size capacity);
extern void MailboxInit(RaftpgMailbox *mb, Size capacity, int tranche_id);
extern bool MailboxPut(RaftpgMailbox *mb, const void *hdr, Size hdrlen,
					   const void *body, Size bodylen);
extern int	MailboxDrain(RaftpgMailbox *mb, StringInfo buf);
extern bool MailboxNext(StringInfo buf, int *cursor, const char **rec,
						uint32 *len);

#endif							/* RAFTPG_MAILBOX_H */
