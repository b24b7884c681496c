/**
 * The rooms panel widget (plain DOM, re-rendered from the server's answers).
 *
 * Test ids: kg-error, kg-active, kg-refresh, kg-room-list, kg-room-<id>,
 * kg-switch-<id>, kg-leave-room, kg-room-detail, kg-members, kg-member-<user>,
 * kg-languages, kg-snapshot-take, kg-snapshots, kg-snapshot-<id>,
 * kg-snapshot-restore-<id>, kg-create-name, kg-create-language-<name>, kg-create-submit.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { Widget } from '@lumino/widgets';

import { api, ILanguage, IRoom, ISnapshot, IState } from './api';

type Child = Node | string | null | undefined;

function el(
  tag: string,
  attrs: Record<string, string> = {},
  ...children: Child[]
): HTMLElement {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(child);
    }
  }
  return node;
}

function button(testid: string, label: string, onClick: () => void): HTMLElement {
  const node = el('button', { 'data-testid': testid, class: 'jp-Button kg-Button', type: 'button' }, label);
  node.addEventListener('click', onClick);
  return node;
}

export class RoomsPanel extends Widget {
  constructor(app: JupyterFrontEnd) {
    super();
    this._app = app;
    this.addClass('kg-RoomsPanel');
    this.node.setAttribute('data-testid', 'kg-rooms');
  }

  protected onAfterShow(): void {
    void this.refresh();
  }

  protected onAfterAttach(): void {
    void this.refresh();
  }

  /** Reload everything shown; an error is displayed, never swallowed. */
  async refresh(): Promise<void> {
    await this._run(async () => {
      this._state = await api.state();
      if (!this._state.gateway) {
        this._rooms = [];
        return;
      }
      const [rooms, languages] = await Promise.all([api.rooms(), api.languages()]);
      this._rooms = rooms;
      this._languages = languages;
      const shown = this._selected ?? this._state.room;
      this._selected = rooms.some(r => r.id === shown) ? shown : null;
      this._snapshots = this._selected ? await api.snapshots(this._selected) : [];
    });
  }

  private async _run(action: () => Promise<void>): Promise<void> {
    this._error = '';
    this._busy = true;
    this._render();
    try {
      await action();
    } catch (error) {
      this._error = (error as Error).message || String(error);
      console.error('kernelgate rooms:', error);
    }
    this._busy = false;
    this._render();
  }

  private _select(id: string): void {
    this._selected = id;
    void this.refresh();
  }

  private async _switch(room: string | null): Promise<void> {
    await this._run(async () => {
      this._state = await api.switchRoom(room);
      this._selected = room;
      await this._afterSwitch();
    });
    await this.refresh();
  }

  /** Lab's file browser and running terminals now come from another place. */
  private async _afterSwitch(): Promise<void> {
    const { commands, serviceManager } = this._app;
    if (commands.hasCommand('filebrowser:go-to-path')) {
      await commands.execute('filebrowser:go-to-path', { path: '/' });
    }
    if (commands.hasCommand('filebrowser:refresh')) {
      await commands.execute('filebrowser:refresh');
    }
    await serviceManager.terminals.refreshRunning();
  }

  private async _takeSnapshot(room: string): Promise<void> {
    await this._run(async () => {
      await api.takeSnapshot(room);
      this._snapshots = await api.snapshots(room);
    });
  }

  private async _restore(room: string, snapshot: string): Promise<void> {
    await this._run(async () => {
      await api.restoreSnapshot(room, snapshot);
      this._snapshots = await api.snapshots(room);
      if (this._state?.room === room) {
        await this._afterSwitch();
      }
    });
  }

  private async _create(name: string, languages: string[]): Promise<void> {
    await this._run(async () => {
      const room = await api.createRoom(name, languages);
      this._selected = room.id;
    });
    await this.refresh();
  }

  private _render(): void {
    const state = this._state;
    const active = state?.room ?? null;
    const parts: Child[] = [
      el('h2', { class: 'kg-Title' }, 'Rooms', this._busy ? el('span', { class: 'kg-Busy', 'data-testid': 'kg-busy' }, ' …') : null),
      this._error ? el('div', { class: 'kg-Error', 'data-testid': 'kg-error', role: 'alert' }, this._error) : null,
      el('div', { class: 'kg-Active', 'data-testid': 'kg-active', 'data-room': active ?? '' },
        !state ? 'Loading…'
          : !state.gateway ? 'Lab is not using a gateway: its files and terminals are its own.'
          : active ? `Lab is in room ${this._rooms.find(r => r.id === active)?.name ?? active}`
          : "No room: Lab's files and terminals are its own."),
      el('div', { class: 'kg-Toolbar' },
        button('kg-refresh', 'Refresh', () => void this.refresh()),
        active ? button('kg-leave-room', 'Leave room', () => void this._switch(null)) : null)
    ];
    if (state?.gateway) {
      parts.push(this._renderList(active), this._renderDetail(active), this._renderCreate());
    }
    this.node.replaceChildren(...parts.filter((p): p is Node | string => !!p));
  }

  private _renderList(active: string | null): HTMLElement {
    const items = this._rooms.map(room => {
      const item = el('li', {
        class: 'kg-Room' + (room.id === this._selected ? ' kg-mod-selected' : ''),
        'data-testid': `kg-room-${room.id}`,
        'data-room-id': room.id
      },
        el('span', { class: 'kg-RoomName' }, room.name),
        el('span', { class: 'kg-RoomMeta' }, ` ${room.languages.join(', ')} · ${room.state}`),
        room.id === active ? el('span', { class: 'kg-Badge' }, 'active')
          : button(`kg-switch-${room.id}`, 'Switch', () => void this._switch(room.id)));
      item.addEventListener('click', event => {
        if ((event.target as HTMLElement).tagName !== 'BUTTON') {
          this._select(room.id);
        }
      });
      return item;
    });
    return el('ul', { class: 'kg-RoomList', 'data-testid': 'kg-room-list' },
      ...(items.length ? items : [el('li', { class: 'kg-Empty' }, 'You are in no room yet.')]));
  }

  private _renderDetail(active: string | null): HTMLElement | null {
    const room: IRoom | undefined = this._rooms.find(r => r.id === this._selected);
    if (!room) {
      return null;
    }
    const members = room.members.map(m =>
      el('li', { 'data-testid': `kg-member-${m.user}`, 'data-role': m.role }, `${m.user} — ${m.role}`));
    const snapshots = this._snapshots.map((s: ISnapshot) =>
      el('li', { 'data-testid': `kg-snapshot-${s.id}`, class: 'kg-Snapshot' },
        el('span', {}, `${new Date(s.created_at).toLocaleString()} · ${s.reason} · ${s.files} files · ${s.size} B `),
        button(`kg-snapshot-restore-${s.id}`, 'Restore', () => void this._restore(room.id, s.id))));
    return el('section', { class: 'kg-Detail', 'data-testid': 'kg-room-detail', 'data-room-id': room.id },
      el('h3', {}, room.name, room.id === active ? ' (active)' : ''),
      el('div', { class: 'kg-RoomMeta' }, `id ${room.id} · owner ${room.owner}`),
      el('h4', {}, 'Languages'),
      el('div', { 'data-testid': 'kg-languages' }, room.languages.join(', ')),
      el('h4', {}, 'Members'),
      el('ul', { 'data-testid': 'kg-members' }, ...members),
      el('h4', {}, 'Snapshots'),
      button('kg-snapshot-take', 'Take snapshot', () => void this._takeSnapshot(room.id)),
      el('ul', { 'data-testid': 'kg-snapshots' },
        ...(snapshots.length ? snapshots : [el('li', { class: 'kg-Empty' }, 'No snapshot yet.')])));
  }

  private _renderCreate(): HTMLElement {
    const name = el('input', { 'data-testid': 'kg-create-name', placeholder: 'Room name', class: 'jp-mod-styled' }) as HTMLInputElement;
    const choices = this._languages.filter((l: ILanguage) => l.allowed && l.ready).map(l => {
      const box = el('input', { type: 'checkbox', value: l.kernelspec, 'data-testid': `kg-create-language-${l.kernelspec}` }) as HTMLInputElement;
      return el('label', { class: 'kg-Language' }, box, ` ${l.display_name}`);
    });
    const create = button('kg-create-submit', 'Create room', () => {
      const languages = Array.from(form.querySelectorAll('input[type=checkbox]'))
        .filter(b => (b as HTMLInputElement).checked).map(b => (b as HTMLInputElement).value);
      void this._create(name.value.trim(), languages);
    });
    const form = el('section', { class: 'kg-Create' }, el('h4', {}, 'New room'), name, el('div', {}, ...choices), create);
    return form;
  }

  private _app: JupyterFrontEnd;
  private _state: IState | null = null;
  private _rooms: IRoom[] = [];
  private _languages: ILanguage[] = [];
  private _snapshots: ISnapshot[] = [];
  private _selected: string | null = null;
  private _error = '';
  private _busy = false;
}
