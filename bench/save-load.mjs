#!/usr/bin/env node
/**
 * save / load benchmark against Docker, on the same image in the same run.
 *
 *   save: strata `saveImages` (docker format) to a file vs `docker save -o`;
 *         target ratio <= 0.5.
 *   load: strata `loadImages` of Docker's own `docker save` archive into an
 *         empty store vs `docker load -i` of the same file after `docker rmi`;
 *         target ratio <= 0.3.
 *
 * The image (~320 MB, 5 layers on a busybox base) is built by a private
 * dockerd this script starts and stops itself (its state lives under
 * /tmp/strata-bench-docker-<pid>): COPY of host trees (/usr/include, the
 * Python standard library, this repository's node_modules), 64 MB of
 * incompressible data from /dev/urandom, and a layer that deletes and edits.
 * No network is used. Needs root, dockerd, containerd, runc and a static
 * busybox (/bin/busybox).
 *
 * Each strata operation runs in a fresh node process, as the CLI would, so
 * process start-up is paid on both sides. Before every timed operation the
 * page cache is flushed (`sync`, untimed), so neither side pays for the
 * other's writeback (strata fsyncs what it stores; docker does not, and its
 * dirty pages would otherwise be flushed during the next run). Runs alternate between the two
 * sides; the table shows the best and the median of --runs runs, and the
 * ratio of the bests (the machine is shared, so the best is the measure
 * least disturbed by other load).
 *
 * Usage: node bench/save-load.mjs [--dist DIR] [--runs N] [--keep]
 * DIR defaults to ../dist (build with `npx tsc -p tsconfig.json`). Set
 * STRATA_BENCH_DOCKER_HOST=unix:///path.sock to use a running daemon instead.
 * Prints `bench-result: {json}` lines for bench/run.mjs. Exits 0 when the
 * benchmark ran, whether or not the targets were met (the table says).
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, closeSync, copyFileSync, cpSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { benchContext } from './lib.mjs';

const { here, args, option, dist } = benchContext(import.meta.url);
const runs = Math.max(1, Number(option('--runs', '5')));
const keep = args.includes('--keep');
const IMAGE = 'strata-bench/save-load:1';
const TARGETS = { save: 0.5, load: 0.3 };

// ---------------------------------------------------------------- child mode: one strata operation, timed inside and out

if (args[0] === '--child') {
  const [, op, root, file] = args;
  const url = (p) => pathToFileURL(join(dist, p)).href;
  const [{ ImageStore }, { loadImages }, { saveImages }, { parseReference }, { createWriteStream }, { pipeline }] = await Promise.all([
    import(url('image/image-store.js')),
    import(url('archive/load.js')),
    import(url('archive/save.js')),
    import(url('image/reference.js')),
    import('node:fs'),
    import('node:stream/promises'),
  ]);
  const store = await ImageStore.open(root);
  if (op === 'load') {
    const loaded = await loadImages(store, { file });
    process.stdout.write(JSON.stringify(loaded) + '\n');
  } else {
    const image = await store.resolve(IMAGE);
    const size = await store.content.size(image.manifestDigest);
    const item = { id: image.id, manifest: { mediaType: image.manifest.mediaType, digest: image.manifestDigest, size, manifest: image.manifest }, refs: [parseReference(IMAGE)] };
    await pipeline(saveImages(store.content, [item], { format: 'docker' }), createWriteStream(file));
    process.stdout.write(JSON.stringify({ saved: file }) + '\n');
  }
  process.exit(0);
}

// ---------------------------------------------------------------- helpers

function sh(command, commandArgs, options = {}) {
  const result = spawnSync(command, commandArgs, { encoding: 'utf8', maxBuffer: 64 << 20, ...options });
  if (result.status !== 0) throw new Error(`${command} ${commandArgs.join(' ')} failed (${result.status ?? result.signal}): ${(result.stderr || '').trim()}`);
  return result.stdout;
}

function timed(command, commandArgs, options = {}) {
  const start = performance.now();
  const out = sh(command, commandArgs, options);
  return { ms: performance.now() - start, out };
}

const seconds = (ms) => (ms / 1000).toFixed(2);
const mb = (bytes) => (bytes / 1e6).toFixed(0);
const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

function mountsUnder(dir) {
  const out = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const point = line.split(' ')[4];
    if (point && (point === dir || point.startsWith(`${dir}/`))) out.push(point);
  }
  return out.sort((a, b) => b.length - a.length);
}

// ---------------------------------------------------------------- a private dockerd

async function startDockerd() {
  const external = process.env.STRATA_BENCH_DOCKER_HOST;
  const configDir = join(tmpdir(), `strata-bench-docker-cli-${process.pid}`);
  mkdirSync(configDir, { recursive: true });
  if (external) {
    return { env: { ...process.env, DOCKER_HOST: external, DOCKER_CONFIG: configDir, DOCKER_BUILDKIT: '0' }, stop: async () => rmSync(configDir, { recursive: true, force: true }) };
  }
  if (process.getuid?.() !== 0) throw new Error('the save/load bench starts its own dockerd and needs root (or set STRATA_BENCH_DOCKER_HOST)');
  const dir = join(tmpdir(), `strata-bench-docker-${process.pid}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'daemon.json'), '{}\n');
  const socket = join(dir, 'docker.sock');
  const log = openSync(join(dir, 'dockerd.log'), 'a');
  const tag = `strata-bench-${process.pid}`;
  const daemon = spawn(
    'dockerd',
    [
      '--host', `unix://${socket}`,
      '--data-root', join(dir, 'data'),
      '--exec-root', join(dir, 'exec'),
      '--pidfile', join(dir, 'docker.pid'),
      '--config-file', join(dir, 'daemon.json'),
      '--iptables=false', '--ip6tables=false', '--bridge=none',
      '--storage-driver', 'overlay2',
      '--containerd-namespace', tag,
      '--containerd-plugins-namespace', `${tag}-plugins`,
      '--log-level', 'warn',
    ],
    { stdio: ['ignore', log, log], env: { ...process.env, PATH: `${process.env.PATH}:/usr/sbin:/sbin` } },
  );
  closeSync(log);
  let exited = false;
  daemon.on('exit', () => (exited = true));
  const env = { ...process.env, DOCKER_HOST: `unix://${socket}`, DOCKER_CONFIG: configDir, DOCKER_BUILDKIT: '0', DOCKER_CLI_HINTS: 'false' };
  const stop = async () => {
    if (!exited) {
      daemon.kill('SIGTERM');
      for (let i = 0; i < 300 && !exited; i++) await sleep(100);
      if (!exited) daemon.kill('SIGKILL');
    }
    let containerdPid;
    try {
      containerdPid = Number(readFileSync(join(dir, 'exec', 'containerd', 'containerd.pid'), 'utf8').trim()) || undefined;
    } catch {
      // dockerd stopped its containerd itself, or used the system one
    }
    if (containerdPid && readFileSync(`/proc/${containerdPid}/comm`, 'utf8').trim() === 'containerd') {
      try {
        process.kill(containerdPid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
    for (const point of mountsUnder(dir)) spawnSync('umount', ['-l', point]);
    if (mountsUnder(dir).length === 0) rmSync(dir, { recursive: true, force: true });
    rmSync(configDir, { recursive: true, force: true });
  };
  // Readiness: poll the API until it answers (bounded), or the daemon dies.
  for (let i = 0; ; i++) {
    if (exited) throw new Error(`dockerd exited:\n${readFileSync(join(dir, 'dockerd.log'), 'utf8').slice(-2000)}`);
    if (spawnSync('docker', ['version', '--format', '{{.Server.Version}}'], { env, stdio: 'ignore' }).status === 0) break;
    if (i > 600) {
      await stop();
      throw new Error('dockerd did not come up within 60 s');
    }
    await sleep(100);
  }
  return { env, stop };
}

// ---------------------------------------------------------------- the image

function busyboxBase(work, env) {
  const rootfs = join(work, 'busybox-rootfs');
  mkdirSync(join(rootfs, 'bin'), { recursive: true });
  for (const d of ['etc', 'tmp', 'root']) mkdirSync(join(rootfs, d));
  copyFileSync('/bin/busybox', join(rootfs, 'bin', 'busybox'));
  chmodSync(join(rootfs, 'bin', 'busybox'), 0o755);
  for (const applet of sh('/bin/busybox', ['--list']).split('\n').filter((a) => a && a !== 'busybox')) {
    symlinkSync('busybox', join(rootfs, 'bin', applet));
  }
  writeFileSync(join(rootfs, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  const tar = join(work, 'busybox.tar');
  sh('tar', ['--numeric-owner', '-C', rootfs, '-cf', tar, '.']);
  sh('docker', ['import', '--change', 'ENV PATH=/bin', tar, 'strata-bench/busybox:latest'], { env });
}

function buildImage(work, env) {
  const context = join(work, 'context');
  mkdirSync(context);
  const copies = [
    ['/usr/include', 'include'],
    ['/usr/lib/python3.11', 'python'],
    [join(here, '..', 'node_modules'), 'node_modules'],
  ];
  const lines = ['FROM strata-bench/busybox:latest'];
  for (const [from, name] of copies) {
    if (existsSync(from)) {
      cpSync(from, join(context, name), { recursive: true, verbatimSymlinks: true });
      lines.push(`COPY ${name} /opt/${name}`);
    }
  }
  lines.push('RUN mkdir -p /opt/data && dd if=/dev/urandom of=/opt/data/random.bin bs=1M count=64 2>/dev/null');
  lines.push('RUN rm -rf /opt/include/linux /opt/node_modules/typescript && echo changed > /opt/data/edited && chmod 600 /opt/data/random.bin');
  lines.push('CMD ["sh"]');
  writeFileSync(join(context, 'Dockerfile'), lines.join('\n') + '\n');
  sh('docker', ['build', '-q', '-t', IMAGE, context], { env });
  rmSync(context, { recursive: true, force: true });
}

// ---------------------------------------------------------------- main

const work = join(tmpdir(), `strata-bench-save-load-${process.pid}`);
mkdirSync(work, { recursive: true });
let docker;
try {
  if (!existsSync(join(dist, 'archive', 'load.js'))) throw new Error(`${dist}/archive/load.js is missing: build first (npx tsc -p tsconfig.json) or pass --dist`);
  console.log(`strata save/load bench — node ${process.version}, ${availableParallelism()} CPUs (${cpus()[0]?.model ?? '?'}), dist ${dist}, ${runs} run(s) per side`);
  docker = await startDockerd();
  const { env } = docker;
  console.log(`docker ${sh('docker', ['version', '--format', '{{.Server.Version}}'], { env }).trim()} (${sh('docker', ['info', '--format', '{{.Driver}}'], { env }).trim()})`);
  busyboxBase(work, env);
  buildImage(work, env);
  const inspect = JSON.parse(sh('docker', ['image', 'inspect', IMAGE], { env }))[0];
  const imageId = inspect.Id;

  const dockerArchive = join(work, 'docker-save.tar');
  const strataOut = join(work, 'strata-save.tar');
  const dockerOut = join(work, 'docker-save-again.tar');
  sh('docker', ['save', '-o', dockerArchive, IMAGE], { env }); // the shared load input; also warms the daemon
  console.log(`image: ${inspect.RootFS.Layers.length} layers, ${mb(inspect.Size)} MB; docker save archive ${mb(statSync(dockerArchive).size)} MB`);

  // Every timed operation starts with no dirty pages from the one before: docker does not fsync
  // what it writes, so without this its writeback would run on into (and be paid by) the next run.
  const settle = () => sh('sync', []);
  const strata = (op, root, file) => {
    settle();
    return timed(process.execPath, [fileURLToPath(import.meta.url), '--child', op, root, file, '--dist', dist]);
  };
  const dockerTimed = (dockerArgs) => {
    settle();
    return timed('docker', dockerArgs, { env });
  };
  const results = { save: { docker: [], strata: [] }, load: { docker: [], strata: [] } };
  const saveRoot = join(work, 'store-save');
  // The store the saves read from: the image as strata loads it from docker save.
  const seeded = JSON.parse(strata('load', saveRoot, dockerArchive).out.trim().split('\n').pop());
  if (seeded[0]?.id !== imageId) throw new Error(`strata loaded ${JSON.stringify(seeded)}, docker has ${imageId}`);

  for (let run = 0; run < runs; run++) {
    // load: docker after removing the image (its layers go with it), strata into an empty store.
    sh('docker', ['rmi', IMAGE], { env });
    results.load.docker.push(dockerTimed(['load', '-i', dockerArchive]).ms);
    const loadRoot = join(work, `store-load-${run}`);
    const loaded = strata('load', loadRoot, dockerArchive);
    results.load.strata.push(loaded.ms);
    if (JSON.parse(loaded.out.trim().split('\n').pop())[0]?.id !== imageId) throw new Error('strata load gave a different image');
    rmSync(loadRoot, { recursive: true, force: true });

    // save: the same image from each side's store to a file.
    results.save.docker.push(dockerTimed(['save', '-o', dockerOut, IMAGE]).ms);
    rmSync(dockerOut, { force: true });
    results.save.strata.push(strata('save', saveRoot, strataOut).ms);
    if (run === 0) {
      // Docker must accept what strata wrote, as the same image.
      sh('docker', ['rmi', IMAGE], { env });
      sh('docker', ['load', '-i', strataOut], { env });
      const back = JSON.parse(sh('docker', ['image', 'inspect', IMAGE], { env }))[0];
      if (back.Id !== imageId) throw new Error(`docker loaded strata's archive as ${back.Id}, expected ${imageId}`);
    }
    rmSync(strataOut, { force: true });
  }

  const rows = [];
  let allMet = true;
  for (const op of ['save', 'load']) {
    const best = { docker: Math.min(...results[op].docker), strata: Math.min(...results[op].strata) };
    const ratio = best.strata / best.docker;
    const met = ratio <= TARGETS[op];
    allMet &&= met;
    rows.push({
      operation: op,
      'docker best s': seconds(best.docker),
      'docker median s': seconds(median(results[op].docker)),
      'strata best s': seconds(best.strata),
      'strata median s': seconds(median(results[op].strata)),
      'ratio (best)': ratio.toFixed(2),
      'ratio (median)': (median(results[op].strata) / median(results[op].docker)).toFixed(2),
      target: `<= ${TARGETS[op]}`,
      result: met ? 'met' : 'MISSED',
    });
    console.log(`bench-result: ${JSON.stringify({ bench: 'save-load', metric: `${op} ratio`, value: Number(ratio.toFixed(3)), target: TARGETS[op], met, docker_s: best.docker / 1000, strata_s: best.strata / 1000 })}`);
  }
  console.table(rows);
  console.log(allMet ? 'all targets met' : 'some targets MISSED (see table)');
} finally {
  await docker?.stop();
  if (!keep) rmSync(work, { recursive: true, force: true });
  else console.log(`kept ${work}`);
}
