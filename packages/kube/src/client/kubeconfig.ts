import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import type { Config } from '@clauderon/config';
import { ClauderonError } from '@clauderon/protocol';
import { KubeConfig } from '@kubernetes/client-node';

export interface LoadKubeConfigOptions {
  /** Environment to read KUBECONFIG from (default: process.env). */
  env?: Record<string, string | undefined>;
  /** Home directory for ~/.kube/config (default: os.homedir()). */
  home?: string;
}

/**
 * Loads the kubeconfig: `kubernetes.kubeconfig` if set, else $KUBECONFIG (a path list; the first file's
 * current context wins), else ~/.kube/config; then selects `kubernetes.context` when set. Every problem is
 * a KUBECONFIG error with a fix.
 */
export function loadKubeConfig(k: Config['kubernetes'], opts: LoadKubeConfigOptions = {}): KubeConfig {
  const env = opts.env ?? process.env;
  const home = opts.home ?? homedir();
  const expand = (p: string) => resolve(p.startsWith('~/') ? join(home, p.slice(2)) : p);
  let files: string[];
  let source: string;
  if (k.kubeconfig) {
    files = [expand(k.kubeconfig)];
    source = 'kubernetes.kubeconfig';
  } else if (env.KUBECONFIG) {
    files = env.KUBECONFIG.split(delimiter)
      .filter((p) => p.length > 0)
      .map(expand);
    source = '$KUBECONFIG';
  } else {
    files = [join(home, '.kube', 'config')];
    source = 'the default location';
  }
  const existing = files.filter((f) => existsSync(f));
  if (existing.length === 0) {
    throw new ClauderonError('KUBECONFIG', `no kubeconfig found at ${files.join(', ')} (from ${source})`, {
      hint: 'set kubernetes.kubeconfig in the config, or KUBECONFIG, to your cluster’s kubeconfig file',
      details: { files },
    });
  }
  const kc = new KubeConfig();
  for (const [i, file] of existing.entries()) {
    try {
      if (i === 0) kc.loadFromFile(file);
      else {
        const more = new KubeConfig();
        more.loadFromFile(file);
        kc.mergeConfig(more, true);
      }
    } catch (e) {
      throw new ClauderonError('KUBECONFIG', `cannot read kubeconfig ${file}: ${(e as Error).message}`, {
        hint: 'check the file with `kubectl config view`',
        details: { file },
        cause: e,
      });
    }
  }
  if (k.context) {
    if (kc.getContextObject(k.context) === null) {
      const known = kc.getContexts().map((c) => c.name);
      throw new ClauderonError('KUBECONFIG', `kubeconfig has no context "${k.context}"`, {
        hint: `set kubernetes.context to one of: ${known.join(', ') || '(none)'}`,
        details: { context: k.context, contexts: known },
      });
    }
    kc.setCurrentContext(k.context);
  }
  if (!kc.getCurrentContext() || kc.getContextObject(kc.getCurrentContext()) === null) {
    throw new ClauderonError('KUBECONFIG', `kubeconfig ${existing[0]} has no current context`, {
      hint: 'set kubernetes.context, or run `kubectl config use-context <name>`',
    });
  }
  if (kc.getCurrentCluster() === null) {
    throw new ClauderonError(
      'KUBECONFIG',
      `context "${kc.getCurrentContext()}" refers to a cluster that is not defined`,
      {
        hint: 'check the kubeconfig with `kubectl config view`',
      },
    );
  }
  return kc;
}
