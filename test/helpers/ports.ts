// A free TCP port on 127.0.0.1 for a server a test starts by port number (nginx's config, a
// documented address rewritten), where listening on port 0 is not an option.
import net from 'node:net';

export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}
