// Offline checks of the wire decoding (no server): float16 by hand, bit unpacking, row sizes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { decodeEmbeddings, halfToFloat, EmbedClient } = require('../index.js');

test('halfToFloat matches IEEE 754 binary16', () => {
  assert.equal(halfToFloat(0x0000), 0);
  assert.ok(Object.is(halfToFloat(0x8000), -0));
  assert.equal(halfToFloat(0x3c00), 1);
  assert.equal(halfToFloat(0xc000), -2);
  assert.equal(halfToFloat(0x3555), 0.333251953125);
  assert.equal(halfToFloat(0x7bff), 65504);
  assert.equal(halfToFloat(0x0001), 2 ** -24); // smallest subnormal
  assert.equal(halfToFloat(0x7c00), Infinity);
  assert.ok(Number.isNaN(halfToFloat(0x7e00)));
});

test('decodes every encoding into the right typed array', () => {
  const f16 = Buffer.from([0x00, 0x3c, 0x00, 0xc0]); // 1, -2
  const rows = (encoding, dims, row) => decodeEmbeddings({ encoding, dimensions: dims, embeddings: [row] })[0];
  assert.deepEqual(rows('ENCODING_FLOAT32', 2, { values: [0.5, -0.25] }), Float32Array.from([0.5, -0.25]));
  assert.deepEqual(rows('ENCODING_FLOAT16', 2, { data: f16 }), Float32Array.from([1, -2]));
  assert.deepEqual(rows('ENCODING_INT8', 2, { data: Buffer.from([0xff, 0x7f]) }), Int8Array.from([-1, 127]));
  assert.deepEqual(rows('ENCODING_UINT8', 2, { data: Buffer.from([0xff, 0x7f]) }), Uint8Array.from([255, 127]));
  // ubinary: MSB first; binary: the same packed byte minus 128 as int8.
  assert.deepEqual(rows('ENCODING_UBINARY', 8, { data: Buffer.from([0b10100001]) }), Uint8Array.from([161]));
  assert.deepEqual(rows('ENCODING_BINARY', 8, { data: Buffer.from([161 - 128]) }), Int8Array.from([33]));
  const bits = [1, 0, 1, 0, 0, 0, 0, 1];
  const unpack = (encoding, byte) =>
    decodeEmbeddings({ encoding, dimensions: 8, embeddings: [{ data: Buffer.from([byte]) }] }, { unpackBits: true })[0];
  assert.deepEqual(unpack('ENCODING_UBINARY', 161), Uint8Array.from(bits));
  assert.deepEqual(unpack('ENCODING_BINARY', 33), Uint8Array.from(bits));
});

test('mis-sized rows are rejected', () => {
  assert.throws(
    () => decodeEmbeddings({ encoding: 'ENCODING_INT8', dimensions: 4, embeddings: [{ data: Buffer.from([1, 2]) }] }),
    /embedding 0: 2 bytes for int8 with dimensions 4/,
  );
  assert.throws(
    () => decodeEmbeddings({ encoding: 'ENCODING_FLOAT32', dimensions: 3, embeddings: [{ values: [1] }] }),
    /expected 3/,
  );
});

test('client options are validated before any call', () => {
  assert.throws(() => new EmbedClient('127.0.0.1:1', { rootCerts: 'x' }), /tls is false/);
  assert.throws(() => new EmbedClient('127.0.0.1:1', { tls: true, privateKey: 'k' }), /both privateKey and certChain/);
  assert.throws(() => new EmbedClient('127.0.0.1:1', { protosDir: '/nonexistent' }), /aegis protos not found/);
  const client = new EmbedClient('127.0.0.1:1');
  return assert.rejects(client.embed(['x'], 'passage'), /inputType must be one of query, document/).finally(() =>
    client.close(),
  );
});
