// Response heads prepared once as bytes, for the lane's one corked write per hit (lane/ writes
// them and adds the Date and Connection lines itself).

/** `HTTP/1.1 <status>` and the given header list as bytes, without the closing blank line. */
export function rawHead(status: 200 | 304, headers: readonly string[]): Buffer {
  let s = status === 200 ? 'HTTP/1.1 200 OK\r\n' : 'HTTP/1.1 304 Not Modified\r\n';
  for (let i = 0; i < headers.length; i += 2) s += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return Buffer.from(s, 'latin1');
}
