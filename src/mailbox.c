/*-------------------------------------------------------------------------
 *
 * mailbox.c
 *	  Bounded byte buffers in shared memory, from many writers to the node
 *	  worker.
 *
 * Two mailboxes reach the worker: the inbox, where the backends streaming
 * from peers (or running raftpg.deliver()) put the messages peers send,
 * and the request mailbox, where backends put what SQL functions ask of
 * the worker (proposals, membership changes, transfers).  A record is a
 * 4-byte length and that many bytes.
 *
 * A writer never waits for room: when the mailbox is full the record is
 * dropped and counted, and the writer is told.  A peer's message lost that
 * way is like one lost on the network -- Raft resends -- and a backend
 * whose request did not fit gets an error it can retry.  Nobody blocks on a
 * worker that is slow or gone.
 *
 * The worker takes every record at once (MailboxDrain), so the lock is held
 * for copies only, and a drain leaves the mailbox empty: writers append
 * from the start of the buffer again.  Under load the records so keep
 * landing on its first pages, which every process has mapped already.  (A
 * ring written round and round had each backend fault on every one of its
 * pages in turn: about once per transaction for a short-lived connection
 * and 16 MB of requests.)
 *
 * src/mailbox.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

#include "raftpg.h"
#include "mailbox.h"

Size
MailboxShmemSize(Size capacity)
{
	return add_size(offsetof(RaftpgMailbox, data), capacity);
}

void
MailboxInit(RaftpgMailbox *mb, Size capacity, int tranche_id)
{
	LWLockInitialize(&mb->lock, tranche_id);
	mb->capacity = capacity;
	mb->used = 0;
	mb->records = 0;
	mb->dropped = 0;
}

/*
 * Append one record made of two parts (a header and a body, either may be
 * empty).  Returns false, counting a drop, when it does not fit.
 */
bool
MailboxPut(RaftpgMailbox *mb, const void *hdr, Size hdrlen,
		   const void *body, Size bodylen)
{
	uint32		len = (uint32) (hdrlen + bodylen);
	bool		ok;

	if (hdrlen + bodylen > PG_UINT32_MAX - sizeof(uint32))
		return false;
	LWLockAcquire(&mb->lock, LW_EXCLUSIVE);
	ok = mb->used + sizeof(uint32) + len <= mb->capacity;
	if (ok)
	{
		char	   *p = mb->data + mb->used;

		memcpy(p, &len, sizeof(uint32));
		memcpy(p + sizeof(uint32), hdr, hdrlen);
		memcpy(p + sizeof(uint32) + hdrlen, body, bodylen);
		mb->used += sizeof(uint32) + len;
		mb->records++;
	}
	else
		mb->dropped++;
	LWLockRelease(&mb->lock);
	return ok;
}

/*
 * Move every record into buf (a StringInfo the caller resets), as the same
 * length-prefixed records, and empty the mailbox.  Returns the number of
 * records.
 */
int
MailboxDrain(RaftpgMailbox *mb, StringInfo buf)
{
	Size		used;
	int			n = 0;
	Size		pos;

	LWLockAcquire(&mb->lock, LW_EXCLUSIVE);
	used = mb->used;
	if (used > 0)
	{
		enlargeStringInfo(buf, (int) used);
		memcpy(buf->data + buf->len, mb->data, used);
		buf->len += (int) used;
		buf->data[buf->len] = '\0';
		mb->used = 0;
	}
	LWLockRelease(&mb->lock);

	/* count records, outside the lock */
	for (pos = 0; pos + sizeof(uint32) <= used;)
	{
		uint32		len;

		memcpy(&len, buf->data + buf->len - used + pos, sizeof(uint32));
		pos += sizeof(uint32) + len;
		n++;
	}
	return n;
}

/* iterate over drained records: returns false at the end */
bool
MailboxNext(StringInfo buf, int *cursor, const char **rec, uint32 *len)
{
	if (*cursor + (int) sizeof(uint32) > buf->len)
		return false;
	memcpy(len, buf->data + *cursor, sizeof(uint32));
	*rec = buf->data + *cursor + sizeof(uint32);
	*cursor += sizeof(uint32) + *len;
	Assert(*cursor <= buf->len);
	return true;
}
