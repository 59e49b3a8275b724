'use strict';
// Node.js client for aegis-serve's public API, aegis.embed.v1.EmbedService.
//
// The .proto files are loaded at runtime from the repository's protos/ directory with
// @grpc/proto-loader (nothing is copied or generated), so the client always speaks the
// contract in this checkout. Override the location with the `protosDir` option or the
// AEGIS_PROTOS_DIR environment variable when the package is installed elsewhere.

const path = require('node:path');
const fs = require('node:fs');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const DEFAULT_TARGET = '127.0.0.1:50051';
const DEFAULT_PROTOS_DIR = path.resolve(__dirname, '..', '..', 'protos');
const EMBED_PROTO = path.join('aegis', 'embed', 'v1', 'embed.proto');

const INPUT_TYPES = Object.freeze({ query: 'INPUT_TYPE_QUERY', document: 'INPUT_TYPE_DOCUMENT' });
const ENCODINGS = Object.freeze({
  float32: 'ENCODING_FLOAT32',
  float16: 'ENCODING_FLOAT16',
  int8: 'ENCODING_INT8',
  uint8: 'ENCODING_UINT8',
  binary: 'ENCODING_BINARY',
  ubinary: 'ENCODING_UBINARY',
});
const ENCODING_NAMES = Object.freeze({
  ENCODING_UNSPECIFIED: 'float32',
  ENCODING_FLOAT32: 'float32',
  ENCODING_FLOAT16: 'float16',
  ENCODING_INT8: 'int8',
  ENCODING_UINT8: 'uint8',
  ENCODING_BINARY: 'binary',
  ENCODING_UBINARY: 'ubinary',
});
const TRUNCATE = Object.freeze({ end: 'TRUNCATE_END', none: 'TRUNCATE_NONE' });

// Default channel options: the API carries whole matrices, so allow large messages.
const DEFAULT_CHANNEL_OPTIONS = Object.freeze({
  'grpc.max_receive_message_length': 64 * 1024 * 1024,
  'grpc.max_send_message_length': 64 * 1024 * 1024,
  'grpc.keepalive_time_ms': 30000,
});

const EMBED_SERVICE = 'aegis.embed.v1.EmbedService';
// Unary methods that change nothing on the server, so a retry is safe.
const IDEMPOTENT_METHODS = Object.freeze(['Embed', 'Tokenize', 'GetInfo']);
// gRFC A6 caps maxAttempts at 5.
const MAX_ATTEMPTS_LIMIT = 5;

/**
 * The channel's service config: retry the idempotent methods on UNAVAILABLE and
 * RESOURCE_EXHAUSTED with exponential backoff from 100 ms; the server's
 * `grpc-retry-pushback-ms` wins over the backoff, and the call's deadline ends the retries.
 * Same policy as the Python client.
 */
function retryServiceConfig(maxAttempts) {
  if (maxAttempts < 2) return JSON.stringify({ methodConfig: [] });
  return JSON.stringify({
    methodConfig: [
      {
        name: IDEMPOTENT_METHODS.map((method) => ({ service: EMBED_SERVICE, method })),
        retryPolicy: {
          maxAttempts,
          initialBackoff: '0.1s',
          maxBackoff: '2s',
          backoffMultiplier: 2,
          retryableStatusCodes: ['UNAVAILABLE', 'RESOURCE_EXHAUSTED'],
        },
      },
    ],
    // gRFC A6 throttling: a channel whose calls mostly fail stops retrying (no 4x load on an
    // overloaded service).
    retryThrottling: { maxTokens: 10, tokenRatio: 0.1 },
  });
}

// ------------------------------------------------------------------ typed errors
// gRFC A6 pushback trailer, and the gateway's older one (same value, deprecated).
const PUSHBACK_KEY = 'grpc-retry-pushback-ms';
const LEGACY_RETRY_AFTER_KEY = 'retry-after-ms';
const STATUS_NAMES = Object.freeze(
  Object.fromEntries(Object.entries(grpc.status).map(([name, value]) => [value, name])),
);

/**
 * A failed call. `code` is the numeric gRPC status (as grpc-js's errors), `codeName` its
 * name, `details` the server's message, `retryAfter` the wait in seconds the server asked
 * for (or null), `metadata` the trailers and `cause` the grpc-js error.
 */
class AegisError extends Error {
  constructor(code, details, { retryAfter = null, metadata = null, cause } = {}) {
    const codeName = STATUS_NAMES[code] || `STATUS_${code}`;
    super(`${codeName}: ${details}`, cause === undefined ? undefined : { cause });
    this.name = new.target.name;
    this.code = code;
    this.codeName = codeName;
    this.details = details;
    this.retryAfter = retryAfter;
    this.metadata = metadata;
  }

  /** Whether the same call may succeed when tried again later. */
  get retryable() {
    return false;
  }
}
/** The request itself is wrong (empty input, unknown dims, too many tokens...): fix it. */
class InvalidInputError extends AegisError {}
/** No bearer token, or one the gateway does not know. */
class AuthenticationError extends AegisError {}
/** The token is valid but may not call this method. */
class PermissionDeniedError extends AegisError {}
/** Rate limited or overloaded (RESOURCE_EXHAUSTED): wait `retryAfter` seconds and retry. */
class RateLimitError extends AegisError {
  get retryable() {
    return true;
  }
}
/** The gateway or every replica of the routed pool cannot serve now: retry later. */
class UnavailableError extends AegisError {
  get retryable() {
    return true;
  }
}
/** The call did not finish within its deadline. */
class DeadlineExceededError extends AegisError {}
/** The service is up but refuses to serve (e.g. its pools are in different spaces). */
class FailedPreconditionError extends AegisError {}
/** The call was cancelled (the channel closed, or the server stopped mid-call). */
class CancelledError extends AegisError {}
/** A failure inside the service (INTERNAL, UNKNOWN, DATA_LOSS, UNIMPLEMENTED). */
class ServerError extends AegisError {}

const ERROR_CLASS_OF = Object.freeze({
  [grpc.status.INVALID_ARGUMENT]: InvalidInputError,
  [grpc.status.OUT_OF_RANGE]: InvalidInputError,
  [grpc.status.NOT_FOUND]: InvalidInputError,
  [grpc.status.UNAUTHENTICATED]: AuthenticationError,
  [grpc.status.PERMISSION_DENIED]: PermissionDeniedError,
  [grpc.status.RESOURCE_EXHAUSTED]: RateLimitError,
  [grpc.status.UNAVAILABLE]: UnavailableError,
  [grpc.status.DEADLINE_EXCEEDED]: DeadlineExceededError,
  [grpc.status.FAILED_PRECONDITION]: FailedPreconditionError,
  [grpc.status.CANCELLED]: CancelledError,
  [grpc.status.INTERNAL]: ServerError,
  [grpc.status.UNKNOWN]: ServerError,
  [grpc.status.DATA_LOSS]: ServerError,
  [grpc.status.UNIMPLEMENTED]: ServerError,
});

/** Seconds the server asked the caller to wait (pushback trailer, else the legacy one). */
function retryAfterSeconds(metadata) {
  if (!metadata || typeof metadata.get !== 'function') return null;
  for (const key of [PUSHBACK_KEY, LEGACY_RETRY_AFTER_KEY]) {
    const [value] = metadata.get(key);
    if (value !== undefined && /^\d+$/.test(String(value).trim())) return Number(value) / 1000;
  }
  return null;
}

/** The typed error for a grpc-js ServiceError (its class follows the status code). */
function fromServiceError(err) {
  const code = typeof err.code === 'number' ? err.code : grpc.status.UNKNOWN;
  const Cls = ERROR_CLASS_OF[code] || AegisError;
  return new Cls(code, err.details || err.message || STATUS_NAMES[code], {
    retryAfter: retryAfterSeconds(err.metadata),
    metadata: err.metadata || null,
    cause: err,
  });
}

// proto-loader options: camelCase fields, enums as their names, uint64 as JS numbers
// (token counts and nanosecond timings stay far below 2**53), bytes as Buffers.
const LOADER_OPTIONS = Object.freeze({
  keepCase: false,
  longs: Number,
  enums: String,
  bytes: Buffer,
  defaults: true,
  arrays: true,
});

const packageCache = new Map();

/**
 * Load aegis.embed.v1 from `protosDir` (cached per directory).
 * @param {string} [protosDir]
 */
function loadEmbedPackage(protosDir) {
  const dir = path.resolve(protosDir || process.env.AEGIS_PROTOS_DIR || DEFAULT_PROTOS_DIR);
  let pkg = packageCache.get(dir);
  if (!pkg) {
    const file = path.join(dir, EMBED_PROTO);
    if (!fs.existsSync(file)) {
      throw new Error(
        `aegis protos not found at ${file}; pass {protosDir} or set AEGIS_PROTOS_DIR to the ` +
          "repository's protos/ directory",
      );
    }
    const definition = protoLoader.loadSync(EMBED_PROTO, { ...LOADER_OPTIONS, includeDirs: [dir] });
    pkg = grpc.loadPackageDefinition(definition).aegis.embed.v1;
    packageCache.set(dir, pkg);
  }
  return pkg;
}

/** Decode one IEEE 754 half float (bits as an unsigned 16-bit integer). */
function halfToFloat(h) {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x03ff;
  if (exponent === 0) return sign * fraction * 2 ** -24; // zero and subnormals
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

/** Little-endian float16 bytes -> Float32Array (every half is exactly representable). */
function decodeFloat16(buf) {
  const out = new Float32Array(buf.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = halfToFloat(buf[2 * i] | (buf[2 * i + 1] << 8));
  return out;
}

/** Packed sign bits (MSB first; binary bytes are packed - 128) -> Uint8Array of 0/1, length dims. */
function unpackSignBits(bytes, dims, offset) {
  const out = new Uint8Array(dims);
  for (let i = 0; i < dims; i++) {
    const byte = (bytes[i >> 3] + offset) & 0xff;
    out[i] = (byte >> (7 - (i & 7))) & 1;
  }
  return out;
}

/**
 * Decode EmbedResponse.embeddings into one typed array per input.
 * float32/float16 -> Float32Array, int8/binary -> Int8Array, uint8/ubinary -> Uint8Array
 * (binary/ubinary: the packed dims/8 bytes, or 0/1 bits with unpackBits).
 * Throws when a row does not match `dimensions`: a mis-shaped vector would corrupt an index.
 */
function decodeEmbeddings(response, { unpackBits = false } = {}) {
  const encoding = ENCODING_NAMES[response.encoding];
  if (!encoding) throw new Error(`unknown encoding ${response.encoding}; upgrade the client`);
  const dims = Number(response.dimensions);
  const rows = response.embeddings || [];
  if (rows.length && !dims) throw new Error(`response has ${rows.length} embeddings but dimensions == 0`);
  return rows.map((row, i) => {
    const values = row.values || [];
    const data = row.data || Buffer.alloc(0);
    const check = (got, want, unit) => {
      if (got !== want) {
        throw new Error(`embedding ${i}: ${got} ${unit} for ${encoding} with dimensions ${dims}, expected ${want}`);
      }
    };
    switch (encoding) {
      case 'float32':
        check(values.length, dims, 'values');
        return Float32Array.from(values);
      case 'float16':
        check(data.length, 2 * dims, 'bytes');
        return decodeFloat16(data);
      case 'int8':
        check(data.length, dims, 'bytes');
        return new Int8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.length));
      case 'uint8':
        check(data.length, dims, 'bytes');
        return Uint8Array.from(data);
      case 'binary':
      case 'ubinary': {
        check(data.length, Math.ceil(dims / 8), 'bytes');
        if (unpackBits) return unpackSignBits(data, dims, encoding === 'binary' ? 128 : 0);
        return encoding === 'binary'
          ? new Int8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.length))
          : Uint8Array.from(data);
      }
      default:
        throw new Error(`unhandled encoding ${encoding}`);
    }
  });
}

function readMaybeFile(value) {
  if (value == null) return null;
  if (Buffer.isBuffer(value)) return value;
  if (typeof value === 'string') return Buffer.from(value);
  throw new TypeError('certificates and keys must be Buffers or PEM strings');
}

function nonNegativeInt(name, value) {
  const v = value == null ? 0 : value;
  if (!Number.isInteger(v) || v < 0) throw new TypeError(`${name} must be a non-negative integer, got ${value}`);
  return v;
}

function lookup(table, name, what) {
  const v = table[name];
  if (!v) throw new TypeError(`${what} must be one of ${Object.keys(table).join(', ')}; got ${JSON.stringify(name)}`);
  return v;
}

class EmbedClient {
  /**
   * @param {string} [target] host:port of the gateway
   * @param {import('./index').EmbedClientOptions} [options]
   */
  constructor(target = DEFAULT_TARGET, options = {}) {
    const {
      tls = false,
      rootCerts = null,
      privateKey = null,
      certChain = null,
      token = null,
      deadlineMs = 30000,
      protosDir,
      channelOptions = {},
      maxAttempts = 4,
    } = options;
    if (!Number.isInteger(maxAttempts) || maxAttempts < 1 || maxAttempts > MAX_ATTEMPTS_LIMIT) {
      throw new TypeError(`maxAttempts must be 1..${MAX_ATTEMPTS_LIMIT} (1 = no retries), got ${maxAttempts}`);
    }
    if (!tls && (rootCerts || privateKey || certChain)) {
      throw new TypeError('certificates were given but tls is false; pass tls: true to use them');
    }
    if ((privateKey == null) !== (certChain == null)) {
      throw new TypeError('mTLS needs both privateKey and certChain');
    }
    if (deadlineMs != null && !(deadlineMs > 0)) {
      throw new TypeError(`deadlineMs must be > 0 or null (no deadline), got ${deadlineMs}`);
    }
    const credentials = tls
      ? grpc.credentials.createSsl(readMaybeFile(rootCerts), readMaybeFile(privateKey), readMaybeFile(certChain))
      : grpc.credentials.createInsecure();
    const pkg = loadEmbedPackage(protosDir);
    this.target = target;
    this.deadlineMs = deadlineMs;
    // Plain metadata rather than call credentials, so the token also travels on insecure
    // localhost / service-mesh channels where TLS terminates elsewhere (as the Python client).
    this._token = token;
    this._stub = new pkg.EmbedService(target, credentials, {
      ...DEFAULT_CHANNEL_OPTIONS,
      'grpc.service_config': retryServiceConfig(maxAttempts),
      ...channelOptions,
    });
  }

  _callOptions(deadlineMs) {
    const ms = deadlineMs === undefined ? this.deadlineMs : deadlineMs;
    return ms == null ? {} : { deadline: new Date(Date.now() + ms) };
  }

  _metadata() {
    const md = new grpc.Metadata();
    if (this._token) md.set('authorization', `Bearer ${this._token}`);
    return md;
  }

  _unary(method, request, deadlineMs) {
    return new Promise((resolve, reject) => {
      this._stub[method](request, this._metadata(), this._callOptions(deadlineMs), (err, response) =>
        err ? reject(fromServiceError(err)) : resolve(response),
      );
    });
  }

  /** Wait until the channel is connected (or reject after deadlineMs). */
  waitForReady(deadlineMs = 10000) {
    return new Promise((resolve, reject) => {
      this._stub.waitForReady(new Date(Date.now() + deadlineMs), (err) => (err ? reject(err) : resolve()));
    });
  }

  /**
   * Embed `inputs` of one kind. Resolves to the decoded vectors plus response metadata;
   * rejects with a typed AegisError subclass (`.code`, `.codeName`, `.details`,
   * `.retryAfter`) on failure.
   */
  async embed(inputs, inputType, options = {}) {
    const { dimensions = 0, encoding = 'float32', layers = 0, truncate = 'end', deadlineMs, unpackBits = false } = options;
    const list = typeof inputs === 'string' ? [inputs] : Array.from(inputs);
    const request = {
      inputs: list,
      inputType: lookup(INPUT_TYPES, inputType, 'inputType'),
      dimensions: nonNegativeInt('dimensions', dimensions),
      encoding: lookup(ENCODINGS, encoding, 'encoding'),
      layers: nonNegativeInt('layers', layers),
      truncate: lookup(TRUNCATE, truncate, 'truncate'),
    };
    const response = await this._unary('Embed', request, deadlineMs);
    return {
      embeddings: decodeEmbeddings(response, { unpackBits }),
      dimensions: Number(response.dimensions),
      encoding: ENCODING_NAMES[response.encoding],
      model: response.model,
      encoder: response.encoder,
      spaceId: response.spaceId,
      layers: Number(response.layers),
      fallback: Boolean(response.fallback),
      usage: response.usage,
      timing: response.timing,
    };
  }

  /** Query vectors, one typed array per input. */
  async embedQueries(inputs, options = {}) {
    return (await this.embed(inputs, 'query', options)).embeddings;
  }

  /** Document vectors, one typed array per input. */
  async embedDocuments(inputs, options = {}) {
    return (await this.embed(inputs, 'document', options)).embeddings;
  }

  /** Tokens and offsets of each input as the routed model sees them. */
  tokenize(inputs, inputType, { addPrompt = false, deadlineMs } = {}) {
    const list = typeof inputs === 'string' ? [inputs] : Array.from(inputs);
    return this._unary(
      'Tokenize',
      { inputs: list, inputType: lookup(INPUT_TYPES, inputType, 'inputType'), addPrompt },
      deadlineMs,
    );
  }

  /** GetInfo: space id, dimensions, Matryoshka dims, layer options, encodings, pool health. */
  info({ deadlineMs } = {}) {
    return this._unary('GetInfo', {}, deadlineMs);
  }

  /** Close the channel; calls in flight fail with CANCELLED. */
  close() {
    this._stub.close();
  }
}

module.exports = {
  EmbedClient,
  AegisError,
  InvalidInputError,
  AuthenticationError,
  PermissionDeniedError,
  RateLimitError,
  UnavailableError,
  DeadlineExceededError,
  FailedPreconditionError,
  CancelledError,
  ServerError,
  fromServiceError,
  retryServiceConfig,
  decodeEmbeddings,
  decodeFloat16,
  halfToFloat,
  loadEmbedPackage,
  status: grpc.status,
  DEFAULT_TARGET,
  DEFAULT_PROTOS_DIR,
};
