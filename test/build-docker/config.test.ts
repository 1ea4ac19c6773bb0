/**
 * `strata build` against `docker build` (classic builder) for the
 * instructions that shape the image config: each case builds one fixture
 * with both engines and compares layers, flattened tree and config
 * (test/helpers/compare.ts).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, it } from 'vitest';
import type { Strata } from '../../src/strata.js';
import { expectSameBuild, openStrataWithBusybox } from '../helpers/compare.js';
import { dockerAvailable, dockerUnavailableReason } from '../helpers/docker.js';

const withDocker = dockerAvailable();

describe.skipIf(!withDocker)(`config instructions, strata vs docker build${withDocker ? '' : ` (${dockerUnavailableReason()})`}`, () => {
  let work = '';
  let strata: Strata;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'strata-bd-config-'));
    strata = await openStrataWithBusybox(work);
  });
  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('MAINTAINER, LABEL, ENV, ARG, EXPOSE, VOLUME, USER, STOPSIGNAL, HEALTHCHECK, SHELL, ENTRYPOINT, CMD, ONBUILD', async () => {
    await expectSameBuild(strata, { name: 'metadata', fixture: 'metadata' }, work);
  });

  it('ENTRYPOINT resets the CMD inherited from the base image', async () => {
    await expectSameBuild(strata, { name: 'entrypoint-resets-cmd', fixture: 'entrypoint-resets-cmd' }, work);
  });

  it('shell and exec forms of CMD and ENTRYPOINT, before and after SHELL', async () => {
    await expectSameBuild(strata, { name: 'shell-forms', fixture: 'shell-forms' }, work);
  });

  it('HEALTHCHECK forms and NONE, numeric STOPSIGNAL', async () => {
    await expectSameBuild(strata, { name: 'healthcheck-none', fixture: 'healthcheck-none' }, work);
  });

  it('HEALTHCHECK without options after one with options', async () => {
    await expectSameBuild(strata, { name: 'healthcheck-inherit', fixture: 'healthcheck-inherit' }, work);
  });

  it('WORKDIR: absolute, relative, with ENV, existing, as a non-root USER', async () => {
    await expectSameBuild(strata, { name: 'workdir', fixture: 'workdir' }, work);
  });

  it('ARG before and after FROM, defaults and --build-arg, in RUN and LABEL', async () => {
    await expectSameBuild(strata, { name: 'args', fixture: 'args', buildArgs: { FROMCLI: 'given on the command line', GREETING: 'hi', HTTP_PROXY: 'http://proxy.invalid:3128' } }, work);
  });
});
