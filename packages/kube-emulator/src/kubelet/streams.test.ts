import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { WebSocket } from 'ws';
import { mountNamespacesAvailable } from './process.js';
import { parseResize } from './streams.js';
import { containerState, type Harness, phaseOf, pod, rawExec, startHarness } from './test-support/harness.js';

/** Where test containers mount volumes (mountpoints are created on the host); removed after the file. */
const MNT = `/tmp/kubelet-test-mnt-${process.pid}`;
after(() => rmSync(MNT, { recursive: true, force: true }));

/** Mount namespaces and uid switching need root that may mount (CI runs as root). */
const NEEDS_ROOT = mountNamespacesAvailable() ? false : 'needs mount namespaces (root with CAP_SYS_ADMIN)';

const MB = 1024 * 1024;

function execSocket(base: string, podName: string, command: string[], q: Record<string, boolean>): WebSocket {
  const p = new URLSearchParams();
  for (const c of command) p.append('command', c);
  p.set('container', 'main');
  for (const [k, v] of Object.entries(q)) p.set(k, String(v));
  return new WebSocket(`ws://${base}/api/v1/namespaces/default/pods/${podName}/exec?${p}`, [
    'v5.channel.k8s.io',
  ]);
}

/** Samples this process's RSS until stopped; returns the peak growth over the starting value. */
function rssWatch(): () => number {
  const start = process.memoryUsage.rss();
  let peak = start;
  const t = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 20);
  return () => {
    clearInterval(t);
    return peak - start;
  };
}

describe('exec streams', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness();
    h.store.create(
      'pods',
      pod('s', { containers: [{ name: 'main', image: 'x', command: ['sleep', '300'] }] }),
    );
    await h.store.waitFor('pods', 'default', 's', (o) => phaseOf(o) === 'Running');
  });
  after(async () => {
    await h.close();
  });

  test('parses resize messages from both clients', () => {
    assert.deepEqual(parseResize(Buffer.from('{"Width":100,"Height":30}\n')), { cols: 100, rows: 30 });
    assert.deepEqual(parseResize(Buffer.from('{"height":40,"width":120}')), { cols: 120, rows: 40 });
  });

  test('downloads 128 MB with bounded memory, with a slow reader', async (t) => {
    const size = 128 * MB;
    const stop = rssWatch();
    const began = process.hrtime.bigint();
    const ws = execSocket(h.base, 's', ['head', '-c', String(size), '/dev/zero'], {
      stdout: true,
      stderr: true,
    });
    let got = 0;
    let status: unknown;
    let stalls = 0;
    await new Promise<void>((resolve, reject) => {
      ws.on('message', (d: Buffer) => {
        if (d[0] === 1) got += d.length - 1;
        if (d[0] === 3) status = JSON.parse(d.subarray(1).toString());
        // Stall the reader now and then: the server must stop reading the process meanwhile.
        if (d[0] === 1 && got > (stalls + 1) * 32 * MB && stalls < 2) {
          stalls++;
          ws.pause();
          setTimeout(() => ws.resume(), 300);
        }
      });
      ws.on('close', () => resolve());
      ws.on('error', reject);
    });
    const secs = Number(process.hrtime.bigint() - began) / 1e9;
    const grew = stop();
    assert.equal(got, size);
    assert.deepEqual(status, { metadata: {}, status: 'Success' });
    t.diagnostic(
      `exec download: ${(size / MB / secs).toFixed(0)} MB/s, RSS grew ${(grew / MB).toFixed(0)} MB`,
    );
    assert.ok(grew < 160 * MB, `RSS grew by ${grew / MB} MB`);
  });

  test('uploads 128 MB with bounded memory and v5 stdin close', async (t) => {
    const size = 128 * MB;
    const stop = rssWatch();
    const began = process.hrtime.bigint();
    const ws = execSocket(h.base, 's', ['sh', '-c', 'sleep 0.2; wc -c'], {
      stdin: true,
      stdout: true,
      stderr: true,
    });
    let out = '';
    let status: unknown;
    const chunk = Buffer.alloc(32 * 1024 + 1, 7);
    chunk[0] = 0;
    await new Promise<void>((resolve, reject) => {
      ws.on('open', () => {
        let sent = 0;
        const pump = (): void => {
          while (sent < size) {
            if (ws.bufferedAmount > 4 * MB) {
              setTimeout(pump, 1);
              return;
            }
            const n = Math.min(chunk.length - 1, size - sent);
            ws.send(n === chunk.length - 1 ? chunk : chunk.subarray(0, n + 1));
            sent += n;
          }
          ws.send(Buffer.from([255, 0]));
        };
        pump();
      });
      ws.on('message', (d: Buffer) => {
        if (d[0] === 1) out += d.subarray(1).toString();
        if (d[0] === 3) status = JSON.parse(d.subarray(1).toString());
      });
      ws.on('close', () => resolve());
      ws.on('error', reject);
    });
    const secs = Number(process.hrtime.bigint() - began) / 1e9;
    const grew = stop();
    assert.equal(out.trim(), String(size));
    assert.deepEqual(status, { metadata: {}, status: 'Success' });
    t.diagnostic(`exec upload: ${(size / MB / secs).toFixed(0)} MB/s, RSS grew ${(grew / MB).toFixed(0)} MB`);
    assert.ok(grew < 160 * MB, `RSS grew by ${grew / MB} MB`);
  });

  test('a process that stops reading stdin and exits still ends the stream', {
    timeout: 20_000,
  }, async () => {
    const ws = execSocket(h.base, 's', ['sh', '-c', 'head -c 10 >/dev/null; echo done'], {
      stdin: true,
      stdout: true,
    });
    let out = '';
    let status: unknown;
    const code = await new Promise<number>((resolve, reject) => {
      ws.on('open', () => {
        const chunk = Buffer.alloc(64 * 1024 + 1);
        for (let i = 0; i < 400; i++) ws.send(chunk);
      });
      ws.on('message', (d: Buffer) => {
        if (d[0] === 1) out += d.subarray(1).toString();
        if (d[0] === 3) status = JSON.parse(d.subarray(1).toString());
      });
      ws.on('close', (c) => resolve(c));
      ws.on('error', reject);
    });
    assert.equal(out, 'done\n');
    assert.deepEqual(status, { metadata: {}, status: 'Success' });
    assert.equal(code, 1000);
  });

  test('only requested channels are used and 255 is never sent', async () => {
    const r = await rawExec(h.base, 's', ['sh', '-c', 'echo a; echo b >&2'], { stderr: false });
    assert.equal(r.stdout.toString(), 'a\n');
    assert.ok(r.frames.every((f) => f === 1 || f === 3));
  });

  test('exec runs as the container user in its working directory', { skip: NEEDS_ROOT }, async () => {
    h.store.create(
      'pods',
      pod('u', {
        securityContext: { runAsUser: 1234, runAsGroup: 2345, fsGroup: 3456 },
        containers: [
          {
            name: 'main',
            image: 'x',
            command: ['sh', '-c', `id -u > ${MNT}/data/who; exec sleep 300`],
            workingDir: `${MNT}/data`,
            volumeMounts: [
              { name: 'data', mountPath: `${MNT}/data` },
              { name: 'cfg', mountPath: `${MNT}/one.conf`, subPath: 'one.conf' },
            ],
          },
        ],
        volumes: [
          { name: 'data', emptyDir: {} },
          { name: 'cfg', secret: { secretName: 'sec' } },
        ],
      }),
    );
    for (let i = 0; i < 500 && !h.store.events.some((e) => e.reason === 'FailedMount'); i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(
      h.store.events.some((e) => e.reason === 'FailedMount' && e.message.includes('secret "sec" not found')),
    );
    h.store.create('secrets', {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'sec', namespace: 'default' },
      data: { 'one.conf': Buffer.from('secret-one').toString('base64') },
    });
    await h.store.waitFor('pods', 'default', 'u', (o) => phaseOf(o) === 'Running');
    const r = await rawExec(h.base, 'u', [
      'sh',
      '-c',
      'id -u; id -g; pwd; while [ ! -s who ]; do sleep 0.05; done; cat who; cat ../one.conf; touch mine && echo wrote',
    ]);
    assert.equal(r.stdout.toString(), `1234\n2345\n${MNT}/data\n1234\nsecret-onewrote\n`);
  });

  test('attach joins the main process; several attachers see its output', async () => {
    h.store.create(
      'pods',
      pod('att', {
        containers: [
          {
            name: 'main',
            image: 'x',
            stdin: true,
            command: ['sh', '-c', 'while read l; do echo "got $l"; done'],
          },
        ],
      }),
    );
    await h.store.waitFor('pods', 'default', 'att', (o) => phaseOf(o) === 'Running');
    const open = (): Promise<{ ws: WebSocket; out: () => string }> =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(
          `ws://${h.base}/api/v1/namespaces/default/pods/att/attach?container=main&stdin=true&stdout=true&stderr=true`,
          ['v5.channel.k8s.io'],
        );
        let out = '';
        ws.on('message', (d: Buffer) => {
          if (d[0] === 1) out += d.subarray(1).toString();
        });
        ws.on('open', () => resolve({ ws, out: () => out }));
        ws.on('error', reject);
      });
    const a = await open();
    const b = await open();
    a.ws.send(Buffer.concat([Buffer.from([0]), Buffer.from('hello\n')]));
    for (let i = 0; i < 200 && !(a.out().includes('got hello') && b.out().includes('got hello')); i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(a.out(), 'got hello\n');
    assert.equal(b.out(), 'got hello\n');
    // Dropped attachers do not end the container.
    assert.equal(h.kubelet.faults.killStreams('default', 'att'), 2);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(phaseOf(h.store.get('pods', 'default', 'att')), 'Running');
    // faults.exitContainer ends it with a chosen code; the pod restarts it.
    assert.equal(h.kubelet.faults.exitContainer('default', 'att', 'main', 42), true);
    const p = await h.store.waitFor('pods', 'default', 'att', (o) => containerState(o)?.restartCount === 1);
    assert.equal(containerState(p)?.lastState.terminated.exitCode, 42);
  });

  test('attach to a tty container: input, resize and output on one terminal', async () => {
    h.store.create(
      'pods',
      pod('term', {
        containers: [
          {
            name: 'main',
            image: 'x',
            stdin: true,
            tty: true,
            command: ['sh', '-c', 'while read l; do echo "size $(stty size) $l"; done'],
          },
        ],
      }),
    );
    await h.store.waitFor('pods', 'default', 'term', (o) => phaseOf(o) === 'Running');
    const ws = new WebSocket(
      `ws://${h.base}/api/v1/namespaces/default/pods/term/attach?container=main&stdin=true&stdout=true&tty=true`,
      ['v5.channel.k8s.io'],
    );
    let out = '';
    ws.on('message', (d: Buffer) => {
      if (d[0] === 1) out += d.subarray(1).toString();
    });
    await new Promise((r) => ws.on('open', r));
    ws.send(Buffer.concat([Buffer.from([4]), Buffer.from('{"Width":132,"Height":43}')]));
    await new Promise((r) => setTimeout(r, 100));
    ws.send(Buffer.concat([Buffer.from([0]), Buffer.from('hi\r')]));
    for (let i = 0; i < 200 && !out.includes('size 43 132 hi'); i++)
      await new Promise((r) => setTimeout(r, 10));
    assert.match(out, /size 43 132 hi/);
    ws.close();
    const log = await (await fetch(`http://${h.base}/api/v1/namespaces/default/pods/term/log`)).text();
    assert.match(log, /size 43 132 hi/);
  });

  test('tty exec: client disconnect hangs up the process', async () => {
    const ws = execSocket(
      h.base,
      's',
      ['sh', '-c', 'trap "echo hup > /tmp/kubelet-test-hup; exit 1" HUP; sleep 30 & wait'],
      {
        stdin: true,
        stdout: true,
        tty: true,
      },
    );
    await new Promise((r) => ws.on('open', r));
    await new Promise((r) => setTimeout(r, 200));
    ws.terminate();
    const { readFileSync, existsSync, rmSync } = await import('node:fs');
    for (let i = 0; i < 200 && !existsSync('/tmp/kubelet-test-hup'); i++)
      await new Promise((r) => setTimeout(r, 10));
    assert.equal(readFileSync('/tmp/kubelet-test-hup', 'utf8'), 'hup\n');
    rmSync('/tmp/kubelet-test-hup');
  });
});
