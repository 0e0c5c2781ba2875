// The key map's own rules (src/engine/key-map.ts): exact keys whatever the hash says, replace and
// delete, a writer's rebuild seen by readers, a torn or foreign file never trusted, and a reader
// in another process never matching a key to another key's record while the writer rewrites.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { KeyMap, keyGeometry, keyHash } from '../../src/engine/key-map.js';
import { rmrf, tempDir } from '../helpers/fixtures.js';

const TABLE = Buffer.from('0123456789abcdef', 'hex');

function withFile(fn: (file: string) => void | Promise<void>): Promise<void> {
  const dir = tempDir('pixtable-keys-');
  return Promise.resolve(fn(path.join(dir, 'f.keys'))).finally(() => rmrf(dir));
}

/** Two different keys with the same 32-bit hash (found by search: FNV-1a has many). */
function collidingPair(): [string, string] {
  const seen = new Map<number, string>();
  for (let i = 0; i < 400_000; i++) {
    const k = `img-${((i * 2654435761) >>> 0).toString(36)}.png`;
    const h = keyHash(k);
    const other = seen.get(h);
    if (other !== undefined) return [other, k];
    seen.set(h, k);
  }
  throw new Error('no colliding pair in 400,000 keys');
}

test('keys whose hashes collide are told apart byte for byte, and deleting one leaves the other', () =>
  withFile((file) => {
    const [a, b] = collidingPair();
    assert.notEqual(a, b);
    assert.equal(keyHash(a), keyHash(b), 'the same hash, so the same bucket chain');
    const w = KeyMap.build(file, 8, TABLE, []);
    w.set(a, 1, 11);
    const r = KeyMap.openReader(file, 8)!;
    assert.equal(r.find(b), -1, 'a key colliding with a stored one is not found');
    w.set(b, 2, 22);
    assert.equal(r.find(a), 1);
    assert.equal(r.foundGen, 11);
    assert.equal(r.find(b), 2);
    assert.equal(r.foundGen, 22);
    assert.equal(w.remove(a), true);
    assert.equal(r.find(a), -1);
    assert.equal(r.find(b), 2, 'the tombstone of the first keeps the chain to the second');
    assert.equal(r.find(`${b}x`), -1);
    assert.equal(r.find(b.slice(0, -1)), -1, 'a prefix is another key');
    assert.equal(r.liveCount, 1);
  }));

test('replace moves a key to another slot, a recycled slot forgets its old key, delete clears the record', () =>
  withFile((file) => {
    const w = KeyMap.build(file, 8, TABLE, []);
    const r = KeyMap.openReader(file, 8)!;
    w.set('a', 3, 1);
    w.set('a', 5, 2); // a pinned entry replaced: the new one is in another slot
    assert.equal(r.find('a'), 5);
    assert.equal(r.foundGen, 2);
    assert.equal(r.generation[3], 0, 'the old slot holds no entry any more');
    w.set('a', 5, 3); // rewritten in place
    assert.equal(r.find('a'), 5);
    assert.equal(r.foundGen, 3);
    w.set('b', 5, 4); // slot 5 recycled for another key
    assert.equal(r.find('a'), -1, 'the key whose slot was recycled is gone');
    assert.equal(r.find('b'), 5);
    assert.equal(w.remove('b'), true);
    assert.equal(w.remove('b'), false);
    assert.equal(r.find('b'), -1);
    assert.deepEqual([r.generation[5], r.state[5]], [0, 0]);
    assert.equal(r.liveCount, 0);
    assert.deepEqual(r.records(), []);
  }));

test('a writer that rebuilds the map retires the old file; readers reopen and see the rebuilt one', () =>
  withFile((file) => {
    const w1 = KeyMap.build(file, 16, TABLE, [{ key: 'a', slot: 0, generation: 1 }]);
    const r = KeyMap.openReader(file, 16)!;
    assert.equal(r.retired, false);
    assert.equal(r.find('a'), 0);
    // the next writer (after a crash, or any open) rebuilds from the log, which no longer has 'a'
    const w2 = KeyMap.build(file, 16, TABLE, [{ key: 'b', slot: 1, generation: 7 }]);
    assert.equal(r.retired, true, 'the reader learns from its own mapping');
    assert.equal(r.find('a'), 0, 'a retired map stays as it was (frozen, consistent)');
    w1.set('c', 2, 2); // a stale writer object cannot reach readers of the new file
    const r2 = KeyMap.openReader(file, 16)!;
    assert.equal(r2.find('a'), -1);
    assert.equal(r2.find('c'), -1);
    assert.equal(r2.find('b'), 1);
    assert.equal(r2.foundGen, 7);
    w2.set('d', 3, 8);
    assert.equal(r2.find('d'), 3);
    assert.equal(KeyMap.openReader(file, 32), null, 'another capacity is another geometry: not used');
  }));

test('a torn, truncated or foreign file is never used; a writer rebuilds it from its records', () =>
  withFile((file) => {
    KeyMap.build(file, 16, TABLE, [{ key: 'a', slot: 0, generation: 1 }]);
    const size = fs.statSync(file).size;
    assert.equal(size, keyGeometry(16).size);
    fs.truncateSync(file, size - 4096);
    assert.equal(KeyMap.openReader(file, 16), null, 'shorter than its geometry');
    fs.writeFileSync(file, Buffer.alloc(size, 0x5a));
    assert.equal(KeyMap.openReader(file, 16), null, 'foreign bytes');
    const good = KeyMap.build(file, 16, TABLE, [{ key: 'a', slot: 0, generation: 1 }]);
    const head = fs.readFileSync(file).subarray(0, 64);
    head[9] = head[9]! ^ 1; // the capacity, under the header CRC
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, head, 0, 64, 0);
    fs.closeSync(fd);
    assert.equal(KeyMap.openReader(file, 16), null, 'header CRC mismatch');
    // the writer never reads what the file held: it rebuilds from the log's records
    KeyMap.build(file, 16, TABLE, [{ key: 'z', slot: 4, generation: 9 }]);
    const r = KeyMap.openReader(file, 16)!;
    assert.equal(r.find('a'), -1);
    assert.equal(r.find('z'), 4);
    assert.deepEqual(r.tableId, TABLE);
    void good;
  }));

test('damaged records inside a valid file never match another key', () =>
  withFile((file) => {
    const w = KeyMap.build(file, 16, TABLE, []);
    w.set('alpha', 1, 5);
    w.set('beta', 2, 6);
    const g = keyGeometry(16);
    const b = fs.readFileSync(file);
    // point every bucket at slot 'beta' (slot 2 + 1), as damage could
    for (let i = 0; i < g.buckets; i++)
      if (b.readUInt32LE(g.bucketsAt + i * 4) !== 0) b.writeUInt32LE(3, g.bucketsAt + i * 4);
    fs.writeFileSync(file, b); // same inode: the writer's own mapping sees it too
    const r = KeyMap.openReader(file, 16)!;
    assert.equal(r.find('alpha'), -1, 'alpha is not found, rather than served from beta’s slot');
    assert.equal(r.find('beta'), 2);
  }));

test('the key area and tombstones running out make the writer move to a fresh file; readers follow', () =>
  withFile((file) => {
    const w = KeyMap.build(file, 16, TABLE, []);
    let r = KeyMap.openReader(file, 16)!;
    const long = (i: number) => `${String(i).padStart(6, '0')}/${'x'.repeat(3000)}`;
    let moves = 0;
    for (let i = 0; i < 400; i++) {
      w.set(long(i), i % 16, i + 1); // 1.2 MB of keys through 16 slots: the 256 KiB area fills
      if (i % 3 === 0) w.remove(long(i));
      if (r.retired) {
        moves++;
        r = KeyMap.openReader(file, 16)!;
      }
    }
    assert.ok(moves >= 3, `moved ${moves} times`);
    for (let i = 384; i < 400; i++) {
      const s = r.find(long(i));
      if (i % 3 === 0) assert.equal(s, -1, `${i} was removed`);
      else assert.deepEqual([s, r.foundGen], [i % 16, i + 1], `${i}`);
    }
    assert.equal(r.find(long(383)), -1, 'recycled');
    // tombstones alone: set and remove in turn, far more than there are buckets
    for (let i = 0; i < 5 * keyGeometry(16).buckets; i++) {
      w.set(`t${i}`, 0, 1000 + i);
      w.remove(`t${i}`);
    }
    r = KeyMap.openReader(file, 16)!;
    assert.equal(r.find('never'), -1, 'a miss ends (an empty bucket is always left)');
    assert.equal(r.find(long(398)), 398 % 16);
  }));

const CHURN = `
import { KeyMap } from ${JSON.stringify(new URL('../../src/engine/key-map.js', import.meta.url).pathname)};
const [file, keys, slots, ms] = JSON.parse(process.argv[1]);
const w = KeyMap.build(file, slots, Buffer.from('0123456789abcdef', 'hex'), []);
process.stdout.write('ready\\n');
const end = Date.now() + ms;
let gen = 0, n = 0;
while (Date.now() < end) {
  for (let i = 0; i < 1000; i++, n++) {
    const k = n % keys;
    gen += keys; // gen ≡ k + 1 (mod keys): a record's generation says whose it is
    const g = gen - keys + k + 1;
    w.set('key-' + k, (n * 7) % slots, g);
    if (n % 5 === 0) w.remove('key-' + ((k + 3) % keys));
  }
}
process.stdout.write('done ' + n + '\\n');
`;

test('a reader in another process never matches a key to another key’s record while the writer rewrites', async () =>
  withFile(async (file) => {
    const KEYS = 5;
    const SLOTS = 2; // fewer slots than keys: every set recycles a slot of another key
    const child = spawn(
      process.execPath,
      ['--input-type=module', '-e', CHURN, JSON.stringify([file, KEYS, SLOTS, 2500])],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    await new Promise<void>((res, rej) => {
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString();
        if (out.includes('ready')) res();
      });
      child.on('exit', (code) => rej(new Error(`writer exited ${code}: ${out}`)));
    });
    let r = KeyMap.openReader(file, SLOTS)!;
    let found = 0;
    let wrong = 0;
    const t0 = Date.now();
    for (let i = 0; i < 2_000_000 && Date.now() - t0 < 2000; i++) {
      if (r.retired) r = KeyMap.openReader(file, SLOTS) ?? r;
      const k = i % KEYS;
      const s = r.find(`key-${k}`);
      if (s < 0) continue;
      found++;
      if ((r.foundGen - 1) % KEYS !== k) wrong++;
    }
    const exit = await new Promise<number | null>((res) => child.on('exit', res));
    assert.equal(exit, 0, out);
    assert.ok(found > 1000, `only ${found} lookups found their key`);
    assert.equal(wrong, 0, `${wrong} of ${found} lookups matched another key's record`);
  }));
