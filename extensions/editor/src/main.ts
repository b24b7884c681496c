/**
 * kernelgate's reference web editor. Solo (no `?room=`): one kernel per chosen language,
 * started on first use and shut down when the page goes away. Room (`?room=ID`): the
 * room's kernels, shared with every member; every execution's output appears on every
 * member's page with who ran it, and a viewer's page is read-only.
 */
import { basicSetup } from 'codemirror';
import { Compartment, EditorState } from '@codemirror/state';
import { EditorView, keymap } from '@codemirror/view';
import { Kernel, KernelManager, KernelMessage } from '@jupyterlab/services';
import { FileTree } from './files';
import { api, callerOf, describe, gatewayRoot, serverSettings, takeToken } from './gateway';
import { firstProgram, highlighting, languageOfFile } from './languages';
import { OutputArea } from './output';
import type { TerminalPanel } from './terminal';
import './style.css';

interface KernelSpecs {
  default: string | null;
  kernelspecs: Record<string, { name: string; spec: { language: string; display_name: string } }>;
}
interface KernelModel {
  id: string;
  name: string;
  execution_state?: string;
}
interface Room {
  id: string;
  name: string;
  languages: string[];
  state: string;
  members: { user: string; role: string }[];
  kernels: KernelModel[];
}
interface TerminalModel {
  name: string;
  kernel: string;
}

const $ = <T extends HTMLElement>(id: string): T => {
  const element = document.querySelector<T>(`[data-testid="${id}"]`);
  if (!element) {
    throw new Error(`missing element ${id}`);
  }
  return element;
};

const token = takeToken();
const caller = callerOf(token);
const settings = serverSettings(gatewayRoot(), token);
const params = new URLSearchParams(window.location.search);
const roomId = params.get('room');
const kernels = new KernelManager({ serverSettings: settings });

const ui = {
  language: $<HTMLSelectElement>('language'),
  run: $<HTMLButtonElement>('run'),
  interrupt: $<HTMLButtonElement>('interrupt'),
  restart: $<HTMLButtonElement>('restart'),
  state: $('state'),
  room: $('room'),
  members: $('members'),
  terminalOpen: $<HTMLButtonElement>('terminal-open'),
  terminalState: $('terminal-state'),
  notice: $('notice'),
  fileName: $<HTMLInputElement>('file-name'),
  fileCurrent: $('file-current'),
  fileButtons: {
    new: $<HTMLButtonElement>('file-new'),
    save: $<HTMLButtonElement>('file-save'),
    rename: $<HTMLButtonElement>('file-rename'),
    delete: $<HTMLButtonElement>('file-delete')
  }
};

let specs: KernelSpecs = { default: null, kernelspecs: {} };
let role = 'owner'; // solo: the caller owns their kernels
/** Open kernel connections by kernelspec name (solo: the caller's; room: the room's). */
const connections = new Map<string, Kernel.IKernelConnection>();
const starting = new Map<string, Promise<Kernel.IKernelConnection>>();
/** Each language's editor text, kept while another language is shown. */
const buffers = new Map<string, string>();
let shownLanguage = '';

const output = new OutputArea($('output'), roomId !== null);
const files = new FileTree($('files'), settings, file => showFile(file.path, file.content), report);
let terminal: TerminalPanel | null = null;

// -- the editor --------------------------------------------------------------------------

const languageSlot = new Compartment();
const editableSlot = new Compartment();
const editor = new EditorView({
  parent: $('editor'),
  state: EditorState.create({
    doc: '',
    extensions: [
      keymap.of([
        { key: 'Mod-Enter', run: () => (void run(), true) },
        { key: 'Shift-Enter', run: () => (void run(), true) },
        { key: 'Mod-s', run: () => (void saveFile(), true), preventDefault: true }
      ]),
      basicSetup,
      languageSlot.of([]),
      editableSlot.of([]),
      EditorView.theme({ '&': { height: '100%' }, '.cm-scroller': { overflow: 'auto' } })
    ]
  })
});

function setEditorText(text: string): void {
  editor.dispatch({ changes: { from: 0, to: editor.state.doc.length, insert: text } });
}

let highlighted = '';

/** Highlights for `language` once its package is loaded, unless another was asked since. */
function setHighlighting(language: string): void {
  highlighted = language;
  highlighting(language)
    .then(extension => {
      if (highlighted === language) {
        editor.dispatch({ effects: languageSlot.reconfigure(extension) });
      }
    })
    .catch(report);
}

function languageOf(spec: string): string {
  return specs.kernelspecs[spec]?.spec.language ?? spec;
}

function readOnly(): boolean {
  return role === 'viewer';
}

// -- kernels -----------------------------------------------------------------------------

function selected(): string {
  return ui.language.value;
}

function current(): Kernel.IKernelConnection | null {
  return connections.get(selected()) ?? null;
}

/** The kernel of the selected language: the room's, or a solo one started on first use. */
async function ensureKernel(): Promise<Kernel.IKernelConnection> {
  const spec = selected();
  const open = connections.get(spec);
  if (open && !open.isDisposed && open.status !== 'dead') {
    return open;
  }
  let pending = starting.get(spec);
  if (!pending) {
    pending = (roomId ? connectRoomKernel(spec) : startSoloKernel(spec)).finally(() => starting.delete(spec));
    starting.set(spec, pending);
  }
  showState();
  return pending;
}

async function startSoloKernel(spec: string): Promise<Kernel.IKernelConnection> {
  const connection = await kernels.startNew({ name: spec });
  adopt(spec, connection);
  await files.show(`api/kernels/${connection.id}/contents`);
  return connection;
}

async function connectRoomKernel(spec: string): Promise<Kernel.IKernelConnection> {
  // GET .../kernels starts the room's kernels again after expiry, death or a gateway restart
  const models = await api<KernelModel[]>(settings, `api/rooms/${roomId}/kernels`);
  const model = models.find(k => k.name === spec);
  if (!model) {
    throw new Error(`The room has no ${spec} kernel`);
  }
  return adopt(spec, kernels.connectTo({ model }));
}

function adopt(spec: string, connection: Kernel.IKernelConnection): Kernel.IKernelConnection {
  connections.get(spec)?.dispose();
  connections.set(spec, connection);
  connection.iopubMessage.connect((_, msg) => output.handle(msg, specs.kernelspecs[spec]?.spec.display_name ?? spec));
  connection.statusChanged.connect(() => spec === selected() && showState());
  connection.connectionStatusChanged.connect(() => spec === selected() && showState());
  connection.disposed.connect(() => {
    if (connections.get(spec) === connection) {
      connections.delete(spec);
      showState();
    }
  });
  showState();
  return connection;
}

/** Kernels this page has seen answer: after that, a lost connection is "reconnecting". */
const answered = new WeakSet<Kernel.IKernelConnection>();

function showState(): void {
  const kernel = current();
  let state = 'none';
  if (kernel) {
    const status = kernel.status;
    if (kernel.connectionStatus === 'connected' && (status === 'idle' || status === 'busy')) {
      answered.add(kernel);
    }
    const waiting = answered.has(kernel) ? 'reconnecting' : 'starting';
    if (kernel.connectionStatus === 'connecting') {
      state = waiting;
    } else if (kernel.connectionStatus === 'disconnected') {
      state = 'disconnected';
    } else {
      state = status === 'unknown' ? waiting : status === 'autorestarting' ? 'restarting' : status;
    }
  } else if (starting.has(selected())) {
    state = 'starting';
  }
  ui.state.textContent = state === 'none' ? 'no kernel' : state;
  ui.state.dataset.state = state;
  const alive = kernel !== null && !['dead', 'none'].includes(state);
  ui.run.disabled = readOnly();
  ui.interrupt.disabled = readOnly() || !alive;
  ui.restart.disabled = readOnly() || !alive;
}

async function run(): Promise<void> {
  if (readOnly()) {
    return;
  }
  const code = editor.state.doc.toString();
  try {
    const kernel = await ensureKernel();
    const future = kernel.requestExecute({ code, stop_on_error: true, allow_stdin: false });
    const reply = (await future.done) as KernelMessage.IExecuteReplyMsg;
    if (reply.content.status === 'error' && reply.content.ename === 'PermissionError') {
      report(new Error(String(reply.content.evalue)));
    }
  } catch (error) {
    report(error);
  }
}

async function interrupt(): Promise<void> {
  try {
    await current()?.interrupt();
  } catch (error) {
    report(error);
  }
}

async function restart(): Promise<void> {
  const kernel = current();
  if (!kernel) {
    return;
  }
  try {
    output.note(`Restarting the ${selected()} kernel: its memory is lost, its files stay.`);
    await kernel.restart();
  } catch (error) {
    report(error);
  }
}

function shutDownSoloKernels(): void {
  if (roomId) {
    return; // a room's kernels belong to the room
  }
  for (const connection of connections.values()) {
    // best effort while the page goes away: keepalive lets the request outlive the page
    void api(settings, `api/kernels/${connection.id}`, { method: 'DELETE', keepalive: true }).catch(() => undefined);
  }
}

// -- languages ---------------------------------------------------------------------------

function fillLanguages(names: string[], preferred: string | null): void {
  const options = names
    .map(name => ({ name, label: specs.kernelspecs[name]?.spec.display_name ?? name }))
    .sort((a, b) => a.label.localeCompare(b.label));
  ui.language.replaceChildren(
    ...options.map(({ name, label }) => {
      const option = document.createElement('option');
      option.value = name;
      option.textContent = label;
      return option;
    })
  );
  const chosen = [preferred, specs.default, 'python3', names[0]].find(n => n && names.includes(n));
  if (chosen) {
    ui.language.value = chosen;
  }
  ui.language.disabled = names.length === 0;
  switchLanguage();
}

function switchLanguage(): void {
  if (shownLanguage) {
    buffers.set(shownLanguage, editor.state.doc.toString());
  }
  shownLanguage = selected();
  setHighlighting(languageOf(shownLanguage));
  setEditorText(buffers.get(shownLanguage) ?? firstProgram(languageOf(shownLanguage)));
  showState();
  const kernel = connections.get(shownLanguage);
  if (!roomId && kernel) {
    void files.show(`api/kernels/${kernel.id}/contents`).catch(report);
  } else if (!roomId) {
    void files.show(null);
  }
}

// -- rooms -------------------------------------------------------------------------------

function roleIn(model: Room): string {
  if (caller.platformAdmin) {
    return 'owner';
  }
  return model.members.find(m => m.user === caller.user)?.role ?? 'viewer';
}

function showRoom(model: Room): void {
  role = roleIn(model);
  ui.room.hidden = false;
  ui.room.textContent = `${model.name}${model.state === 'expired' ? ' (expired)' : ''} · you are ${role}`;
  ui.members.hidden = false;
  ui.members.replaceChildren(
    ...model.members.map(member => {
      const item = document.createElement('li');
      item.dataset.user = member.user;
      item.dataset.role = member.role;
      item.textContent = member.user;
      item.title = member.role;
      const badge = document.createElement('small');
      badge.textContent = member.role;
      item.append(badge);
      if (member.user === caller.user) {
        item.classList.add('me');
      }
      return item;
    })
  );
  applyRole();
}

function applyRole(): void {
  const viewer = readOnly();
  document.body.classList.toggle('read-only', viewer);
  editor.dispatch({
    effects: editableSlot.reconfigure(viewer ? [EditorState.readOnly.of(true), EditorView.editable.of(false)] : [])
  });
  ui.fileButtons.new.disabled = viewer;
  ui.fileButtons.save.disabled = viewer;
  ui.fileButtons.rename.disabled = viewer;
  ui.fileButtons.delete.disabled = viewer || role === 'participant'; // deleting needs admin
  ui.fileName.disabled = viewer;
  showState();
}

async function refreshRoom(): Promise<void> {
  if (!roomId) {
    return;
  }
  try {
    showRoom(await api<Room>(settings, `api/rooms/${roomId}`));
  } catch (error) {
    report(error);
  }
}

// -- terminal ----------------------------------------------------------------------------

async function openTerminal(): Promise<void> {
  const panel = document.querySelector<HTMLElement>('.terminal-panel')!;
  panel.hidden = false;
  try {
    if (!terminal) {
      const { TerminalPanel } = await import('./terminal'); // xterm.js: loaded on first use
      terminal = new TerminalPanel($('terminal'), settings, state => (ui.terminalState.textContent = state), readOnly());
    }
    const kernelId = await kernelIdForTerminal();
    const running = await api<TerminalModel[]>(settings, 'api/terminals');
    const shared = running.find(t => t.kernel === kernelId);
    if (shared) {
      terminal.attach(shared.name); // the sandbox's shell that others already use
    } else if (readOnly()) {
      ui.terminalState.textContent = 'no terminal is open in this room yet (a viewer cannot open one)';
    } else {
      const body = roomId ? { room: roomId, language: selected() } : { kernel: kernelId };
      const created = await api<TerminalModel>(settings, 'api/terminals', { method: 'POST', body });
      terminal.attach(created.name);
    }
  } catch (error) {
    report(error);
  }
}

async function kernelIdForTerminal(): Promise<string> {
  if (roomId && readOnly()) {
    const models = await api<KernelModel[]>(settings, `api/rooms/${roomId}/kernels`);
    const model = models.find(k => k.name === selected());
    if (!model) {
      throw new Error(`The room has no ${selected()} kernel`);
    }
    return model.id;
  }
  return (await ensureKernel()).id;
}

// -- files -------------------------------------------------------------------------------

function showFile(path: string, content: string): void {
  buffers.set(shownLanguage, editor.state.doc.toString());
  setEditorText(content);
  const language = languageOfFile(path);
  if (language) {
    setHighlighting(language);
  }
  ui.fileCurrent.textContent = path;
  ui.fileName.value = path;
}

async function workspaceReady(): Promise<void> {
  if (!files.ready) {
    await ensureKernel();
  }
}

function typedName(): string {
  const name = ui.fileName.value.trim().replace(/^\/+/, '');
  if (!name) {
    throw new Error('Type a file name first');
  }
  return name;
}

async function newFile(): Promise<void> {
  try {
    const name = typedName();
    await workspaceReady();
    await files.save(name, '');
    await files.open(name);
  } catch (error) {
    report(error);
  }
}

async function saveFile(): Promise<void> {
  if (readOnly()) {
    return;
  }
  try {
    const path = files.current ?? typedName();
    await workspaceReady();
    await files.save(path, editor.state.doc.toString());
    ui.fileCurrent.textContent = `${path} (saved)`;
  } catch (error) {
    report(error);
  }
}

async function renameFile(): Promise<void> {
  try {
    const from = files.current;
    if (!from) {
      throw new Error('Open a file first');
    }
    const to = typedName();
    await files.rename(from, to);
    ui.fileCurrent.textContent = files.current ?? '';
  } catch (error) {
    report(error);
  }
}

async function deleteFile(): Promise<void> {
  try {
    const path = files.current;
    if (!path) {
      throw new Error('Open a file first');
    }
    if (!window.confirm(`Delete ${path}?`)) {
      return;
    }
    await files.remove(path);
    ui.fileCurrent.textContent = '';
  } catch (error) {
    report(error);
  }
}

// -- page --------------------------------------------------------------------------------

let noticeTimer: number | undefined;

function report(error: unknown): void {
  console.warn(error);
  ui.notice.textContent = describe(error);
  ui.notice.hidden = false;
  window.clearTimeout(noticeTimer);
  noticeTimer = window.setTimeout(() => (ui.notice.hidden = true), 10_000);
}

async function start(): Promise<void> {
  ui.language.addEventListener('change', switchLanguage);
  ui.run.addEventListener('click', () => void run());
  ui.interrupt.addEventListener('click', () => void interrupt());
  ui.restart.addEventListener('click', () => void restart());
  ui.terminalOpen.addEventListener('click', () => void openTerminal());
  $('clear').addEventListener('click', () => output.clear());
  ui.fileButtons.new.addEventListener('click', () => void newFile());
  ui.fileButtons.save.addEventListener('click', () => void saveFile());
  ui.fileButtons.rename.addEventListener('click', () => void renameFile());
  ui.fileButtons.delete.addEventListener('click', () => void deleteFile());
  ui.notice.addEventListener('click', () => (ui.notice.hidden = true));
  window.addEventListener('pagehide', shutDownSoloKernels);

  specs = await api<KernelSpecs>(settings, 'api/kernelspecs');
  if (roomId) {
    const model = await api<Room>(settings, `api/rooms/${roomId}`);
    showRoom(model);
    fillLanguages(model.languages, params.get('language'));
    await files.show(`api/rooms/${roomId}/contents`);
    // every room kernel, so that every member's execution shows here, whatever language
    for (const spec of model.languages) {
      const kernel = model.kernels.find(k => k.name === spec);
      if (kernel) {
        adopt(spec, kernels.connectTo({ model: kernel }));
      }
    }
    window.setInterval(() => void refreshRoom(), 15_000);
  } else {
    applyRole();
    fillLanguages(Object.keys(specs.kernelspecs), params.get('language'));
  }
  document.body.dataset.ready = 'true';
}

start().catch(error => {
  report(error);
  document.body.dataset.ready = 'error';
});
