# withdraw — PGXS build
EXTENSION = withdraw
MODULE_big = withdraw
OBJS = \
	src/withdraw.o \
	src/shmem.o \
	src/worker.o \
	src/store.o \
	src/policy.o \
	src/http.o \
	src/crypto.o \
	src/envelope.o \
	src/jsonutil.o \
	src/api.o \
	src/limits.o \
	src/rules.o \
	src/accounts.o \
	src/remote.o \
	src/callback.o \
	src/spi_util.o \
	src/providers/registry.o \
	src/providers/common.o \
	src/providers/request.o \
	src/providers/zoomex.o \
	src/providers/p99.o \
	src/providers/chainup.o \
	src/providers/ccpayment.o \
	src/providers/fiat_gateway.o

DATA = sql/withdraw--0.1.0.sql sql/withdraw--0.1.0--0.2.0.sql
PGFILEDESC = "withdraw - transactional payouts sent by background workers"

SHLIB_LINK += -lcurl -lcrypto
PG_CFLAGS += -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare -Werror=implicit-function-declaration

# pg_regress needs the library preloaded: a temporary instance with our config
REGRESS = setup signing validation idempotency accounts privileges cancel views p99 chainup ccpayment fiat_gateway upgrade
REGRESS_OPTS = --temp-config=$(srcdir)/test/regress.conf --temp-instance=$(abs_top_builddir)/tmp_check
abs_top_builddir := $(CURDIR)

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# every object is rebuilt when any of our headers changes (PGXS has no
# dependency tracking of its own unless the server was configured with it)
$(OBJS): $(wildcard src/*.h src/providers/*.h)

.PHONY: test integration bench
# everything: pg_regress, the mock's self-test and the integration suite
test:
	bash test/run_all.sh

integration:
	bash test/integration/run.sh

bench:
	bash bench/run
