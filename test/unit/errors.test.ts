// The registry's helpers: PixtableError's parts, and a full disk mapped to one code.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ERRORS, PixtableError, storageFullOr } from '../../src/errors.js';

test('a PixtableError carries the public message, the detail and the status of its code', () => {
  const e = new PixtableError('TABLE_FULL', 'thumb-64: all 8 entries are pinned');
  assert.equal(e.message, `${ERRORS.TABLE_FULL.message}: thumb-64: all 8 entries are pinned`);
  assert.equal(e.detail, 'thumb-64: all 8 entries are pinned');
  assert.equal(e.status, 503);
  const bare = new PixtableError('READ_ONLY');
  assert.equal(bare.message, ERRORS.READ_ONLY.message);
  assert.equal(bare.detail, undefined);
});

test('ENOSPC and EDQUOT become STORAGE_FULL naming the place; other errors pass unchanged', () => {
  for (const code of ['ENOSPC', 'EDQUOT']) {
    const cause = Object.assign(new Error(`${code}: no space left on device, write`), { code });
    const mapped = storageFullOr(cause, '/data/tables/thumb-64');
    assert.ok(mapped instanceof PixtableError, code);
    assert.equal(mapped.code, 'STORAGE_FULL');
    assert.equal(mapped.status, 507);
    assert.equal(mapped.message, `${ERRORS.STORAGE_FULL.message}: /data/tables/thumb-64`);
    assert.equal(mapped.cause, cause);
  }
  const other = Object.assign(new Error('EIO: i/o error'), { code: 'EIO' });
  assert.equal(storageFullOr(other, '/x'), other);
  const plain = new TypeError('bug');
  assert.equal(storageFullOr(plain, '/x'), plain);
  assert.equal(storageFullOr(undefined, '/x'), undefined);
});
