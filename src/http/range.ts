// Byte `Range` requests (RFC 9110 §14). One range is served as 206; several ranges are answered
// with the whole body (a server may ignore Range, and multipart/byteranges would mean building a
// body instead of writing mapping slices).

export interface ByteRange {
  start: number;
  /** inclusive */
  end: number;
}

/**
 * `undefined`: no usable Range (serve 200 in full). `'unsatisfiable'`: 416.
 * Otherwise the one range, clamped to the body.
 */
export function parseRange(
  header: string | undefined,
  size: number,
): ByteRange | 'unsatisfiable' | undefined {
  if (header === undefined) return undefined;
  const m = /^\s*bytes\s*=\s*(.+)$/i.exec(header);
  if (!m || m[1] === undefined) return undefined; // unknown unit: ignore, as RFC 9110 asks
  const specs = m[1]
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (specs.length !== 1) return undefined;
  const spec = specs[0] as string;
  const r = /^(\d*)-(\d*)$/.exec(spec);
  if (!r) return undefined; // syntactically invalid: ignore
  const [, a = '', b = ''] = r;
  if (a === '' && b === '') return undefined;
  if (a === '') {
    // suffix range: the last N bytes
    const n = Number(b);
    if (n === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(a);
  let end = b === '' ? size - 1 : Number(b);
  if (b !== '' && end < start) return undefined; // invalid range-spec: ignore
  if (start >= size) return 'unsatisfiable';
  if (end >= size) end = size - 1;
  return { start, end };
}
