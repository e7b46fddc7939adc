/**
 * Pure formatting and status logic, shared by the panel and the status item (unit-tested).
 */
import type {
  IArchiveStatus,
  IDroppedSave,
  IRun,
  IStatus,
  IVersion
} from './api';

const UNITS: [number, string][] = [
  [60, 'second'],
  [60, 'minute'],
  [24, 'hour'],
  [7, 'day'],
  [4.35, 'week'],
  [12, 'month'],
  [Number.POSITIVE_INFINITY, 'year']
];

/** "just now", "5 minutes ago", "in 2 hours", "3 days ago"... */
export function relativeTime(
  iso: string | null | undefined,
  now: number = Date.now()
): string {
  if (!iso) {
    return 'unknown time';
  }
  const then = Date.parse(iso);
  if (Number.isNaN(then)) {
    return iso;
  }
  let delta = (then - now) / 1000;
  if (Math.abs(delta) < 10) {
    return 'just now';
  }
  for (const [size, unit] of UNITS) {
    if (Math.abs(delta) < size) {
      const n = Math.round(Math.abs(delta));
      const label = `${n} ${unit}${n === 1 ? '' : 's'}`;
      return delta < 0 ? `${label} ago` : `in ${label}`;
    }
    delta /= size;
  }
  return iso;
}

/** The absolute local time, for tooltips. */
export function absoluteTime(iso: string | null | undefined): string {
  if (!iso) {
    return '';
  }
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

/** 0 B, 512 B, 1.5 KB, 12 MB (powers of 1024, like the CLI and the history page). */
export function humanSize(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || Number.isNaN(bytes)) {
    return '';
  }
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  const text =
    i === 0 || value >= 10 ? Math.round(value).toString() : value.toFixed(1);
  return `${text} ${units[i]}`;
}

/** A short form of an S3 version id for lists (full id on hover). */
export function shortId(id: string | null | undefined, length = 10): string {
  if (!id) {
    return '';
  }
  return id.length > length ? `${id.slice(0, length)}…` : id;
}

export interface IMarker {
  kind: 'pending' | 'uploading' | 'restored' | 'renamed' | 'dropped' | 'latest';
  label: string;
  title: string;
}

/** The markers shown next to a version. */
export function versionMarkers(version: IVersion): IMarker[] {
  const out: IMarker[] = [];
  if (version.dropped) {
    out.push({
      kind: 'dropped',
      label: 'not archived',
      title:
        'The archiver set this save aside: S3 cannot accept it' +
        (version.dropped_reason ? ` (${version.dropped_reason})` : '') +
        '. The file on disk had it; the archive does not.'
    });
  } else if (version.uploading) {
    out.push({
      kind: 'uploading',
      label: 'uploading',
      title: 'This save is being uploaded to S3'
    });
  } else if (version.pending) {
    out.push({
      kind: 'pending',
      label: 'pending',
      title: 'Saved on the server, waiting to be uploaded to S3'
    });
  }
  const lost = version.dropped_saves ?? 0;
  if (lost > 0) {
    out.push({
      kind: 'dropped',
      label: `${lost} dropped before`,
      title:
        `${lost} save${lost === 1 ? '' : 's'} made just before this one ` +
        `${lost === 1 ? 'was' : 'were'} dropped from the archiver's full queue: ` +
        'they never reached S3.'
    });
  }
  if (version.restored_from) {
    out.push({
      kind: 'restored',
      label: 'restored',
      title: `Restored from version ${version.restored_from}`
    });
  }
  if (version.renamed_from) {
    out.push({
      kind: 'renamed',
      label: 'renamed',
      title: `Renamed from ${version.renamed_from}`
    });
  }
  if (version.is_latest) {
    out.push({
      kind: 'latest',
      label: 'latest',
      title: 'The newest version in S3'
    });
  }
  return out;
}

/** Adds a page of versions to those listed, skipping any already there (by id or save id). */
export function mergePage(known: IVersion[], page: IVersion[]): IVersion[] {
  const seen = new Set(known.map(versionKey));
  return known.concat(page.filter(v => !seen.has(versionKey(v))));
}

export function versionKey(version: IVersion): string {
  return version.version_id
    ? `v:${version.version_id}`
    : `p:${version.save_id}`;
}

export type StatusLevel = 'ok' | 'busy' | 'warning' | 'off';

export interface IStatusSummary {
  level: StatusLevel;
  text: string;
  /** What went wrong, for the tooltip and the details. */
  problem: string | null;
}

/**
 * Counts of saves that need attention: set aside (S3 can never accept them), rejected, or
 * corrupt spool entries (fields of GET /api/bookstore since issue 7). Only non-zero ones.
 */
export function troubleCounts(archive: IArchiveStatus): {
  [name: string]: number;
} {
  const out: { [name: string]: number } = {};
  for (const [key, value] of Object.entries(archive)) {
    if (
      /^(set_aside_count|rejected\w*|corrupt_entries)$/.test(key) &&
      typeof value === 'number' &&
      value > 0
    ) {
      out[key] = value;
    }
  }
  return out;
}

function later(a: string | undefined, b: string | undefined): boolean {
  if (!a) {
    return false;
  }
  if (!b) {
    return true;
  }
  return Date.parse(a) > Date.parse(b);
}

/** What the status item says about a GET /api/bookstore answer. */
export function summarize(
  status: IStatus | null,
  fetchError: string | null = null
): IStatusSummary {
  if (fetchError) {
    return {
      level: 'warning',
      text: 'Bookstore unreachable',
      problem: fetchError
    };
  }
  if (!status) {
    return { level: 'off', text: 'Bookstore…', problem: null };
  }
  const archive = status.archive || {};
  if (!archive.enabled) {
    return { level: 'off', text: 'Archiving off', problem: null };
  }
  const pending = archive.pending || 0;
  const lastError = archive.last_error;
  const failing =
    !!lastError && later(lastError.at, archive.last_upload?.at) && pending > 0;
  const troubles = troubleCounts(archive);
  const troubleTotal = Object.values(troubles).reduce((a, b) => a + b, 0);
  const saves = (n: number) => `${n} save${n === 1 ? '' : 's'}`;
  if (failing) {
    return {
      level: 'warning',
      text: `S3 unreachable: ${saves(pending)} waiting`,
      problem: lastError!.message
    };
  }
  if (
    archive.bucket_ok === false ||
    (archive.problems && archive.problems.length)
  ) {
    return {
      level: 'warning',
      text: 'Archive problem',
      problem:
        (archive.problems && archive.problems[0]) ||
        'the bucket cannot be reached'
    };
  }
  if (archive.spool_limit_reached) {
    return {
      level: 'warning',
      text: 'Spool full',
      problem:
        'the spool reached its limit: saves between the oldest and newest are dropped'
    };
  }
  if (troubleTotal > 0) {
    return {
      level: 'warning',
      text: `${saves(troubleTotal)} set aside`,
      problem: lastError?.message || Object.keys(troubles).join(', ')
    };
  }
  if (pending > 0) {
    return { level: 'busy', text: `${saves(pending)} waiting`, problem: null };
  }
  return { level: 'ok', text: 'Archived', problem: null };
}

/** The next poll delay: quick while saves wait or S3 fails, slower and slower while idle. */
export function nextDelay(
  summary: IStatusSummary,
  previous: number,
  limits: { fast: number; idle: number; max: number } = {
    fast: 2000,
    idle: 5000,
    max: 60000
  }
): number {
  if (summary.level === 'busy') {
    return limits.fast;
  }
  if (summary.level === 'warning') {
    return Math.min(Math.max(previous * 1.5, limits.fast), limits.idle * 2);
  }
  return Math.min(Math.max(previous * 1.5, limits.idle), limits.max);
}

/** A run's duration, "12 s", "3 min 4 s", or the time so far while it runs. */
export function runDuration(run: IRun, now: number = Date.now()): string {
  let seconds: number;
  if (typeof run.duration === 'number') {
    seconds = Math.round(run.duration);
  } else {
    const start = run.started ? Date.parse(run.started) : NaN;
    if (Number.isNaN(start)) {
      return '';
    }
    const end = run.finished ? Date.parse(run.finished) : now;
    seconds = Math.max(0, Math.round((end - start) / 1000));
  }
  if (seconds < 60) {
    return `${seconds} s`;
  }
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) {
    return `${minutes} min ${seconds % 60} s`;
  }
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/** Why a run did not succeed, in one line ("" if it did or still runs). */
export function runProblem(run: IRun): string {
  if (run.error) {
    return `${run.error.ename}: ${run.error.evalue}`;
  }
  if (run.status === 'cancelled' && run.cancel_reason) {
    return `cancelled: ${run.cancel_reason}`;
  }
  return run.message ? String(run.message) : '';
}

/** Parameters as typed in the run dialog: a JSON object, or `name = value` lines. */
export function parseParameters(text: string): { [name: string]: unknown } {
  const trimmed = text.trim();
  if (!trimmed) {
    return {};
  }
  if (trimmed.startsWith('{')) {
    const value = JSON.parse(trimmed);
    if (!value || typeof value !== 'object' || Array.isArray(value)) {
      throw new Error('parameters must be a JSON object');
    }
    return value;
  }
  const out: { [name: string]: unknown } = {};
  for (const line of trimmed.split('\n')) {
    if (!line.trim()) {
      continue;
    }
    const match = /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!match) {
      throw new Error(`"${line.trim()}" is not "name = value"`);
    }
    let value: unknown = match[2].trim();
    try {
      value = JSON.parse(match[2]);
    } catch {
      // not JSON: keep the text
    }
    out[match[1]] = value;
  }
  return out;
}

/** A local time with seconds, as "2026-01-10 12:00:05" (sortable, unambiguous). */
export function timeWithSeconds(iso: string | null | undefined): string {
  if (!iso) {
    return '';
  }
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) {
    return iso;
  }
  const two = (n: number) => String(n).padStart(2, '0');
  return (
    `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ` +
    `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`
  );
}

/** What a checkpoint is, as Jupyter's contents API lists it. */
export interface ICheckpoint {
  id: string;
  last_modified: string;
}

/**
 * The entries of *Revert to Checkpoint…*, newest first: "0. 2026-01-10 12:00:05 (just now)
 * · v-3HL4kqtJ…". Seconds and a short id tell apart saves made within the same minute;
 * the leading number is the entry's index in ``newestFirst``.
 */
export function checkpointLabels(
  newestFirst: ICheckpoint[],
  now: number = Date.now()
): string[] {
  return newestFirst.map((c, i) => {
    const id = shortId(c.id, 12);
    const when = `${timeWithSeconds(c.last_modified)} (${relativeTime(c.last_modified, now)})`;
    return `${i}. ${when}${id ? ` · ${id}` : ''}${i === 0 ? ' · newest' : ''}`;
  });
}

/** A set-aside save as a (not archived) entry of the versions list. */
export function droppedVersion(save: IDroppedSave): IVersion {
  return {
    version_id: null,
    last_modified: save.saved_at,
    size: save.size ?? 0,
    is_latest: false,
    sha256: null,
    user: null,
    saved_at: save.saved_at,
    save_id: save.save_id,
    pending: false,
    dropped: true,
    dropped_reason: save.reason
  };
}

/** The versions (newest first) with the set-aside saves placed by the time they were saved. */
export function withDropped(
  versions: IVersion[],
  dropped: IDroppedSave[] | undefined
): IVersion[] {
  const out = versions.filter(v => !v.dropped);
  const time = (v: IVersion) =>
    Date.parse(v.saved_at || v.last_modified || '') || 0;
  for (const save of dropped ?? []) {
    const entry = droppedVersion(save);
    if (out.some(v => versionKey(v) === versionKey(entry))) {
      continue;
    }
    const at = out.findIndex(v => !v.pending && time(v) < time(entry));
    out.splice(at < 0 ? out.length : at, 0, entry);
  }
  return out;
}
