/**
 * A shell in the sandbox: xterm.js over @jupyterlab/services' TerminalConnection
 * (terminado frames on /terminals/websocket/{name}). Every client of a terminal sees its
 * output; a read-only panel (viewers) shows it and sends no keystrokes.
 */
import { ServerConnection } from '@jupyterlab/services';
import { TerminalConnection } from '@jupyterlab/services/lib/terminal/default';
import { FitAddon } from '@xterm/addon-fit';
import { Terminal } from '@xterm/xterm';
import '@xterm/xterm/css/xterm.css';

export class TerminalPanel {
  private readonly term: Terminal;
  private readonly fit = new FitAddon();
  private connection: TerminalConnection | null = null;
  private readonly resize = new ResizeObserver(() => this.fitAndTell());

  constructor(
    private readonly host: HTMLElement,
    private readonly settings: ServerConnection.ISettings,
    private readonly onState: (state: string) => void,
    readOnly: boolean
  ) {
    this.term = new Terminal({
      convertEol: false,
      cursorBlink: !readOnly,
      disableStdin: readOnly,
      fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
      fontSize: 13,
      scrollback: 5000,
      theme: { background: '#1e1f24', foreground: '#e6e6e6' }
    });
    this.term.loadAddon(this.fit);
    this.term.open(host);
    if (!readOnly) {
      this.term.onData(data => this.connection?.send({ type: 'stdin', content: [data] }));
    }
    this.resize.observe(host);
  }

  /** The terminal's name, while one is attached. */
  get name(): string | null {
    return this.connection && !this.connection.isDisposed ? this.connection.name : null;
  }

  /** Shows terminal `name` (a new one or one other members already use). */
  attach(name: string): void {
    this.detach();
    this.term.reset();
    const connection = new TerminalConnection({ model: { name }, serverSettings: this.settings });
    connection.messageReceived.connect((_, message) => {
      if (message.type === 'stdout' && message.content) {
        this.term.write(String(message.content[0]));
      }
    });
    connection.connectionStatusChanged.connect((_, status) => {
      this.onState(status);
      if (status === 'connected') {
        this.fitAndTell();
      }
    });
    connection.disposed.connect(() => {
      if (this.connection === connection) {
        this.connection = null;
        this.onState('ended');
      }
    });
    this.connection = connection;
    this.onState(connection.connectionStatus);
    this.term.focus();
  }

  /** Leaves the terminal running for the others (it ends when idle: TerminalManager). */
  detach(): void {
    const connection = this.connection;
    this.connection = null;
    connection?.dispose();
  }

  private fitAndTell(): void {
    if (!this.host.offsetParent) {
      return; // hidden: nothing to measure
    }
    this.fit.fit();
    if (this.connection?.connectionStatus === 'connected') {
      this.connection.send({ type: 'set_size', content: [this.term.rows, this.term.cols] });
    }
  }
}
