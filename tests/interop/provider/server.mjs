// An OpenID provider we did not write, for cabroker's interop tests: panva's oidc-provider
// (OpenID Certified) with the device authorization grant (RFC 8628) and its own development
// login and consent pages. What is ours is this configuration, and a few test-only routes under
// /_test/ that do what a provider's operator does: rotate and retire signing keys, and
// expire a pending device code. /_test/slow-down makes the next pending answers `slow_down`:
// oidc-provider defines that error but never sends it, so the client's handling of it is shown
// this way.
//
// Usage: node server.mjs   (prints one JSON line {"issuer": ...} once it listens on 127.0.0.1)
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import http from 'node:http';

import Provider, { errors } from 'oidc-provider';

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

// The people who can log in (the development login page takes any password).
const ACCOUNTS = {
  alice: { email: 'alice@example.com', email_verified: true, groups: ['engineering'] },
  bob: { email: 'bob@example.com', email_verified: true, groups: ['sales'] },
};

function signingKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig' };
}

const state = {
  keys: [signingKey()], // the first signs; the others are still published
  slowDowns: 0,
};

function configuration() {
  return {
    clients: [
      {
        // a public client, as Okta, Entra ID and Keycloak register a CLI
        client_id: 'cabroker-cli',
        client_name: 'cabroker',
        token_endpoint_auth_method: 'none',
        grant_types: [DEVICE_GRANT],
        response_types: [],
        redirect_uris: [],
      },
      {
        // a client with a "secret" that is not secret, as Google registers a device client
        client_id: 'cabroker-tv',
        client_name: 'cabroker (device client)',
        client_secret: 'interop-public-secret',
        token_endpoint_auth_method: 'client_secret_post',
        grant_types: [DEVICE_GRANT],
        response_types: [],
        redirect_uris: [],
      },
    ],
    jwks: { keys: state.keys },
    features: {
      deviceFlow: { enabled: true },
      devInteractions: { enabled: true },
      revocation: { enabled: false },
    },
    scopes: ['openid', 'email', 'groups'],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
    // The broker reads only the ID token: the claims of the scopes asked for must be in it,
    // not only at the userinfo endpoint (oidc-provider's default).
    conformIdTokenClaims: false,
    cookies: { keys: ['interop-cookie-key'] },
    async findAccount(ctx, id) {
      return {
        accountId: id,
        async claims() {
          return { sub: id, ...(ACCOUNTS[id] ?? {}) };
        },
      };
    },
  };
}

let provider;

function build(issuer) {
  const next = new Provider(issuer, configuration());
  next.use(async (ctx, nextMiddleware) => {
    await nextMiddleware();
    if (
      ctx.path === '/token'
      && ctx.status === 400
      && ctx.body?.error === 'authorization_pending'
      && state.slowDowns > 0
    ) {
      state.slowDowns -= 1;
      const error = new errors.SlowDown();
      ctx.body = { error: error.error, error_description: error.error_description };
    }
  });
  return next;
}

async function testRoute(req, res, url) {
  const answer = (status, body) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  if (req.method !== 'POST') return answer(405, { error: 'POST only' });
  switch (url.pathname) {
    case '/_test/rotate': // a new signing key; the old ones stay published
      state.keys = [signingKey(), ...state.keys];
      break;
    case '/_test/retire': // only the signing key stays published
      state.keys = state.keys.slice(0, 1);
      break;
    case '/_test/slow-down':
      state.slowDowns = Number(url.searchParams.get('count') ?? '1');
      return answer(200, { slow_downs: state.slowDowns });
    case '/_test/expire': {
      const userCode = url.searchParams.get('user_code') ?? '';
      const code = await provider.DeviceCode.findByUserCode(userCode.replace(/[^A-Z]/gi, '').toUpperCase());
      if (!code) return answer(404, { error: 'no such user code' });
      code.exp = Math.floor(Date.now() / 1000) - 1;
      await code.save();
      return answer(200, { expired: true });
    }
    default:
      return answer(404, { error: 'no such test route' });
  }
  provider = build(provider.issuer);
  return answer(200, { kids: state.keys.map((key) => key.kid) });
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (url.pathname.startsWith('/_test/')) {
    testRoute(req, res, url).catch((error) => {
      res.writeHead(500);
      res.end(String(error));
    });
    return;
  }
  provider.callback()(req, res);
});

server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () => {
  const { port } = server.address();
  provider = build(`http://127.0.0.1:${port}`);
  process.stdout.write(`${JSON.stringify({ issuer: provider.issuer, kid: state.keys[0].kid })}\n`);
});
