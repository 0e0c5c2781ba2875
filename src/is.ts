// The validators every layer shares (modelled on sharp's lib/is.js and its invalidParameterError):
// the engine's options, format definitions, PIXTABLE_* variables, the config file and the CLI's
// flags. Each check either returns the value, typed, or throws invalidParameter(code, name,
// expected, actual), so one kind of mistake is worded the same way wherever it is made
// ("PORT must be an integer from 0 to 65535, got "eighty""). The caller picks the code: the same
// check is INVALID_OPTION for a library option and INVALID_CONFIG for an environment variable.
//
// Argument order is (name, value, …constraints, code): a check reads like the sentence it throws.
import { invalidParameter, type ErrorCode } from './errors.js';

/** Throws unless `ok`: for one-off conditions, worded like every other check. */
export function ensure(
  ok: boolean,
  name: string,
  expected: string,
  actual: unknown,
  code: ErrorCode,
): asserts ok {
  if (!ok) throw invalidParameter(code, name, expected, actual);
}

const intRange = (min: number, max: number) => `an integer from ${min} to ${max}`;
const numberRange = (min: number, max: number) => `a number from ${min} to ${max}`;

// ---- numbers -----------------------------------------------------------------------------------

/** An integer (a JS number without fraction) from `min` to `max`, inclusive. */
export function intInRange(name: string, v: unknown, min: number, max: number, code: ErrorCode): number {
  ensure(
    typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max,
    name,
    intRange(min, max),
    v,
    code,
  );
  return v;
}

/** `dflt` when `v` is undefined; otherwise as intInRange. Fits `num(name, v, dflt, min, max)`. */
export function optionalInt(
  name: string,
  v: unknown,
  dflt: number,
  min: number,
  max: number,
  code: ErrorCode,
): number {
  return v === undefined ? dflt : intInRange(name, v, min, max, code);
}

/** A finite number from `min` to `max`, inclusive (fractions allowed). */
export function numberInRange(name: string, v: unknown, min: number, max: number, code: ErrorCode): number {
  ensure(
    typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max,
    name,
    numberRange(min, max),
    v,
    code,
  );
  return v;
}

/** A finite number above zero. */
export function positiveNumber(name: string, v: unknown, code: ErrorCode): number {
  ensure(typeof v === 'number' && Number.isFinite(v) && v > 0, name, 'a positive number', v, code);
  return v;
}

/** A power of two (1, 2, 4, …): alignments. */
export function powerOfTwo(name: string, v: number, code: ErrorCode): number {
  ensure(Number.isInteger(v) && v > 0 && (v & (v - 1)) === 0, name, 'a power of two', v, code);
  return v;
}

// ---- other types -------------------------------------------------------------------------------

export function bool(name: string, v: unknown, code: ErrorCode): boolean {
  ensure(typeof v === 'boolean', name, 'a boolean', v, code);
  return v;
}

/** `dflt` when `v` is undefined; otherwise as bool. Fits `bool(name, v, dflt)`. */
export function optionalBool(name: string, v: unknown, dflt: boolean, code: ErrorCode): boolean {
  return v === undefined ? dflt : bool(name, v, code);
}

/** A string with at least one character; `expected` says what it stands for ("a directory path"). */
export function nonEmptyString(
  name: string,
  v: unknown,
  code: ErrorCode,
  expected = 'a non-empty string',
): string {
  ensure(typeof v === 'string' && v !== '', name, expected, v, code);
  return v;
}

/** A string that `re` matches (names used in URLs and file names). */
export function matching(name: string, v: unknown, re: RegExp, code: ErrorCode): string {
  ensure(typeof v === 'string' && re.test(v), name, `a string matching ${re}`, v, code);
  return v;
}

/**
 * One of `values`. Listed bare (`one of none, batch, always`) as a person types them in a
 * variable or flag, or `quoted` (`"none", "batch" or "always"`) where they are JSON or JS strings.
 */
export function oneOf<const T extends string>(
  name: string,
  v: unknown,
  values: readonly T[],
  code: ErrorCode,
  o: { quoted?: boolean } = {},
): T {
  ensure((values as readonly unknown[]).includes(v), name, choices(values, o.quoted ?? false), v, code);
  return v as T;
}

function choices(values: readonly string[], quoted: boolean): string {
  if (!quoted) return `one of ${values.join(', ')}`;
  const q = values.map((v) => JSON.stringify(v));
  return q.length < 2 ? q.join('') : `${q.slice(0, -1).join(', ')} or ${q.at(-1)}`;
}

/** An object (not null, not an array): option bags, format definitions, parsed JSON. */
export function object(name: string, v: unknown, code: ErrorCode): Record<string, unknown> {
  ensure(typeof v === 'object' && v !== null && !Array.isArray(v), name, 'an object', v, code);
  return v as Record<string, unknown>;
}

/** Every own key of `obj` is one of `keys`; a stray one is named as `name.key` (typos). */
export function knownKeys(name: string, obj: object, keys: readonly string[], code: ErrorCode): void {
  for (const k of Object.keys(obj)) oneOf(`${name}.${k}`, k, keys, code);
}

/** An array with at least one element. */
export function nonEmptyArray(
  name: string,
  v: unknown,
  code: ErrorCode,
  expected = 'a non-empty array',
): unknown[] {
  ensure(Array.isArray(v) && v.length > 0, name, expected, v, code);
  return v as unknown[];
}

export function buffer(name: string, v: unknown, code: ErrorCode): Buffer {
  ensure(Buffer.isBuffer(v), name, 'a Buffer', v, code);
  return v;
}

// ---- text (environment variables, command-line flags) ----------------------------------------
// These report the text as it was written, so the message shows what the person typed.

/**
 * Decimal digits, `_` allowed between them (`52_428_800`: byte sizes are long), as an integer from
 * `min` to `max`. No sign, fraction, exponent or hex: what the environment documents.
 */
export function intText(name: string, text: string, min: number, max: number, code: ErrorCode): number {
  const n = /^\d[\d_]*$/.test(text) ? Number(text.replaceAll('_', '')) : NaN;
  ensure(Number.isSafeInteger(n) && n >= min && n <= max, name, intRange(min, max), text, code);
  return n;
}

/**
 * A number as JavaScript reads it (`2.5`, `.5`, `10`), from `min` to `max`; with `integer`, whole
 * numbers only. Command-line values (`--wait 2.5`).
 */
export function numberText(
  name: string,
  text: string,
  min: number,
  max: number,
  code: ErrorCode,
  o: { integer?: boolean } = {},
): number {
  const n = text.trim() === '' ? NaN : Number(text);
  const ok = Number.isFinite(n) && n >= min && n <= max && (!o.integer || Number.isInteger(n));
  ensure(ok, name, o.integer ? intRange(min, max) : numberRange(min, max), text, code);
  return n;
}

const TRUE_WORDS = ['1', 'true', 'yes', 'on'];
const FALSE_WORDS = ['0', 'false', 'no', 'off'];

/** true/false, 1/0, yes/no, on/off, in any case. */
export function boolText(name: string, text: string, code: ErrorCode): boolean {
  const l = text.toLowerCase();
  if (TRUE_WORDS.includes(l)) return true;
  if (FALSE_WORDS.includes(l)) return false;
  throw invalidParameter(code, name, 'a boolean (true/false, 1/0, yes/no, on/off)', text);
}
