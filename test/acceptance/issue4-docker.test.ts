/**
 * Issue 4 acceptance against Docker: the same shell command run in a
 * container of the same image, by dockerd and by strata, gives the same
 * `diff` and the same committed layer.
 *
 * The image is built by docker (busybox plus a fixture tree) and moved into
 * strata with `docker save | strata load`, so both engines stack
 * byte-identical lower layers. For each case both engines run the command,
 * print their diff and commit; then one `docker save` and one `strata save`
 * give the committed top layers, compared entry by entry: path, type, mode,
 * owner, size, content hash, link target, whiteouts by the path they hide
 * (mtimes differ by nature and are left out, and so does the mode of the
 * empty whiteout file, 0600 from Docker and 0 from strata as from
 * containerd). Docker prints diff lines in map order, so lines are compared
 * sorted.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readTar } from '../../src/tar/read.js';
import { CLI, strata as runStrata, type RunResult } from '../cli/helpers.js';
import { dockerAvailable, dockerOk, ensureBusyboxImage } from '../helpers/docker.js';
import { canRunContainers, NEEDS_CONTAINERS } from '../runtime/helpers.js';

interface Case {
  name: string;
  command: string;
  /** A `-v` flag; the volume (named after the run) is created by the run and removed afterwards. */
  volume?: string;
}

/** Each runs in `/`; the fixture is under /fix (see the Dockerfile below). */
const CASES: Case[] = [
  { name: 'modify a lower file (copy-up)', command: 'echo more >> /fix/file' },
  { name: 'create files in a new and in a lower directory', command: 'mkdir -p /newdir/sub && echo n > /newdir/sub/n && echo l > /fix/dir/added' },
  { name: 'delete a lower file (whiteout)', command: 'rm /fix/file2' },
  { name: 'delete a lower directory', command: 'rm -rf /fix/dir' },
  { name: 'recreate a deleted lower directory (opaque)', command: 'rm -rf /fix/dir && mkdir /fix/dir && touch /fix/dir/x' },
  { name: 'rename a lower directory', command: 'mv /fix/dir /fix/renamed' },
  { name: 'chmod and chown lower files', command: 'chmod 600 /fix/file && chown 1000:1000 /fix/file2' },
  { name: 'hardlink to a lower file', command: 'ln /fix/file /fix/hardlink' },
  { name: 'replace a symlink', command: 'rm /fix/link && ln -s dir/sub/deep /fix/link' },
  // Volume content is the volume's; the mount point the runtime makes is the container's.
  { name: 'write into a volume mounted where the image has nothing', command: 'echo v > /fix/vol/f && echo c > /fix/dir/c', volume: '/fix/vol' },
];

const DOCKERFILE = `FROM BASE
RUN mkdir -p /fix/dir/sub && echo file > /fix/file && echo file2 > /fix/file2 \\
 && echo deep > /fix/dir/sub/deep && echo a > /fix/dir/a && ln -s file /fix/link \\
 && chmod 640 /fix/file2 && chown 33:33 /fix/dir/a
`;

let scratch: string;
let root: string;
let image: string;
const tag = `strata-test/issue4-parity:${process.pid}`;
const caseTag = (i: number): string => `strata-test/issue4-case:${process.pid}-${i}`;
const dockerDiffs = new Map<number, string[]>();
const strataDiffs = new Map<number, string[]>();
let dockerLayers = new Map<string, string[]>();
let strataLayers = new Map<string, string[]>();

function strata(args: string[], input?: Buffer): Promise<RunResult> {
  return runStrata(['--root', root, ...args], input ? { input } : {});
}

async function strataOk(args: string[], input?: Buffer): Promise<string> {
  const result = await strata(args, input);
  if (result.code !== 0) throw new Error(`strata ${args.join(' ')} failed (${result.code}): ${result.stderr}`);
  return result.stdout;
}

function sortedLines(text: string): string[] {
  return text.split('\n').filter((line) => line !== '').sort();
}

/** One line per entry of a layer tar (sorted): what must match between the engines. */
async function layerListing(tar: Readable): Promise<string[]> {
  const lines: string[] = [];
  for await (const entry of readTar(tar)) {
    const h = entry.header;
    let content = '';
    if (h.type === 'file') {
      const hash = createHash('sha256');
      for await (const chunk of entry.body) hash.update(chunk as Buffer);
      content = hash.digest('hex').slice(0, 16);
    } else {
      entry.body.resume();
    }
    const name = entry.rawName.replace(/\/$/, '');
    const base = name.slice(name.lastIndexOf('/') + 1);
    if (base.startsWith('.wh.') && base !== '.wh..wh..opq') {
      // A whiteout is what it hides: Docker writes the empty file 0600, strata (as containerd) 0; no extractor reads either.
      lines.push(`${name} whiteout`);
      continue;
    }
    lines.push(`${name} ${h.type} ${h.mode.toString(8)} ${h.uid}:${h.gid} ${h.type === 'file' ? h.size : 0} ${content} ${h.linkname ?? ''}`);
  }
  return lines.sort();
}

/** The top layer of each tagged image in a save archive (docker's or strata's), as listings by tag. */
async function topLayers(archive: string, tags: string[]): Promise<Map<string, string[]>> {
  let manifest: { RepoTags?: string[]; Layers: string[] }[] | undefined;
  for await (const entry of readTar(createReadStream(archive))) {
    if (entry.rawName === 'manifest.json') {
      let text = '';
      for await (const chunk of entry.body) text += (chunk as Buffer).toString('utf8');
      manifest = JSON.parse(text) as typeof manifest;
    } else entry.body.resume();
  }
  if (!manifest) throw new Error(`${archive} has no manifest.json`);
  const wanted = new Map<string, string>();
  for (const item of manifest) {
    for (const repoTag of item.RepoTags ?? []) if (tags.includes(repoTag)) wanted.set(item.Layers.at(-1)!, repoTag);
  }
  const out = new Map<string, string[]>();
  for await (const entry of readTar(createReadStream(archive))) {
    const repoTag = wanted.get(entry.rawName);
    if (repoTag === undefined) {
      entry.body.resume();
      continue;
    }
    // Sniff gzip (strata compresses committed layers; docker 20.10 saves them plain).
    const body = entry.body;
    const first: Buffer = await new Promise((resolve, reject) => {
      body.once('readable', () => resolve((body.read(2) as Buffer | null) ?? Buffer.alloc(0)));
      body.once('error', reject);
    });
    body.unshift(first);
    const plain = first[0] === 0x1f && first[1] === 0x8b ? body.pipe(createGunzip()) : body.pipe(new PassThrough());
    out.set(repoTag, await layerListing(plain));
  }
  return out;
}

/** `docker save TAG | strata load`, streamed. */
async function pipeDockerSaveToStrataLoad(ref: string): Promise<void> {
  const load = spawn(process.execPath, [CLI, '--root', root, 'load', '-q'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  load.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  load.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const exited = new Promise<number>((resolve, reject) => {
    load.on('error', reject);
    load.on('close', (code) => resolve(code ?? -1));
  });
  await dockerOk(['save', ref], { stdout: load.stdin });
  const code = await exited;
  if (code !== 0) throw new Error(`docker save | strata load failed (${code}): ${output}`);
  expect(output).toBe(`Loaded image: ${ref}\n`);
}

const canCompare = canRunContainers && dockerAvailable();

beforeAll(async () => {
  if (!canCompare) return;
  scratch = await mkdtemp(join(tmpdir(), 'strata-issue4-docker-'));
  root = join(scratch, 'root');
  const base = await ensureBusyboxImage();
  await writeFile(join(scratch, 'Dockerfile'), DOCKERFILE.replace('BASE', base));
  await dockerOk(['build', '-q', '-t', tag, scratch]);
  await pipeDockerSaveToStrataLoad(tag);
  image = tag;

  for (const [i, c] of CASES.entries()) {
    const name = `strata-issue4-${process.pid}-${i}`;
    const mount = c.volume ? ['-v', `${name}:${c.volume}`] : [];
    await dockerOk(['run', '--name', name, '--network', 'none', ...mount, image, 'sh', '-c', c.command]);
    try {
      dockerDiffs.set(i, sortedLines((await dockerOk(['diff', name])).stdout.toString('utf8')));
      await dockerOk(['commit', name, caseTag(i)]);
    } finally {
      await dockerOk(['rm', '-f', name]);
      if (c.volume) await dockerOk(['volume', 'rm', name]);
    }
    await strataOk(['run', '--name', name, ...mount, image, 'sh', '-c', c.command]);
    strataDiffs.set(i, sortedLines(await strataOk(['diff', name])));
    await strataOk(['commit', name, caseTag(i)]);
    await strataOk(['rm', name]);
    if (c.volume) await strataOk(['volume', 'rm', name]);
  }
  const tags = CASES.map((_, i) => caseTag(i));
  const dockerArchive = join(scratch, 'docker-commits.tar');
  await dockerOk(['save', '-o', dockerArchive, ...tags]);
  dockerLayers = await topLayers(dockerArchive, tags);
  const strataArchive = join(scratch, 'strata-commits.tar');
  await strataOk(['save', '-o', strataArchive, ...tags]);
  strataLayers = await topLayers(strataArchive, tags);
});

afterAll(async () => {
  if (!canCompare) return;
  await dockerOk(['rmi', '-f', tag, ...CASES.map((_, i) => caseTag(i))]).catch(() => undefined);
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

describe.skipIf(!canCompare)(`strata diff and commit match docker's (${NEEDS_CONTAINERS}, and the test dockerd)`, () => {
  for (const [i, c] of CASES.entries()) {
    it(`${c.name}: ${c.command}`, () => {
      expect(dockerDiffs.get(i)!.length, 'docker saw a change').toBeGreaterThan(0);
      expect(strataDiffs.get(i), 'diff').toEqual(dockerDiffs.get(i));
      const theirs = dockerLayers.get(caseTag(i));
      expect(theirs, `docker's layer of ${caseTag(i)}`).toBeDefined();
      expect(strataLayers.get(caseTag(i)), 'committed layer').toEqual(theirs);
    });
  }
});
