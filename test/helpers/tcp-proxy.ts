/**
 * A real TCP proxy for fault injection in tests. The mode is read when a connection is accepted and
 * again for every chunk, so switching modes also affects pooled keep-alive connections (an HTTP client
 * that reuses a socket opened in 'pass' mode still sees the fault on its next request).
 */
import { createServer, connect, type Socket } from 'node:net';

export type ProxyMode = 'pass' | 'drop' | 'reset' | 'blackhole' | { delayMs: number };

export interface TcpProxy {
  readonly port: number;
  /** Connections accepted so far. */
  readonly connections: number;
  setMode(mode: ProxyMode): void;
  close(): Promise<void>;
}

export async function startTcpProxy(options: { targetHost: string; targetPort: number }): Promise<TcpProxy> {
  let mode: ProxyMode = 'pass';
  let connections = 0;
  const sockets = new Set<Socket>();

  const kill = (socket: Socket, how: 'drop' | 'reset') => {
    // resetAndDestroy sends a TCP RST (Node >= 18.3); plain destroy closes with FIN.
    if (how === 'reset' && typeof socket.resetAndDestroy === 'function') socket.resetAndDestroy();
    else socket.destroy();
  };

  /** Forwards one chunk according to the current mode (which may have changed since the connection opened). */
  const forward = (chunk: Buffer, to: Socket, pair: Socket[]): void => {
    if (mode === 'blackhole') return; // swallow: the peer waits forever
    if (mode === 'drop' || mode === 'reset') {
      for (const socket of pair) kill(socket, mode);
      return;
    }
    if (mode === 'pass') {
      to.write(chunk);
      return;
    }
    // Equal delays keep chunk order, since timers with the same timeout fire in creation order.
    setTimeout(() => to.destroyed || to.write(chunk), mode.delayMs);
  };

  const server = createServer((client) => {
    connections++;
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => {});
    if (mode === 'drop' || mode === 'reset') return kill(client, mode);
    if (mode === 'blackhole') {
      client.resume(); // accept and read, never answer
      return;
    }

    const upstream = connect({ host: options.targetHost, port: options.targetPort });
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    const pair = [client, upstream];
    client.on('data', (chunk: Buffer) => forward(chunk, upstream, pair));
    upstream.on('data', (chunk: Buffer) => forward(chunk, client, pair));
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('tcp proxy: no port');

  return {
    port: address.port,
    get connections() {
      return connections;
    },
    setMode(next) {
      mode = next;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
