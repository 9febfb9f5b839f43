/*-------------------------------------------------------------------------
 *
 * transport.h
 *	  Connections to peers and the receiving SQL function (see transport.c).
 *
 * src/transport.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef RAFTPG_TRANSPORT_H
#define RAFTPG_TRANSPORT_H

#include "lib/stringinfo.h"
#include "libpq-fe.h"
#include "storage/latch.h"
#include "utils/timestamp.h"

#include "raft.h"
#include "raftpg.h"

typedef enum TransportPeerState
{
	PEER_DISCONNECTED,
	PEER_CONNECTING,
	PEER_STARTING,				/* CALL raftpg.stream() sent, no answer yet */
	PEER_READY					/* streaming */
} TransportPeerState;

typedef struct TransportPeer
{
	uint64		id;
	char		name[RAFTPG_NAME_LEN];
	char	   *conninfo;
	TransportPeerState state;
	PGconn	   *conn;
	uint64		conn_serial;	/* names conn: a socket number is reused */
	PostgresPollingStatusType poll_status;
	TimestampTz next_attempt;	/* DISCONNECTED: when to try again */
	int			backoff_ms;
	bool		flush_pending;	/* libpq holds unsent output */
	bool		stream_ended;	/* the peer ended the copy; its result is due */
	bool		readable;		/* READY: read the socket this pass */
	StringInfoData out;			/* messages queued for the next CopyData */
	uint64		queued;
	uint64		dropped;
	uint64		bytes_out;
	uint64		calls_out;		/* CopyData messages sent */
} TransportPeer;

extern void TransportInit(void);
extern void TransportSetPeers(const raft_config *c, uint64 self);
extern TransportPeer *TransportPeers(int *n);
extern TransportPeer *TransportGetPeer(uint64 id);
extern void TransportQueue(TransportPeer *p, const uint8 *msg, size_t len);
extern void TransportFlush(void);

/* a socket the node worker waits on (TransportWaitSockets) */
typedef struct TransportWait
{
	pgsocket	sock;
	uint32		events;			/* WL_SOCKET_* */
	uint64		conn_serial;	/* the connection it belongs to */
	bool		settled;		/* not connecting: the socket stays */
	TransportPeer *peer;
} TransportWait;

/* the most sockets it waits on: every peer, the hand-off, every stream */
#define TRANSPORT_MAX_WAIT	(RAFT_MAX_SERVERS + 1 + RAFTPG_MAX_DIRECT)

extern bool raftpg_direct_receive;

extern int	TransportWaitSockets(TransportWait *w, bool direct,
								 TimestampTz *reconnect);
extern void TransportDirectInit(void);
extern void TransportDirectAccept(uint64 cluster_id);
extern void TransportDirectRead(void (*batch) (const char *data, uint32 len));
extern void TransportDirectAccepting(bool on);
extern void TransportDirectShutdown(void);
extern void TransportPoll(uint64 cluster_id);
extern void TransportReadable(pgsocket sock);
extern void TransportAllReadable(void);
extern uint64 TransportEmptyReads(void);
extern void TransportShutdown(void);
extern char *TransportCheckConninfo(const char *conninfo);
extern PGconn *TransportConnectStart(const char *conninfo);

#endif							/* RAFTPG_TRANSPORT_H */
