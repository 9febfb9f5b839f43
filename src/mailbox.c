/*-------------------------------------------------------------------------
 *
 * mailbox.c
 *	  Bounded byte rings in shared memory, from many writers to the node
 *	  worker.
 *
 * Two rings reach the worker: the inbox, where backends running
 * raftpg.deliver() put the messages peers send, and the request ring, where
 * backends put what SQL functions ask of the worker (proposals, membership
 * changes, transfers).  A record is a 4-byte length and that many bytes;
 * records wrap around the end of the ring.
 *
 * A writer never waits for room: when the ring is full the record is
 * dropped and counted, and the writer is told.  A peer's message lost that
 * way is like one lost on the network -- Raft resends -- and a backend
 * whose request did not fit gets an error it can retry.  Nobody blocks on a
 * worker that is slow or gone.
 *
 * The worker takes every record at once (MailboxDrain), so the lock is held
 * for copies only.  A drain leaves the ring empty, and so puts its write
 * position back at the start: under load the records keep landing on the
 * ring's first pages, which every process has mapped already.  (A ring
 * written round and round would have each backend fault on every one of
 * its pages in turn, about once per transaction for a short-lived
 * connection and a ring of 16 MB.)
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
	mb->head = 0;
	mb->tail = 0;
	mb->records = 0;
	mb->dropped = 0;
}

static void
ring_copy_in(RaftpgMailbox *mb, uint64 pos, const char *src, Size len)
{
	Size		off = pos % mb->capacity;
	Size		first = Min(len, mb->capacity - off);

	memcpy(mb->data + off, src, first);
	if (first < len)
		memcpy(mb->data, src + first, len - first);
}

static void
ring_copy_out(const RaftpgMailbox *mb, uint64 pos, char *dst, Size len)
{
	Size		off = pos % mb->capacity;
	Size		first = Min(len, mb->capacity - off);

	memcpy(dst, mb->data + off, first);
	if (first < len)
		memcpy(dst + first, mb->data, len - first);
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
	ok = (mb->head - mb->tail) + sizeof(uint32) + len <= mb->capacity;
	if (ok)
	{
		ring_copy_in(mb, mb->head, (const char *) &len, sizeof(uint32));
		ring_copy_in(mb, mb->head + sizeof(uint32), hdr, hdrlen);
		ring_copy_in(mb, mb->head + sizeof(uint32) + hdrlen, body, bodylen);
		mb->head += sizeof(uint32) + len;
		mb->records++;
	}
	else
		mb->dropped++;
	LWLockRelease(&mb->lock);
	return ok;
}

/*
 * Move every record into buf (a StringInfo the caller resets), as the same
 * length-prefixed records.  Returns the number of records.
 */
int
MailboxDrain(RaftpgMailbox *mb, StringInfo buf)
{
	uint64		used;
	int			n = 0;
	uint64		pos;

	LWLockAcquire(&mb->lock, LW_EXCLUSIVE);
	used = mb->head - mb->tail;
	if (used > 0)
	{
		enlargeStringInfo(buf, (int) used);
		ring_copy_out(mb, mb->tail, buf->data + buf->len, used);
		buf->len += (int) used;
		buf->data[buf->len] = '\0';
	}
	mb->head = 0;
	mb->tail = 0;
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
