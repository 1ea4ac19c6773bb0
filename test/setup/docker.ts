/**
 * Vitest global setup: one private dockerd for the whole test run (see
 * ../helpers/dockerd.ts), stopped when the run ends. Tests reach it through
 * ../helpers/docker.ts, which reads what this setup provides.
 *
 * Without root or docker.io the run goes on and interop tests skip, saying
 * why. Under CI the daemon is mandatory: a CI run must not pass by skipping
 * every comparison with docker.
 *
 * Environment:
 * - `STRATA_TEST_DOCKER_HOST=unix:///path.sock`: use that daemon instead of
 *   starting one (it is not stopped afterwards).
 * - `STRATA_TEST_DOCKER=0`: do not start a daemon (ignored under CI).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import {
  cleanupStaleTestDockerds,
  ensureBusyboxImageOn,
  isCi,
  runDockerOk,
  startTestDockerd,
  type DockerTarget,
  type TestDockerd,
} from '../helpers/dockerd.js';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const ci = isCi();
  let daemon: TestDockerd | undefined;
  let target: DockerTarget | undefined;
  let externalConfigDir: string | undefined;
  let reason = '';

  const external = process.env.STRATA_TEST_DOCKER_HOST;
  if (external !== undefined && external !== '') {
    externalConfigDir = await mkdtemp(join(tmpdir(), 'strata-test-docker-cli-'));
    const candidate = { host: external, configDir: externalConfigDir };
    try {
      await runDockerOk(candidate, ['version', '--format', '{{.Server.Version}}'], { timeoutMs: 30_000 });
      await ensureBusyboxImageOn(candidate);
      target = candidate;
    } catch (err) {
      reason = `STRATA_TEST_DOCKER_HOST=${external} is not usable: ${(err as Error).message}`;
    }
  } else if (!ci && process.env.STRATA_TEST_DOCKER === '0') {
    reason = 'test dockerd disabled by STRATA_TEST_DOCKER=0';
  } else {
    await cleanupStaleTestDockerds();
    try {
      daemon = await startTestDockerd();
      target = daemon;
    } catch (err) {
      reason = (err as Error).message;
    }
  }

  if (target === undefined) {
    if (externalConfigDir) await rm(externalConfigDir, { recursive: true, force: true });
    if (ci) throw new Error(`CI needs the test dockerd for the docker interop tests, and it is unavailable: ${reason}`);
    process.stderr.write(`strata tests: no test dockerd, docker interop tests will be skipped: ${reason.split('\n')[0]}\n`);
  }

  project.provide('dockerHost', target?.host);
  project.provide('dockerConfigDir', target?.configDir);
  project.provide('dockerUnavailableReason', target ? '' : reason || 'unknown reason');

  return async () => {
    await daemon?.stop();
    if (externalConfigDir) await rm(externalConfigDir, { recursive: true, force: true });
  };
}
