#!/usr/bin/env node
/**
 * Container benchmark.
 *
 *   copy-up: the first write to a 1 GiB image file through ContainerFs (an
 *            append: the whole file is copied into the upper dir, then one
 *            byte written) vs `cp` of the same snapshot file to the same file
 *            system; target ratio <= 1.5.
 *   commit:  strata `commit` of a container whose upper dir holds 5000 new
 *            files vs `docker commit` of a docker container with the same
 *            5000 files (written by a process in it); target ratio <= 0.5.
 *   whiteouts (no target, for the record): ContainerFs.rm of 2000 image
 *            files, each leaving a whiteout (a link to the container's one
 *            whiteout inode), vs making each whiteout with its own mknod(1)
 *            process, the approach the link avoids.
 *
 * The docker side runs on a private dockerd started (and stopped) with the
 * test harness's own code (test/helpers/dockerd.ts, transpiled on the fly
 * with the installed TypeScript), which also provides its busybox base image;
 * strata's base image is the same busybox tree. The strata container gets the
 * docker container's files through `docker cp … -` and copyToContainer, so
 * both commits store the same content.
 *
 * Each strata commit runs in a fresh node process, as the CLI would, so
 * process start-up is paid on both sides (docker's CLI start-up is in its
 * figure). `sync` (untimed) runs before every timed operation so neither side
 * pays for the other's writeback. Runs alternate; the table shows the best
 * and the median of each side and both ratios; the target is judged on the
 * ratio of the bests (the machine may be shared, and the best is the figure
 * least disturbed by other load).
 *
 * Usage: node bench/container.mjs [--dist DIR] [--runs N] [--skip-docker] [--size-mib N]
 * DIR defaults to ../dist (build with `npx tsc -p tsconfig.json`). Needs root
 * (snapshots keep the image's owners, dockerd). Prints `bench-result: {json}`
 * lines for bench/run.mjs; exits 0 when the benchmark ran, whether or not the
 * targets were met.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { benchContext, loadTestHarness } from './lib.mjs';

const { here, args, option, dist } = benchContext(import.meta.url);
const runs = Math.max(1, Number(option('--runs', '3')));
const sizeMiB = Math.max(1, Number(option('--size-mib', '1024')));
const FILES = 5000;
const TARGETS = { copyUp: 1.5, commit: 0.5 };

async function load() {
  const url = (p) => pathToFileURL(join(dist, p)).href;
  const [store, fs, commit, images, config, reference, make, cp] = await Promise.all([
    import(url('container/container-store.js')),
    import(url('container/fs.js')),
    import(url('container/commit.js')),
    import(url('image/image-store.js')),
    import(url('image/config.js')),
    import(url('image/reference.js')),
    import(url('layer/make.js')),
    import(url('container/cp.js')),
  ]);
  return {
    ContainerStore: store.ContainerStore,
    ContainerFs: fs.ContainerFs,
    commit: commit.commit,
    ImageStore: images.ImageStore,
    newImageConfig: config.newImageConfig,
    writeImage: config.writeImage,
    parseReference: reference.parseReference,
    makeLayer: make.makeLayer,
    copyToContainer: cp.copyToContainer,
  };
}

// ---------------------------------------------------------------- child mode: one commit, as the CLI would run it

if (args[0] === '--child-commit') {
  const [, root, id] = args;
  const { ContainerStore, commit } = await load();
  const containers = await ContainerStore.open(root);
  const image = await commit(await containers.get(id));
  process.stdout.write(`${JSON.stringify({ id: image.id })}\n`);
  process.exit(0);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const best = (xs) => Math.min(...xs);
const ms = (x) => `${x.toFixed(0)} ms`;

function sh(command, argv, options = {}) {
  const result = spawnSync(command, argv, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, ...options });
  if (result.status !== 0) throw new Error(`${command} ${argv.join(' ')} failed: ${result.stderr || result.error?.message || result.status}`);
  return result.stdout;
}

function timed(fn) {
  return async () => {
    sh('sync', []);
    const start = performance.now();
    await fn();
    return performance.now() - start;
  };
}

async function makeImage(s, ref, dir) {
  const { images } = s;
  return images.content.withLease(async (lease) => {
    const record = await s.makeLayer(images.content, { dir }, { compression: 'none', lease });
    const config = s.newImageConfig({ diffIds: [record.diffId], config: { Cmd: ['sh'] } });
    const written = await s.writeImage(images.content, { config, layers: [{ mediaType: record.mediaType, digest: record.digest, size: record.size }], lease });
    return images.addImage(written.manifest, [s.parseReference(ref)]);
  });
}

function printTable(rows) {
  const header = ['benchmark', 'strata best', 'strata median', 'baseline', 'baseline best', 'baseline median', 'ratio (best)', 'ratio (median)', 'target', 'result'];
  const verdict = (r) => (r.target === undefined ? '-' : best(r.strata) / best(r.other) <= r.target ? 'met' : 'MISSED');
  const table = [
    header,
    ...rows.map((r) => [
      r.name,
      ms(best(r.strata)),
      ms(median(r.strata)),
      r.baseline,
      ms(best(r.other)),
      ms(median(r.other)),
      (best(r.strata) / best(r.other)).toFixed(2),
      (median(r.strata) / median(r.other)).toFixed(2),
      r.target === undefined ? '-' : `<= ${r.target}`,
      verdict(r),
    ]),
  ];
  const widths = header.map((_, i) => Math.max(...table.map((row) => String(row[i]).length)));
  for (const row of table) console.log(row.map((cell, i) => String(cell).padEnd(widths[i])).join('  '));
}

// ---------------------------------------------------------------- main

if (process.getuid?.() !== 0) {
  console.error('bench/container.mjs needs root (snapshots keep image owners; the docker half starts a dockerd)');
  process.exit(1);
}
const s = await load();
const work = mkdtempSync(join(tmpdir(), 'strata-bench-container-'));
const rows = [];
let dockerd;
try {
  const root = join(work, 'store');
  s.images = await s.ImageStore.open(root);
  const containers = await s.ContainerStore.open(root, { images: s.images });

  // ------------------------------------------------------------ copy-up
  const bigTree = join(work, 'big');
  mkdirSync(bigTree);
  const block = randomBytes(1024 * 1024);
  const fd = openSync(join(bigTree, 'big.bin'), 'w');
  for (let i = 0; i < sizeMiB; i++) writeSync(fd, block);
  closeSync(fd);
  await makeImage(s, 'bench/big:1', bigTree);
  rmSync(bigTree, { recursive: true });
  const probe = await containers.create('bench/big:1');
  const lowerFile = join((await probe.lowerDirs())[0], 'big.bin');
  const copyUp = [];
  const cp = [];
  for (let i = 0; i < runs; i++) {
    const container = await containers.create('bench/big:1');
    const fsys = await s.ContainerFs.open(container);
    const target = join(container.dir, 'cp-copy.bin');
    // Alternating which goes first, so neither always finds the source hotter in the page cache.
    const ours = timed(() => fsys.writeFile('/big.bin', 'x', { flag: 'a' }));
    const theirs = timed(async () => sh('cp', [lowerFile, target]));
    if (i % 2 === 0) {
      copyUp.push(await ours());
      cp.push(await theirs());
    } else {
      cp.push(await theirs());
      copyUp.push(await ours());
    }
    await containers.remove(container.id);
  }
  rows.push({ name: `copy-up ${sizeMiB} MiB`, strata: copyUp, baseline: 'cp', other: cp, target: TARGETS.copyUp });

  // ------------------------------------------------------------ whiteouts
  const manyTree = join(work, 'many');
  mkdirSync(join(manyTree, 'files'), { recursive: true });
  for (let i = 0; i < 2000; i++) writeFileSync(join(manyTree, 'files', `f${i}`), `${i}\n`);
  await makeImage(s, 'bench/many:1', manyTree);
  const removals = [];
  const spawned = [];
  for (let i = 0; i < runs; i++) {
    const container = await containers.create('bench/many:1');
    const fsys = await s.ContainerFs.open(container);
    removals.push(await timed(async () => {
      for (let f = 0; f < 2000; f++) await fsys.rm(`/files/f${f}`);
    })());
    const scratch = join(container.dir, 'mknod-scratch');
    mkdirSync(scratch);
    spawned.push(await timed(async () => {
      for (let f = 0; f < 2000; f++) sh('mknod', ['-m', '000', join(scratch, `f${f}`), 'c', '0', '0']);
    })());
    await containers.remove(container.id);
  }
  rows.push({ name: 'rm 2000 image files', strata: removals, baseline: 'mknod per file', other: spawned });

  // ------------------------------------------------------------ commit
  if (!args.includes('--skip-docker')) {
    const harness = await loadTestHarness(work);
    dockerd = await harness.startTestDockerd({ parent: work });
    const base = await harness.ensureBusyboxImageOn(dockerd);
    const docker = (argv, options) => harness.runDockerOk(dockerd, argv, options);
    const script = `mkdir /data && i=0 && while [ $i -lt ${FILES} ]; do echo "file $i of the commit benchmark, with a line of text" > /data/f$i; i=$((i+1)); done`;
    await docker(['run', '--name', 'bench-commit', '--network', 'none', base, 'sh', '-c', script]);

    const rootfs = join(work, 'busybox-rootfs');
    await harness.makeBusyboxRootfs(rootfs);
    await makeImage(s, 'bench/busybox:1', rootfs);
    const strataContainer = await containers.create('bench/busybox:1');
    const { stdout: dataTar } = await docker(['cp', 'bench-commit:/data', '-']);
    const { Readable } = await import('node:stream');
    await s.copyToContainer(strataContainer, '/', Readable.from([dataTar]));

    const strataCommit = [];
    const dockerCommit = [];
    for (let i = 0; i < runs; i++) {
      strataCommit.push(await timed(async () => sh(process.execPath, [fileURLToPath(import.meta.url), '--child-commit', root, strataContainer.id, '--dist', dist]))());
      dockerCommit.push(await timed(() => docker(['commit', 'bench-commit', `bench/committed:${i}`]))());
    }
    rows.push({ name: `commit ${FILES} files`, strata: strataCommit, baseline: 'docker commit', other: dockerCommit, target: TARGETS.commit });
  }

  console.log('');
  printTable(rows);
  for (const r of rows) {
    const ratio = best(r.strata) / best(r.other);
    const result = { metric: `${r.name} (strata/${r.baseline})`, value: Number(ratio.toFixed(3)), median: Number((median(r.strata) / median(r.other)).toFixed(3)) };
    if (r.target !== undefined) Object.assign(result, { target: r.target, met: ratio <= r.target });
    console.log(`bench-result: ${JSON.stringify(result)}`);
  }
} finally {
  await dockerd?.stop().catch((err) => console.error(`stopping dockerd: ${err.message}`));
  // Give a just-stopped daemon's mounts a moment to go before deleting its state.
  await sleep(100);
  rmSync(work, { recursive: true, force: true });
}
