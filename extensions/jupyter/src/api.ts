/**
 * Calls to the Lab server's `/kernelgate/` routes; a failure throws an Error whose
 * message is the server's (or kernelgate's) own.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export interface IMember {
  user: string;
  role: string;
}

export interface IRoom {
  id: string;
  name: string;
  owner: string;
  languages: string[];
  state: string;
  members: IMember[];
}

export interface ISnapshot {
  id: string;
  created_at: string;
  created_by: string;
  reason: string;
  files: number;
  size: number;
}

export interface ILanguage {
  name: string;
  display_name: string;
  kernelspec: string;
  allowed: boolean;
  ready: boolean;
}

export interface IState {
  gateway: boolean;
  room: string | null;
}

const settings = ServerConnection.makeSettings();

export async function request<T>(
  path: string,
  method = 'GET',
  body?: unknown
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, 'kernelgate', path);
  const init: RequestInit = { method };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
  }
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  const text = await response.text();
  let data: any = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { message: text };
    }
  }
  if (!response.ok) {
    const message = (data && (data.message || data.reason)) || response.statusText;
    throw new Error(`${response.status}: ${message}`);
  }
  return data as T;
}

export const api = {
  state: () => request<IState>('state'),
  switchRoom: (room: string | null) => request<IState>('state', 'PUT', { room }),
  rooms: () => request<IRoom[]>('api/rooms'),
  room: (id: string) => request<IRoom>(`api/rooms/${encodeURIComponent(id)}`),
  languages: () => request<ILanguage[]>('api/languages'),
  createRoom: (name: string, languages: string[]) =>
    request<IRoom>('api/rooms', 'POST', { name, languages }),
  snapshots: (id: string) =>
    request<ISnapshot[]>(`api/rooms/${encodeURIComponent(id)}/snapshots`),
  takeSnapshot: (id: string) =>
    request<ISnapshot>(`api/rooms/${encodeURIComponent(id)}/snapshots`, 'POST'),
  restoreSnapshot: (id: string, snapshot: string) =>
    request<{ previous: ISnapshot }>(
      `api/rooms/${encodeURIComponent(id)}/snapshots/${encodeURIComponent(snapshot)}/restore`,
      'POST'
    )
};
