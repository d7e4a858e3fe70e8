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
	src/secrets.o \
	src/triggers.o \
	src/envelope.o \
	src/jsonutil.o \
	src/api.o \
	src/account_limits.o \
	src/rules.o \
	src/accounts.o \
	src/remote.o \
	src/callback.o \
	src/spi_util.o \
	src/session.o \
	src/standby.o \
	src/providers/registry.o \
	src/providers/common.o \
	src/providers/request.o \
	src/providers/zoomex.o \
	src/providers/p99.o \
	src/providers/chainup.o \
	src/providers/ccpayment.o \
	src/providers/fiat_gateway.o

DATA = sql/withdraw--0.1.0.sql sql/withdraw--0.1.0--0.2.0.sql sql/withdraw--0.2.0--0.3.0.sql \
	sql/withdraw--0.3.0--0.4.0.sql sql/withdraw--0.4.0--0.5.0.sql
PGFILEDESC = "withdraw - transactional payouts sent by background workers"

SHLIB_LINK += -lcurl -lcrypto
PG_CFLAGS += -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare -Werror=implicit-function-declaration

# pg_regress needs the library preloaded: a temporary instance with our config
REGRESS = setup signing validation idempotency accounts network_guard privileges ownership hardening cancel views p99 chainup ccpayment fiat_gateway upgrade
REGRESS_OPTS = --temp-config=$(abs_top_builddir)/tmp_regress.conf --temp-instance=$(abs_top_builddir)/tmp_check
abs_top_builddir := $(CURDIR)

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# every object is rebuilt when any of our headers changes (PGXS has no
# dependency tracking of its own unless the server was configured with it)
$(OBJS): $(wildcard src/*.h src/providers/*.h)

# the temporary instance seals credentials with a fresh key, kept outside
# its data directory
installcheck: tmp_regress.conf
tmp_regress.conf: test/regress.conf
	rm -f tmp_regress.key
	umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > tmp_regress.key
	sed 's|@SECRETS_KEY_FILE@|$(abs_top_builddir)/tmp_regress.key|' $< > $@
EXTRA_CLEAN = tmp_regress.conf tmp_regress.key

.PHONY: test integration bench
# everything: pg_regress, the mock's self-test and the integration suite
test:
	bash test/run_all.sh

integration:
	bash test/integration/run.sh

bench:
	bash bench/run
