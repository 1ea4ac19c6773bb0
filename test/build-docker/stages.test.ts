/**
 * Multi-stage builds and ONBUILD through `strata build` against
 * `docker build` (classic builder).
 *
 * One documented difference is not compared: the classic builder builds
 * every stage before the target, needed or not; strata (like BuildKit)
 * builds only the stages the target needs. The fixture's unneeded stage
 * succeeds, so both builds succeed and the images are compared.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Strata } from '../../src/strata.js';
import { expectSameBuild, openStrataWithBusybox } from '../helpers/compare.js';
import { dockerAvailable, dockerUnavailableReason } from '../helpers/docker.js';

const withDocker = dockerAvailable();

describe.skipIf(!withDocker)(`stages and ONBUILD, strata vs docker build${withDocker ? '' : ` (${dockerUnavailableReason()})`}`, () => {
  let work = '';
  let strata: Strata;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'strata-bd-stages-'));
    strata = await openStrataWithBusybox(work);
  });
  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('--target a stage built FROM an earlier stage, COPY --from a stage, an index and an image', async () => {
    const both = await expectSameBuild(strata, { name: 'stages', fixture: 'stages', target: 'extended' }, work);
    const built = both.strata.result?.steps.map((step) => step.instruction) ?? [];
    expect(built.some((instruction) => instruction.includes('not built with --target'))).toBe(false);
    // Unlike the classic builder, strata skips a stage the target does not need.
    expect(built.some((instruction) => instruction.includes('not needed by the target'))).toBe(false);
    expect(both.docker.stdout).toContain('not needed by the target');
  });

  it('the last stage is the default target', async () => {
    await expectSameBuild(strata, { name: 'stages-last', fixture: 'stages' }, work);
  });

  it('ONBUILD triggers are stored, then run first in a build FROM that image', async () => {
    await expectSameBuild(strata, { name: 'onbuild-base', fixture: 'onbuild-base', tag: 'strata-test/onbuild-base:latest' }, work);
    await expectSameBuild(strata, { name: 'onbuild-child', fixture: 'onbuild-child' }, work);
  });
});
