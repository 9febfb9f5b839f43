/*-------------------------------------------------------------------------
 *
 * raft.h
 *	  The public interface of raftpg's consensus core.
 *
 * The core is a deterministic state machine in pure C99.  It performs no
 * I/O, reads no clock and draws randomness only from a generator seeded by
 * its host.  The host (the PostgreSQL node worker, or the simulator in
 * test/unit) drives it with four kinds of input:
 *
 *	  raft_step()		one inbound message from a peer
 *	  raft_tick()		one unit of logical time
 *	  raft_propose*()	new entries, membership changes, read requests,
 *						leadership transfers
 *	  raft_advance() /	the outcome of persisting the last ready batch
 *	  raft_persist_failed()
 *
 * and collects its output with raft_ready(): hard state and entries to make
 * durable, messages to send, committed entries to apply, answers to read
 * requests and a snapshot to install.  The contract, which every host must
 * keep, is:
 *
 *	  1. Call raft_ready() when raft_has_ready() says so.  Messages in the
 *		 batch may be sent at once, before anything is persisted: the core
 *		 only puts a message in a batch when it is safe to send it then.
 *		 Messages that depend on this batch's persistence (votes, append
 *		 acknowledgements, anything of a new term) are held back inside the
 *		 core and appear in a later batch, after raft_advance().
 *	  2. Persist the batch atomically: when truncate_from is non-zero,
 *		 delete every log entry with index >= truncate_from; append
 *		 entries[]; store hard_state when hard_state_changed.  All of it
 *		 commits, or none of it does.
 *	  3. Call raft_advance() if it committed, raft_persist_failed() if not.
 *		 No other call may be made on the core between raft_ready() and
 *		 one of these two.
 *
 * The core never counts an entry as durable (for the leader's own match
 * index, for a vote, for commitment) before raft_advance() said it is, and on
 * raft_persist_failed() every in-memory view returns to what was last made
 * durable: the invariant raftpg was built around (see DESIGN.md).
 *
 * Everything that can reject an inbound entry -- decoding a configuration
 * entry, validating it -- happens inside raft_step(), before anything is
 * handed to the host to persist.
 *
 * Memory: the core allocates only through the hook installed with
 * raft_set_allocator(); a failed allocation is reported as RAFT_ENOMEM and
 * leaves the core as it was before the call -- with one exception:
 * raft_get_ready() first turns a pending broadcast into queued APPENDs
 * (as if they had been queued when it was asked for), and those stay
 * queued for the next ready batch when it then fails.  raft_advance() and
 * raft_persist_failed() cannot fail: where they lack memory, a message is
 * dropped or a leader steps down, as the protocol allows.  Pointers in a ready batch
 * (entries, messages, their data) belong to the core and stay valid until
 * raft_advance() or raft_persist_failed().
 *
 *-------------------------------------------------------------------------
 */
#ifndef RAFT_H
#define RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint64_t raft_id;		/* a server's id; 0 means none */
typedef uint64_t raft_term;
typedef uint64_t raft_index;

/*
 * Result codes.  Every public function that can fail returns one of these;
 * raft_strerror() names them.
 */
enum
{
	RAFT_OK = 0,
	RAFT_ENOMEM,				/* allocation failed, nothing changed */
	RAFT_EINVAL,				/* bad argument */
	RAFT_ENOTLEADER,			/* operation needs the leader */
	RAFT_EBUSY,					/* a membership change or a transfer is in
								 * flight */
	RAFT_ENOTREADY,				/* the leader has not yet committed an entry
								 * of its term */
	RAFT_EMALFORMED,			/* bytes that do not decode */
	RAFT_EBADCONFIG,			/* a configuration that decodes but is invalid */
	RAFT_ETOOBIG,				/* over a size limit */
	RAFT_ENOTFOUND,				/* unknown server */
	RAFT_EDUPLICATE,			/* server already a member */
	RAFT_ECOMPACTED,			/* index is behind the snapshot */
	RAFT_EVERSION,				/* unknown wire format version */
	RAFT_ELAST
};

extern const char *raft_strerror(int rc);

/* ----------
 * Allocation hook.  The default uses malloc/realloc/free.  The PostgreSQL
 * host installs one backed by a memory context; tests install one that fails
 * on demand.
 * ----------
 */
typedef struct raft_allocator
{
	void	   *ctx;
	void	   *(*alloc) (void *ctx, size_t size);
	void	   *(*realloc) (void *ctx, void *ptr, size_t size);
	void		(*free) (void *ctx, void *ptr);
} raft_allocator;

extern void raft_set_allocator(const raft_allocator *a);	/* NULL: default */

/* ----------
 * Log entries.
 * ----------
 */
typedef enum raft_entry_type
{
	RAFT_ENTRY_NORMAL = 1,		/* host payload */
	RAFT_ENTRY_NOOP = 2,		/* appended by a new leader; no payload */
	RAFT_ENTRY_CONFIG = 3		/* payload is an encoded raft_config */
} raft_entry_type;

typedef struct raft_entry
{
	raft_term	term;
	raft_index	index;
	uint8_t		type;			/* raft_entry_type */
	uint32_t	len;
	uint8_t    *data;
} raft_entry;

/* ----------
 * Configurations.  A configuration lists every member with its role.  Names
 * and addresses are opaque to the core (raftpg stores node_name and
 * conninfo there); they travel with the configuration so that every server
 * learns how to reach every other.
 * ----------
 */
#define RAFT_MAX_SERVERS	64
#define RAFT_MAX_NAME		63
#define RAFT_MAX_ADDRESS	1024

typedef enum raft_role_in_config
{
	RAFT_VOTER = 1,
	RAFT_LEARNER = 2
} raft_role_in_config;

typedef struct raft_server
{
	raft_id		id;
	uint8_t		role;			/* RAFT_VOTER or RAFT_LEARNER */
	char	   *name;			/* NUL-terminated, <= RAFT_MAX_NAME bytes */
	char	   *address;		/* NUL-terminated, <= RAFT_MAX_ADDRESS bytes */
} raft_server;

typedef struct raft_config
{
	uint32_t	n;
	raft_server *servers;
} raft_config;

/*
 * A configuration is valid when it has at most RAFT_MAX_SERVERS servers, no
 * id 0, no duplicate id or name, valid roles, bounded strings and at least
 * one voter.
 */
extern int	raft_config_validate(const raft_config *c);
extern const raft_server *raft_config_get(const raft_config *c, raft_id id);
extern int	raft_config_copy(const raft_config *src, raft_config *dst);
extern void raft_config_free(raft_config *c);

/* ----------
 * Messages.  One flat struct for every kind, as on the wire; the comment on
 * each field says which kinds use it.
 * ----------
 */
typedef enum raft_msg_type
{
	RAFT_MSG_APPEND = 1,		/* AppendEntries (dissertation 3.5) */
	RAFT_MSG_APPEND_RESP,
	RAFT_MSG_VOTE,				/* RequestVote (3.4) */
	RAFT_MSG_VOTE_RESP,
	RAFT_MSG_PREVOTE,			/* PreVote (9.6) */
	RAFT_MSG_PREVOTE_RESP,
	RAFT_MSG_HEARTBEAT,			/* empty AppendEntries that carries no log
								 * position, only commit and a read context */
	RAFT_MSG_HEARTBEAT_RESP,
	RAFT_MSG_SNAPSHOT,			/* InstallSnapshot metadata (5.1) */
	RAFT_MSG_TIMEOUT_NOW,		/* leadership transfer (3.10) */
	RAFT_MSG_READ_INDEX,		/* follower asks leader for a read index (6.4) */
	RAFT_MSG_READ_INDEX_RESP,
	RAFT_MSG_LAST
} raft_msg_type;

#define RAFT_MSG_FLAG_TRANSFER	0x01	/* VOTE/PREVOTE: campaign started by
										 * TIMEOUT_NOW; overrides leases */

typedef struct raft_message
{
	uint8_t		type;
	uint8_t		flags;
	bool		reject;			/* *_RESP: request refused / vote not given */
	raft_id		from;
	raft_id		to;
	raft_term	term;

	/*
	 * APPEND: index/log_term of the entry before entries[].  APPEND_RESP:
	 * index is the follower's last matching index on success, the rejected
	 * prev index on reject.  VOTE/PREVOTE: the candidate's last index/term.
	 * SNAPSHOT: the snapshot's last included index/term.  READ_INDEX_RESP:
	 * the read index.
	 */
	raft_index	index;
	raft_term	log_term;

	raft_index	commit;			/* APPEND, HEARTBEAT, SNAPSHOT: leader commit */

	/*
	 * APPEND_RESP on reject: the follower's hint for fast back-off -- the
	 * term of its entry at the rejected index (0 if it has none) and the
	 * first index it holds with that term, or its last index + 1.
	 */
	raft_term	hint_term;
	raft_index	hint_index;

	uint64_t	ctx;			/* HEARTBEAT(_RESP), READ_INDEX(_RESP) */

	uint32_t	n_entries;		/* APPEND */
	raft_entry *entries;

	raft_config config;			/* SNAPSHOT: configuration at index */
} raft_message;

/* ----------
 * Codec: a versioned, length-checked binary format.  Every byte string
 * either decodes or yields RAFT_EMALFORMED / RAFT_EVERSION; the decoder never
 * reads past len.  Decoded entry data and strings are copies owned by the
 * result, released with raft_message_free() / raft_config_free().
 * ----------
 */
#define RAFT_WIRE_VERSION	1
#define RAFT_MAX_ENTRY_BYTES	(64u * 1024 * 1024)
#define RAFT_MAX_MSG_ENTRIES	65536

extern size_t raft_message_encoded_size(const raft_message *m);
extern int	raft_encode_message(const raft_message *m, uint8_t *buf, size_t cap,
								size_t *len);
extern int	raft_decode_message(const uint8_t *buf, size_t len, raft_message *m);
extern void raft_message_free(raft_message *m);

extern size_t raft_config_encoded_size(const raft_config *c);
extern int	raft_encode_config(const raft_config *c, uint8_t *buf, size_t cap,
							   size_t *len);
/* decodes and validates (raft_config_validate) */
extern int	raft_decode_config(const uint8_t *buf, size_t len, raft_config *c);

/* ----------
 * Creating a node.
 * ----------
 */
typedef struct raft_hard_state
{
	raft_term	term;
	raft_id		vote;
	raft_index	commit;
} raft_hard_state;

typedef struct raft_options
{
	raft_id		id;				/* this server; nonzero */
	uint32_t	election_ticks; /* base election timeout; randomized in
								 * [election_ticks, 2 * election_ticks) */
	uint32_t	heartbeat_ticks;	/* < election_ticks */
	bool		pre_vote;
	bool		check_quorum;
	uint32_t	max_msg_entries;	/* entries per APPEND */
	size_t		max_msg_bytes;	/* payload bytes per APPEND (at least one
								 * entry is always sent) */
	uint32_t	max_inflight;	/* APPEND messages in flight per peer */
	bool		lazy_commit;	/* a follower learns a new commit index
								 * from the next APPEND or heartbeat, not
								 * from an empty APPEND of its own */
	uint64_t	seed;			/* randomness for election timeouts */

	/*
	 * Entries that raft_compact() dropped from memory but the host still
	 * has durably.  fetch copies entries from index "from" on -- at most
	 * max_n, and no more than max_bytes of payload unless one entry alone
	 * is larger -- into a raft_malloc()ed array whose entries' data are
	 * raft_malloc()ed too, and returns RAFT_OK with *n >= 1; or an error
	 * code, and the core sends what it has later.  With fetch set, a
	 * leader serves a peer behind its compaction point from the host's
	 * storage and never asks for a snapshot, so compaction only bounds the
	 * core's memory.  Called only between raft_advance() (or before the
	 * first ready) and the end of the next raft_get_ready().
	 */
	int			(*fetch) (void *ctx, raft_index from, uint32_t max_n,
						  size_t max_bytes, raft_entry **ents, size_t *n);
	void	   *fetch_ctx;
} raft_options;

extern void raft_options_init(raft_options *o, raft_id id);	/* defaults */

/*
 * What the host loaded from durable storage.  entries[] is the log after
 * the snapshot (indexes snapshot_index + 1 ...), contiguous.  applied is the
 * highest index the host has applied; committed entries after it are handed
 * out again.  The core copies what it keeps.
 */
typedef struct raft_restore
{
	raft_hard_state hard_state;
	raft_index	snapshot_index;
	raft_term	snapshot_term;
	raft_config snapshot_config;	/* n == 0 when there is no snapshot */
	raft_index	snapshot_config_index;	/* its entry's index; 0: the
										 * snapshot's */
	const raft_entry *entries;
	size_t		n_entries;
	raft_index	applied;

	/*
	 * With raft_options.fetch, the host may restore fewer entries than its
	 * durable log holds: then snapshot_index is where memory starts, and
	 * durable_index/durable_term say where the durable log starts (after
	 * durable_index; 0: at snapshot_index, as without fetch).
	 */
	raft_index	durable_index;
	raft_term	durable_term;
} raft_restore;

typedef struct raft raft;

extern int	raft_create(const raft_options *o, const raft_restore *r, raft **out);
extern void raft_destroy(raft *r);

/*
 * The first entry of a new cluster: a configuration entry at index 1, term
 * 1, holding c.  The host persists it (and term 1) before raft_create();
 * entry->data is allocated and freed with raft_free().
 */
extern int	raft_bootstrap_entry(const raft_config *c, raft_entry *entry);
extern void raft_free(void *ptr);

/* ----------
 * Inputs.
 * ----------
 */
/*
 * Returns RAFT_EINVAL for a message not meant for this node, and for an
 * APPEND refused because its entries are invalid (a configuration entry
 * that does not decode: RAFT_EMALFORMED / RAFT_EBADCONFIG) the reason -- the
 * refusal has been sent to the leader, nothing changed; the host logs it.
 */
extern int	raft_step(raft *r, const raft_message *m);
extern void raft_tick(raft *r);
/* start an election now (a one-voter cluster after bootstrap) */
extern int	raft_campaign(raft *r);

/*
 * Append n normal entries; *first gets the index of the first.  Errors:
 * RAFT_ENOTLEADER, RAFT_EBUSY (a leadership transfer is in progress),
 * RAFT_ETOOBIG.
 */
typedef struct raft_buf
{
	const void *base;
	size_t		len;
} raft_buf;

extern int	raft_propose(raft *r, const raft_buf *bufs, size_t n, raft_index *first);

/*
 * Membership (dissertation 4.1: one server at a time).  raft_promote
 * refuses (RAFT_EBUSY) while the learner's match index is below the commit
 * index: a voter that cannot keep up would stall commits (4.2.1).  The new
 * configuration is an entry that takes effect on every server as soon as it
 * is appended.  A leader refuses with RAFT_EBUSY while an earlier change is
 * not committed and with RAFT_ENOTREADY until an entry of its own term is
 * committed (the fix of 4.1's bug in the dissertation's errata).
 */
extern int	raft_add_server(raft *r, raft_id id, const char *name,
							const char *address, raft_index *index);	/* as learner */
extern int	raft_promote(raft *r, raft_id id, raft_index *index);
extern int	raft_remove_server(raft *r, raft_id id, raft_index *index);

/* leadership transfer to target, or to the most up-to-date voter if 0 */
extern int	raft_transfer_leadership(raft *r, raft_id target);

/*
 * Ask for a linearizable read point (dissertation 6.4).  The answer, a read
 * state with the same ctx, arrives in a later ready batch; the host may read
 * once it has applied up to its index.  Errors: RAFT_ENOTLEADER when there
 * is no known leader.
 */
extern int	raft_read_index(raft *r, uint64_t ctx);
/*
 * A read state may arrive more than once (a duplicated message), or for a
 * ctx the host no longer waits for (an answer that outlived a restart):
 * hosts keep ctx unique per process and ignore answers they do not expect.
 */

/*
 * Snapshots: the host says its state machine holds everything up to index
 * (term at index, configuration c) and entries up to index may be dropped.
 * index must be <= applied.  With raft_options.fetch the entries are only
 * dropped from the core's memory: peers that need them are served through
 * fetch, and queued APPENDs stay queued.
 */
extern int	raft_compact(raft *r, raft_index index, raft_term term);
/*
 * With raft_options.fetch: the host dropped the entries up to index from
 * its durable log too (index <= applied).  A peer that needs one of them
 * now gets a snapshot.  Entries in memory up to index are dropped as by
 * raft_compact().  Without fetch, the same as raft_compact().
 */
extern int	raft_compact_durable(raft *r, raft_index index, raft_term term);
/* term of entry i in memory: RAFT_OK, RAFT_ECOMPACTED or RAFT_ENOTFOUND */
extern int	raft_term_at(const raft *r, raft_index i, raft_term *term);

/*
 * A snapshot the core asked the host to install (ready->snapshot) has been
 * installed, or not (ok = false).  The host installs asynchronously; the
 * core stays a follower meanwhile.  What was installed may be newer than
 * what was asked for (the host copies the leader's state as it is now):
 * index, term and c describe what the host installed, and the host has
 * already made durable a log that starts after index, a hard state with
 * commit >= index, and applied = index.
 */
extern int	raft_snapshot_done(raft *r, bool ok, raft_index index, raft_term term,
							   const raft_config *c);

/* ----------
 * Output.
 * ----------
 */
typedef struct raft_read_state
{
	uint64_t	ctx;
	raft_index	index;
} raft_read_state;

typedef enum raft_role
{
	RAFT_FOLLOWER = 1,
	RAFT_PRECANDIDATE,
	RAFT_CANDIDATE,
	RAFT_LEADER
} raft_role;

typedef struct raft_snapshot_meta
{
	raft_id		from;			/* the leader that has it */
	raft_index	index;
	raft_term	term;
	raft_config config;
} raft_snapshot_meta;

typedef struct raft_ready
{
	/* persist, atomically */
	bool		hard_state_changed;
	raft_hard_state hard_state;
	raft_index	truncate_from;	/* 0 = none */
	raft_entry *entries;
	size_t		n_entries;

	/* send (now) */
	raft_message *messages;
	size_t		n_messages;

	/* apply, in order (already durable) */
	raft_entry *committed;
	size_t		n_committed;

	/* answers to raft_read_index() */
	raft_read_state *reads;
	size_t		n_reads;

	/* install, then call raft_snapshot_done() */
	bool		snapshot_pending;
	raft_snapshot_meta snapshot;
} raft_ready;

extern bool raft_has_ready(const raft *r);
extern int	raft_get_ready(raft *r, raft_ready *rd);
extern void raft_advance(raft *r);
extern void raft_persist_failed(raft *r);

/* ----------
 * Inspection.
 * ----------
 */
typedef struct raft_status
{
	raft_id		id;
	raft_role	role;
	bool		voter;			/* a voter in the current configuration */
	raft_term	term;
	raft_id		vote;
	raft_id		leader;
	raft_index	first_index;	/* first entry in the log */
	raft_index	last_index;		/* including entries not yet durable */
	raft_term	last_term;
	raft_index	stable_index;	/* last entry known durable */
	raft_index	commit;
	raft_index	applied;		/* last entry handed out to apply */
	raft_index	snapshot_index;
	raft_term	snapshot_term;
	raft_index	config_index;	/* index of the current configuration */
	raft_id		transferee;		/* leadership transfer target, or 0 */
} raft_status;

extern void raft_get_status(const raft *r, raft_status *s);
/* valid until the next call that may change the configuration */
extern const raft_config *raft_get_config(const raft *r);

typedef enum raft_progress_state
{
	RAFT_PROGRESS_PROBE = 1,
	RAFT_PROGRESS_REPLICATE,
	RAFT_PROGRESS_SNAPSHOT
} raft_progress_state;

typedef struct raft_progress_info
{
	raft_index	match;
	raft_index	next;
	uint8_t		state;			/* raft_progress_state */
	bool		recent_active;
	uint32_t	inflight;
	uint64_t	ticks_since_contact;
} raft_progress_info;

/* leader only; RAFT_ENOTLEADER / RAFT_ENOTFOUND otherwise */
extern int	raft_get_progress(const raft *r, raft_id id, raft_progress_info *p);

extern const char *raft_role_name(raft_role role);
extern const char *raft_msg_type_name(int type);

#endif							/* RAFT_H */
