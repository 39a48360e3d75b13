// An independent client against our server: geteventstore-promise 4.0.1 (reference §10),
// the read/write behaviours its own test suite expects from a real EventStoreDB.
//
//   npm i geteventstore-promise@4.0.1
//   node geteventstore-promise.js 127.0.0.1:2113     # a server with admin:changeit

const { HTTPClient, EventFactory } = require('geteventstore-promise');
const [host, port] = process.argv[2].split(':');
const es = new HTTPClient({ hostname: host, port: Number(port), credentials: { username: 'admin', password: 'changeit' } });
const assert = require('assert');
(async () => {
  const s = `conformance-${Date.now()}`;
  await es.writeEvent(s, 'Created', { n: 1 });
  await es.writeEvents(s, [new EventFactory().newEvent('Updated', { n: 2 })], { expectedVersion: 0 });
  let rejected = false;
  await es.writeEvent(s, 'Bad', { n: 3 }, null, { expectedVersion: 0 }).catch((e) => { rejected = e.response.status; });
  assert.strictEqual(rejected, 400);
  const evs = await es.getEvents(s, 0, 100, 'forward');
  assert.deepStrictEqual(evs.map((e) => [e.eventNumber, e.eventType, e.data]), [[0, 'Created', { n: 1 }], [1, 'Updated', { n: 2 }]]);
  assert.strictEqual(await es.checkStreamExists(s), true);
  assert.strictEqual(await es.checkStreamExists('nope-' + s), false);
  // 10 events: the read tests of geteventstore-promise.
  const t = `reads-${Date.now()}`;
  for (let i = 0; i < 10; i++) await es.writeEvent(t, 'E', { i });
  assert.strictEqual((await es.readEventsBackward(t, 0, 250)).events.length, 1);
  const back = (await es.readEventsBackward(t, 2)).events;
  assert.deepStrictEqual(back.map((e) => e.eventNumber), [2, 1, 0]);
  assert.strictEqual((await es.readEventsForward(t, 11)).events.length, 0);
  const all = await es.getAllStreamEvents(t, 3);
  assert.strictEqual(all.length, 10);
  const big = `big-${Date.now()}`;
  const f = new EventFactory();
  await es.writeEvents(big, Array.from({ length: 5000 }, (_, i) => f.newEvent('E', { i })));
  assert.strictEqual((await es.readEventsForward(big, 0, 5000)).events.length, 4096);
  assert.strictEqual((await es.getAllStreamEvents(big)).length, 5000);
  await es.deleteStream(s, true);
  assert.strictEqual(await es.checkStreamExists(t), true);
  await es.deleteStream(t);
  assert.strictEqual(await es.checkStreamExists(t), false);
  await es.ping();
  console.log('geteventstore-promise 4.0.1: all checks passed');
})().catch((e) => { console.error('FAILED', e.message || e); process.exit(1); });
