// The metrics of `serve --workers N`: every process's registry summed by the supervisor, the
// series that tell processes apart kept apart, and the Node process metrics named once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Metrics, SupervisorMetrics } from '../../src/http/metrics.js';
import { ImageCache } from '../../src/index.js';
import { ThumbCache } from '../../src/http/thumbcache.js';
import { rmrf, solidPng, tempDir } from '../helpers/fixtures.js';

function series(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

test('Node process metrics carry the pixtable_ prefix once', async () => {
  const text = await new Metrics().text();
  assert.match(text, /^pixtable_process_cpu_user_seconds_total /m);
  assert.match(text, /^pixtable_nodejs_heap_size_total_bytes /m);
  assert.doesNotMatch(text, /pixtable_process_process_|pixtable_process_nodejs_/);
});

test('the supervisor sums the processes: requests and hits add up, shared entries do not, processes stay apart', async () => {
  const storage = tempDir('pixtable-metrics-');
  const formats = [
    { name: 'small', width: 8, height: 8, fit: 'cover' as const, pixelFormat: 'rgba8' as const },
  ];
  const writer = await ImageCache.open({ storage, formats });
  const reader = await ImageCache.open({ storage, formats, readOnly: true });
  try {
    await writer.put('a.png', await solidPng(4, 4, [1, 2, 3]));
    await writer.put('b.png', await solidPng(4, 4, [3, 2, 1]));
    const w1 = new Metrics({ role: 'worker', worker: '1' });
    const w2 = new Metrics({ role: 'worker', worker: '2' });
    w1.attach(writer, new ThumbCache(0));
    w2.attach(reader, new ThumbCache(0));
    for (let i = 0; i < 3; i++) w1.countRequest('/v1/pixels', 'GET', 200);
    w2.countRequest('/v1/pixels', 'GET', 200);
    w2.countRequest('/v1/pixels', 'GET', 404);
    (await writer.get('small', 'a.png')).release(); // a hit in the first process
    (await reader.get('small', 'a.png')).release(); // and one in the second (the shared key map)
    const sup = new SupervisorMetrics();
    sup.writer(true);
    sup.restarted('worker');
    const m = series(await sup.text([await w1.json(), await w2.json()]));
    assert.equal(m.get('pixtable_http_requests_total{route="/v1/pixels",method="GET",status="200"}'), 4);
    assert.equal(m.get('pixtable_http_requests_total{route="/v1/pixels",method="GET",status="404"}'), 1);
    assert.equal(
      m.get('pixtable_entries{format="small"}'),
      2,
      'both read the same table: the maximum, not 4',
    );
    assert.equal(m.get('pixtable_cache_hits_total{format="small"}'), 2, 'one hit in each process');
    assert.equal(m.get('pixtable_server_responses_total{role="worker",worker="1"}'), 3);
    assert.equal(m.get('pixtable_server_responses_total{role="worker",worker="2"}'), 2);
    assert.equal(m.get(`pixtable_server_process_info{role="worker",worker="1",pid="${process.pid}"}`), 1);
    assert.equal(m.get('pixtable_server_restarts_total{role="worker"}'), 1);
    assert.equal(m.get('pixtable_server_writer_up'), 1);
  } finally {
    await reader.close();
    await writer.close();
    rmrf(storage);
  }
});
