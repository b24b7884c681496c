/**
 * The file tree of a workspace through the Jupyter Contents API, with @jupyterlab/services'
 * Drive pointed at the workspace's endpoint: `api/kernels/{id}/contents` (a solo kernel's
 * scratch folder) or `api/rooms/{id}/contents` (a room's shared /workspace). Folders open
 * on click; a file opens in the editor. Dotfiles are not listed.
 */
import { Contents, Drive, ServerConnection } from '@jupyterlab/services';

export interface OpenFile {
  path: string;
  content: string;
}

export class FileTree {
  private drive: Drive | null = null;
  private readonly expanded = new Set<string>();
  private selected: string | null = null;

  constructor(
    private readonly host: HTMLElement,
    private readonly settings: ServerConnection.ISettings,
    private readonly onOpen: (file: OpenFile) => void,
    private readonly onError: (error: unknown) => void
  ) {}

  /** Points the tree at a workspace (`api/kernels/ID/contents`...) and lists it. */
  async show(endpoint: string | null): Promise<void> {
    this.drive?.dispose();
    this.drive = endpoint ? new Drive({ serverSettings: this.settings, apiEndpoint: endpoint }) : null;
    this.expanded.clear();
    this.selected = null;
    await this.refresh();
  }

  get ready(): boolean {
    return this.drive !== null;
  }

  /** The path of the file open in the editor, if any. */
  get current(): string | null {
    return this.selected;
  }

  async refresh(): Promise<void> {
    if (!this.drive) {
      this.host.replaceChildren(hint('Files appear once a kernel runs (run code or open a terminal).'));
      return;
    }
    const rows = await this.list('', 0);
    this.host.replaceChildren(...(rows.length ? rows : [hint('No files yet.')]));
  }

  async open(path: string): Promise<void> {
    const model = await this.need().get(path, { type: 'file', format: 'text', content: true });
    this.selected = model.path;
    this.onOpen({ path: model.path, content: String(model.content ?? '') });
    await this.refresh();
  }

  async save(path: string, content: string): Promise<void> {
    await this.need().save(path, { type: 'file', format: 'text', content });
    this.selected = path;
    await this.refresh();
  }

  async rename(from: string, to: string): Promise<void> {
    const model = await this.need().rename(from, to);
    if (this.selected === from) {
      this.selected = model.path;
    }
    await this.refresh();
  }

  async remove(path: string): Promise<void> {
    await this.need().delete(path);
    if (this.selected === path) {
      this.selected = null;
    }
    await this.refresh();
  }

  private need(): Drive {
    if (!this.drive) {
      throw new Error('No workspace yet: run code or open a terminal first');
    }
    return this.drive;
  }

  private async list(path: string, depth: number): Promise<HTMLElement[]> {
    const listing = await this.need().get(path, { content: true });
    const entries = (listing.content as Contents.IModel[]).filter(e => !e.name.startsWith('.')).sort(
      (a, b) => Number(b.type === 'directory') - Number(a.type === 'directory') || a.name.localeCompare(b.name)
    );
    const rows: HTMLElement[] = [];
    for (const entry of entries) {
      rows.push(this.row(entry, depth));
      if (entry.type === 'directory' && this.expanded.has(entry.path)) {
        rows.push(...(await this.list(entry.path, depth + 1)));
      }
    }
    return rows;
  }

  private row(entry: Contents.IModel, depth: number): HTMLElement {
    const item = document.createElement('li');
    const folder = entry.type === 'directory';
    item.className = folder ? 'dir' : 'file';
    item.dataset.path = entry.path;
    item.dataset.testid = 'file-entry';
    item.style.paddingLeft = `${0.5 + depth * 1.1}rem`;
    item.textContent = `${folder ? (this.expanded.has(entry.path) ? '▾ ' : '▸ ') : ''}${entry.name}`;
    item.title = entry.path;
    if (entry.path === this.selected) {
      item.classList.add('selected');
    }
    item.addEventListener('click', () => {
      const action = folder ? this.toggle(entry.path) : this.open(entry.path);
      action.catch(this.onError);
    });
    return item;
  }

  private async toggle(path: string): Promise<void> {
    if (!this.expanded.delete(path)) {
      this.expanded.add(path);
    }
    await this.refresh();
  }
}

function hint(text: string): HTMLElement {
  const item = document.createElement('li');
  item.className = 'hint';
  item.textContent = text;
  return item;
}
