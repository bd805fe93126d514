/**
 * The kubelet through the real API server, driven by the real kubectl and @kubernetes/client-node.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable, type Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { CoreV1Api, Exec, KubeConfig, type V1Pod, type V1Status } from '@kubernetes/client-node';
import { type Emulator, start } from '../index.js';
import { mountNamespacesAvailable } from './process.js';

/** Mount namespaces and uid switching need root that may mount (CI runs as root). */
const NEEDS_ROOT = mountNamespacesAvailable() ? false : 'needs mount namespaces (root with CAP_SYS_ADMIN)';

const MB = 1024 * 1024;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe('kubelet through the API server with real clients', () => {
  let emu: Emulator;
  let dir: string;
  let env: Record<string, string>;
  let core: CoreV1Api;
  let kc: KubeConfig;

  const kubectl = (args: string[], opts: { input?: string; shell?: string } = {}): Promise<Run> =>
    new Promise((resolve, reject) => {
      const child = opts.shell
        ? spawn('sh', ['-c', opts.shell], { env })
        : spawn('kubectl', args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout?.on('data', (b: Buffer) => {
        stdout += b.toString();
      });
      child.stderr?.on('data', (b: Buffer) => {
        stderr += b.toString();
      });
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout, stderr }));
      child.stdin?.end(opts.input ?? '');
    });

  const podPhase = async (name: string): Promise<V1Pod> =>
    core.readNamespacedPod({ name, namespace: 'default' });

  const waitPod = async (name: string, pred: (p: V1Pod) => boolean, what: string): Promise<V1Pod> => {
    for (let i = 0; i < 500; i++) {
      const p = await podPhase(name).catch(() => undefined);
      if (p && pred(p)) return p;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`pod ${name} never became ${what}: ${JSON.stringify((await podPhase(name)).status)}`);
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kubelet-it-'));
    emu = await start({ stateDir: join(dir, 'state'), failImagePattern: /does-not-exist/, timeScale: 0.005 });
    mkdirSync(join(dir, 'cache'));
    env = {
      KUBECONFIG: emu.kubeconfigPath,
      KUBECACHEDIR: join(dir, 'cache'),
      HOME: dir,
      PATH: process.env.PATH ?? '/usr/bin:/bin',
    };
    kc = new KubeConfig();
    kc.loadFromFile(emu.kubeconfigPath);
    core = kc.makeApiClient(CoreV1Api);
    await core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: { name: 'web' },
        spec: {
          containers: [
            {
              name: 'main',
              image: 'alpine:3',
              command: [
                'sh',
                '-c',
                'echo started; i=0; while [ $i -lt 3 ]; do i=$((i+1)); echo tick $i; sleep 0.1; done; exec sleep 300',
              ],
              volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }],
            },
          ],
          volumes: [{ name: 'tmp', emptyDir: {} }],
        },
      },
    });
    await waitPod('web', (p) => p.status?.phase === 'Running', 'Running');
  });

  after(async () => {
    await emu.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('kubectl logs and logs -f', async () => {
    for (let i = 0; i < 100; i++) {
      if ((await kubectl(['logs', 'web'])).stdout.includes('tick 3')) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const r = await kubectl(['logs', 'web']);
    assert.equal(r.stdout, 'started\ntick 1\ntick 2\ntick 3\n');
    await core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: { name: 'short' },
        spec: {
          restartPolicy: 'Never',
          containers: [
            { name: 'main', image: 'alpine', command: ['sh', '-c', 'sleep 0.3; echo a; sleep 0.3; echo b'] },
          ],
        },
      },
    });
    await waitPod('short', (p) => p.status?.phase === 'Running', 'Running');
    const f = await kubectl(['logs', '-f', 'short']);
    assert.equal(f.code, 0, f.stderr);
    assert.equal(f.stdout, 'a\nb\n');
  });

  test('kubectl exec with exit codes, -i and -it', async () => {
    const r = await kubectl(['exec', 'web', '--', 'sh', '-c', 'echo out; echo err >&2; exit 7']);
    assert.equal(r.code, 7);
    assert.equal(r.stdout, 'out\n');
    assert.match(r.stderr, /err\n/);
    const i = await kubectl(['exec', '-i', 'web', '--', 'sh', '-c', 'cat; echo done'], { input: 'piped\n' });
    assert.equal(i.stdout, 'piped\ndone\n');
    // The initial resize races the command (as on a real cluster): poll for it.
    const script =
      'for i in $(seq 30); do s=$(stty size); [ "$s" = "27 91" ] && break; sleep 0.1; done; echo $s; tty >/dev/null && echo is-tty; exit 4\n';
    await kubectl(['exec', '-i', 'web', '--', 'sh', '-c', 'cat > /tmp/size.sh'], { input: script });
    const it = await kubectl([], {
      shell: `sleep 1 | script -qec "stty cols 91 rows 27; kubectl exec -it web -- sh /tmp/size.sh" /dev/null`,
    });
    assert.match(it.stdout, /27 91\r\nis-tty\r\n/);
    assert.match(it.stdout, /command terminated with exit code 4/);
  });

  test('exec -i with a tar archive, and kubectl cp both ways', async () => {
    const src = join(dir, 'src');
    mkdirSync(join(src, 'sub'), { recursive: true });
    writeFileSync(join(src, 'sub', 'a.txt'), 'alpha\n');
    const t = await kubectl([], {
      shell: `tar cf - -C ${src} sub | kubectl exec -i web -- tar xf - -C /tmp && kubectl exec web -- cat /tmp/sub/a.txt`,
    });
    assert.equal(t.stdout, 'alpha\n', t.stderr);
    const up = await kubectl(['cp', src, 'web:/tmp/copied']);
    assert.equal(up.code, 0, up.stderr);
    assert.equal((await kubectl(['exec', 'web', '--', 'cat', '/tmp/copied/sub/a.txt'])).stdout, 'alpha\n');
    const down = await kubectl(['cp', 'web:/tmp/copied', join(dir, 'back')]);
    assert.equal(down.code, 0, down.stderr);
    assert.equal(readFileSync(join(dir, 'back', 'sub', 'a.txt'), 'utf8'), 'alpha\n');
  });

  test('client-node Exec: stdin end over v5, exit code and resize', async () => {
    const exec = new Exec(kc);
    const run = (
      command: string[],
      input: string | null,
      tty = false,
      stdout: Writable = new PassThrough(),
    ): Promise<{ out: string; status: V1Status }> =>
      new Promise((resolve, reject) => {
        let out = '';
        stdout.on('data', (b: Buffer) => {
          out += b.toString();
        });
        let status: V1Status | undefined;
        const stdin = input === null ? null : Readable.from([Buffer.from(input)]);
        exec
          .exec(
            'default',
            'web',
            'main',
            command,
            stdout,
            tty ? null : new PassThrough(),
            stdin,
            tty,
            (s) => {
              status = s;
            },
          )
          .then(
            (ws) =>
              ws.on('close', () => (status ? resolve({ out, status }) : reject(new Error('no status')))),
            reject,
          );
      });
    const a = await run(['sh', '-c', 'cat; echo end'], 'from-stdin\n');
    assert.equal(a.out, 'from-stdin\nend\n');
    assert.equal(a.status.status, 'Success');
    const b = await run(['sh', '-c', 'exit 7'], null);
    assert.equal(b.status.reason, 'NonZeroExitCode');
    assert.equal(b.status.details?.causes?.[0]?.message, '7');
    // A "resizable" stdout makes client-node send {"height":..,"width":..} on channel 4.
    const term = Object.assign(new PassThrough(), { rows: 33, columns: 101 });
    const c = await run(
      [
        'sh',
        '-c',
        'for i in $(seq 30); do s=$(stty size); [ "$s" = "33 101" ] && break; sleep 0.1; done; echo $s',
      ],
      null,
      true,
      term,
    );
    assert.match(c.out, /33 101/);
  });

  test('lifecycle: init containers, claim binding and image pull failure', { skip: NEEDS_ROOT }, async () => {
    await core.createNamespacedPersistentVolumeClaim({
      namespace: 'default',
      body: {
        metadata: { name: 'ws' },
        spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
      },
    });
    await core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: { name: 'agent' },
        spec: {
          initContainers: [
            {
              name: 'prep',
              image: 'alpine',
              command: ['sh', '-c', `echo prepared > ${dir}/ws/state`],
              volumeMounts: [{ name: 'ws', mountPath: `${dir}/ws` }],
            },
          ],
          containers: [
            {
              name: 'main',
              image: 'alpine',
              command: ['sleep', '300'],
              volumeMounts: [{ name: 'ws', mountPath: `${dir}/ws` }],
            },
          ],
          volumes: [{ name: 'ws', persistentVolumeClaim: { claimName: 'ws' } }],
        },
      },
    });
    const p = await waitPod('agent', (x) => x.status?.phase === 'Running', 'Running');
    assert.equal(p.status?.initContainerStatuses?.[0]?.state?.terminated?.reason, 'Completed');
    const claim = await core.readNamespacedPersistentVolumeClaim({ name: 'ws', namespace: 'default' });
    assert.equal(claim.status?.phase, 'Bound');
    assert.equal(claim.metadata?.annotations?.['volume.kubernetes.io/selected-node'], 'emulator-node');
    assert.equal((await kubectl(['exec', 'agent', '--', 'cat', `${dir}/ws/state`])).stdout, 'prepared\n');
    const get = await kubectl(['get', 'pod', 'agent']);
    assert.match(get.stdout, /agent\s+1\/1\s+Running\s+0/);

    await core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: { name: 'bad-image' },
        spec: { containers: [{ name: 'main', image: 'registry.example/does-not-exist:1' }] },
      },
    });
    const bad = await waitPod(
      'bad-image',
      (x) => x.status?.containerStatuses?.[0]?.state?.waiting?.reason === 'ImagePullBackOff',
      'ImagePullBackOff',
    );
    assert.equal(bad.status?.phase, 'Pending');
    const logs = await kubectl(['logs', 'bad-image']);
    assert.match(logs.stderr, /is waiting to start/);
    const del = await kubectl(['delete', 'pod', 'agent', '--grace-period=1']);
    assert.equal(del.code, 0, del.stderr);
  });

  test('1 GB each way through kubectl exec with bounded memory', async (t) => {
    const size = 1024 * MB;
    const start0 = process.memoryUsage.rss();
    let peak = start0;
    const timer = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage.rss());
    }, 20);
    let began = Date.now();
    const up = await kubectl([], { shell: `head -c ${size} /dev/zero | kubectl exec -i web -- wc -c` });
    const upSecs = (Date.now() - began) / 1000;
    began = Date.now();
    const down = await kubectl([], { shell: `kubectl exec web -- head -c ${size} /dev/zero | wc -c` });
    const downSecs = (Date.now() - began) / 1000;
    clearInterval(timer);
    assert.equal(up.stdout.trim(), String(size), up.stderr);
    assert.equal(down.stdout.trim(), String(size), down.stderr);
    const grew = peak - start0;
    t.diagnostic(
      `kubectl exec upload ${(size / MB / upSecs).toFixed(0)} MB/s, download ${(size / MB / downSecs).toFixed(0)} MB/s (TLS, incl. kubectl start), emulator RSS grew ${(grew / MB).toFixed(0)} MB`,
    );
    assert.ok(grew < 200 * MB, `RSS grew ${grew / MB} MB`);
  });
});
