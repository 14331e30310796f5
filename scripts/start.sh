#!/bin/sh
# What `npm start` runs, once its prestart step has compiled the server to
# dist/ (scripts/build.mjs): the compiled server, with the memory settings
# below. Arguments are passed on (`npm start -- --port 9000`), and each step
# execs the next, so the server is the process npm started and gets its signals.
#
# Measured on the default server (bundled models, one inference thread, server
# on one core; bench/NOTES.md, "Memory"): peak RSS while /scale is loaded at
# concurrency 64 was 309 MB under `node --import tsx server.ts`, 193-273 MB
# compiled (no loader thread), 180-189 MB compiled with these settings;
# throughput unchanged within the noise of paired runs (+-3%).
#
#   MALLOC_ARENA_MAX=2            glibc gives each thread that allocates an
#                                 arena of its own (V8's GC helpers, libuv's
#                                 pool, ONNX Runtime), and each keeps what it
#                                 once used: two arenas hold the same work
#                                 (-3 MB ready, -10 MB under load).
#   MALLOC_MMAP_THRESHOLD_=1 MB   buffers of 1 MB and more always get their own
#                                 mapping, returned when freed. By default glibc
#                                 raises the threshold after the first large
#                                 free, so the copies ONNX Runtime makes while
#                                 it loads a model (file, protobuf, weights)
#                                 stayed in the heap for good (-11 MB ready).
#   --no-allocation-site-pretenuring
#                                 V8 allocates the objects of an allocation
#                                 site straight in the old generation once
#                                 most of them survive a scavenge. Under
#                                 load, a request's objects wait for their
#                                 batch across a scavenge, so V8 pretenured
#                                 them, and request garbage filled the old
#                                 generation: a full GC about every second
#                                 under /scale, its peak RSS 212-216 MB. Off:
#                                 one full GC in 4 s, 180-187 MB, and less CPU
#                                 per request (paired runs, 5 rounds, c=64,
#                                 server on one core: bench tagger 121 -> 99
#                                 us, tiny 52 -> 46, mlp 123 -> 110, /ner and
#                                 /pos -7 to -9%).
#   --heap-growing-percent=50     after a full GC, the old generation may
#                                 grow to 1.5x what survived (V8's default:
#                                 up to 4x for a small heap) before the next
#                                 one. /ner's peak 231 -> 209 MB, CPU per
#                                 request within noise (tagger 101 -> 99 us,
#                                 /ner 213 -> 216). With pretenuring on, 50
#                                 cost 17-20% of the tagger's throughput
#                                 (full GCs every ~150 ms under /ner), so
#                                 this was 100 until session 4.
#   --max-semi-space-size=8       the young generation's semi-spaces stop at
#                                 8 MB instead of 16: -16 to -19 MB under
#                                 load; CPU per request within noise once
#                                 pretenuring is off (tagger 101 -> 107 us,
#                                 tiny 40 -> 36, mlp 106 -> 104, /ner 260 ->
#                                 240; with pretenuring on it cost 4-34%).
#
# Peak RSS of the default server with /scale, /ner and /pos loaded in turn
# (c=64, 3 x 4 s each): 229-231 MB with the old settings (pretenuring on,
# --heap-growing-percent=100, default young generation), 194 MB with these.
# MALLOC_ values already in the environment win.
#
# On two cores or fewer (as this process sees them: taskset counts), V8 also
# collects on the main thread alone (--single-threaded-gc): its parallel GC
# helpers only compete there with the main thread and the inference thread,
# and a pause that waits for a helper the scheduler has not run lasts longer.
# Measured on the benchmark's flood (the heavy model at 10x its capacity, after
# three closed-loop runs, server on one core; ad-hoc runs): refusals' p99 26 ms
# (5 runs, 25-37) -> 10 ms (6 runs, 5-16); the full benchmark, with the other
# settings here: 28-29 ms -> 15.3 ms (3 floods, 8.8-15.7). Throughput within
# the noise of paired runs (tagger c=64: 62 against 65 us of CPU per request).
#
# SERVER_ENTRY replaces what node runs (default: the compiled server): the
# benchmark runs the sources with these same settings,
# SERVER_ENTRY='--import tsx server.ts'.
root=$(cd "$(dirname "$0")/.." && pwd)
MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-2}
MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_:-1048576}
export MALLOC_ARENA_MAX MALLOC_MMAP_THRESHOLD_
v8="--no-allocation-site-pretenuring --heap-growing-percent=50 --max-semi-space-size=8"
gc=
# nproc is GNU coreutils (not on macOS, for one): getconf there, else no setting.
cores=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 0)
if [ "$cores" -ge 1 ] 2>/dev/null && [ "$cores" -le 2 ]; then gc=--single-threaded-gc; fi
if [ -n "$SERVER_ENTRY" ]; then
  # shellcheck disable=SC2086 # the entry is node arguments, split on purpose
  exec node $gc $v8 $SERVER_ENTRY "$@"
fi
# --import: the hold on the server's signals (framework/signal-hold.ts), in
# place before server.js's modules are even loaded, where server.js's own first
# import of it waits for its whole module graph: a HUP, TTIN or TTOU in the
# first 0.1-0.2 s would otherwise end or stop the server, and a TERM end it by
# the signal (not exit 0). Cluster workers inherit it (execArgv). Measured
# with scripts/signal-window.mjs (time from spawn until SIGHUP is caught; 30
# runs each, median and range, on 2 loaded cores): a bare `node` script that
# catches it 111 ms (78-147); `node dist/server.js` 199 (154-238) before, 139
# (95-167) with the hold as its first import alone, 110 (85-146) with this
# --import; this script 227 -> 123 ms; with --workers 2, the primary 173 -> 111.
exec node $gc $v8 --import "$root/dist/framework/hold-signals-at-start.js" "$root/dist/server.js" "$@"
