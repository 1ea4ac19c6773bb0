/**
 * The Debian bookworm minbase fixture (test/helpers/debian.ts): made once
 * per machine, and imported into docker and strata as the same image, which
 * is what lets the Debian build differential tests start from equal bases.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Strata } from '../../src/strata.js';
import { compareImages } from '../helpers/compare.js';
import {
  DEBIAN_IMAGE,
  debianAvailable,
  debianMirror,
  debianUnavailableReason,
  ensureDebianRootfsTar,
  importDebianIntoDocker,
  importDebianIntoStrata,
} from '../helpers/debian.js';
import { dockerAvailable, dockerUnavailableReason } from '../helpers/docker.js';

const debian = debianAvailable();

describe.skipIf(!debian)(`Debian rootfs fixture${debian ? '' : ` (${debianUnavailableReason()})`}`, () => {
  let tarPath = '';
  beforeAll(async () => {
    tarPath = await ensureDebianRootfsTar();
  }, 30 * 60_000);

  it('is a minbase bookworm rootfs with bash and useradd, no device nodes and no apt downloads', () => {
    const listing = execFileSync('tar', ['-tvf', tarPath], { encoding: 'utf8', maxBuffer: 256 << 20 }).split('\n');
    const names = new Set(listing.map((line) => line.split(/\s+/).slice(5).join(' ').split(' -> ')[0]));
    expect(names.has('./usr/bin/bash')).toBe(true);
    expect(names.has('./usr/sbin/useradd')).toBe(true);
    expect(names.has('./etc/debian_version')).toBe(true);
    expect(listing.filter((line) => /^[cb]/.test(line))).toEqual([]);
    expect([...names].filter((name) => name?.endsWith('.deb'))).toEqual([]);
    expect(debianMirror()).toMatch(/^https?:\/\//);
  });

  describe.skipIf(!dockerAvailable())(`imported into both engines${dockerAvailable() ? '' : ` (${dockerUnavailableReason()})`}`, () => {
    let work = '';
    afterAll(async () => {
      if (work) await rm(work, { recursive: true, force: true });
    });

    it('gives the same image in docker and in strata', async () => {
      work = await mkdtemp(join(tmpdir(), 'strata-debian-'));
      const strata = await Strata.open({ root: join(work, 'root') });
      await importDebianIntoDocker();
      await importDebianIntoStrata(strata);
      const result = await compareImages(DEBIAN_IMAGE, strata, DEBIAN_IMAGE);
      expect(result.report).toBe('');
    }, 600_000);
  });
});
