// @peculiar/x509 2.x resolves its services through tsyringe, which needs the Reflect metadata polyfill first.
import 'reflect-metadata';
import { createPrivateKey, randomBytes, webcrypto } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { chmod, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { ClauderonError } from '@clauderon/protocol';
import * as x509 from '@peculiar/x509';

/** The proxy's certificate authority: its certificate goes into pods, its key never leaves the machine. */
export interface Ca {
  /** The CA certificate (PEM), the trust root pods get. */
  readonly certPem: string;
  /** A leaf certificate and key (PEM) for `host` (DNS name or IP), signed by this CA; cached in memory. */
  leafFor(host: string): Promise<{ certPem: string; keyPem: string }>;
}

/** File name of the CA bundle (system roots + our CA) in the session's CA ConfigMap. */
export const CA_BUNDLE_FILE = 'ca-bundle.crt';

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const HOUR = 3600_000;
const DAY = 24 * HOUR;
/** Leaf certificates are short-lived; one is re-minted when less than a day of validity is left. */
const LEAF_VALIDITY = 3 * DAY;
const CA_VALIDITY = 10 * 365 * DAY;

let providerSet = false;
function crypto(): webcrypto.SubtleCrypto {
  if (!providerSet) {
    x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
    providerSet = true;
  }
  return webcrypto.subtle;
}

function toPem(label: string, der: ArrayBuffer): string {
  const lines =
    Buffer.from(der)
      .toString('base64')
      .match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** A positive serial number (high bit clear) of 16 random bytes, hex. */
function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x01;
  return b.toString('hex');
}

async function generateKeys(): Promise<webcrypto.CryptoKeyPair> {
  return (await crypto().generateKey(ALG, true, ['sign', 'verify'])) as unknown as webcrypto.CryptoKeyPair;
}

/** An in-memory CA over an existing key and certificate. */
function caFrom(cert: x509.X509Certificate, pem: string, key: webcrypto.CryptoKey): Ca {
  const certPem = pem.endsWith('\n') ? pem : `${pem}\n`;
  const cache = new Map<string, Promise<{ certPem: string; keyPem: string; notAfter: number }>>();
  const mint = async (host: string) => {
    const subtle = crypto();
    const keys = await generateKeys();
    const now = Date.now();
    const notAfter = new Date(Math.min(now + LEAF_VALIDITY, cert.notAfter.getTime()));
    const san = isIP(host) ? { type: 'ip' as const, value: host } : { type: 'dns' as const, value: host };
    const leaf = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: new x509.Name([{ CN: [host.length <= 64 ? host : 'clauderon-leaf'] }]),
      issuer: cert.subjectName,
      notBefore: new Date(now - HOUR),
      notAfter,
      signingAlgorithm: ALG,
      publicKey: keys.publicKey,
      signingKey: key,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
        new x509.SubjectAlternativeNameExtension([san], false),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
        await x509.AuthorityKeyIdentifierExtension.create(cert, false),
      ],
    });
    const keyPem = toPem('PRIVATE KEY', await subtle.exportKey('pkcs8', keys.privateKey));
    return { certPem: leaf.toString('pem'), keyPem, notAfter: notAfter.getTime() };
  };
  return {
    certPem,
    async leafFor(host: string) {
      const name = host.toLowerCase();
      let entry = cache.get(name);
      if (entry) {
        const got = await entry.catch(() => undefined);
        if (!got || got.notAfter - Date.now() < DAY) entry = undefined;
      }
      if (!entry) {
        entry = mint(name);
        cache.set(name, entry);
        entry.catch(() => cache.delete(name));
      }
      const { certPem: leafPem, keyPem } = await entry;
      return { certPem: leafPem, keyPem };
    },
  };
}

/** Creates a new CA in memory (used by loadOrCreateCa; handy for tests). Returns its key PEM too. */
export async function createCa(commonName = 'clauderon proxy CA'): Promise<Ca & { keyPem: string }> {
  const subtle = crypto();
  const keys = await generateKeys();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: new x509.Name([{ CN: [commonName] }, { O: ['clauderon'] }]),
    notBefore: new Date(now - HOUR),
    notAfter: new Date(now + CA_VALIDITY),
    signingAlgorithm: ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const keyPem = toPem('PRIVATE KEY', await subtle.exportKey('pkcs8', keys.privateKey));
  return { ...caFrom(cert, cert.toString('pem'), keys.privateKey), keyPem };
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/**
 * Loads the proxy CA from `${home}/proxy/` (ca.key mode 0600, ca.crt), creating it on first use. The same home
 * keeps the same CA across daemon restarts, so running pods keep trusting it.
 */
export async function loadOrCreateCa(home: string): Promise<Ca> {
  const dir = join(home, 'proxy');
  const keyPath = join(dir, 'ca.key');
  const certPath = join(dir, 'ca.crt');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const [haveKey, haveCert] = await Promise.all([exists(keyPath), exists(certPath)]);
  if (haveKey !== haveCert) {
    throw new ClauderonError(
      'PROXY',
      `The proxy CA in ${dir} is incomplete: ${haveKey ? 'ca.crt' : 'ca.key'} is missing.`,
      {
        hint: `Remove ${dir}/ca.key and ${dir}/ca.crt to create a new CA (running sessions must then be recreated).`,
      },
    );
  }
  if (!haveKey) {
    const created = await createCa(`clauderon proxy CA ${randomBytes(4).toString('hex')}`);
    // Written under temporary names and renamed, so a crash never leaves a key without its certificate.
    const tmp = randomBytes(4).toString('hex');
    await writeFile(`${keyPath}.${tmp}`, created.keyPem, { mode: 0o600, flag: 'wx' });
    await writeFile(`${certPath}.${tmp}`, created.certPem, { mode: 0o644, flag: 'wx' });
    await rename(`${certPath}.${tmp}`, certPath);
    await rename(`${keyPath}.${tmp}`, keyPath);
    return { certPem: created.certPem, leafFor: created.leafFor };
  }
  const st = await stat(keyPath);
  if ((st.mode & 0o077) !== 0) {
    throw new ClauderonError(
      'PROXY',
      `The proxy CA key ${keyPath} has mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}; it must be readable by its owner only.`,
      { hint: `Run: chmod 600 ${keyPath}` },
    );
  }
  const [keyPem, certPem] = await Promise.all([readFile(keyPath, 'utf8'), readFile(certPath, 'utf8')]);
  try {
    const cert = new x509.X509Certificate(certPem);
    const der = createPrivateKey(keyPem).export({ format: 'der', type: 'pkcs8' });
    const key = (await crypto().importKey('pkcs8', der, ALG, false, [
      'sign',
    ])) as unknown as webcrypto.CryptoKey;
    if (cert.notAfter.getTime() < Date.now()) {
      throw new Error(`the CA certificate expired on ${cert.notAfter.toISOString()}`);
    }
    return caFrom(cert, certPem, key);
  } catch (e) {
    throw new ClauderonError('PROXY', `Cannot load the proxy CA from ${dir}: ${(e as Error).message}`, {
      hint: `Remove ${dir}/ca.key and ${dir}/ca.crt to create a new CA (running sessions must then be recreated).`,
      cause: e,
    });
  }
}

/**
 * The CA bundle pods get: the system roots (when readable at `systemBundlePath`) followed by our CA. Tools that
 * take SSL_CERT_FILE replace their system bundle with it, so it must contain both.
 */
export function caBundlePem(
  ca: Pick<Ca, 'certPem'>,
  systemBundlePath = '/etc/ssl/certs/ca-certificates.crt',
): string {
  let system = '';
  try {
    system = readFileSync(systemBundlePath, 'utf8');
  } catch {
    // No system bundle on this machine: the bundle is our CA alone.
  }
  if (system && !system.endsWith('\n')) system += '\n';
  return `${system}${ca.certPem.endsWith('\n') ? ca.certPem : `${ca.certPem}\n`}`;
}
