/**
 * The output pane: one block per execution (grouped by the iopub message's parent
 * msg_id), whoever ran it. Streams, results and errors (with their traceback) are shown
 * as text with ANSI escapes stripped; images as <img>; HTML is never injected (it could run
 * script in the page that holds the token), its text/plain fallback is shown instead.
 */
import type { KernelMessage } from '@jupyterlab/services';

// CSI sequences (colours, cursor moves), OSC sequences, and lone escapes.
// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-?]*[ -/]*[@-~]|\u001b\][^\u0007\u001b]*(?:\u0007|\u001b\\)|\u001b[@-Z\\-_]/g;

/** Text without terminal escape sequences. */
export function stripAnsi(text: string): string {
  return text.replace(ANSI, '');
}

/** Keeps what a terminal would show of carriage returns: "50%\r100%" reads "100%". */
function applyCarriageReturns(text: string): string {
  return text
    .split('\n')
    .map(line => {
      const parts = line.split('\r');
      return parts.length > 1 ? parts.filter(p => p !== '').pop() ?? '' : line;
    })
    .join('\n');
}

const MAX_BLOCKS = 200; // older blocks are dropped from the page
const MAX_BLOCK_CHARS = 1_000_000; // per block; the gateway caps output per execution too

type Bundle = Record<string, unknown>;

interface Block {
  root: HTMLElement;
  body: HTMLElement;
  chars: number;
  lastStream: { name: string; element: HTMLElement } | null;
}

export class OutputArea {
  private readonly blocks = new Map<string, Block>();

  /** `showRunner`: label each block with who ran it (rooms). */
  constructor(
    private readonly host: HTMLElement,
    private readonly showRunner: boolean
  ) {}

  clear(): void {
    this.blocks.clear();
    this.host.replaceChildren();
  }

  /** A note from the page itself (not from the kernel), e.g. that the kernel restarted. */
  note(text: string, kind: 'info' | 'error' = 'info'): void {
    const element = document.createElement('div');
    element.className = `note note-${kind}`;
    element.textContent = text;
    this.host.append(element);
    this.scroll();
  }

  /** Renders one iopub message (any client's execution) of the kernel named `kernel`. The
   * runner shown is `parent_header.username`, which the gateway stamps on every client
   * message with the caller's user name. */
  handle(msg: KernelMessage.IIOPubMessage, kernel: string): void {
    const parent = msg.parent_header as Partial<KernelMessage.IHeader>;
    const parentId = parent?.msg_id;
    if (!parentId) {
      return;
    }
    const type = msg.header.msg_type;
    const content = msg.content as Record<string, unknown>;
    if (type === 'execute_input') {
      const block = this.block(parentId, parent);
      block.root.dataset.count = String(content.execution_count ?? '');
      const code = block.root.querySelector('.code') as HTMLElement;
      code.textContent = `${kernel} [${content.execution_count ?? ' '}] ${firstLine(String(content.code ?? ''))}`;
    } else if (type === 'stream') {
      this.stream(this.block(parentId, parent), String(content.name), String(content.text ?? ''));
    } else if (type === 'execute_result' || type === 'display_data') {
      this.richOutput(this.block(parentId, parent), (content.data ?? {}) as Bundle);
    } else if (type === 'error') {
      const traceback = Array.isArray(content.traceback) ? (content.traceback as string[]) : [];
      const text = traceback.length ? traceback.join('\n') : `${content.ename}: ${content.evalue}`;
      this.text(this.block(parentId, parent), 'error', stripAnsi(text) + '\n');
    } else if (type === 'clear_output') {
      const block = this.blocks.get(parentId);
      if (block) {
        block.body.replaceChildren();
        block.chars = 0;
        block.lastStream = null;
      }
    }
  }

  private block(parentId: string, parent: Partial<KernelMessage.IHeader>): Block {
    let block = this.blocks.get(parentId);
    if (block) {
      return block;
    }
    const root = document.createElement('section');
    root.className = 'block';
    root.dataset.testid = 'output-block';
    const head = document.createElement('div');
    head.className = 'block-head';
    const code = document.createElement('span');
    code.className = 'code';
    head.append(code);
    if (this.showRunner) {
      const ranBy = document.createElement('span');
      ranBy.className = 'ran-by';
      ranBy.dataset.testid = 'ran-by';
      ranBy.textContent = parent.username || 'someone';
      head.append(ranBy);
    }
    const body = document.createElement('div');
    body.className = 'block-body';
    root.append(head, body);
    this.host.append(root);
    block = { root, body, chars: 0, lastStream: null };
    this.blocks.set(parentId, block);
    while (this.blocks.size > MAX_BLOCKS) {
      const [oldest] = this.blocks.keys();
      this.blocks.get(oldest)?.root.remove();
      this.blocks.delete(oldest);
    }
    return block;
  }

  private stream(block: Block, name: string, text: string): void {
    const clean = stripAnsi(text);
    if (block.lastStream?.name === name && block.body.lastElementChild === block.lastStream.element) {
      if (this.room(block, clean)) {
        const element = block.lastStream.element;
        element.textContent = applyCarriageReturns((element.textContent ?? '') + clean);
        this.scroll();
      }
      return;
    }
    const element = this.text(block, name === 'stderr' ? 'stderr' : 'stdout', applyCarriageReturns(clean));
    block.lastStream = element ? { name, element } : null;
  }

  private richOutput(block: Block, data: Bundle): void {
    for (const mime of ['image/png', 'image/jpeg', 'image/gif']) {
      if (typeof data[mime] === 'string') {
        const image = document.createElement('img');
        image.src = `data:${mime};base64,${(data[mime] as string).replace(/\s/g, '')}`;
        image.alt = 'output image';
        block.body.append(image);
        block.lastStream = null;
        this.scroll();
        return;
      }
    }
    const plain = data['text/plain'];
    const text = typeof plain === 'string' ? plain : Array.isArray(plain) ? plain.join('') : '';
    this.text(block, 'result', stripAnsi(text) + (text.endsWith('\n') ? '' : '\n'));
    block.lastStream = null;
  }

  private text(block: Block, kind: string, text: string): HTMLElement | null {
    if (!this.room(block, text)) {
      return null;
    }
    const element = document.createElement('pre');
    element.className = kind;
    element.dataset.testid = `output-${kind}`;
    element.textContent = text;
    block.body.append(element);
    this.scroll();
    return element;
  }

  /** Whether the block may take `text`; marks it truncated once when not. */
  private room(block: Block, text: string): boolean {
    if (block.chars + text.length <= MAX_BLOCK_CHARS) {
      block.chars += text.length;
      return true;
    }
    if (!block.root.classList.contains('truncated')) {
      block.root.classList.add('truncated');
      const note = document.createElement('div');
      note.className = 'note';
      note.textContent = '[output truncated on this page]';
      block.body.append(note);
    }
    return false;
  }

  private scroll(): void {
    this.host.scrollTop = this.host.scrollHeight;
  }
}

function firstLine(code: string): string {
  const lines = code.split('\n').filter(line => line.trim() !== '');
  return lines.length > 1 ? `${lines[0]} …` : lines[0] ?? '';
}
