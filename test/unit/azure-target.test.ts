/**
 * azure-target.ts reads azureBlobStore()'s options without the SDK. Table test against the real SDK:
 * for each connection string or URL, the container URL and account name we derive are the SDK
 * client's own, and a string the SDK refuses we refuse too (CONFIG, with the SDK's field name).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AnonymousCredential, BlobServiceClient, ContainerClient } from '@azure/storage-blob';
import { containerUrlWith, resolveTarget } from '../../src/store/azure-target.ts';
import { isSyncError } from '../../src/errors.ts';

const KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';
const token = { getToken: async () => ({ token: 't', expiresOnTimestamp: Date.now() + 3_600_000 }) };
const noDefault = () => {
  throw new Error('not used');
};

const connectionStrings: Array<[name: string, value: string]> = [
  ['Azurite, explicit endpoint', `DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=${KEY};BlobEndpoint=http://127.0.0.1:41515/devstoreaccount1;`],
  ['Azure, endpoint suffix', `DefaultEndpointsProtocol=https;AccountName=acct1;AccountKey=${KEY};EndpointSuffix=core.windows.net`],
  ['Azure, endpoint with trailing slash', `DefaultEndpointsProtocol=https;AccountName=acct1;AccountKey=${KEY};BlobEndpoint=https://acct1.blob.core.windows.net/`],
  ['development storage', 'UseDevelopmentStorage=true'],
  ['SAS connection string', 'BlobEndpoint=https://acct2.blob.core.windows.net/;SharedAccessSignature=sv=2022-11-02&ss=b&srt=co&sp=rwdl&se=2030-01-01T00:00:00Z&sig=abc%3D'],
  ['SAS connection string, Azurite', 'BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;SharedAccessSignature=?sv=2022-11-02&sp=rl&sig=x'],
];
const malformed: Array<[name: string, value: string]> = [
  ['no fields', 'AccountName=x;nonsense'],
  ['unknown protocol', `DefaultEndpointsProtocol=ftp;AccountName=a1;AccountKey=${KEY}`],
  ['no endpoint suffix', `DefaultEndpointsProtocol=https;AccountName=a1;AccountKey=${KEY}`],
  ['no account name', `DefaultEndpointsProtocol=https;AccountKey=${KEY};EndpointSuffix=core.windows.net`],
  ['empty key', 'DefaultEndpointsProtocol=https;AccountName=a1;AccountKey=;EndpointSuffix=core.windows.net'],
  ['SAS without endpoint', 'SharedAccessSignature=sv=1&sig=x'],
];

for (const [name, value] of connectionStrings) {
  test(`connection string (${name}): the SDK's container URL and account name`, () => {
    const sdk = BlobServiceClient.fromConnectionString(value).getContainerClient('backups');
    const target = resolveTarget({ connectionString: value, container: 'backups' }, noDefault);
    assert.deepEqual({ url: containerUrlWith(target), account: target.accountName }, { url: sdk.url, account: sdk.accountName });
    assert.equal(target.authorization.kind, sdk.credential instanceof AnonymousCredential ? 'sas' : 'sharedKey');
  });
}

for (const [name, value] of malformed) {
  test(`connection string (${name}): refused, as the SDK refuses it`, () => {
    assert.throws(() => BlobServiceClient.fromConnectionString(value));
    assert.throws(() => resolveTarget({ connectionString: value, container: 'backups' }, noDefault), (error: unknown) => isSyncError(error, 'CONFIG') && /connectionString is malformed: Invalid \w+/.test((error as Error).message));
  });
}

const urls: Array<[name: string, options: Parameters<typeof resolveTarget>[0], sdk: () => ContainerClient]> = [
  ['container URL with SAS, Azure', { containerUrl: 'https://acct3.blob.core.windows.net/backups?sv=1&se=2030-01-01&sig=s' }, () => new ContainerClient('https://acct3.blob.core.windows.net/backups?sv=1&se=2030-01-01&sig=s', new AnonymousCredential())],
  ['container URL with SAS, Azurite', { containerUrl: 'http://127.0.0.1:41515/devstoreaccount1/backups?sv=1&sig=s' }, () => new ContainerClient('http://127.0.0.1:41515/devstoreaccount1/backups?sv=1&sig=s', new AnonymousCredential())],
  ['container URL with a credential', { containerUrl: 'https://acct3.blob.core.windows.net/backups', credential: token }, () => new ContainerClient('https://acct3.blob.core.windows.net/backups', token)],
  ['account URL with a credential', { accountUrl: 'https://acct4.blob.core.windows.net', container: 'backups', credential: token }, () => new BlobServiceClient('https://acct4.blob.core.windows.net', token).getContainerClient('backups')],
  ['account URL with SAS', { accountUrl: 'https://acct4.blob.core.windows.net/?sv=1&sig=s', container: 'backups' }, () => new BlobServiceClient('https://acct4.blob.core.windows.net/?sv=1&sig=s', new AnonymousCredential()).getContainerClient('backups')],
];

for (const [name, options, sdk] of urls) {
  test(`${name}: the SDK's container URL, account and container name`, () => {
    const client = sdk();
    const target = resolveTarget(options, noDefault);
    assert.deepEqual({ url: containerUrlWith(target), account: target.accountName, container: target.containerName }, { url: client.url, account: client.accountName, container: client.containerName });
  });
}
