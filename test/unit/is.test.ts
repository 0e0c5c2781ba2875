// The shared validators: each returns the value it accepts and otherwise throws the caller's code
// with a message naming the parameter, what was expected and what arrived.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as is from '../../src/is.js';
import { PixtableError, type ErrorCode } from '../../src/errors.js';

/** `fn` throws a PixtableError of `code` whose message is exactly `detail` after the public message. */
function refuses(fn: () => unknown, code: ErrorCode, detail: string) {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof PixtableError, String(e));
    assert.equal(e.code, code);
    assert.equal(e.detail, detail);
    assert.ok(e.message.endsWith(`: ${detail}`), e.message);
    return true;
  });
}

describe('is: numbers', () => {
  it('intInRange accepts integers inside the bounds, inclusive', () => {
    assert.equal(is.intInRange('w', 1, 1, 10, 'INVALID_OPTION'), 1);
    assert.equal(is.intInRange('w', 10, 1, 10, 'INVALID_OPTION'), 10);
    refuses(
      () => is.intInRange('w', 0, 1, 10, 'INVALID_FORMAT'),
      'INVALID_FORMAT',
      'w must be an integer from 1 to 10, got 0',
    );
    refuses(
      () => is.intInRange('w', 11, 1, 10, 'INVALID_OPTION'),
      'INVALID_OPTION',
      'w must be an integer from 1 to 10, got 11',
    );
    refuses(
      () => is.intInRange('w', 1.5, 1, 10, 'INVALID_OPTION'),
      'INVALID_OPTION',
      'w must be an integer from 1 to 10, got 1.5',
    );
    refuses(
      () => is.intInRange('w', '5', 1, 10, 'INVALID_OPTION'),
      'INVALID_OPTION',
      'w must be an integer from 1 to 10, got "5"',
    );
    refuses(
      () => is.intInRange('w', NaN, 1, 10, 'INVALID_OPTION'),
      'INVALID_OPTION',
      'w must be an integer from 1 to 10, got NaN',
    );
  });

  it('optionalInt gives the default only for undefined (fits the engine options num())', () => {
    assert.equal(is.optionalInt('n', undefined, 7, 0, 10, 'INVALID_OPTION'), 7);
    assert.equal(is.optionalInt('n', 0, 7, 0, 10, 'INVALID_OPTION'), 0);
    refuses(
      () => is.optionalInt('n', null, 7, 0, 10, 'INVALID_OPTION'),
      'INVALID_OPTION',
      'n must be an integer from 0 to 10, got null',
    );
  });

  it('numberInRange takes fractions; positiveNumber refuses zero', () => {
    assert.equal(is.numberInRange('t', 2.5, 0, 3, 'INVALID_OPTION'), 2.5);
    refuses(
      () => is.numberInRange('t', Infinity, 0, Infinity, 'INVALID_OPTION'),
      'INVALID_OPTION',
      't must be a number from 0 to Infinity, got Infinity',
    );
    assert.equal(is.positiveNumber('p', 0.1, 'INVALID_OPTION'), 0.1);
    refuses(
      () => is.positiveNumber('p', 0, 'INVALID_OPTION'),
      'INVALID_OPTION',
      'p must be a positive number, got 0',
    );
  });

  it('powerOfTwo', () => {
    assert.equal(is.powerOfTwo('a', 64, 'INVALID_FORMAT'), 64);
    assert.equal(is.powerOfTwo('a', 1, 'INVALID_FORMAT'), 1);
    refuses(
      () => is.powerOfTwo('a', 48, 'INVALID_FORMAT'),
      'INVALID_FORMAT',
      'a must be a power of two, got 48',
    );
  });
});

describe('is: other types', () => {
  it('bool and optionalBool (fits the engine options bool())', () => {
    assert.equal(is.bool('b', false, 'INVALID_OPTION'), false);
    assert.equal(is.optionalBool('b', undefined, true, 'INVALID_OPTION'), true);
    assert.equal(is.optionalBool('b', false, true, 'INVALID_OPTION'), false);
    refuses(
      () => is.optionalBool('b', 'yes', true, 'INVALID_OPTION'),
      'INVALID_OPTION',
      'b must be a boolean, got "yes"',
    );
  });

  it('strings: non-empty, matching a pattern, one of a list (bare or quoted)', () => {
    assert.equal(is.nonEmptyString('s', 'x', 'INVALID_OPTION'), 'x');
    refuses(
      () => is.nonEmptyString('s', '', 'INVALID_OPTION'),
      'INVALID_OPTION',
      's must be a non-empty string, got ""',
    );
    refuses(
      () => is.nonEmptyString('storage', 3, 'INVALID_OPTION', 'a directory path'),
      'INVALID_OPTION',
      'storage must be a directory path, got 3',
    );
    assert.equal(is.matching('n', 'ab', /^[a-z]+$/, 'INVALID_FORMAT'), 'ab');
    refuses(
      () => is.matching('n', 'A', /^[a-z]+$/, 'INVALID_FORMAT'),
      'INVALID_FORMAT',
      'n must be a string matching /^[a-z]+$/, got "A"',
    );
    const modes = ['none', 'batch', 'always'] as const;
    const m: 'none' | 'batch' | 'always' = is.oneOf('sync', 'batch', modes, 'INVALID_CONFIG');
    assert.equal(m, 'batch');
    refuses(
      () => is.oneOf('sync', 'x', modes, 'INVALID_CONFIG'),
      'INVALID_CONFIG',
      'sync must be one of none, batch, always, got "x"',
    );
    refuses(
      () => is.oneOf('sync', 'x', modes, 'INVALID_OPTION', { quoted: true }),
      'INVALID_OPTION',
      'sync must be "none", "batch" or "always", got "x"',
    );
  });

  it('objects, their keys, arrays and buffers', () => {
    const o = { a: 1 };
    assert.equal(is.object('o', o, 'INVALID_OPTION'), o);
    refuses(() => is.object('o', null, 'INVALID_OPTION'), 'INVALID_OPTION', 'o must be an object, got null');
    refuses(
      () => is.object('o', [1], 'INVALID_OPTION'),
      'INVALID_OPTION',
      'o must be an object, got an array of length 1',
    );
    is.knownKeys('f', { a: 1 }, ['a', 'b'], 'INVALID_FORMAT');
    refuses(
      () => is.knownKeys('f', { a: 1, c: 2 }, ['a', 'b'], 'INVALID_FORMAT'),
      'INVALID_FORMAT',
      'f.c must be one of a, b, got "c"',
    );
    assert.deepEqual(is.nonEmptyArray('l', [0], 'INVALID_FORMAT'), [0]);
    refuses(
      () => is.nonEmptyArray('l', [], 'INVALID_FORMAT'),
      'INVALID_FORMAT',
      'l must be a non-empty array, got an array of length 0',
    );
    const b = Buffer.from('x');
    assert.equal(is.buffer('bytes', b, 'INVALID_OPTION'), b);
    refuses(
      () => is.buffer('bytes', 'x', 'INVALID_OPTION'),
      'INVALID_OPTION',
      'bytes must be a Buffer, got "x"',
    );
  });

  it('ensure words one-off conditions the same way', () => {
    is.ensure(true, 'x', 'anything', 1, 'INVALID_CONFIG');
    refuses(
      () => is.ensure(false, 'HOST', 'a host name', 'a b', 'INVALID_CONFIG'),
      'INVALID_CONFIG',
      'HOST must be a host name, got "a b"',
    );
  });
});

describe('is: text from the environment and the command line', () => {
  it('intText: digits with _ separators; the message shows the text as written', () => {
    assert.equal(is.intText('N', '52_428_800', 1, 2 ** 31 - 1, 'INVALID_CONFIG'), 52_428_800);
    assert.equal(is.intText('N', '0', 0, 1, 'INVALID_CONFIG'), 0);
    for (const bad of ['1.5', '-1', '+1', '1e3', '0x10', '_1', 'lots']) {
      refuses(
        () => is.intText('N', bad, 0, 100_000, 'INVALID_CONFIG'),
        'INVALID_CONFIG',
        `N must be an integer from 0 to 100000, got ${JSON.stringify(bad)}`,
      );
    }
    refuses(
      () => is.intText('PORT', '70000', 0, 65535, 'INVALID_CONFIG'),
      'INVALID_CONFIG',
      'PORT must be an integer from 0 to 65535, got "70000"',
    );
  });

  it('numberText: numbers as JavaScript reads them, optionally whole', () => {
    assert.equal(is.numberText('--wait', '2.5', 0, 600, 'INVALID_OPTION'), 2.5);
    assert.equal(is.numberText('--wait', '.5', 0, 600, 'INVALID_OPTION'), 0.5);
    assert.equal(is.numberText('--jobs', '4', 1, 64, 'INVALID_OPTION', { integer: true }), 4);
    refuses(
      () => is.numberText('--wait', ' ', 0, 600, 'INVALID_OPTION'),
      'INVALID_OPTION',
      '--wait must be a number from 0 to 600, got " "',
    );
    refuses(
      () => is.numberText('--wait', '601', 0, 600, 'INVALID_OPTION'),
      'INVALID_OPTION',
      '--wait must be a number from 0 to 600, got "601"',
    );
    refuses(
      () => is.numberText('--jobs', '1.5', 1, 64, 'INVALID_OPTION', { integer: true }),
      'INVALID_OPTION',
      '--jobs must be an integer from 1 to 64, got "1.5"',
    );
  });

  it('boolText: the usual words in any case', () => {
    for (const t of ['1', 'true', 'YES', 'On']) assert.equal(is.boolText('B', t, 'INVALID_CONFIG'), true);
    for (const f of ['0', 'False', 'no', 'OFF']) assert.equal(is.boolText('B', f, 'INVALID_CONFIG'), false);
    refuses(
      () => is.boolText('B', 'maybe', 'INVALID_CONFIG'),
      'INVALID_CONFIG',
      'B must be a boolean (true/false, 1/0, yes/no, on/off), got "maybe"',
    );
  });
});
