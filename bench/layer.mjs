#!/usr/bin/env node
/**
 * Layer pipeline benchmark.
 *
 *   (a) makeLayer (tar → DiffID → parallel gzip → store) over a real tree of
 *       thousands of files, against `tar -C dir -cf - . | gzip -6 | sha256sum`
 *       in the same run; target ratio <= 0.6.
 *   (b) peak RSS of a child process making a layer of a ~1 GiB tree (a few big
 *       random files plus many small ones); target < 200 MB.
 *
 * Usage: node bench/layer.mjs [--dist DIR] [--levels 1,3,6] [--runs N] [--skip-rss]
 * DIR defaults to ../dist (build with `npx tsc -p tsconfig.json`, or into a
 * scratch outDir and pass it with --dist).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, readdirSync, lstatSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { benchContext } from './lib.mjs';

const { here, args, option, dist } = benchContext(import.meta.url);

async function load() {
  const url = (p) => pathToFileURL(join(dist, p)).href;
  const [{ ContentStore }, { makeLayer }, compress] = await Promise.all([
    import(url('content/store.js')),
    import(url('layer/make.js')),
    import(url('layer/compress.js')),
  ]);
  return { ContentStore, makeLayer, DEFAULT_GZIP_LEVEL: compress.DEFAULT_GZIP_LEVEL };
}

// Child mode: make one layer and report peak memory as JSON on stdout.
if (args[0] === '--child-make') {
  const [, tree, storeRoot] = args;
  const { ContentStore, makeLayer } = await load();
  const store = await ContentStore.open(storeRoot);
  const start = performance.now();
  const record = await makeLayer(store, { dir: tree });
  const ms = performance.now() - start;
  const status = (await import('node:fs')).readFileSync('/proc/self/status', 'utf8');
  const hwm = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0);
  process.stdout.write(JSON.stringify({ ms, maxRssKb: process.resourceUsage().maxRSS, vmHwmKb: hwm, record }) + '\n');
  process.exit(0);
}

const levels = option('--levels', '').split(',').filter(Boolean).map(Number);
const runs = Number(option('--runs', '2'));
const { ContentStore, makeLayer, DEFAULT_GZIP_LEVEL } = await load();
const work = mkdtempSync(join(tmpdir(), 'strata-bench-layer-'));
const mb = (bytes) => (bytes / 1e6).toFixed(1);

function countTree(root) {
  let files = 0;
  let bytes = 0;
  const stack = [root];
  while (stack.length) {
    const dir = stack.pop();
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      const st = lstatSync(p);
      if (st.isDirectory()) stack.push(p);
      else {
        files++;
        if (st.isFile()) bytes += st.size;
      }
    }
  }
  return { files, bytes };
}

function shellBaseline(tree) {
  const start = performance.now();
  const out = execFileSync('sh', ['-c', `tar -C "$1" -cf - . | gzip -6 | sha256sum`, 'sh', tree], { maxBuffer: 1 << 20 });
  return { ms: performance.now() - start, out: out.toString().trim() };
}

async function timeMake(tree, opts) {
  const store = await ContentStore.open(join(work, `store-${Math.random().toString(36).slice(2)}`));
  const start = performance.now();
  const record = await makeLayer(store, { dir: tree }, opts);
  const ms = performance.now() - start;
  rmSync(store.root, { recursive: true, force: true });
  return { ms, record };
}

try {
  console.log(`strata layer bench — node ${process.version}, ${availableParallelism()} CPUs, default gzip level ${DEFAULT_GZIP_LEVEL}, dist ${dist}`);

  // (a) a real tree of thousands of files.
  const tree = join(work, 'tree');
  mkdirSync(tree);
  // A distro-like mix: JS and Python sources, C headers, docs (partly pre-gzipped).
  for (const src of ['/usr/lib/node_modules/npm', '/usr/share/doc', '/usr/lib/python3', '/usr/include']) {
    if (!existsSync(src)) continue;
    cpSync(src, join(tree, src.replaceAll('/', '_')), { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
  }
  const { files, bytes } = countTree(tree);
  console.log(`\n(a) tree: ${files} files, ${mb(bytes)} MB`);
  shellBaseline(tree); // warm the page cache for both sides
  const rows = [];
  let best = { shell: Infinity, strata: Infinity };
  for (let run = 0; run < runs; run++) {
    const shell = shellBaseline(tree);
    const made = await timeMake(tree, {});
    best = { shell: Math.min(best.shell, shell.ms), strata: Math.min(best.strata, made.ms) };
    rows.push({ run: run + 1, 'tar|gzip -6|sha256sum ms': shell.ms.toFixed(0), 'makeLayer ms': made.ms.toFixed(0), ratio: (made.ms / shell.ms).toFixed(2), 'blob MB': mb(made.record.size), 'tar MB': mb(made.record.uncompressedSize) });
  }
  console.table(rows);
  console.log(`best-of-${runs}: makeLayer ${best.strata.toFixed(0)} ms vs shell ${best.shell.toFixed(0)} ms → ratio ${(best.strata / best.shell).toFixed(2)} (target <= 0.60)`);

  if (levels.length) {
    const levelRows = [];
    for (const level of levels) {
      const made = await timeMake(tree, { level });
      levelRows.push({ level, ms: made.ms.toFixed(0), 'blob MB': mb(made.record.size), 'ratio to tar': (made.record.size / made.record.uncompressedSize).toFixed(3) });
    }
    console.table(levelRows);
  }

  // (b) peak RSS while making a layer of a ~1 GiB tree.
  if (!args.includes('--skip-rss')) {
    const big = join(work, 'big');
    mkdirSync(join(big, 'small'), { recursive: true });
    const chunk = 16 << 20;
    for (let i = 0; i < 4; i++) {
      const path = join(big, `blob-${i}.bin`);
      writeFileSync(path, '');
      for (let written = 0; written < 248 << 20; written += chunk) writeFileSync(path, randomBytes(chunk), { flag: 'a' });
    }
    for (let i = 0; i < 3000; i++) {
      const dir = join(big, 'small', String(i % 30));
      if (i < 30) mkdirSync(dir);
      writeFileSync(join(dir, `f${i}.txt`), `small file ${i}\n`.repeat(1 + (i % 200)));
    }
    const bigCount = countTree(big);
    console.log(`\n(b) tree: ${bigCount.files} files, ${mb(bigCount.bytes)} MB`);
    const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child-make', big, join(work, 'store-rss'), '--dist', dist], { encoding: 'utf8', maxBuffer: 1 << 20 });
    if (child.status !== 0) throw new Error(`child failed: ${child.stderr}`);
    const result = JSON.parse(child.stdout.trim().split('\n').pop());
    console.table([{ 'tar MB': mb(result.record.uncompressedSize), 'blob MB': mb(result.record.size), ms: result.ms.toFixed(0), 'MB/s': (result.record.uncompressedSize / 1e3 / result.ms).toFixed(0), 'maxRSS MB': (result.maxRssKb / 1024).toFixed(0), 'VmHWM MB': (result.vmHwmKb / 1024).toFixed(0) }]);
    console.log(`peak RSS ${(result.maxRssKb / 1024).toFixed(0)} MB (target < 200 MB)`);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}


