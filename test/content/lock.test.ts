import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acquireLock, withLock } from '../../src/content/lock.js';
import { buildChildModules, startChild, tempDir } from './helpers.js';

let dir: string;
let cleanup: () => Promise<void>;
let modules: string;

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir('strata-lock-'));
  modules = await buildChildModules(join(dir, 'modules-out'));
});
afterAll(async () => {
  await cleanup();
});

function lockModule(): string {
  return pathToFileURL(join(modules, 'content', 'lock.js')).href;
}

/** Counts increments of a file under the lock; lost updates would show as a lower total. */
async function incrementUnderLock(root: string, counter: string, times: number, forceFileSocket = false): Promise<void> {
  for (let i = 0; i < times; i++) {
    await withLock(
      root,
      'counter',
      async () => {
        const value = Number(await readFile(counter, 'utf8'));
        // Give a competing holder every chance to interleave if the lock did not work.
        await new Promise((resolve) => setImmediate(resolve));
        await writeFile(counter, String(value + 1));
      },
      { forceFileSocket },
    );
  }
}

describe('acquireLock', () => {
  it('serializes acquirers in the same process', async () => {
    const root = join(dir, 'same-process');
    const counter = join(dir, 'same-process-counter');
    await writeFile(counter, '0');
    await Promise.all([incrementUnderLock(root, counter, 40), incrementUnderLock(root, counter, 40), incrementUnderLock(root, counter, 40)]);
    expect(await readFile(counter, 'utf8')).toBe('120');
  });

  it('keeps different names and different roots independent', async () => {
    const release = await acquireLock(join(dir, 'indep'), 'a');
    const other = await acquireLock(join(dir, 'indep'), 'b');
    const otherRoot = await acquireLock(join(dir, 'indep-2'), 'a');
    await Promise.all([release(), other(), otherRoot()]);
  });

  it('release is idempotent and the lock can be taken again', async () => {
    const root = join(dir, 'again');
    const release = await acquireLock(root, 'store');
    await release();
    await release();
    const again = await acquireLock(root, 'store');
    await again();
  });

  it('returns the value of withLock and releases on failure', async () => {
    const root = join(dir, 'with');
    expect(await withLock(root, 'x', async () => 42)).toBe(42);
    await expect(withLock(root, 'x', async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await withLock(root, 'x', async () => 'free again')).toBe('free again');
  });

  it('stops waiting when aborted', async () => {
    const root = join(dir, 'abort');
    const release = await acquireLock(root, 'store');
    const controller = new AbortController();
    const waiting = acquireLock(root, 'store', { signal: controller.signal });
    controller.abort(new Error('gave up'));
    await expect(waiting).rejects.toThrow('gave up');
    await release();
  });

  it('serializes the socket-file fallback used off Linux', async () => {
    const root = join(dir, 'file-mode');
    const counter = join(dir, 'file-mode-counter');
    await writeFile(counter, '0');
    await Promise.all([incrementUnderLock(root, counter, 30, true), incrementUnderLock(root, counter, 30, true)]);
    expect(await readFile(counter, 'utf8')).toBe('60');
    // Released locks leave no socket files behind.
    expect(await readdir(join(root, 'strata', 'locks'))).toEqual([]);
  });
});

describe('acquireLock across processes', () => {
  it('serializes two processes doing read-modify-write', async () => {
    const root = join(dir, 'two-processes');
    const counter = join(dir, 'two-processes-counter');
    await writeFile(counter, '0');
    const script = `
      import { readFile, writeFile } from 'node:fs/promises';
      const [lockUrl, root, counter] = process.argv.slice(1);
      const { withLock } = await import(lockUrl);
      for (let i = 0; i < 50; i++) {
        await withLock(root, 'counter', async () => {
          const value = Number(await readFile(counter, 'utf8'));
          await new Promise((resolve) => setImmediate(resolve));
          await writeFile(counter, String(value + 1));
        });
      }
      console.log('done');
    `;
    const children = [startChild(script, [lockModule(), root, counter]), startChild(script, [lockModule(), root, counter])];
    for (const child of children) {
      const { code } = await child.exited;
      expect(code, child.stderr()).toBe(0);
    }
    expect(await readFile(counter, 'utf8')).toBe('100');
  });

  it('is freed at once when its holder is SIGKILLed, abstract and socket-file alike', async () => {
    const root = join(dir, 'killed');
    const child = startChild(
      `
      const [lockUrl, root] = process.argv.slice(1);
      const { acquireLock } = await import(lockUrl);
      await acquireLock(root, 'store');
      await acquireLock(root, 'store', { forceFileSocket: true });
      console.log('holding');
      // Locks do not keep a process alive; this does.
      setInterval(() => {}, 1 << 30);
      `,
      [lockModule(), root],
    );
    expect(await child.nextLine()).toBe('holding');
    let acquired = false;
    const waiting = acquireLock(root, 'store').then((release) => {
      acquired = true;
      return release;
    });
    const waitingFile = acquireLock(root, 'store', { forceFileSocket: true });
    // A full round trip to another process: had the lock been free, it would have been taken by now.
    await withLock(root, 'unrelated', async () => undefined);
    expect(acquired).toBe(false);

    const killedAt = Date.now();
    child.process.kill('SIGKILL');
    expect((await child.exited).signal).toBe('SIGKILL');
    const release = await waiting;
    const releaseFile = await waitingFile;
    expect(Date.now() - killedAt).toBeLessThan(5000);
    await release();
    await releaseFile();
  });
});
