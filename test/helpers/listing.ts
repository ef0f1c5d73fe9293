/**
 * Listings for "nothing was touched" checks: every blob of a container with its ETag (through the
 * Azure SDK, not the store under test), and every file under a local folder with its size.
 */
import { readdir, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';

/** `name etag size` of every blob in the container, sorted. */
export async function listBlobsWithEtags(connectionString: string, container: string): Promise<string[]> {
  const client = BlobServiceClient.fromConnectionString(connectionString).getContainerClient(container);
  const out: string[] = [];
  for await (const blob of client.listBlobsFlat()) out.push(`${blob.name} ${blob.properties.etag} ${blob.properties.contentLength}`);
  return out.sort();
}

/** `relative/path size` of every file under `root` (recursively), sorted; [] if `root` does not exist. */
export async function listFiles(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    for (const entry of entries) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else {
        const size = await stat(path).then(
          (st) => st.size,
          (error: NodeJS.ErrnoException) => {
            if (error.code === 'ENOENT') return undefined; // removed while listing
            throw error;
          },
        );
        if (size !== undefined) out.push(`${relative(root, path)} ${size}`);
      }
    }
  };
  await walk(root);
  return out.sort();
}
