// Maintenance over every format's store: integrity checks (`pixtable verify`), index compaction
// (`pixtable compact`) and flushing. Each yields to the event loop between formats, so a server
// running them keeps answering hits.
import type { VerifyProblem } from '../types.js';
import type { FormatStore } from './format-store.js';
import { fingerprint } from './source-bytes.js';

const turn = () => new Promise((r) => setImmediate(r));

/**
 * Every live entry whose trailer, CRC or key fingerprint is wrong, and every index tail that
 * replay discarded. `repair` (writers only) drops the damaged entries so the next get re-decodes.
 */
export async function verifyStores(
  stores: readonly FormatStore[],
  repair: boolean,
): Promise<VerifyProblem[]> {
  const problems: VerifyProblem[] = [];
  for (const st of stores) {
    const name = st.format.name;
    if (st.indexDiscardedBytes > 0) {
      problems.push({
        format: name,
        key: null,
        slot: null,
        problem: `index: ${st.indexDiscardedBytes} bytes of torn or damaged records discarded`,
      });
    }
    for (const { key, slot, generation } of st.book.live()) {
      const c = st.table.checkEntry(slot, generation, fingerprint(key));
      if (c.ok) continue;
      problems.push({ format: name, key, slot, problem: c.problem ?? 'damaged' });
      if (repair && !st.readOnly) st.drop(slot, key, c.problem ?? 'damaged');
    }
    await turn();
  }
  return problems;
}

/** Rewrites every index log with only its live records, least recently used first (temp + rename). */
export function compactStores(stores: readonly FormatStore[]): void {
  for (const st of stores) st.log?.rewrite(st.book.live());
}

/**
 * fdatasync of written segments and msync of the logs. `background`: the log's msync runs on the
 * threadpool too, so decodes and hits never wait for the disk (`sync: 'batch'`'s timer).
 */
export async function flushStores(stores: readonly FormatStore[], background: boolean): Promise<void> {
  for (const st of stores) {
    if (st.table.dirty) await st.table.syncFiles();
    if (background) await st.log?.flushAsync();
    else st.log?.flush();
  }
}
