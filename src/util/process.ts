/** Process liveness, for telling a dead writer's leftovers from a live one's work. */

/** Whether a process with this pid exists (EPERM means it does, owned by someone else). */
export function processIsAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
