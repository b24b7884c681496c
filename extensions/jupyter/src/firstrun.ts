/**
 * A cell run while its notebook's kernel is still starting runs once the kernel is there.
 *
 * JupyterLab shows a notebook's editor before it has a session: it first saves a
 * checkpoint, then starts the session (`POST /api/sessions`, which through
 * `--gateway-url` waits for kernelgate's `POST /api/kernels`). A cell run in between is
 * dropped by `CodeCell.execute` (no kernel yet: its prompt is cleared, nothing is sent),
 * which a user who types at once sees as a cell that never runs. Here:
 * - the session starts as soon as the notebook is loaded, not after the checkpoint;
 * - `CodeCell.execute` waits for the session when a kernel is on its way (it is not when
 *   the notebook has no kernel at all), then runs as JupyterLab would.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { CodeCell } from '@jupyterlab/cells';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';

/** What `DocumentContext` does once the checkpoint is saved, done once the notebook loaded. */
function startSessionWhenLoaded(panel: NotebookPanel): void {
  const context = panel.context;
  void context.ready.then(() => {
    const session = context.sessionContext;
    if (context.isDisposed || session.isDisposed || !context.model) {
      return;
    }
    session.kernelPreference = {
      ...session.kernelPreference,
      name: context.model.defaultKernelName || session.kernelPreference.name,
      language: context.model.defaultKernelLanguage
    };
    void session.initialize(); // JupyterLab's own call gets this same start
  });
}

function runWhenTheKernelIsThere(): void {
  const execute = CodeCell.execute;
  CodeCell.execute = async (cell, sessionContext, metadata) => {
    if (
      sessionContext &&
      !sessionContext.session?.kernel &&
      !sessionContext.hasNoKernel &&
      !sessionContext.isDisposed
    ) {
      await sessionContext.ready;
    }
    return execute(cell, sessionContext, metadata);
  };
}

export const firstRunPlugin: JupyterFrontEndPlugin<void> = {
  id: 'kernelgate-jupyter:first-run',
  description: 'Runs a cell typed before its kernel was there, once it is',
  autoStart: true,
  requires: [INotebookTracker],
  activate: (app: JupyterFrontEnd, notebooks: INotebookTracker) => {
    runWhenTheKernelIsThere();
    notebooks.widgetAdded.connect((_, panel) => startSessionWhenLoaded(panel));
  }
};
