#!/usr/bin/env node
/**
 * `npm run bench`: runs every bench/*.mjs (but this file) one after another,
 * passing its own arguments on (e.g. `--dist DIR`), shows each bench's own
 * output, and ends with a table: one row per bench (status, wall time) and
 * one per `bench-result: {json}` line a bench printed (its figures against
 * its target). Exits non-zero only if a bench itself failed.
 */
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const self = basename(fileURLToPath(import.meta.url));
const only = process.env.STRATA_BENCH_ONLY?.split(',').filter(Boolean);
const benches = readdirSync(here)
  .filter((name) => name.endsWith('.mjs') && name !== self && name !== 'lib.mjs') // lib.mjs is shared code, not a bench
  .filter((name) => !only || only.includes(name.replace(/\.mjs$/, '')))
  .sort();

function runBench(name) {
  return new Promise((resolve) => {
    const start = performance.now();
    const child = spawn(process.execPath, [join(here, name), ...process.argv.slice(2)], { stdio: ['ignore', 'pipe', 'inherit'] });
    const results = [];
    createInterface({ input: child.stdout }).on('line', (line) => {
      process.stdout.write(`${line}\n`);
      const match = /^bench-result: (\{.*\})$/.exec(line);
      if (match) {
        try {
          results.push(JSON.parse(match[1]));
        } catch {
          // not a result after all
        }
      }
    });
    child.on('error', (err) => resolve({ name, ok: false, seconds: 0, results, error: err.message }));
    child.on('close', (code, signal) => resolve({ name, ok: code === 0, seconds: (performance.now() - start) / 1000, results, error: code === 0 ? '' : `exit ${code ?? signal}` }));
  });
}

const outcomes = [];
for (const name of benches) {
  console.log(`\n=== ${name} ===`);
  outcomes.push(await runBench(name));
}

console.log('\n=== summary ===');
console.table(outcomes.map((o) => ({ bench: o.name, status: o.ok ? 'ok' : `FAILED (${o.error})`, 'wall s': o.seconds.toFixed(1) })));
const figures = outcomes.flatMap((o) =>
  o.results.map((r) => ({ bench: o.name, metric: r.metric, value: r.value, target: r.target === undefined ? '' : `<= ${r.target}`, result: r.met === undefined ? '' : r.met ? 'met' : 'MISSED' })),
);
if (figures.length > 0) console.table(figures);
process.exit(outcomes.every((o) => o.ok) ? 0 : 1);
