#!/usr/bin/env bash
# Builds and runs the libFuzzer targets (clang from Debian).
#
#   bash test/fuzz/run.sh [seconds per target] [target...]
#
# Default: 600 s per target (the full run), every target.  The targets:
# envelope (chainup's envelopes and keys, a standalone program), then one per
# provider (zoomex p99 chainup ccpayment fiat_gateway: every parser of its
# answers and of its callbacks) and form_rules (fiat_gateway's rule answers
# and the requests checked against them).  The parsers need the server's
# jsonb, so those targets (fuzz_server.c) are a test-only module run inside
# a single-user postgres with the ASan runtime preloaded.  The targets run
# one after the other, one process each.  Run as an ordinary user (postgres
# refuses root), with initdb and postgres on PATH.  CI runs a short one.
#
# Inputs may be as long as the largest HTTP answer the worker reads (1 MiB,
# http.c), so depth bombs and long bodies are reachable.  Each target first
# replays its seeds (seeds.py) and its regressions (regressions/TARGET).
# Exits non-zero on a crash, a sanitizer report, a hang or a parser's ERROR;
# the input that did it is left in /tmp/withdraw-fuzz-crashes.  With
# WITHDRAW_FUZZ_ERRORS=count a parser's ERROR is counted, not fatal (the
# first input of each distinct message is kept there as TARGET-error-N).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
top="$(cd "$here/../.." && pwd)"
seconds="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(envelope zoomex p99 chainup ccpayment fiat_gateway form_rules)
max_len=$((1024 * 1024 + 2))	# HTTP_MAX_RESPONSE, and the selector and flag bytes
inc="$(pg_config --includedir-server)"
lib="$(pg_config --libdir)"
[ -f "$lib/libpgcommon.a" ] || lib="$(pg_config --pkglibdir)"
out="$(mktemp -d /tmp/withdraw-fuzz.XXXXXX)"
trap 'rm -rf "$out"' EXIT
crashes=/tmp/withdraw-fuzz-crashes
mkdir -p "$crashes"
status=0

# The figures of a finished run: libFuzzer's last status line and summary.
summary() {
	grep -E '^(INFO: Loaded|#[0-9]+.*(INITED|DONE)|stat::|Done |withdraw_fuzz )' "$1" | tail -14
}

run_envelope() {
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -DFRONTEND -Wno-ignored-attributes \
		-I"$inc" -o "$out/fuzz_envelope" \
		"$here/fuzz_envelope.c" "$top/src/envelope.c" \
		"$lib/libpgcommon.a" "$lib/libpgport.a" -lcrypto -lm
	# a corpus from the provider's published envelopes (providers.md, seed 001)
	mkdir -p "$out/corpus-envelope"
	cp "$here"/corpus/* "$out/corpus-envelope/"
	# and a long one: that notification 256 times over (768 authentic blocks)
	python3 -c 'import sys; d = open(sys.argv[1]).read().strip(); open(sys.argv[2], "w").write(d * 256)' \
		"$here/corpus/notification_envelope" "$out/corpus-envelope/notification_envelope_x256"
	local rc=0
	"$out/fuzz_envelope" -max_total_time="$seconds" -max_len="$max_len" -timeout=20 -rss_limit_mb=4096 \
		-print_final_stats=1 -artifact_prefix="$crashes/envelope-" \
		"$out/corpus-envelope" "$here/regressions/envelope" >"$out/envelope.log" 2>&1 || rc=$?
	echo "== envelope: ${seconds}s, exit $rc"
	summary "$out/envelope.log" envelope
	if [ "$rc" -ne 0 ] || ! grep -q '^Done ' "$out/envelope.log"; then
		grep -E -A30 '==ERROR|runtime error|deadly signal|Test unit written' "$out/envelope.log" | head -60
		status=1
	fi
}

# -- the in-server targets ----------------------------------------------------
built_server=0
build_server() {
	local cflags=(-g -O1 -fPIC -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
		-Wno-ignored-attributes -Wno-compound-token-split-by-macro -I"$inc" -I"$top/src")
	local objs=() f o
	for f in test/fuzz/fuzz_server.c src/providers/registry.c src/providers/request.c src/providers/common.c \
		src/providers/zoomex.c src/providers/p99.c src/providers/chainup.c src/jsonutil.c src/crypto.c src/envelope.c; do
		o="$out/$(basename "$f" .c).o"
		clang "${cflags[@]}" -c "$top/$f" -o "$o"
		objs+=("$o")
	done
	# -Bsymbolic: the coverage callbacks must bind to this module's libFuzzer,
	# not to the no-op defaults of the preloaded ASan runtime (else no coverage)
	clang -shared -fsanitize=address,undefined -shared-libasan -o "$out/withdraw_fuzz.so" "${objs[@]}" \
		-Wl,--whole-archive "$(clang -print-file-name=libclang_rt.fuzzer_no_main-x86_64.a)" -Wl,--no-whole-archive \
		-Wl,-Bsymbolic -lstdc++ -lcrypto
	clang -shared -fPIC -O1 -o "$out/no_nls.so" "$here/no_nls.c"
	initdb -D "$out/pgdata" -A trust --no-sync >/dev/null
	python3 "$here/seeds.py" "$out/seeds"
	built_server=1
}

# One target in a single-user backend; libFuzzer ends the process.  Each
# gets its own copy of the cluster, since a single-user backend locks it.
run_in_server() {
	local target="$1" data="$out/pgdata-$1" rc=0
	[ "$built_server" -eq 1 ] || build_server
	cp -a "$out/pgdata" "$data"
	mkdir -p "$out/corpus-$target" "$out/seeds/$target"
	printf '%s\n' \
		"CREATE FUNCTION withdraw_fuzz(text, text[]) RETURNS int AS '$out/withdraw_fuzz.so' LANGUAGE C STRICT" \
		"SELECT withdraw_fuzz('$target', ARRAY['-max_total_time=$seconds', '-max_len=$max_len', '-timeout=20', '-rss_limit_mb=4096', '-print_final_stats=1', '-artifact_prefix=$crashes/$target-', '$out/corpus-$target', '$out/seeds/$target', '$here/regressions/$target'])" |
		LD_PRELOAD="$(clang -print-file-name=libclang_rt.asan-x86_64.so) $out/no_nls.so" \
		ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:handle_segv=1 UBSAN_OPTIONS=print_stacktrace=1 \
		postgres --single -D "$data" -F -c log_min_messages=fatal postgres >"$out/$target.log" 2>&1 || rc=$?
	echo "== $target: ${seconds}s, exit $rc"
	summary "$out/$target.log" "$target"
	# no coverage counters registered would make the run blind, not clean
	if ! grep -q '^INFO: Loaded 1 modules' "$out/$target.log"; then
		echo "$target: libFuzzer found no coverage counters in the module" >&2
		status=1
	fi
	if [ "$rc" -ne 0 ] || ! grep -q '^Done ' "$out/$target.log"; then
		grep -E -A30 '==ERROR|runtime error|^withdraw_fuzz .*a parser raised|deadly signal|Test unit written' \
			"$out/$target.log" | head -60
		tail -8 "$out/$target.log"
		status=1
	fi
	rm -rf "$data"
}

for target in "${targets[@]}"; do
	case "$target" in
		envelope) run_envelope ;;
		zoomex | p99 | chainup | ccpayment | fiat_gateway | form_rules) run_in_server "$target" ;;
		*) echo "unknown fuzz target $target" >&2; exit 2 ;;
	esac
done
exit "$status"
