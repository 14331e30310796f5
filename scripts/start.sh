#!/bin/sh
# What `npm start` runs, once its prestart step has compiled the server to
# dist/ (scripts/build.mjs): the compiled server, with the memory settings
# below. Arguments are passed on (`npm start -- --port 9000`), and each step
# execs the next, so the server is the process npm started and gets its signals.
#
# Measured on the default server (bundled models, one inference thread, server
# on one core; README, "Memory"): peak RSS while /scale is loaded at
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
#   --heap-growing-percent=100    after a full GC, V8 lets the old generation
#                                 grow to 2x what survived before the next
#                                 one, instead of up to 4x for a small heap:
#                                 request objects promoted under load (garbage
#                                 a moment later) are collected sooner. Peak
#                                 with /scale, /ner and /pos loaded in turn:
#                                 276 MB without it, 225 MB with it. At 50
#                                 (1.5x; this script's value until session 3)
#                                 it was 213 MB, but full GCs every ~150 ms
#                                 under /ner cost 17-20% of the tagger's
#                                 throughput (75 against 62 us of CPU per
#                                 request, c=64) and doubled its p99; at 100,
#                                 61 against 58 us, within noise.
#
# Values already in the environment win. V8's young generation is left at its
# default: capping it (--max-semi-space-size=8) saved another 16 MB but cost 4
# to 18% of /scale's throughput.
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
gc=
if [ "$(nproc)" -le 2 ]; then gc=--single-threaded-gc; fi
if [ -n "$SERVER_ENTRY" ]; then
  # shellcheck disable=SC2086 # the entry is node arguments, split on purpose
  exec node $gc --heap-growing-percent=100 $SERVER_ENTRY "$@"
fi
exec node $gc --heap-growing-percent=100 "$root/dist/server.js" "$@"
