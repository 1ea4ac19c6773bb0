/**
 * RUN through `strata build` against `docker build` (classic builder): what
 * a RUN step's layer records (new, changed and deleted files, opaque
 * directories, type changes, special bits, owners, nothing at all), what the
 * command sees (forms, ENV, USER, WORKDIR, SHELL), and a base image built
 * FROM scratch. Both engines run the commands for real (strata with runc).
 */
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, it } from 'vitest';
import type { Strata } from '../../src/strata.js';
import { expectSameBuild, openStrataWithBusybox } from '../helpers/compare.js';
import { BUSYBOX_BINARY } from '../helpers/busybox.js';
import { dockerAvailable, dockerUnavailableReason } from '../helpers/docker.js';

const withDocker = dockerAvailable();

describe.skipIf(!withDocker)(`RUN, strata vs docker build${withDocker ? '' : ` (${dockerUnavailableReason()})`}`, () => {
  let work = '';
  let strata: Strata;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'strata-bd-run-'));
    strata = await openStrataWithBusybox(work);
  });
  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('file system changes: create, modify, delete, opaque dirs, type changes, setuid, chown, no change', async () => {
    await expectSameBuild(strata, { name: 'run-fs', fixture: 'run-fs' }, work);
  });

  it('exec and shell forms, and the ENV, USER, WORKDIR and SHELL a command sees', async () => {
    await expectSameBuild(strata, { name: 'run-forms', fixture: 'run-forms' }, work);
  });

  it('VOLUME: RUN writes into a declared volume are discarded, COPY into it is kept', async () => {
    await expectSameBuild(strata, { name: 'volumes', fixture: 'volumes' }, work);
  });

  it('FROM scratch: a static busybox copied in installs its applets', async () => {
    await expectSameBuild(
      strata,
      {
        name: 'scratch-busybox',
        fixture: 'scratch-busybox',
        prepare: (ctx) => copyFile(BUSYBOX_BINARY, join(ctx, 'busybox')),
      },
      work,
    );
  });

  it('a realistic image: busybox httpd serving a static site as a system user', async () => {
    await expectSameBuild(strata, { name: 'busybox-site', fixture: 'busybox-site' }, work);
  });
});
