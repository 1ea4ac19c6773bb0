/**
 * `strata fsck`: verifies every blob (hash and size), manifest, config and
 * layer record, and (unless `--quick`) recomputes every layer's DiffID.
 * Each fault is printed on its own line naming the object at fault; any
 * error-level fault makes the exit status 1. A clean store gets an `ok`
 * summary of what was checked.
 */
import type { Command } from 'commander';
import type { FsckFault, FsckReport } from '../../image/fsck.js';
import type { CliContext } from '../main.js';
import { humanSize } from '../output.js';
import { openStrata } from './common.js';

/** One line per fault: `error: corrupt-blob sha256:…: what is wrong`. */
export function formatFault(fault: FsckFault): string {
  return `${fault.severity}: ${fault.kind} ${fault.object}: ${fault.message.replace(/\s*\r?\n\s*/g, '; ')}`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** The closing summary of a clean run. */
export function formatSummary(report: FsckReport, quick: boolean): string {
  const c = report.checked;
  const parts = [
    `${plural(c.blobs, 'blob')} (${humanSize(c.bytes)})`,
    plural(c.manifests, 'manifest'),
    plural(c.configs, 'config'),
    plural(c.layerRecords, 'layer record'),
  ];
  if (!quick) parts.push(plural(c.diffIds, 'DiffID'));
  const warnings = report.faults.filter((f) => f.severity === 'warning').length;
  return `ok: checked ${parts.join(', ')}${warnings > 0 ? `; ${plural(warnings, 'warning')}` : ''}`;
}

/** Registers `strata fsck [--quick]`. */
export function registerFsckCommand(program: Command, ctx: CliContext): void {
  program
    .command('fsck')
    .description('Verify every blob, manifest, config and layer record of the store')
    .option('--quick', 'Check blob hashes but do not decompress layers to recompute their DiffIDs')
    .action(async (flags: { quick?: boolean }) => {
      const strata = await openStrata(ctx);
      const quick = flags.quick === true;
      const report = await strata.fsck({ quick });
      for (const fault of report.faults) ctx.stdout.write(`${formatFault(fault)}\n`);
      if (!report.ok) {
        const errors = report.faults.filter((f) => f.severity === 'error').length;
        throw new Error(`fsck found ${plural(errors, 'error')} in ${strata.root}`);
      }
      ctx.stdout.write(`${formatSummary(report, quick)}\n`);
    });
}
