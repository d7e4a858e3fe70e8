# withdraw — PGXS build
EXTENSION = withdraw
MODULE_big = withdraw
OBJS = \
	src/withdraw.o \
	src/shmem.o \
	src/worker.o \
	src/schedule.o \
	src/inflight.o \
	src/poll_batch.o \
	src/claim.o \
	src/record.o \
	src/readiness.o \
	src/store.o \
	src/store_record.o \
	src/prune.o \
	src/policy.o \
	src/state.o \
	src/http.o \
	src/net_guard.o \
	src/crypto.o \
	src/secrets.o \
	src/triggers.o \
	src/envelope.o \
	src/jsonutil.o \
	src/api.o \
	src/amount_limits.o \
	src/rules.o \
	src/accounts.o \
	src/remote.o \
	src/callback.o \
	src/spi_util.o \
	src/session.o \
	src/desk.o \
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
	sql/withdraw--0.3.0--0.4.0.sql sql/withdraw--0.4.0--0.5.0.sql \
	sql/withdraw--0.5.0--0.6.0.sql sql/withdraw--0.6.0.sql
# issue 17: the queries of prometheus-postgres-exporter, installed beside the scripts
DATA += sql/withdraw_prometheus.yaml
PGFILEDESC = "withdraw - transactional payouts sent by background workers"

SHLIB_LINK += -lcurl -lcrypto
PG_CFLAGS += -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare -Werror=implicit-function-declaration

# pg_regress needs the library preloaded: a temporary instance with our config
REGRESS = setup signing validation idempotency accounts network_guard privileges ownership hardening cancel views p99 chainup ccpayment fiat_gateway callbackd desk catalog upgrade
REGRESS_OPTS = --temp-config=$(abs_top_builddir)/tmp_regress.conf --temp-instance=$(abs_top_builddir)/tmp_check
abs_top_builddir := $(CURDIR)

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# withdraw-callbackd (issue 18), the daemon that receives providers'
# callbacks, is a program of its own: PGXS cannot build a PROGRAM beside
# MODULE_big, so callbackd/Makefile does, into the same $(PG_CONFIG)'s bindir
all: callbackd-all
install: callbackd-install
clean: callbackd-clean
callbackd-all callbackd-install callbackd-clean:
	$(MAKE) -C callbackd PG_CONFIG=$(PG_CONFIG) $(patsubst callbackd-%,%,$@)
.PHONY: callbackd-all callbackd-install callbackd-clean

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
