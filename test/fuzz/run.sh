#!/usr/bin/env bash
# Builds and runs the libFuzzer targets (clang from Debian).
#
#   bash test/fuzz/run.sh [seconds per target]    (default 600: the full run)
#
# fuzz_envelope (chainup's envelopes and keys) is a standalone program.  The
# parsers of answers, callbacks and form rules need the server's jsonb, so
# their targets (fuzz_server.c: responses, callbacks, form_rules) are a
# test-only module run inside a single-user postgres with the ASan runtime
# preloaded; two run at a time.  Run as an ordinary user (postgres refuses
# root).  CI runs a short one.  Exits non-zero on a crash, a sanitizer
# report or a parser's ERROR; the input that did it is left in
# /tmp/withdraw-fuzz-crashes.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
top="$(cd "$here/../.." && pwd)"
seconds="${1:-600}"
inc="$(pg_config --includedir-server)"
lib="$(pg_config --libdir)"
[ -f "$lib/libpgcommon.a" ] || lib="$(pg_config --pkglibdir)"
out="$(mktemp -d /tmp/withdraw-fuzz.XXXXXX)"
trap 'rm -rf "$out"' EXIT

clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -DFRONTEND -Wno-ignored-attributes \
	-I"$inc" -o "$out/fuzz_envelope" \
	"$here/fuzz_envelope.c" "$top/src/envelope.c" \
	"$lib/libpgcommon.a" "$lib/libpgport.a" -lcrypto -lm

# a corpus from the provider's published envelopes (providers.md, seed 001)
mkdir -p "$out/corpus"
cp "$here"/corpus/* "$out/corpus/" 2>/dev/null || true
echo "== fuzz_envelope: ${seconds}s"
"$out/fuzz_envelope" -max_total_time="$seconds" -max_len=4096 \
	-print_final_stats=1 "$out/corpus" 2>&1 | tail -15

# -- the in-server targets ----------------------------------------------------
cflags=(-g -O1 -fPIC -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
	-Wno-ignored-attributes -Wno-compound-token-split-by-macro -I"$inc" -I"$top/src")
objs=()
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
crashes=/tmp/withdraw-fuzz-crashes
mkdir -p "$crashes"

# One target in a single-user backend; libFuzzer ends the process.  Each
# gets its own copy of the cluster, since a single-user backend locks it.
fuzz_in_server() {
	local target="$1" data="$out/pgdata-$1"
	cp -a "$out/pgdata" "$data"
	mkdir -p "$out/corpus-$target"
	printf '%s\n' \
		"CREATE FUNCTION withdraw_fuzz(text, text[]) RETURNS int AS '$out/withdraw_fuzz.so' LANGUAGE C STRICT" \
		"SELECT withdraw_fuzz('$target', ARRAY['-max_total_time=$seconds', '-max_len=8192', '-timeout=20', '-rss_limit_mb=4096', '-print_final_stats=1', '-artifact_prefix=$crashes/$target-', '$out/corpus-$target', '$out/seeds/$target', '$here/regressions/$target'])" |
		LD_PRELOAD="$(clang -print-file-name=libclang_rt.asan-x86_64.so) $out/no_nls.so" \
		ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:handle_segv=1 UBSAN_OPTIONS=print_stacktrace=1 \
		postgres --single -D "$data" -F -c log_min_messages=fatal postgres >"$out/$target.log" 2>&1
}
status=0
for pair in "responses callbacks" "form_rules"; do
	pids=()
	for target in $pair; do
		fuzz_in_server "$target" &
		pids+=($!)
	done
	i=0
	for target in $pair; do
		rc=0
		wait "${pids[$i]}" || rc=$?
		i=$((i + 1))
		echo "== fuzz_server $target: ${seconds}s, exit $rc"
		grep -E '^(INFO: Loaded|#[0-9]+.*(INITED|DONE)|stat::|Done )' "$out/$target.log" | tail -10
		# no coverage counters registered would make the run blind, not clean
		if ! grep -q '^INFO: Loaded 1 modules' "$out/$target.log"; then
			echo "fuzz_server $target: libFuzzer found no coverage counters in the module" >&2
			status=1
		fi
		if [ "$rc" -ne 0 ] || ! grep -q '^Done ' "$out/$target.log"; then
			grep -E -A30 '==ERROR|runtime error|^withdraw_fuzz|deadly signal' "$out/$target.log" | head -60
			tail -8 "$out/$target.log"
			status=1
		fi
	done
done
exit "$status"
