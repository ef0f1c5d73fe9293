/**
 * Fault scenario: deploy overlap. Two instances of the app start at the same moment on one store
 * (real processes, real Azurite): exactly one becomes the writer, the other a read replica whose
 * writes are refused; when the writer goes away (clean shutdown, or kill -9) the replica takes over.
 * Throughout, a watcher reads the manifest and checks it never goes backwards; at the end every
 * acknowledged commit (flush() resolved) is in the store.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { azureBlobStore, drizzle } from 'drizzle-libsql-blob';
import { MANIFEST_KEY, decodeManifest } from '../../src/sync/manifest.ts';
import { faultSummary, spawnLineChild, type LineChild } from '../helpers/fault-report.ts';
import { notes, schema } from '../helpers/fixtures.ts';
import { useAzuriteAndTempDir } from '../helpers/suite.ts';

const CHILD = 'test/children/overlap-instance.ts';
const ROUNDS = 6;
/** The round whose writer is killed with -9: its replica waits out the lease (15 s, Azure's minimum). */
const CRASH_ROUND = 3;

const fixture = useAzuriteAndTempDir('overlap');

test('deploy overlap: two instances started together, one writer, takeovers, manifest never backwards, no acknowledged commit lost', async (t) => {
  const startedAt = performance.now();
  const container = 'overlap';
  const store = azureBlobStore({ connectionString: fixture.azurite.connectionString, container, prefix: 'app', createContainer: true });
  await store.probe();
  const env = { FAULT_CONNECTION_STRING: fixture.azurite.connectionString, FAULT_CONTAINER: container, FAULT_PREFIX: 'app', FAULT_LEASE_SEC: '15' };

  // Watches the manifest the whole time.
  const seen: number[] = [];
  let backwards = 0;
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      const head = await store.readSmall(MANIFEST_KEY).catch(() => null);
      if (head) {
        const seq = decodeManifest(head.body, store.location).seq;
        if (seen.length > 0 && seq < seen.at(-1)!) backwards++;
        if (seen.at(-1) !== seq) seen.push(seq);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  })();

  const acked = new Set<string>();
  const track = (child: LineChild) => () => {
    for (const line of child.lines) if (line.startsWith('ACK ')) acked.add(line.slice(4));
  };
  let takeovers = 0;
  let crashes = 0;
  const children: LineChild[] = [];
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      const pair = ['x', 'y'].map((side) => spawnLineChild(CHILD, [join(fixture.dir.path, `r${round}${side}`, 'app.db'), `r${round}${side}`], env));
      children.push(...pair);
      await Promise.all(pair.map((c) => c.waitFor(/^LOADED$/, { timeoutMs: 60_000 })));
      for (const c of pair) c.send('GO'); // as close together as two processes can be told
      const roles = await Promise.all(pair.map(async (c) => (await c.waitFor(/^ROLE (writer|replica)$/, { timeoutMs: 60_000 })).match[1]));
      assert.deepEqual([...roles].sort(), ['replica', 'writer'], `round ${round}: exactly one writer (${roles.join(', ')})`);
      const writer = pair[roles.indexOf('writer')]!;
      const replica = pair[roles.indexOf('replica')]!;
      await replica.waitFor(/^REFUSED READ_ONLY$/, { timeoutMs: 30_000 });
      const firstAck = await writer.waitFor(/^ACK /, { timeoutMs: 30_000 });
      await writer.waitFor(/^ACK /, { from: firstAck.index + 2, timeoutMs: 30_000 }); // a few commits acknowledged

      if (round === CRASH_ROUND) {
        await writer.kill();
        crashes++;
      } else {
        writer.send('STOP');
        await writer.waitFor(/^CLOSED$/, { timeoutMs: 30_000 });
      }
      track(writer)();
      await replica.waitFor(/^PROMOTED$/, { timeoutMs: 40_000 });
      takeovers++;
      const promotedAck = await replica.waitFor(/^ACK /, { timeoutMs: 30_000 });
      await replica.waitFor(/^ACK /, { from: promotedAck.index + 1, timeoutMs: 30_000 });
      replica.send('STOP');
      await replica.waitFor(/^CLOSED$/, { timeoutMs: 30_000 });
      track(replica)();
      for (const c of pair) assert.ok(!c.lines.some((l) => l.startsWith('ERROR')), c.tail());
    }
  } finally {
    watching = false;
    await watcher;
    await Promise.all(children.map((c) => c.kill()));
  }

  // Everything acknowledged is in the store.
  const fresh = await drizzle({ connection: { url: `file:${join(fixture.dir.path, 'verify', 'app.db')}` }, schema, store, log: false, shutdown: { signals: false }, role: 'replica', restore: 'required' });
  const bodies = new Set((await fresh.select().from(notes)).map((r) => r.body));
  await fresh.$sync.close();
  const lost = [...acked].filter((b) => !bodies.has(b));
  faultSummary(t, 'deploy-overlap', { runs: ROUNDS, starts: ROUNDS * 2, 'writers-per-start': 1, takeovers, crashes, acked: acked.size, lost: lost.length, 'manifest-seqs': seen.length, backwards }, startedAt);
  assert.deepEqual(lost, [], 'acknowledged commits lost');
  assert.equal(backwards, 0, `the manifest went backwards: ${seen.join(' ')}`);
  assert.equal(takeovers, ROUNDS);
  assert.ok(acked.size >= ROUNDS * 4, `only ${acked.size} commits acknowledged`);
});
