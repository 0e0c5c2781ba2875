// Cold-miss latency with sources in S3 against sources on local disk: the same JPEG, a fresh
// storage (empty tables) per run, timed from get() to the decoded view — on disk: read + decode;
// from S3: GetObject streamed to a temp file on loopback (s3rver) + the same decode. Runs of the
// two alternate so both see the same machine load. Each cache is opened before its clock starts
// (the SDK's load and the client's creation are start-up costs, not a miss's).
// Usage: npm run bench:s3 [-- --runs 9 --width 2400 --height 1600]
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { ImageCache } from '../src/index.js';
import { startS3rver } from '../test/helpers/s3.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '9' },
    width: { type: 'string', default: '2400' },
    height: { type: 'string', default: '1600' },
  },
});
const RUNS = Number(values.runs);
const WIDTH = Number(values.width);
const HEIGHT = Number(values.height);
const KEY = 'bench/photo.jpg';
const FORMAT = 'thumb-256';

const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const median = (xs: number[]) => sorted(xs)[Math.floor(xs.length / 2)]!;
const load = () =>
  os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');

async function timedMiss(cache: ImageCache): Promise<number> {
  const t0 = performance.now();
  const view = await cache.get(FORMAT, KEY);
  const ms = performance.now() - t0;
  view.release();
  if (cache.stats().formats.find((f) => f.format === FORMAT)?.decodes !== 1)
    throw new Error('not one decode');
  return ms;
}

async function main(): Promise<void> {
  const loadBefore = load();
  // noise makes the JPEG cost what a photo costs to decode (and to transfer: no tiny file)
  const jpeg = await sharp({
    create: {
      width: WIDTH,
      height: HEIGHT,
      channels: 3,
      background: '#808080',
      noise: { type: 'gaussian', mean: 128, sigma: 30 },
    },
  })
    .jpeg({ quality: 85 })
    .toBuffer();
  const s3 = await startS3rver('bench-s3-miss');
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'pixtable-bench-s3-'));
  const local: number[] = [];
  const remote: number[] = [];
  try {
    await s3.putObject(KEY, jpeg);
    for (let run = 0; run < RUNS; run++) {
      const disk = path.join(root, `disk-${run}`);
      await fs.mkdir(path.join(disk, 'sources', 'bench'), { recursive: true });
      await fs.writeFile(path.join(disk, 'sources', KEY), jpeg);
      const onDisk = await ImageCache.open({ storage: disk });
      try {
        local.push(await timedMiss(onDisk));
      } finally {
        await onDisk.close();
      }
      const inS3 = await ImageCache.open({
        storage: path.join(root, `s3-${run}`),
        s3: { bucket: s3.bucket, endpoint: s3.endpoint },
      });
      try {
        remote.push(await timedMiss(inS3));
      } finally {
        await inS3.close();
      }
    }
  } finally {
    await s3.close();
    await fs.rm(root, { recursive: true, force: true });
  }
  const row = (name: string, xs: number[]) => {
    const s = sorted(xs);
    return `| ${name} | ${median(xs).toFixed(1)} ms | ${s[0]!.toFixed(1)}–${s.at(-1)!.toFixed(1)} ms |`;
  };
  console.log(
    `cold miss of one ${WIDTH}x${HEIGHT} JPEG (${(jpeg.length / 1024).toFixed(0)} KiB) into the default formats, ${RUNS} runs each, alternating`,
  );
  console.log('| source | median | range |');
  console.log('|---|---|---|');
  console.log(row('local disk (storage/sources)', local));
  console.log(row('S3 (s3rver on loopback)', remote));
  console.log(
    `S3 − disk: ${(median(remote) - median(local)).toFixed(1)} ms on the median (${(median(remote) / median(local)).toFixed(2)}×)`,
  );
  console.log(`load average (1 5 15 min): ${loadBefore} at the start, ${load()} at the end`);
}

await main();
