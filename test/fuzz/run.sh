#!/usr/bin/env bash
# Builds and runs the libFuzzer targets (clang from Debian).
#
#   bash test/fuzz/run.sh [seconds per target]    (default 600: the full run)
#
# CI runs a short one.  Exits non-zero on a crash or a sanitizer report.
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
