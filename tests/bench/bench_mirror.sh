#!/bin/sh
# Benchmarks of the mirror follower (ucregd --mirror-of), each against a reference
# measured in the same run on the same machine. Exits 0 whatever the timing, and fails
# only when a component does not start or a step fails.
#
# 1. Full sync: BENCH_MIRROR_PACKS generated packs (random F16 matrices encoded by
#    `uc pack`, about 23 MiB each) are published on an upstream. The reference is `curl`
#    downloading the same shards over one kept-alive connection to files. The mirror
#    figure runs from starting a new mirror until its log reports every version published;
#    in that time it also hashes, fsyncs and fully verifies every version.
# 2. Incremental sync: with catalogs of BENCH_MIRROR_SMALL and BENCH_MIRROR_LARGE
#    versions already mirrored, 1 and 10 new versions are published and the duration of
#    the mirror round that applies them is read from its log.
#
# Environment: UC_TOP_BUILDDIR (build tree, default .), UC_DATA_DIR (real models),
# BENCH_MIRROR_PACKS (default 12), BENCH_MIRROR_SMALL (default 20), BENCH_MIRROR_LARGE
# (default 500), TMPDIR (where the data directories go).
set -eu

build=${UC_TOP_BUILDDIR:-.}
uc=$build/cli/uc
ucregd=$build/server/ucregd
make_pack=$build/tests/server/make_pack
data=${UC_DATA_DIR:-../shared/data}
packs=${BENCH_MIRROR_PACKS:-12}
small=${BENCH_MIRROR_SMALL:-20}
large=${BENCH_MIRROR_LARGE:-500}

for tool in curl python3; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "bench_mirror: $tool not found; install it and run make bench again" >&2
		exit 1
	fi
done
if [ ! -x "$make_pack" ]; then
	echo "bench_mirror: $make_pack is not built; run make tests/server/make_pack" >&2
	exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/uc-bench-mirror-XXXXXX")
pids=
cleanup() {
	for pid in $pids; do
		kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }

# start_daemon DIR [ARGS...]: starts ucregd on a free loopback port with data in DIR/data.
# Sets `port` and `started` (the pid).
start_daemon() {
	dir=$1
	shift
	mkdir -p "$dir"
	: >"$dir/log" # exists before the daemon opens it, so the port lookup can read it
	"$ucregd" --data-dir "$dir/data" --listen 127.0.0.1:0 --workers 2 "$@" >>"$dir/log" 2>&1 &
	started=$!
	pids="$pids $started"
	port=
	for _ in $(seq 200); do
		port=$(sed -n 's/.*listening on .* (port \([0-9]*\)).*/\1/p' "$dir/log")
		[ -n "$port" ] && break
		sleep 0.05
	done
	if [ -z "$port" ]; then
		echo "bench_mirror: ucregd did not start:" >&2
		cat "$dir/log" >&2
		exit 1
	fi
}

# new_upstream NAME: an upstream with a signing key and a push token. Sets up_url,
# up_dir, up_pid, key_file and token_file.
new_upstream() {
	up_dir=$work/$1
	mkdir -p "$up_dir"
	"$ucregd" --data-dir "$up_dir/data" token create --name bench --scope push 2>/dev/null |
		tail -n 1 >"$up_dir/token"
	"$ucregd" --data-dir "$up_dir/data" keygen >"$up_dir/key.pem" 2>/dev/null
	token_file=$up_dir/token
	key_file=$up_dir/key.pem
	start_daemon "$up_dir"
	up_pid=$started
	up_url=http://127.0.0.1:$port
}

push() { # push PACK_DIR SLUG VERSION
	"$uc" push "$1" --registry "$up_url" --slug "$2" --version "$3" --token-file "$token_file" \
		>/dev/null
}

# wait_log FILE PATTERN COUNT: waits until PATTERN occurs COUNT times in FILE.
wait_log() {
	for _ in $(seq 6000); do
		[ "$(grep -c "$2" "$1" || true)" -ge "$3" ] && return 0
		sleep 0.05
	done
	echo "bench_mirror: timed out waiting for '$2' in $1:" >&2
	tail -n 20 "$1" >&2
	exit 1
}

echo "bench_mirror: generating and packing $packs packs (random F16 matrices)..."
i=0
while [ "$i" -lt "$packs" ]; do
	python3 - "$work/src$i.safetensors" "$i" <<'EOF'
import json, random, struct, sys
out, seed = sys.argv[1], int(sys.argv[2])
rows, cols, count = 2048, 4096, 4
size = rows * cols * 2
header, offset = {}, 0
for t in range(count):
    header["layers.%d.weight" % t] = {"dtype": "F16", "shape": [rows, cols],
                                      "data_offsets": [offset, offset + size]}
    offset += size
text = json.dumps(header).encode()
text += b" " * (-len(text) % 8)
rng = random.Random(seed)
block = b"".join(struct.pack("<e", rng.gauss(0, 0.02)) for _ in range(1 << 16))
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text)
    for t in range(count):
        turn = rng.randrange(len(block) // 2) * 2
        piece = block[turn:] + block[:turn]
        f.write(piece * (size // len(piece)))
EOF
	"$uc" pack "$work/src$i.safetensors" -o "$work/pack$i" --family dense >/dev/null
	rm -f "$work/src$i.safetensors"
	i=$((i + 1))
done
total_bytes=$(cat "$work"/pack*/[0-9a-f]* | wc -c)

# 1. Full sync against curl.
new_upstream full
i=0
while [ "$i" -lt "$packs" ]; do
	push "$work/pack$i" "gen$i" 1.0
	i=$((i + 1))
done

urls=
for f in "$work"/pack*/[0-9a-f]*; do
	urls="$urls $up_url/api/blobs/sha256/$(basename "$f") -o $work/curl/$(basename "$f")"
done
mkdir -p "$work/curl"
start=$(now)
# shellcheck disable=SC2086
curl -sS --fail $urls
sync
curl_s=$(python3 -c "print($(now) - $start)")
rm -rf "$work/curl"

start=$(now)
start_daemon "$work/mirror" --mirror-of "$up_url" --upstream-key "$key_file" --mirror-interval 1
wait_log "$work/mirror/log" 'mirror: published' "$packs"
sync
mirror_s=$(python3 -c "print($(now) - $start)")
kill "$started"; wait "$started" || true

python3 - "$total_bytes" "$curl_s" "$mirror_s" "$packs" <<'EOF'
import sys
size, curl_s, mirror_s, packs = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
mib = size / 1048576
print("full sync of %s packs, %.0f MiB of shards:" % (packs, mib))
print("  curl, one connection, to files:  %7.2f s  %7.1f MiB/s" % (curl_s, mib / curl_s))
print("  ucregd mirror, start to synced:  %7.2f s  %7.1f MiB/s  %.2fx curl (target >= 0.8x)"
      % (mirror_s, mib / mirror_s, curl_s / mirror_s))
EOF
kill "$up_pid"; wait "$up_pid" || true

# 2. Incremental sync cost against the number of changes, for two catalog sizes.
"$make_pack" "$data/stories260K.safetensors" "$work/small-pack" dense
for catalog in "$small" "$large"; do
	new_upstream "catalog$catalog"
	i=0
	while [ "$i" -lt "$catalog" ]; do
		push "$work/small-pack" "base$i" 1.0
		i=$((i + 1))
	done
	start_daemon "$work/mirror$catalog" --mirror-of "$up_url" --upstream-key "$key_file" \
		--mirror-interval 1
	mirror_pid=$started
	log=$work/mirror$catalog/log
	wait_log "$log" 'mirror: published' "$catalog"
	published=$catalog
	for changes in 1 10; do
		before=$(grep -c 'mirror: round to serial .* applied in' "$log" || true)
		i=0
		while [ "$i" -lt "$changes" ]; do
			push "$work/small-pack" "new$changes-$i" 1.0
			i=$((i + 1))
		done
		published=$((published + changes))
		wait_log "$log" 'mirror: published' "$published"
		sleep 1.5
		# Every round after `before` worked on these changes; idle rounds log nothing.
		grep 'mirror: round to serial .* applied in' "$log" | tail -n "+$((before + 1))" |
			sed 's/.* in \([0-9.]*\) s: \([0-9]*\) versions.*/\1 \2/' |
			awk -v catalog="$catalog" -v changes="$changes" '
				{ seconds += $1; reconciled += $2; rounds++ }
				END { printf "incremental sync, catalog of %d versions, %d new: %d rounds, %d versions reconciled, %.3f s in rounds\n", catalog, changes, rounds, reconciled, seconds }'
	done
	kill "$mirror_pid"; wait "$mirror_pid" || true
	kill "$up_pid"; wait "$up_pid" || true
done
