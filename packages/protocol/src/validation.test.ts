import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ClauderonError, exitCodeFor } from './errors.js';
import {
  printable,
  quantityToNumber,
  suggestName,
  validateQuantity,
  validateSessionName,
} from './validation.js';

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ClauderonError);
    return e.code;
  }
  return 'none';
}

describe('session names', () => {
  test('accepts DNS-1123 labels up to 40 characters', () => {
    assert.equal(validateSessionName('fix-login-bug-2'), 'fix-login-bug-2');
    assert.equal(validateSessionName('a'.repeat(40)), 'a'.repeat(40));
  });
  for (const bad of [
    '',
    'Upper',
    'under_score',
    '-lead',
    'trail-',
    'a'.repeat(41),
    'dots.are.out',
    'spa ce',
    'tab\t',
    'ünï',
  ]) {
    test(`rejects ${JSON.stringify(bad)}`, () =>
      assert.equal(
        code(() => validateSessionName(bad)),
        'CLAUDERON_E_INVALID_NAME',
      ));
  }
  test('suggests a valid name from any text', () => {
    assert.equal(suggestName('My Project_v2!'), 'my-project-v2');
    assert.equal(
      code(() => validateSessionName(suggestName(`${'x'.repeat(100)}--`))),
      'none',
    );
  });
  test('errors show control characters escaped', () => {
    assert.equal(printable('a\x1b[31mb'), 'a\\x1b[31mb');
  });
});

describe('quantities', () => {
  test('accepts Kubernetes quantities', () => {
    for (const [q, k] of [
      ['8Gi', 'memory'],
      ['512Mi', 'memory'],
      ['500m', 'cpu'],
      ['2', 'cpu'],
      ['1.5', 'cpu'],
      ['10G', 'storage'],
      ['1e3', 'cpu'],
    ] as const) {
      assert.equal(validateQuantity(q, k, '--x'), q);
    }
    assert.equal(quantityToNumber('8Gi'), 8 * 2 ** 30);
    assert.equal(quantityToNumber('500m'), 0.5);
  });
  test('rejects Docker-style sizes with a hint', () => {
    try {
      validateQuantity('8g', 'memory', '--memory-limit');
      assert.fail('accepted 8g');
    } catch (e) {
      assert.ok(e instanceof ClauderonError);
      assert.equal(e.code, 'CLAUDERON_E_INVALID_QUANTITY');
      assert.match(e.hint ?? '', /8Gi/);
    }
  });
  test('rejects negative, zero, garbage and milli-bytes', () => {
    for (const [q, k] of [
      ['-1', 'cpu'],
      ['0', 'memory'],
      ['lots', 'cpu'],
      ['512m', 'memory'],
      ['1.2.3', 'cpu'],
      ['', 'cpu'],
    ] as const) {
      assert.equal(
        code(() => validateQuantity(q, k, '--x')),
        'CLAUDERON_E_INVALID_QUANTITY',
        q,
      );
    }
  });
});

test('every error code has a distinct, documented exit code mapping', () => {
  assert.equal(exitCodeFor('CLAUDERON_E_DAEMON_UNREACHABLE'), 4);
  assert.equal(exitCodeFor('CLAUDERON_E_BACKEND_DISABLED'), 5);
  assert.equal(exitCodeFor('something-else'), 1);
});
