/**
 * *File › Revert Notebook to Checkpoint…* with entries that can be told apart.
 *
 * JupyterLab's own dialog (docmanager-extension) labels each checkpoint with its time to
 * the minute, so several saves made within the same minute read identically. bookstore
 * keeps every save as a checkpoint, so that is the common case. Once the application has
 * started, this module gives the existing `docmanager:restore-checkpoint` command (the
 * File menu item, the palette entry and any key binding all point at it) a dialog whose
 * entries show seconds and the checkpoint's short id, the newest first and preselected.
 * It still reverts through the contents API (`context.restoreCheckpoint`), as before.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { Dialog, InputDialog, showDialog } from '@jupyterlab/apputils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { Widget } from '@lumino/widgets';

import { checkpointLabels, ICheckpoint, timeWithSeconds } from './format';

export const RESTORE_CHECKPOINT = 'docmanager:restore-checkpoint';

/** Ask which checkpoint, confirm, then restore it and reload the document. */
export async function revertToCheckpoint(
  app: JupyterFrontEnd,
  docManager: IDocumentManager
): Promise<ICheckpoint | undefined> {
  const widget = app.shell.currentWidget;
  const context = widget ? docManager.contextForWidget(widget) : undefined;
  if (!context) {
    await showDialog({
      title: 'Cannot Revert',
      body: 'No document is open here.',
      buttons: [Dialog.okButton()]
    });
    return;
  }
  const kind = context.path.endsWith('.ipynb') ? 'Notebook' : 'File';
  // The contents API lists the oldest first; offer the newest first.
  const newestFirst = [...(await context.listCheckpoints())].reverse();
  if (!newestFirst.length) {
    await showDialog({
      title: 'No checkpoints',
      body: `No checkpoints are available for this ${kind.toLowerCase()}.`,
      buttons: [Dialog.okButton()]
    });
    return;
  }
  let target = newestFirst[0];
  if (newestFirst.length > 1) {
    const labels = checkpointLabels(newestFirst);
    const answer = await InputDialog.getItem({
      title: 'Choose a checkpoint',
      items: labels,
      current: 0
    });
    if (!answer.button.accept || answer.value === null) {
      return;
    }
    target = newestFirst[labels.indexOf(answer.value)];
    if (!target) {
      return;
    }
  }
  const body = document.createElement('div');
  body.className = 'jp-bookstore-RevertBody';
  const warning = document.createElement('p');
  warning.textContent =
    `Are you sure you want to revert the ${kind.toLowerCase()} to this checkpoint? ` +
    'Unsaved changes are lost.';
  const detail = document.createElement('p');
  detail.className = 'jp-bookstore-RevertTarget';
  detail.textContent = `Saved ${timeWithSeconds(target.last_modified)}, checkpoint ${target.id}`;
  body.append(warning, detail);
  const confirm = await showDialog({
    title: `Revert ${kind} to checkpoint`,
    body: new Widget({ node: body }),
    buttons: [
      Dialog.cancelButton(),
      Dialog.warnButton({ label: 'Revert', ariaLabel: 'Revert to Checkpoint' })
    ]
  });
  if (context.isDisposed || !confirm.button.accept) {
    return;
  }
  if (context.model.readOnly) {
    await context.revert();
  } else {
    await context.restoreCheckpoint(target.id);
    await context.revert();
  }
  return target;
}

/**
 * Once all plugins are active, point the existing command at {@link revertToCheckpoint}.
 *
 * Lumino offers no public way to replace a command's handler (adding the id again throws),
 * so this swaps the `execute` of the registered command, keeping its label, enablement,
 * menu entries and key bindings. If a future Lumino stores commands differently, Jupyter's
 * own dialog stays in place and a warning is logged.
 */
export function installRevertDialog(
  app: JupyterFrontEnd,
  docManager: IDocumentManager
): void {
  const registry = (app.commands as any)._commands;
  const patch = (): boolean => {
    const command =
      registry && typeof registry.get === 'function'
        ? registry.get(RESTORE_CHECKPOINT)
        : undefined;
    if (!command || typeof command.execute !== 'function') {
      return false;
    }
    command.execute = () => revertToCheckpoint(app, docManager);
    return true;
  };
  if (patch()) {
    return;
  }
  // Not registered yet: patch it as soon as docmanager-extension adds it.
  const onChanged = (
    _: unknown,
    change: { id: string | undefined; type: string }
  ) => {
    if (
      change.id === RESTORE_CHECKPOINT &&
      change.type === 'added' &&
      patch()
    ) {
      app.commands.commandChanged.disconnect(onChanged);
    }
  };
  app.commands.commandChanged.connect(onChanged);
  void app.restored.then(() => {
    if (!app.commands.hasCommand(RESTORE_CHECKPOINT)) {
      return; // a Jupyter without docmanager-extension: nothing to improve
    }
    if (!patch()) {
      console.warn(
        `bookstore: cannot extend ${RESTORE_CHECKPOINT}; Jupyter's revert dialog stays`
      );
    }
  });
}
