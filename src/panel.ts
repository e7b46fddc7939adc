/**
 * The history panel in the right sidebar: versions (paged as the user scrolls), the
 * published versions and the runs of one notebook.
 */
import { PathExt } from '@jupyterlab/coreutils';
import { Widget } from '@lumino/widgets';

import {
  BookstoreError,
  IRun,
  IVersion,
  IVersionListing,
  listRuns,
  listVersions,
  Prefix
} from './api';
import {
  absoluteTime,
  humanSize,
  mergePage,
  relativeTime,
  runDuration,
  runProblem,
  shortId,
  versionKey,
  versionMarkers,
  withDropped
} from './format';

/** A version as the panel's actions need it. */
export interface IVersionRef {
  path: string;
  prefix: Prefix;
  version: IVersion;
  s3Path: string;
}

/** What the panel's buttons do; implemented by the plugin (it owns the app's services). */
export interface IHistoryActions {
  view(ref: IVersionRef): Promise<void>;
  diff(path: string, from: IVersionRef, to: IVersionRef | null): Promise<void>;
  restore(ref: IVersionRef): Promise<boolean>;
  clone(ref: IVersionRef): Promise<void>;
  copyLink(ref: IVersionRef): Promise<void>;
  run(path: string, versionId: string | null): Promise<void>;
  openRunOutput(path: string, run: IRun): Promise<void>;
}

const PAGE_SIZE = 25;
const RUNS_POLL_MS = 3000;

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className?: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

function button(
  label: string,
  action: string,
  title: string,
  onClick: () => void
): HTMLButtonElement {
  const b = el('button', 'jp-bookstore-Button', label);
  b.type = 'button';
  b.dataset.action = action;
  b.title = title;
  b.addEventListener('click', event => {
    event.stopPropagation();
    onClick();
  });
  return b;
}

export class HistoryPanel extends Widget {
  private _path: string | null = null;
  private _versions: IVersion[] = [];
  private _s3Path = '';
  private _nextToken: string | null = null;
  /** The generation whose page load is in flight, if any (a newer refresh does not wait). */
  private _loadingGeneration: number | null = null;
  private _generation = 0;
  private _selected: string[] = [];
  private _runsTimer = 0;
  private _runsAvailable = true;
  private _stale = false;

  private _header = el('div', 'jp-bookstore-Header');
  private _title = el('div', 'jp-bookstore-Title');
  private _toolbar = el('div', 'jp-bookstore-Actions');
  private _versionsBox = el('div', 'jp-bookstore-Versions');
  private _versionsList = el('ul', 'jp-bookstore-VersionList');
  private _versionsNote = el('div', 'jp-bookstore-Note');
  private _publishedList = el('ul', 'jp-bookstore-PublishedList');
  private _publishedNote = el('div', 'jp-bookstore-Note');
  private _runsList = el('ul', 'jp-bookstore-RunList');
  private _runsNote = el('div', 'jp-bookstore-Note');
  private _runButton: HTMLButtonElement;

  constructor(readonly actions: IHistoryActions) {
    super();
    this.id = 'jp-bookstore-history';
    this.addClass('jp-bookstore-HistoryPanel');
    this.title.caption = 'Version history (bookstore)';
    this.title.label = '';

    const refresh = button(
      '⟳',
      'refresh',
      'Refresh the history',
      () => void this.refresh()
    );
    refresh.classList.add('jp-bookstore-Refresh');
    this._header.append(this._title, refresh);

    this._versionsBox.append(this._versionsList, this._versionsNote);
    this._versionsBox.addEventListener('scroll', () => this._maybeLoadMore());

    this._runButton = button(
      'Run this version',
      'run',
      'Run the newest published version with parameters',
      () => {
        const selected = this._selectedRefs()[0];
        if (this._path) {
          void this.actions.run(
            this._path,
            selected && selected.version.version_id
              ? selected.version.version_id
              : null
          );
        }
      }
    );

    const section = (
      title: string,
      className: string,
      ...children: HTMLElement[]
    ) => {
      const box = el('section', `jp-bookstore-Section ${className}`);
      const h = el('h3', 'jp-bookstore-SectionTitle', title);
      box.append(h, ...children);
      return box;
    };
    this.node.append(
      this._header,
      section(
        'Versions',
        'jp-bookstore-VersionsSection',
        this._toolbar,
        this._versionsBox
      ),
      section(
        'Published',
        'jp-bookstore-PublishedSection',
        this._publishedList,
        this._publishedNote
      ),
      section(
        'Runs',
        'jp-bookstore-RunsSection',
        this._runButton,
        this._runsList,
        this._runsNote
      )
    );
    this._renderEmpty('Open a notebook to see its history.');
  }

  get path(): string | null {
    return this._path;
  }

  /** Show the history of another file (null: none); loaded when the panel is visible. */
  setPath(path: string | null): void {
    if (path === this._path) {
      return;
    }
    this._path = path;
    this._selected = [];
    this.invalidate();
  }

  /** The history changed (a save, a restore): reload now if visible, else when shown. */
  invalidate(): void {
    if (this.isVisible) {
      void this.refresh();
    } else {
      this._stale = true;
    }
  }

  /** Reload everything from the first page. */
  async refresh(): Promise<void> {
    const generation = ++this._generation;
    this._stale = false;
    this._versions = [];
    this._nextToken = null;
    this._selected = [];
    if (!this._path) {
      this._renderEmpty('Open a notebook to see its history.');
      return;
    }
    this._title.textContent = PathExt.basename(this._path);
    this._title.title = this._path;
    this._versionsNote.textContent = 'Loading…';
    await Promise.all([
      this._loadPage(generation),
      this._loadPublished(generation),
      this._loadRuns(generation)
    ]);
  }

  protected onAfterShow(): void {
    if (this._stale) {
      void this.refresh();
    }
  }

  dispose(): void {
    window.clearTimeout(this._runsTimer);
    super.dispose();
  }

  private _renderEmpty(message: string): void {
    this._title.textContent = 'Version history';
    this._versionsList.textContent = '';
    this._publishedList.textContent = '';
    this._runsList.textContent = '';
    this._toolbar.textContent = '';
    this._versionsNote.textContent = message;
    this._publishedNote.textContent = '';
    this._runsNote.textContent = '';
    this._runButton.hidden = true;
  }

  private async _loadPage(generation: number): Promise<void> {
    const path = this._path;
    // One load at a time per generation (scrolling asks often). A load of an older
    // generation must not hold back this one: its result is dropped when it arrives.
    if (!path || this._loadingGeneration === generation) {
      return;
    }
    this._loadingGeneration = generation;
    try {
      const listing: IVersionListing = await listVersions(path, {
        limit: PAGE_SIZE,
        pageToken: this._nextToken
      });
      if (generation !== this._generation) {
        return;
      }
      this._s3Path = listing.s3_path;
      this._versions = mergePage(this._versions, listing.versions);
      if (listing.dropped) {
        this._versions = withDropped(this._versions, listing.dropped);
      }
      this._nextToken = listing.next_token;
      this._versionsNote.textContent = this._nextToken
        ? 'Scroll for older versions'
        : '';
    } catch (error) {
      if (generation !== this._generation) {
        return;
      }
      this._versionsNote.textContent =
        error instanceof BookstoreError &&
        error.status === 404 &&
        !this._versions.length
          ? 'No versions yet: each save of this notebook becomes one.'
          : `Cannot list versions: ${(error as Error).message}`;
    } finally {
      if (this._loadingGeneration === generation) {
        this._loadingGeneration = null;
      }
    }
    if (generation !== this._generation) {
      return;
    }
    this._renderVersions();
    // Fill the box: if the first page does not make it scroll, load the next one.
    this._maybeLoadMore();
  }

  private _maybeLoadMore(): void {
    const box = this._versionsBox;
    if (
      this._nextToken &&
      this._loadingGeneration === null &&
      box.scrollTop + box.clientHeight >= box.scrollHeight - 40
    ) {
      void this._loadPage(this._generation);
    }
  }

  private _ref(
    version: IVersion,
    prefix: Prefix = 'workspace',
    s3Path = this._s3Path
  ): IVersionRef {
    return { path: this._path!, prefix, version, s3Path };
  }

  private _selectedRefs(): IVersionRef[] {
    return this._selected
      .map(key => this._versions.find(v => versionKey(v) === key))
      .filter((v): v is IVersion => !!v)
      .map(v => this._ref(v));
  }

  private _select(version: IVersion, extend: boolean): void {
    const key = versionKey(version);
    if (extend) {
      this._selected = this._selected.includes(key)
        ? this._selected.filter(k => k !== key)
        : [...this._selected.slice(-1), key];
    } else {
      this._selected =
        this._selected.length === 1 && this._selected[0] === key ? [] : [key];
    }
    this._renderVersions();
  }

  private _renderVersions(): void {
    this._versionsList.textContent = '';
    for (const version of this._versions) {
      const key = versionKey(version);
      const item = el('li', 'jp-bookstore-Version');
      item.dataset.versionId = version.version_id || '';
      item.dataset.saveId = version.save_id || '';
      item.tabIndex = 0;
      item.setAttribute('role', 'option');
      const selected = this._selected.includes(key);
      item.setAttribute('aria-selected', String(selected));
      item.classList.toggle('jp-mod-selected', selected);
      item.classList.toggle('jp-mod-pending', version.pending);
      item.classList.toggle('jp-mod-dropped', !!version.dropped);

      const line1 = el('div', 'jp-bookstore-Version-line');
      const when = el(
        'span',
        'jp-bookstore-Version-time',
        relativeTime(version.last_modified || version.saved_at)
      );
      when.title = absoluteTime(version.last_modified || version.saved_at);
      const size = el(
        'span',
        'jp-bookstore-Version-size',
        humanSize(version.size)
      );
      line1.append(when, size);
      const line2 = el(
        'div',
        'jp-bookstore-Version-line jp-bookstore-Version-meta'
      );
      const user = el('span', 'jp-bookstore-Version-user', version.user || '');
      const id = el(
        'span',
        'jp-bookstore-Version-id',
        version.version_id
          ? shortId(version.version_id)
          : version.dropped
            ? 'not in S3'
            : 'not uploaded yet'
      );
      id.title = version.version_id
        ? `S3 version ${version.version_id}`
        : `save ${version.save_id}`;
      line2.append(user, id);
      const markers = el('div', 'jp-bookstore-Markers');
      for (const marker of versionMarkers(version)) {
        const m = el(
          'span',
          `jp-bookstore-Marker jp-bookstore-Marker-${marker.kind}`,
          marker.label
        );
        m.title = marker.title;
        markers.appendChild(m);
      }
      item.append(line1, line2, markers);
      item.addEventListener('click', event =>
        this._select(version, event.ctrlKey || event.metaKey || event.shiftKey)
      );
      item.addEventListener('keydown', event => {
        if (event.key === 'Enter' || event.key === ' ') {
          event.preventDefault();
          this._select(version, event.shiftKey);
        }
      });
      this._versionsList.appendChild(item);
    }
    this._renderToolbar();
  }

  private _renderToolbar(): void {
    this._toolbar.textContent = '';
    const refs = this._selectedRefs();
    if (!refs.length) {
      if (this._versions.length) {
        this._toolbar.appendChild(
          el(
            'span',
            'jp-bookstore-Hint',
            'Select a version; Ctrl-click a second one to compare the two.'
          )
        );
      }
      return;
    }
    const uploaded = refs.every(r => !!r.version.version_id);
    const one = refs[0];
    const add = (b: HTMLButtonElement, enabled: boolean) => {
      b.disabled = !enabled;
      this._toolbar.appendChild(b);
    };
    if (refs.length === 2) {
      // Older first, so the diff reads as "what changed since".
      const [a, b] = [...refs].sort(
        (x, y) =>
          this._versions.indexOf(y.version) - this._versions.indexOf(x.version)
      );
      add(
        button(
          'Diff selected',
          'diff',
          'Compare the two selected versions',
          () => void this.actions.diff(one.path, a, b)
        ),
        uploaded
      );
      return;
    }
    add(
      button(
        'View',
        'view',
        'Open this version read-only',
        () => void this.actions.view(one)
      ),
      uploaded
    );
    add(
      button(
        'Diff',
        'diff',
        'Compare this version with the current file',
        () => void this.actions.diff(one.path, one, null)
      ),
      uploaded
    );
    add(
      button(
        'Restore',
        'restore',
        'Make this version the current file (asks first)',
        async () => {
          if (await this.actions.restore(one)) {
            void this.refresh();
          }
        }
      ),
      uploaded
    );
    add(
      button(
        'Clone',
        'clone',
        'Copy this version into a new file next to this one',
        () => void this.actions.clone(one)
      ),
      uploaded
    );
    add(
      button(
        'Copy link',
        'copy-link',
        'Copy a link that clones this version',
        () => void this.actions.copyLink(one)
      ),
      uploaded
    );
  }

  private async _loadPublished(generation: number): Promise<void> {
    const path = this._path!;
    this._publishedList.textContent = '';
    this._publishedNote.textContent = 'Loading…';
    try {
      const listing = await listVersions(path, {
        prefix: 'published',
        limit: 10
      });
      if (generation !== this._generation) {
        return;
      }
      this._publishedNote.textContent = listing.next_token
        ? 'Only the 10 newest are shown.'
        : '';
      for (const version of listing.versions) {
        const ref = this._ref(version, 'published', listing.s3_path);
        const item = el('li', 'jp-bookstore-Published');
        item.dataset.versionId = version.version_id || '';
        const when = el(
          'span',
          'jp-bookstore-Version-time',
          relativeTime(version.last_modified)
        );
        when.title = absoluteTime(version.last_modified);
        const id = el(
          'code',
          'jp-bookstore-Version-id',
          version.version_id || ''
        );
        id.title = `published version ${version.version_id}`;
        const actions = el('span', 'jp-bookstore-RowActions');
        actions.append(
          button(
            'View',
            'view',
            'Open this published version read-only',
            () => void this.actions.view(ref)
          ),
          button(
            'Copy link',
            'copy-link',
            'Copy a link that clones this published version',
            () => void this.actions.copyLink(ref)
          )
        );
        item.append(when, id, actions);
        this._publishedList.appendChild(item);
      }
    } catch (error) {
      if (generation !== this._generation) {
        return;
      }
      this._publishedNote.textContent =
        error instanceof BookstoreError && error.status === 404
          ? 'Not published yet (File › Bookstore › Publish notebook).'
          : `Cannot list published versions: ${(error as Error).message}`;
    }
  }

  private async _loadRuns(generation: number): Promise<void> {
    window.clearTimeout(this._runsTimer);
    const path = this._path!;
    try {
      const listing = await listRuns(path);
      if (generation !== this._generation) {
        return;
      }
      this._runsAvailable = true;
      this._renderRuns(listing.runs || []);
      if (
        (listing.runs || []).some(
          r =>
            r.status === 'running' ||
            r.status === 'queued' ||
            r.status === 'pending'
        )
      ) {
        this._runsTimer = window.setTimeout(
          () => void this._loadRuns(generation),
          RUNS_POLL_MS
        );
      }
    } catch (error) {
      if (generation !== this._generation) {
        return;
      }
      this._runsList.textContent = '';
      if (
        error instanceof BookstoreError &&
        error.status === 404 &&
        !error.fromBookstore
      ) {
        this._runsAvailable = false;
        this._runsNote.textContent = 'Runs are not available on this server.';
      } else if (error instanceof BookstoreError && error.status === 404) {
        this._runsNote.textContent = 'No runs yet.';
      } else {
        this._runsNote.textContent = `Cannot list runs: ${(error as Error).message}`;
      }
    }
    this._runButton.hidden = !this._runsAvailable;
  }

  /** Refresh the runs (after starting one). */
  refreshRuns(): Promise<void> {
    return this._loadRuns(this._generation);
  }

  private _renderRuns(runs: IRun[]): void {
    this._runsList.textContent = '';
    this._runsNote.textContent = runs.length ? '' : 'No runs yet.';
    for (const run of runs) {
      const item = el('li', 'jp-bookstore-Run');
      item.dataset.runId = run.run_id;
      item.dataset.status = run.status;
      const status = el(
        'span',
        `jp-bookstore-RunStatus jp-bookstore-RunStatus-${run.status}`,
        run.status
      );
      const when = el(
        'span',
        'jp-bookstore-Version-time',
        relativeTime(run.finished || run.started || null)
      );
      when.title = absoluteTime(run.finished || run.started || null);
      const duration = el('span', 'jp-bookstore-RunDuration', runDuration(run));
      const params =
        run.parameters && Object.keys(run.parameters).length
          ? Object.entries(run.parameters)
              .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
              .join(', ')
          : 'no parameters';
      const paramsNode = el('div', 'jp-bookstore-RunParams', params);
      paramsNode.title = params;
      const line = el('div', 'jp-bookstore-Version-line');
      line.append(status, when, duration);
      item.append(line, paramsNode);
      if (run.source_version_id) {
        const source = el(
          'div',
          'jp-bookstore-RunSource',
          `published version ${shortId(run.source_version_id)}`
        );
        source.title = `Ran published version ${run.source_version_id}`;
        item.appendChild(source);
      }
      const problem = runProblem(run);
      if (problem) {
        const node = el('div', 'jp-bookstore-RunError', problem);
        node.title = problem;
        item.appendChild(node);
      }
      if (run.output_version_id) {
        item.appendChild(
          button(
            'Open output',
            'open-output',
            'Open the executed notebook read-only',
            () => void this.actions.openRunOutput(this._path!, run)
          )
        );
      }
      this._runsList.appendChild(item);
    }
  }
}
