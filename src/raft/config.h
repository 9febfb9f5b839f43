/*-------------------------------------------------------------------------
 *
 * config.h
 *	  Helpers on cluster configurations for the files of the consensus core.
 *
 * raft.h exports what the host needs (validate, get, copy, free); this
 * header adds what election, replication and membership need: voter counts
 * and quorums, role lookups, and the single-server changes of dissertation
 * section 4.1 (add, remove, promote), each producing a new configuration and
 * leaving its source untouched, so that a failed change moves nothing.
 *
 * Ownership.  Every configuration this module or the codec produces
 * (raft_config_copy, raft_decode_config, raft_decode_message, and the
 * add/remove/promote helpers below) is ONE allocation: the servers[] array
 * followed by the NUL-terminated strings its entries point to.
 * raft_config_free() releases exactly that block and zeroes the struct.  A
 * configuration assembled by hand (string literals, separate allocations)
 * must not be passed to raft_config_free(); copy it with raft_config_copy()
 * first if the core is to own it.  An empty configuration ({0, NULL}) is
 * never allocated and may always be freed.
 *
 * Nothing here aborts on bad input: every function that can fail returns a
 * RAFT_* code and, on failure, leaves *dst as it was.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RAFT_CONFIG_H
#define RAFT_CONFIG_H

#include "raft.h"

/*
 * Version byte that starts an encoded configuration (see codec.c).  It is
 * separate from RAFT_WIRE_VERSION because configurations are also stored in
 * the log (RAFT_ENTRY_CONFIG payloads) and in the host's snapshot metadata,
 * and so outlive any one connection.
 */
#define RAFT_CONFIG_WIRE_VERSION	1

/*
 * Lookups.  They accept any configuration (valid or not, NULL or empty)
 * and never fail.
 */

/* number of servers with role RAFT_VOTER */
extern uint32_t raft_config_voter_count(const raft_config *c);

/*
 * Votes needed for a majority of the voters: voters / 2 + 1.  Learners do
 * not count (dissertation 4.2.1).  1 for a configuration without voters,
 * which raft_config_validate() refuses anyway.
 */
extern uint32_t raft_config_quorum(const raft_config *c);

/* position of id in c->servers[], or -1 */
extern int	raft_config_index_of(const raft_config *c, raft_id id);

/* id is a member with role RAFT_VOTER */
extern bool raft_config_is_voter(const raft_config *c, raft_id id);

/*
 * Same servers, in the same order, with the same ids, roles, names and
 * addresses.  Order matters: the helpers below preserve it (add appends,
 * remove closes the gap, promote changes the role in place), so two
 * servers that applied the same changes hold equal configurations.
 */
extern bool raft_config_equal(const raft_config *a, const raft_config *b);

/*
 * Single-server changes.  Each builds a new configuration in *dst (one
 * allocation, see above) from src, which must be valid or empty; *dst is
 * written only on RAFT_OK and is not freed first, so dst may point at src
 * if the caller still holds the old servers pointer to free.
 *
 * raft_config_add: append server id with role (RAFT_VOTER or
 * RAFT_LEARNER; raft_add_server adds learners).
 *	  RAFT_EINVAL	  id 0, bad role, name NULL/empty/longer than
 *					  RAFT_MAX_NAME, address NULL/longer than RAFT_MAX_ADDRESS
 *	  RAFT_EDUPLICATE id or name already in src
 *	  RAFT_ETOOBIG	  src already has RAFT_MAX_SERVERS servers
 *	  RAFT_EBADCONFIG src is neither valid nor empty, or the result would
 *					  be invalid (a learner added to an empty configuration)
 *	  RAFT_ENOMEM
 *
 * raft_config_remove: drop server id.
 *	  RAFT_ENOTFOUND  id is not a member
 *	  RAFT_EBADCONFIG src invalid, or id is the last voter
 *	  RAFT_ENOMEM
 *
 * raft_config_promote: make learner id a voter.
 *	  RAFT_ENOTFOUND  id is not a member
 *	  RAFT_EINVAL	  id is already a voter
 *	  RAFT_EBADCONFIG src invalid
 *	  RAFT_ENOMEM
 */
extern int	raft_config_add(const raft_config *src, raft_id id, uint8_t role,
							const char *name, const char *address,
							raft_config *dst);
extern int	raft_config_remove(const raft_config *src, raft_id id,
							   raft_config *dst);
extern int	raft_config_promote(const raft_config *src, raft_id id,
								raft_config *dst);

/*
 * Encode c into a new buffer from raft_malloc(), for the payload of a
 * RAFT_ENTRY_CONFIG entry (raft_bootstrap_entry, membership changes).
 * Release with raft_free().  RAFT_EBADCONFIG if c is invalid, RAFT_ENOMEM.
 * The payload decodes with raft_decode_config().
 */
extern int	raft_config_encode_alloc(const raft_config *c, uint8_t **data,
									 uint32_t *len);

#endif							/* RAFT_CONFIG_H */
