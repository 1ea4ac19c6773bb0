/**
 * What every bench script shares: its command-line options (`--dist DIR` and
 * friends) and, for the benches that compare with Docker, the test harness's
 * own dockerd and busybox helpers, transpiled on the fly so benches and tests
 * start the daemon and make the base image the same way.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** The bench folder, the script's arguments, an option reader, and the dist folder to import strata from. */
export function benchContext(importMetaUrl) {
  const here = dirname(fileURLToPath(importMetaUrl));
  const args = process.argv.slice(2);
  const option = (name, fallback) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : fallback;
  };
  const dist = resolve(option('--dist', join(here, '..', 'dist')));
  return { here, args, option, dist };
}

/** Imports test/helpers/dockerd.ts (and busybox.ts, which it imports) by transpiling them next to each other under `work`. */
export async function loadTestHarness(work) {
  const here = dirname(fileURLToPath(import.meta.url));
  const { default: ts } = await import('typescript');
  const out = join(work, 'harness');
  mkdirSync(out, { recursive: true });
  for (const name of ['dockerd', 'busybox']) {
    const source = readFileSync(join(here, '..', 'test', 'helpers', `${name}.ts`), 'utf8');
    const { outputText } = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } });
    writeFileSync(join(out, `${name}.js`), outputText);
  }
  writeFileSync(join(out, 'package.json'), '{"type":"module"}\n');
  const dockerd = await import(pathToFileURL(join(out, 'dockerd.js')).href);
  const busybox = await import(pathToFileURL(join(out, 'busybox.js')).href);
  return { ...dockerd, ...busybox };
}
