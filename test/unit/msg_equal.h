/*
 * msg_equal.h
 *	  Field-by-field comparison of messages, for the codec's unit tests and
 *	  its fuzz target (which is built apart, hence a header of static
 *	  functions rather than a file of its own).
 */
#ifndef RAFTPG_MSG_EQUAL_H
#define RAFTPG_MSG_EQUAL_H

#include <stdbool.h>
#include <string.h>

#include "raft.h"
#include "config.h"

static inline bool
is_zero(const void *p, size_t n)
{
	const uint8_t *b = p;
	size_t		i;

	for (i = 0; i < n; i++)
	{
		if (b[i] != 0)
			return false;
	}
	return true;
}

static inline bool
msg_equal(const raft_message *a, const raft_message *b)
{
	uint32_t	i;

	if (a->type != b->type || a->flags != b->flags || a->reject != b->reject ||
		a->from != b->from || a->to != b->to || a->term != b->term ||
		a->index != b->index || a->log_term != b->log_term ||
		a->commit != b->commit || a->hint_term != b->hint_term ||
		a->hint_index != b->hint_index || a->ctx != b->ctx ||
		a->n_entries != b->n_entries)
		return false;
	for (i = 0; i < a->n_entries; i++)
	{
		const raft_entry *x = &a->entries[i];
		const raft_entry *y = &b->entries[i];

		if (x->term != y->term || x->index != y->index || x->type != y->type ||
			x->len != y->len)
			return false;
		if (x->len > 0 && memcmp(x->data, y->data, x->len) != 0)
			return false;
	}
	return raft_config_equal(&a->config, &b->config);
}

#endif
