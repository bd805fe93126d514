import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { KObject, Kubelet, LogRequest, Resource, StreamRequest } from './contract.js';
import { badRequest, forbidden, internalError, notFound, StatusError } from './errors.js';
import {
  type DenyRule,
  denied,
  type FailNextSpec,
  type Faults,
  type RequestRecord,
  type Verb,
} from './faults.js';
import { decodeProtobuf } from './protobuf.js';
import {
  API_GROUPS,
  apiGroupList,
  apiResourceList,
  apiVersionOf,
  BY_RESOURCE,
  type ResourceInfo,
} from './resources.js';
import { parseFieldSelector, parseLabelSelector } from './selectors.js';
import type { DeleteOptions, HistoryEvent, ObjectStore } from './store.js';
import { type IncludeObject, toTable } from './tables.js';

export interface ServerDeps {
  store: ObjectStore;
  faults: Faults;
  kubelet: () => Kubelet | undefined;
  token: string;
  serverAddress: () => string;
  bookmarkIntervalMs: number;
  deny: DenyRule[];
  log: (m: string) => void;
}

/** A parsed API path. */
interface Route {
  ri: ResourceInfo;
  namespace?: string;
  name?: string;
  subresource?: string;
}

const MAX_BODY = 3 * 1024 * 1024;

function sendJson(res: ServerResponse, code: number, body: unknown): void {
  if (res.headersSent || res.destroyed) {
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(code, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-cache, private',
  });
  res.end(text);
}

function sendStatus(res: ServerResponse, err: StatusError): void {
  sendJson(res, err.code, err.toStatus());
}

/** Writes a Status answer directly on a socket that has not been upgraded. */
function rawStatus(socket: Duplex, err: StatusError): void {
  const body = JSON.stringify(err.toStatus());
  const reason = {
    400: 'Bad Request',
    401: 'Unauthorized',
    403: 'Forbidden',
    404: 'Not Found',
    500: 'Internal Server Error',
  }[err.code];
  socket.end(
    `HTTP/1.1 ${err.code} ${reason ?? 'Error'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

const unauthorized = (): StatusError => new StatusError(401, 'Unauthorized', 'Unauthorized');

function parseBool(v: string | null): boolean {
  if (v === null) return false;
  const s = v.toLowerCase();
  return s === 'true' || s === '1' || s === 't' || s === 'yes';
}

function optInt(q: URLSearchParams, name: string): number | undefined {
  const v = q.get(name);
  if (v === null || v === '') return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw badRequest(`invalid ${name}: ${v}`);
  return Math.trunc(n);
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_BODY)
      throw new StatusError(413, 'RequestEntityTooLarge', 'Request entity too large: limit is 3145728');
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

function mediaType(req: IncomingMessage): string {
  return String(req.headers['content-type'] ?? '')
    .split(';')[0]!
    .trim()
    .toLowerCase();
}

async function readJson(req: IncomingMessage, allowEmpty = false, protobufKind?: string): Promise<unknown> {
  const type = mediaType(req);
  const buf = await readBody(req);
  if (buf.length === 0) {
    if (allowEmpty) return undefined;
    throw badRequest('the body of the request was empty');
  }
  if (type === 'application/vnd.kubernetes.protobuf' && protobufKind)
    return decodeProtobuf(buf, protobufKind);
  if (type.includes('protobuf') || type.includes('cbor') || type.includes('yaml')) {
    throw new StatusError(
      415,
      'UnsupportedMediaType',
      `the body of the request was in an unknown format - accepted media types include: application/json, application/merge-patch+json, application/strategic-merge-patch+json, application/json-patch+json`,
    );
  }
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch (err) {
    throw badRequest(`the object provided is unrecognized: ${(err as Error).message}`);
  }
}

function acceptTable(req: IncomingMessage): boolean {
  return /as=Table/.test(String(req.headers.accept ?? ''));
}

/** Parses `/api/v1/...` and `/apis/<group>/<version>/...` into a resource route. */
function parseRoute(parts: string[]): Route | undefined {
  let group = '';
  let rest: string[];
  if (parts[0] === 'api' && parts[1] === 'v1') rest = parts.slice(2);
  else if (parts[0] === 'apis' && parts.length >= 3 && parts[2] === 'v1') {
    group = parts[1]!;
    rest = parts.slice(3);
  } else return undefined;
  const lookup = (name: string | undefined): ResourceInfo | undefined => {
    const ri = name ? BY_RESOURCE.get(name as Resource) : undefined;
    return ri && ri.group === group ? ri : undefined;
  };
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    const ri = lookup(rest[2]);
    if (ri?.namespaced) {
      if (rest.length > 5) return undefined;
      return { ri, namespace: rest[1], name: rest[3], subresource: rest[4] };
    }
    if (group === '' && rest.length === 3) {
      return { ri: lookup('namespaces')!, name: rest[1], subresource: rest[2] };
    }
    return undefined;
  }
  const ri = lookup(rest[0]);
  if (!ri || rest.length > 3) return undefined;
  if (ri.namespaced && rest.length > 1) return undefined;
  return { ri, name: rest[1], subresource: rest[2] };
}

function listKind(ri: ResourceInfo): string {
  return `${ri.kind}List`;
}

function withKind(ri: ResourceInfo, o: KObject): KObject {
  return { ...o, apiVersion: apiVersionOf(ri), kind: ri.kind };
}

/** The emulator's HTTP front end: discovery, REST, watch, exec/log routing and the admin API. */
export class ApiServer {
  private readonly watches = new Set<() => void>();
  private readonly held = new Set<IncomingMessage>();

  constructor(private readonly d: ServerDeps) {}

  /** Ends every open watch stream cleanly; returns how many there were. */
  endWatches(): number {
    const n = this.watches.size;
    for (const end of [...this.watches]) end();
    return n;
  }

  /** Closes watches and requests held by timeout faults (shutdown). */
  closeAll(): void {
    this.endWatches();
    for (const r of this.held) r.socket.destroy();
    this.held.clear();
  }

  private authorized(req: IncomingMessage): boolean {
    const h = String(req.headers.authorization ?? '');
    return h === `Bearer ${this.d.token}`;
  }

  private checkDeny(verb: string, resource: string, namespace: string | undefined): void {
    const rule = denied([...this.d.deny, ...this.d.faults.denyRules], verb, resource, namespace);
    if (!rule) return;
    const ri = BY_RESOURCE.get(resource.split('/')[0] as Resource);
    const where = namespace ? ` in the namespace "${namespace}"` : ' at the cluster scope';
    throw forbidden(
      `${resource} is forbidden: User "kube-emulator" cannot ${verb} resource "${resource}" in API group "${ri?.group ?? ''}"${where}`,
      { kind: resource },
    );
  }

  /** Applies logging, latency and armed faults. Returns false when the request must not be handled. */
  private async intercept(
    req: IncomingMessage,
    res: ServerResponse | undefined,
    socket: Duplex,
    r: RequestRecord,
  ): Promise<boolean> {
    const { latencyMs, action } = this.d.faults.intercept(r);
    if (latencyMs > 0) await new Promise((ok) => setTimeout(ok, latencyMs));
    if (!action) return true;
    if ('reset' in action) {
      socket.destroy();
      return false;
    }
    if ('timeout' in action) {
      this.held.add(req);
      socket.once('close', () => this.held.delete(req));
      return false;
    }
    const reasons: Record<number, string> = {
      400: 'BadRequest',
      401: 'Unauthorized',
      403: 'Forbidden',
      404: 'NotFound',
      409: 'Conflict',
      410: 'Expired',
      422: 'Invalid',
      429: 'TooManyRequests',
      500: 'InternalError',
      503: 'ServiceUnavailable',
      504: 'Timeout',
    };
    const err = new StatusError(
      action.status,
      action.reason ?? reasons[action.status] ?? 'Unknown',
      action.message ?? `injected fault (${action.status})`,
    );
    if (res) sendStatus(res, err);
    else rawStatus(socket, err);
    return false;
  }

  // ------------------------------------------------------------------ request entry point

  handle = (req: IncomingMessage, res: ServerResponse): void => {
    this.handleAsync(req, res).catch((err: unknown) => {
      const se = err instanceof StatusError ? err : internalError(err);
      if (!(err instanceof StatusError))
        this.d.log(`kube-emulator: ${err instanceof Error ? err.stack : String(err)}`);
      sendStatus(res, se);
    });
  };

  private async handleAsync(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://emulator.invalid');
    const path = url.pathname.replace(/\/+$/, '') || '/';
    const method = req.method ?? 'GET';
    // Like a real cluster, health and version are readable without credentials.
    if (method === 'GET') {
      if (path === '/healthz' || path === '/readyz' || path === '/livez') {
        res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
        res.end('ok');
        return;
      }
      if (path === '/version') return sendJson(res, 200, VERSION);
    }
    if (!this.authorized(req)) return sendStatus(res, unauthorized());
    if (path.startsWith('/emulator/') || path === '/emulator') return this.admin(req, res, path, method);
    if (method === 'GET') {
      if (path === '/api') {
        return sendJson(res, 200, {
          kind: 'APIVersions',
          versions: ['v1'],
          serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: this.d.serverAddress() }],
        });
      }
      if (path === '/apis') return sendJson(res, 200, apiGroupList());
      if (path === '/api/v1') return sendJson(res, 200, apiResourceList('', 'v1'));
      const gm = /^\/apis\/([^/]+)\/v1$/.exec(path);
      if (gm && API_GROUPS.includes(gm[1]!)) return sendJson(res, 200, apiResourceList(gm[1]!, 'v1'));
      const gv = /^\/apis\/([^/]+)$/.exec(path);
      if (gv && API_GROUPS.includes(gv[1]!)) {
        const g = gv[1]!;
        return sendJson(res, 200, {
          kind: 'APIGroup',
          apiVersion: 'v1',
          name: g,
          versions: [{ groupVersion: `${g}/v1`, version: 'v1' }],
          preferredVersion: { groupVersion: `${g}/v1`, version: 'v1' },
        });
      }
    }
    if (path === '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews') {
      if (method !== 'POST') throw methodNotAllowed();
      const r: RequestRecord = { verb: 'create', resource: 'selfsubjectaccessreviews', watch: false };
      if (!(await this.intercept(req, res, req.socket, r))) return;
      return this.ssar(req, res);
    }
    let parts = path.split('/').filter(Boolean).map(decodeURIComponent);
    // Deprecated watch paths: /api/v1/watch/... and /apis/<group>/v1/watch/...
    const watchAt = parts[0] === 'api' ? 2 : 3;
    if (method === 'GET' && parts[watchAt] === 'watch') {
      parts = [...parts.slice(0, watchAt), ...parts.slice(watchAt + 1)];
      url.searchParams.set('watch', 'true');
    }
    const route = parseRoute(parts);
    if (!route)
      throw new StatusError(404, 'NotFound', 'the server could not find the requested resource', {});
    return this.resource(req, res, route, url.searchParams, method);
  }

  // ------------------------------------------------------------------ resources

  private async resource(
    req: IncomingMessage,
    res: ServerResponse,
    route: Route,
    q: URLSearchParams,
    method: string,
  ): Promise<void> {
    const { ri, namespace, name, subresource } = route;
    const store = this.d.store;
    const isWatch = method === 'GET' && parseBool(q.get('watch'));
    let verb: Verb;
    if (method === 'GET') verb = isWatch ? 'watch' : name ? 'get' : 'list';
    else if (method === 'POST') verb = subresource === 'exec' || subresource === 'attach' ? 'exec' : 'create';
    else if (method === 'PUT') verb = 'update';
    else if (method === 'PATCH') verb = 'patch';
    else if (method === 'DELETE') verb = name ? 'delete' : 'deletecollection';
    else throw methodNotAllowed();
    const rec: RequestRecord = { verb, resource: ri.resource, watch: isWatch };
    if (subresource) rec.subresource = subresource;
    if (namespace) rec.namespace = namespace;
    if (name) rec.name = name;
    if (!(await this.intercept(req, res, req.socket, rec))) return;
    const rbacVerb = verb === 'exec' ? 'create' : verb;
    this.checkDeny(rbacVerb, subresource ? `${ri.resource}/${subresource}` : ri.resource, namespace);
    this.checkDeny(rbacVerb, ri.resource, namespace);

    if (subresource && subresource !== 'status') {
      if (ri.resource === 'pods' && (subresource === 'exec' || subresource === 'attach')) {
        throw badRequest('Upgrade request required');
      }
      if (ri.resource === 'pods' && subresource === 'log' && method === 'GET')
        return this.podLog(req, res, namespace!, name!, q);
      if (ri.resource === 'namespaces' && subresource === 'finalize' && method === 'PUT') {
        const body = (await readJson(req)) as KObject;
        const out = store.update('namespaces', undefined, name!, (o) => {
          o.spec = {
            ...(o.spec as object),
            finalizers: (body.spec as Record<string, unknown> | undefined)?.finalizers ?? [],
          };
          return o;
        });
        if (!out) throw notFound('namespaces', name!);
        return sendJson(res, 200, withKind(ri, out));
      }
      throw new StatusError(404, 'NotFound', 'the server could not find the requested resource', {});
    }
    if (subresource === 'status' && !ri.hasStatus)
      throw new StatusError(404, 'NotFound', 'the server could not find the requested resource', {});
    if (ri.namespaced && !namespace && method !== 'GET') throw methodNotAllowed();
    const dryRun = q.getAll('dryRun').includes('All');

    switch (method) {
      case 'GET': {
        if (isWatch) return this.watch(req, res, route, q);
        if (name) {
          const o = store.get(ri.resource, namespace, name);
          if (!o) throw notFound(ri.resource, name);
          if (acceptTable(req))
            return sendJson(res, 200, toTable(ri.resource, [o], { include: includeObject(q) }));
          return sendJson(res, 200, withKind(ri, o));
        }
        return this.list(req, res, route, q);
      }
      case 'POST': {
        if (name) throw methodNotAllowed();
        const body = await readJson(req, false, ri.kind);
        const created = store.create(ri.resource, namespace, body, { dryRun });
        return sendJson(res, 201, withKind(ri, created));
      }
      case 'PUT': {
        if (!name) throw methodNotAllowed();
        const body = await readJson(req);
        const out = store.replace(ri.resource, namespace, name, body, { subresource, dryRun });
        return sendJson(res, 200, withKind(ri, out));
      }
      case 'PATCH': {
        if (!name) throw methodNotAllowed();
        const type = mediaType(req);
        if (type.includes('protobuf')) {
          throw new StatusError(
            415,
            'UnsupportedMediaType',
            `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json`,
          );
        }
        const buf = await readBody(req);
        let patch: unknown;
        try {
          patch = JSON.parse(buf.toString('utf8'));
        } catch (err) {
          if (type === 'application/apply-patch+yaml') {
            throw new StatusError(
              415,
              'UnsupportedMediaType',
              'kube-emulator understands only the JSON form of apply-patch+yaml bodies',
            );
          }
          throw badRequest(`error decoding patch: ${(err as Error).message}`);
        }
        if (type === 'application/apply-patch+yaml') {
          // Server-side apply, approximated: create when missing, else a strategic merge of the applied
          // configuration (no field ownership). Only the JSON subset of YAML is understood.
          if (!q.get('fieldManager')) {
            throw new StatusError(
              422,
              'Invalid',
              'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch',
              {
                kind: 'PatchOptions',
                causes: [
                  {
                    reason: 'FieldValueRequired',
                    message: 'Required value: is required for apply patch',
                    field: 'fieldManager',
                  },
                ],
              },
            );
          }
          if (typeof patch !== 'object' || patch === null || Array.isArray(patch))
            throw badRequest('error decoding YAML: not an object');
          if (!subresource && !store.get(ri.resource, namespace, name)) {
            const body = patch as KObject;
            body.metadata = { ...(body.metadata ?? {}), name } as KObject['metadata'];
            return sendJson(res, 201, withKind(ri, store.create(ri.resource, namespace, body, { dryRun })));
          }
          const out = store.patch(
            ri.resource,
            namespace,
            name,
            'application/strategic-merge-patch+json',
            patch,
            { subresource, dryRun },
          );
          return sendJson(res, 200, withKind(ri, out));
        }
        const out = store.patch(ri.resource, namespace, name, type, patch, { subresource, dryRun });
        return sendJson(res, 200, withKind(ri, out));
      }
      case 'DELETE': {
        const body = (await readJson(req, true)) as Record<string, unknown> | undefined;
        const opts: DeleteOptions = { dryRun };
        const grace = optInt(q, 'gracePeriodSeconds') ?? (body?.gracePeriodSeconds as number | undefined);
        if (grace !== undefined && grace !== null) opts.gracePeriodSeconds = Number(grace);
        let policy = (q.get('propagationPolicy') ?? body?.propagationPolicy) as
          | DeleteOptions['propagationPolicy']
          | undefined;
        const orphan = q.get('orphanDependents') ?? body?.orphanDependents;
        if (!policy && orphan !== undefined && orphan !== null)
          policy = parseBool(String(orphan)) ? 'Orphan' : 'Background';
        if (policy && !['Background', 'Foreground', 'Orphan'].includes(policy))
          throw new StatusError(
            422,
            'Invalid',
            `DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: "${policy}": supported values: "Foreground", "Background", "Orphan", "nil"`,
          );
        if (policy) opts.propagationPolicy = policy;
        if (body?.preconditions) opts.preconditions = body.preconditions as DeleteOptions['preconditions'];
        if (!name) {
          const items = this.filtered(ri, namespace, q);
          const deleted: KObject[] = [];
          for (const o of items) {
            try {
              deleted.push(
                withKind(ri, store.delete(ri.resource, o.metadata.namespace, o.metadata.name, opts).object),
              );
            } catch (err) {
              if (!(err instanceof StatusError && err.code === 404)) throw err;
            }
          }
          return sendJson(res, 200, {
            kind: listKind(ri),
            apiVersion: apiVersionOf(ri),
            metadata: { resourceVersion: String(store.resourceVersion) },
            items: deleted,
          });
        }
        const { object } = store.delete(ri.resource, namespace, name, opts);
        if (ri.deleteReturnsObject) return sendJson(res, 200, withKind(ri, object));
        return sendJson(res, 200, {
          kind: 'Status',
          apiVersion: 'v1',
          metadata: {},
          status: 'Success',
          details: { name, kind: ri.resource, uid: object.metadata.uid },
        });
      }
    }
  }

  private filtered(ri: ResourceInfo, namespace: string | undefined, q: URLSearchParams): KObject[] {
    const label = parseLabelSelector(q.get('labelSelector'));
    const field = parseFieldSelector(ri.resource, q.get('fieldSelector'));
    return this.d.store.list(ri.resource, namespace).filter((o) => label(o.metadata.labels) && field(o));
  }

  private list(req: IncomingMessage, res: ServerResponse, route: Route, q: URLSearchParams): void {
    const { ri, namespace } = route;
    let items = this.filtered(ri, namespace, q);
    const rv = String(this.d.store.resourceVersion);
    const limit = optInt(q, 'limit');
    let start = 0;
    const cont = q.get('continue');
    if (cont) {
      try {
        const c = JSON.parse(Buffer.from(cont, 'base64url').toString('utf8')) as { start: number };
        start = c.start;
      } catch {
        throw badRequest(`continue key is not valid: ${cont}`);
      }
    }
    const meta: Record<string, unknown> = { resourceVersion: rv };
    let continueToken: string | undefined;
    if (start > 0 || (limit !== undefined && limit > 0)) {
      const end = limit && limit > 0 ? start + limit : items.length;
      if (end < items.length) {
        continueToken = Buffer.from(JSON.stringify({ start: end })).toString('base64url');
        meta.continue = continueToken;
        meta.remainingItemCount = items.length - end;
      }
      items = items.slice(start, end);
    }
    if (acceptTable(req)) {
      sendJson(
        res,
        200,
        toTable(ri.resource, items, {
          resourceVersion: rv,
          include: includeObject(q),
          ...(continueToken ? { continueToken } : {}),
        }),
      );
      return;
    }
    sendJson(res, 200, {
      kind: listKind(ri),
      apiVersion: apiVersionOf(ri),
      metadata: meta,
      items: items.map((o) => withKind(ri, o)),
    });
  }

  // ------------------------------------------------------------------ watch

  private watch(req: IncomingMessage, res: ServerResponse, route: Route, q: URLSearchParams): void {
    const { ri, namespace } = route;
    const store = this.d.store;
    const label = parseLabelSelector(q.get('labelSelector'));
    const field = parseFieldSelector(ri.resource, q.get('fieldSelector'));
    const name = q.get('fieldSelector') ? undefined : route.name;
    const match = (o: KObject): boolean =>
      (!namespace || !ri.namespaced || o.metadata.namespace === namespace) &&
      (!name || o.metadata.name === name) &&
      label(o.metadata.labels) &&
      field(o);
    const rvParam = q.get('resourceVersion') ?? '';
    let from: number | undefined;
    if (rvParam !== '' && rvParam !== '0') {
      from = Number(rvParam);
      if (!Number.isInteger(from) || from < 0) throw badRequest(`invalid resource version: ${rvParam}`);
    }
    const table = acceptTable(req);
    const include = includeObject(q);
    const bookmarks = parseBool(q.get('allowWatchBookmarks')) && !table;
    const sendInitial = q.get('sendInitialEvents') === 'true';
    const timeoutSeconds = optInt(q, 'timeoutSeconds');

    res.writeHead(200, {
      'Content-Type': 'application/json',
      'Cache-Control': 'no-cache, private',
      'Transfer-Encoding': 'chunked',
    });
    res.flushHeaders();
    let first = true;
    let lastRv = store.resourceVersion;
    const write = (type: string, obj: unknown): void => {
      if (res.writableEnded || res.destroyed) return;
      res.write(`${JSON.stringify({ type, object: obj })}\n`);
    };
    const emit = (type: 'ADDED' | 'MODIFIED' | 'DELETED', o: KObject): void => {
      if (table) {
        write(
          type,
          toTable(ri.resource, [o], {
            include,
            withColumns: first,
            resourceVersion: o.metadata.resourceVersion ?? '',
          }),
        );
        first = false;
      } else write(type, withKind(ri, o));
    };
    const bookmark = (initialEnd = false): void => {
      const metadata: Record<string, unknown> = {
        resourceVersion: String(Math.max(lastRv, store.resourceVersion)),
      };
      if (initialEnd) metadata.annotations = { 'k8s.io/initial-events-end': 'true' };
      write('BOOKMARK', { kind: ri.kind, apiVersion: apiVersionOf(ri), metadata });
    };

    let unsubscribe: () => void = () => {};
    let ended = false;
    const timers: NodeJS.Timeout[] = [];
    const end = (): void => {
      if (ended) return;
      ended = true;
      unsubscribe();
      for (const t of timers) clearTimeout(t);
      this.watches.delete(end);
      if (!res.writableEnded) res.end();
    };
    this.watches.add(end);
    req.on('close', end);
    res.on('close', end);

    const onEvent = (e: HistoryEvent): void => {
      if (e.resource !== ri.resource) return;
      lastRv = e.rv;
      const now = e.type !== 'DELETED' && match(e.object);
      const before = e.prev !== undefined && match(e.prev);
      if (e.type === 'ADDED') {
        if (now) emit('ADDED', e.object);
      } else if (e.type === 'DELETED') {
        if (match(e.object)) emit('DELETED', e.object);
      } else if (now && before) emit('MODIFIED', e.object);
      else if (now) emit('ADDED', e.object);
      else if (before) emit('DELETED', e.object);
    };

    if (from === undefined) {
      const snapshotRv = store.resourceVersion;
      if (rvParam === '' || sendInitial || rvParam === '0') {
        for (const o of store.list(ri.resource, namespace)) if (match(o)) emit('ADDED', o);
      }
      lastRv = snapshotRv;
      if (sendInitial && bookmarks) bookmark(true);
      from = snapshotRv;
    }
    try {
      unsubscribe = store.watchFrom(from, onEvent);
    } catch (err) {
      if (err instanceof StatusError) {
        write('ERROR', err.toStatus());
        end();
        return;
      }
      throw err;
    }
    if (bookmarks && this.d.bookmarkIntervalMs > 0) {
      const tick = (): void => {
        bookmark();
        timers[0] = setTimeout(tick, this.d.bookmarkIntervalMs);
      };
      timers[0] = setTimeout(tick, this.d.bookmarkIntervalMs);
    }
    if (timeoutSeconds !== undefined && timeoutSeconds > 0)
      timers.push(setTimeout(end, timeoutSeconds * 1000));
  }

  // ------------------------------------------------------------------ SelfSubjectAccessReview

  private async ssar(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = (await readJson(req, false, 'SelfSubjectAccessReview')) as KObject;
    const spec = (body.spec ?? {}) as Record<string, Record<string, string> | undefined>;
    const ra = spec.resourceAttributes;
    let status: Record<string, unknown> = { allowed: true };
    if (!ra && !spec.nonResourceAttributes) {
      throw new StatusError(
        422,
        'Invalid',
        'SelfSubjectAccessReview.authorization.k8s.io "" is invalid: spec.resourceAttributes: Invalid value: "null": exactly one of nonResourceAttributes or resourceAttributes must be specified',
        {
          kind: 'SelfSubjectAccessReview',
          causes: [
            {
              reason: 'FieldValueInvalid',
              field: 'spec.resourceAttributes',
              message: 'exactly one of nonResourceAttributes or resourceAttributes must be specified',
            },
          ],
        },
      );
    }
    if (ra) {
      const resource = ra.subresource ? `${ra.resource}/${ra.subresource}` : String(ra.resource ?? '');
      const rules = [...this.d.deny, ...this.d.faults.denyRules];
      const rule =
        denied(rules, String(ra.verb ?? ''), resource, ra.namespace) ??
        denied(rules, String(ra.verb ?? ''), String(ra.resource ?? ''), ra.namespace);
      if (rule) {
        status = {
          allowed: false,
          denied: true,
          reason: `kube-emulator: access to ${ra.verb} ${resource}${ra.namespace ? ` in namespace ${ra.namespace}` : ''} is denied`,
        };
      } else {
        status = { allowed: true, reason: 'kube-emulator allows everything not explicitly denied' };
      }
    }
    sendJson(res, 201, {
      kind: 'SelfSubjectAccessReview',
      apiVersion: 'authorization.k8s.io/v1',
      metadata: { creationTimestamp: null },
      spec: body.spec,
      status,
    });
  }

  // ------------------------------------------------------------------ pod exec / attach / log

  /** Shared container checks of the real server's streamLocation/LogLocation. */
  private pickContainer(
    pod: KObject,
    requested: string | null,
  ): { name: string; status?: Record<string, unknown> } {
    const spec = (pod.spec ?? {}) as Record<string, unknown>;
    const status = (pod.status ?? {}) as Record<string, unknown>;
    const containers = ((spec.containers ?? []) as Array<{ name: string }>).map((c) => c.name);
    const inits = ((spec.initContainers ?? []) as Array<{ name: string }>).map((c) => c.name);
    const ephemeral = ((spec.ephemeralContainers ?? []) as Array<{ name: string }>).map((c) => c.name);
    let name = requested ?? '';
    const podName = pod.metadata.name;
    if (!name) {
      if (containers.length === 1) name = containers[0]!;
      else {
        let msg = `a container name must be specified for pod ${podName}, choose one of: [${containers.join(' ')}]`;
        if (inits.length > 0) msg += ` or one of the init containers: [${inits.join(' ')}]`;
        if (ephemeral.length > 0) msg += ` or one of the ephemeral containers: [${ephemeral.join(' ')}]`;
        throw badRequest(msg);
      }
    }
    if (![...containers, ...inits, ...ephemeral].includes(name))
      throw badRequest(`container ${name} is not valid for pod ${podName}`);
    const all = [
      ...((status.containerStatuses ?? []) as Array<Record<string, unknown>>),
      ...((status.initContainerStatuses ?? []) as Array<Record<string, unknown>>),
      ...((status.ephemeralContainerStatuses ?? []) as Array<Record<string, unknown>>),
    ];
    const cs = all.find((c) => c.name === name);
    return cs ? { name, status: cs } : { name };
  }

  private streamParams(
    kind: 'exec' | 'attach',
    ns: string,
    podName: string,
    q: URLSearchParams,
  ): StreamRequest {
    const store = this.d.store;
    const pod = store.get('pods', ns, podName);
    if (!pod) throw notFound('pods', podName);
    const { name, status } = this.pickContainer(pod, q.get('container'));
    if (!(pod.spec as Record<string, unknown> | undefined)?.nodeName)
      throw badRequest(`pod ${podName} does not have a host assigned`);
    const p: StreamRequest = {
      namespace: ns,
      pod: podName,
      container: name,
      command: q.getAll('command'),
      stdin: parseBool(q.get('stdin')),
      stdout: parseBool(q.get('stdout')),
      stderr: parseBool(q.get('stderr')),
      tty: parseBool(q.get('tty')),
    };
    if (!p.stdin && !p.stdout && !p.stderr)
      throw badRequest('you must specify at least 1 of stdin, stdout, stderr');
    if (kind === 'exec' && p.command.length === 0)
      throw badRequest('you must specify at least one command for the container');
    const running = (status?.state as Record<string, unknown> | undefined)?.running;
    if (!running) throw badRequest(`container not found ("${name}")`);
    if (p.tty) p.stderr = false;
    return p;
  }

  /** Node `'upgrade'` listener: exec/attach over WebSocket (and the SPDY fallback, answered with errors). */
  handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    socket.on('error', () => {});
    this.upgradeAsync(req, socket, head).catch((err: unknown) => {
      const se = err instanceof StatusError ? err : internalError(err);
      if (!(err instanceof StatusError))
        this.d.log(`kube-emulator: ${err instanceof Error ? err.stack : String(err)}`);
      if (!socket.destroyed) rawStatus(socket, se);
    });
  };

  private async upgradeAsync(req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    if (!this.authorized(req)) throw unauthorized();
    const url = new URL(req.url ?? '/', 'https://emulator.invalid');
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    const route = parseRoute(parts);
    const sub = route?.subresource;
    if (route?.ri.resource !== 'pods' || !route.name || (sub !== 'exec' && sub !== 'attach')) {
      throw new StatusError(404, 'NotFound', 'the server could not find the requested resource', {});
    }
    const rec: RequestRecord = {
      verb: 'exec',
      resource: 'pods',
      subresource: sub,
      namespace: route.namespace!,
      name: route.name,
      watch: false,
    };
    if (!(await this.intercept(req, undefined, socket, rec))) return;
    this.checkDeny('create', `pods/${sub}`, route.namespace);
    const params = this.streamParams(sub, route.namespace!, route.name, url.searchParams);
    const upgrade = String(req.headers.upgrade ?? '').toLowerCase();
    if (upgrade !== 'websocket') {
      throw badRequest(
        'SPDY streaming is not supported by kube-emulator; use the WebSocket v5.channel.k8s.io protocol',
      );
    }
    const kubelet = this.d.kubelet();
    if (!kubelet) throw internalError('kubelet is not running');
    kubelet.handleStream(sub, req, socket, head, params);
  }

  private podLog(
    req: IncomingMessage,
    res: ServerResponse,
    ns: string,
    podName: string,
    q: URLSearchParams,
  ): void {
    const pod = this.d.store.get('pods', ns, podName);
    if (!pod) throw notFound('pods', podName);
    const { name, status } = this.pickContainer(pod, q.get('container'));
    const previous = parseBool(q.get('previous'));
    if (!(pod.spec as Record<string, unknown> | undefined)?.nodeName) {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end();
      return;
    }
    const state = (status?.state ?? {}) as Record<string, Record<string, unknown> | undefined>;
    const last = (status?.lastState ?? {}) as Record<string, unknown>;
    if (previous) {
      if (!last.terminated)
        throw badRequest(`previous terminated container "${name}" in pod "${podName}" not found`);
    } else if (!state.running && !state.terminated && !last.terminated) {
      const reason = String(state.waiting?.reason ?? 'ContainerCreating');
      let text = reason;
      if (reason === 'ErrImagePull') text = "image can't be pulled";
      else if (reason === 'ImagePullBackOff') text = 'trying and failing to pull image';
      throw badRequest(`container "${name}" in pod "${podName}" is waiting to start: ${text}`);
    }
    const params: LogRequest = {
      namespace: ns,
      pod: podName,
      container: name,
      follow: parseBool(q.get('follow')),
      previous,
      timestamps: parseBool(q.get('timestamps')),
    };
    const tail = optInt(q, 'tailLines');
    if (tail !== undefined) params.tailLines = tail;
    const limit = optInt(q, 'limitBytes');
    if (limit !== undefined) params.limitBytes = limit;
    let since = optInt(q, 'sinceSeconds');
    const sinceTime = q.get('sinceTime');
    if (since === undefined && sinceTime) {
      const t = Date.parse(sinceTime);
      if (Number.isNaN(t)) throw badRequest(`invalid sinceTime: ${sinceTime}`);
      since = Math.max(0, Math.ceil((Date.now() - t) / 1000));
    }
    if (since !== undefined) params.sinceSeconds = since;
    const kubelet = this.d.kubelet();
    if (!kubelet) throw internalError('kubelet is not running');
    kubelet.handleLog(req, res, params);
  }

  // ------------------------------------------------------------------ admin API

  private async admin(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    method: string,
  ): Promise<void> {
    const f = this.d.faults;
    const body =
      method === 'POST' ? (((await readJson(req, true)) as Record<string, unknown> | undefined) ?? {}) : {};
    const ok = (extra: Record<string, unknown> = {}): void => sendJson(res, 200, { ok: true, ...extra });
    switch (`${method} ${path}`) {
      case 'GET /emulator/requests':
        return sendJson(res, 200, { requests: f.requests });
      case 'DELETE /emulator/requests':
        f.resetRequests();
        return ok();
      case 'POST /emulator/faults/fail-next':
        if (!body.action || typeof body.action !== 'object') throw badRequest('action is required');
        f.failNext(body as unknown as FailNextSpec);
        return ok();
      case 'POST /emulator/faults/latency':
        if (typeof body.ms !== 'number') throw badRequest('ms is required');
        f.addLatency(body.ms, (body.match as Record<string, never> | undefined) ?? {});
        return ok();
      case 'POST /emulator/faults/end-watches':
        return ok({ ended: f.endWatches() });
      case 'POST /emulator/faults/kill-streams':
        return ok({
          killed: f.killStreams(body.namespace as string | undefined, body.pod as string | undefined),
        });
      case 'POST /emulator/faults/exit-container':
        return ok({
          exited: f.exitContainer(
            String(body.namespace),
            String(body.pod),
            String(body.container),
            Number(body.code ?? 1),
            body.signal as NodeJS.Signals | undefined,
          ),
        });
      case 'POST /emulator/faults/clear':
        f.clear();
        return ok();
      case 'POST /emulator/deny':
        if (typeof body.verb !== 'string' || typeof body.resource !== 'string')
          throw badRequest('verb and resource are required');
        f.deny({
          verb: body.verb,
          resource: body.resource,
          ...(typeof body.namespace === 'string' ? { namespace: body.namespace } : {}),
        });
        return ok();
      default:
        throw new StatusError(404, 'NotFound', `unknown admin endpoint ${method} ${path}`, {});
    }
  }
}

function methodNotAllowed(): StatusError {
  return new StatusError(
    405,
    'MethodNotAllowed',
    'the server does not allow this method on the requested resource',
    {},
  );
}

function includeObject(q: URLSearchParams): IncludeObject {
  const v = q.get('includeObject');
  return v === 'None' || v === 'Object' ? v : 'Metadata';
}

export const VERSION = {
  major: '1',
  minor: '32',
  gitVersion: 'v1.32.4-kube-emulator',
  gitCommit: '0000000000000000000000000000000000000000',
  gitTreeState: 'clean',
  buildDate: '2025-04-22T00:00:00Z',
  goVersion: 'go1.23.6',
  compiler: 'gc',
  platform: 'linux/amd64',
};
