import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { KObject } from './contract.js';
import { jsonPatch, mergePatch, strategicMergePatch } from './patch.js';
import { parseFieldSelector, parseLabelSelector } from './selectors.js';
import { humanDuration, podStatusReason } from './tables.js';

const pod = (
  status: Record<string, unknown>,
  spec: Record<string, unknown> = {},
  meta: Record<string, unknown> = {},
): KObject => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'p', ...meta },
  spec: { containers: [{ name: 'main' }], ...spec },
  status,
});

describe('pod STATUS column', () => {
  test('follows kubectl printPod for the common states', () => {
    assert.equal(podStatusReason(pod({ phase: 'Pending' })), 'Pending');
    assert.equal(
      podStatusReason(
        pod({
          phase: 'Pending',
          containerStatuses: [{ name: 'main', state: { waiting: { reason: 'ContainerCreating' } } }],
        }),
      ),
      'ContainerCreating',
    );
    assert.equal(
      podStatusReason(
        pod({ phase: 'Running', containerStatuses: [{ name: 'main', ready: true, state: { running: {} } }] }),
      ),
      'Running',
    );
    assert.equal(
      podStatusReason(
        pod({
          phase: 'Failed',
          containerStatuses: [{ name: 'main', state: { terminated: { exitCode: 2, reason: 'Error' } } }],
        }),
      ),
      'Error',
    );
    assert.equal(
      podStatusReason(
        pod({
          phase: 'Failed',
          containerStatuses: [{ name: 'main', state: { terminated: { exitCode: 3 } } }],
        }),
      ),
      'ExitCode:3',
    );
    assert.equal(
      podStatusReason(
        pod(
          {
            phase: 'Pending',
            initContainerStatuses: [{ name: 'init', state: { waiting: { reason: 'PodInitializing' } } }],
          },
          { initContainers: [{ name: 'init' }] },
        ),
      ),
      'Init:0/1',
    );
    assert.equal(
      podStatusReason(
        pod(
          {
            phase: 'Pending',
            initContainerStatuses: [
              { name: 'init', state: { terminated: { exitCode: 1, reason: 'Error' } } },
            ],
          },
          { initContainers: [{ name: 'init' }] },
        ),
      ),
      'Init:Error',
    );
    assert.equal(
      podStatusReason(pod({ phase: 'Running' }, {}, { deletionTimestamp: '2024-01-01T00:00:00Z' })),
      'Terminating',
    );
  });

  test('ages print like kubectl', () => {
    assert.equal(humanDuration(5_000), '5s');
    assert.equal(humanDuration(200_000), '3m20s');
    assert.equal(humanDuration(3 * 3600_000), '3h');
    assert.equal(humanDuration(26 * 3600_000), '26h');
    assert.equal(humanDuration(3 * 86400_000 + 4 * 3600_000), '3d4h');
  });
});

describe('selectors', () => {
  test('label selector operators', () => {
    const s = parseLabelSelector('a=b,c!=d,e in (f, g),h notin (i),j,!k');
    assert.equal(s({ a: 'b', e: 'g', j: '' }), true);
    assert.equal(s({ a: 'b', e: 'g', j: '', k: '1' }), false);
    assert.equal(s({ a: 'b', c: 'd', e: 'g', j: '' }), false);
    assert.equal(s({ a: 'b', e: 'x', j: '' }), false);
    assert.equal(parseLabelSelector('n>3')({ n: '4' }), true);
    assert.throws(() => parseLabelSelector('a in (b'), /unable to parse/);
  });

  test('field selectors per resource', () => {
    const p = pod({ phase: 'Running' }, { nodeName: 'n1' });
    assert.equal(parseFieldSelector('pods', 'status.phase=Running,spec.nodeName==n1')(p), true);
    assert.equal(parseFieldSelector('pods', 'status.phase!=Running')(p), false);
    assert.throws(
      () => parseFieldSelector('configmaps', 'status.phase=x'),
      /field label not supported: status.phase/,
    );
  });
});

describe('patches', () => {
  test('merge patch deletes with null and replaces lists', () => {
    assert.deepEqual(mergePatch({ a: 1, b: { c: 2, d: 3 }, l: [1] }, { b: { c: null }, l: [2] }), {
      a: 1,
      b: { d: 3 },
      l: [2],
    });
  });

  test('strategic merge merges containers by name and honours directives', () => {
    const cur = {
      spec: {
        containers: [
          { name: 'a', image: 'x:1', env: [{ name: 'E', value: '1' }] },
          { name: 'b', image: 'y:1' },
        ],
      },
      metadata: { finalizers: ['f1'] },
    };
    const out = strategicMergePatch(cur, {
      spec: {
        containers: [
          { name: 'a', env: [{ name: 'F', value: '2' }] },
          { name: 'b', $patch: 'delete' },
        ],
      },
      metadata: { finalizers: ['f2'], '$deleteFromPrimitiveList/finalizers': ['f1'] },
    }) as typeof cur;
    assert.deepEqual(out.spec.containers, [
      {
        name: 'a',
        image: 'x:1',
        env: [
          { name: 'E', value: '1' },
          { name: 'F', value: '2' },
        ],
      },
    ]);
    assert.deepEqual(out.metadata.finalizers, ['f2']);
  });

  test('JSON patch operations', () => {
    const out = jsonPatch({ a: [1, 2], b: { c: 1 } }, [
      { op: 'add', path: '/a/-', value: 3 },
      { op: 'remove', path: '/b/c' },
      { op: 'replace', path: '/a/0', value: 0 },
      { op: 'copy', from: '/a', path: '/d' },
      { op: 'test', path: '/d/2', value: 3 },
    ]);
    assert.deepEqual(out, { a: [0, 2, 3], b: {}, d: [0, 2, 3] });
    assert.throws(() => jsonPatch({}, [{ op: 'test', path: '/x', value: 1 }]));
  });
});
