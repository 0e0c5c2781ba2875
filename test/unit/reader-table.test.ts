// The reader table's own rules (src/engine/reader-table.ts), one process standing in for many:
// every ReaderTable opens its own file description, so its lock is its own, as another
// process's would be.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { ReaderTable, readerGeometry } from '../../src/engine/reader-table.js';
import { PixtableError } from '../../src/errors.js';
import { rmrf, tempDir } from '../helpers/fixtures.js';

function withFile(fn: (file: string) => void): void {
  const dir = tempDir('pixtable-readers-');
  try {
    fn(path.join(dir, 'f.readers'));
  } finally {
    rmrf(dir);
  }
}

test('geometry: one u32 per slot per record, at most 128 records, all of it below 1 GiB of records', () => {
  const small = readerGeometry(10_000);
  assert.equal(small.records, 128);
  assert.equal(small.recordBytes % 4096, 0);
  assert.ok(small.recordBytes >= 64 + 10_000 * 4);
  assert.equal(small.size, small.recordsAt + small.records * small.recordBytes);
  const huge = readerGeometry(1 << 24); // the largest maxCount a format may have
  assert.ok(huge.records >= 1 && huge.records * huge.recordBytes <= 2 ** 30, 'records fit in 1 GiB');
  assert.ok(huge.size < 2 ** 31, 'the whole table is one mapping');
});

test('the writer leaves a slot a live reader pins, and takes it once unpinned or its reader is gone', () => {
  withFile((file) => {
    const writer = ReaderTable.openWriter(file, 8);
    const a = ReaderTable.openReader(file, 8);
    const b = ReaderTable.openReader(file, 8);
    try {
      assert.ok(a.pin(3));
      assert.ok(b.pin(3));
      assert.equal(writer.holders(3), 2);
      assert.equal(writer.beginRecycle(3), false, 'pinned by two readers');
      a.unpin(3);
      assert.equal(writer.beginRecycle(3), false, 'still pinned by one');
      b.close(); // its word stays 1, but nobody holds its record any more
      assert.equal(writer.holders(3), 0);
      assert.equal(writer.beginRecycle(3), true, "a closed reader's pin does not count");
      assert.equal(a.pin(3), false, 'a slot being recycled cannot be pinned');
      writer.endRecycle(3);
      assert.ok(a.pin(3), 'once the new entry is complete it can');
      assert.equal(writer.beginRecycle(4), true, 'other slots are unaffected');
    } finally {
      a.close();
      b.close();
      writer.close();
    }
  });
});

test('128 live readers at most: READERS_FULL, and a record is free again once its reader closes', () => {
  withFile((file) => {
    const writer = ReaderTable.openWriter(file, 4);
    const readers: ReaderTable[] = [];
    try {
      for (let i = 0; i < 128; i++) readers.push(ReaderTable.openReader(file, 4));
      assert.throws(
        () => ReaderTable.openReader(file, 4),
        (e: unknown) => e instanceof PixtableError && e.code === 'READERS_FULL' && e.status === 503,
      );
      readers[17]!.pin(1);
      readers[17]!.close();
      const again = ReaderTable.openReader(file, 4);
      readers.push(again);
      assert.equal(writer.holders(1), 0, 'the new owner of the record cleared the old pins');
      assert.equal(writer.beginRecycle(1), true);
    } finally {
      for (const r of readers) r.close();
      writer.close();
    }
  });
});

test('a reader of another geometry is refused; a writer of another geometry replaces the file', () => {
  withFile((file) => {
    const writer = ReaderTable.openWriter(file, 8);
    writer.close();
    assert.throws(
      () => ReaderTable.openReader(file, 16),
      (e: unknown) =>
        e instanceof PixtableError && e.code === 'INVALID_CONFIG' && /writer's formats/.test(e.message),
    );
    const bigger = ReaderTable.openWriter(file, 16);
    try {
      const r = ReaderTable.openReader(file, 16);
      assert.ok(r.pin(15));
      assert.equal(bigger.beginRecycle(15), false);
      r.close();
    } finally {
      bigger.close();
    }
  });
});
