/**
 * The docker CLI for tests, pointed at the run's private dockerd (started by
 * test/setup/docker.ts). Interop tests guard themselves with
 *
 *   it.skipIf(!dockerAvailable())('matches docker save', async () => { ... })
 *
 * and call {@link docker} / {@link dockerOk}. `docker build` runs the classic
 * builder (DOCKER_BUILDKIT=0); RUN steps work without `--network none`.
 */
import { inject } from 'vitest';
import {
  ensureBusyboxImageOn,
  isCi,
  runDocker,
  runDockerOk,
  type DockerResult,
  type DockerRunOptions,
  type DockerTarget,
} from './dockerd.js';

export { BUSYBOX_IMAGE, makeBusyboxRootfs, busyboxApplets, type BusyboxRootfs } from './busybox.js';
export { DOCKER_CLI, type DockerResult, type DockerRunOptions } from './dockerd.js';

/** The run's daemon, or undefined with {@link dockerUnavailableReason} saying why. */
export function dockerTarget(): DockerTarget | undefined {
  const host = inject('dockerHost');
  const configDir = inject('dockerConfigDir');
  return host && configDir ? { host, configDir } : undefined;
}

/** Why docker tests are skipped; empty when the daemon is available. */
export function dockerUnavailableReason(): string {
  if (dockerTarget()) return '';
  return inject('dockerUnavailableReason') ?? 'test/setup/docker.ts is not registered as a vitest globalSetup';
}

/**
 * True when the test dockerd is running. Under CI a missing daemon throws
 * instead (the setup already refuses to start without one; this catches a
 * config that forgot to register the setup), so CI never silently skips.
 */
export function dockerAvailable(): boolean {
  if (dockerTarget()) return true;
  if (isCi()) throw new Error(`CI requires the test dockerd: ${dockerUnavailableReason()}`);
  return false;
}

/** `unix:///…/docker.sock` of the test daemon, if any. */
export function dockerHost(): string | undefined {
  return dockerTarget()?.host;
}

function requireTarget(): DockerTarget {
  const target = dockerTarget();
  if (!target) throw new Error(`no test dockerd: ${dockerUnavailableReason()}`);
  return target;
}

/**
 * Runs `/usr/bin/docker <args>` against the test daemon and resolves with its
 * stdout, stderr and exit status, whatever the status. Large outputs (`save`)
 * should go to `options.stdout` or `-o FILE` rather than the buffer.
 */
export function docker(args: readonly string[], options?: DockerRunOptions): Promise<DockerResult> {
  return runDocker(requireTarget(), args, options);
}

/** {@link docker}, throwing with the command's stderr unless it exits 0. */
export function dockerOk(args: readonly string[], options?: DockerRunOptions): Promise<DockerResult> {
  return runDockerOk(requireTarget(), args, options);
}

/**
 * The busybox base image (`strata-test/busybox:latest`), imported without
 * network from a static busybox rootfs. The setup imports it once per run;
 * this re-imports it if a test removed it.
 *
 * @returns the image reference, usable in `FROM` and `docker run`
 */
export function ensureBusyboxImage(): Promise<string> {
  return ensureBusyboxImageOn(requireTarget());
}
