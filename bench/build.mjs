#!/usr/bin/env node
/**
 * Build benchmark: `strata build` against `docker build` (classic builder,
 * DOCKER_BUILDKIT=0) on the same COPY-heavy context, in the same run.
 *
 *   cold:   a build with nothing cached. strata gets a fresh store each run
 *           (holding only the base image, loaded untimed), so its context
 *           stat cache is empty too; docker builds with --no-cache.
 *           Target ratio <= 0.4.
 *   cached: the same build again, every step a cache hit. Target <= 0.1.
 *
 * The context is a real node_modules tree (this repository's own, plus the
 * globally installed packages under /usr/lib/node_modules when present:
 * thousands of files, ~100 MB) and a few app files; the Dockerfile is
 *
 *   FROM strata-test/busybox:latest
 *   COPY node_modules /app/node_modules
 *   COPY . /app
 *   CMD ["node", "/app/server.js"]
 *
 * so both engines build on the same base image: the test harness's busybox
 * image, made by its own code (test/helpers/dockerd.ts, transpiled on the fly
 * with the installed TypeScript) on a private dockerd this script starts and
 * stops itself, and loaded into each strata store with `docker save`.
 *
 * Every strata build runs the CLI as installed (`node DIST/cli/strata.cjs
 * build -q`, the package's bin: the bundled CLI, compiled with its code cache
 * once one exists) in a fresh process, as a user would, so process start-up
 * is paid on both sides
 * (docker's CLI start-up and context upload are in its figure). `sync`
 * (untimed) runs before every timed build so neither side pays for the
 * other's writeback. Runs alternate which engine goes first; the table shows
 * the best and the median of --runs runs, and the ratio of the bests.
 *
 * Usage: node bench/build.mjs [--dist DIR] [--runs N] [--profile DIR]
 * DIR defaults to ../dist (build with `npm run build`). With
 * --profile, one extra cold and one extra cached strata build are run under
 * `node --cpu-prof` and the profiles written to that directory. Needs root,
 * dockerd, containerd, runc and a static busybox (/bin/busybox). Prints
 * `bench-result: {json}` lines for bench/run.mjs; exits 0 when the benchmark
 * ran, whether or not the targets were met.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { benchContext, loadTestHarness } from './lib.mjs';

const { here, args, option, dist } = benchContext(import.meta.url);
const runs = Math.max(1, Number(option('--runs', '3')));
const profileDir = option('--profile', undefined);
const TARGETS = { cold: 0.4, cached: 0.1 };
const TAG = 'strata-bench/build:latest';
const DOCKERFILE = [
  'FROM strata-test/busybox:latest',
  'COPY node_modules /app/node_modules',
  'COPY . /app',
  'CMD ["node", "/app/server.js"]',
  '',
].join('\n');

// ---------------------------------------------------------------- helpers

function sh(command, argv, options = {}) {
  const result = spawnSync(command, argv, { encoding: 'utf8', maxBuffer: 64 << 20, ...options });
  if (result.error) throw new Error(`${command}: ${result.error.message}`);
  if (result.status !== 0) throw new Error(`${command} ${argv.join(' ')} failed (exit ${result.status ?? result.signal}):\n${(result.stderr || result.stdout || '').trim().slice(-2000)}`);
  return result.stdout;
}

const best = (values) => Math.min(...values);
const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const ms = (value) => (value >= 10_000 ? `${(value / 1000).toFixed(1)} s` : `${Math.round(value)} ms`);

async function timed(fn) {
  sh('sync', []);
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

/** Files and bytes under `dir` (symlinks counted, not followed). */
function treeSize(dir) {
  let files = 0;
  let bytes = 0;
  const walk = (path) => {
    for (const entry of readdirSync(path, { withFileTypes: true })) {
      const child = join(path, entry.name);
      if (entry.isDirectory()) walk(child);
      else {
        files++;
        bytes += lstatSync(child).size;
      }
    }
  };
  walk(dir);
  return { files, bytes };
}

/** The build context: node_modules trees from this machine, and a small app. */
function makeContext(ctx) {
  const modules = join(ctx, 'node_modules');
  mkdirSync(modules, { recursive: true });
  const sources = [join(here, '..', 'node_modules'), '/usr/lib/node_modules', '/usr/local/lib/node_modules'].filter((dir) => existsSync(dir));
  for (const source of sources) {
    for (const name of readdirSync(source)) {
      // The first tree wins a package name; later trees only add packages.
      if (!existsSync(join(modules, name))) cpSync(join(source, name), join(modules, name), { recursive: true, verbatimSymlinks: true });
    }
  }
  mkdirSync(join(ctx, 'lib'));
  writeFileSync(join(ctx, 'package.json'), JSON.stringify({ name: 'bench-app', version: '1.0.0', main: 'server.js', type: 'module' }, null, 2) + '\n');
  writeFileSync(join(ctx, 'server.js'), "import { createServer } from 'node:http';\nimport { handler } from './lib/handler.js';\ncreateServer(handler).listen(Number(process.env.PORT ?? 3000));\n");
  writeFileSync(join(ctx, 'lib', 'handler.js'), "export function handler(req, res) {\n  res.end('ok\\n');\n}\n");
  writeFileSync(join(ctx, 'Dockerfile'), DOCKERFILE);
  writeFileSync(join(ctx, '.dockerignore'), '*.log\n.git\n');
  return sources;
}

function printTable(rows) {
  const header = ['benchmark', 'strata best', 'strata median', 'docker best', 'docker median', 'ratio (best)', 'target', 'result'];
  const verdict = (r) => (best(r.strata) / best(r.docker) <= r.target ? 'met' : 'MISSED');
  const table = [header, ...rows.map((r) => [r.name, ms(best(r.strata)), ms(median(r.strata)), ms(best(r.docker)), ms(median(r.docker)), (best(r.strata) / best(r.docker)).toFixed(3), `<= ${r.target}`, verdict(r)])];
  const widths = header.map((_, i) => Math.max(...table.map((row) => String(row[i]).length)));
  for (const row of table) console.log(row.map((cell, i) => String(cell).padEnd(widths[i])).join('  '));
}

// ---------------------------------------------------------------- main

if (process.getuid?.() !== 0) {
  console.error('bench/build.mjs needs root (it starts a private dockerd)');
  process.exit(1);
}
const cli = join(dist, 'cli', 'strata.cjs');
if (!existsSync(cli)) {
  console.error(`no strata CLI at ${cli}: build it first (npm run build), or pass --dist DIR`);
  process.exit(1);
}
const { Strata } = await import(pathToFileURL(join(dist, 'strata.js')).href);

const work = mkdtempSync(join(tmpdir(), 'strata-bench-build-'));
let dockerd;
try {
  const ctx = join(work, 'context');
  const sources = makeContext(ctx);
  const size = treeSize(ctx);
  console.log(`context: ${size.files} files, ${(size.bytes / 1e6).toFixed(1)} MB (node_modules from ${sources.join(', ')})`);

  const harness = await loadTestHarness(work);
  dockerd = await harness.startTestDockerd({ parent: work });
  console.log(`dockerd ${dockerd.serverVersion}, storage driver ${dockerd.storageDriver}`);
  const base = await harness.ensureBusyboxImageOn(dockerd);
  const docker = (argv, options) => harness.runDockerOk(dockerd, argv, { timeoutMs: 30 * 60_000, ...options });
  const baseArchive = join(work, 'base.tar');
  await docker(['save', '-o', baseArchive, base]);

  let storeCount = 0;
  /** A store holding only the base image (loaded untimed). */
  const freshStore = async () => {
    const root = join(work, `store-${storeCount++}`);
    const strata = await Strata.open({ root });
    await strata.load({ file: baseArchive });
    return root;
  };
  const strataBuild = (root, extra = [], nodeFlags = []) => sh(process.execPath, [...nodeFlags, cli, '--root', root, 'build', '-q', ...extra, '-t', TAG, ctx]);
  const dockerBuild = (extra = []) => docker(['build', '-q', ...extra, '-t', TAG, ctx]);

  const cold = { strata: [], docker: [] };
  const cached = { strata: [], docker: [] };
  let lastStore;
  for (let i = 0; i < runs; i++) {
    const root = await freshStore();
    if (storeCount > 2) rmSync(join(work, `store-${storeCount - 3}`), { recursive: true, force: true });
    const strataCold = () => timed(() => strataBuild(root));
    const dockerCold = () => timed(() => dockerBuild(['--no-cache']));
    if (i % 2 === 0) {
      cold.docker.push(await dockerCold());
      cold.strata.push(await strataCold());
    } else {
      cold.strata.push(await strataCold());
      cold.docker.push(await dockerCold());
    }
    const strataCached = () => timed(() => strataBuild(root));
    const dockerCached = () => timed(() => dockerBuild());
    if (i % 2 === 0) {
      cached.docker.push(await dockerCached());
      cached.strata.push(await strataCached());
    } else {
      cached.strata.push(await strataCached());
      cached.docker.push(await dockerCached());
    }
    console.log(`run ${i + 1}/${runs}: cold strata ${ms(cold.strata.at(-1))} docker ${ms(cold.docker.at(-1))}; cached strata ${ms(cached.strata.at(-1))} docker ${ms(cached.docker.at(-1))}`);
    lastStore = root;
  }

  // Sanity: the strata image has the tree (two COPY layers on the base's one).
  const strata = await Strata.open({ root: lastStore });
  const image = await strata.images.resolve(TAG);
  if (image.manifest.layers.length !== 3) throw new Error(`the strata image has ${image.manifest.layers.length} layers, expected 3`);

  if (profileDir) {
    mkdirSync(profileDir, { recursive: true });
    const root = await freshStore();
    strataBuild(root, [], ['--cpu-prof', '--cpu-prof-dir', resolve(profileDir), '--cpu-prof-name', 'cold.cpuprofile']);
    strataBuild(root, [], ['--cpu-prof', '--cpu-prof-dir', resolve(profileDir), '--cpu-prof-name', 'cached.cpuprofile']);
    console.log(`CPU profiles of a cold and a cached strata build written to ${resolve(profileDir)}`);
  }

  const rows = [
    { name: `cold build (${size.files} files, ${(size.bytes / 1e6).toFixed(0)} MB)`, ...cold, target: TARGETS.cold },
    { name: 'cached rebuild', ...cached, target: TARGETS.cached },
  ];
  console.log('');
  printTable(rows);
  for (const r of rows) {
    const ratio = best(r.strata) / best(r.docker);
    console.log(`bench-result: ${JSON.stringify({ metric: `build ${r.name.split(' (')[0]} (strata/docker build)`, value: Number(ratio.toFixed(3)), target: r.target, met: ratio <= r.target })}`);
  }
} finally {
  await dockerd?.stop().catch((err) => console.error(`stopping dockerd: ${err.message}`));
  rmSync(work, { recursive: true, force: true });
}
