/**
 * Resolving a path inside a container's root filesystem from the host.
 *
 * An image controls its own symlinks: `/etc/passwd -> /etc/shadow-copy` is
 * ordinary, `/etc -> /host/etc` or `/etc/passwd -> ../../../../etc/passwd` is an
 * attempt to make the host read its own files on the image's behalf. Symlinks
 * are therefore followed by hand, the way the kernel would inside a chroot:
 * absolute targets restart at the rootfs, and `..` stops at the rootfs.
 */
import { lstat, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { StrataError } from '../content/errors.js';

/** Linux's limit on symlinks followed in one lookup (MAXSYMLINKS is 40; 255 is the path-walk cap). */
const MAX_SYMLINKS = 40;

/** A path inside a rootfs could not be resolved (symlink loop). */
export class RootfsPathError extends StrataError {
  constructor(message: string) {
    super('ROOTFS_PATH', message);
  }
}

function components(path: string): string[] {
  return path.split('/').filter((part) => part !== '' && part !== '.');
}

/**
 * Maps `path` (as seen inside the container) to a host path under `rootfs`
 * that cannot lie outside `rootfs`, following symlinks as if `rootfs` were `/`.
 *
 * The result may not exist: resolution stops at the first missing component and
 * appends the rest unchanged. A component that exists but is not a directory is
 * kept as is, so opening the result fails with ENOTDIR as it would in the
 * container.
 *
 * Race: the tree is read, not locked. Use it on a root filesystem nothing is
 * running in, or open the result with O_NOFOLLOW.
 *
 * @param followFinal - follow a symlink in the last component too (default true)
 * @throws RootfsPathError after more than 40 symlinks (a loop)
 */
export async function resolveInRoot(rootfs: string, path: string, followFinal = true): Promise<string> {
  const resolved: string[] = [];
  const pending = components(path);
  let symlinks = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    const candidate = join(rootfs, ...resolved, part);
    let isLink: boolean;
    try {
      isLink = (await lstat(candidate)).isSymbolicLink();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') {
        // Nothing below a missing component can be a symlink, so the rest
        // resolves lexically (which still cannot climb above rootfs).
        return join(rootfs, ...lexical([...resolved, part, ...pending]));
      }
      throw err;
    }
    if (!isLink || (!followFinal && pending.length === 0)) {
      resolved.push(part);
      continue;
    }
    if (++symlinks > MAX_SYMLINKS) {
      throw new RootfsPathError(`too many levels of symbolic links resolving ${path} in ${rootfs}`);
    }
    const target = await readlink(candidate);
    if (target.startsWith('/')) resolved.length = 0;
    pending.unshift(...components(target));
  }
  return join(rootfs, ...resolved);
}

/** Applies `..` lexically without ever going above the root. */
function lexical(parts: string[]): string[] {
  const out: string[] = [];
  for (const part of parts) {
    if (part === '..') out.pop();
    else out.push(part);
  }
  return out;
}
