#!/bin/sh
# End-to-end tests of the uc tool on the real models: pack, verify, inspect, unpack, the
# exit codes of every verification failure, and determinism across thread counts.
set -u
UC="${UC_TOP_BUILDDIR:-.}/cli/uc"
DATA="${UC_DATA_DIR:-../shared/data}"
work=$(mktemp -d /tmp/uc-cli-test-XXXXXX)
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok - $1"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $1"; }

# expect_exit CODE NAME COMMAND...: runs COMMAND, checks its exit status.
expect_exit() {
	want=$1
	name=$2
	shift 2
	"$@" >"$work/out" 2>"$work/err"
	got=$?
	if [ "$got" -eq "$want" ]; then
		ok "$name"
	else
		not_ok "$name (exit $got, expected $want)"
		sed 's/^/    /' "$work/out" "$work/err" | head -n 20
	fi
}

# expect_text FILE TEXT NAME: FILE contains TEXT.
expect_text() {
	if grep -q -- "$2" "$1"; then ok "$3"; else not_ok "$3 (no '$2' in output)"; sed 's/^/    /' "$1" | head -n 20; fi
}

manifest_digest() { sha256sum "$1/manifest.json" | cut -d' ' -f1; }

# Packing and verifying each real model.
expect_exit 0 "pack stories260K" "$UC" pack "$DATA/stories260K.safetensors" -o "$work/s" --family dense --license MIT
expect_exit 0 "verify stories260K" "$UC" verify "$work/s"
expect_text "$work/out" "STRUCTURE OK" "verify prints STRUCTURE OK"
expect_text "$work/out" "RECONSTRUCTION OK" "verify prints RECONSTRUCTION OK"
expect_exit 0 "verify --json" "$UC" verify --json "$work/s"
expect_text "$work/out" '"verdict"' "verify --json has a verdict"
expect_exit 0 "inspect stories260K" "$UC" inspect "$work/s"
expect_text "$work/out" "layers.0.attention.wq.weight" "inspect lists tensors"
expect_text "$work/out" "bits_per_weight" "inspect shows bits per weight"
expect_exit 0 "inspect --json" "$UC" inspect --json "$work/s"
expect_text "$work/out" '"manifest_sha256"' "inspect --json has the manifest digest"
expect_exit 0 "pack tiny-rwkv-5v2" "$UC" pack "$DATA/tiny-rwkv-5v2-730K.safetensors" -o "$work/r" --family recurrent
expect_exit 0 "verify tiny-rwkv-5v2" "$UC" verify "$work/r"
expect_exit 0 "pack llama2.c checkpoint" "$UC" pack "$DATA/stories260K.bin" -o "$work/sbin" --family dense --name stories260K --license MIT
expect_exit 0 "verify llama2.c pack" "$UC" verify "$work/sbin"

# The llama2.c file stores tensors grouped by kind, the safetensors file by layer, so the
# shards differ in order, but every tensor must rebuild to the same bytes.
tensor_digests() {
	python3 -c "import json,sys; [print(t['name'], t['sha256']) for t in json.load(open(sys.argv[1]))['tensors']]" "$1/manifest.json" | sort
}
if [ -n "$(tensor_digests "$work/s")" ] && [ "$(tensor_digests "$work/s")" = "$(tensor_digests "$work/sbin")" ]; then
	ok "llama2.c and safetensors sources give identical tensors"
else
	not_ok "llama2.c and safetensors sources give identical tensors"
fi

# Determinism: thread count never changes the bytes.
expect_exit 0 "pack with 1 thread" "$UC" pack "$DATA/tiny-rwkv-5v2-730K.safetensors" -o "$work/r1" --family recurrent --threads 1
expect_exit 0 "pack with 3 threads" "$UC" pack "$DATA/tiny-rwkv-5v2-730K.safetensors" -o "$work/r3" --family recurrent --threads 3
if [ "$(manifest_digest "$work/r1")" = "$(manifest_digest "$work/r")" ] &&
   [ "$(manifest_digest "$work/r3")" = "$(manifest_digest "$work/r")" ]; then
	ok "manifest identical for 1, 3 and all threads"
else
	not_ok "manifest identical for 1, 3 and all threads"
fi
if diff -r "$work/r1" "$work/r3" >/dev/null; then ok "pack directories identical across threads"; else not_ok "pack directories identical across threads"; fi

# Every available reconstruction path verifies the same pack.
for isa in scalar avx2 avx512 neon; do
	UC_ISA=$isa "$UC" verify "$work/s" >"$work/out" 2>"$work/err"
	got=$?
	if [ "$got" -eq 0 ]; then
		ok "verify with UC_ISA=$isa"
	elif [ "$got" -eq 1 ] && grep -q "$isa" "$work/err"; then
		ok "UC_ISA=$isa unavailable is an error naming it"
	else
		not_ok "verify with UC_ISA=$isa (exit $got)"
		sed 's/^/    /' "$work/err"
	fi
done
expect_exit 1 "UC_ISA unknown name is an error" env UC_ISA=sse9 "$UC" verify "$work/s"
expect_text "$work/err" "sse9" "unknown UC_ISA named in the error"

# Shard split: a small shard limit gives several shards, and the pack still verifies.
expect_exit 0 "pack with 64K shards" "$UC" pack "$DATA/stories260K.safetensors" -o "$work/split" --family dense --shard-size 64K
shards=$(ls "$work/split" | grep -vc manifest)
if [ "$shards" -gt 1 ]; then ok "small shard limit splits ($shards shards)"; else not_ok "small shard limit splits ($shards shards)"; fi
expect_exit 0 "verify split pack" "$UC" verify "$work/split"

# Unpack writes a safetensors file whose tensors hash to the manifest's digests.
expect_exit 0 "unpack stories260K" "$UC" unpack "$work/s" -o "$work/s.safetensors"
if python3 - "$work/s.safetensors" "$work/s/manifest.json" <<'PY'
import hashlib, json, struct, sys
blob = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", blob[:8])[0]
header = json.loads(blob[8:8 + n])
manifest = json.load(open(sys.argv[2]))
data = blob[8 + n:]
for t in manifest["tensors"]:
    entry = header[t["name"]]
    begin, end = entry["data_offsets"]
    assert entry["shape"] == t["shape"], t["name"]
    assert entry["dtype"] == t["dtype"].upper(), t["name"]
    assert hashlib.sha256(data[begin:end]).hexdigest() == t["sha256"], t["name"]
PY
then ok "unpacked tensors match the manifest digests"; else not_ok "unpacked tensors match the manifest digests"; fi
expect_exit 0 "pack the unpacked file again" "$UC" pack "$work/s.safetensors" -o "$work/s2" --family dense

# Verification failures and their exit codes.
cp -r "$work/s" "$work/flip"
shard=$(ls "$work/flip" | grep -v manifest | head -n 1)
python3 -c "import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[100]^=1; open(p,'wb').write(b)" "$work/flip/$shard"
expect_exit 4 "flipped shard byte is an integrity failure" "$UC" verify "$work/flip"
expect_text "$work/out" "$shard" "integrity failure names the shard"

cp -r "$work/s" "$work/trunc"
truncate -s -10 "$work/trunc/$shard"
expect_exit 3 "truncated shard is a structure failure" "$UC" verify "$work/trunc"

cp -r "$work/s" "$work/hash"
python3 - "$work/hash/manifest.json" <<'PY'
import json, sys
p = sys.argv[1]
m = json.load(open(p))
t = m["tensors"][2]
t["sha256"] = ("0" if t["sha256"][0] != "0" else "1") + t["sha256"][1:]
open(p, "w").write(json.dumps(m, sort_keys=True, separators=(",", ":")) + "\n")
PY
expect_exit 5 "wrong tensor hash is a reconstruction failure" "$UC" verify "$work/hash"
expect_text "$work/out" "$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['tensors'][2]['name'])" "$work/hash/manifest.json")" "reconstruction failure names the tensor"
expect_exit 5 "unpack refuses a mismatching tensor" "$UC" unpack "$work/hash" -o "$work/hash.safetensors"
if [ ! -e "$work/hash.safetensors" ]; then ok "failed unpack leaves no file"; else not_ok "failed unpack leaves no file"; fi

# Usage errors.
expect_exit 2 "pack without --family" "$UC" pack "$DATA/stories260K.safetensors" -o "$work/x"
expect_exit 2 "pack with unknown family" "$UC" pack "$DATA/stories260K.safetensors" -o "$work/x" --family cnn
expect_text "$work/err" "cnn" "unknown family named"
expect_exit 2 "pack with bad dtype" "$UC" pack "$DATA/stories260K.safetensors" -o "$work/x" --family dense --dtype f64
expect_exit 2 "pack into an existing directory" "$UC" pack "$DATA/stories260K.safetensors" -o "$work/s" --family dense
expect_exit 1 "pack a missing file" "$UC" pack "$work/none.safetensors" -o "$work/x" --family dense
expect_text "$work/err" "none.safetensors" "missing source named"
if [ ! -e "$work/x" ]; then ok "failed pack leaves no directory"; else not_ok "failed pack leaves no directory"; fi
expect_exit 2 "pack to an empty path" "$UC" pack "$DATA/stories260K.safetensors" -o "" --family dense
expect_text "$work/err" "output directory path is empty" "empty pack path named"
expect_exit 2 "unpack to an empty path" "$UC" unpack "$work/s" -o ""
expect_text "$work/err" "output file path is empty" "empty unpack path named"
mkdir "$work/out-dir"
expect_exit 2 "unpack to a directory" "$UC" unpack "$work/s" -o "$work/out-dir"
expect_text "$work/err" "out-dir is a directory" "directory output named"
if [ -z "$(ls -A "$work/out-dir")" ] && ! ls "$work" | grep -q tmp-; then ok "unpack to a directory leaves nothing"; else not_ok "unpack to a directory leaves nothing"; fi
# A checkpoint whose tensor name contains ESC (JSON \u001b) is malformed input: exit 1, not 2.
header='{"a\u001bb":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
length=$(printf '%s' "$header" | wc -c)
{ printf "\\$(printf %03o "$length")\\0\\0\\0\\0\\0\\0\\0"; printf '%s' "$header"; printf '\0\0\0\0'; } >"$work/escape.safetensors"
expect_exit 1 "pack a tensor name with ESC" "$UC" pack "$work/escape.safetensors" -o "$work/x" --family dense
expect_text "$work/err" "tensor 0 of the source: name contains control character 0x1b" "ESC tensor named by index"
expect_exit 2 "unknown verb" "$UC" frobnicate
for verb in pack verify inspect unpack; do
	expect_exit 0 "$verb --help" "$UC" "$verb" --help
done
expect_exit 3 "verify a directory without a manifest" "$UC" verify "$work"

# A FIFO where a file is expected is rejected at once instead of blocking in open().
# timeout turns a hang into exit 124.
mkfifo "$work/fifo.safetensors"
expect_exit 1 "pack a FIFO source" timeout 10 "$UC" pack "$work/fifo.safetensors" -o "$work/x" --family dense
expect_text "$work/err" "not a regular file" "FIFO source named as not a regular file"
mkdir "$work/fifo-manifest"
mkfifo "$work/fifo-manifest/manifest.json"
expect_exit 1 "inspect a FIFO manifest" timeout 10 "$UC" inspect "$work/fifo-manifest"
expect_text "$work/err" "not a regular file" "FIFO manifest named as not a regular file"
expect_exit 3 "verify a FIFO manifest" timeout 10 "$UC" verify "$work/fifo-manifest"
cp -r "$work/s" "$work/fifo-shard"
shard=$(ls "$work/fifo-shard" | grep -v manifest.json | head -n 1)
rm "$work/fifo-shard/$shard"
mkfifo "$work/fifo-shard/$shard"
expect_exit 3 "verify a FIFO shard" timeout 10 "$UC" verify "$work/fifo-shard"
expect_text "$work/out" "is not a regular file" "FIFO shard named as not a regular file"
expect_exit 1 "unpack a FIFO shard" timeout 10 "$UC" unpack "$work/fifo-shard" -o "$work/fifo.out.safetensors"
if [ ! -e "$work/fifo.out.safetensors" ]; then ok "failed unpack leaves no file"; else not_ok "failed unpack leaves no file"; fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
