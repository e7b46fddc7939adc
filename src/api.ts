/**
 * bookstore's REST API, as documented in docs/openapi.yaml. The frontend calls nothing else.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** A failed request: the HTTP status and the server's own message. */
export class BookstoreError extends Error {
  constructor(
    message: string,
    readonly status: number,
    /** False when the answer was not bookstore's JSON (e.g. an endpoint this server lacks). */
    readonly fromBookstore: boolean
  ) {
    super(message);
  }
}

export interface IArchiveStatus {
  enabled?: boolean;
  pending?: number;
  uploaded?: number;
  failed_attempts?: number;
  last_error?: {
    message: string;
    path?: string;
    at?: string;
    code?: string;
  } | null;
  last_upload?: { path: string; version_id?: string; at?: string } | null;
  bucket?: string;
  prefix?: string;
  bucket_ok?: boolean | null;
  versioning?: string | null;
  versioning_enabled?: boolean;
  problems?: string[];
  running?: boolean;
  [key: string]: unknown;
}

export interface IStatus {
  release: string;
  features: { [name: string]: boolean };
  archive: IArchiveStatus;
}

export interface IVersion {
  version_id: string | null;
  last_modified: string | null;
  size: number;
  is_latest: boolean;
  sha256: string | null;
  user: string | null;
  saved_at: string | null;
  save_id: string | null;
  pending: boolean;
  renamed_from?: string;
  restored_from?: string;
  /** A save set aside by the archiver (from the listing's `dropped`): not in S3. */
  dropped?: boolean;
  /** Why it was set aside (dropped entries only). */
  dropped_reason?: string;
  /** Saves just before this one dropped from the archiver's full spool. */
  dropped_saves?: number;
  uploading?: boolean;
  [key: string]: unknown;
}

/** A save the archiver set aside: S3 can never accept it (see docs/limits.md). */
export interface IDroppedSave {
  save_id: string;
  saved_at: string | null;
  size: number | null;
  reason: string;
  code: string | null;
  set_aside_at: string | null;
}

export interface IVersionListing {
  path: string;
  prefix: string;
  s3_path: string;
  versions: IVersion[];
  next_token: string | null;
  /** Saves set aside by the archiver (first workspace page only). */
  dropped?: IDroppedSave[];
}

export interface IPublishResult {
  s3_path: string;
  versionID: string | null;
  bucket: string;
  key: string;
  sha256: string;
}

/** One run, as the runs API (issue 9) lists it. */
export interface IRun {
  run_id: string;
  /** running, succeeded, failed, cancelled, error or unknown. */
  status: string;
  path?: string;
  source_version_id?: string | null;
  output_version_id?: string | null;
  parameters?: { [name: string]: unknown } | null;
  kernel?: string | null;
  started?: string | null;
  finished?: string | null;
  /** Seconds from start to finish; null while running. */
  duration?: number | null;
  error?: { ename: string; evalue: string; cell_index?: number | null } | null;
  cancel_reason?: string | null;
  message?: string | null;
  [key: string]: unknown;
}

export interface IRunListing {
  runs: IRun[];
  next_token?: string | null;
}

export type Prefix = 'workspace' | 'published';

/** Call bookstore's API; JSON in and out, a BookstoreError with the server's message on failure. */
export async function requestAPI<T>(
  endpoint: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, 'api', 'bookstore', endpoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new BookstoreError(
      `The Jupyter server cannot be reached: ${(error as Error).message}`,
      0,
      false
    );
  }
  const text = await response.text();
  let data: any = null;
  let isJSON = false;
  if (text) {
    try {
      data = JSON.parse(text);
      isJSON = true;
    } catch {
      data = text;
    }
  }
  if (!response.ok) {
    const message =
      (isJSON && data && (data.message || data.reason)) ||
      `${response.status} ${response.statusText || 'error'}`;
    throw new BookstoreError(String(message), response.status, isJSON);
  }
  return data as T;
}

/** The URL path of a Jupyter path, each segment escaped. */
export function pathPart(path: string): string {
  return URLExt.encodeParts(path);
}

function query(params: {
  [key: string]: string | number | null | undefined;
}): string {
  const parts = Object.entries(params)
    .filter(
      ([, value]) => value !== null && value !== undefined && value !== ''
    )
    .map(
      ([key, value]) =>
        `${encodeURIComponent(key)}=${encodeURIComponent(String(value))}`
    );
  return parts.length ? `?${parts.join('&')}` : '';
}

export function getStatus(): Promise<IStatus> {
  return requestAPI<IStatus>('');
}

export function listVersions(
  path: string,
  options: { prefix?: Prefix; limit?: number; pageToken?: string | null } = {}
): Promise<IVersionListing> {
  return requestAPI<IVersionListing>(
    `versions/${pathPart(path)}${query({
      prefix: options.prefix,
      limit: options.limit,
      page_token: options.pageToken
    })}`
  );
}

export function getVersion(
  path: string,
  versionId: string,
  prefix: Prefix = 'workspace'
): Promise<any> {
  return requestAPI<any>(
    `versions/${pathPart(path)}${query({ version_id: versionId, prefix })}`
  );
}

export function restoreVersion(path: string, versionId: string): Promise<any> {
  return requestAPI<any>(`versions/${pathPart(path)}`, {
    method: 'POST',
    body: JSON.stringify({ version_id: versionId })
  });
}

export interface IDiffResult {
  base: any;
  diff: any[];
  from: string;
  to: string | null;
}

export function getDiff(
  path: string,
  from: string,
  to: string | null
): Promise<IDiffResult> {
  return requestAPI<IDiffResult>(
    `diff/${pathPart(path)}${query({ from, to })}`
  );
}

export function publish(path: string, content: any): Promise<IPublishResult> {
  return requestAPI<IPublishResult>(`publish/${pathPart(path)}`, {
    method: 'PUT',
    body: JSON.stringify({ type: 'notebook', content })
  });
}

export function clone(body: {
  s3_bucket?: string;
  s3_key: string;
  s3_version_id?: string | null;
  target_path?: string;
}): Promise<{ path: string; [key: string]: unknown }> {
  return requestAPI('clone', { method: 'POST', body: JSON.stringify(body) });
}

export function listRuns(
  path: string,
  pageToken?: string | null
): Promise<IRunListing> {
  return requestAPI<IRunListing>(
    `runs/${pathPart(path)}${query({ page_token: pageToken })}`
  );
}

export function startRun(
  path: string,
  body: {
    version_id?: string;
    parameters?: { [name: string]: unknown };
    kernel?: string;
  }
): Promise<{ run_id: string; [key: string]: unknown }> {
  return requestAPI(`runs/${pathPart(path)}`, {
    method: 'POST',
    body: JSON.stringify(body)
  });
}

/** A run's output notebook (a contents model), by the output's version id. */
export function getRunOutput(
  path: string,
  outputVersionId: string
): Promise<any> {
  return requestAPI<any>(
    `runs/${pathPart(path)}${query({ version_id: outputVersionId })}`
  );
}

/** `s3://bucket/key` → bucket and key. */
export function splitS3Path(
  s3Path: string
): { bucket: string; key: string } | null {
  const match = /^s3:\/\/([^/]+)\/(.+)$/.exec(s3Path);
  return match ? { bucket: match[1], key: match[2] } : null;
}

/** The server's clone landing page for one object version, as an absolute link to share. */
export function cloneLink(
  bucket: string,
  key: string,
  versionId: string | null,
  baseUrl: string = ServerConnection.makeSettings().baseUrl,
  origin: string = window.location.origin
): string {
  const base = new URL(baseUrl, origin).href;
  return (
    URLExt.join(base, 'bookstore', 'clone') +
    query({ s3_bucket: bucket, s3_key: key, s3_version_id: versionId })
  );
}
