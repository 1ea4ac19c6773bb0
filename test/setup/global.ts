/**
 * Builds dist/ once before the suite so CLI tests run the real `strata` binary.
 * Skipped when dist is newer than every source file.
 */
import { execFileSync } from 'node:child_process';
import { statSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

export default function setup(): void {
  // Helpers iterating on one module may skip the whole-tree build.
  if (process.env.STRATA_SKIP_BUILD === "1") return;
  const root = join(import.meta.dirname, '..', '..');
  // The bundled CLI is the build's last output.
  const built = join(root, 'dist', 'cli', 'strata-bundle.cjs');
  if (existsSync(built) && statSync(built).mtimeMs >= newestMtime(join(root, 'src'))) return;
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: root, stdio: 'inherit' });
}
