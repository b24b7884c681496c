/**
 * The page's connection to the gateway: where it is, who is calling, and REST calls.
 *
 * The token comes from the URL fragment (`#token=...`), is removed from the address bar at
 * once and kept in this tab's sessionStorage (a reload keeps working). REST requests carry
 * it as `Authorization: Bearer`, never in a URL; WebSockets carry it as `?token=` because
 * browsers cannot set headers on them. No token: the gateway runs with --no-auth and
 * treats every request as its development user.
 */
import { ServerConnection } from '@jupyterlab/services';

const TOKEN_KEY = 'kernelgate-token';

/** The gateway's development user (--no-auth), the caller when there is no token. */
export const DEV_USER = 'dev';

export interface Caller {
  user: string;
  platformAdmin: boolean;
}

/** An error answer of the gateway: `{"reason", "message"}` and the status. */
export class GatewayError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string
  ) {
    super(message);
  }
}

/** Reads `#token=` from the fragment, removes it from the address bar, remembers it. */
export function takeToken(): string {
  const fragment = new URLSearchParams(window.location.hash.slice(1));
  const fromUrl = fragment.get('token');
  if (fromUrl !== null) {
    fragment.delete('token');
    const rest = fragment.toString();
    const clean = window.location.pathname + window.location.search + (rest ? `#${rest}` : '');
    window.history.replaceState(window.history.state, '', clean);
    sessionStorage.setItem(TOKEN_KEY, fromUrl);
    return fromUrl;
  }
  return sessionStorage.getItem(TOKEN_KEY) ?? '';
}

/** The gateway's root URL: the page's own location without its trailing `editor/...`. */
export function gatewayRoot(location: Location = window.location): string {
  const path = location.pathname.replace(/editor(\/[^/]*)?$/, '');
  return location.origin + (path.endsWith('/') ? path : `${path}/`);
}

/** Who the token names (its unverified claims; the gateway enforces every right itself). */
export function callerOf(token: string): Caller {
  if (!token) {
    return { user: DEV_USER, platformAdmin: false };
  }
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), '=')));
    const roles: unknown = claims.roles;
    return {
      user: String(claims.sub ?? ''),
      platformAdmin: Array.isArray(roles) && roles.includes('admin')
    };
  } catch {
    return { user: '', platformAdmin: false };
  }
}

/** Settings for @jupyterlab/services: WebSockets get `?token=`, REST a Bearer header. */
export function serverSettings(root: string, token: string): ServerConnection.ISettings {
  const bearerFetch = (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const request = new Request(input, init);
    if (token) {
      request.headers.set('Authorization', `Bearer ${token}`);
    }
    return fetch(request);
  };
  return ServerConnection.makeSettings({
    baseUrl: root,
    wsUrl: root.replace(/^http/, 'ws'),
    token,
    appendToken: true,
    fetch: bearerFetch
  });
}

/** One REST call: JSON in and out; a GatewayError for any error answer. */
export async function api<T = unknown>(
  settings: ServerConnection.ISettings,
  path: string,
  init: { method?: string; body?: unknown; keepalive?: boolean } = {}
): Promise<T> {
  const response = await settings.fetch(settings.baseUrl + path, {
    method: init.method ?? 'GET',
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
    headers: init.body === undefined ? {} : { 'Content-Type': 'application/json' },
    cache: 'no-store',
    keepalive: init.keepalive
  });
  const text = await response.text();
  const body = text ? safeJson(text) : null;
  if (!response.ok) {
    const error = (body ?? {}) as { reason?: string; message?: string };
    throw new GatewayError(
      response.status,
      error.reason ?? response.statusText,
      error.message ?? `${response.status} ${response.statusText}`
    );
  }
  return body as T;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** A readable line for any error the page meets. */
export function describe(error: unknown): string {
  if (error instanceof GatewayError) {
    return `${error.status} ${error.reason}: ${error.message}`;
  }
  if (error instanceof ServerConnection.ResponseError) {
    return `${error.response.status}: ${error.message}`;
  }
  return error instanceof Error ? error.message : String(error);
}
