/**
 * The kernelgate rooms panel: the caller's rooms, their members and roles, languages and
 * snapshots (take, restore); switch Lab to a room; create a room.
 *
 * It talks only to the Lab server's `/kernelgate/...` routes (kernelgate_jupyter/rooms.py),
 * which call kernelgate with the server's GatewayClient credentials: the browser never
 * holds the gateway token. Every failure is shown in the panel.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { usersIcon } from '@jupyterlab/ui-components';

import { firstRunPlugin } from './firstrun';
import { RoomsPanel } from './panel';

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'kernelgate-jupyter:rooms',
  description: 'A left-area panel for kernelgate rooms',
  autoStart: true,
  activate: (app: JupyterFrontEnd) => {
    const panel = new RoomsPanel(app);
    panel.id = 'kernelgate-rooms';
    panel.title.icon = usersIcon;
    panel.title.caption = 'kernelgate rooms';
    app.shell.add(panel, 'left', { rank: 250 });
  }
};

export default [plugin, firstRunPlugin];
