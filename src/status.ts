/**
 * The status bar item: "Archived", "N saves waiting" or a warning, fed by GET /api/bookstore.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { BookstoreError, getStatus, IStatus } from './api';
import {
  absoluteTime,
  humanSize,
  IStatusSummary,
  nextDelay,
  relativeTime,
  summarize,
  troubleCounts
} from './format';

/**
 * Polls the status endpoint: every 2 s while saves wait, backing off to once a minute while
 * idle, and not at all while the page is hidden. `poke()` asks for a fresh answer soon.
 */
export class StatusPoller {
  readonly changed = new Signal<this, IStatusSummary>(this);
  status: IStatus | null = null;
  error: string | null = null;
  summary: IStatusSummary = summarize(null);

  private _timer = 0;
  private _delay = 0;
  private _inflight: Promise<void> | null = null;
  private _disposed = false;
  private _onVisibility = () => {
    if (document.visibilityState === 'visible') {
      this.poke();
    }
  };

  constructor() {
    document.addEventListener('visibilitychange', this._onVisibility);
    void this.refresh();
  }

  /** Fetch now (coalesced with a fetch in flight), then schedule the next one. */
  refresh(): Promise<void> {
    if (this._inflight) {
      return this._inflight;
    }
    this._inflight = this._fetch().finally(() => {
      this._inflight = null;
      this._schedule();
    });
    return this._inflight;
  }

  /** Something happened (a save, a publish): check again shortly. */
  poke(): void {
    this._delay = 0;
    window.clearTimeout(this._timer);
    this._timer = window.setTimeout(() => void this.refresh(), 500);
  }

  dispose(): void {
    this._disposed = true;
    window.clearTimeout(this._timer);
    document.removeEventListener('visibilitychange', this._onVisibility);
    Signal.clearData(this);
  }

  private async _fetch(): Promise<void> {
    try {
      this.status = await getStatus();
      this.error = null;
    } catch (error) {
      this.error =
        error instanceof BookstoreError
          ? error.message
          : `status unavailable: ${String(error)}`;
    }
    this.summary = summarize(this.status, this.error);
    this.changed.emit(this.summary);
  }

  private _schedule(): void {
    if (this._disposed) {
      return;
    }
    window.clearTimeout(this._timer);
    this._delay = nextDelay(this.summary, this._delay);
    this._timer = window.setTimeout(() => {
      if (document.visibilityState === 'hidden') {
        return; // resumed by the visibilitychange listener
      }
      void this.refresh();
    }, this._delay);
  }
}

/** The status bar widget; a click opens the details. */
export class StatusItem extends Widget {
  constructor(readonly poller: StatusPoller) {
    super({ node: document.createElement('button') });
    this.addClass('jp-bookstore-StatusItem');
    this.node.setAttribute('type', 'button');
    this.node.setAttribute('aria-live', 'polite');
    this.node.addEventListener(
      'click',
      () => void showStatusDetails(this.poller)
    );
    poller.changed.connect(this._render, this);
    this._render();
  }

  private _render(): void {
    const summary = this.poller.summary;
    this.node.dataset.level = summary.level;
    this.node.classList.toggle('jp-mod-warning', summary.level === 'warning');
    this.node.textContent = '';
    const icon = document.createElement('span');
    icon.className = 'jp-bookstore-StatusItem-icon';
    icon.textContent =
      summary.level === 'warning' ? '⚠' : summary.level === 'busy' ? '↑' : '●';
    const text = document.createElement('span');
    text.className = 'jp-bookstore-StatusItem-text';
    text.textContent = summary.text;
    this.node.append(icon, text);
    this.node.title = summary.problem
      ? `bookstore: ${summary.text}: ${summary.problem} (click for details)`
      : `bookstore: ${summary.text} (click for details)`;
  }
}

function row(
  table: HTMLElement,
  label: string,
  value: string | null | undefined
): void {
  if (value === null || value === undefined || value === '') {
    return;
  }
  const tr = document.createElement('tr');
  const th = document.createElement('th');
  th.textContent = label;
  const td = document.createElement('td');
  td.textContent = value;
  tr.append(th, td);
  table.appendChild(tr);
}

/** The details dialog: bucket, queue, last upload, last error, problems, set-aside saves. */
export async function showStatusDetails(poller: StatusPoller): Promise<void> {
  await poller.refresh();
  const body = document.createElement('div');
  body.className = 'jp-bookstore-StatusDetails';
  const summary = poller.summary;
  const headline = document.createElement('p');
  headline.className = `jp-bookstore-StatusDetails-headline jp-bookstore-level-${summary.level}`;
  headline.textContent = summary.problem
    ? `${summary.text}: ${summary.problem}`
    : summary.text;
  body.appendChild(headline);
  const table = document.createElement('table');
  const status = poller.status;
  if (status) {
    const a = status.archive || {};
    row(table, 'bookstore', status.release);
    row(table, 'Archiving', a.enabled ? 'on' : 'off');
    if (a.bucket) {
      row(table, 'Bucket', `s3://${a.bucket}/${a.prefix || ''}`);
      row(table, 'Versioning', a.versioning || 'unknown');
      row(
        table,
        'Bucket reachable',
        a.bucket_ok === null || a.bucket_ok === undefined
          ? 'unknown'
          : a.bucket_ok
            ? 'yes'
            : 'no'
      );
    }
    row(table, 'Saves waiting', String(a.pending ?? 0));
    row(table, 'Saves uploaded', String(a.uploaded ?? 0));
    row(table, 'Failed attempts', String(a.failed_attempts ?? 0));
    for (const [key, count] of Object.entries(troubleCounts(a))) {
      row(table, key.replace(/_count$/, '').replace(/_/g, ' '), String(count));
    }
    if (typeof a.dropped_saves === 'number' && a.dropped_saves > 0) {
      row(
        table,
        'Dropped saves',
        `${a.dropped_saves} (spool full; last ${relativeTime(a.last_dropped_at as string)})`
      );
    }
    if (typeof a.spool_bytes === 'number') {
      row(
        table,
        'Spool',
        `${humanSize(a.spool_bytes)}${
          typeof a.max_spool_bytes === 'number'
            ? ` of ${humanSize(a.max_spool_bytes)}`
            : ''
        }${a.spool_limit_reached ? ' (limit reached)' : ''}`
      );
    }
    const setAside = Array.isArray(a.set_aside) ? (a.set_aside as any[]) : [];
    for (const entry of setAside) {
      row(
        table,
        'Set aside',
        `${entry.path}: ${entry.reason || entry.code || 'refused by S3'}`
      );
    }
    if (a.last_upload) {
      row(
        table,
        'Last upload',
        `${a.last_upload.path} ${relativeTime(a.last_upload.at)} (${absoluteTime(a.last_upload.at)})`
      );
    }
    if (a.last_error) {
      row(
        table,
        'Last error',
        `${a.last_error.message}${a.last_error.path ? ` (${a.last_error.path})` : ''} ${relativeTime(a.last_error.at)}`
      );
    }
    for (const problem of a.problems || []) {
      row(table, 'Problem', problem);
    }
  }
  body.appendChild(table);
  await showDialog({
    title: 'bookstore archive',
    body: new Widget({ node: body }),
    buttons: [Dialog.okButton({ label: 'Close' })]
  });
}
