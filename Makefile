# Makefile for raftpg (PGXS)
#
#   make              build raftpg.so
#   make install      install into the PostgreSQL that PG_CONFIG names
#   make test         deps, build, install, then every test layer:
#                       unit (test/unit), installcheck (pg_regress),
#                       prove (TAP, test/t)
#   make deps         check build and test dependencies, install the
#                     missing ones with apt-get when run as root
#   make demo         a local three-server cluster (make demo-stop ends it)
#
# installcheck, prove and demo run PostgreSQL, which refuses to run as root;
# as root they run as the "postgres" user (see scripts/as-postgres.sh).

# PostgreSQL 15 first: prefer its pg_config over whatever /usr/bin/pg_config
# would pick among several installed versions.
PG_CONFIG ?= $(firstword $(wildcard /usr/lib/postgresql/15/bin/pg_config) pg_config)
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)

EXTENSION = raftpg
MODULE_big = raftpg
PGFILEDESC = "raftpg - tables replicated across servers with Raft"

# src/ is the PostgreSQL side, src/raft/ the pure consensus core; every .c
# file in either is part of the module.
RAFTPG_SRCS := $(sort $(wildcard src/*.c))
RAFT_CORE_SRCS := $(sort $(wildcard src/raft/*.c))
RAFTPG_OBJS := $(RAFTPG_SRCS:.c=.o)
RAFT_CORE_OBJS := $(RAFT_CORE_SRCS:.c=.o)
OBJS = $(RAFTPG_OBJS) $(RAFT_CORE_OBJS)

DATA = $(sort $(wildcard sql/raftpg--*.sql))

# pg_regress: every sql/*.sql but the install scripts, in a temporary
# instance whose configuration preloads raftpg.
REGRESS = $(sort $(filter-out raftpg--%,$(basename $(notdir $(wildcard sql/*.sql)))))
REGRESS_OPTS = --temp-instance=./tmp_check --temp-config=test/regress.conf
# PGXS's installcheck would run pg_regress as whoever calls make; ours below
# switches to the postgres user first when that is root.
NO_INSTALLCHECK = 1

PG_CPPFLAGS = -I$(libpq_srcdir) -Isrc/raft
SHLIB_LINK_INTERNAL = $(libpq)

# -Wextra on top of PostgreSQL's own warnings, minus one of its parts:
# -Wno-unused-parameter, because PostgreSQL 15's headers define static
# inline functions that ignore parameters (bufpage.h
# PageValidateSpecialPointer, ilist.h dlist_next_node, ...), and because its
# callback interfaces (PG_FUNCTION_ARGS, GUC check hooks, shmem-exit
# callbacks, bgworker entry points) hand every implementation parameters it
# may ignore.  Nothing else in -Wextra fires on PostgreSQL's headers.
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter

# The consensus core's functions are internal to raftpg.so: hide them, so
# that none of its global names can be bound to (or interposed by) a symbol
# of the postgres executable or of another loaded library.  PostgreSQL 15
# does not hide extension symbols itself (16 does).
$(RAFT_CORE_OBJS): override CFLAGS += -fvisibility=hidden

PG_TEST_PERL_DIR = $(abspath $(dir $(PGXS))../test/perl)
PG_REGRESS_BIN = $(abspath $(dir $(PGXS))../test/regress/pg_regress)

ifneq ($(wildcard $(PGXS)),)
include $(PGXS)

.DEFAULT_GOAL := all

# PGXS tracks header dependencies only with --enable-depend; be explicit.
$(RAFTPG_OBJS): src/raftpg.h $(wildcard src/raft/*.h)
$(RAFT_CORE_OBJS): $(wildcard src/raft/*.h)

clean: clean-unit

# pg_regress against a temporary instance (REGRESS_OPTS): needs the module
# installed, never an existing server.
installcheck-local:
	$(pg_regress_installcheck) $(REGRESS_OPTS) $(REGRESS)

# TAP tests.  PostgreSQL::Test::Utils puts its tmp_check/ (logs, data
# directories, port locks) under TESTDIR; PostgreSQL::Test::Cluster runs
# initdb and friends from PATH and "pg_regress --config-auth" from
# PG_REGRESS.
prove-local:
	rm -rf '$(CURDIR)/tmp_check'
	mkdir -p '$(CURDIR)/tmp_check'
	TESTDIR='$(CURDIR)' PATH='$(bindir)':"$$PATH" \
	PG_REGRESS='$(PG_REGRESS_BIN)' \
	$(PROVE) -I '$(PG_TEST_PERL_DIR)' -I test/t $(PROVE_FLAGS) \
		$(if $(PROVE_TESTS),$(PROVE_TESTS),test/t/*.pl)

# "make install", or when the installation directories are not writable
# (not root), check that the installed copy is this build, else say how to
# install it.
install-ext: all
	@PG_CONFIG='$(PG_CONFIG)' MAKE='$(MAKE)' scripts/install.sh

else
all install installcheck-local prove-local install-ext clean:
	@echo "raftpg: PostgreSQL's PGXS is missing ($(PG_CONFIG) --pgxs)." >&2
	@echo "raftpg: run \"make deps\" to install postgresql-server-dev-15." >&2
	@exit 1
endif

# ---- targets that do not need PGXS to be present ----

deps:
	@scripts/deps.sh

unit:
	$(MAKE) -C test/unit

clean-unit:
	-$(MAKE) -C test/unit clean

installcheck:
	@MAKE='$(MAKE)' scripts/as-postgres.sh installcheck-local

prove:
	@MAKE='$(MAKE)' scripts/as-postgres.sh prove-local

# Each step in its own make, in order: the first installs what the later
# ones need (PGXS itself, on a fresh machine).  A failed build or install
# stops; the three test layers all run, and any failure fails the whole.
test:
	@scripts/deps.sh
	$(MAKE) all
	$(MAKE) install-ext
	@failed=; \
	for layer in unit installcheck prove; do \
		echo "==== raftpg: make $$layer"; \
		$(MAKE) $$layer || failed="$$failed $$layer"; \
	done; \
	if [ -n "$$failed" ]; then \
		echo "raftpg: make test FAILED in:$$failed" >&2; \
		exit 1; \
	fi; \
	echo "raftpg: make test passed (unit, installcheck, prove)"

demo:
	@MAKE='$(MAKE)' scripts/demo.sh start

demo-stop:
	@MAKE='$(MAKE)' scripts/demo.sh stop

bench:
	@MAKE='$(MAKE)' test/bench/bench.sh

.PHONY: deps unit clean-unit installcheck installcheck-local prove \
	prove-local install-ext test demo demo-stop bench
