import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { StoreEvent } from './contract.js';
import { StatusError } from './errors.js';
import { ObjectStore } from './store.js';

describe('ObjectStore', () => {
  const dirs: string[] = [];
  const fresh = (historySize?: number): { store: ObjectStore; dir: string } => {
    const dir = mkdtempSync(join(tmpdir(), 'kube-emu-store-'));
    dirs.push(dir);
    const store = new ObjectStore({ stateDir: dir, ...(historySize ? { historySize } : {}) });
    store.create('namespaces', undefined, { metadata: { name: 'default' } });
    return { store, dir };
  };
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  test('recordEvent writes core/v1 Events and counts repeats', () => {
    const { store } = fresh();
    const cm = store.create('configmaps', 'default', { metadata: { name: 'c' } });
    store.recordEvent(cm, 'Warning', 'Broken', 'it broke', 'tester');
    store.recordEvent(cm, 'Warning', 'Broken', 'it broke', 'tester');
    store.recordEvent(cm, 'Normal', 'Fixed', 'it works', 'tester');
    const events = store.list('events', 'default');
    assert.equal(events.length, 2);
    const broken = events.find((e) => e.reason === 'Broken')!;
    assert.equal(broken.count, 2);
    assert.equal(broken.type, 'Warning');
    assert.deepEqual(broken.source, { component: 'tester' });
    assert.equal((broken.involvedObject as { uid: string }).uid, cm.metadata.uid);
    assert.match(String(broken.firstTimestamp), /Z$/);
    store.close();
  });

  test('subscribers see every change in order, including ones made from inside a subscriber', () => {
    const { store } = fresh();
    const seen: string[] = [];
    store.subscribe((e: StoreEvent) => {
      seen.push(`${e.type} ${e.resource} ${e.object.metadata.name}`);
      if (e.type === 'ADDED' && e.resource === 'configmaps') {
        store.update('configmaps', 'default', e.object.metadata.name, (o) => ({
          ...o,
          data: { touched: 'yes' },
        }));
      }
    });
    store.create('configmaps', 'default', { metadata: { name: 'x' } });
    store.remove('configmaps', 'default', 'x');
    assert.deepEqual(seen, ['ADDED configmaps x', 'MODIFIED configmaps x', 'DELETED configmaps x']);
    store.close();
  });

  test('watchFrom replays retained history and rejects compacted resourceVersions', () => {
    const { store } = fresh(2);
    const start = store.resourceVersion;
    for (const n of ['a', 'b', 'c']) store.create('configmaps', 'default', { metadata: { name: n } });
    assert.throws(
      () => store.watchFrom(start, () => {}),
      (e: unknown) => e instanceof StatusError && e.code === 410 && e.reason === 'Expired',
    );
    const names: string[] = [];
    const stop = store.watchFrom(store.resourceVersion - 1, (e) => names.push(e.object.metadata.name));
    store.create('configmaps', 'default', { metadata: { name: 'd' } });
    stop();
    assert.deepEqual(names, ['c', 'd']);
    store.close();
  });

  test('persists to objects.json and reloads with the same resourceVersion', () => {
    const { store, dir } = fresh();
    store.create('secrets', 'default', { metadata: { name: 's' }, stringData: { a: 'b' } });
    const rv = store.resourceVersion;
    store.close();
    const saved = JSON.parse(readFileSync(join(dir, 'objects.json'), 'utf8')) as { resourceVersion: number };
    assert.equal(saved.resourceVersion, rv);
    const again = new ObjectStore({ stateDir: dir });
    assert.equal(again.resourceVersion, rv);
    assert.equal(again.get('secrets', 'default', 's')?.type, 'Opaque');
    assert.throws(() => again.watchFrom(rv - 1, () => {}), /too old resource version/);
    again.close();
  });
});
