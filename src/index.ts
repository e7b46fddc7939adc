/**
 * bookstore in JupyterLab 4 and Notebook 7: commands, menus, the history panel and the
 * archive status item. Everything goes through bookstore's documented REST API.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Clipboard,
  Dialog,
  ICommandPalette,
  Notification,
  showDialog,
  showErrorMessage
} from '@jupyterlab/apputils';
import { IEditorServices } from '@jupyterlab/codeeditor';
import { PathExt } from '@jupyterlab/coreutils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { IDefaultFileBrowser } from '@jupyterlab/filebrowser';
import { IMainMenu } from '@jupyterlab/mainmenu';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { IStatusBar } from '@jupyterlab/statusbar';
import { LabIcon } from '@jupyterlab/ui-components';
import { Menu, Widget } from '@lumino/widgets';

import {
  BookstoreError,
  clone,
  cloneLink,
  getRunOutput,
  getVersion,
  IPublishResult,
  IRun,
  listVersions,
  publish,
  restoreVersion,
  splitS3Path,
  startRun
} from './api';
import { absoluteTime, parseParameters, relativeTime, shortId } from './format';
import { HistoryPanel, IHistoryActions, IVersionRef } from './panel';
import { installRevertDialog } from './revert';
import { StatusItem, StatusPoller } from './status';
import { diffWidget, IViewerServices, readOnlyNotebook } from './viewers';

export const CommandIDs = {
  publish: 'bookstore:publish',
  openHistory: 'bookstore:open-history',
  copyCloneLink: 'bookstore:copy-clone-link',
  run: 'bookstore:run'
} as const;

const historyIcon = new LabIcon({
  name: 'bookstore:history',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24"><path class="jp-icon3" fill="#616161" d="M13 3a9 9 0 0 0-9 9H1l3.89 3.89.07.14L9 12H6a7 7 0 1 1 2.05 4.95l-1.42 1.42A9 9 0 1 0 13 3zm-1 5v5l4.28 2.54.72-1.21-3.5-2.08V8H12z"/></svg>'
});

/** Where a command acts: its `path` argument, the file browser's selection, or the notebook. */
function targetPath(
  args: any,
  tracker: INotebookTracker,
  browser: IDefaultFileBrowser | null
): string | null {
  if (typeof args.path === 'string' && args.path) {
    return args.path;
  }
  if (args.source === 'browser' && browser) {
    const item = browser.selectedItems().next();
    if (item && !item.done && item.value) {
      return item.value.path;
    }
  }
  return tracker.currentWidget ? tracker.currentWidget.context.path : null;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** A dialog body: label/value rows, values selectable, and an optional copyable link. */
function resultBody(rows: [string, string, string][], link?: string): Widget {
  const node = document.createElement('div');
  node.className = 'jp-bookstore-ResultDialog';
  const table = document.createElement('table');
  for (const [label, value, className] of rows) {
    const tr = document.createElement('tr');
    const th = document.createElement('th');
    th.textContent = label;
    const td = document.createElement('td');
    const code = document.createElement('code');
    code.className = className;
    code.textContent = value;
    td.appendChild(code);
    tr.append(th, td);
    table.appendChild(tr);
  }
  node.appendChild(table);
  if (link) {
    const box = document.createElement('div');
    box.className = 'jp-bookstore-LinkBox';
    const input = document.createElement('input');
    input.className = 'jp-bookstore-CloneLink jp-mod-styled';
    input.readOnly = true;
    input.value = link;
    input.addEventListener('focus', () => input.select());
    const copy = document.createElement('button');
    copy.type = 'button';
    copy.className =
      'jp-Button jp-mod-styled jp-mod-accept jp-bookstore-CopyLink';
    copy.textContent = 'Copy link';
    copy.addEventListener('click', () => {
      Clipboard.copyToSystem(link);
      copy.textContent = 'Copied';
    });
    box.append(input, copy);
    const label = document.createElement('div');
    label.className = 'jp-bookstore-LinkLabel';
    label.textContent =
      'Anyone with access to this server can clone this version with:';
    node.append(label, box);
  }
  return new Widget({ node });
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyterlab-bookstore:plugin',
  description: 'bookstore: publish, version history, runs and archive status.',
  autoStart: true,
  requires: [
    INotebookTracker,
    IDocumentManager,
    IRenderMimeRegistry,
    IEditorServices,
    NotebookPanel.IContentFactory
  ],
  optional: [ICommandPalette, IMainMenu, IStatusBar, IDefaultFileBrowser],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    docManager: IDocumentManager,
    rendermime: IRenderMimeRegistry,
    editorServices: IEditorServices,
    contentFactory: NotebookPanel.IContentFactory,
    palette: ICommandPalette | null,
    mainMenu: IMainMenu | null,
    statusBar: IStatusBar | null,
    browser: IDefaultFileBrowser | null
  ) => {
    const { commands, shell } = app;
    const services: IViewerServices = {
      rendermime,
      editorServices,
      contentFactory
    };
    const useNbdime = app.hasPlugin('nbdime-jupyterlab:plugin');
    const poller = new StatusPoller();
    installRevertDialog(app, docManager);

    const openInMain = (widget: Widget) => {
      shell.add(widget, 'main');
      shell.activateById(widget.id);
    };

    /** Save an open, dirty notebook first, so what is published or restored over is kept. */
    const saveIfDirty = async (path: string) => {
      const widget = docManager.findWidget(path);
      const context = widget ? docManager.contextForWidget(widget) : undefined;
      if (context && context.model.dirty && !context.model.readOnly) {
        await context.save();
      }
    };

    const actions: IHistoryActions = {
      async view(ref: IVersionRef) {
        const id = ref.version.version_id!;
        try {
          const model = await getVersion(ref.path, id, ref.prefix);
          const when = relativeTime(ref.version.last_modified);
          const widget = readOnlyNotebook(
            services,
            model.content,
            `${PathExt.basename(ref.path)} @ ${when}`,
            `${ref.path}, ${ref.prefix} version ${id}, ${absoluteTime(ref.version.last_modified)} (read-only)`
          );
          widget.id = `bookstore-view-${ref.prefix}-${id}`.replace(
            /[^\w-]/g,
            '_'
          );
          openInMain(widget);
        } catch (error) {
          await showErrorMessage(
            'Cannot open this version',
            errorMessage(error)
          );
        }
      },
      async diff(path: string, from: IVersionRef, to: IVersionRef | null) {
        const name = PathExt.basename(path);
        const title = `${name}: ${relativeTime(from.version.last_modified)} → ${
          to ? relativeTime(to.version.last_modified) : 'current'
        }`;
        try {
          await saveIfDirty(path);
          const widget = await diffWidget(
            services,
            path,
            from.version.version_id!,
            to ? to.version.version_id : null,
            title,
            useNbdime
          );
          widget.id = `bookstore-diff-${Date.now()}`;
          openInMain(widget);
        } catch (error) {
          await showErrorMessage(
            'Cannot compare these versions',
            errorMessage(error)
          );
        }
      },
      async restore(ref: IVersionRef) {
        const id = ref.version.version_id!;
        const name = PathExt.basename(ref.path);
        const body = document.createElement('div');
        body.className = 'jp-bookstore-RestoreBody';
        body.textContent =
          `Replace ${name} with the version saved ${relativeTime(ref.version.last_modified)} ` +
          `(${absoluteTime(ref.version.last_modified)}, S3 version ${id})? ` +
          'The current content stays in the history as a version of its own.';
        const answer = await showDialog({
          title: `Restore ${name}?`,
          body: new Widget({ node: body }),
          buttons: [
            Dialog.cancelButton(),
            Dialog.warnButton({ label: 'Restore' })
          ]
        });
        if (!answer.button.accept) {
          return false;
        }
        try {
          await saveIfDirty(ref.path);
          await restoreVersion(ref.path, id);
          const widget = docManager.findWidget(ref.path);
          const context = widget
            ? docManager.contextForWidget(widget)
            : undefined;
          if (context) {
            await context.revert();
          }
          poller.poke();
          Notification.success(
            `Restored ${name} from the version of ${absoluteTime(ref.version.last_modified)}`,
            {
              autoClose: 4000
            }
          );
          return true;
        } catch (error) {
          await showErrorMessage('Restore failed', errorMessage(error));
          return false;
        }
      },
      async clone(ref: IVersionRef) {
        const where = splitS3Path(ref.s3Path);
        if (!where) {
          return;
        }
        const dir = PathExt.dirname(ref.path);
        try {
          const result = await clone({
            s3_bucket: where.bucket,
            s3_key: where.key,
            s3_version_id: ref.version.version_id,
            target_path: dir ? `${dir}/` : ''
          });
          Notification.success(`Cloned as ${result.path}`, { autoClose: 4000 });
          docManager.openOrReveal(result.path);
        } catch (error) {
          await showErrorMessage('Clone failed', errorMessage(error));
        }
      },
      async copyLink(ref: IVersionRef) {
        const where = splitS3Path(ref.s3Path);
        if (!where) {
          return;
        }
        Clipboard.copyToSystem(
          cloneLink(where.bucket, where.key, ref.version.version_id)
        );
        Notification.success('Clone link copied', { autoClose: 3000 });
      },
      async run(path: string, versionId: string | null) {
        await commands.execute(CommandIDs.run, {
          path,
          version_id: versionId ?? ''
        });
      },
      async openRunOutput(path: string, run: IRun) {
        try {
          const model = await getRunOutput(path, run.output_version_id!);
          const widget = readOnlyNotebook(
            services,
            model.content,
            `${PathExt.basename(path)} run ${shortId(run.run_id, 8)}`,
            `Output of run ${run.run_id} (read-only)`
          );
          widget.id = `bookstore-run-${run.run_id}`.replace(/[^\w-]/g, '_');
          openInMain(widget);
        } catch (error) {
          await showErrorMessage(
            'Cannot open the run output',
            errorMessage(error)
          );
        }
      }
    };

    // --- the history panel ------------------------------------------------------------
    const panel = new HistoryPanel(actions);
    panel.title.icon = historyIcon;
    shell.add(panel, 'right', { rank: 600 });

    const follow = () => {
      const current = tracker.currentWidget;
      if (current) {
        panel.setPath(current.context.path);
      }
    };
    // A new version of `path` was written (a save, a publish): status and panel catch up.
    const wrote = (path: string) => {
      poller.poke();
      if (panel.path === path) {
        panel.invalidate();
      }
    };
    tracker.currentChanged.connect(follow);
    tracker.widgetAdded.connect((_, widget: NotebookPanel) => {
      widget.context.saveState.connect((context, state) => {
        if (state === 'completed') {
          wrote(context.path);
        }
      });
      widget.context.pathChanged.connect((context, path) => {
        if (tracker.currentWidget === widget) {
          panel.setPath(path);
        }
      });
    });
    follow();
    // Pending saves become S3 versions when the queue drains: show them as such.
    let lastLevel = poller.summary.level;
    poller.changed.connect((_, summary) => {
      if (lastLevel !== summary.level && summary.level === 'ok') {
        panel.invalidate();
      }
      lastLevel = summary.level;
    });

    // --- commands --------------------------------------------------------------------
    const hasNotebook = (args: any) => {
      const path = targetPath(args, tracker, browser);
      return !!path && path.endsWith('.ipynb');
    };
    // A command on the notebook the arguments name (or the current one): enabled for a
    // notebook, and run with its path.
    const addNotebookCommand = (
      id: string,
      label: string,
      caption: string,
      run: (path: string, args: any) => Promise<unknown>
    ) =>
      commands.addCommand(id, {
        label,
        caption,
        isEnabled: hasNotebook,
        execute: async args => {
          const path = targetPath(args, tracker, browser);
          return path ? run(path, args) : undefined;
        }
      });
    // The newest published versions of a notebook; null when it has none (404).
    const publishedListing = async (path: string, limit: number) => {
      try {
        return await listVersions(path, { prefix: 'published', limit });
      } catch (error) {
        if (error instanceof BookstoreError && error.status === 404) {
          return null;
        }
        throw error;
      }
    };

    addNotebookCommand(
      CommandIDs.publish,
      'Publish notebook',
      'Save, then publish this notebook to the published prefix in S3',
      async path => {
        let result: IPublishResult;
        try {
          await saveIfDirty(path);
          const model = await app.serviceManager.contents.get(path, {
            type: 'notebook',
            content: true
          });
          result = await publish(path, model.content);
        } catch (error) {
          await showErrorMessage(
            `Cannot publish ${PathExt.basename(path)}`,
            errorMessage(error)
          );
          return;
        }
        wrote(path);
        const link = cloneLink(result.bucket, result.key, result.versionID);
        await showDialog({
          title: `Published ${PathExt.basename(path)}`,
          body: resultBody(
            [
              ['S3 path', result.s3_path, 'jp-bookstore-S3Path'],
              [
                'Version id',
                result.versionID || '(unversioned bucket)',
                'jp-bookstore-VersionId'
              ],
              ['SHA-256', result.sha256, 'jp-bookstore-Sha']
            ],
            link
          ),
          buttons: [Dialog.okButton({ label: 'Close' })]
        });
        return result;
      }
    );

    commands.addCommand(CommandIDs.openHistory, {
      label: 'Version history',
      caption: 'Open the bookstore history panel for this notebook',
      icon: args => (args.isPalette ? undefined : historyIcon),
      execute: args => {
        const path = targetPath(args, tracker, browser);
        if (path) {
          panel.setPath(path);
        }
        shell.activateById(panel.id);
      }
    });

    addNotebookCommand(
      CommandIDs.copyCloneLink,
      'Copy clone link',
      'Copy a link that clones the newest published version',
      async path => {
        try {
          const listing = await publishedListing(path, 1);
          if (!listing) {
            await showErrorMessage(
              'No clone link',
              `${PathExt.basename(path)} is not published yet: publish it first.`
            );
            return;
          }
          const newest = listing.versions[0];
          const where = splitS3Path(listing.s3_path);
          if (!newest || !where) {
            throw new Error('it has no published version');
          }
          const link = cloneLink(where.bucket, where.key, newest.version_id);
          Clipboard.copyToSystem(link);
          Notification.success(
            'Clone link of the newest published version copied',
            {
              autoClose: 3000
            }
          );
          return link;
        } catch (error) {
          await showErrorMessage('No clone link', errorMessage(error));
        }
      }
    );

    addNotebookCommand(
      CommandIDs.run,
      'Run published version…',
      'Run a published version of this notebook with parameters',
      async (path, args) => {
        let published: {
          version_id: string | null;
          last_modified: string | null;
        }[] = [];
        try {
          published = (await publishedListing(path, 20))?.versions ?? [];
        } catch (error) {
          await showErrorMessage(
            'Cannot list published versions',
            errorMessage(error)
          );
          return;
        }
        if (!published.length) {
          await showErrorMessage(
            'Nothing to run',
            `${PathExt.basename(path)} has no published version: publish it first (File › Bookstore › Publish notebook).`
          );
          return;
        }
        const node = document.createElement('div');
        node.className = 'jp-bookstore-RunDialog';
        const vlabel = document.createElement('label');
        vlabel.textContent = 'Published version';
        const select = document.createElement('select');
        select.className = 'jp-mod-styled jp-bookstore-RunVersion';
        for (const v of published) {
          const option = document.createElement('option');
          option.value = v.version_id || '';
          option.textContent = `${relativeTime(v.last_modified)} · ${shortId(v.version_id, 12)}`;
          option.selected = v.version_id === args.version_id;
          select.appendChild(option);
        }
        const plabel = document.createElement('label');
        plabel.textContent =
          'Parameters (name = value per line, or a JSON object)';
        const params = document.createElement('textarea');
        params.className = 'jp-mod-styled jp-bookstore-RunParameters';
        params.rows = 5;
        params.placeholder = 'alpha = 0.5\nregion = "eu"';
        vlabel.appendChild(select);
        plabel.appendChild(params);
        node.append(vlabel, plabel);
        const answer = await showDialog({
          title: `Run ${PathExt.basename(path)}`,
          body: new Widget({ node }),
          buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Run' })],
          focusNodeSelector: 'textarea'
        });
        if (!answer.button.accept) {
          return;
        }
        try {
          const parameters = parseParameters(params.value);
          const started = await startRun(path, {
            version_id: select.value || undefined,
            parameters
          });
          Notification.info(`Run ${shortId(started.run_id, 8)} started`, {
            autoClose: 3000
          });
          panel.setPath(path);
          shell.activateById(panel.id);
          await panel.refreshRuns();
          return started;
        } catch (error) {
          const message =
            error instanceof BookstoreError &&
            error.status === 404 &&
            !error.fromBookstore
              ? 'This server does not offer runs (the runs API is missing).'
              : errorMessage(error);
          await showErrorMessage('Cannot start the run', message);
        }
      }
    );

    // --- menus, palette, file browser, status bar -------------------------------------
    const ids = [
      CommandIDs.publish,
      CommandIDs.openHistory,
      CommandIDs.copyCloneLink,
      CommandIDs.run
    ];
    if (palette) {
      for (const command of ids) {
        palette.addItem({ command, category: 'Bookstore' });
      }
    }
    if (mainMenu) {
      const submenu = new Menu({ commands });
      submenu.id = 'jp-bookstore-menu';
      submenu.title.label = 'Bookstore';
      for (const command of ids) {
        submenu.addItem({ command });
      }
      mainMenu.fileMenu.addGroup([{ type: 'submenu', submenu }], 40);
    }
    const selector = '.jp-DirListing-item[data-file-type="notebook"]';
    app.contextMenu.addItem({ type: 'separator', selector, rank: 60 });
    ids.forEach((command, i) => {
      app.contextMenu.addItem({
        command,
        args: { source: 'browser' },
        selector,
        rank: 60 + i / 10
      });
    });
    if (statusBar) {
      statusBar.registerStatusItem('jupyterlab-bookstore:status', {
        item: new StatusItem(poller),
        align: 'left',
        rank: 5
      });
    }
  }
};

export default plugin;
