/**
 * Read-only views opened in the main area: a version rendered by JupyterLab's own notebook
 * widget, and a diff rendered by nbdime's widget (or the server's diff page without nbdime).
 */
import { IFrame, MainAreaWidget } from '@jupyterlab/apputils';
import { IEditorServices } from '@jupyterlab/codeeditor';
import { PageConfig, PathExt, URLExt } from '@jupyterlab/coreutils';
import {
  Notebook,
  NotebookModel,
  NotebookPanel,
  StaticNotebook
} from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { Widget } from '@lumino/widgets';

import { getDiff, pathPart } from './api';

export interface IViewerServices {
  rendermime: IRenderMimeRegistry;
  editorServices: IEditorServices;
  contentFactory: NotebookPanel.IContentFactory;
}

/** A notebook (nbformat JSON) rendered read-only, never trusted, never executable. */
export function readOnlyNotebook(
  services: IViewerServices,
  content: any,
  title: string,
  caption: string
): MainAreaWidget<Notebook> {
  const model = new NotebookModel();
  model.fromJSON(content);
  const notebook = new Notebook({
    rendermime: services.rendermime,
    contentFactory: services.contentFactory,
    mimeTypeService: services.editorServices.mimeTypeService,
    notebookConfig: {
      ...StaticNotebook.defaultNotebookConfig,
      windowingMode: 'none'
    }
  });
  notebook.model = model;
  for (const cell of notebook.widgets) {
    cell.readOnly = true;
  }
  notebook.addClass('jp-bookstore-ReadOnlyNotebook');
  const widget = new MainAreaWidget({ content: notebook });
  widget.addClass('jp-bookstore-VersionView');
  widget.title.label = title;
  widget.title.caption = caption;
  widget.title.closable = true;
  widget.disposed.connect(() => model.dispose());
  return widget;
}

let nbdime: Promise<any | null> | null = null;

/** nbdime's diff widgets (loaded on first use, in their own chunk); null if that fails. */
export function loadNbdime(): Promise<any | null> {
  if (!nbdime) {
    nbdime = Promise.all([
      import('nbdime/lib/diff/widget'),
      import('nbdime/lib/diff/model')
    ])
      .then(([widget, model]) => ({ ...widget, ...model }))
      .catch(() => null);
  }
  return nbdime;
}

/** A diff of two versions (or a version and the current file) of `path`. */
export async function diffWidget(
  services: IViewerServices,
  path: string,
  from: string,
  to: string | null,
  title: string,
  useNbdime: boolean
): Promise<Widget> {
  const lib = useNbdime ? await loadNbdime() : null;
  if (lib) {
    const answer = await getDiff(path, from, to);
    const model = new lib.NotebookDiffModel(answer.base, answer.diff);
    const content = new lib.NotebookDiffWidget({
      model,
      rendermime: services.rendermime
    });
    content.addClass('jp-bookstore-Diff');
    content.addClass('jp-bookstore-NbdimeDiff');
    const widget = new MainAreaWidget({ content });
    widget.addClass('jp-bookstore-DiffView');
    widget.title.label = title;
    widget.title.closable = true;
    await content.init();
    return widget;
  }
  // Without nbdime's frontend: the server's own diff page, which renders the same diff.
  const frame = new IFrame({ sandbox: ['allow-same-origin', 'allow-scripts'] });
  const query = `?from=${encodeURIComponent(from)}${to ? `&to=${encodeURIComponent(to)}` : ''}`;
  frame.url =
    URLExt.join(PageConfig.getBaseUrl(), 'bookstore', 'diff', pathPart(path)) +
    query;
  frame.addClass('jp-bookstore-Diff');
  frame.addClass('jp-bookstore-ServerDiff');
  const widget = new MainAreaWidget({ content: frame });
  widget.addClass('jp-bookstore-DiffView');
  widget.title.label = title;
  widget.title.caption = `Diff of ${PathExt.basename(path)}`;
  widget.title.closable = true;
  return widget;
}
