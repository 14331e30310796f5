// How long a server process takes signals by their default action at start:
// the time from its spawn until it catches SIGHUP (the HUP bit of SigCgt in
// /proc/<pid>/status, polled every millisecond), wall clock and the main
// thread's CPU time then (/proc/<pid>/schedstat, less sensitive to a loaded
// machine). Linux only. The commands run in turn, one run of each per round,
// so that load drifts hit them alike; each is stopped with TERM once caught.
//
//   node scripts/signal-window.mjs 30 'bare node|.|node -e process.on("SIGHUP",()=>{});setTimeout(()=>{},9e3)' \
//     'start.sh|.|sh scripts/start.sh --port 18977 --log-level error'
//
// Each command is 'label|cwd|argv split on spaces'.
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'

const runs = Number(process.argv[2])
const commands = process.argv.slice(3).map(arg => {
  const [label, cwd, command] = arg.split('|')
  return { label, cwd, argv: command.split(' '), wall: [], cpu: [] }
})
if (!(runs > 0) || commands.length === 0) {
  process.stderr.write('usage: node scripts/signal-window.mjs RUNS \'label|cwd|command\'...\n')
  process.exit(2)
}
const nap = new Int32Array(new SharedArrayBuffer(4))
for (let i = 0; i < runs; i++) {
  for (const c of commands) {
    const t0 = process.hrtime.bigint()
    const elapsed = () => Number(process.hrtime.bigint() - t0) / 1e6
    const child = spawn(c.argv[0], c.argv.slice(1), { cwd: c.cwd, stdio: ['ignore', 'ignore', 'inherit'] })
    let wall = NaN
    let cpu = NaN
    while (elapsed() < 10_000) {
      let status
      try { status = readFileSync(`/proc/${child.pid}/status`, 'utf8') } catch { break }
      if (BigInt('0x' + /^SigCgt:\s*([0-9a-f]+)/m.exec(status)[1]) & 1n) {
        wall = elapsed()
        try { cpu = Number(readFileSync(`/proc/${child.pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6 } catch {}
        break
      }
      // A busy loop would take a core from the process it measures.
      Atomics.wait(nap, 0, 0, 1)
    }
    c.wall.push(wall)
    c.cpu.push(cpu)
    child.kill('SIGTERM')
    await new Promise(resolve => child.once('exit', resolve))
  }
}
for (const c of commands) {
  for (const [what, values] of [['wall', c.wall], ['main-thread cpu', c.cpu]]) {
    values.sort((a, b) => a - b)
    const q = f => values[Math.min(values.length - 1, Math.floor(f * values.length))].toFixed(0)
    console.log(`${c.label.padEnd(30)} ${what.padEnd(16)} n=${values.length} min ${q(0)} p25 ${q(0.25)} median ${q(0.5)} p75 ${q(0.75)} max ${q(1)} ms`)
  }
}
