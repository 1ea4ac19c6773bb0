/**
 * Builds that must fail, through both engines: each Dockerfile is rejected
 * by `docker build` (classic builder) and by strata, and strata's message
 * carries Docker's wording (or, where the engines word it differently by
 * design, says the same thing).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, it } from 'vitest';
import type { Strata } from '../../src/strata.js';
import { expectBothFail, openStrataWithBusybox } from '../helpers/compare.js';
import { dockerAvailable, dockerUnavailableReason } from '../helpers/docker.js';

const withDocker = dockerAvailable();
const FROM = 'FROM strata-test/busybox:latest\n';

describe.skipIf(!withDocker)(`failing builds, strata vs docker build${withDocker ? '' : ` (${dockerUnavailableReason()})`}`, () => {
  let work = '';
  let strata: Strata;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'strata-bd-errors-'));
    strata = await openStrataWithBusybox(work);
  });
  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('COPY of a file that is not in the context', async () => {
    await expectBothFail(
      strata,
      { name: 'err-missing', dockerfileText: `${FROM}COPY missing.txt /x\n` },
      work,
      /COPY failed: file not found in build context or excluded by \.dockerignore: stat missing\.txt: file does not exist/,
    );
  });

  it('COPY of a file the .dockerignore excludes', async () => {
    await expectBothFail(
      strata,
      { name: 'err-ignored', dockerfileText: `${FROM}COPY secret.txt /x\n`, files: { 'secret.txt': 's', '.dockerignore': 'secret.txt\n' } },
      work,
      /file not found in build context or excluded by \.dockerignore: stat secret\.txt: file does not exist/,
    );
  });

  it('COPY with a wildcard that matches nothing', async () => {
    await expectBothFail(strata, { name: 'err-nomatch', dockerfileText: `${FROM}COPY *.nothing /x/\n` }, work, /COPY failed: no source files were specified/);
  });

  it('COPY of several sources to a destination without a trailing slash', async () => {
    await expectBothFail(
      strata,
      { name: 'err-multi-dest', dockerfileText: `${FROM}COPY a b /dest\n`, files: { a: 'a', b: 'b' } },
      work,
      /When using COPY with more than one source file, the destination must be a directory and end with a \//,
    );
  });

  it('COPY from outside the context', async () => {
    await expectBothFail(strata, { name: 'err-outside', dockerfileText: `${FROM}COPY ../outside /x\n` }, work, /COPY failed: forbidden path outside the build context: \.\.\/outside/);
  });

  it('RUN that exits non-zero, shell and exec form', async () => {
    await expectBothFail(strata, { name: 'err-run', dockerfileText: `${FROM}RUN false\n` }, work, /The command '\/bin\/sh -c false' returned a non-zero code: 1/);
    await expectBothFail(
      strata,
      { name: 'err-run-exec', dockerfileText: `${FROM}RUN ["sh", "-c", "exit 3"]\n` },
      work,
      /The command 'sh -c exit 3' returned a non-zero code: 3/,
    );
  });

  it('RUN as a user the image does not know', async () => {
    await expectBothFail(
      strata,
      { name: 'err-user', dockerfileText: `${FROM}USER nosuchuser\nRUN true\n` },
      work,
      /unable to find user nosuchuser: no matching entries in passwd file/,
    );
  });

  it('COPY --chown to a user the image does not know', async () => {
    await expectBothFail(
      strata,
      { name: 'err-chown', dockerfileText: `${FROM}COPY --chown=nosuchuser a /a\n`, files: { a: 'a' } },
      work,
      /nosuchuser/,
      /nosuchuser/,
    );
  });

  it('an unknown instruction', async () => {
    await expectBothFail(strata, { name: 'err-instruction', dockerfileText: `${FROM}FROBNICATE now\n` }, work, /unknown instruction: FROBNICATE/i);
  });

  it('a --target no stage has', async () => {
    await expectBothFail(
      strata,
      { name: 'err-target', dockerfileText: `${FROM.trim()} AS one\nRUN true\n`, target: 'two' },
      work,
      /failed to reach build target two in Dockerfile/,
      /target.*two/i,
    );
  });
});
