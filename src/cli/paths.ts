/**
 * Files the CLI finds relative to itself. This module sits in `cli/` both as
 * `dist/cli/paths.js` and inside the bundled CLI (`dist/cli/strata-bundle.cjs`,
 * see `scripts/bundle-cli.mjs`), so `import.meta.url` points into the same
 * directory either way, which is not true of the command modules one level down.
 */
import { fileURLToPath } from 'node:url';

/** A file of the installed package, by its path from the package root (`package.json`, `testdata/...`). */
export function packageFile(relPath: string): string {
  return fileURLToPath(new URL(`../../${relPath}`, import.meta.url));
}

/** The CLI's module entry point (`dist/cli/main.js`), for starting helper processes of itself. */
export function cliEntryPoint(): string {
  return fileURLToPath(new URL('./main.js', import.meta.url));
}
