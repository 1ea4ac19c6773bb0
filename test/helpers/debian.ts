/**
 * A Debian bookworm minbase root filesystem, the realistic base image of the
 * build differential tests, made once per machine with debootstrap and kept
 * as a tar in a cache directory. Both engines import the very same tar
 * (`docker import` and `strata import`) as {@link DEBIAN_IMAGE}, so a build on
 * top of it starts from identical layers on both sides.
 *
 * debootstrap takes minutes and downloads ~40 MB from the Debian mirror apt
 * already uses on this machine (read from /etc/apt/sources.list*). The tar is
 * written under an inter-process lock, atomically, so parallel test workers
 * build it once and never see half of it.
 *
 * Environment:
 * - `STRATA_TEST_CACHE`: cache directory (default /var/cache/strata-test).
 * - `STRATA_TEST_DEBIAN_MIRROR`: mirror URL (default: apt's, else deb.debian.org).
 *
 * Without root or debootstrap (and no cached tar) the Debian tests skip with
 * the reason; under CI that is an error instead, since CI installs debootstrap.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createReadStream, existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { withLock } from '../../src/content/lock.js';
import type { Strata } from '../../src/strata.js';
import { docker, dockerOk } from './docker.js';
import { isCi } from './dockerd.js';

/** The reference both engines give the imported rootfs. */
export const DEBIAN_IMAGE = 'strata-test/debian:bookworm';

/** Debian release of the fixture. */
export const DEBIAN_SUITE = 'bookworm';

/** Image config changes applied on import, on both sides (what the official debian image declares). */
export const DEBIAN_IMPORT_CHANGES: readonly string[] = [
  'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  'CMD ["bash"]',
];

/** History comment of the imported layer, on both sides: what `docker import -` writes. */
export const DEBIAN_IMPORT_MESSAGE = 'Imported from -';

const DEFAULT_MIRROR = 'http://deb.debian.org/debian';

/** Where the rootfs tar (and its lock) live. */
export function testCacheDir(): string {
  return process.env.STRATA_TEST_CACHE || '/var/cache/strata-test';
}

/** Path of the cached rootfs tar. */
export function debianRootfsTarPath(): string {
  return join(testCacheDir(), `debian-${DEBIAN_SUITE}-minbase.tar`);
}

/**
 * The Debian archive mirror apt uses here: the first `URIs:` of a deb822
 * source (or `deb` line of a one-line source) serving the main archive (not
 * -security), falling back to deb.debian.org.
 */
export function debianMirror(): string {
  const override = process.env.STRATA_TEST_DEBIAN_MIRROR;
  if (override) return override;
  const files: string[] = [];
  if (existsSync('/etc/apt/sources.list')) files.push('/etc/apt/sources.list');
  try {
    for (const name of readdirSync('/etc/apt/sources.list.d').sort()) {
      if (name.endsWith('.list') || name.endsWith('.sources')) files.push(join('/etc/apt/sources.list.d', name));
    }
  } catch {
    // no sources.list.d
  }
  const candidates: string[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    if (file.endsWith('.sources')) {
      // deb822 stanzas are separated by blank lines; keep those whose suites include the release itself.
      for (const stanza of text.split(/\n\s*\n/)) {
        const field = (name: string): string | undefined =>
          stanza.match(new RegExp(`^${name}:\\s*(.+)$`, 'mi'))?.[1]?.trim();
        const uris = field('URIs')?.split(/\s+/) ?? [];
        const suites = field('Suites')?.split(/\s+/) ?? [];
        if (field('Types')?.split(/\s+/).includes('deb') && suites.includes(DEBIAN_SUITE)) candidates.push(...uris);
      }
    } else {
      for (const line of text.split('\n')) {
        const m = line.match(/^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/);
        if (m && m[2] === DEBIAN_SUITE) candidates.push(m[1]!);
      }
    }
  }
  const mirror = candidates.find((uri) => /^https?:\/\//.test(uri) && !/security/.test(uri));
  return (mirror ?? DEFAULT_MIRROR).replace(/\/+$/, '');
}

function commandPath(name: string): string | undefined {
  for (const dir of ['/usr/sbin', '/usr/bin', '/sbin', '/bin', ...(process.env.PATH ?? '').split(':')]) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

/**
 * Why the Debian fixture cannot be had here ('' when it can: the tar is
 * cached, or root and debootstrap can make it).
 */
export function debianUnavailableReason(): string {
  if (existsSync(debianRootfsTarPath())) return '';
  if (process.geteuid?.() !== 0) return `debootstrap needs root to make ${debianRootfsTarPath()}`;
  if (!commandPath('debootstrap')) return `debootstrap is not installed (apt-get install debootstrap) and ${debianRootfsTarPath()} is not cached`;
  return '';
}

/**
 * True when the Debian fixture is available or can be made. Under CI a
 * missing prerequisite throws: CI installs debootstrap, so a skip there would
 * hide a broken setup.
 */
export function debianAvailable(): boolean {
  const reason = debianUnavailableReason();
  if (reason === '') return true;
  if (isCi()) throw new Error(`CI requires the Debian rootfs fixture: ${reason}`);
  return false;
}

function mountsUnder(dir: string): string[] {
  let mounts: string;
  try {
    mounts = readFileSync('/proc/self/mounts', 'utf8');
  } catch {
    return [];
  }
  return mounts
    .split('\n')
    .map((line) => line.split(' ')[1]?.replace(/\\040/g, ' '))
    .filter((p): p is string => p !== undefined && (p === dir || p.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
}

/** Removes a debootstrap target, unmounting whatever a failed run left mounted in it (proc, sys) first. */
async function removeTarget(dir: string): Promise<void> {
  for (const mountPoint of mountsUnder(dir)) {
    try {
      execFileSync('umount', ['-l', mountPoint]);
    } catch {
      // reported below if it is still there
    }
  }
  const left = mountsUnder(dir);
  if (left.length > 0) throw new Error(`cannot remove ${dir}: still mounted: ${left.join(', ')}`);
  await rm(dir, { recursive: true, force: true });
}

function run(command: string, args: string[], timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive', LC_ALL: 'C' } });
    let output = '';
    const keep = (chunk: Buffer): void => {
      output = (output + chunk.toString('utf8')).slice(-8000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${command}: ${err.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`${command} ${args.join(' ')} failed (${signal ?? `exit ${code}`}):\n${output.trim()}`));
    });
  });
}

/**
 * The rootfs tar, made now if it is not cached: `debootstrap --variant=minbase`
 * into a temporary directory beside the cache, then a tar of it (numeric
 * owners, sorted, security.capability xattrs kept; the contents of /dev,
 * /proc and /sys left out, as an image rootfs has them empty, and so are the
 * downloaded .debs and apt lists, as in the official debian image), renamed
 * into place. Takes minutes the first time; give the calling hook a long timeout.
 *
 * @returns the tar's path
 */
export async function ensureDebianRootfsTar(): Promise<string> {
  const tarPath = debianRootfsTarPath();
  if (existsSync(tarPath)) return tarPath;
  const reason = debianUnavailableReason();
  if (reason) throw new Error(reason);
  const cacheDir = testCacheDir();
  await mkdir(cacheDir, { recursive: true });
  return withLock(cacheDir, 'debian-rootfs', async () => {
    // Another worker may have made it while this one waited for the lock.
    if (existsSync(tarPath)) return tarPath;
    const work = await mkdtemp(join(cacheDir, '.debootstrap-'));
    const target = join(work, 'rootfs');
    try {
      await run(commandPath('debootstrap')!, ['--variant=minbase', DEBIAN_SUITE, target, debianMirror()], 20 * 60_000);
      const partial = join(work, 'rootfs.tar');
      await run(
        'tar',
        [
          '--create', '--file', partial, '--directory', target,
          '--numeric-owner', '--sort=name', '--xattrs', '--xattrs-include=security.capability',
          '--exclude=./dev/*', '--exclude=./proc/*', '--exclude=./sys/*',
          // What the official debian image leaves out too: ~80 MB nobody's build reads.
          '--exclude=./var/cache/apt/archives/*.deb', '--exclude=./var/lib/apt/lists/*_*',
          '.',
        ],
        10 * 60_000,
      );
      await rename(partial, tarPath);
      return tarPath;
    } finally {
      await removeTarget(target).catch((err: Error) => process.stderr.write(`debian fixture: ${err.message}\n`));
      await rm(work, { recursive: true, force: true });
    }
  });
}

/**
 * Imports the rootfs tar into the test dockerd as {@link DEBIAN_IMAGE} (unless
 * it is there already), from stdin so the history says "Imported from -".
 */
export async function importDebianIntoDocker(): Promise<string> {
  const tarPath = await ensureDebianRootfsTar();
  if ((await docker(['image', 'inspect', '--format', '{{.Id}}', DEBIAN_IMAGE])).code === 0) return DEBIAN_IMAGE;
  const args = ['import'];
  for (const change of DEBIAN_IMPORT_CHANGES) args.push('--change', change);
  args.push('-', DEBIAN_IMAGE);
  await dockerOk(args, { input: createReadStream(tarPath), timeoutMs: 10 * 60_000 });
  return DEBIAN_IMAGE;
}

/** Imports the same tar into a strata store as {@link DEBIAN_IMAGE}. */
export async function importDebianIntoStrata(strata: Strata): Promise<string> {
  const tarPath = await ensureDebianRootfsTar();
  await strata.import({ file: tarPath }, { ref: DEBIAN_IMAGE, changes: [...DEBIAN_IMPORT_CHANGES], message: DEBIAN_IMPORT_MESSAGE });
  return DEBIAN_IMAGE;
}
