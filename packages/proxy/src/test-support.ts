// Helpers for this package's tests only (not exported from index.ts).
// @peculiar/x509 2.x resolves its services through tsyringe, which needs the Reflect metadata polyfill first.
import 'reflect-metadata';
import { randomBytes, webcrypto } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import * as x509 from '@peculiar/x509';

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

function pem(label: string, der: ArrayBuffer): string {
  const lines =
    Buffer.from(der)
      .toString('base64')
      .match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** A throwaway upstream CA and one server certificate for `names`, made directly with @peculiar/x509. */
export async function makeUpstreamTls(
  names: string[],
): Promise<{ caPem: string; certPem: string; keyPem: string }> {
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  const subtle = webcrypto.subtle;
  const gen = async () =>
    (await subtle.generateKey(ALG, true, ['sign', 'verify'])) as unknown as webcrypto.CryptoKeyPair;
  const caKeys = await gen();
  const now = Date.now();
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: `01${randomBytes(8).toString('hex')}`,
    name: 'CN=upstream test CA',
    notBefore: new Date(now - 3600_000),
    notAfter: new Date(now + 86400_000),
    signingAlgorithm: ALG,
    keys: caKeys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  const keys = await gen();
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: `02${randomBytes(8).toString('hex')}`,
    subject: 'CN=upstream',
    issuer: ca.subject,
    notBefore: new Date(now - 3600_000),
    notAfter: new Date(now + 86400_000),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: caKeys.privateKey,
    extensions: [
      new x509.SubjectAlternativeNameExtension(names.map((value) => ({ type: 'dns' as const, value }))),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      await x509.AuthorityKeyIdentifierExtension.create(ca),
    ],
  });
  return {
    caPem: ca.toString('pem'),
    certPem: leaf.toString('pem'),
    keyPem: pem('PRIVATE KEY', await subtle.exportKey('pkcs8', keys.privateKey)),
  };
}

/** Opens a CONNECT tunnel through the proxy; resolves with the status and (on 200) the raw socket. */
export function connectVia(
  proxyPort: number,
  authority: string,
  auth?: string,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; socket: import('node:net').Socket }> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port: proxyPort,
      method: 'CONNECT',
      path: authority,
      headers: auth ? { 'proxy-authorization': `Basic ${Buffer.from(auth).toString('base64')}` } : {},
    });
    req.on('connect', (res, socket) =>
      resolve({ status: res.statusCode ?? 0, headers: res.headers, socket }),
    );
    req.on('error', reject);
    req.end();
  });
}

/** A TLS connection to `host` through the proxy, verified against `ca`. */
export async function tlsVia(
  proxyPort: number,
  host: string,
  auth: string,
  ca: string[] | undefined,
): Promise<tls.TLSSocket> {
  const { status, socket } = await connectVia(proxyPort, `${host}:443`, auth);
  if (status !== 200) {
    socket.destroy();
    throw new Error(`CONNECT answered ${status}`);
  }
  return new Promise((resolve, reject) => {
    const t = tls.connect({ socket, servername: host, ...(ca ? { ca } : {}) });
    t.once('secureConnect', () => resolve(t));
    t.once('error', reject);
  });
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One HTTPS request to `host` through the proxy. */
export async function requestVia(
  proxyPort: number,
  auth: string,
  ca: string[] | undefined,
  o: { host: string; path: string; method?: string; headers?: Record<string, string>; body?: string },
): Promise<Reply> {
  const socket = await tlsVia(proxyPort, o.host, auth, ca);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: o.host,
        path: o.path,
        method: o.method ?? 'GET',
        headers: { connection: 'close', ...o.headers },
        createConnection: () => socket,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(o.body);
  });
}

export function listen(server: http.Server | import('node:https').Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)),
  );
}

export function closeServer(server: http.Server | import('node:https').Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** A promise with its resolve function, for gates in upstream handlers. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => {
    open = r;
  });
  return { promise, open };
}
