/**
 * The proxy and CA environment of a session pod: every runtime the agent may use reads one of these (Claude
 * Code ignores NODE_EXTRA_CA_CERTS set only in its settings file, so they must be real process environment).
 */
export function podProxyEnv(opts: {
  /** How pods reach the proxy, e.g. http://host.docker.internal:8899. */
  proxyUrl: string;
  session: string;
  token: string;
  /** Path of the CA bundle inside the pod (system roots + our CA, see caBundlePem). */
  caPath: string;
  noProxy: readonly string[];
}): Record<string, string> {
  const u = new URL(opts.proxyUrl);
  u.username = encodeURIComponent(opts.session);
  u.password = encodeURIComponent(opts.token);
  const url = u.pathname === '/' && !u.search ? u.toString().replace(/\/$/, '') : u.toString();
  const noProxy = opts.noProxy.join(',');
  return {
    HTTP_PROXY: url,
    HTTPS_PROXY: url,
    http_proxy: url,
    https_proxy: url,
    NO_PROXY: noProxy,
    no_proxy: noProxy,
    NODE_EXTRA_CA_CERTS: opts.caPath,
    SSL_CERT_FILE: opts.caPath,
    REQUESTS_CA_BUNDLE: opts.caPath,
    GIT_SSL_CAINFO: opts.caPath,
    CURL_CA_BUNDLE: opts.caPath,
    // Node 24+ routes its built-in http/fetch through HTTP(S)_PROXY only when this is set.
    NODE_USE_ENV_PROXY: '1',
  };
}
