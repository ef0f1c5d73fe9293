/**
 * A TCP relay that limits the bandwidth from the server to its clients, shared by all connections like
 * one network link: the benchmark puts it in front of Azurite to compare a restore with a raw download
 * at a given line rate instead of over loopback (where both are bound by this machine's CPU).
 * Requests (client to server) pass unshaped; they are small.
 */
import { connect, createServer, type Socket } from 'node:net';

export interface ShapedLink {
  readonly port: number;
  readonly bytesPerSec: number;
  /** `connectionString` with its blob endpoint pointed at the link. */
  route(connectionString: string): string;
  close(): Promise<void>;
}

export async function startShapedLink(options: { targetHost: string; targetPort: number; bytesPerSec: number }): Promise<ShapedLink> {
  const { bytesPerSec } = options;
  const sockets = new Set<Socket>();
  /** When the link is free again (performance.now() ms): every chunk waits for the ones queued before it. */
  let linkFreeAt = 0;

  const server = createServer((client) => {
    const upstream = connect({ host: options.targetHost, port: options.targetPort });
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.on('data', (chunk: Buffer) => {
      const now = performance.now();
      linkFreeAt = Math.max(now, linkFreeAt) + (chunk.length / bytesPerSec) * 1000;
      const wait = linkFreeAt - now; // the chunk arrives once its last byte has crossed the link
      if (wait < 1) {
        client.write(chunk);
        return;
      }
      // Paused until this chunk is written: the connection's bytes stay in order, and memory bounded.
      upstream.pause();
      setTimeout(() => {
        if (!client.destroyed) client.write(chunk);
        upstream.resume();
      }, wait);
    });
    upstream.on('end', () => client.end());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('shaped link: no port');
  const port = address.port;
  return {
    port,
    bytesPerSec,
    route: (connectionString) => connectionString.replace(/(BlobEndpoint=https?:\/\/[^:/;]+):\d+/i, `$1:${port}`),
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
