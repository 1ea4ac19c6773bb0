/**
 * Where strata keeps its state (layers, images, containers, volumes) when the
 * caller does not say. Unlike dockerd there is no system daemon owning
 * /var/lib, so the default follows the XDG base-directory spec for the user
 * running the command.
 */
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';

/** Error for a store root that cannot be used as given. */
export class InvalidRootError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidRootError';
  }
}

/**
 * The store root used when no `--root` flag is given:
 * `$STRATA_ROOT` if set and non-empty, else `$XDG_DATA_HOME/strata` if
 * `XDG_DATA_HOME` is an absolute path, else `~/.local/share/strata`.
 *
 * A relative `STRATA_ROOT` is resolved against the current directory; a
 * relative `XDG_DATA_HOME` is ignored, as the XDG spec requires.
 *
 * @param env - environment to read (defaults to `process.env`)
 * @returns an absolute path; the directory is not created
 */
export function defaultRoot(env: NodeJS.ProcessEnv = process.env): string {
  const strataRoot = env.STRATA_ROOT;
  if (strataRoot !== undefined && strataRoot !== '') return resolve(strataRoot);
  const xdgDataHome = env.XDG_DATA_HOME;
  if (xdgDataHome !== undefined && xdgDataHome !== '' && isAbsolute(xdgDataHome)) {
    return join(xdgDataHome, 'strata');
  }
  // os.homedir() honours $HOME before falling back to the passwd entry; read
  // HOME from the given env first so callers can test without touching process.env.
  const home = env.HOME !== undefined && env.HOME !== '' ? env.HOME : homedir();
  return join(home, '.local', 'share', 'strata');
}

/**
 * The store root for a command: the `--root` flag when given (resolved against
 * the current directory), otherwise {@link defaultRoot}.
 *
 * @param flag - value of the global `--root` option, if any
 * @param env - environment to read for the default
 * @throws InvalidRootError when `flag` is the empty string or contains a NUL byte
 */
export function resolveRoot(flag?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (flag === undefined) return defaultRoot(env);
  if (flag === '') throw new InvalidRootError('--root must not be empty');
  if (flag.includes('\0')) throw new InvalidRootError('--root must not contain a NUL byte');
  return resolve(flag);
}
