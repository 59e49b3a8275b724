// Types for the aegis-serve Node.js client (index.js).
import type { ChannelOptions, Metadata, ServiceError, status as GrpcStatus } from '@grpc/grpc-js';

export type InputType = 'query' | 'document';
export type EncodingName = 'float32' | 'float16' | 'int8' | 'uint8' | 'binary' | 'ubinary';
export type TruncateMode = 'end' | 'none';
/** float32/float16 → Float32Array, int8/binary → Int8Array, uint8/ubinary (and unpacked bits) → Uint8Array. */
export type Vector = Float32Array | Int8Array | Uint8Array;

export type EncodingVector<E extends EncodingName> = E extends 'float32' | 'float16'
  ? Float32Array
  : E extends 'int8'
    ? Int8Array
    : E extends 'binary'
      ? Int8Array | Uint8Array // packed bits (Int8Array), or 0/1 per dimension with unpackBits
      : Uint8Array;

export interface EmbedClientOptions {
  /** Use TLS (system roots unless rootCerts is given). Default false (plaintext). */
  tls?: boolean;
  /** PEM CA bundle (Buffer or string) to verify the server. */
  rootCerts?: Buffer | string | null;
  /** PEM client key for mTLS (with certChain). */
  privateKey?: Buffer | string | null;
  /** PEM client certificate chain for mTLS (with privateKey). */
  certChain?: Buffer | string | null;
  /** Sent as `authorization: Bearer <token>` metadata on every call. */
  token?: string | null;
  /** Default deadline of every call in milliseconds; null = none. Default 30000. */
  deadlineMs?: number | null;
  /** Directory holding aegis/embed/v1/embed.proto. Default: env AEGIS_PROTOS_DIR, else the repo's protos/. */
  protosDir?: string;
  /** Extra grpc-js channel options (override the defaults, `grpc.service_config` included). */
  channelOptions?: Partial<ChannelOptions>;
  /**
   * Tries per idempotent call (1..5; 1 = no retries). Default 4: UNAVAILABLE and
   * RESOURCE_EXHAUSTED are retried within the deadline, waiting the server's
   * `grpc-retry-pushback-ms`.
   */
  maxAttempts?: number;
}

export interface EmbedOptions<E extends EncodingName = EncodingName> {
  /** 0 = full dimension; otherwise one of GetInfo's matryoshkaDimensions. */
  dimensions?: number;
  /** Default 'float32'. */
  encoding?: E;
  /** Documents only: 0 = full depth; otherwise one of GetInfo's layerOptions. */
  layers?: number;
  /** 'end' cuts over-long inputs (default); 'none' rejects them with INVALID_ARGUMENT. */
  truncate?: TruncateMode;
  /** Deadline of this call in ms (overrides the client default; null = none). */
  deadlineMs?: number | null;
  /** binary/ubinary: return one 0/1 Uint8Array of length `dimensions` instead of packed bytes. */
  unpackBits?: boolean;
}

export interface Usage {
  inputTokens: number;
  tokensPerInput: number[];
}

export interface Timing {
  queueNs: number;
  tokenizationNs: number;
  inferenceNs: number;
  totalNs: number;
}

export interface EmbedResult<V extends Vector = Vector> {
  embeddings: V[];
  dimensions: number;
  encoding: EncodingName;
  model: string;
  encoder: string;
  spaceId: string;
  layers: number;
  fallback: boolean;
  usage: Usage;
  timing: Timing;
}

export interface Token {
  id: number;
  text: string;
  start: number;
  stop: number;
  special: boolean;
}

export interface TokenizeResponse {
  inputs: { tokens: Token[]; exceedsMaxTokens: boolean }[];
  maxInputTokens: number;
  model: string;
}

export interface PoolInfo {
  role: string;
  model: string;
  spaceId: string;
  replicas: string[];
  healthyReplicas: number;
  serving: boolean;
  device: string;
  dtype: string;
  maxInputTokens: number;
  layerOptions: number[];
}

export interface GetInfoResponse {
  spaceId: string;
  dimensions: number;
  matryoshkaDimensions: number[];
  layerOptions: number[];
  maxInputTokens: number;
  /** Enum names, e.g. 'ENCODING_INT8'. */
  encodings: string[];
  pools: PoolInfo[];
  maxInputsPerRequest: number;
  calibrated: boolean;
  serving: boolean;
  problem: string;
}

/**
 * Calls reject with an AegisError subclass: `.code` (numeric gRPC status, as grpc-js),
 * `.codeName`, `.details` (the server's message), `.retryAfter` (seconds the server asked the
 * caller to wait, or null), `.metadata` (trailers) and `.cause` (the grpc-js ServiceError).
 */
export class AegisError extends Error {
  constructor(
    code: number,
    details: string,
    options?: { retryAfter?: number | null; metadata?: Metadata | null; cause?: unknown },
  );
  readonly code: number;
  readonly codeName: string;
  readonly details: string;
  readonly retryAfter: number | null;
  readonly metadata: Metadata | null;
  /** Whether the same call may succeed when tried again later. */
  readonly retryable: boolean;
}
/** INVALID_ARGUMENT / OUT_OF_RANGE / NOT_FOUND: fix the request. */
export class InvalidInputError extends AegisError {}
/** UNAUTHENTICATED: no token, or an unknown one. */
export class AuthenticationError extends AegisError {}
/** PERMISSION_DENIED: the token may not call this method. */
export class PermissionDeniedError extends AegisError {}
/** RESOURCE_EXHAUSTED: rate limited or overloaded; wait `retryAfter` seconds. */
export class RateLimitError extends AegisError {}
/** UNAVAILABLE: nothing can serve now; retry later. */
export class UnavailableError extends AegisError {}
/** DEADLINE_EXCEEDED. */
export class DeadlineExceededError extends AegisError {}
/** FAILED_PRECONDITION: the service refuses to serve (e.g. pools in different spaces). */
export class FailedPreconditionError extends AegisError {}
/** CANCELLED. */
export class CancelledError extends AegisError {}
/** INTERNAL / UNKNOWN / DATA_LOSS / UNIMPLEMENTED. */
export class ServerError extends AegisError {}
/** The typed error for a grpc-js ServiceError. */
export function fromServiceError(err: ServiceError): AegisError;
/** The retry service config the client installs for `maxAttempts`. */
export function retryServiceConfig(maxAttempts: number): string;
/** @deprecated calls now reject with AegisError. */
export type EmbedError = AegisError;

export class EmbedClient {
  constructor(target?: string, options?: EmbedClientOptions);
  readonly target: string;
  readonly deadlineMs: number | null;
  waitForReady(deadlineMs?: number): Promise<void>;
  embed<E extends EncodingName = 'float32'>(
    inputs: string | Iterable<string>,
    inputType: InputType,
    options?: EmbedOptions<E>,
  ): Promise<EmbedResult<EncodingVector<E>>>;
  embedQueries<E extends EncodingName = 'float32'>(
    inputs: string | Iterable<string>,
    options?: EmbedOptions<E>,
  ): Promise<EncodingVector<E>[]>;
  embedDocuments<E extends EncodingName = 'float32'>(
    inputs: string | Iterable<string>,
    options?: EmbedOptions<E>,
  ): Promise<EncodingVector<E>[]>;
  tokenize(
    inputs: string | Iterable<string>,
    inputType: InputType,
    options?: { addPrompt?: boolean; deadlineMs?: number | null },
  ): Promise<TokenizeResponse>;
  info(options?: { deadlineMs?: number | null }): Promise<GetInfoResponse>;
  close(): void;
}

export function decodeEmbeddings(response: unknown, options?: { unpackBits?: boolean }): Vector[];
export function decodeFloat16(bytes: Uint8Array): Float32Array;
export function halfToFloat(bits: number): number;
export function loadEmbedPackage(protosDir?: string): any;
export const status: typeof GrpcStatus;
export const DEFAULT_TARGET: string;
export const DEFAULT_PROTOS_DIR: string;
