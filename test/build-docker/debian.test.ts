/**
 * Realistic Dockerfiles on a Debian bookworm rootfs (test/helpers/debian.ts)
 * through `strata build` and `docker build` (classic builder): a service
 * with its own user made by useradd, and a two-stage build. Both engines
 * start from the same imported tar.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { Strata } from '../../src/strata.js';
import { expectSameBuild } from '../helpers/compare.js';
import { debianAvailable, debianUnavailableReason, importDebianIntoDocker, importDebianIntoStrata } from '../helpers/debian.js';
import { dockerAvailable, dockerUnavailableReason } from '../helpers/docker.js';

const withDocker = dockerAvailable();
const withDebian = debianAvailable();
const skipReason = !withDocker ? dockerUnavailableReason() : !withDebian ? debianUnavailableReason() : '';

describe.skipIf(!withDocker || !withDebian)(`Debian images, strata vs docker build${skipReason ? ` (${skipReason})` : ''}`, () => {
  let work = '';
  let strata: Strata;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'strata-bd-debian-'));
    strata = await Strata.open({ root: join(work, 'root') });
    // debootstrap runs here the first time on a machine (minutes).
    await importDebianIntoDocker();
    await importDebianIntoStrata(strata);
  }, 30 * 60_000);
  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('a service: useradd/groupadd, COPY --chown to the new user, pruned docs, USER, VOLUME, HEALTHCHECK', async () => {
    await expectSameBuild(strata, { name: 'debian-app', fixture: 'debian-app' }, work);
  }, 300_000);

  it('a two-stage build: bash "compiles" in one stage, the result ships in another', async () => {
    await expectSameBuild(strata, { name: 'debian-multistage', fixture: 'debian-multistage', buildArgs: { APP_VERSION: '2.0.1' } }, work);
  }, 300_000);
});
