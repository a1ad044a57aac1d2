#!/bin/sh
# Benchmarks of ucregd, each against a reference measured in the same run on the same
# machine, printed side by side. Exits 0 whatever the timing, and fails only when a
# component does not start or a request fails.
#
# 1. GET /api/packs/SLUG with wrk at 64 connections, against nginx serving the same JSON
#    bytes as a static file on another loopback port: requests per second, ratio, p99.
# 2. A PUT of a blob of random bytes (4 GiB by default) with curl, against dd writing the
#    same bytes to the same disk with conv=fsync: throughput ratio, and the daemon's peak
#    RSS (VmHWM) during the upload.
#
# Environment: UC_TOP_BUILDDIR (build tree, default .), UC_DATA_DIR (real models),
# BENCH_DURATION (seconds per wrk run, default 10), BENCH_BLOB_MIB (upload size in MiB,
# default 4096), TMPDIR (where the data directories and the blob file go).
set -eu

build=${UC_TOP_BUILDDIR:-.}
uc=$build/cli/uc
ucregd=$build/server/ucregd
data=${UC_DATA_DIR:-../shared/data}
duration=${BENCH_DURATION:-10}
blob_mib=${BENCH_BLOB_MIB:-4096}
connections=64
slug=stories260k

for tool in wrk nginx curl dd python3; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "bench_server: $tool not found; install it (scripts/install-deps test installs wrk" \
		     "and nginx) and run make bench again" >&2
		exit 1
	fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/uc-bench-server-XXXXXX")
daemon_pid=
nginx_pid=
cleanup() {
	[ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
	[ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }

# start_daemon NAME: starts ucregd with a new data directory and push token. Sets
# daemon_pid, registry and token.
start_daemon() {
	dir=$work/$1
	mkdir -p "$dir"
	token=$("$ucregd" --data-dir "$dir/data" token create --name bench --scope push 2>/dev/null | tail -n 1)
	# The log must exist before the loop below reads it: the background job opens it later.
	: >"$dir/log"
	"$ucregd" --data-dir "$dir/data" --listen 127.0.0.1:0 >"$dir/log" 2>&1 &
	daemon_pid=$!
	port=
	for _ in $(seq 100); do
		port=$(sed -n 's/.*listening on .* (port \([0-9]*\)).*/\1/p' "$dir/log")
		[ -n "$port" ] && break
		sleep 0.05
	done
	if [ -z "$port" ]; then
		echo "bench_server: ucregd did not start:" >&2
		cat "$dir/log" >&2
		exit 1
	fi
	registry=http://127.0.0.1:$port
}

stop_daemon() {
	kill "$daemon_pid"
	wait "$daemon_pid" || true
	daemon_pid=
}

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_nginx FILE: serves FILE's bytes at /api/packs/$slug on a free loopback port from a
# generated config with its own prefix, in the foreground. Sets nginx_pid and nginx_url.
start_nginx() {
	prefix=$work/nginx
	mkdir -p "$prefix/www/api/packs" "$prefix/tmp"
	cp "$1" "$prefix/www/api/packs/$slug"
	# nginx started as root runs its workers as the user nobody, who must be able to read.
	chmod -R go+rX "$work"
	nginx_port=$(free_port)
	cat >"$prefix/nginx.conf" <<EOF
daemon off;
worker_processes auto;
pid $prefix/nginx.pid;
error_log $prefix/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path $prefix/tmp/body;
	proxy_temp_path $prefix/tmp/proxy;
	fastcgi_temp_path $prefix/tmp/fastcgi;
	uwsgi_temp_path $prefix/tmp/uwsgi;
	scgi_temp_path $prefix/tmp/scgi;
	default_type application/json;
	server {
		listen 127.0.0.1:$nginx_port;
		root $prefix/www;
	}
}
EOF
	nginx -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" &
	nginx_pid=$!
	for _ in $(seq 100); do
		curl -sf -o /dev/null "http://127.0.0.1:$nginx_port/api/packs/$slug" && break
		sleep 0.05
	done
	nginx_url=http://127.0.0.1:$nginx_port/api/packs/$slug
}

# run_wrk URL OUT: one warm-up second, then the measured run with latency percentiles.
run_wrk() {
	wrk -t2 -c"$connections" -d1s "$1" >/dev/null
	wrk -t2 -c"$connections" -d"${duration}s" --latency "$1" >"$2"
}

wrk_rps() { awk '/^Requests\/sec:/ { print $2 }' "$1"; }

# Prints the 99th percentile latency of a wrk report in milliseconds.
wrk_p99_ms() {
	awk '$1 == "99%" {
		v = $2; unit = v; sub(/[0-9.]+/, "", unit); sub(/[a-z]+$/, "", v)
		if (unit == "us") v /= 1000; else if (unit == "s") v *= 1000; else if (unit == "m") v *= 60000
		printf "%.2f\n", v
	}' "$1"
}

wrk_errors() {
	awk '/Non-2xx or 3xx responses:/ { n += $NF } /Socket errors:/ { n += 1 } END { print n + 0 }' "$1"
}

bench_pack_get() {
	echo "== GET /api/packs/$slug: ucregd against nginx serving the same bytes (wrk, $connections connections, ${duration} s)"
	start_daemon catalog
	"$uc" pack "$data/stories260K.safetensors" -o "$work/pack" --family dense >/dev/null
	UCREG_TOKEN=$token "$uc" push "$work/pack" --registry "$registry" --slug "$slug" \
		--version 1 >/dev/null 2>"$work/push.err" || { cat "$work/push.err" >&2; exit 1; }
	curl -sf -o "$work/pack.json" "$registry/api/packs/$slug"
	start_nginx "$work/pack.json"

	run_wrk "$registry/api/packs/$slug" "$work/wrk-ucregd.txt"
	run_wrk "$nginx_url" "$work/wrk-nginx.txt"
	stop_daemon
	kill "$nginx_pid"
	wait "$nginx_pid" 2>/dev/null || true
	nginx_pid=

	ours=$(wrk_rps "$work/wrk-ucregd.txt")
	theirs=$(wrk_rps "$work/wrk-nginx.txt")
	printf "response body: %s bytes\n" "$(wc -c <"$work/pack.json")"
	printf "%-8s %12s req/s   p99 %8s ms   errors %s\n" ucregd "$ours" \
		"$(wrk_p99_ms "$work/wrk-ucregd.txt")" "$(wrk_errors "$work/wrk-ucregd.txt")"
	printf "%-8s %12s req/s   p99 %8s ms   errors %s\n" nginx "$theirs" \
		"$(wrk_p99_ms "$work/wrk-nginx.txt")" "$(wrk_errors "$work/wrk-nginx.txt")"
	awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "ratio ucregd/nginx: %.2f (target >= 0.5; p99 target < 10 ms)\n", a / b }'
}

vm_hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

bench_blob_upload() {
	echo "== PUT /api/blobs of $blob_mib MiB of random bytes: ucregd (curl) against dd conv=fsync, same disk"
	src=$work/blob.bin
	head -c "${blob_mib}M" /dev/urandom >"$src"
	bytes=$(wc -c <"$src")
	hex=$(sha256sum "$src" | cut -d' ' -f1)

	t0=$(now)
	dd if="$src" of="$work/dd.bin" bs=1M conv=fsync status=none
	t1=$(now)
	rm -f "$work/dd.bin"

	start_daemon upload
	hwm_before=$(vm_hwm_kib "$daemon_pid")
	t2=$(now)
	status=$(curl -sS -o "$work/put.json" -w '%{http_code}' -X PUT -T "$src" -H "Expect:" \
		-H "Content-Type: application/octet-stream" -H "Authorization: Bearer $token" \
		"$registry/api/blobs/sha256/$hex")
	t3=$(now)
	hwm_after=$(vm_hwm_kib "$daemon_pid")
	stop_daemon
	if [ "$status" != 201 ]; then
		echo "bench_server: the upload failed with HTTP $status:" >&2
		cat "$work/put.json" >&2
		exit 1
	fi
	rm -rf "$work/upload" "$src"

	awk -v b="$bytes" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v t3="$t3" 'BEGIN {
		dd = b / (t1 - t0) / 1048576; up = b / (t3 - t2) / 1048576
		printf "dd conv=fsync  %8.1f MiB/s  (%.2f s)\n", dd, t1 - t0
		printf "ucregd PUT     %8.1f MiB/s  (%.2f s, digest checked, fsynced, renamed)\n", up, t3 - t2
		printf "ratio ucregd/dd: %.2f (target >= 0.8)\n", up / dd
	}'
	echo "ucregd peak RSS (VmHWM): $hwm_after kB after the upload, $hwm_before kB before it" \
	     "(target < 64 MB)"
}

echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
bench_pack_get
bench_blob_upload
